"""The plan's figure ``<case>.plan.png``: annulus plane, two long-axis cuts with the coronary heights, the S-curve.

Panels:

- **annulus plane**, the CT resampled on the plane of the hinge points and shown like an axial slice (seen from the
  ventricle: the patient's right on the left, anterior up), with the hinge points, the traced lumen contour and its
  minimum and maximum diameters, and below it the measurement's warnings (what to check), if any;
- **two long-axis cuts** through the root, planes that contain the annulus normal (aorta up): through each coronary
  ostium with its height above the annulus plane, or, without ostia, through the RCC and NCC hinge points;
- **the S-curve**, the C-arm angles that show the annulus plane edge-on, with the three-cusp and cusp-overlap views.

Slices are resampled in world LPS mm with :func:`annulus.reconstruct_plane`. matplotlib is imported inside
:func:`save_plan_figure` only (Agg canvas, no pyplot state): the rest of the package runs without it (3D Slicer).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk

from ..annulus import PlaneImage, reconstruct_plane
from ..constants import HINGE_NAMES, OSTIA_NAMES
from ..errors import InputError
from ..geometry import CarmAngles
from ..typing import PathLike
from .carm import VIEW_TITLES
from .record import DISCLAIMER

if TYPE_CHECKING:
    from .record import Plan

#: Display window, HU (contrast CT of the root: lumen 250-600 HU, calcium brighter).
WINDOW = (-150.0, 750.0)
#: Landmark colours (on a grey CT).
COLORS = {"RCC": "#ff4040", "LCC": "#40e040", "NCC": "#ffd940", "LCO": "#ff40ff", "RCO": "#40c0ff"}
LUMEN_COLOR = "#00e5e5"
#: Characters per line of a lumen warning under the annulus panel, and the height of one line (inches).
WARNING_WIDTH, WARNING_LINE_IN = 84, 0.17
#: The figure's size without lumen warnings (inches) and its grid's bottom, top and row gap (fractions).
FIGURE_IN, BOTTOM, TOP, HSPACE = (13.0, 12.4), 0.07, 0.91, 0.3
MAX_COLOR = "#ff9f1c"
MIN_COLOR = "#7fb2ff"
VIEW_STYLE = {"three_cusp": ("o", "#1f77b4"), "cusp_overlap": ("s", "#d62728")}
VERDICT_COLORS = {"ok": "#1a7f37", "review": "#b35900", "failed": "#c00000"}
#: Pixel size of the figure's slices, mm.
PIXEL_MM = 0.25
#: Long-axis cuts: half width, and how far they reach below / above the annulus plane, mm.
LONG_HALF_MM, LONG_BELOW_MM, LONG_ABOVE_MM = 28.0, 18.0, 38.0
_LONG_HALF_HEIGHT = 0.5 * (LONG_ABOVE_MM + LONG_BELOW_MM)
#: Points farther than this from a cut are not drawn on it, mm.
NEAR_CUT_MM = 3.0
#: Background of labels drawn on the CT (readable on any grey).
DARK_BOX = {"facecolor": "black", "alpha": 0.55, "pad": 2.0, "edgecolor": "none"}


@dataclass(frozen=True)
class _Cut:
    """A long-axis cut: columns along ``direction`` (in the annulus plane), rows along the normal (aorta up)."""

    title: str
    direction: np.ndarray
    ostium: str  # the ostium it goes through, "" if none


def _display_axes(plan: Plan) -> tuple[np.ndarray, np.ndarray]:
    """In-plane axes for an axial-like view from the ventricle: image right ~ patient left (+x), image down ~
    posterior; (right, down, normal) is right-handed."""
    n = plan.plane.normal
    left = np.array([1.0, 0.0, 0.0]) - n[0] * n
    # an annulus in a sagittal plane has no in-plane left: the axis towards the RCC then
    right = left / np.linalg.norm(left) if np.linalg.norm(left) > 1e-6 else plan.u_lps
    return right, np.cross(n, right)


def _annulus_image(plan: Plan, image: sitk.Image) -> PlaneImage:
    right, down = _display_axes(plan)
    return reconstruct_plane(image, plan.plane.center, right, down, 64.0, PIXEL_MM)


def _cuts(plan: Plan) -> list[_Cut]:
    """Two long-axis cuts: through each ostium if the plan has them, else through the RCC and the NCC."""
    targets = [(name, plan.heights[name].foot_lps) for name in OSTIA_NAMES if name in plan.heights]
    if len(targets) < 2:
        hinges = plan.hinges_lps
        targets += [(name, hinges[HINGE_NAMES.index(name)]) for name in ("RCC", "NCC")][: 2 - len(targets)]
    cuts = []
    for name, point in targets:
        offset = point - plan.plane.center
        d = offset - (offset @ plan.plane.normal) * plan.plane.normal
        d = d / np.linalg.norm(d) if np.linalg.norm(d) > 1e-6 else plan.u_lps
        cuts.append(_Cut(f"long axis through {name}", d, name if name in OSTIA_NAMES else ""))
    return cuts


def _show(ax, plane: PlaneImage) -> None:
    half_u = (plane.pixels.shape[1] - 1) / 2 * plane.spacing_mm
    half_v = (plane.pixels.shape[0] - 1) / 2 * plane.spacing_mm
    ax.imshow(plane.pixels, cmap="gray", vmin=WINDOW[0], vmax=WINDOW[1], interpolation="bilinear",
              extent=(-half_u, half_u, half_v, -half_v))  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])


def _scale_bar(ax, x0: float, y0: float, length_mm: float = 10.0) -> None:
    ax.plot([x0, x0 + length_mm], [y0, y0], color="white", lw=2.5, solid_capstyle="butt")
    ax.text(x0 + length_mm / 2, y0 - 1.0, f"{length_mm:g} mm", color="white", ha="center", va="bottom", fontsize=9)


def _mark(ax, uv: np.ndarray, name: str, marker: str = "o", offset: tuple[int, int] = (7, -7)) -> None:
    from matplotlib import patheffects

    ax.plot(uv[0], uv[1], marker, ms=8, mfc="none", mec=COLORS.get(name, "white"), mew=2)
    ax.annotate(name, (uv[0], uv[1]), xytext=offset, textcoords="offset points", color=COLORS.get(name, "white"),
                fontsize=10, fontweight="bold", path_effects=[patheffects.withStroke(linewidth=2.5,
                foreground="black")])  # fmt: skip


def _diameter(ax, plane: PlaneImage, ends_lps: np.ndarray, color: str, text: str) -> None:
    ends = plane.world_to_uv(ends_lps)
    if np.all(np.isfinite(ends)):
        ax.plot(ends[:, 0], ends[:, 1], "-", color=color, lw=1.8, marker="o", ms=3.5, label=text)


def _label_box(ax, x: float, y: float, text: str, **kwargs) -> None:
    """Text on a dark box (readable on any grey), axes coordinates."""
    ax.text(x, y, text, transform=ax.transAxes, bbox=DARK_BOX, **kwargs)


def _annulus_panel(ax, plan: Plan, image: sitk.Image) -> None:
    plane = _annulus_image(plan, image)
    _show(ax, plane)
    lumen = plan.lumen
    hinges = plane.world_to_uv(plan.hinges_lps)
    reach = np.abs(hinges).max()
    if lumen.ok:
        contour = plane.world_to_uv(lumen.contour_lps)
        reach = max(reach, np.abs(contour).max())
        ax.plot(*np.vstack([contour, contour[:1]]).T, "-", color=LUMEN_COLOR, lw=1.5, label="lumen contour")
        _diameter(ax, plane, lumen.max_diameter_ends_lps, MAX_COLOR, f"max diameter {lumen.max_diameter_mm:.1f} mm")
        _diameter(ax, plane, lumen.min_diameter_ends_lps, MIN_COLOR, f"min diameter {lumen.min_diameter_mm:.1f} mm")
        ax.legend(loc="upper left", fontsize=9, facecolor="black", edgecolor="none", framealpha=0.6,
                  labelcolor="white")  # fmt: skip
    for name, uv in zip(HINGE_NAMES, hinges, strict=True):
        _mark(ax, uv, name)
    half = float(min(max(reach + 9.0, 16.0), 32.0))
    ax.set_xlim(-half, half)
    ax.set_ylim(half, -half)
    _scale_bar(ax, half - 13.0, half - 2.5)
    for x, y, s in ((0.025, 0.5, "R"), (0.975, 0.5, "L"), (0.5, 0.975, "A"), (0.5, 0.025, "P")):
        _label_box(ax, x, y, s, color="orange", ha="center", va="center", fontsize=10)
    ax.set_title("annulus plane (through the hinge points, seen from the ventricle)", fontsize=11)
    ax.set_xlabel(_lumen_text(plan), fontsize=10, linespacing=1.5)


def _lumen_text(plan: Plan) -> str:
    lumen, circle_mm = plan.lumen, plan.circumcircle["circumcircle_diameter_mm"]
    secondary = f"circle through the 3 hinges (secondary estimate): diameter {circle_mm:.1f} mm"
    if not lumen.ok:
        return f"lumen not measured: {lumen.reason}\n{secondary}"
    checks = "".join("\n" + line for line in _warning_lines(plan))
    return (
        f"lumen: perimeter {lumen.perimeter_mm:.1f} mm (diameter {lumen.perimeter_diameter_mm:.1f} mm), "
        f"area {lumen.area_mm2:.0f} mm² (diameter {lumen.area_diameter_mm:.1f} mm)\n"
        f"min / max diameter {lumen.min_diameter_mm:.1f} / {lumen.max_diameter_mm:.1f} mm, "
        f"eccentricity {lumen.eccentricity:.2f}\n{secondary}{checks}"
    )


def _warning_lines(plan: Plan) -> list[str]:
    """The lumen measurement's warnings as lines of text, wrapped, each starting with "check:" (none when the lumen
    was not measured: the reason stands there instead)."""
    if not plan.lumen.ok:
        return []
    return [line for w in plan.lumen.warnings for line in textwrap.wrap(f"check: {w}", WARNING_WIDTH)]


def _long_axis_panel(ax, plan: Plan, image: sitk.Image, cut: _Cut, first: bool) -> None:
    n = plan.plane.normal
    centre = plan.plane.center + 0.5 * (LONG_ABOVE_MM - LONG_BELOW_MM) * n
    plane = reconstruct_plane(image, centre, cut.direction, -n, 2 * max(LONG_HALF_MM, _LONG_HALF_HEIGHT), PIXEL_MM)
    _show(ax, plane)
    ax.set_xlim(-LONG_HALF_MM, LONG_HALF_MM)
    ax.set_ylim(_LONG_HALF_HEIGHT, -_LONG_HALF_HEIGHT)
    level = plane.world_to_uv(plan.plane.center)[0, 1]  # the annulus plane's row
    ax.axhline(level, color="white", ls="--", lw=1.0, alpha=0.8)
    ax.text(-LONG_HALF_MM + 1.0, level + 1.0, "annulus plane", color="white", fontsize=9, va="top", bbox=DARK_BOX)
    off_cut = np.abs((plan.points_lps - centre) @ plane.normal_lps)
    for k, name in enumerate(plan.names):
        if off_cut[k] <= NEAR_CUT_MM and name in HINGE_NAMES:
            _mark(ax, plane.world_to_uv(plan.points_lps[k])[0], name)
    for name, height in plan.heights.items():
        if abs((height.position_lps - centre) @ plane.normal_lps) <= NEAR_CUT_MM:
            _height(ax, plane, name, height.position_lps, height.foot_lps, height.height_mm)
    _label_box(ax, 0.02, 0.975, "aorta", color="orange", ha="left", va="top", fontsize=10)
    _label_box(ax, 0.02, 0.025, "ventricle", color="orange", ha="left", va="bottom", fontsize=10)
    _scale_bar(ax, LONG_HALF_MM - 13.0, _LONG_HALF_HEIGHT - 2.5)
    ax.set_title(cut.title + (" (aorta up)" if cut.ostium else ", aorta up"), fontsize=11)
    ax.set_xlabel(_heights_text(plan, cut, first), fontsize=10)


def _height(ax, plane: PlaneImage, name: str, point: np.ndarray, foot: np.ndarray, height_mm: float) -> None:
    top, bottom = plane.world_to_uv(np.stack([point, foot]))
    color = COLORS[name]
    ax.annotate("", xy=top, xytext=bottom, arrowprops={"arrowstyle": "<->", "color": color, "lw": 1.8,
                                                      "shrinkA": 0, "shrinkB": 0})  # fmt: skip
    ax.plot(top[0], top[1], "x", color=color, ms=9, mew=2.2)
    side = -1 if top[0] > 0 else 1
    ax.annotate(f"{name} {height_mm:.1f} mm", (top[0], 0.5 * (top[1] + bottom[1])), xytext=(side * 8, 0),
                textcoords="offset points", color=color, fontsize=11, fontweight="bold", va="center",
                ha="right" if side < 0 else "left", bbox=DARK_BOX)  # fmt: skip


def _heights_text(plan: Plan, cut: _Cut, first: bool) -> str:
    if not plan.heights:  # said once, under the first cut
        return "coronary heights " + plan.heights_reason.replace(": ", " (", 1) + ")" if first else ""
    if cut.ostium:
        return f"height of {cut.ostium} above the annulus plane: {plan.heights[cut.ostium].height_mm:.1f} mm"
    return "coronary heights: " + ", ".join(f"{n} {h.height_mm:.1f} mm" for n, h in plan.heights.items())


def _angle_ticks(limit: int, negative: str, positive: str) -> tuple[list[int], list[str]]:
    ticks = list(range(-limit, limit + 1, 30))
    return ticks, [f"{negative} {-t}" if t < 0 else f"{positive} {t}" if t > 0 else "0" for t in ticks]


def _s_curve_panel(ax, plan: Plan) -> None:
    carm = plan.carm
    ax.plot(carm.lao_deg, carm.cran_deg, "-", color="black", lw=2.0, label="S-curve (annulus plane edge-on)")
    for name, angles in carm.views.items():
        marker, color = VIEW_STYLE.get(name, ("D", "gray"))
        ax.plot(angles.lao_deg, angles.cran_deg, marker, color=color, ms=11, mec="white", mew=1.5, zorder=3,
                label=f"{VIEW_TITLES.get(name, name)} view: {_label(angles)}")  # fmt: skip
    ax.axhline(0, color="0.6", lw=0.8)
    ax.axvline(0, color="0.6", lw=0.8)
    reach = 60 if np.all(np.abs(carm.cran_deg) <= 57) else 90
    ax.set_xlim(-90, 90)
    ax.set_ylim(-reach, reach)
    ax.set_xticks(*_angle_ticks(90, "RAO", "LAO"))
    ax.set_yticks(*_angle_ticks(reach, "CAUD", "CRAN"))
    ax.grid(True, color="0.9")
    ax.legend(loc="upper left", fontsize=10, framealpha=0.95)
    ax.set_title("C-arm angles (degrees; patient supine, head first)", fontsize=11)
    ax.set_xlabel("LAO (+) / RAO (−)", fontsize=10)
    ax.set_ylabel("CRAN (+) / CAUD (−)", fontsize=10)


def _label(angles: CarmAngles) -> str:
    return angles.label.replace(" CRAN", ", CRAN").replace(" CAUD", ", CAUD")


def _header(fig, plan: Plan) -> None:
    verdict = plan.verdict
    reasons = plan.quality.get("reasons") or []
    source = "detected landmarks" if plan.source == "detection" else "given landmarks"
    fig.text(0.015, 0.985, f"{plan.case or 'plan'}", fontsize=15, fontweight="bold", va="top")
    fig.text(0.985, 0.985, f"quality control: {verdict}", fontsize=13, fontweight="bold", va="top", ha="right",
             color=VERDICT_COLORS.get(verdict, "black"))  # fmt: skip
    detail = f"from {source}; world LPS mm"
    if reasons:
        first = reasons[0] if len(reasons[0]) <= 110 else reasons[0][:107] + "..."
        detail += "  |  " + first + (f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else "")
    fig.text(0.015, 0.952, detail, fontsize=10, va="top", color="0.25")
    fig.text(0.5, 0.008, DISCLAIMER, fontsize=10, ha="center", va="bottom", color="#c00000", fontweight="bold")


def save_plan_figure(plan: Plan, image: sitk.Image, path: PathLike, dpi: int = 100) -> Path:
    """Write the plan's figure (PNG): annulus plane, two long-axis cuts with the coronary heights, the S-curve.

    Args:
        plan: from :func:`record.make_plan`.
        image: the CT the plan was made on (HU, LPS geometry).
        path: output PNG file (its folder must exist).
        dpi: resolution (the figure is 13 x 12.4 inches, taller by a line per lumen warning).

    Returns:
        ``path`` as a Path.

    Raises:
        InputError: matplotlib is not installed (3D Slicer does not ship it: ``slicer.util.pip_install("matplotlib")``).

    Example:
        >>> save_plan_figure(make_plan(image, names, points), image, "case.plan.png")
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise InputError("the plan figure needs matplotlib, which is not installed (pip install matplotlib); "
                         "plan.json does not") from None  # fmt: skip

    # The lumen's warnings under the annulus panel widen the gap between the rows: the figure grows by their lines
    # and the panels and margins keep their sizes in inches.
    extra = WARNING_LINE_IN * len(_warning_lines(plan))
    height = FIGURE_IN[1] + extra
    panel = FIGURE_IN[1] * (TOP - BOTTOM) / (2 + HSPACE)
    fig = Figure(figsize=(FIGURE_IN[0], height), dpi=dpi, facecolor="white")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 2, left=0.05, right=0.975, bottom=FIGURE_IN[1] * BOTTOM / height,
                            top=1 - FIGURE_IN[1] * (1 - TOP) / height, wspace=0.14,
                            hspace=(HSPACE * panel + extra) / panel)  # fmt: skip
    _annulus_panel(fig.add_subplot(grid[0, 0]), plan, image)
    _s_curve_panel(fig.add_subplot(grid[0, 1]), plan)
    for col, cut in enumerate(_cuts(plan)):
        _long_axis_panel(fig.add_subplot(grid[1, col]), plan, image, cut, first=col == 0)
    _header(fig, plan)
    path = Path(path)
    fig.savefig(path, facecolor="white")
    return path
