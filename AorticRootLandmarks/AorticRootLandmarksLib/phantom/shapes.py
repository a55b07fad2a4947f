"""Signed-distance shapes of the phantom's anatomy, in world LPS mm.

Every shape answers the same three questions, so the painter (``paint.py``) never asks what kind of shape it holds:

- ``bbox()``: (lo, hi) world LPS mm box outside which the shape is empty;
- ``sdf(x, y, z)``: signed distance in mm (negative inside) at world LPS coordinates ``x, y, z``, float32 arrays
  broadcastable to each other (e.g. 1D along their own array axis of a ``(nz, ny, nx)`` block); a shape that does not
  depend on z returns an array without the z extent, which keeps it cheap;
- ``parts()``: the shapes whose union it is, each painted over its own (smaller) box; a simple shape is its own part.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Optional

import numpy as np

#: The painter's float type: HU and coordinates on voxel grids are float32 (half the memory of float64).
F32 = np.float32


class Shape(ABC):
    """A region of world LPS space given by a signed distance function (see the module docstring)."""

    @abstractmethod
    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi): (3,) world LPS mm corners of a box holding the shape."""

    @abstractmethod
    def sdf(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Signed distance (mm, negative inside) at world LPS ``x, y, z`` (broadcastable float32)."""

    def parts(self) -> tuple[Shape, ...]:
        """The shapes whose union this is (a simple shape: itself)."""
        return (self,)


@dataclass(frozen=True)
class Ellipsoid(Shape):
    """Ellipsoid: ``center`` (3,) LPS mm, ``axes`` (3, 3) rows are unit semi-axis directions, ``radii`` (3,) mm."""

    center: np.ndarray
    axes: np.ndarray
    radii: np.ndarray

    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        half = np.sqrt(((self.axes * self.radii[:, None]) ** 2).sum(0))
        return self.center - half, self.center + half

    def sdf(self, x, y, z):
        d = (x - F32(self.center[0]), y - F32(self.center[1]), z - F32(self.center[2]))
        f = 0.0
        g2 = 0.0
        for a, r in zip(self.axes, self.radii, strict=True):
            u = F32(a[0]) * d[0] + F32(a[1]) * d[1] + F32(a[2]) * d[2]
            q = u * F32(1.0 / r**2)
            f = f + u * q
            g2 = g2 + q * q
        # First-order distance to the level set f = 1: (f - 1) / |grad f|, exact at the surface.
        return (f - 1) / (2 * np.sqrt(np.maximum(g2, F32(1e-8))))


@dataclass(frozen=True)
class Cylinder(Shape):
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

    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        z_lo = self.z_lo if self.floor is None else self.floor[0] - 1.5 * self.floor[1] - abs(self.floor[2]) * self.sx
        lo = np.array([self.cx - self.sx, self.cy - self.sy, z_lo])
        return lo, np.array([self.cx + self.sx, self.cy + self.sy, self.z_hi])

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
class Capsule(Shape):
    """Segment a-b (world LPS mm) with radius varying linearly from ``ra`` to ``rb``."""

    a: np.ndarray
    b: np.ndarray
    ra: float
    rb: float

    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
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
class Tube(Shape):
    """Polyline tube: ``points`` (N, 3) world LPS mm, ``radii`` (N,) mm; the union of its capsules."""

    points: np.ndarray
    radii: np.ndarray

    def parts(self) -> tuple[Capsule, ...]:
        return tuple(
            Capsule(self.points[i], self.points[i + 1], float(self.radii[i]), float(self.radii[i + 1]))
            for i in range(len(self.points) - 1)
        )

    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        r = float(np.max(self.radii))
        return self.points.min(0) - r, self.points.max(0) + r

    def sdf(self, x, y, z):
        """The union's distance: the smallest of the capsules' (evaluated on the whole input; the painter instead
        evaluates each capsule over its own box)."""
        return functools.reduce(np.minimum, (part.sdf(x, y, z) for part in self.parts()))


@dataclass(frozen=True)
class Table(Shape):
    """Patient table under the back: a slab curved in x, invariant along z (y grows posteriorly)."""

    cx: float
    y_top: float
    width: float
    thickness: float
    curvature: float

    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        rise = self.curvature * (self.width / 2) ** 2  # y of the top's edges relative to its centre (either sign)
        lo = np.array([self.cx - self.width / 2, self.y_top + min(rise, 0.0), -1e5])
        return lo, np.array([self.cx + self.width / 2, self.y_top + max(rise, 0.0) + self.thickness, 1e5])

    def sdf(self, x, y, z):
        dx = x - F32(self.cx)
        top = F32(self.y_top) + F32(self.curvature) * dx * dx
        return np.maximum(np.maximum(top - y, y - top - F32(self.thickness)), np.abs(dx) - F32(self.width / 2))
