"""The imaging model: scanner blur, correlated and white noise, streaks, banding, motion ghosting, resampling.

``form_image`` paints the whole field of view on a coarse axis-aligned grid (1-2.3 mm) and the aortic root on a fine
grid aligned with the root axis; both get the same blur, noise realisation and artefacts, are resampled with
SimpleITK onto the output grid and blended. Arrays are (nz, ny, nx) float32 HU on
:class:`~AorticRootLandmarksLib.grid.VoxelGrid` s; positions are world LPS mm.

Non-classic styles add a slice profile (``imaging["slice_fwhm_mm"]``: Gaussian along world z, so both the coarse and
the world-aligned root grid must have world z as their k axis), edge enhancement of sharp kernels
(``imaging["sharpen"]``) and may use an anisotropic coarse grid (``coarse_spacing`` (3,) along x, y, z).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from ..constants import AIR_HU
from ..grid import VoxelGrid
from .paint import Block, block_coords, box_block, full_block, render_region
from .params import Streams
from .shapes import F32


def blur(array: np.ndarray, grid: VoxelGrid, sigma_mm: float, slice_fwhm_mm: float = 0.0) -> np.ndarray:
    """Scanner point-spread function: Gaussian of ``sigma_mm`` (physical units), skipped below a third of a voxel.

    ``slice_fwhm_mm`` adds the slice profile along the grid's k axis (world z on an axis-aligned grid): a Gaussian
    whose full width at half maximum is the slice thickness. Always returns a new array: ``form_image`` adds noise
    to the result and reuses the unblurred input.
    """
    if slice_fwhm_mm <= 0:
        if sigma_mm < 0.33 * float(np.min(grid.spacing)):
            return array.copy()
        img = sitk.DiscreteGaussian(grid.image(array), float(sigma_mm) ** 2, 32, 0.01, True)
        return sitk.GetArrayFromImage(img)
    sigma = np.array([sigma_mm, sigma_mm, np.hypot(sigma_mm, slice_fwhm_mm / 2.3548)])
    if np.all(sigma < 0.33 * grid.spacing):
        return array.copy()
    img = sitk.DiscreteGaussian(grid.image(array), (sigma**2).tolist(), 32, 0.01, True)
    return sitk.GetArrayFromImage(img)


def correlated_noise(rng: np.random.Generator, grid: VoxelGrid, corr_mm: float) -> np.ndarray:
    """Unit-variance Gaussian noise with correlation length ``corr_mm`` on ``grid`` (float32, (nz, ny, nx))."""
    white = rng.standard_normal(grid.shape, dtype=F32)
    if np.ptp(grid.spacing) > 1e-9:  # anisotropic: per axis, smooth enough that linear upsampling keeps the variance
        sigma = [max(corr_mm, 0.6 * float(s)) for s in grid.spacing]
    else:
        sigma = max(corr_mm, 0.6 * float(np.max(grid.spacing)))
    smooth = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(grid.image(white), sigma))
    smooth *= F32(1.0 / max(float(smooth.std()), 1e-6))
    return smooth


def add_white_noise(result: np.ndarray, std: float, rng: np.random.Generator) -> None:
    """In place: fine-grain white noise of ``std`` HU on a (nz, ny, nx) array.

    One tile reused with random in-plane offsets per slab: drawing a normal per voxel of a 512 x 512 x 320 image
    (84 M) costs 1 s.
    """
    nz, ny, nx = result.shape
    tz = min(nz, 48)
    tile = rng.standard_normal((tz, ny + 32, nx + 32), dtype=F32)
    tile *= F32(std)
    for z0 in range(0, nz, tz):
        oy, ox = rng.integers(0, 33, size=2)
        z1 = min(nz, z0 + tz)
        result[z0:z1] += tile[: z1 - z0, oy : oy + ny, ox : ox + nx]


def artefact_field(imaging: dict, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> Any:
    """Additive HU of streaks (radial lines from a dense source in axial planes) and slab banding at world x, y, z."""
    out: Any = F32(0.0)
    st = imaging.get("streaks")
    if st:
        sx, sy, sz = st["source"]
        dx, dy = x - F32(sx), y - F32(sy)
        decay = F32(1.0) / (F32(1.0) + np.sqrt(dx * dx + dy * dy) * F32(1.0 / st["decay_mm"]))
        lines: Any = F32(0.0)
        for theta, amp in zip(st["angles"], st["amps"], strict=True):
            dist = dx * F32(np.sin(theta)) - dy * F32(np.cos(theta))
            lines = lines + F32(amp) * np.exp(-(dist * dist) * F32(0.5 / st["width_mm"] ** 2))
        out = out + lines * decay * np.exp(-((z - F32(sz)) ** 2) * F32(0.5 / st["z_sigma_mm"] ** 2))
    for z_lo, z_hi, offset in imaging.get("bands", []):
        out = out + F32(offset) * ((z >= F32(z_lo)) & (z < F32(z_hi))).astype(F32)
    return out


def _shift_axis(array: np.ndarray, axis: int, s: float) -> np.ndarray:
    """``array`` moved by ``s`` voxels along array ``axis``: ``out[x] = array[x - s]``, linear, edges repeated."""
    n = int(np.floor(s))
    f = F32(s - n)
    pad = [(0, 0)] * 3
    pad[axis] = (abs(n) + 1, abs(n) + 1)
    p = np.pad(array, pad, mode="edge")
    m = array.shape[axis]
    lo, hi = [slice(None)] * 3, [slice(None)] * 3
    lo[axis] = slice(abs(n) + 1 - n, abs(n) + 1 - n + m)
    hi[axis] = slice(abs(n) - n, abs(n) - n + m)
    return (1 - f) * p[tuple(lo)] + f * p[tuple(hi)]


def _shifted(array: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``array`` (nz, ny, nx) moved by ``shift`` voxels along (i, j, k), linear interpolation, edges repeated."""
    moved = array
    for axis, s in zip((2, 1, 0), shift, strict=True):  # array axes of i, j, k
        moved = _shift_axis(moved, axis, s)
    return moved


