"""The lumen traced on the annulus plane image and measured (steps 2 and 3 of the package docstring).

Numpy and SimpleITK only: this module runs inside 3D Slicer's Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from ..constants import AIR_HU, HINGE_NAMES
from ..geometry import _as_points, annulus_measurements, annulus_plane, plane_axes
from .contour import contour_measurements, polygon_centroid
from .plane import PlaneImage, reconstruct_plane, sample_bilinear

ArrayLike = npt.ArrayLike

#: HU below which the plane centre is not contrast-filled lumen (unenhanced blood is ~40 HU, myocardium ~100 HU).
MIN_LUMEN_HU = 150.0
#: Lumen minus tissue HU below which the boundary is not measurable.
MIN_CONTRAST_HU = 80.0
#: Fraction of rays that must find the lumen boundary, and agree with the fitted contour, for a measurement.
MIN_INLIER_FRACTION = 0.5
#: Largest arc of the ring (deg) without a boundary found on the CT, bridged by the smooth contour.
MAX_GAP_DEG = 90.0
#: Edges scattered more than this (mm, robust SD about the smooth contour) are noise, not a lumen boundary: on
#: phantom CTs the traced contours scatter 0.1-0.6 mm, a grossly wrong one (noise 67 HU on 200 HU contrast) 1.2 mm.
MAX_SCATTER_MM = 1.0
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


@dataclass(frozen=True)
class TraceOptions:
    """How :func:`trace_lumen` finds the lumen on a plane image (defaults chosen on phantom CTs with
    benchmarks/bench_annulus.py; the module docstring says what each step does).

    Attributes:
        smooth_mm: Gaussian sigma of the in-plane smoothing before thresholding, mm.
        center_disc_mm: radius of the disc at the ray origin whose upper-quartile HU is the first lumen estimate.
        n_rays: rays over 360 deg.
        ray_step_mm: sample spacing along a ray.
        max_radius_mm: rays end here (larger lumens are refused).
        min_run_mm: the lumen ends at a crossing after which the profile stays below threshold this far.
        harmonics: Fourier harmonics of the contour's radius over the angle.
        stiffness: smoothness penalty of the Fourier fit (:func:`_smooth_fit`).
        calcium_sigma: samples above lumen + max(this x noise, ``calcium_rel`` x (lumen - tissue)) are calcium.
        calcium_rel: see ``calcium_sigma``.
        calcium_margin_mm: calcium is grown by this for its blurred rim.
        recentre: times the ray origin moves to the contour's centroid.
        tissue_from_mm, tissue_to_mm: where outside the edge the tissue (wall) HU is looked for.
        local_deg: width of the neighbourhood of a ray whose edge profile gives its threshold.
        local_passes: times the local thresholds are re-estimated from the edges they found.
        gradient_window_mm: edges move to the steepest fall within this distance (0: stay at the threshold).
    """

    smooth_mm: float = 0.5
    center_disc_mm: float = 4.0
    n_rays: int = 360
    ray_step_mm: float = 0.1
    max_radius_mm: float = 25.0
    min_run_mm: float = 3.0
    harmonics: int = 8
    stiffness: float = 3e-2
    calcium_sigma: float = 5.0
    calcium_rel: float = 0.5
    calcium_margin_mm: float = 1.5
    recentre: int = 2
    tissue_from_mm: float = 0.5
    tissue_to_mm: float = 3.5
    local_deg: float = 40.0
    local_passes: int = 2
    gradient_window_mm: float = 0.5


class LumenNotFound(Exception):
    """:func:`trace_lumen` found no measurable lumen; the message is the reason (:func:`measure_annulus` turns it into
    ``ok=False``, never raises it)."""


def _smooth(plane: PlaneImage, sigma_mm: float) -> np.ndarray:
    """(N_v, N_u) float32: the plane image smoothed by a Gaussian of ``sigma_mm`` (physical units)."""
    if sigma_mm <= 0:
        return plane.pixels
    img = sitk.GetImageFromArray(plane.pixels.astype(np.float32))
    img.SetSpacing((plane.spacing_mm, plane.spacing_mm))
    return sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(img, float(sigma_mm)))


def _disc_stats(pixels: np.ndarray, plane: PlaneImage, center_uv: np.ndarray, radius_mm: float) -> tuple[float, float]:
    """Upper quartile and robust standard deviation (1.4826 MAD) of the pixels within ``radius_mm`` of
    ``center_uv``: the quartile, not the median, so that a leaflet or coaptation line across the centre does not
    hide the contrast around it."""
    n_v, n_u = pixels.shape
    uv = plane.pixel_to_uv(np.stack(np.meshgrid(np.arange(n_u), np.arange(n_v)), axis=-1).reshape(-1, 2))
    values = pixels.reshape(-1)[np.linalg.norm(uv - center_uv, axis=1) <= radius_mm]
    if values.size == 0:
        return float(AIR_HU), 0.0
    median = float(np.median(values))
    return float(np.percentile(values, 75)), float(1.4826 * np.median(np.abs(values - median)))


def _profiles(pixels: np.ndarray, plane: PlaneImage, center_uv: np.ndarray, opts: TraceOptions, fill: float = AIR_HU):
    """Ray profiles (n_rays, n_samples) HU from ``center_uv``, with the angles (rad) and the sample radii (mm)."""
    angles = np.arange(opts.n_rays) * (2 * np.pi / opts.n_rays)
    radii = np.arange(0.0, opts.max_radius_mm + 1e-9, opts.ray_step_mm)
    dirs = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    uv = center_uv + radii[None, :, None] * dirs[:, None, :]
    return sample_bilinear(pixels, plane.uv_to_pixel(uv.reshape(-1, 2)).reshape(uv.shape), fill), angles, radii


def _ray_edges(profiles: np.ndarray, radii: np.ndarray, threshold: Any, opts: TraceOptions) -> np.ndarray:
    """Per ray the radius (mm, sub-sample) where the lumen ends: the down-crossing of ``threshold`` after which the
    profile stays below it for ``min_run_mm`` (the first sample never counts: the origin is in the lumen); NaN if
    there is none."""
    threshold = np.broadcast_to(np.asarray(threshold, dtype=np.float64), profiles.shape[:1])
    below = profiles < threshold[:, None]
    run = max(1, int(round(opts.min_run_mm / opts.ray_step_mm)))
    csum = np.concatenate([np.zeros((below.shape[0], 1)), np.cumsum(below, axis=1)], axis=1)
    sustained = (csum[:, run:] - csum[:, :-run]) == run  # (rays, samples - run + 1): all below from j on
    sustained[:, 0] = False  # the ray must start in the lumen
    has = sustained.any(axis=1)
    j = np.argmax(sustained, axis=1)
    rows = np.arange(profiles.shape[0])
    jm = np.maximum(j - 1, 0)
    p0, p1 = profiles[rows, jm], profiles[rows, j]
    frac = np.clip((p0 - threshold) / np.where(p0 - p1 > 1e-9, p0 - p1, np.inf), 0.0, 1.0)
    edge = radii[jm] + frac * (radii[j] - radii[jm])
    return np.where(has, edge, np.nan)


def _steepest_descent(profiles: np.ndarray, edges: np.ndarray, opts: TraceOptions) -> np.ndarray:
    """Move each edge to the steepest fall of its profile within ``gradient_window_mm`` (parabolic sub-sample peak).

    The steepest point of a blurred step is its position whatever the HU on either side, so the edge no longer
    depends on the tissue HU estimate (a thin dark wall in front of brighter myocardium biases a half maximum).
    """
    step = opts.ray_step_mm
    slope = np.gradient(profiles, step, axis=1)
    half = max(1, int(round(opts.gradient_window_mm / step)))
    centre = np.round(np.nan_to_num(edges, nan=0.0) / step).astype(np.intp)
    idx = np.clip(centre[:, None] + np.arange(-half, half + 1)[None, :], 1, profiles.shape[1] - 2)
    rows = np.arange(profiles.shape[0])[:, None]
    k = idx[rows[:, 0], np.argmin(slope[rows, idx], axis=1)]
    r = np.arange(profiles.shape[0])
    g0, g1, g2 = slope[r, k - 1], slope[r, k], slope[r, k + 1]
    curvature = g0 - 2 * g1 + g2
    shift = np.where(curvature > 1e-9, 0.5 * (g0 - g2) / np.where(curvature > 1e-9, curvature, 1.0), 0.0)
    return np.where(np.isfinite(edges), (k + np.clip(shift, -0.5, 0.5)) * step, np.nan)


def _calcium_near(
    pixels: np.ndarray, plane: PlaneImage, origin_uv: np.ndarray, calcium_hu: float, opts: TraceOptions
) -> np.ndarray | None:
    """(n_rays, n_samples) bool: calcium (above ``calcium_hu``, grown by ``calcium_margin_mm`` for its blurred
    rim) along each ray; None if there is none."""
    mask = pixels > calcium_hu
    if not mask.any():
        return None
    radius = max(1, int(round(opts.calcium_margin_mm / plane.spacing_mm)))
    grown = sitk.BinaryDilate(sitk.GetImageFromArray(mask.astype(np.uint8)), [radius, radius], sitk.sitkBall)
    near = _profiles(sitk.GetArrayFromImage(grown).astype(np.float32), plane, origin_uv, opts, fill=0.0)[0]
    return near > 0.5


def _drop_calcium(edges: np.ndarray, near: np.ndarray | None, radii: np.ndarray) -> np.ndarray:
    """``edges`` with NaN where calcium lies on the ray from 2 mm inside to 1 mm outside the edge (the edge may be
    calcium's, not the lumen's)."""
    if near is None:
        return edges
    e = np.nan_to_num(edges, nan=-10.0)[:, None]
    hit = np.any(near & (radii[None, :] >= e - 2.0) & (radii[None, :] <= e + 1.0), axis=1)
    return np.where(hit, np.nan, edges)


def _fourier_basis(angles: np.ndarray, harmonics: int) -> np.ndarray:
    """(n, 1 + 2 H) columns 1, cos(h a), sin(h a) for h = 1..H."""
    h = np.arange(1, harmonics + 1)
    return np.concatenate([np.ones((angles.size, 1)), np.cos(np.outer(angles, h)), np.sin(np.outer(angles, h))], 1)


def _smooth_fit(angles: np.ndarray, radii: np.ndarray, use: np.ndarray, harmonics: int, stiffness: float) -> np.ndarray:
    """Least-squares Fourier series of ``radii[use]`` over ``angles[use]`` with a smoothness penalty
    ``stiffness * n_used * sum_{h > 2} (h - 2)^4 (a_h^2 + b_h^2)``: it bridges gaps left by calcium or leaflets
    smoothly and damps wiggles that would lengthen the perimeter, while the mean radius and harmonics 1 and 2 (an
    ellipse, to first order, off centre or not) are free, so an elliptic ring is not made rounder. Returns the
    fitted radius at every angle."""
    basis = _fourier_basis(angles, harmonics)
    h = np.arange(1, harmonics + 1, dtype=np.float64)
    w = np.maximum(h - 2.0, 0.0) ** 2  # harmonics 1 and 2 (an off-centre ellipse, to first order) go free
    penalty = np.sqrt(stiffness * use.sum()) * np.concatenate([[0.0], w, w])
    design = np.concatenate([basis[use], np.diag(penalty)[1:]], axis=0)
    target = np.concatenate([radii[use], np.zeros(2 * harmonics)])
    return basis @ np.linalg.lstsq(design, target, rcond=None)[0]


def fit_ellipse(points: ArrayLike) -> np.ndarray | None:
    """Direct least-squares ellipse fit (Fitzgibbon et al. 1999, in the stable form of Halir & Flusser 1998).

    Args:
        points: (M, 2) points, M >= 5.

    Returns:
        (6,) conic ``(A, B, C, D, E, F)`` of ``A x^2 + B x y + C y^2 + D x + E y + F = 0`` with ``4AC - B^2 > 0``
        (an ellipse), in the points' frame; None if the points fix no ellipse.
    """
    p = np.asarray(points, dtype=np.float64)
    centre, scale = p.mean(axis=0), float(np.std(p)) or 1.0
    x, y = ((p - centre) / scale).T  # centred and scaled: a well-conditioned scatter matrix
    d1 = np.stack([x * x, x * y, y * y], axis=1)
    d2 = np.stack([x, y, np.ones_like(x)], axis=1)
    s1, s2, s3 = d1.T @ d1, d1.T @ d2, d2.T @ d2
    try:
        t = -np.linalg.solve(s3, s2.T)
        m = s1 + s2 @ t
        m = np.stack([m[2] / 2, -m[1], m[0] / 2])  # C1^-1 M: the ellipse constraint 4AC - B^2 = 1
        _, vectors = np.linalg.eig(m)
    except np.linalg.LinAlgError:
        return None
    vectors = np.real(vectors)
    good = 4 * vectors[0] * vectors[2] - vectors[1] ** 2 > 0
    if not good.any():
        return None
    a1 = vectors[:, int(np.argmax(good))]
    a, b, c, d, e, f = np.concatenate([a1, t @ a1])
    # Back to the original frame: x' = (x - cx) / s.
    cx, cy = centre
    k = 1.0 / scale
    A, B, C = a * k * k, b * k * k, c * k * k
    D = -2 * A * cx - B * cy + d * k
    E = -2 * C * cy - B * cx + e * k
    F = A * cx * cx + B * cx * cy + C * cy * cy - d * k * cx - e * k * cy + f
    return np.array([A, B, C, D, E, F])


def _ellipse_radius(conic: np.ndarray, origin: np.ndarray, angles: np.ndarray) -> np.ndarray | None:
    """Distance from ``origin`` (inside the ellipse) to the conic along each ray; None if a ray misses it."""
    A, B, C, D, E, F = conic
    c, s = np.cos(angles), np.sin(angles)
    ox, oy = origin
    qa = A * c * c + B * c * s + C * s * s
    qb = 2 * A * ox * c + B * (ox * s + oy * c) + 2 * C * oy * s + D * c + E * s
    qc = A * ox * ox + B * ox * oy + C * oy * oy + D * ox + E * oy + F
    disc = qb * qb - 4 * qa * qc
    if np.any(disc < 0) or np.any(np.abs(qa) < 1e-15):
        return None
    t = np.maximum((-qb + np.sqrt(disc)) / (2 * qa), (-qb - np.sqrt(disc)) / (2 * qa))
    return t if np.all(t > 0) and np.all(np.isfinite(t)) else None


def _ring_fit(angles: np.ndarray, r: np.ndarray, use: np.ndarray, harmonics: int, opts: TraceOptions) -> np.ndarray:
    """The contour radius over the angle: an ellipse fitted to the edges plus a smooth Fourier series of the edges'
    deviations from it (:func:`_smooth_fit`), so the smoothness penalty never makes an elliptic ring rounder and a
    gap is bridged along the ellipse."""
    points = r[use, None] * np.stack([np.cos(angles[use]), np.sin(angles[use])], axis=1)
    conic = fit_ellipse(points) if use.sum() >= 10 and harmonics > 2 else None
    base = None if conic is None else _ellipse_radius(conic, np.zeros(2), angles)
    if base is None:
        base = np.zeros_like(angles)
    return base + _smooth_fit(angles, r - base, use, harmonics, opts.stiffness)


def _robust_fourier_fit(
    angles: np.ndarray, edges: np.ndarray, opts: TraceOptions
) -> tuple[np.ndarray, np.ndarray, float]:
    """Smooth fit of the edge radius over the angle (:func:`_ring_fit`), iterated without outliers.

    Outliers: residuals beyond max(3.5 x 1.4826 MAD, 0.5 mm) from the current fit, which starts as a 2-harmonic
    (elliptic) fit to the rays within 3 MAD of the median radius.

    Returns:
        The fitted radius at ``angles``, the (n_rays,) bool inlier mask and the scatter of the edges about the fit
        (1.4826 x median absolute residual of all rays with an edge, mm).
    """
    valid = np.isfinite(edges)
    if valid.sum() < max(3 * (1 + 2 * opts.harmonics), 8):
        raise LumenNotFound(f"lumen boundary found on only {valid.sum()} of {edges.size} rays")
    r = np.where(valid, edges, 0.0)
    med = np.median(r[valid])
    mad = 1.4826 * np.median(np.abs(r[valid] - med))
    inliers = valid & (np.abs(r - med) <= max(3 * mad, 1.0))
    fit = np.full(edges.shape, med)
    for h in (2, opts.harmonics, opts.harmonics, opts.harmonics):
        if inliers.sum() < 1 + 2 * h + 4:
            break
        fit = _ring_fit(angles, r, inliers, h, opts)
        res = np.abs(r - fit)
        scale = 1.4826 * np.median(res[inliers])
        inliers = valid & (res <= max(3.5 * scale, 0.5))
    return fit, inliers, float(1.4826 * np.median(np.abs(r - fit)[valid]))


def _aligned(profiles: np.ndarray, edges: np.ndarray, offsets: np.ndarray, step_mm: float) -> np.ndarray:
    """(n_rays, n_offsets) the profiles sampled at ``edge + offsets`` mm (linear); NaN rows for rays without edge."""
    where = (np.nan_to_num(edges, nan=0.0)[:, None] + offsets[None, :]) / step_mm  # continuous sample index
    j = np.clip(np.floor(where).astype(np.intp), 0, profiles.shape[1] - 2)
    f = np.clip(where - j, 0.0, 1.0)
    rows = np.arange(profiles.shape[0])[:, None]
    out = profiles[rows, j] * (1 - f) + profiles[rows, j + 1] * f
    out[~np.isfinite(edges)] = np.nan
    return out


def _lumen_tissue_hu(
    profiles: np.ndarray, radii: np.ndarray, edges: np.ndarray, opts: TraceOptions
) -> tuple[float, float]:
    """The lumen HU (median inside 70 % of the edge radius) and the tissue HU just outside the edges.

    The lumen from the whole lumen, not the centre disc alone: a streak across the centre would bias a small disc.
    The tissue from the edge profile (median over rays of the profiles aligned on their edges): its minimum
    between ``tissue_from_mm`` and ``tissue_to_mm`` outside the edge, the wall next to the lumen. The half maximum
    of the lumen-wall step is the boundary; a mean over wall and brighter myocardium behind it would move it inwards.
    """
    valid = np.isfinite(edges)
    if not valid.any():
        raise LumenNotFound(f"no lumen boundary found within {opts.max_radius_mm:.0f} mm of the plane centre")
    lumen = profiles[valid][radii[None, :] <= 0.7 * edges[valid][:, None]]
    offsets = np.arange(opts.tissue_from_mm, opts.tissue_to_mm + 1e-9, opts.ray_step_mm)
    aligned = _aligned(profiles[valid], edges[valid], offsets, opts.ray_step_mm)
    return float(np.median(lumen)), float(np.min(np.median(aligned, axis=0)))


def _local_thresholds(profiles: np.ndarray, edges: np.ndarray, opts: TraceOptions, fallback: float) -> np.ndarray:
    """(n_rays,) half-maximum thresholds from the edge profile of each ray's neighbourhood (``local_deg`` wide).

    Streaks, calcium glare, a partly enhanced outflow tract or a neighbouring chamber change the lumen and tissue HU
    around the ring; a global threshold then moves the contour where they differ. Per neighbourhood: the median of
    the rays' profiles aligned on their edges; lumen = its mean from 3 to 1.5 mm inside the edge, tissue = its
    minimum from ``tissue_from_mm`` to ``tissue_to_mm`` outside. ``fallback`` where too few rays have an edge.
    """
    n = profiles.shape[0]
    half = max(1, int(round(opts.local_deg / 2 / (360.0 / n))))
    inside = np.arange(-3.0, -1.5 + 1e-9, opts.ray_step_mm)
    outside = np.arange(opts.tissue_from_mm, opts.tissue_to_mm + 1e-9, opts.ray_step_mm)
    aligned = _aligned(profiles, edges, np.concatenate([inside, outside]), opts.ray_step_mm)
    window = aligned[(np.arange(n)[:, None] + np.arange(-half, half + 1)[None, :]) % n]  # (n, 2 half + 1, offsets)
    enough = np.isfinite(window[:, :, 0]).sum(axis=1) >= (2 * half + 1) / 3
    thresholds = np.full(n, float(fallback))
    if enough.any():
        median = np.nanmedian(window[enough], axis=1)
        lumen = median[:, : inside.size].mean(axis=1)
        tissue = median[:, inside.size :].min(axis=1)
        thresholds[enough] = 0.5 * (lumen + tissue)
    return thresholds


def _levels(profiles: np.ndarray, radii: np.ndarray, lumen: float, opts: TraceOptions) -> tuple[float, float, float]:
    """Lumen HU, tissue HU and their half maximum, iterated from a first lumen estimate (tissue ~60 HU)."""
    threshold = 0.5 * (lumen + 60.0)
    for _ in range(3):  # half maximum from the lumen inside and the tissue outside the current edges
        lumen, tissue = _lumen_tissue_hu(profiles, radii, _ray_edges(profiles, radii, threshold, opts), opts)
        threshold = 0.5 * (lumen + tissue)
    if lumen - tissue < MIN_CONTRAST_HU:
        raise LumenNotFound(f"lumen ({lumen:.0f} HU) not distinguishable from the tissue around it ({tissue:.0f} HU)")
    return lumen, tissue, threshold


def _edges(
    pixels: np.ndarray, plane: PlaneImage, origin_uv: np.ndarray, profiles: np.ndarray, radii: np.ndarray,
    levels: tuple[float, float, float], noise: float, opts: TraceOptions,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Per ray the lumen edge (mm, NaN where none or calcium) and the local threshold (HU) that found it."""
    lumen, tissue, threshold = levels
    calcium_hu = lumen + max(opts.calcium_sigma * noise, opts.calcium_rel * (lumen - tissue))
    near = _calcium_near(pixels, plane, origin_uv, calcium_hu, opts)
    thresholds = np.full(profiles.shape[0], threshold)
    edges = _drop_calcium(_ray_edges(profiles, radii, thresholds, opts), near, radii)
    for _ in range(opts.local_passes):
        thresholds = _local_thresholds(profiles, edges, opts, threshold)
        edges = _drop_calcium(_ray_edges(profiles, radii, thresholds, opts), near, radii)
    if opts.gradient_window_mm > 0:
        edges = _steepest_descent(profiles, edges, opts)
    return edges, thresholds


