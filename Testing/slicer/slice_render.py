"""Render a slice view headless, the way Slicer draws it: the slice logic's resliced image plus the markups.

The background comes from ``vtkMRMLSliceLogic`` (the class behind every Slicer slice view: it reslices the volume
with the slice node's XYToRAS matrix and applies the display node's window/level), so the picture is what an
analyst sees in that view. Control points are drawn at their projection (``mrml.ras_to_slice_xy``) with their
labels, and the other two views' slice intersections as lines, in the views' colours.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import slicer  # noqa: E402
import vtk.util.numpy_support as vtk_np  # noqa: E402

from AorticRootLandmarksLib import frames, mrml  # noqa: E402

VIEW_COLOURS = {"Red": "#f34a33", "Yellow": "#edd54c", "Green": "#6eb04b"}


@dataclass
class SliceRender:
    """A rendered slice view.

    Attributes:
        rgba: (H, W, 4) uint8, row 0 at the top (as saved in the PNG).
        points_xy: (K, 3) control points in view pixels (x from the left, y from the bottom, mm off the slice).
        labels: K control-point labels.
    """

    rgba: np.ndarray
    points_xy: np.ndarray
    labels: list[str]

    def pixel(self, x: float, y: float) -> np.ndarray:
        """RGBA at view pixel (x from the left, y from the bottom)."""
        height = self.rgba.shape[0]
        return self.rgba[height - 1 - int(round(y)), int(round(x))]


def reslice_rgba(scene: slicer.vtkMRMLScene, slice_node: slicer.vtkMRMLSliceNode, volume_node) -> np.ndarray:
    """(H, W, 4) uint8 image of ``volume_node`` in ``slice_node``'s view, row 0 at the bottom (VTK order)."""
    logic = slicer.vtkMRMLSliceLogic()
    logic.SetMRMLScene(scene)
    logic.SetSliceNode(slice_node)
    logic.GetSliceCompositeNode().SetBackgroundVolumeID(volume_node.GetID())
    producer = logic.GetImageDataConnection().GetProducer()
    producer.Update()
    image = producer.GetOutputDataObject(0)
    width, height, _ = image.GetDimensions()
    pixels = vtk_np.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, -1)
    return np.array(pixels, dtype=np.uint8, copy=True)


def render_slice_view(
    scene: slicer.vtkMRMLScene,
    view: str,
    volume_node,
    fiducial_node,
    path: str | Path,
    title: str = "",
) -> SliceRender:
    """Render one slice view with the CT, the control points and the other views' intersections to a PNG.

    Args:
        scene: scene holding the slice nodes (``mrml.get_slice_nodes``).
        view: "Red", "Yellow" or "Green".
        volume_node: background volume (its display node sets window/level).
        fiducial_node: control points to draw; points more than 3 mm off the slice are drawn hollow.
        path: PNG file to write; one image pixel per view pixel.
        title: optional caption drawn in the top-left corner.

    Returns:
        The pixels as saved and the projected points.
    """
    nodes = mrml.get_slice_nodes(scene)
    slice_node = nodes[view]
    rgba = reslice_rgba(scene, slice_node, volume_node)
    height, width = rgba.shape[:2]
    names, points_lps = mrml.get_fiducials_lps(fiducial_node)
    points_xy = mrml.ras_to_slice_xy(slice_node, frames.lps_to_ras(points_lps))

    dpi = 100
    figure = plt.figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.imshow(rgba, origin="lower", interpolation="nearest", extent=(-0.5, width - 0.5, -0.5, height - 0.5))
    axes.set_xlim(-0.5, width - 0.5)
    axes.set_ylim(-0.5, height - 0.5)
    axes.axis("off")
    center_xy = mrml.ras_to_slice_xy(slice_node, mrml.slice_to_ras(slice_node)[:3, 3])[0]
    for other, other_node in nodes.items():
        if other == view:
            continue
        # The other view's plane cuts this one along normal_this x normal_other.
        frame, other_frame = mrml.slice_to_ras(slice_node), mrml.slice_to_ras(other_node)
        direction = np.cross(frame[:3, 2], other_frame[:3, 2])
        if np.linalg.norm(direction) < 1e-6:
            continue
        ends = mrml.ras_to_slice_xy(slice_node, other_frame[:3, 3] + np.outer([-500, 500], direction))
        axes.plot(ends[:, 0], ends[:, 1], color=VIEW_COLOURS[other], linewidth=1.0, alpha=0.8)
    display = fiducial_node.GetDisplayNode()
    colour = display.GetSelectedColor() if display is not None else (1.0, 0.5, 0.5)
    for name, (x, y, off) in zip(names, points_xy, strict=True):
        filled = abs(off) < 3.0
        axes.plot(x, y, "o", markersize=9, markeredgewidth=2, markeredgecolor=colour,
                  markerfacecolor=colour if filled else "none")
        axes.text(x + 8, y + 8, name, color=colour, fontsize=12, fontweight="bold")
    if title:
        axes.text(6, height - 8, title, color="white", fontsize=9, va="top")
    axes.plot(*center_xy[:2], "+", color="white", markersize=8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    saved = (plt.imread(str(path)) * 255).round().astype(np.uint8)
    return SliceRender(rgba=saved, points_xy=points_xy, labels=names)
