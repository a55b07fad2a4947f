"""Voxelising the analytic anatomy into HU and forming the CT image.

Every structure is a signed distance function (negative inside, mm) painted in order with a partial-volume soft step of
one voxel width. The whole field of view is painted on a coarse axis-aligned grid (1-2.3 mm), the aortic root on a fine
grid aligned with the root axis; both get the same scanner blur, correlated noise and artefacts, are resampled with
SimpleITK onto the output grid and blended. Arrays are (nz, ny, nx) float32 (``sitk.GetArrayFromImage`` order).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Protocol, Sequence

import numpy as np
import SimpleITK as sitk

F32 = np.float32
AIR_HU = -1000.0


@dataclass(frozen=True)
class Grid:
    """A voxel grid: ``world LPS mm = origin + direction @ (spacing * (i, j, k))``.

    Attributes:
        origin: (3,) world LPS mm of voxel (0, 0, 0).
        spacing: (3,) mm along i, j, k.
        size: (nx, ny, nz) voxels; arrays on the grid are (nz, ny, nx).
        direction: (3, 3) columns are the world directions of i, j, k.
    """

    origin: np.ndarray
    spacing: np.ndarray
    size: tuple[int, int, int]
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.size[2], self.size[1], self.size[0])

    def index_of(self, points_lps: np.ndarray) -> np.ndarray:
        """(..., 3) world LPS mm -> (..., 3) continuous index (i, j, k)."""
        d = np.asarray(points_lps, float) - self.origin
        return (d @ self.direction) / self.spacing

    def block(self, lo: np.ndarray, hi: np.ndarray) -> Optional[tuple[slice, slice, slice]]:
        """Array slices (z, y, x) of the voxels inside the world box [lo, hi] (plus one voxel), None if empty."""
        corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
        idx = self.index_of(corners)
        start = np.maximum(np.floor(idx.min(0)) - 1, 0).astype(int)
        stop = np.minimum(np.ceil(idx.max(0)) + 2, self.size).astype(int)
        if np.any(stop <= start):
            return None
        return (slice(start[2], stop[2]), slice(start[1], stop[1]), slice(start[0], stop[0]))

    def coords(self, block: tuple[slice, slice, slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World LPS x, y, z (float32) of a block's voxels, broadcastable to the block's (nz, ny, nx) shape.

        For a diagonal direction each is 1D along its own axis, which keeps z-invariant shapes 2D (cheap).
        """
        k = np.arange(block[0].start, block[0].stop, dtype=F32).reshape(-1, 1, 1)
        j = np.arange(block[1].start, block[1].stop, dtype=F32).reshape(1, -1, 1)
        i = np.arange(block[2].start, block[2].stop, dtype=F32).reshape(1, 1, -1)
        out = []
        for a in range(3):
            v: Any = F32(self.origin[a])
            for b, idx in enumerate((i, j, k)):
                step = self.direction[a, b] * self.spacing[b]
                if abs(step) > 1e-12:
                    v = v + F32(step) * idx
            out.append(np.asarray(v, dtype=F32))
        return out[0], out[1], out[2]

    def image(self, array: np.ndarray) -> sitk.Image:
        """sitk image of a (nz, ny, nx) array with this grid's geometry."""
        img = sitk.GetImageFromArray(array)
        img.SetOrigin(tuple(float(v) for v in self.origin))
        img.SetSpacing(tuple(float(v) for v in self.spacing))
        img.SetDirection(tuple(float(v) for v in self.direction.ravel()))
        return img

    def corners(self) -> np.ndarray:
        """(8, 3) world LPS mm of the corner voxel centres."""
        n = np.array(self.size) - 1
        idx = np.array([[a, b, c] for a in (0, n[0]) for b in (0, n[1]) for c in (0, n[2])], float)
        return self.origin + (idx * self.spacing) @ self.direction.T