def ghost(
    array: np.ndarray,
    grid: VoxelGrid,
    shift_lps: Sequence[float],
    alpha: float,
    block: Optional[Block] = None,
    taper_vox: int = 0,
) -> None:
    """Motion: blend in place ``alpha`` of a copy shifted by ``shift_lps`` mm (double contours), inside ``block``."""
    sub = array if block is None else array[block]
    shift = np.linalg.solve(grid.direction, np.asarray(shift_lps, float)) / grid.spacing  # voxels along i, j, k
    moved = _shifted(sub, shift)
    w: Any = F32(alpha)
    if taper_vox > 0:
        ramps = [np.minimum(np.minimum(np.arange(n), np.arange(n)[::-1]) / taper_vox, 1).astype(F32) for n in sub.shape]
        w = F32(alpha) * ramps[0][:, None, None] * ramps[1][None, :, None] * ramps[2][None, None, :]
    sub += w * (moved - sub)


def resample(array: np.ndarray, src: VoxelGrid, dst: VoxelGrid, default: float = AIR_HU) -> np.ndarray:
    """Linear resampling of a (nz, ny, nx) array from ``src`` to ``dst`` (SimpleITK, float32)."""
    source, reference = src.image(array), dst.image()
    out = sitk.Resample(source, reference, sitk.Transform(), sitk.sitkLinear, float(default), sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


def sub_grid(grid: VoxelGrid, lo: np.ndarray, hi: np.ndarray) -> tuple[Optional[Block], Optional[VoxelGrid]]:
    """The block of ``grid`` covering the world LPS box [lo, hi] and a grid describing just that block."""
    block = box_block(grid, lo, hi)
    if block is None:
        return None, None
    start = np.array([block[2].start, block[1].start, block[0].start], float)
    size = (block[2].stop - block[2].start, block[1].stop - block[1].start, block[0].stop - block[0].start)
    return block, VoxelGrid(grid.index_to_world(start), grid.spacing, size, grid.direction)


def edge_weight(grid: VoxelGrid, ramp_mm: float) -> np.ndarray:
    """(nz, ny, nx) blend weight: 1 inside the grid, falling linearly to 0 over ``ramp_mm`` at its faces."""
    ws = []
    for n, s in zip(grid.size, grid.spacing, strict=True):
        d = np.minimum(np.arange(n), np.arange(n)[::-1]) * s
        ws.append(np.clip(d / ramp_mm, 0, 1).astype(F32))
    return ws[2][:, None, None] * ws[1][None, :, None] * ws[0][None, None, :]


def coarse_grid_for(out: VoxelGrid, spacing: Any) -> VoxelGrid:
    """Axis-aligned grid of ``spacing`` (a float, or (3,) along x, y, z) covering the output grid (plus two voxels)."""
    spacing = np.broadcast_to(np.asarray(spacing, float), (3,))
    c = out.corners()
    lo, hi = c.min(0) - 2 * spacing, c.max(0) + 2 * spacing
    size = tuple(int(v) for v in np.ceil((hi - lo) / spacing) + 1)
    return VoxelGrid(lo, spacing, size, np.eye(3))


def _scan(hu: np.ndarray, grid: VoxelGrid, imaging: dict, ghost_block: Optional[Block], taper_vox: int) -> np.ndarray:
    """Blur, edge enhancement and motion ghosting of painted HU on ``grid`` (the noise is added by the caller)."""
    hu = blur(hu, grid, imaging["blur_mm"], imaging.get("slice_fwhm_mm", 0.0))
    gain = imaging.get("sharpen", 0.0)
    if gain > 0:  # sharp kernel: unsharp mask, overshoot at edges
        hu += F32(gain) * (hu - blur(hu, grid, 2.0 * imaging["blur_mm"]))
    motion = imaging.get("motion")
    if motion and ghost_block is not None:
        ghost(hu, grid, motion["shift_mm"], motion["alpha"], ghost_block, taper_vox)
    return hu


def _blend_root(result: np.ndarray, out: VoxelGrid, root: np.ndarray, root_grid: VoxelGrid) -> None:
    """In place: the fine root rendering over ``result`` on ``out``, weighted down to 0 over 4 mm at its faces."""
    c = root_grid.corners()
    block, region = sub_grid(out, c.min(0), c.max(0))
    if block is None:
        return
    w = edge_weight(root_grid, ramp_mm=4.0)
    w_out = resample(w, root_grid, region, 0.0)
    rw_out = resample(root * w, root_grid, region, 0.0)
    sub = result[block]
    sub *= 1 - w_out
    sub += rw_out


def form_image(
    items: Sequence[Any],
    out: VoxelGrid,
    root_grid: VoxelGrid,
    heart_box: tuple[np.ndarray, np.ndarray],
    imaging: dict,
    streams: Streams,
    coarse_spacing: float,
    fine_from: int = 0,
) -> np.ndarray:
    """Render and image the anatomy on ``out``.

    Args:
        items: paint order of Layers / painters (world LPS mm).
        out: output grid (any diagonal direction).
        root_grid: fine grid (any direction) around the aortic root, blended over the coarse rendering.
        heart_box: world LPS (lo, hi) where motion ghosting applies.
        imaging: noise_std, white_frac, corr_mm, blur_mm, streaks, bands, motion (see ``params.sample_imaging``);
            optional slice_fwhm_mm, sharpen (``style_params.sample_style_imaging``).
        streams: the case's random streams (``params.case_streams``); parts "noise" and "white_noise" are used.
        coarse_spacing: mm of the coarse whole-field grid, a float or (3,) along x, y, z.
        fine_from: items from this index on are repainted on ``root_grid`` (the earlier ones are large and smooth).

    Returns:
        (nz, ny, nx) float32 HU on ``out`` (not yet rounded).
    """
    coarse = coarse_grid_for(out, coarse_spacing)
    std = float(imaging["noise_std"])
    raw = render_region(items, coarse)
    taper = max(2, int(8 / float(np.max(coarse_spacing))))
    hu = _scan(raw, coarse, imaging, box_block(coarse, *heart_box), taper_vox=taper)
    noise = correlated_noise(streams("noise"), coarse, imaging["corr_mm"])
    noise *= F32(std * np.sqrt(1 - imaging["white_frac"] ** 2))
    hu += noise
    hu += artefact_field(imaging, *block_coords(coarse, full_block(coarse)))
    result = resample(hu, coarse, out)
    del hu

    # Fine aortic root: the heart and everything painted after it repainted at fine resolution over the coarse
    # rendering; same noise realisation (resampled) and artefacts, so the blend leaves no seam.
    root = render_region(items[fine_from:], root_grid, resample(raw, coarse, root_grid))
    del raw
    root = _scan(root, root_grid, imaging, full_block(root_grid), taper_vox=0)
    root += resample(noise, coarse, root_grid, 0.0)
    root += artefact_field(imaging, *block_coords(root_grid, full_block(root_grid)))
    _blend_root(result, out, root, root_grid)
    add_white_noise(result, std * imaging["white_frac"], streams("white_noise"))
    return result
