"""Coronary heights: each ostium's perpendicular height above the annulus plane.

The annulus plane is the plane through the three hinge points (:func:`geometry.annulus_plane`), oriented from the
left ventricle into the aorta, so a positive height is on the aortic side. Heights are measured to the ostium
landmark, the centre of the ostium on the sinus wall (``constants.LANDMARK_DESCRIPTIONS``), not to its lower edge
as some CT protocols do (docs/PLAN.md). All points are world LPS mm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..constants import OSTIA_NAMES
from ..geometry import Plane

#: What the plan says instead of guessing when a detection has no coronary ostia.
NO_OSTIA = "not available: the model has no coronary ostia"
#: ... and when given landmarks have none.
NO_OSTIA_GIVEN = "not available: the landmarks have no coronary ostia (LCO, RCO)"


@dataclass(frozen=True)
class OstiumHeight:
    """One coronary ostium above the annulus plane.

    Attributes:
        name: LCO or RCO.
        height_mm: signed perpendicular distance to the annulus plane, positive on the aortic side.
        position_lps: (3,) the ostium, world LPS mm.
        foot_lps: (3,) its perpendicular projection onto the annulus plane, world LPS mm.
    """

    name: str
    height_mm: float
    position_lps: np.ndarray
    foot_lps: np.ndarray

    def to_dict(self) -> dict:
        """JSON-serialisable, mm rounded to 2 decimals, positions to 3."""
        return {
            "height_mm": round(self.height_mm, 2),
            "position_lps": [round(float(v), 3) for v in self.position_lps],
            "foot_on_annulus_plane_lps": [round(float(v), 3) for v in self.foot_lps],
        }


def point_heights_mm(plane: Plane, points_lps: npt.ArrayLike) -> np.ndarray:
    """Perpendicular heights of points above a plane.

    Args:
        plane: the annulus plane (normal from the left ventricle into the aorta).
        points_lps: (K, 3) world LPS mm.

    Returns:
        (K,) mm, positive on the side the normal points to.
    """
    return np.atleast_1d(plane.signed_distance_mm(np.asarray(points_lps, dtype=np.float64).reshape(-1, 3)))


def ostia_heights(
    plane: Plane, names: Sequence[str], points_lps: npt.ArrayLike, ostia: Sequence[str] = OSTIA_NAMES
) -> dict[str, OstiumHeight]:
    """The heights of the coronary ostia among the landmarks.

    Args:
        plane: the annulus plane from the hinge points.
        names: K landmark labels of ``points_lps``.
        points_lps: (K, 3) world LPS mm.
        ostia: labels of the ostia (default LCO, RCO).

    Returns:
        ``{name: OstiumHeight}`` for each ostium label present, in the order of ``ostia``; empty when none is (then
        the plan says :data:`NO_OSTIA`).
    """
    points = np.asarray(points_lps, dtype=np.float64).reshape(-1, 3)
    names = list(names)
    result = {}
    for name in ostia:
        if name not in names:
            continue
        point = points[names.index(name)]
        height = float(point_heights_mm(plane, point)[0])
        result[name] = OstiumHeight(name, height, point.copy(), point - height * plane.normal)
    return result


def heights_record(heights: dict[str, OstiumHeight], ostia: Sequence[str] = OSTIA_NAMES, reason: str = NO_OSTIA
                   ) -> dict:  # fmt: skip
    """The ``coronary_heights`` section of plan.json: each ostium's height, or ``reason`` when there is none."""
    if not heights:
        return {"available": False, "reason": reason}
    record: dict = {
        "available": True,
        "definition": "perpendicular distance from the annulus plane (through the hinge points) to the ostium "
        "centre, positive towards the aorta",
    }
    for name in ostia:
        record[name] = heights[name].to_dict() if name in heights else f"not available: no point labelled {name}"
    return record
