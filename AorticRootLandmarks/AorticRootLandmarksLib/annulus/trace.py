"""The lumen traced on the annulus plane image (step 2 of the package docstring): rays from the centre, the lumen's
edge on each, a smooth ring fitted to them (ring.py), and the refusals when no measurable lumen is there.

Frame: plane (u, v) mm (the package docstring). Numpy and SimpleITK only: this module runs inside 3D Slicer's Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk

from ..constants import AIR_HU
from .contour import polygon_centroid
from .plane import PlaneImage, sample_bilinear
from .ring import ring_fit

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


@dataclass(frozen=True)
class TraceOptions:
    """How :func:`trace_lumen` finds the lumen on a plane image (defaults chosen on phantom CTs with
    benchmarks/bench_annulus.py; the package docstring says what each step does).

    Attributes:
        smooth_mm: Gaussian sigma of the in-plane smoothing before thresholding, mm.
        center_disc_mm: radius of the disc at the ray origin whose upper-quartile HU is the first lumen estimate.
        n_rays: rays over 360 deg.
        ray_step_mm: sample spacing along a ray.
        max_radius_mm: rays end here (larger lumens are refused).
        min_run_mm: the lumen ends at a crossing after which the profile stays below threshold this far.
        harmonics: Fourier harmonics of the contour's radius over the angle.
        stiffness: smoothness penalty of the Fourier fit (:func:`smooth_fit`).
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


def _robust_fourier_fit(
    angles: np.ndarray, edges: np.ndarray, opts: TraceOptions
) -> tuple[np.ndarray, np.ndarray, float]:
    """Smooth fit of the edge radius over the angle (:func:`ring_fit`), iterated without outliers.

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
        fit = ring_fit(angles, r, inliers, h, opts.stiffness)
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
    """Trace the contrast-filled lumen around the centre of a plane image (see the package docstring).

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