class Shape(Protocol):
    def bbox(self) -> tuple[np.ndarray, np.ndarray]: ...

    def sdf(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Ellipsoid:
    """Ellipsoid: ``center`` (3,) LPS mm, ``axes`` (3, 3) rows are unit semi-axis directions, ``radii`` (3,) mm."""

    center: np.ndarray
    axes: np.ndarray
    radii: np.ndarray

    def bbox(self):
        half = np.sqrt(((self.axes * self.radii[:, None]) ** 2).sum(0))
        return self.center - half, self.center + half

    def sdf(self, x, y, z):
        d = (x - F32(self.center[0]), y - F32(self.center[1]), z - F32(self.center[2]))
        f = 0.0
        g2 = 0.0
        for a, r in zip(self.axes, self.radii):
            u = F32(a[0]) * d[0] + F32(a[1]) * d[1] + F32(a[2]) * d[2]
            q = u * F32(1.0 / r**2)
            f = f + u * q
            g2 = g2 + q * q
        # First-order distance to the level set f = 1: (f - 1) / |grad f|, exact at the surface.
        return (f - 1) / (2 * np.sqrt(np.maximum(g2, F32(1e-8))))


@dataclass(frozen=True)
class Cylinder:
    """Elliptic cylinder along z (semi-axes ``sx``, ``sy``) between ``z_lo`` and ``z_hi``.

    ``floor = (z0, depth, slope)`` replaces ``z_lo`` by a dome ``z0 - depth * rho^2 - slope * (x - cx)`` (lung bases
    over the diaphragm; a positive slope raises the patient's right side, over the liver). ``roof`` lowers ``z_hi``
    by ``roof * rho^2`` (rounded lung apices).
    """

    cx: float
    cy: float
    sx: float
    sy: float
    z_lo: float
    z_hi: float
    floor: Optional[tuple[float, float, float]] = None
    roof: float = 0.0

    def bbox(self):
        z_lo = self.z_lo if self.floor is None else self.floor[0] - 1.5 * self.floor[1] - abs(self.floor[2]) * self.sx
        return np.array([self.cx - self.sx, self.cy - self.sy, z_lo]), np.array(
            [self.cx + self.sx, self.cy + self.sy, self.z_hi]
        )

    def sdf(self, x, y, z):
        dx, dy = x - F32(self.cx), y - F32(self.cy)
        f = (dx / F32(self.sx)) ** 2 + (dy / F32(self.sy)) ** 2
        g = 2 * np.sqrt((dx / F32(self.sx**2)) ** 2 + (dy / F32(self.sy**2)) ** 2)
        d = (f - 1) / np.maximum(g, F32(1e-6))
        if self.floor is None and self.z_lo < -1e4 and self.z_hi > 1e4 and not self.roof:
            return d  # z-invariant: stays 2D
        if self.floor is None:
            lo = F32(self.z_lo) - z
        else:
            z0, depth, slope = self.floor
            lo = F32(z0) - F32(depth) * np.minimum(f, 1.5) - F32(slope) * dx - z
        hi = z - F32(self.z_hi) if not self.roof else z - F32(self.z_hi) + F32(self.roof) * np.minimum(f, 1.5)
        return np.maximum(np.maximum(d, lo), hi)


@dataclass(frozen=True)
class Capsule:
    """Segment a-b (world LPS mm) with radius varying linearly from ``ra`` to ``rb``."""

    a: np.ndarray
    b: np.ndarray
    ra: float
    rb: float

    def bbox(self):
        r = max(self.ra, self.rb)
        return np.minimum(self.a, self.b) - r, np.maximum(self.a, self.b) + r

    def sdf(self, x, y, z):
        ab = self.b - self.a
        L2 = float(ab @ ab) + 1e-9
        px, py, pz = x - F32(self.a[0]), y - F32(self.a[1]), z - F32(self.a[2])
        t = np.clip((px * F32(ab[0]) + py * F32(ab[1]) + pz * F32(ab[2])) * F32(1.0 / L2), 0, 1)
        dist = np.sqrt((px - t * F32(ab[0])) ** 2 + (py - t * F32(ab[1])) ** 2 + (pz - t * F32(ab[2])) ** 2)
        return dist - (F32(self.ra) + t * F32(self.rb - self.ra))


@dataclass(frozen=True)
class Tube:
    """Polyline tube: ``points`` (N, 3) world LPS mm, ``radii`` (N,) mm; the union of its capsules."""

    points: np.ndarray
    radii: np.ndarray

    def parts(self) -> list[Capsule]:
        return [
            Capsule(self.points[i], self.points[i + 1], float(self.radii[i]), float(self.radii[i + 1]))
            for i in range(len(self.points) - 1)
        ]

    def bbox(self):
        r = float(np.max(self.radii))
        return self.points.min(0) - r, self.points.max(0) + r


@dataclass(frozen=True)
class Table:
    """Patient table under the back: a slab curved in x, invariant along z (y grows posteriorly)."""

    cx: float
    y_top: float
    width: float
    thickness: float
    curvature: float

    def bbox(self):
        h = self.curvature * (self.width / 2) ** 2 + self.thickness
        return np.array([self.cx - self.width / 2, self.y_top, -1e5]), np.array(
            [self.cx + self.width / 2, self.y_top + h, 1e5]
        )

    def sdf(self, x, y, z):
        dx = x - F32(self.cx)
        top = F32(self.y_top) + F32(self.curvature) * dx * dx
        return np.maximum(np.maximum(top - y, y - top - F32(self.thickness)), np.abs(dx) - F32(self.width / 2))


@dataclass(frozen=True)
class Layer:
    """A shape filled with ``hu``; ``waves`` (rows kx, ky, kz, phase, amp) add smooth inhomogeneity (mixing)."""

    shape: Any
    hu: float
    waves: tuple = ()
    name: str = ""

    def bbox(self):
        return self.shape.bbox()

    def value(self, x, y, z):
        v: Any = F32(self.hu)
        for kx, ky, kz, ph, amp in self.waves:
            v = v + F32(amp) * np.sin(F32(kx) * x + F32(ky) * y + F32(kz) * z + F32(ph))
        return v


def occupancy(d: np.ndarray, ramp: float) -> np.ndarray:
    """Partial-volume fraction of a voxel at signed distance ``d`` mm: linear step of width ``ramp`` (voxel size)."""
    return np.clip(F32(0.5) - d * F32(1.0 / ramp), 0, 1)


def blend(hu: np.ndarray, occ: np.ndarray, value) -> None:
    """In place: ``hu <- hu + occ * (value - hu)`` (painter's algorithm with partial volume)."""
    hu += occ * (value - hu)


def _sub(outer: tuple[slice, ...], inner: tuple[slice, ...]) -> tuple[slice, ...]:
    return tuple(slice(i.start - o.start, i.stop - o.start) for o, i in zip(outer, inner))


def render_region(items: Sequence[Any], grid: Grid, background: Optional[np.ndarray] = None) -> np.ndarray:
    """Paint ``items`` (Layers, or objects with ``bbox()`` and ``paint(hu, x, y, z, ramp)``) in order on ``grid``.

    Args:
        items: paint order.
        grid: where to paint.
        background: (nz, ny, nx) HU to paint over (modified in place); air if None.

    Returns:
        (nz, ny, nx) float32 HU.
    """
    hu = np.full(grid.shape, AIR_HU, dtype=F32) if background is None else background
    ramp = float(np.mean(grid.spacing))
    coords = grid.coords
    if np.count_nonzero(grid.direction) > 3:  # oblique grid: full coordinate arrays, computed once and sliced
        full = grid.coords((slice(0, grid.shape[0]), slice(0, grid.shape[1]), slice(0, grid.shape[2])))

        def coords(block):
            return tuple(a[block] for a in full)

    for item in items:
        block = grid.block(*item.bbox())
        if block is None:
            continue
        x, y, z = coords(block)
        if hasattr(item, "paint"):
            item.paint(hu[block], x, y, z, ramp)
            continue
        if isinstance(item.shape, Tube):
            occ = np.zeros(hu[block].shape, F32)
            for part in item.shape.parts():
                pb = grid.block(*part.bbox())
                if pb is None:
                    continue
                rel = _sub(block, pb)
                px, py, pz = coords(pb)
                np.maximum(occ[rel], occupancy(part.sdf(px, py, pz), ramp), out=occ[rel])
        else:
            occ = np.broadcast_to(occupancy(item.shape.sdf(x, y, z), ramp), hu[block].shape)
        blend(hu[block], occ, item.value(x, y, z))
    return hu


# ----------------------------------------------------------------------------------------------- image formation


def blur(array: np.ndarray, grid: Grid, sigma_mm: float) -> np.ndarray:
    """Scanner point-spread function: Gaussian of ``sigma_mm`` (physical units), skipped below a third of a voxel."""
    if sigma_mm < 0.33 * float(np.min(grid.spacing)):
        return array
    img = sitk.DiscreteGaussian(grid.image(array), float(sigma_mm) ** 2, 32, 0.01, True)
    return sitk.GetArrayFromImage(img)


def correlated_noise(rng: np.random.Generator, grid: Grid, corr_mm: float) -> np.ndarray:
    """Unit-variance Gaussian noise with correlation length ``corr_mm`` on ``grid`` (float32, (nz, ny, nx))."""
    white = rng.standard_normal(grid.shape, dtype=F32)
    sigma = max(corr_mm, 0.6 * float(np.max(grid.spacing)))  # smooth enough that linear upsampling keeps the variance
    smooth = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(grid.image(white), sigma))
    smooth *= F32(1.0 / max(float(smooth.std()), 1e-6))
    return smooth


