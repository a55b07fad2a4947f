"""Annulus geometry from the hinge points: plane, circumcircle, measurements, C-arm angles, plane metrics.

Every point here is in **world LPS mm** (x to the patient's Left, y to Posterior, z to Superior), and
hinge points come in the order ``RCC, LCC, NCC``. With that order the oriented normal
``(LCC - RCC) x (NCC - RCC)`` points from the left ventricle into the aorta, because RCC is anterior,
LCC left-posterior and NCC right-posterior (see docs/ARCHITECTURE.md).

C-arm convention (used by :func:`carm_view_vector`, :func:`carm_angles`, :func:`coplanar_cran_deg`,
:func:`implant_views`): patient supine, head first (as in the CT, so CT LPS and the cath-lab frame agree), the *view
vector* is the unit vector from the isocentre (the patient) towards the image detector, in LPS. Angles in degrees:
LAO positive / RAO negative, CRA(nial) positive / CAU(dal) negative, as DICOM's Positioner Primary and Secondary
Angles (PS3.3 C.8.7.5; sources and the plan's use of them: docs/PLAN.md)::

    v = (sin(lao) cos(cran), -cos(lao) cos(cran), sin(cran))
    AP (0, 0) -> (0, -1, 0)   detector above the patient's chest (anterior = -y)
    LAO 90    -> (1, 0, 0)    detector at the patient's left
    CRA 90    -> (0, 0, 1)    detector towards the head

Numpy only: this module runs inside 3D Slicer's Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from .constants import HINGE_NAMES
from .errors import InputError

#: Hinge-point triangles smaller than this (mm^2) have no usable plane (points coincide or are collinear).
MIN_TRIANGLE_AREA_MM2 = 1.0

ArrayLike = npt.ArrayLike


@dataclass(frozen=True, eq=False)
class Plane:
    """An oriented plane in world LPS mm.

    Attributes:
        center: (3,) a point of the plane, LPS mm (for :func:`annulus_plane`, the centroid of the points).
        normal: (3,) unit normal, LPS; oriented (for hinge points: from the left ventricle into the aorta).
    """

    center: np.ndarray
    normal: np.ndarray

    def __post_init__(self) -> None:
        center = _as_points(self.center, "plane center").reshape(3)
        normal = _as_points(self.normal, "plane normal").reshape(3)
        length = float(np.linalg.norm(normal))
        if length < 1e-12:
            raise InputError("plane normal: zero vector")
        center.flags.writeable = False
        normal = normal / length
        normal.flags.writeable = False
        object.__setattr__(self, "center", center)
        object.__setattr__(self, "normal", normal)

    def signed_distance_mm(self, points_lps: ArrayLike) -> np.ndarray:
        """Signed distances of points to the plane, positive on the side the normal points to.

        Args:
            points_lps: (..., 3) world LPS mm.

        Returns:
            (...,) mm.
        """
        return (np.asarray(points_lps, dtype=np.float64) - self.center) @ self.normal


def _as_points(points: ArrayLike, what: str, shape: tuple[int | None, ...] | None = None) -> np.ndarray:
    """Float64 copy of ``points``, checked to be finite and (optionally) of ``shape`` (None = any length)."""
    try:
        array = np.array(points, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InputError(f"{what}: not numeric ({error})") from None
    if shape is not None and (
        array.ndim != len(shape) or any(s is not None and a != s for a, s in zip(array.shape, shape, strict=True))
    ):
        wanted = "x".join("K" if s is None else str(s) for s in shape)
        raise InputError(f"{what}: expected shape {wanted}, got {'x'.join(map(str, array.shape)) or 'scalar'}")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{what}: contains NaN or infinite coordinates")
    return array


def select_points(
    names: Sequence[str], points_lps: ArrayLike, wanted: Sequence[str] = HINGE_NAMES
) -> np.ndarray:
    """The rows of `points_lps` labelled `wanted`, in that order: the one test of "are the hinge points there?".

    Args:
        names: K labels of the rows of `points_lps`.
        points_lps: (K, 3) world LPS mm.
        wanted: labels to pick (default RCC, LCC, NCC).

    Returns:
        (len(wanted), 3) world LPS mm.

    Raises:
        InputError: a wanted label is missing (e.g. a model without hinge points, or a renamed point).
    """
    points = np.asarray(points_lps, dtype=np.float64).reshape(-1, 3)
    names = list(names)
    missing = [w for w in wanted if w not in names]
    if missing:
        raise InputError(f"landmarks: no point labelled {', '.join(missing)} (have {', '.join(names) or 'none'})")
    return np.stack([points[names.index(w)] for w in wanted])


def _hinge_cross(points: np.ndarray, what: str) -> np.ndarray:
    """(p1 - p0) x (p2 - p0) of the first three points; InputError if their triangle is degenerate."""
    cross = np.cross(points[1] - points[0], points[2] - points[0])
    area = 0.5 * float(np.linalg.norm(cross))
    if area < MIN_TRIANGLE_AREA_MM2:
        raise InputError(
            f"{what}: the first three points are (nearly) collinear or coincident "
            f"(triangle area {area:.3g} mm^2 < {MIN_TRIANGLE_AREA_MM2:g} mm^2)"
        )
    return cross


def annulus_plane(points_lps: ArrayLike) -> Plane:
    """Oriented plane through hinge points.

    Args:
        points_lps: (K, 3) world LPS mm, K >= 3, in the order RCC, LCC, NCC (then any extra annulus points).

    Returns:
        K == 3: the exact plane through the points. K > 3: the least-squares plane (SVD of the centred
        points). Centre = centroid of the points. The normal is oriented like ``(p1 - p0) x (p2 - p0)``, which
        for RCC, LCC, NCC points from the left ventricle into the aorta.

    Raises:
        InputError: NaN/inf coordinates, fewer than 3 points, or a degenerate triangle of the first three
            points (area < 1 mm^2).

    Example:
        >>> annulus_plane([[0, -10, 0], [8.66, 5, 0], [-8.66, 5, 0]]).normal  # RCC, LCC, NCC in LPS
        array([0., 0., 1.])
    """
    points = _as_points(points_lps, "annulus points", (None, 3))
    if points.shape[0] < 3:
        raise InputError(f"annulus points: need at least 3 points, got {points.shape[0]}")
    cross = _hinge_cross(points, "annulus points")
    center = points.mean(axis=0)
    if points.shape[0] == 3:
        normal = cross
    else:
        # The right singular vector of the smallest singular value is the least-squares normal.
        normal = np.linalg.svd(points - center)[2][-1]
        if normal @ cross < 0:
            normal = -normal
    normal = normal / np.linalg.norm(normal)
    return Plane(center=center, normal=normal + 0.0)  # + 0.0 turns -0.0 into 0.0


def plane_axes(plane: Plane, toward: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Right-handed in-plane axes (u, v) with (u, v, normal) orthonormal.

    Args:
        plane: the plane (LPS).
        toward: (3,) world LPS mm; u points from the centre towards its projection on the plane
            (e.g. pass RCC to have u towards the right coronary cusp).

    Returns:
        u, v: (3,) unit vectors, LPS; v = normal x u.

    Raises:
        InputError: ``toward`` lies on the plane normal through the centre (no in-plane direction).
    """
    offset = _as_points(toward, "toward point", (3,)) - plane.center
    in_plane = offset - (offset @ plane.normal) * plane.normal
    length = float(np.linalg.norm(in_plane))
    if length < 1e-6:
        raise InputError("toward point: lies on the plane normal through the centre; no in-plane direction")
    u = in_plane / length
    return u, np.cross(plane.normal, u)