def _largest_gap_deg(inliers: np.ndarray) -> float:
    """Largest run of consecutive rays (circularly) without an inlier edge, in degrees."""
    if not inliers.any():
        return 360.0
    where = np.flatnonzero(inliers)
    gaps = np.diff(np.concatenate([where, [where[0] + inliers.size]])) - 1
    return float(gaps.max() * 360.0 / inliers.size)


def _trace_once(pixels: np.ndarray, plane: PlaneImage, origin_uv: np.ndarray, opts: TraceOptions) -> dict[str, Any]:
    """One pass of rays from ``origin_uv``: lumen/tissue HU, threshold, edges, calcium, robust fit, contour."""
    lumen, noise = _disc_stats(pixels, plane, origin_uv, opts.center_disc_mm)
    if not lumen >= MIN_LUMEN_HU:
        raise LumenNotFound(f"no contrast-filled lumen at the plane centre ({lumen:.0f} HU < {MIN_LUMEN_HU:.0f})")
    profiles, angles, radii = _profiles(pixels, plane, origin_uv, opts)
    levels = _levels(profiles, radii, lumen, opts)
    edges, thresholds = _edges(pixels, plane, origin_uv, profiles, radii, levels, noise, opts)
    fit, inliers, scatter = _robust_fourier_fit(angles, edges, opts)
    gap = _largest_gap_deg(inliers)
    if inliers.mean() < MIN_INLIER_FRACTION or gap > MAX_GAP_DEG:
        why = f"lumen boundary found on only {100 * inliers.mean():.0f} % of the ring (largest gap {gap:.0f} deg)"
        raise LumenNotFound(why)
    if scatter > MAX_SCATTER_MM:
        why = f"lumen boundary too irregular to trace: edges scatter {scatter:.1f} mm about a smooth ring"
        raise LumenNotFound(why + " (noise, low contrast or streaks)")
    reach = opts.max_radius_mm - opts.min_run_mm
    if np.any(fit <= 0.5) or np.any(fit >= reach):
        raise LumenNotFound(f"lumen not closed within {reach:.0f} mm of the plane centre")
    contour = origin_uv + fit[:, None] * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return {
        "contour": contour, "lumen": levels[0], "tissue": levels[1], "threshold": float(np.median(thresholds)),
        "inliers": float(inliers.mean()), "gap_deg": gap, "scatter": scatter, "origin": origin_uv,
        "angles": angles, "edges": edges, "inlier_mask": inliers,
    }  # fmt: skip


