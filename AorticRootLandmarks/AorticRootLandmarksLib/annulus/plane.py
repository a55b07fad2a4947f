"""The oblique image of a plane through the CT: the annulus plane (or any other) resampled in world space.

Frames (see docs/ARCHITECTURE.md): **world LPS mm** for every 3D point; **plane (u, v) mm**, in-plane coordinates
from the plane image's centre along its unit axes ``u_lps`` and ``v_lps``; **pixel (col, row)**, continuous index
into :attr:`PlaneImage.pixels`, whose rows run along ``v`` and columns along ``u``.

Numpy and SimpleITK only: this module runs inside 3D Slicer's Python.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from ..constants import AIR_HU
from ..errors import InputError
from ..geometry import _as_points, annulus_plane, plane_axes

ArrayLike = npt.ArrayLike


@dataclass(frozen=True, eq=False)
class PlaneImage:
    """An oblique reconstruction of a CT on a plane.

    Pixel ``(col, row)`` lies at plane ``(u, v) = ((col - c0) * spacing, (row - r0) * spacing)`` mm with
    ``(c0, r0) = ((N_u - 1) / 2, (N_v - 1) / 2)``, i.e. at world ``center_lps + u * u_lps + v * v_lps``.

    Attributes:
        pixels: (N_v, N_u) float32 HU; row index along v, column index along u; air outside the CT.
        spacing_mm: pixel size, mm (square pixels).
        center_lps: (3,) world LPS mm at the image centre.
        u_lps: (3,) unit in-plane axis (columns), LPS.
        v_lps: (3,) unit in-plane axis (rows), LPS; ``(u, v, u x v)`` is right-handed.
        slab_mm: thickness across the plane over which the CT was averaged (0: the plane itself).
    """

    pixels: np.ndarray
    spacing_mm: float
    center_lps: np.ndarray
    u_lps: np.ndarray
    v_lps: np.ndarray
    slab_mm: float = 0.0

    @property
    def normal_lps(self) -> np.ndarray:
        """(3,) unit normal ``u x v``, LPS."""
        return np.cross(self.u_lps, self.v_lps)

    def uv_to_world(self, uv_mm: ArrayLike) -> np.ndarray:
        """(N, 2) plane (u, v) mm from the centre -> (N, 3) world LPS mm."""
        uv = np.asarray(uv_mm, dtype=np.float64).reshape(-1, 2)
        return self.center_lps + uv[:, :1] * self.u_lps + uv[:, 1:] * self.v_lps

    def world_to_uv(self, points_lps: ArrayLike) -> np.ndarray:
        """(N, 3) world LPS mm -> (N, 2) plane (u, v) mm of their orthogonal projections onto the plane."""
        offset = np.asarray(points_lps, dtype=np.float64).reshape(-1, 3) - self.center_lps
        return np.stack([offset @ self.u_lps, offset @ self.v_lps], axis=1)

    def uv_to_pixel(self, uv_mm: ArrayLike) -> np.ndarray:
        """(N, 2) plane (u, v) mm -> (N, 2) continuous pixel (col, row)."""
        uv = np.asarray(uv_mm, dtype=np.float64).reshape(-1, 2)
        half = (np.array(self.pixels.shape[::-1], dtype=np.float64) - 1.0) / 2.0  # (c0, r0)
        return uv / self.spacing_mm + half

    def pixel_to_uv(self, pixel: ArrayLike) -> np.ndarray:
        """(N, 2) continuous pixel (col, row) -> (N, 2) plane (u, v) mm; inverse of :meth:`uv_to_pixel`."""
        pix = np.asarray(pixel, dtype=np.float64).reshape(-1, 2)
        half = (np.array(self.pixels.shape[::-1], dtype=np.float64) - 1.0) / 2.0
        return (pix - half) * self.spacing_mm


def _unit_axes(u_lps: ArrayLike, v_lps: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Checked, normalised in-plane axes; InputError unless they are finite, non-zero and orthogonal."""
    u = _as_points(u_lps, "plane axis u", (3,))
    v = _as_points(v_lps, "plane axis v", (3,))
    nu, nv = float(np.linalg.norm(u)), float(np.linalg.norm(v))
    if nu < 1e-9 or nv < 1e-9:
        raise InputError("plane axes: zero vector")
    u, v = u / nu, v / nv
    if abs(float(u @ v)) > 1e-6:
        raise InputError(f"plane axes: u and v are not orthogonal (u . v = {float(u @ v):.3g})")
    return u, v


