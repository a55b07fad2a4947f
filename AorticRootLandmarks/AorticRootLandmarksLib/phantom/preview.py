"""PNG preview of a phantom case: axial, coronal and sagittal slices through the annulus centre and the annulus plane.

Slices are resampled in world LPS mm (so flipped image directions look the same) and shown in radiological
convention: the patient's right on the image's left, anterior up (axial), superior up (coronal, sagittal).
matplotlib is imported here only (Agg canvas, no pyplot state), so the phantom package works without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np
import SimpleITK as sitk

from .root import CUSPS, root_from_params

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

    image = case.image
    truth = case.truth
    center = np.array(truth["annulus"]["center_lps"])
    root = root_from_params(truth["params"]["root"], center)
    corners = np.array(
        [
            image.TransformIndexToPhysicalPoint([int(c) for c in idx])
            for idx in np.stack(np.meshgrid(*[[0, s - 1] for s in image.GetSize()], indexing="ij"), -1).reshape(-1, 3)
        ]
    )
    lo, hi = corners.min(0), corners.max(0)
    half_fov = np.maximum(np.abs(hi - center), np.abs(center - lo))
    pixel = max(min(image.GetSpacing()), float(2 * half_fov.max()) / 700)
    ex, ey, ez = np.eye(3)
    e1, e2 = root.frame[:, 0], root.frame[:, 1]
    views = [
        ("axial", ex, ey, (half_fov[0], half_fov[1]), ("R", "L", "A", "P")),
        ("coronal", ex, -ez, (half_fov[0], half_fov[2]), ("R", "L", "S", "I")),
        ("sagittal", ey, -ez, (half_fov[1], half_fov[2]), ("A", "P", "S", "I")),
        ("annulus plane (seen from the aorta)", e2, -e1, (35.0, 35.0), ("", "", "", "")),
    ]
    for k in (0, 2):  # long-axis planes through the RCC and the NCC hinge points
        radial = np.cos(root.nadir_angles[k]) * e1 + np.sin(root.nadir_angles[k]) * e2
        views.append((f"long axis through {CUSPS[k]}", radial, -root.normal, (35.0, 35.0), ("", "", "", "")))
    fig = Figure(figsize=(15, 10.5), dpi=100, facecolor="black")
    FigureCanvasAgg(fig)
    pts = case.landmarks_lps
    for n_ax, (title, u, v, half, letters) in enumerate(views):
        ax = fig.add_subplot(2, 3, n_ax + 1)
        c0 = center if n_ax < 4 else center + 12.0 * root.normal
        px = pixel if n_ax < 3 else min(pixel, 0.25)
        sl = plane_slice(image, c0, u, v, half, px)
        ax.imshow(
            sl,
            cmap="gray",
            vmin=window[0],
            vmax=window[1],
            extent=(-half[0], half[0], half[1], -half[1]),
            interpolation="bilinear",
        )
        uv = _project(pts, c0, u, v)
        dist = np.abs((pts - c0) @ np.cross(u, v))
        for name, (a, b), d in zip(CUSPS, uv, dist):
            if n_ax > 3 and d > 3:
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
        if n_ax >= 3:
            t = np.linspace(0, 2 * np.pi, 200)
            ring = root.world(root.ellipse_radius(t.astype(np.float32)).astype(float), t, 0.0)
            rr = _project(ring, c0, u, v)
            if n_ax == 3:
                ax.plot(rr[:, 0], rr[:, 1], "--", color="cyan", lw=0.8, alpha=0.7)
            for name, p in truth["ostia"].items():
                if abs((np.array(p) - c0) @ np.cross(u, v)) > 4 and n_ax > 3:
                    continue
                a, b = _project(np.array(p), c0, u, v)[0]
                ax.plot(a, b, "x", color="magenta", ms=6)
                ax.annotate(name, (a, b), xytext=(5, 5), textcoords="offset points", color="magenta", fontsize=8)
        ax.plot(*_project(center, c0, u, v)[0], "+", color="cyan", ms=10)
        ax.set_title(title, color="white", fontsize=11)
        ax.set_xticks([])
        ax.set_yticks([])
        for (x, y, ha, va), s in zip(
            (
                (0.01, 0.5, "left", "center"),
                (0.99, 0.5, "right", "center"),
                (0.5, 0.99, "center", "top"),
                (0.5, 0.01, "center", "bottom"),
            ),
            letters,
        ):
            ax.text(x, y, s, transform=ax.transAxes, color="orange", ha=ha, va=va, fontsize=10)
    p = truth["params"]
    flip = "".join("xyz"[i] for i, f in enumerate(p["grid"]["flip"]) if f) or "none"
    a = truth["annulus"]
    fig.suptitle(
        f"{case.case_id}  quality {case.quality}  size {tuple(image.GetSize())}  spacing "
        f"{tuple(round(s, 2) for s in image.GetSpacing())} mm  flipped: {flip}\n"
        f"valve {'open' if p['root']['valve_open'] else 'closed'}, annulus perimeter {a['perimeter_mm']:.1f} mm, "
        f"diameters {a['min_diameter_mm']:.1f}/{a['max_diameter_mm']:.1f} mm, "
        f"noise {p['imaging']['noise_std']:.0f} HU, "
        f"{len(p['calcs'])} calcium nodules",
        color="white",
        fontsize=11,
    )
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.91, wspace=0.03, hspace=0.1)
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, facecolor="black")
