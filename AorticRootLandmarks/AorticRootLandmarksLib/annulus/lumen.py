"""The annulus measured on the CT (steps 1-3 of the package docstring): the lumen traced on the plane of the hinge
points (trace.py), its numbers, and the warnings that say what to check.

Numpy and SimpleITK only: this module runs inside 3D Slicer's Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from ..constants import HINGE_NAMES
from ..geometry import _as_points, annulus_measurements, annulus_plane, plane_axes
from .contour import contour_measurements, polygon_centroid
from .plane import PlaneImage, reconstruct_plane
from .trace import LumenNotFound, TraceOptions, trace_lumen

ArrayLike = npt.ArrayLike

#: Warn above this scatter.
WARN_SCATTER_MM = 0.6
#: Warn when a hinge point lies farther than this (mm, in the plane) from the contour: on phantom CTs with true hinges
#: a correct contour passes within 1.7 mm of every hinge, the two grossly wrong ones 2.8 and 4.3 mm off.
WARN_HINGE_OFFSET_MM = 2.0
#: Warn when fewer rays than this fraction found a boundary consistent with the contour.
WARN_INLIER_FRACTION = 0.65
#: Warn when the largest arc without a boundary exceeds this (deg).
WARN_GAP_DEG = 60.0


@dataclass(frozen=True, eq=False)
class LumenMeasurement:
    """The annulus lumen traced on a plane image, or why it could not be (``ok`` False, numbers NaN).

    Attributes:
        ok: True when the contour was traced; reason: "" when ok, else one line saying why not.
        perimeter_mm, area_mm2: of the closed contour.
        min_diameter_mm, max_diameter_mm: minimum width and maximum length of the contour (calipers; the minor and
            major axes of an ellipse).
        perimeter_diameter_mm: perimeter / pi; area_diameter_mm: 2 sqrt(area / pi).
        eccentricity: 1 - min / max diameter (TAVI eccentricity index; 0 for a circle).
        contour_uv_mm: (M, 2) closed contour (first point not repeated), plane (u, v) mm.
        contour_lps: (M, 3) the same, world LPS mm.
        min_diameter_ends_lps, max_diameter_ends_lps: (2, 3) world LPS mm each.
        threshold_hu: the half-maximum ``(lumen + tissue) / 2`` the contour follows.
        plane_image: the reconstruction measured on (None only when the image could not be resampled).
        lumen_hu, tissue_hu: the lumen (median at the centre) and tissue (median outside the contour) HU.
        noise_hu: robust standard deviation of the (unsmoothed) plane image inside the lumen.
        inlier_fraction: fraction of rays whose boundary agreed with the fitted contour.
        largest_gap_deg: largest arc of the ring without such a boundary (bridged by the smooth contour).
        edge_scatter_mm: robust standard deviation of the rays' edges about the contour.
        hinge_offsets_mm: (3,) in-plane distance of RCC, LCC, NCC outside (+) or inside (-) the contour, along the
            ray from the contour's centroid. The hinges lie on the ring, so a large offset means a wrong contour
            (or wrong hinge points).
        warnings: one line each for a measurement to check (see :data:`WARN_HINGE_OFFSET_MM`,
            :data:`WARN_INLIER_FRACTION`, :data:`WARN_GAP_DEG`); empty when none.
        circumcircle: the circumcircle estimate from the hinge points (:func:`geometry.annulus_measurements`:
            ``circumcircle_diameter_mm``, ``circumcircle_perimeter_mm``, ``circumcircle_area_mm2``), a secondary
            estimate that underestimates the annulus; empty if not computed.
    """

    ok: bool
    reason: str
    perimeter_mm: float = float("nan")
    area_mm2: float = float("nan")
    min_diameter_mm: float = float("nan")
    max_diameter_mm: float = float("nan")
    perimeter_diameter_mm: float = float("nan")
    area_diameter_mm: float = float("nan")
    eccentricity: float = float("nan")
    contour_uv_mm: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    contour_lps: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    min_diameter_ends_lps: np.ndarray = field(default_factory=lambda: np.full((2, 3), np.nan))
    max_diameter_ends_lps: np.ndarray = field(default_factory=lambda: np.full((2, 3), np.nan))
    threshold_hu: float = float("nan")
    plane_image: PlaneImage | None = None
    lumen_hu: float = float("nan")
    tissue_hu: float = float("nan")
    noise_hu: float = float("nan")
    inlier_fraction: float = float("nan")
    largest_gap_deg: float = float("nan")
    edge_scatter_mm: float = float("nan")
    hinge_offsets_mm: np.ndarray = field(default_factory=lambda: np.full(3, np.nan))
    warnings: tuple[str, ...] = ()
    circumcircle: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary: numbers (NaN as None), contour and diameter ends in world LPS mm, no pixels."""

        def num(x: float) -> float | None:
            return float(x) if np.isfinite(x) else None

        def pts(a: np.ndarray) -> list:
            return [[num(v) for v in row] for row in np.asarray(a, dtype=np.float64)]

        out: dict[str, Any] = {"ok": bool(self.ok), "reason": self.reason, "coordinate_system": "LPS"}
        for key in _NUMBERS:
            out[key] = num(getattr(self, key))
        out["hinge_offsets_mm"] = dict(zip(HINGE_NAMES, (num(v) for v in self.hinge_offsets_mm), strict=True))
        out["warnings"] = list(self.warnings)
        out["min_diameter_ends_lps"] = pts(self.min_diameter_ends_lps)
        out["max_diameter_ends_lps"] = pts(self.max_diameter_ends_lps)
        out["contour_lps"] = pts(self.contour_lps)
        if self.plane_image is not None:
            pi = self.plane_image
            out["plane"] = {"center_lps": pts(pi.center_lps[None])[0], "u_lps": pts(pi.u_lps[None])[0],
                            "v_lps": pts(pi.v_lps[None])[0], "normal_lps": pts(pi.normal_lps[None])[0],
                            "spacing_mm": float(pi.spacing_mm), "slab_mm": float(pi.slab_mm)}  # fmt: skip
        out["circumcircle_estimate"] = {k: num(v) for k, v in self.circumcircle.items()}
        return out