def _lumen_noise(plane: PlaneImage, contour_uv: np.ndarray, origin_uv: np.ndarray) -> float:
    """Robust standard deviation (1.4826 MAD) of the unsmoothed plane pixels inside 60 % of the contour."""
    n_v, n_u = plane.pixels.shape
    uv = plane.pixel_to_uv(np.stack(np.meshgrid(np.arange(n_u), np.arange(n_v)), axis=-1).reshape(-1, 2))
    rel, ring = uv - origin_uv, contour_uv - origin_uv
    angle_px = np.arctan2(rel[:, 1], rel[:, 0])
    angle_ring = np.arctan2(ring[:, 1], ring[:, 0])
    order = np.argsort(angle_ring)
    radius = np.interp(angle_px, angle_ring[order], np.linalg.norm(ring, axis=1)[order], period=2 * np.pi)
    values = plane.pixels.reshape(-1)[np.linalg.norm(rel, axis=1) <= 0.6 * radius]
    return float(1.4826 * np.median(np.abs(values - np.median(values)))) if values.size else float("nan")


def trace_lumen(plane: PlaneImage, opts: TraceOptions = TraceOptions()) -> dict[str, Any]:
    """Trace the contrast-filled lumen around the centre of a plane image (see the module docstring).

    Returns:
        ``contour`` (M, 2) plane (u, v) mm; ``lumen``, ``tissue``, ``threshold`` (HU, the median of the local
        thresholds); ``noise`` (HU, robust standard deviation of the unsmoothed lumen); ``inliers`` (fraction of
        rays on the contour), ``gap_deg`` (largest arc without them) and ``scatter`` (mm, robust standard deviation
        of the edges about the contour); ``origin`` (2,) and per ray ``angles``,
        ``edges`` (mm from the origin, NaN where none) and ``inlier_mask``.

    Raises:
        LumenNotFound: with the reason, when there is no measurable lumen.
    """
    pixels = _smooth(plane, opts.smooth_mm)
    origin = np.zeros(2)
    result = _trace_once(pixels, plane, origin, opts)
    for _ in range(opts.recentre):
        centroid = polygon_centroid(result["contour"])
        if np.linalg.norm(centroid - origin) < 0.1:
            break
        origin = centroid
        result = _trace_once(pixels, plane, origin, opts)
    result["noise"] = _lumen_noise(plane, result["contour"], result["origin"])
    return result


def _failed(reason: str, plane: PlaneImage | None = None, circumcircle: dict | None = None) -> LumenMeasurement:
    return LumenMeasurement(ok=False, reason=reason, plane_image=plane, circumcircle=circumcircle or {})


def measure_annulus(
    image: sitk.Image,
    hinge_points_lps: ArrayLike,
    size_mm: float = 60.0,
    spacing_mm: float = 0.25,
    slab_mm: float = 1.0,
    options: TraceOptions = TraceOptions(),
) -> LumenMeasurement:
    """Measure the annulus on the CT: the lumen contour on the plane of the hinge points.

    Args:
        image: 3D CT in HU (any spacing, direction cosines; LPS).
        hinge_points_lps: (3, 3) world LPS mm, order RCC, LCC, NCC.
        size_mm, spacing_mm: of the plane image (:func:`annulus_plane_image`).
        slab_mm: thickness across the plane averaged against noise.
        options: :class:`TraceOptions`.

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
        traced = trace_lumen(plane_image, options)
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
