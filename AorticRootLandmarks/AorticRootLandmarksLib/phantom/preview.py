"""PNG preview of a phantom case: axial, coronal and sagittal slices through the annulus centre and the annulus plane;
and :func:`save_styles_preview`, one row per phantom style (``docs/images/phantom_styles.png``).

Slices are resampled in world LPS mm (so flipped image directions look the same) and shown in radiological
convention: the patient's right on the image's left, anterior up (axial), superior up (coronal, sagittal).
matplotlib is imported here only (Agg canvas, no pyplot state), so the phantom package works without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np
import SimpleITK as sitk

from ..constants import HINGE_NAMES
from .root import RootGeometry, root_from_params

if TYPE_CHECKING:
    from . import PhantomCase

WINDOW = (-200.0, 800.0)
COLORS = {"RCC": "#ff4040", "LCC": "#40ff40", "NCC": "#ffd940"}


def plane_slice(
    image: sitk.Image, center: np.ndarray, u: np.ndarray, v: np.ndarray, half: tuple[float, float], pixel: float
) -> np.ndarray:
    """Resample ``image`` on the plane ``center + a u + b v`` (world LPS mm), |a| <= half[0], |b| <= half[1].

    Returns:
        (rows, cols) float32 HU; column index grows along ``u``, row index along ``v``; -1024 outside the image.
    """
    nu, nv = int(2 * half[0] / pixel) + 1, int(2 * half[1] / pixel) + 1
    w = np.cross(u, v)
    ref = sitk.Image(nu, nv, 1, sitk.sitkFloat32)
    ref.SetSpacing((pixel, pixel, 1.0))
    ref.SetDirection(tuple(np.stack([u, v, w], 1).ravel().tolist()))
    ref.SetOrigin(tuple((center - half[0] * u - half[1] * v).tolist()))
    out = sitk.Resample(sitk.Cast(image, sitk.sitkFloat32), ref, sitk.Transform(), sitk.sitkLinear, -1024.0)
    return sitk.GetArrayFromImage(out)[0]


def _project(points: np.ndarray, center: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    d = np.atleast_2d(points) - center
    return np.stack([d @ u, d @ v], 1)


@dataclass(frozen=True)
class _View:
    """One panel: the plane ``centre + a u + b v`` (world LPS mm), |a| <= half[0], |b| <= half[1]."""

    title: str
    u: np.ndarray
    v: np.ndarray
    half: tuple[float, float]
    letters: tuple[str, str, str, str]  # orientation labels: left, right, top, bottom
    centre: np.ndarray
    pixel: float
    kind: str  # "orthogonal", "annulus" or "long axis"


def _views(image: sitk.Image, center: np.ndarray, root: RootGeometry) -> list[_View]:
    """Axial, coronal, sagittal through the annulus centre; the annulus plane; long axes through RCC and NCC."""
    corners = np.array(
        [
            image.TransformIndexToPhysicalPoint([int(c) for c in idx])
            for idx in np.stack(np.meshgrid(*[[0, s - 1] for s in image.GetSize()], indexing="ij"), -1).reshape(-1, 3)
        ]
    )
    lo, hi = corners.min(0), corners.max(0)
    half_fov = np.maximum(np.abs(hi - center), np.abs(center - lo))
    pixel = max(min(image.GetSpacing()), float(2 * half_fov.max()) / 700)
    fine = min(pixel, 0.25)
    ex, ey, ez = np.eye(3)
    e1, e2 = root.frame[:, 0], root.frame[:, 1]
    none = ("", "", "", "")
    views = [
        _View("axial", ex, ey, (half_fov[0], half_fov[1]), ("R", "L", "A", "P"), center, pixel, "orthogonal"),
        _View("coronal", ex, -ez, (half_fov[0], half_fov[2]), ("R", "L", "S", "I"), center, pixel, "orthogonal"),
        _View("sagittal", ey, -ez, (half_fov[1], half_fov[2]), ("A", "P", "S", "I"), center, pixel, "orthogonal"),
        _View("annulus plane (seen from the aorta)", e2, -e1, (35.0, 35.0), none, center, fine, "annulus"),
    ]
    for k in (0, 2):  # long-axis planes through the RCC and the NCC hinge points, centred 12 mm above the ring
        radial = np.cos(root.nadir_angles[k]) * e1 + np.sin(root.nadir_angles[k]) * e2
        above = center + 12.0 * root.normal
        title = f"long axis through {HINGE_NAMES[k]}"
        views.append(_View(title, radial, -root.normal, (35.0, 35.0), none, above, fine, "long axis"))
    return views


def _mark_hinges(ax, points: np.ndarray, view: _View) -> None:
    """Hinge points (N, 3) world LPS: circles, faded when off the slice (long-axis views: only those near it)."""
    uv = _project(points, view.centre, view.u, view.v)
    dist = np.abs((points - view.centre) @ np.cross(view.u, view.v))
    for name, (a, b), d in zip(HINGE_NAMES, uv, dist, strict=True):
        if view.kind == "long axis" and d > 3:
            continue
        alpha = 1.0 if d < 3 else 0.45  # faded: hinge point off this slice
        ax.plot(a, b, "o", ms=7, mfc="none", mec=COLORS[name], mew=2, alpha=alpha)
        ax.annotate(
            name,
            (a, b),
            xytext=(6, -6),
            textcoords="offset points",
            color=COLORS[name],
            fontsize=10,
            fontweight="bold",
            alpha=alpha,
        )


def _mark_ring_and_ostia(ax, root: RootGeometry, ostia: dict, view: _View) -> None:
    """The true annulus ellipse (annulus view) and the coronary ostia (long-axis views: only those near the slice)."""
    if view.kind == "annulus":
        t = np.linspace(0, 2 * np.pi, 200)
        ring = root.world(root.ellipse_radius(t.astype(np.float32)).astype(float), t, 0.0)
        rr = _project(ring, view.centre, view.u, view.v)
        ax.plot(rr[:, 0], rr[:, 1], "--", color="cyan", lw=0.8, alpha=0.7)
    for name, p in ostia.items():
        if abs((np.array(p) - view.centre) @ np.cross(view.u, view.v)) > 4 and view.kind == "long axis":
            continue
        a, b = _project(np.array(p), view.centre, view.u, view.v)[0]
        ax.plot(a, b, "x", color="magenta", ms=6)
        ax.annotate(name, (a, b), xytext=(5, 5), textcoords="offset points", color="magenta", fontsize=8)


def _draw(ax, case: "PhantomCase", root: RootGeometry, view: _View, window: tuple[float, float]) -> None:
    """One panel: the resampled slice, hinge points, ring and ostia, annulus centre, orientation letters."""
    half = view.half
    ax.imshow(
        plane_slice(case.image, view.centre, view.u, view.v, half, view.pixel),
        cmap="gray",
        vmin=window[0],
        vmax=window[1],
        extent=(-half[0], half[0], half[1], -half[1]),
        interpolation="bilinear",
    )
    _mark_hinges(ax, case.landmarks_lps, view)
    if view.kind != "orthogonal":
        _mark_ring_and_ostia(ax, root, case.truth["ostia"], view)
    ax.plot(*_project(root.center, view.centre, view.u, view.v)[0], "+", color="cyan", ms=10)
    ax.set_title(view.title, color="white", fontsize=11)
    ax.set_xticks([])
    ax.set_yticks([])
    places = (
        (0.01, 0.5, "left", "center"),
        (0.99, 0.5, "right", "center"),
        (0.5, 0.99, "center", "top"),
        (0.5, 0.01, "center", "bottom"),
    )
    for (x, y, ha, va), s in zip(places, view.letters, strict=True):
        ax.text(x, y, s, transform=ax.transAxes, color="orange", ha=ha, va=va, fontsize=10)


def _title(case: "PhantomCase") -> str:
    p, a, image = case.truth["params"], case.truth["annulus"], case.image
    flip = "".join("xyz"[i] for i, f in enumerate(p["grid"]["flip"]) if f) or "none"
    return (
        f"{case.case_id} ({case.truth.get('style', 'classic')})  quality {case.quality}  "
        f"size {tuple(image.GetSize())}  spacing "
        f"{tuple(round(s, 2) for s in image.GetSpacing())} mm  flipped: {flip}\n"
        f"valve {'open' if p['root']['valve_open'] else 'closed'}, annulus perimeter {a['perimeter_mm']:.1f} mm, "
        f"diameters {a['min_diameter_mm']:.1f}/{a['max_diameter_mm']:.1f} mm, "
        f"noise {p['imaging']['noise_std']:.0f} HU, "
        f"{len(p['calcs'])} calcium nodules"
    )


def save_preview(case: "PhantomCase", png_path: Union[str, Path], window: tuple[float, float] = WINDOW) -> None:
    """Write a 2x3 PNG: axial, coronal, sagittal through the annulus centre; annulus plane with the hinge points;
    long-axis planes through the RCC and NCC hinge points (aorta up).

    Args:
        case: the phantom case (its truth gives the annulus centre and frame).
        png_path: output file (parent folders are created).
        window: display window in HU.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    center = np.array(case.truth["annulus"]["center_lps"])
    root = root_from_params(case.truth["params"]["root"], center)
    fig = Figure(figsize=(15, 10.5), dpi=100, facecolor="black")
    FigureCanvasAgg(fig)
    for n_ax, view in enumerate(_views(case.image, center, root)):
        _draw(fig.add_subplot(2, 3, n_ax + 1), case, root, view, window)
    fig.suptitle(_title(case), color="white", fontsize=11)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.91, wspace=0.03, hspace=0.1)
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, facecolor="black")