def artefact_field(imaging: dict, x, y, z) -> Any:
    """Additive HU of streaks (radial lines from a dense source in axial planes) and slab banding at world x, y, z."""
    out: Any = F32(0.0)
    st = imaging.get("streaks")
    if st:
        sx, sy, sz = st["source"]
        dx, dy = x - F32(sx), y - F32(sy)
        decay = F32(1.0) / (F32(1.0) + np.sqrt(dx * dx + dy * dy) * F32(1.0 / st["decay_mm"]))
        lines: Any = F32(0.0)
        for theta, amp in zip(st["angles"], st["amps"]):
            dist = dx * F32(np.sin(theta)) - dy * F32(np.cos(theta))
            lines = lines + F32(amp) * np.exp(-(dist * dist) * F32(0.5 / st["width_mm"] ** 2))
        out = out + lines * decay * np.exp(-((z - F32(sz)) ** 2) * F32(0.5 / st["z_sigma_mm"] ** 2))
    for z_lo, z_hi, offset in imaging.get("bands", []):
        out = out + F32(offset) * ((z >= F32(z_lo)) & (z < F32(z_hi))).astype(F32)
    return out


def ghost(
    array: np.ndarray,
    grid: Grid,
    shift_lps: Sequence[float],
    alpha: float,
    block: Optional[tuple[slice, ...]] = None,
    taper_vox: int = 0,
) -> None:
    """Motion: blend in place ``alpha`` of a copy shifted by ``shift_lps`` mm (double contours), inside ``block``."""
    sub = array if block is None else array[block]
    shift = (np.asarray(shift_lps, float) @ grid.direction) / grid.spacing  # voxels along i, j, k
    moved = sub
    for axis, s in zip((2, 1, 0), shift):  # array axes of i, j, k
        n = int(np.floor(s))
        f = F32(s - n)
        pad = [(0, 0)] * 3
        pad[axis] = (abs(n) + 1, abs(n) + 1)
        p = np.pad(moved, pad, mode="edge")
        m = p.shape[axis] - 2 * (abs(n) + 1)

        def take(offset: int) -> np.ndarray:
            sl = [slice(None)] * 3
            sl[axis] = slice(abs(n) + 1 - offset, abs(n) + 1 - offset + m)
            return p[tuple(sl)]

        moved = (1 - f) * take(n) + f * take(n + 1)
    w: Any = F32(alpha)
    if taper_vox > 0:
        ramps = [np.minimum(np.minimum(np.arange(n), np.arange(n)[::-1]) / taper_vox, 1).astype(F32) for n in sub.shape]
        w = F32(alpha) * ramps[0][:, None, None] * ramps[1][None, :, None] * ramps[2][None, None, :]
    sub += w * (moved - sub)