#: The numbers of a LumenMeasurement, in the order of its ``to_dict``.
_NUMBERS = (
    "perimeter_mm", "area_mm2", "min_diameter_mm", "max_diameter_mm", "perimeter_diameter_mm", "area_diameter_mm",
    "eccentricity", "threshold_hu", "lumen_hu", "tissue_hu", "noise_hu", "inlier_fraction", "largest_gap_deg",
    "edge_scatter_mm",
)  # fmt: skip


def _failed(reason: str, plane: PlaneImage | None = None, circumcircle: dict | None = None) -> LumenMeasurement:
    return LumenMeasurement(ok=False, reason=reason, plane_image=plane, circumcircle=circumcircle or {})


def measure_annulus(
    image: sitk.Image,
    hinge_points_lps: ArrayLike,
    size_mm: float = 60.0,
    spacing_mm: float = 0.25,
    slab_mm: float = 1.0,
    options: TraceOptions | None = None,
) -> LumenMeasurement:
    """Measure the annulus on the CT: the lumen contour on the plane of the hinge points.

    Args:
        image: 3D CT in HU (any spacing, direction cosines; LPS).
        hinge_points_lps: (3, 3) world LPS mm, order RCC, LCC, NCC.
        size_mm, spacing_mm: of the plane image (:func:`annulus_plane_image`).
        slab_mm: thickness across the plane averaged against noise.
        options: :class:`TraceOptions`; None = the defaults.

    Returns:
        The :class:`LumenMeasurement`; ``ok`` False with a one-line reason when the image shows no measurable lumen
        there (never raises for a bad image).

    Raises:
        InputError: bad arguments: hinge points not (3, 3) finite, degenerate hinge triangle (via
            :func:`geometry.annulus_plane`), bad size or spacing.
    """
    points = _as_points(hinge_points_lps, "hinge points", (3, 3))
    circ = {k: v for k, v in annulus_measurements(points).items() if k.startswith("circumcircle_") and "lps" not in k}
    plane = annulus_plane(points)
    u, v = plane_axes(plane, points[0])
    if not (isinstance(image, sitk.Image) and image.GetDimension() == 3 and image.GetNumberOfComponentsPerPixel() == 1):
        return _failed("image: a 3D scalar CT volume is needed", circumcircle=circ)
    plane_image = reconstruct_plane(image, plane.center, u, v, size_mm, spacing_mm, slab_mm)
    try:
        traced = trace_lumen(plane_image, options or TraceOptions())
    except LumenNotFound as why:
        return _failed(str(why), plane_image, circ)
    m = contour_measurements(traced["contour"])
    offsets = _hinge_offsets(plane_image.world_to_uv(points), traced["contour"])
    return LumenMeasurement(
        ok=True,
        reason="",
        perimeter_mm=m["perimeter_mm"],
        area_mm2=m["area_mm2"],
        min_diameter_mm=m["min_diameter_mm"],
        max_diameter_mm=m["max_diameter_mm"],
        perimeter_diameter_mm=m["perimeter_diameter_mm"],
        area_diameter_mm=m["area_diameter_mm"],
        eccentricity=m["eccentricity"],
        contour_uv_mm=traced["contour"],
        contour_lps=plane_image.uv_to_world(traced["contour"]),
        min_diameter_ends_lps=plane_image.uv_to_world(m["min_ends"]),
        max_diameter_ends_lps=plane_image.uv_to_world(m["max_ends"]),
        threshold_hu=traced["threshold"],
        plane_image=plane_image,
        lumen_hu=traced["lumen"],
        tissue_hu=traced["tissue"],
        noise_hu=traced["noise"],
        inlier_fraction=traced["inliers"],
        largest_gap_deg=traced["gap_deg"],
        edge_scatter_mm=traced["scatter"],
        hinge_offsets_mm=offsets,
        warnings=_warnings(traced, offsets),
        circumcircle=circ,
    )