def _framing_views(case: "PhantomCase", root: RootGeometry) -> list[_View]:
    """Axial and coronal through the annulus, each showing the whole image (so an off-centre root shows), and the
    annulus plane."""
    image = case.image
    last = np.array(image.GetSize()) - 1
    corners = np.array([image.TransformContinuousIndexToPhysicalPoint((np.array(c) * last).tolist())
                        for c in np.ndindex(2, 2, 2)])  # fmt: skip
    lo, hi = corners.min(0), corners.max(0)
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    c = root.center
    pixel = max(min(image.GetSpacing()), float(2 * half.max()) / 500)
    ex, ey, ez = np.eye(3)
    e1, e2 = root.frame[:, 0], root.frame[:, 1]
    axial = np.array([mid[0], mid[1], c[2]])
    coronal = np.array([mid[0], c[1], mid[2]])
    return [
        _View("axial through the annulus", ex, ey, (half[0], half[1]), ("R", "L", "A", "P"), axial, pixel,
              "orthogonal"),
        _View("coronal through the annulus", ex, -ez, (half[0], half[2]), ("R", "L", "S", "I"), coronal, pixel,
              "orthogonal"),
        _View("annulus plane", e2, -e1, (35.0, 35.0), ("", "", "", ""), c, min(pixel, 0.25), "annulus"),
    ]  # fmt: skip