def reconstruct_plane(
    image: sitk.Image,
    center_lps: ArrayLike,
    u_lps: ArrayLike,
    v_lps: ArrayLike,
    size_mm: float = 60.0,
    spacing_mm: float = 0.25,
    slab_mm: float = 0.0,
) -> PlaneImage:
    """Resample a 3D CT onto an oblique plane (linear interpolation in world space; air outside the CT).

    Args:
        image: 3D scalar CT in HU, any origin, spacing and direction cosines (LPS).
        center_lps: (3,) world LPS mm of the plane image's centre.
        u_lps: (3,) in-plane axis of the columns, LPS (normalised here).
        v_lps: (3,) in-plane axis of the rows, LPS, orthogonal to ``u_lps``.
        size_mm: side of the square image, mm; the pixel count is odd so that a pixel sits on the centre.
        spacing_mm: pixel size, mm.
        slab_mm: if > 0, the mean over planes spaced <= 0.25 mm from -slab/2 to +slab/2 along ``u x v``.

    Returns:
        The :class:`PlaneImage`, pixels (N, N) float32 with N = 2 * round(size / (2 spacing)) + 1.

    Raises:
        InputError: not a 3D scalar image, or bad centre, axes, size, spacing or slab.
    """
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"image: a 3D scalar volume is needed, got {image.GetDimension()}D with "
                         f"{image.GetNumberOfComponentsPerPixel()} component(s) per voxel")  # fmt: skip
    center = _as_points(center_lps, "plane centre", (3,))
    u, v = _unit_axes(u_lps, v_lps)
    if not (np.isfinite(spacing_mm) and spacing_mm > 0 and np.isfinite(size_mm) and size_mm >= spacing_mm):
        raise InputError(f"plane image: bad size {size_mm} mm or spacing {spacing_mm} mm")
    if not (np.isfinite(slab_mm) and slab_mm >= 0):
        raise InputError(f"plane image: bad slab thickness {slab_mm} mm")
    half = int(round(size_mm / (2.0 * spacing_mm)))
    n = 2 * half + 1
    normal = np.cross(u, v)
    layers = 1 if slab_mm <= 0 else int(math.ceil(slab_mm / 0.25)) + 1
    step = slab_mm / (layers - 1) if layers > 1 else 1.0
    origin = center - half * spacing_mm * (u + v) - 0.5 * (layers - 1) * step * normal
    resampled = sitk.Resample(
        image,
        [n, n, layers],
        sitk.Transform(),
        sitk.sitkLinear,
        origin.tolist(),
        [float(spacing_mm), float(spacing_mm), float(step)],
        np.stack([u, v, normal], axis=1).ravel().tolist(),  # columns: world directions of the index axes
        AIR_HU,
        sitk.sitkFloat32,
    )
    pixels = sitk.GetArrayFromImage(resampled).mean(axis=0, dtype=np.float64)  # (layers, v, u) -> (v, u)
    return PlaneImage(pixels.astype(np.float32), float(spacing_mm), center, u, v, float(slab_mm))


def annulus_plane_image(
    image: sitk.Image, hinge_points_lps: ArrayLike, size_mm: float = 60.0, spacing_mm: float = 0.25,
    slab_mm: float = 0.0,
) -> PlaneImage:  # fmt: skip
    """The CT on the plane of the three hinge points, centred on their centroid, ``u`` towards RCC.

    Args:
        image: 3D CT in HU.
        hinge_points_lps: (3, 3) world LPS mm, order RCC, LCC, NCC; ``v = normal x u`` with the normal from the
            ventricle into the aorta (:func:`geometry.annulus_plane`), so the image is seen from the aorta.
        size_mm, spacing_mm, slab_mm: as :func:`reconstruct_plane`.

    Raises:
        InputError: degenerate hinge triangle or bad image (see :func:`reconstruct_plane`).
    """
    points = _as_points(hinge_points_lps, "hinge points", (3, 3))
    plane = annulus_plane(points)
    u, v = plane_axes(plane, points[0])
    return reconstruct_plane(image, plane.center, u, v, size_mm, spacing_mm, slab_mm)


def sample_bilinear(pixels: np.ndarray, pixel: np.ndarray, fill: float = AIR_HU) -> np.ndarray:
    """Bilinear interpolation of a (N_v, N_u) image at continuous (..., 2) pixel (col, row); ``fill`` outside."""
    col, row = pixel[..., 0], pixel[..., 1]
    n_v, n_u = pixels.shape
    inside = (col >= 0) & (col <= n_u - 1) & (row >= 0) & (row <= n_v - 1)
    c = np.clip(col, 0, n_u - 1)
    r = np.clip(row, 0, n_v - 1)
    c0 = np.minimum(np.floor(c).astype(np.intp), n_u - 2) if n_u > 1 else np.zeros(c.shape, np.intp)
    r0 = np.minimum(np.floor(r).astype(np.intp), n_v - 2) if n_v > 1 else np.zeros(r.shape, np.intp)
    fc, fr = c - c0, r - r0
    c1, r1 = np.minimum(c0 + 1, n_u - 1), np.minimum(r0 + 1, n_v - 1)
    top = pixels[r0, c0] * (1 - fc) + pixels[r0, c1] * fc
    bottom = pixels[r1, c0] * (1 - fc) + pixels[r1, c1] * fc
    return np.where(inside, top * (1 - fr) + bottom * fr, fill)