def _hinge_offsets(hinges_uv: np.ndarray, contour_uv: np.ndarray) -> np.ndarray:
    """(3,) mm: each hinge's distance from the contour centroid minus the contour's radius in its direction."""
    centre = polygon_centroid(contour_uv)
    ring, rel = contour_uv - centre, hinges_uv - centre
    angle = np.arctan2(ring[:, 1], ring[:, 0])
    order = np.argsort(angle)
    radius = np.interp(np.arctan2(rel[:, 1], rel[:, 0]), angle[order], np.linalg.norm(ring, axis=1)[order],
                       period=2 * np.pi)  # fmt: skip
    return np.linalg.norm(rel, axis=1) - radius


def _warnings(traced: dict[str, Any], offsets: np.ndarray) -> tuple[str, ...]:
    """The lines that say what to check in a traced contour."""
    out = []
    for name, offset in zip(HINGE_NAMES, offsets, strict=True):
        if abs(offset) > WARN_HINGE_OFFSET_MM:
            side = "outside" if offset > 0 else "inside"
            out.append(f"hinge point {name} lies {abs(offset):.1f} mm {side} the traced contour: check the contour "
                       "(streaks, calcium, leaflets, noise) or the hinge point")  # fmt: skip
    if traced["scatter"] > WARN_SCATTER_MM:
        out.append(f"irregular lumen boundary: edges scatter {traced['scatter']:.1f} mm about the smooth contour")
    if traced["inliers"] < WARN_INLIER_FRACTION or traced["gap_deg"] > WARN_GAP_DEG:
        out.append(f"lumen boundary found on {100 * traced['inliers']:.0f} % of the ring (largest gap "
                   f"{traced['gap_deg']:.0f} deg); the rest is interpolated")  # fmt: skip
    return tuple(out)