def circumcircle(points_lps: ArrayLike) -> tuple[np.ndarray, float]:
    """Circle through three points in 3D.

    Args:
        points_lps: (3, 3) world LPS mm.

    Returns:
        centre: (3,) LPS mm, in the plane of the points; radius in mm.

    Raises:
        InputError: NaN/inf or a degenerate triangle (area < 1 mm^2).
    """
    points = _as_points(points_lps, "circumcircle points", (3, 3))
    _hinge_cross(points, "circumcircle points")
    a, b = points[0] - points[2], points[1] - points[2]
    axb = np.cross(a, b)
    # Standard closed form of the circumcentre relative to the third vertex.
    center = points[2] + np.cross((a @ a) * b - (b @ b) * a, axb) / (2.0 * (axb @ axb))
    radius = float(np.linalg.norm(a) * np.linalg.norm(b) * np.linalg.norm(a - b) / (2.0 * np.linalg.norm(axb)))
    return center, radius


def annulus_measurements(points_lps: ArrayLike) -> dict[str, float | list[float]]:
    """Measurements of the annulus from the three hinge points (all values JSON-serialisable).

    The circumcircle through the three hinge points is only an estimate of the virtual basal ring: the real
    annulus is elliptic and needs a traced contour; three points fix a circle, not an ellipse. Report it as
    "circumcircle" values, not as the CT-measured annulus perimeter or area.

    Args:
        points_lps: (3, 3) world LPS mm, order RCC, LCC, NCC.

    Returns:
        ``circumcircle_diameter_mm``, ``circumcircle_perimeter_mm``, ``circumcircle_area_mm2``;
        inter-hinge distances ``RCC_LCC_mm``, ``LCC_NCC_mm``, ``NCC_RCC_mm``;
        central angles at the circumcentre of the arcs between consecutive hinges, ``RCC_LCC_deg``,
        ``LCC_NCC_deg``, ``NCC_RCC_deg`` (each the arc not containing the third hinge, summing to 360;
        120 each for a symmetric valve); ``plane_normal_lps`` (unit, LV -> aorta), ``plane_center_lps``
        (centroid) and ``circumcenter_lps`` as [x, y, z] lists, LPS mm.
    """
    points = _as_points(points_lps, "hinge points", (3, 3))
    plane = annulus_plane(points)
    center, radius = circumcircle(points)
    result: dict[str, float | list[float]] = {
        "circumcircle_diameter_mm": 2.0 * radius,
        "circumcircle_perimeter_mm": 2.0 * np.pi * radius,
        "circumcircle_area_mm2": np.pi * radius**2,
    }
    for i in range(3):
        j = (i + 1) % 3
        result[f"{HINGE_NAMES[i]}_{HINGE_NAMES[j]}_mm"] = float(np.linalg.norm(points[j] - points[i]))
    for i in range(3):
        j, k = (i + 1) % 3, (i + 2) % 3
        # Inscribed angle theorem: the arc i-j not containing k is twice the triangle's angle at k.
        e1, e2 = points[i] - points[k], points[j] - points[k]
        cos_k = np.clip(e1 @ e2 / (np.linalg.norm(e1) * np.linalg.norm(e2)), -1.0, 1.0)
        result[f"{HINGE_NAMES[i]}_{HINGE_NAMES[j]}_deg"] = float(2.0 * np.degrees(np.arccos(cos_k)))
    result["plane_normal_lps"] = plane.normal.tolist()
    result["plane_center_lps"] = plane.center.tolist()
    result["circumcenter_lps"] = center.tolist()
    return {key: float(value) if isinstance(value, (float, np.floating)) else value for key, value in result.items()}


