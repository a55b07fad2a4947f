"""The plan of one CT: landmarks, annulus plane, lumen measurement, coronary heights, C-arm angles, quality.

:func:`make_plan` computes it from an image and landmarks (a detection's, or points an analyst corrected);
:meth:`Plan.to_dict` is what ``<case>.plan.json`` holds (every field: docs/PLAN.md). Every coordinate is world LPS mm
(x to the patient's Left, y to Posterior, z to Superior), every angle degrees.

Numpy and SimpleITK only: runs inside 3D Slicer's Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from .. import geometry, qc
from ..annulus import LumenMeasurement, measure_annulus
from ..constants import HINGE_NAMES
from ..geometry import Plane
from .carm import CarmPlan, carm_plan
from .heights import NO_OSTIA, NO_OSTIA_GIVEN, OstiumHeight, heights_record, ostia_heights

if TYPE_CHECKING:
    from ..detection import Detection

#: Name and version of the plan.json format; the version changes whenever a field changes meaning or goes away.
SCHEMA = "aortic-root-plan"
SCHEMA_VERSION = 1
#: Written into every plan, figure and index.
DISCLAIMER = "Research software, not a medical device: not for diagnosis or treatment decisions."


@dataclass
class Plan:
    """The plan of one CT (world LPS mm, degrees).

    Attributes:
        case: the case name (file name without suffix).
        names: K landmark labels.
        points_lps: (K, 3) world LPS mm.
        plane: the annulus plane through RCC, LCC, NCC (centre: their centroid; normal: ventricle -> aorta).
        u_lps: (3,) unit in-plane axis towards RCC; ``v_lps = normal x u_lps`` completes the frame.
        v_lps: (3,) unit in-plane axis.
        lumen: the lumen traced on the CT in the annulus plane (:func:`annulus.measure_annulus`); ``lumen.ok`` False
            with a reason when the image shows no measurable lumen.
        circumcircle: :func:`geometry.annulus_measurements` of the hinge points (a secondary estimate).
        heights: coronary ostia heights above the annulus plane, by name; empty without ostia.
        carm: the S-curve and the named C-arm views.
        quality: the quality-control verdict: a detection's (``qc.QualityReport.to_dict()``) or, for given points,
            the hinge-geometry and image checks.
        confidence: (K,) detection confidence per landmark, None for given points.
        source: where the landmarks come from ("detection" or "landmarks file <path>").
        image_path: the CT it was made on ("" if unknown).
    """

    case: str
    names: list[str]
    points_lps: np.ndarray
    plane: Plane
    u_lps: np.ndarray
    v_lps: np.ndarray
    lumen: LumenMeasurement
    circumcircle: dict
    heights: dict[str, OstiumHeight]
    carm: CarmPlan
    quality: dict
    confidence: np.ndarray | None = None
    source: str = "detection"
    image_path: str = ""

    @property
    def hinges_lps(self) -> np.ndarray:
        """(3, 3) RCC, LCC, NCC, world LPS mm."""
        return geometry.select_points(self.names, self.points_lps)

    @property
    def heights_reason(self) -> str:
        """Why there are no coronary heights (used only when ``heights`` is empty)."""
        return NO_OSTIA if self.source == "detection" else NO_OSTIA_GIVEN

    @property
    def verdict(self) -> str:
        """The quality-control verdict: "ok", "review" or "failed"."""
        return str(self.quality.get("verdict", "ok"))

    def summary(self) -> str:
        """One line for the terminal: verdict, lumen, heights, views."""
        lumen = self.lumen
        if lumen.ok:
            size = (f"lumen perimeter {lumen.perimeter_mm:.1f} mm, area {lumen.area_mm2:.0f} mm2, "
                    f"diameters {lumen.min_diameter_mm:.1f}/{lumen.max_diameter_mm:.1f} mm")  # fmt: skip
        else:
            size = f"lumen not measured ({lumen.reason})"
        if self.heights:
            heights = "heights " + ", ".join(f"{n} {h.height_mm:.1f} mm" for n, h in self.heights.items())
        else:
            heights = "coronary heights " + self.heights_reason
        views = ", ".join(f"{name.replace('_', '-')} {angles.label}" for name, angles in self.carm.views.items())
        return f"{self.case}: {self.verdict}; {size}; {heights}; {views}"

    def to_dict(self) -> dict:
        """The JSON document ``<case>.plan.json`` (fields: docs/PLAN.md)."""
        from .. import __version__

        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "disclaimer": DISCLAIMER,
            "software": {"name": "aortic-root", "version": __version__},
            "case": self.case,
            "image": self.image_path,
            "coordinate_system": "LPS",
            "coordinate_system_note": "world coordinates of the DICOM patient frame: x to the patient's left, "
            "y posterior, z superior",
            "units": {"length": "mm", "area": "mm2", "angle": "deg"},
            "landmarks_source": self.source,
            "landmarks": self._landmarks(),
            "annulus_plane": {
                "center_lps": _rounded(self.plane.center, 3),
                "normal_lps": _rounded(self.plane.normal, 5),
                "definition": "plane through the RCC, LCC and NCC hinge points; centre = their centroid; "
                "normal from the left ventricle into the aorta",
            },
            "lumen": self.lumen.to_dict(),
            "circumcircle": self._circumcircle(),
            "coronary_heights": heights_record(self.heights, reason=self.heights_reason),
            "carm": self.carm.to_dict(),
            "quality": self.quality,
        }

    def _landmarks(self) -> dict:
        out = {}
        for k, name in enumerate(self.names):
            entry: dict = {"position_lps": _rounded(self.points_lps[k], 3)}
            if self.confidence is not None:
                entry["confidence"] = round(float(self.confidence[k]), 3)
            out[name] = entry
        return out

    def _circumcircle(self) -> dict:
        m = self.circumcircle
        pairs = [f"{HINGE_NAMES[i]}_{HINGE_NAMES[(i + 1) % 3]}" for i in range(3)]
        return {
            "note": "secondary estimate: the circle through the three hinge points underestimates the annulus; "
            "the lumen measurement is the primary one",
            "diameter_mm": round(m["circumcircle_diameter_mm"], 2),
            "perimeter_mm": round(m["circumcircle_perimeter_mm"], 2),
            "area_mm2": round(m["circumcircle_area_mm2"], 2),
            "center_lps": _rounded(m["circumcenter_lps"], 3),
            "hinge_distances_mm": {pair: round(m[f"{pair}_mm"], 2) for pair in pairs},
            "hinge_arcs_deg": {pair: round(m[f"{pair}_deg"], 2) for pair in pairs},
        }


def _rounded(values: npt.ArrayLike, digits: int) -> list[float]:
    return [round(float(v), digits) + 0.0 for v in np.asarray(values, dtype=np.float64).reshape(-1)]


def given_points_quality(image: sitk.Image, names: Sequence[str], points_lps: np.ndarray) -> dict:
    """The quality section for points not detected here: the hinge-geometry and image checks, no confidences."""
    geometry_checks = qc.geometry_checks(names, points_lps)
    image_checks = qc.image_checks(image)
    reasons = [f"image not CT-like: {c.reason}" for c in image_checks.values() if not c.passed]
    reasons += [f"implausible hinge geometry: {c.reason}" for c in geometry_checks.values() if not c.passed]
    return {
        "verdict": "failed" if reasons else "ok",
        "reasons": reasons,
        "notes": ["points given, not detected: no detection confidence; hinge-geometry and image checks only"],
        "geometry": {key: check.to_dict() for key, check in geometry_checks.items()},
        "image": {key: check.to_dict() for key, check in image_checks.items()},
    }


def with_plan_checks(quality: dict, lumen: LumenMeasurement) -> dict:
    """The plan's verdict: the landmarks' (kept as ``landmark_verdict``), made "review" when the lumen could not be
    measured at the annulus (points that do not fit the image, or an image without contrast there)."""
    out = {**quality, "landmark_verdict": quality.get("verdict", "ok"), "reasons": list(quality.get("reasons", []))}
    if not lumen.ok:
        out["reasons"].append(f"annulus lumen not measured: {lumen.reason}")
        if out["verdict"] == "ok":
            out["verdict"] = "review"
    return out


def make_plan(
    image: sitk.Image,
    names: Sequence[str],
    points_lps: npt.ArrayLike,
    detection: Detection | None = None,
    *,
    case: str = "",
    image_path: str = "",
    source: str | None = None,
) -> Plan:
    """Compute the plan of one CT from its landmarks.

    Args:
        image: the 3D CT in HU (LPS geometry), e.g. from ``io.read_image``.
        names: K landmark labels; RCC, LCC and NCC are needed, LCO and RCO give the coronary heights.
        points_lps: (K, 3) world LPS mm.
        detection: the Detection these points come from, for its quality-control verdict and confidences; None for
            points given by a user (then the hinge-geometry and image checks are run here).
        case: case name written into the plan.
        image_path: the image's file, written into the plan.
        source: where the points come from (default "detection" with a detection, else "landmarks").

    Returns:
        The Plan. A CT without a measurable lumen at the annulus gives ``plan.lumen.ok`` False with the reason.

    Raises:
        InputError: RCC, LCC or NCC missing, NaN/inf coordinates, or a degenerate hinge triangle.

    Example:
        >>> plan = make_plan(read_image("ct.nii.gz"), ["RCC", "LCC", "NCC"], points_lps)
        >>> plan.lumen.perimeter_mm, plan.carm.views["cusp_overlap"].label
    """
    names = list(names)
    points = geometry._as_points(points_lps, "landmarks", (len(names), 3))
    hinges = geometry.select_points(names, points, HINGE_NAMES)
    plane = geometry.annulus_plane(hinges)
    u, v = geometry.plane_axes(plane, hinges[0])
    if detection is not None and detection.quality is not None:
        quality = detection.quality.to_dict()
    else:
        quality = given_points_quality(image, names, points)
    lumen = measure_annulus(image, hinges)
    return Plan(
        case=case,
        names=names,
        points_lps=points,
        plane=plane,
        u_lps=u,
        v_lps=v,
        lumen=lumen,
        circumcircle=geometry.annulus_measurements(hinges),
        heights=ostia_heights(plane, names, points),
        carm=carm_plan(hinges),
        quality=with_plan_checks(quality, lumen),
        confidence=None if detection is None else np.asarray(detection.confidence, dtype=np.float64),
        source=source or ("detection" if detection is not None else "landmarks"),
        image_path=str(image_path),
    )
