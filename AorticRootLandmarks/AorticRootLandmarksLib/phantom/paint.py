"""Voxelising the analytic anatomy into HU: partial-volume occupancy, the painter's blend and ``render_region``.

Structures are painted in order (painter's algorithm), each with a partial-volume soft step one voxel wide across its
signed-distance surface. Paint items (a :class:`Layer`, or ``root.RootPainter``) all have ``bbox()``, ``paint(canvas)``
and ``name``, so the painter never asks what an item is. Arrays are ``(nz, ny, nx)`` float32 HU on a
:class:`~AorticRootLandmarksLib.grid.VoxelGrid`; coordinates are world LPS mm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from ..constants import AIR_HU
from ..grid import VoxelGrid
from .shapes import F32, Shape

#: Array slices (z, y, x) of a box of voxels of a (nz, ny, nx) array.
Block = tuple[slice, slice, slice]


def box_block(grid: VoxelGrid, lo: np.ndarray, hi: np.ndarray) -> Optional[Block]:
    """Array slices (z, y, x) of the voxels inside the world LPS box [lo, hi] (plus one voxel); None if empty."""
    corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
    idx = grid.world_to_index(corners)  # (8, 3) continuous (i, j, k)
    start = np.maximum(np.floor(idx.min(0)) - 1, 0).astype(int)
    stop = np.minimum(np.ceil(idx.max(0)) + 2, grid.size).astype(int)
    if np.any(stop <= start):
        return None
    return (slice(start[2], stop[2]), slice(start[1], stop[1]), slice(start[0], stop[0]))


def full_block(grid: VoxelGrid) -> Block:
    """The slices (z, y, x) of the whole grid."""
    return (slice(0, grid.shape[0]), slice(0, grid.shape[1]), slice(0, grid.shape[2]))


def block_coords(grid: VoxelGrid, block: Block) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World LPS x, y, z (float32) of a block's voxels, broadcastable to the block's (nz, ny, nx) shape.

    For a diagonal direction each is 1D along its own array axis, which keeps z-invariant shapes 2D (cheap).
    """
    k = np.arange(block[0].start, block[0].stop, dtype=F32).reshape(-1, 1, 1)
    j = np.arange(block[1].start, block[1].stop, dtype=F32).reshape(1, -1, 1)
    i = np.arange(block[2].start, block[2].stop, dtype=F32).reshape(1, 1, -1)
    out = []
    for a in range(3):
        v: Any = F32(grid.origin[a])
        for b, idx in enumerate((i, j, k)):
            step = grid.direction[a, b] * grid.spacing[b]
            if abs(step) > 1e-12:
                v = v + F32(step) * idx
        out.append(np.asarray(v, dtype=F32))
    return out[0], out[1], out[2]


def occupancy(d: np.ndarray, ramp: float) -> np.ndarray:
    """Partial-volume fraction of a voxel at signed distance ``d`` mm: linear step of width ``ramp`` (voxel size)."""
    return np.clip(F32(0.5) - d * F32(1.0 / ramp), 0, 1)


def blend(hu: np.ndarray, occ: np.ndarray, value: Any) -> None:
    """In place: ``hu <- hu + occ * (value - hu)`` (painter's algorithm with partial volume)."""
    hu += occ * (value - hu)


def _sub(outer: Block, inner: Block) -> Block:
    """``inner`` (slices of the whole array) relative to the start of ``outer``."""
    z, y, x = (slice(i.start - o.start, i.stop - o.start) for o, i in zip(outer, inner, strict=True))
    return z, y, x


class Canvas:
    """A (nz, ny, nx) float32 HU array on a grid, being painted; what paint items need to voxelise themselves.

    Attributes:
        grid: the grid of ``hu``.
        hu: (nz, ny, nx) float32 HU, painted in place.
        ramp: mm, width of the partial-volume step (the mean voxel size).
    """

    def __init__(self, grid: VoxelGrid, hu: np.ndarray):
        self.grid, self.hu = grid, hu
        self.ramp = float(np.mean(grid.spacing))
        self._full: Optional[tuple[np.ndarray, ...]] = None
        if np.count_nonzero(grid.direction) > 3:  # oblique: full coordinate arrays, computed once and sliced
            self._full = block_coords(grid, full_block(grid))

    def block(self, lo: np.ndarray, hi: np.ndarray) -> Optional[Block]:
        """Slices (z, y, x) of the voxels in the world LPS box [lo, hi] (plus one voxel); None if outside."""
        return box_block(self.grid, lo, hi)

    def coords(self, block: Block) -> tuple[np.ndarray, ...]:
        """World LPS x, y, z (float32) of the block's voxels, broadcastable to its (nz, ny, nx) shape."""
        if self._full is None:
            return block_coords(self.grid, block)
        return tuple(a[block] for a in self._full)

    def occupancy(self, shape: Shape, block: Block) -> np.ndarray:
        """Partial-volume fraction of ``shape`` in ``block``: the maximum over its parts, each over its own box.

        Returns an array broadcastable to the block's (nz, ny, nx) shape.
        """
        parts = shape.parts()
        if len(parts) == 1:  # no union to take: keep the sdf's own, possibly z-less, shape
            return occupancy(parts[0].sdf(*self.coords(block)), self.ramp)
        occ = np.zeros(self.hu[block].shape, F32)
        for part in parts:
            part_block = self.block(*part.bbox())
            if part_block is None:
                continue
            rel = _sub(block, part_block)
            np.maximum(occ[rel], occupancy(part.sdf(*self.coords(part_block)), self.ramp), out=occ[rel])
        return occ


@dataclass(frozen=True)
class Layer:
    """A shape filled with ``hu``; ``waves`` (rows kx, ky, kz, phase, amp) add smooth inhomogeneity (mixing)."""

    shape: Shape
    hu: float
    waves: tuple = ()
    name: str = ""

    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        return self.shape.bbox()

    def value(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> Any:
        """HU at world LPS x, y, z (broadcastable float32; a scalar without waves)."""
        v: Any = F32(self.hu)
        for kx, ky, kz, ph, amp in self.waves:
            v = v + F32(amp) * np.sin(F32(kx) * x + F32(ky) * y + F32(kz) * z + F32(ph))
        return v

    def paint(self, canvas: Canvas) -> None:
        """Blend this layer over ``canvas.hu`` where the shape covers the voxels (partial volume at its surface)."""
        block = canvas.block(*self.bbox())
        if block is None:
            return
        blend(canvas.hu[block], canvas.occupancy(self.shape, block), self.value(*canvas.coords(block)))


def render_region(items: Sequence[Any], grid: VoxelGrid, background: Optional[np.ndarray] = None) -> np.ndarray:
    """Paint ``items`` in order on ``grid``.

    Args:
        items: paint order; each has ``bbox()`` (world LPS mm box) and ``paint(canvas)`` (a :class:`Layer`, or
            ``root.RootPainter``).
        grid: where to paint.
        background: (nz, ny, nx) HU to paint over (modified in place); air if None.

    Returns:
        (nz, ny, nx) float32 HU.
    """
    hu = np.full(grid.shape, AIR_HU, dtype=F32) if background is None else background
    canvas = Canvas(grid, hu)
    for item in items:
        item.paint(canvas)
    return hu