class CarmAngles(NamedTuple):
    """A C-arm angulation in degrees (convention: module docstring). A tuple, so ``lao, cran = angles`` works.

    Attributes:
        lao_deg: LAO (+) / RAO (-).
        cran_deg: CRAN(ial) (+) / CAUD(al) (-).
    """

    lao_deg: float
    cran_deg: float

    @property
    def label(self) -> str:
        """How the cath lab says it, in whole degrees, e.g. ``"LAO 12 CAUD 8"`` (``"RAO 25 CAUD 30"``)."""
        lao, cran = round(self.lao_deg), round(self.cran_deg)
        return f"{'LAO' if lao >= 0 else 'RAO'} {abs(lao)} {'CRAN' if cran >= 0 else 'CAUD'} {abs(cran)}"

    def to_dict(self, digits: int = 2) -> dict[str, float | str]:
        """``{"lao_deg", "cran_deg", "label"}``: named fields for JSON (a bare tuple would be an unlabelled pair)."""
        return {"lao_deg": round(self.lao_deg, digits), "cran_deg": round(self.cran_deg, digits), "label": self.label}


def carm_view_vector(lao_deg: ArrayLike, cran_deg: ArrayLike) -> np.ndarray:
    """Unit view vector (isocentre -> detector, LPS) of a C-arm angulation, patient supine.

    Args:
        lao_deg: LAO (+) / RAO (-) angle in degrees, scalar or array.
        cran_deg: CRA (+) / CAU (-) angle in degrees, broadcastable with ``lao_deg``.

    Returns:
        (..., 3) ``(sin a cos b, -cos a cos b, sin b)``; AP -> (0, -1, 0), LAO 90 -> (1, 0, 0), CRA 90 -> (0, 0, 1).
    """
    a = np.radians(np.asarray(lao_deg, dtype=np.float64))
    b = np.radians(np.asarray(cran_deg, dtype=np.float64))
    a, b = np.broadcast_arrays(a, b)
    return np.stack([np.sin(a) * np.cos(b), -np.cos(a) * np.cos(b), np.sin(b)], axis=-1)


