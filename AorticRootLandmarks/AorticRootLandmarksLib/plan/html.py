"""``index.html``: one self-contained page listing every case of a run with its key numbers, verdict and figure.

No scripts, fonts or styles from the network: the page opens from a folder on a machine without internet. Links and
thumbnails are relative (``<case>.plan.png``, ``<case>.plan.json`` next to the page).
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path

from ..typing import PathLike
from .record import DISCLAIMER, Plan

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
.disclaimer { color: #c00000; font-weight: bold; margin: 0.3em 0 1em 0; }
table { border-collapse: collapse; }
th, td { border-bottom: 1px solid #ddd; padding: 0.45em 0.7em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.ok { color: #1a7f37; font-weight: bold; } .review { color: #b35900; font-weight: bold; }
.failed { color: #c00000; font-weight: bold; } .why { color: #555; font-size: 0.85em; max-width: 22em; }
img.thumb { width: 360px; border: 1px solid #ccc; }
.note { color: #555; font-size: 0.9em; margin-top: 1em; }
"""

_COLUMNS = ("case", "verdict", "lumen perimeter / area", "min / max diameter", "LCO / RCO height",
            "three-cusp view", "cusp-overlap view", "figure")  # fmt: skip


def _fmt(value, digits: int = 1, unit: str = "") -> str:
    return "–" if value is None else f"{value:.{digits}f}{unit}"


def _row(name: str, plan: dict | str, folder: Path) -> str:
    """One table row: key numbers of a plan.json document, or the reason there is no plan."""
    esc = html.escape
    if isinstance(plan, str):
        why = f"<td colspan='{len(_COLUMNS) - 2}' class='why'>{esc(plan)}</td>"
        return f"<tr><td>{esc(name)}</td><td class='failed'>no plan</td>{why}</tr>"
    quality = plan.get("quality", {})
    verdict = str(quality.get("verdict", "ok"))
    reasons = "; ".join(quality.get("reasons") or [])
    lumen = plan.get("lumen", {})
    if lumen.get("ok"):
        size = f"{_fmt(lumen.get('perimeter_mm'))} mm / {_fmt(lumen.get('area_mm2'), 0)} mm²"
        diameters = f"{_fmt(lumen.get('min_diameter_mm'))} / {_fmt(lumen.get('max_diameter_mm'))} mm"
    else:
        size, diameters = f"not measured: {lumen.get('reason', '')}", "–"
    heights = plan.get("coronary_heights", {})
    if heights.get("available"):
        height = " / ".join(_fmt(h.get("height_mm"), unit=" mm") if isinstance(h, dict) else "–"
                            for h in (heights.get("LCO"), heights.get("RCO")))  # fmt: skip
    else:
        height = "not available"
    views = plan.get("carm", {}).get("views", {})
    figure = f"{name}.plan.png"
    link = f"{name}.plan.json"
    picture = (f"<a href='{esc(figure)}'><img class='thumb' src='{esc(figure)}' alt='plan figure of {esc(name)}'>"
               "</a>" if (folder / figure).is_file() else "no figure")  # fmt: skip
    cells = [
        f"<td><a href='{esc(link)}'>{esc(name)}</a></td>",
        f"<td><span class='{esc(verdict)}'>{esc(verdict)}</span><div class='why'>{esc(reasons)}</div></td>",
        f"<td class='num'>{esc(size)}</td>",
        f"<td class='num'>{esc(diameters)}</td>",
        f"<td class='num'>{esc(height)}</td>",
        f"<td class='num'>{esc(views.get('three_cusp', {}).get('label', '–'))}</td>",
        f"<td class='num'>{esc(views.get('cusp_overlap', {}).get('label', '–'))}</td>",
        f"<td>{picture}</td>",
    ]
    return "<tr>" + "".join(cells) + "</tr>"


def write_index(cases: Mapping[str, Plan | dict | str], path: PathLike, title: str = "Aortic root plans") -> Path:
    """Write one HTML page listing every case with its key numbers, verdict and figure.

    Args:
        cases: ``{case name: plan}`` in display order; a plan is a :class:`Plan`, its ``to_dict()`` (as read back
            from ``<case>.plan.json``), or a string saying why the case has no plan.
        path: the ``index.html`` to write; figures ``<case>.plan.png`` and plans ``<case>.plan.json`` are linked
            relative to its folder (a missing figure shows as "no figure").
        title: the page's heading.

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    rows = [_row(name, plan.to_dict() if isinstance(plan, Plan) else plan, path.parent) for name, plan in cases.items()]
    header = "".join(f"<th>{html.escape(c)}</th>" for c in _COLUMNS)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="disclaimer">{html.escape(DISCLAIMER)}</p>
<table>
<thead><tr>{header}</tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
<p class="note">{len(rows)} case(s). Lengths in mm, areas in mm², C-arm angles in degrees (patient supine, head first;
LAO and CRAN positive). Heights: perpendicular distance of each coronary ostium above the annulus plane through the
hinge points. Click a case for its plan.json, a figure for full size. How to read them: docs/PLAN.md.</p>
</body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path