def save_styles_preview(
    png_path: Union[str, Path], index: int = 0, seed: int = 0, size: str = "full", window: tuple[float, float] = WINDOW
) -> None:
    """One row per style of ``styles.STYLES`` (case ``index`` of each): axial and coronal slices through the annulus
    showing the whole field of view, and the annulus plane with the hinge points.

    Example:
        >>> save_styles_preview("docs/images/phantom_styles.png")  # doctest: +SKIP
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from . import generate_case
    from .styles import STYLES

    fig = Figure(figsize=(13.5, 4.6 * len(STYLES)), dpi=72, facecolor="black")
    FigureCanvasAgg(fig)
    for row, style in enumerate(STYLES):
        case = generate_case(index, seed, size, style)
        p, image = case.truth["params"], case.image
        root = root_from_params(p["root"], np.array(case.truth["annulus"]["center_lps"]))
        for col, view in enumerate(_framing_views(case, root)):
            ax = fig.add_subplot(len(STYLES), 3, 3 * row + col + 1)
            _draw(ax, case, root, view, window)
        fov = np.array(image.GetSize()) * np.array(image.GetSpacing())
        fig.text(
            0.01, 1 - (row + 0.02) / len(STYLES),
            f"{style}: {'x'.join(map(str, image.GetSize()))} voxels, {image.GetSpacing()[0]:.2f} x "
            f"{image.GetSpacing()[2]:.2f} mm, FOV {fov[0]:.0f} x {fov[2]:.0f} mm, lumen {p['hu']['blood']:.0f} HU, "
            f"noise {p['imaging']['noise_std']:.0f} HU, perimeter {case.truth['annulus']['perimeter_mm']:.0f} mm",
            color="white", fontsize=11, va="top",
        )  # fmt: skip
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.97, wspace=0.03, hspace=0.18)
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, facecolor="black")