def carm_angles(view_vector: ArrayLike) -> CarmAngles:
    """C-arm angles of a view vector: inverse of :func:`carm_view_vector`.

    Args:
        view_vector: (3,) LPS direction isocentre -> detector (any length > 0).

    Returns:
        CarmAngles (lao_deg, cran_deg): LAO in (-180, 180] (RAO negative), CRA in [-90, 90] (CAU negative). For a
        purely cranial/caudal vector the LAO angle is undefined and returned as 0.
    """
    v = _as_points(view_vector, "view vector", (3,))
    length = float(np.linalg.norm(v))
    if length < 1e-12:
        raise InputError("view vector: zero vector")
    v = v / length
    cran = float(np.degrees(np.arcsin(np.clip(v[2], -1.0, 1.0)))) + 0.0  # + 0.0: no -0.0 in reports
    if np.hypot(v[0], v[1]) < 1e-12:
        return CarmAngles(0.0, cran)
    return CarmAngles(float(np.degrees(np.arctan2(v[0], -v[1]))) + 0.0, cran)


def coplanar_cran_deg(normal: ArrayLike, lao_deg: ArrayLike) -> float | np.ndarray:
    """The S-curve: CRA/CAU angle at which a plane is seen edge-on for a given LAO/RAO.

    Solves ``carm_view_vector(lao, cran) . normal = 0``:
    ``tan(cran) = (n_y cos(lao) - n_x sin(lao)) / n_z``. The sign of the normal does not matter.

    Args:
        normal: (3,) plane normal, LPS.
        lao_deg: LAO (+) / RAO (-) degrees, scalar or array.

    Returns:
        CRA (+) / CAU (-) degrees in [-90, 90], float for a scalar ``lao_deg``, else an array of its shape.
        For a horizontal normal (n_z = 0) the answer is +-90 (or 0 where every angle works).
    """
    n = _as_points(normal, "plane normal", (3,))
    if np.linalg.norm(n) < 1e-12:
        raise InputError("plane normal: zero vector")
    if n[2] < 0:
        n = -n  # same plane; n_z >= 0 keeps atan2 in [-90, 90]
    a = np.radians(np.asarray(lao_deg, dtype=np.float64))
    cran = np.degrees(np.arctan2(n[1] * np.cos(a) - n[0] * np.sin(a), n[2]))
    return float(cran) if cran.ndim == 0 else cran


