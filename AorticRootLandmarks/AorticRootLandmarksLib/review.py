"""What the analyst reviews in the panel: each landmark with its verdict, and the rows of the measurement table.

The verdict of a point combines the detection's quality control (stored on the point list by ``mrml.set_fiducials``)
with what the analyst did since (moved, placed, cleared it). The measurement rows gather the annulus numbers of the
hinge points (:mod:`geometry`), the coronary heights and C-arm views (:mod:`plan`) and the lumen traced on the CT
(:mod:`annulus`) into (label, value, unit) rows for ``mrml_tables``. Positions are world LPS mm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .constants import HINGE_NAMES, LOW_CONFIDENCE, OSTIA_NAMES

#: A point further than this from its detected position counts as corrected by the analyst (mm).
CORRECTED_MM = 0.5


@dataclass
class PointStatus:
    """One landmark as the points panel shows it.

    Attributes:
        name: label. positionLps: (3,) world LPS mm, None when the point is cleared or not placed.
        confidence: the detection's confidence (None when the point was not detected here).
        verdict: "ok", "review" (low confidence), "corrected" (moved from the detection), "placed" (by the analyst,
            not detected), "missing" (a hinge point without position) or "not placed" (an optional ostium).
        reason: why, in words ("" for "ok").
    """

    name: str
    positionLps: np.ndarray | None
    confidence: float | None
    verdict: str
    reason: str = ""


def point_statuses(
    labels: list[str], points_lps: np.ndarray, defined: list[bool], record: dict | None
) -> list[PointStatus]:
    """Every landmark the panel lists (RCC, LCC, NCC, LCO, RCO, then any other label) with its verdict.

    Args:
        labels, points_lps, defined: the point list's control points (``mrml.get_control_points_lps``): K labels,
            (K, 3) world LPS mm, whether each has a position.
        record: what detection stored on the list (``mrml.detected_record``), None if it was not detected here.
    """
    record = record or {"names": [], "positions_lps": np.zeros((0, 3)), "confidence": [], "reasons": []}
    statuses = []
    for name in dict.fromkeys([*HINGE_NAMES, *OSTIA_NAMES, *labels]):
        index = labels.index(name) if name in labels else None
        position = points_lps[index] if index is not None and defined[index] else None
        statuses.append(_status(name, position, record))
    return statuses


def _status(name: str, position: np.ndarray | None, record: dict) -> PointStatus:
    """The verdict of one landmark: what the analyst did to it first, then what quality control said."""
    k = record["names"].index(name) if name in record["names"] else None
    confidence = record["confidence"][k] if k is not None else None
    if position is None:
        if name in HINGE_NAMES:
            return PointStatus(name, None, confidence, "missing", "no position: place it")
        return PointStatus(name, None, confidence, "not placed", "optional")
    if k is None:
        return PointStatus(name, position, None, "placed", "placed by the analyst")
    moved = float(np.linalg.norm(position - record["positions_lps"][k]))
    if moved > CORRECTED_MM:
        return PointStatus(name, position, confidence, "corrected", f"moved {moved:.1f} mm from the detection")
    if confidence is not None and confidence < LOW_CONFIDENCE:
        return PointStatus(name, position, confidence, "review", record["reasons"][k] or "low confidence")
    return PointStatus(name, position, confidence, "ok")


def measurement_rows(measurements: dict | None, views: dict | None, heights: dict | None = None, lumen=None,
                     lumen_rows: bool = False) -> list[tuple[str, float | None, str]]:
    """The rows of the measurement table: (label, value or None, unit); None where a value cannot be measured now.

    Args:
        measurements: ``geometry.annulus_measurements`` (None: a hinge point is missing).
        views: ``geometry.implant_views`` (LAO/RAO and CRAN/CAUD degrees).
        heights: ``plan.ostia_heights`` ({"LCO"/"RCO": OstiumHeight}); an ostium without one gets an empty row.
        lumen: ``annulus.LumenMeasurement`` or None; its rows are empty when it is not ``ok``.
        lumen_rows: list the lumen rows even without a measurement (a CT is there, but nothing measured now).
    """
    m, views, heights = measurements or {}, views or {}, heights or {}
    pairs = list(zip(HINGE_NAMES, HINGE_NAMES[1:] + HINGE_NAMES[:1], strict=True))
    rows = [("Circumcircle diameter", m.get("circumcircle_diameter_mm"), "mm"),
            ("Circumcircle perimeter", m.get("circumcircle_perimeter_mm"), "mm"),
            ("Circumcircle area", m.get("circumcircle_area_mm2"), "mm²")]
    rows += [(f"{a}–{b} distance", m.get(f"{a}_{b}_mm"), "mm") for a, b in pairs]
    rows += [(f"{a}–{b} arc angle (at the circumcentre)", m.get(f"{a}_{b}_deg"), "deg") for a, b in pairs]
    for key, title in (("three_cusp", "Three-cusp view"), ("cusp_overlap", "Cusp-overlap view")):
        lao, cran = views.get(key, (None, None))
        rows += [(f"{title} LAO (+) / RAO (-)", lao, "deg"), (f"{title} CRAN (+) / CAUD (-)", cran, "deg")]
    for name in OSTIA_NAMES:
        height = heights[name].height_mm if name in heights else None
        rows.append((f"{name} height above the annulus plane", height, "mm"))
    if lumen is not None or lumen_rows:
        ok = lumen is not None and lumen.ok
        rows += [(label, getattr(lumen, name) if ok else None, unit) for name, label, unit in LUMEN_ROWS]
    return rows


#: Rows of the lumen measurement: (``annulus.LumenMeasurement`` attribute, label, unit).
LUMEN_ROWS = (
    ("perimeter_mm", "Lumen perimeter", "mm"),
    ("area_mm2", "Lumen area", "mm²"),
    ("min_diameter_mm", "Lumen minimum diameter", "mm"),
    ("max_diameter_mm", "Lumen maximum diameter", "mm"),
    ("perimeter_diameter_mm", "Lumen perimeter-derived diameter", "mm"),
    ("area_diameter_mm", "Lumen area-derived diameter", "mm"),
    ("eccentricity", "Lumen eccentricity (1 - min/max)", ""),
)
