"""Constants shared by every part of the project: one home each (as SlicerHeart's ``HeartValveLib/Constants.py``).

Grid defaults live on :class:`grid.GridSpec`; frame conversions in :mod:`frames`.
"""

from __future__ import annotations

#: The hinge points (nadirs of the right, left and non-coronary cusps), in the order every array of them uses.
#: With this order the annulus normal ``(LCC - RCC) x (NCC - RCC)`` points from the ventricle into the aorta.
HINGE_NAMES: tuple[str, str, str] = ("RCC", "LCC", "NCC")
#: The coronary ostia (left, right): optional landmarks; the plan gives their heights above the annulus plane.
OSTIA_NAMES: tuple[str, str] = ("LCO", "RCO")
#: Every landmark the phantom's truth has (its manifest columns, in this order).
ALL_LANDMARKS: tuple[str, ...] = HINGE_NAMES + OSTIA_NAMES
#: Landmarks a model learns and a manifest holds unless told otherwise.
DEFAULT_LANDMARKS: tuple[str, ...] = HINGE_NAMES
#: Descriptions written into markups files, by landmark name.
LANDMARK_DESCRIPTIONS: dict[str, str] = {
    "RCC": "hinge point of the right coronary cusp (cusp nadir)",
    "LCC": "hinge point of the left coronary cusp (cusp nadir)",
    "NCC": "hinge point of the non-coronary cusp (cusp nadir)",
    "LCO": "left coronary ostium (left main origin, centre of the ostium on the sinus wall)",
    "RCO": "right coronary ostium (RCA origin, centre of the ostium on the sinus wall)",
}
#: Air in Hounsfield units: the value outside a CT's field of view.
AIR_HU = -1000.0
#: Points whose detection confidence is below this are flagged for review.
LOW_CONFIDENCE = 0.5