def _anterior_view(direction: np.ndarray) -> np.ndarray:
    """Unit view vector along +-direction with the detector on the anterior side (v_y < 0) if possible."""
    v = direction / np.linalg.norm(direction)
    # A view vector with v_y > 0 puts the detector under the table: the C-arm cannot go there.
    if v[1] > 1e-9 or (abs(v[1]) <= 1e-9 and v[2] < 0):
        v = -v
    return v


def implant_views(points_lps: ArrayLike) -> dict[str, CarmAngles]:
    """The two standard TAVI implantation views, both on the S-curve (annulus plane seen edge-on).

    - ``three_cusp`` (coplanar three-cusp view): the view direction is in the annulus plane along
      ``RCC - (LCC + NCC)/2``, so RCC projects onto the midpoint of LCC and NCC (centred between them).
    - ``cusp_overlap``: the view direction is in the annulus plane along ``LCC - RCC``, so RCC and LCC project
      onto the same detector point and NCC is seen apart (the usual RAO-caudal view).

    Of the two opposite directions, the one with the detector on the patient's anterior side (v_y < 0) is taken,
    which is the one a C-arm over a supine patient can reach.

    Args:
        points_lps: (3, 3) world LPS mm, order RCC, LCC, NCC.

    Returns:
        ``{"three_cusp": CarmAngles, "cusp_overlap": CarmAngles}``, each a named pair (lao_deg, cran_deg) (see the
        module docstring for the angle convention); ``CarmAngles.to_dict()`` names the fields for JSON.
    """
    points = _as_points(points_lps, "hinge points", (3, 3))
    _hinge_cross(points, "hinge points")
    rcc, lcc, ncc = points
    # Both directions are differences of points of the plane, so they are in-plane: v . n = 0 by construction.
    return {
        "three_cusp": carm_angles(_anterior_view(rcc - 0.5 * (lcc + ncc))),
        "cusp_overlap": carm_angles(_anterior_view(lcc - rcc)),
    }


def plane_distance_mm(pred_lps: ArrayLike, true_lps: ArrayLike) -> float:
    """Average projection distance between the predicted and true hinge-point planes (paper, eq. 9).

    Our reading of eq. 9, made symmetric: the mean of (a) the mean absolute distance of the true hinge points to
    the predicted plane and (b) the mean absolute distance of the predicted hinge points to the true plane.

    Args:
        pred_lps: (3, 3) predicted RCC, LCC, NCC, world LPS mm.
        true_lps: (3, 3) true RCC, LCC, NCC, world LPS mm.

    Returns:
        Distance in mm (0 for identical sets; d for a prediction shifted by d along the normal).
    """
    pred = _as_points(pred_lps, "predicted hinge points", (None, 3))
    true = _as_points(true_lps, "true hinge points", (None, 3))
    pred_plane, true_plane = annulus_plane(pred), annulus_plane(true)
    true_to_pred = np.abs(pred_plane.signed_distance_mm(true)).mean()
    pred_to_true = np.abs(true_plane.signed_distance_mm(pred)).mean()
    return float(0.5 * (true_to_pred + pred_to_true))


def plane_angle_deg(pred_lps: ArrayLike, true_lps: ArrayLike) -> float:
    """Angle between the oriented normals of the predicted and true hinge-point planes.

    The normals are oriented (RCC, LCC, NCC order, from :func:`annulus_plane`), so the range is [0, 180]:
    a prediction with two cusps swapped (mirror order) shows up as an angle near 180, not 0.

    Args:
        pred_lps: (3, 3) predicted RCC, LCC, NCC, world LPS mm.
        true_lps: (3, 3) true RCC, LCC, NCC, world LPS mm.

    Returns:
        Degrees in [0, 180].
    """
    n_pred = annulus_plane(pred_lps).normal
    n_true = annulus_plane(true_lps).normal
    # atan2 of |cross| and dot is accurate at small angles, where arccos(dot) loses precision.
    return float(np.degrees(np.arctan2(np.linalg.norm(np.cross(n_pred, n_true)), n_pred @ n_true)))