def resample(array: np.ndarray, src: Grid, dst: Grid, default: float = AIR_HU) -> np.ndarray:
    """Linear resampling of a (nz, ny, nx) array from ``src`` to ``dst`` (SimpleITK, float32)."""
    ref = sitk.Image([int(v) for v in dst.size], sitk.sitkFloat32)
    ref.SetOrigin(tuple(float(v) for v in dst.origin))
    ref.SetSpacing(tuple(float(v) for v in dst.spacing))
    ref.SetDirection(tuple(float(v) for v in dst.direction.ravel()))
    out = sitk.Resample(src.image(array), ref, sitk.Transform(), sitk.sitkLinear, float(default), sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


def sub_grid(grid: Grid, lo: np.ndarray, hi: np.ndarray) -> tuple[Optional[tuple[slice, ...]], Optional[Grid]]:
    """The block of ``grid`` covering the world box [lo, hi] and a Grid describing just that block."""
    block = grid.block(lo, hi)
    if block is None:
        return None, None
    start = np.array([block[2].start, block[1].start, block[0].start], float)
    origin = grid.origin + grid.direction @ (start * grid.spacing)
    size = (block[2].stop - block[2].start, block[1].stop - block[1].start, block[0].stop - block[0].start)
    return block, Grid(origin, grid.spacing, size, grid.direction)


def edge_weight(grid: Grid, ramp_mm: float) -> np.ndarray:
    """(nz, ny, nx) blend weight: 1 inside the grid, falling linearly to 0 over ``ramp_mm`` at its faces."""
    ws = []
    for n, s in zip(grid.size, grid.spacing):
        d = np.minimum(np.arange(n), np.arange(n)[::-1]) * s
        ws.append(np.clip(d / ramp_mm, 0, 1).astype(F32))
    return ws[2][:, None, None] * ws[1][None, :, None] * ws[0][None, None, :]


def coarse_grid_for(out: Grid, spacing: float) -> Grid:
    """Axis-aligned grid of isotropic ``spacing`` covering the output grid (plus two voxels)."""
    c = out.corners()
    lo, hi = c.min(0) - 2 * spacing, c.max(0) + 2 * spacing
    size = tuple(int(v) for v in np.ceil((hi - lo) / spacing) + 1)
    return Grid(lo, np.full(3, spacing), size, np.eye(3))


def form_image(
    items: Sequence[Any],
    out: Grid,
    root_grid: Grid,
    heart_box: tuple[np.ndarray, np.ndarray],
    imaging: dict,
    rng: np.random.Generator,
    coarse_spacing: float,
    fine_from: int = 0,
) -> np.ndarray:
    """Render and image the anatomy on ``out``.

    Args:
        items: paint order of Layers / painters (world LPS mm).
        out: output grid (any diagonal direction).
        root_grid: fine grid (any direction) around the aortic root, blended over the coarse rendering.
        heart_box: world (lo, hi) where motion ghosting applies.
        imaging: noise_std, white_frac, corr_mm, blur_mm, streaks, bands, motion (see params.sample_params).
        rng: noise generator.
        coarse_spacing: mm of the coarse whole-field grid.
        fine_from: items from this index on are repainted on ``root_grid`` (the earlier ones are large and smooth).

    Returns:
        (nz, ny, nx) float32 HU on ``out`` (not yet rounded).
    """
    coarse = coarse_grid_for(out, coarse_spacing)
    std = float(imaging["noise_std"])
    corr_std = std * float(np.sqrt(1 - imaging["white_frac"] ** 2))
    motion = imaging.get("motion")

    raw = render_region(items, coarse)
    hu = blur(raw, coarse, imaging["blur_mm"])
    if motion:
        hblock = coarse.block(*heart_box)
        if hblock is not None:
            ghost(hu, coarse, motion["shift_mm"], motion["alpha"], hblock, taper_vox=max(2, int(8 / coarse_spacing)))
    noise = correlated_noise(rng, coarse, imaging["corr_mm"])
    noise *= F32(corr_std)
    hu += noise
    hu += artefact_field(
        imaging, *coarse.coords((slice(0, coarse.shape[0]), slice(0, coarse.shape[1]), slice(0, coarse.shape[2])))
    )
    result = resample(hu, coarse, out)
    del hu

    # Fine aortic root: the heart and everything painted after it repainted at fine resolution over the coarse
    # rendering; same noise realisation (resampled) and artefacts, so the blend leaves no seam.
    root = render_region(items[fine_from:], root_grid, resample(raw, coarse, root_grid))
    del raw
    root = blur(root, root_grid, imaging["blur_mm"])
    if motion:
        ghost(root, root_grid, motion["shift_mm"], motion["alpha"])
    root += resample(noise, coarse, root_grid, 0.0)
    root += artefact_field(
        imaging,
        *root_grid.coords((slice(0, root_grid.shape[0]), slice(0, root_grid.shape[1]), slice(0, root_grid.shape[2]))),
    )
    c = root_grid.corners()
    block, region = sub_grid(out, c.min(0), c.max(0))
    if block is not None:
        w = edge_weight(root_grid, ramp_mm=4.0)
        w_out = resample(w, root_grid, region, 0.0)
        rw_out = resample(root * w, root_grid, region, 0.0)
        sub = result[block]
        sub *= 1 - w_out
        sub += rw_out

    # Fine-grain white noise: one tile reused with random in-plane offsets per slab (drawing 84 M normals costs 1 s).
    white_std = F32(std * imaging["white_frac"])
    nz, ny, nx = result.shape
    tz = min(nz, 48)
    tile = rng.standard_normal((tz, ny + 32, nx + 32), dtype=F32)
    tile *= white_std
    for z0 in range(0, nz, tz):
        oy, ox = rng.integers(0, 33, size=2)
        z1 = min(nz, z0 + tz)
        result[z0:z1] += tile[: z1 - z0, oy : oy + ny, ox : ox + nx]
    return result
