"""Render slice views headless, the way Slicer draws them: the slice logic's resliced image plus the markups; and the
annulus review layout around them (table and S-curve drawn from the module's table and plot nodes).

The background comes from ``vtkMRMLSliceLogic`` (the class behind every Slicer slice view: it reslices the volume
with the slice node's XYToRAS matrix and applies the display node's window/level), so the picture is what an
analyst sees in that view. Control points are drawn at their projection (``mrml_views.ras_to_slice_xy``) with their
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

from AorticRootLandmarksLib import frames, mrml, mrml_tables, mrml_views  # noqa: E402

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


def draw_slice_view(axes, scene: slicer.vtkMRMLScene, view: str, volume_node, fiducial_node, contour_node=None,
                    title: str = "") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Draw one slice view into matplotlib axes: the CT as the slice logic reslices it, the other views'
    intersections, the control points (hollow when more than 3 mm off the slice) and, if given, a closed curve.

    Returns:
        (rgba of the resliced CT, row 0 at the bottom; (K, 3) control points in view pixels; their labels).
    """
    nodes = mrml_views.get_slice_nodes(scene)
    slice_node = nodes[view]
    rgba = reslice_rgba(scene, slice_node, volume_node)
    height, width = rgba.shape[:2]
    names, points_lps = mrml.get_fiducials_lps(fiducial_node)
    points_xy = mrml_views.ras_to_slice_xy(slice_node, frames.lps_to_ras(points_lps))
    axes.imshow(rgba, origin="lower", interpolation="nearest", extent=(-0.5, width - 0.5, -0.5, height - 0.5))
    axes.set_xlim(-0.5, width - 0.5)
    axes.set_ylim(-0.5, height - 0.5)
    axes.axis("off")
    center_xy = mrml_views.ras_to_slice_xy(slice_node, mrml_views.slice_to_ras(slice_node)[:3, 3])[0]
    for other, other_node in nodes.items():
        if other == view:
            continue
        # The other view's plane cuts this one along normal_this x normal_other.
        frame, other_frame = mrml_views.slice_to_ras(slice_node), mrml_views.slice_to_ras(other_node)
        direction = np.cross(frame[:3, 2], other_frame[:3, 2])
        if np.linalg.norm(direction) < 1e-6:
            continue
        ends = mrml_views.ras_to_slice_xy(slice_node, other_frame[:3, 3] + np.outer([-500, 500], direction))
        axes.plot(ends[:, 0], ends[:, 1], color=VIEW_COLOURS[other], linewidth=1.0, alpha=0.8)
    if contour_node is not None:
        contour = slicer.util.arrayFromMarkupsControlPoints(contour_node, world=True)
        xy = mrml_views.ras_to_slice_xy(slice_node, np.vstack([contour, contour[:1]]))
        if np.all(np.abs(xy[:, 2]) < 3.0):  # drawn only in a view that contains it (Red)
            axes.plot(xy[:, 0], xy[:, 1], color="#3fd0ff", linewidth=1.5)
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
    return rgba, points_xy, names


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
        scene: scene holding the slice nodes (``mrml_views.get_slice_nodes``).
        view: "Red", "Yellow" or "Green".
        volume_node: background volume (its display node sets window/level).
        fiducial_node: control points to draw; points more than 3 mm off the slice are drawn hollow.
        path: PNG file to write; one image pixel per view pixel.
        title: optional caption drawn in the top-left corner.

    Returns:
        The pixels as saved and the projected points.
    """
    width, height, _ = mrml_views.get_slice_nodes(scene)[view].GetDimensions()
    dpi = 100
    figure = plt.figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    _, points_xy, names = draw_slice_view(figure.add_axes((0, 0, 1, 1)), scene, view, volume_node, fiducial_node,
                                          title=title)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    saved = (plt.imread(str(path)) * 255).round().astype(np.uint8)
    return SliceRender(rgba=saved, points_xy=points_xy, labels=names)


def render_annulus_layout(scene: slicer.vtkMRMLScene, volume_node, result, path: str | Path, title: str = "") -> None:
    """The annulus review layout as slicer-core can draw it, to a PNG: Red (the annulus plane, with the lumen
    contour) large, Yellow and Green beside it, the measurement table node and the S-curve plot chart below.

    Not a screenshot of the application: the 3D view is left out (no OpenGL rendering here), the table and the
    chart are drawn with matplotlib from the module's table and plot nodes, and the layout's proportions are kept.

    Args:
        result: the module logic's ``AnnulusResult`` (fiducial, table, chart and contour nodes).
    """
    figure = plt.figure(figsize=(12.0, 10.0), dpi=100, facecolor="black")
    grid = figure.add_gridspec(3, 3, height_ratios=(1.0, 1.0, 0.95), hspace=0.04, wspace=0.02,
                               left=0.01, right=0.99, top=0.96, bottom=0.01)
    for view, cell in (("Red", grid[0:2, 0:2]), ("Yellow", grid[0, 2]), ("Green", grid[1, 2])):
        axes = figure.add_subplot(cell)
        draw_slice_view(axes, scene, view, volume_node, result.fiducialNode,
                        result.contourNode if view == "Red" else None, title=view)
        axes.add_patch(plt.Rectangle((0, 0), 1, 1, transform=axes.transAxes, fill=False, lw=3,
                                     edgecolor=VIEW_COLOURS[view]))
    table_axes = figure.add_subplot(grid[2, 0:2])  # the table view; the plot view is right of it
    table_axes.axis("off")
    rows = [(label, "–" if not np.isfinite(value) else f"{value:.1f}" if unit else f"{value:.2f}", unit)
            for label, value, unit in mrml_tables.read_measurement_table(result.tableNode)]
    half = (len(rows) + 1) // 2
    for column, part in enumerate((rows[:half], rows[half:])):
        table = table_axes.table(cellText=part, colLabels=list(mrml_tables.MEASUREMENT_COLUMNS), loc="upper left",
                                 bbox=(0.5 * column, 0.0, 0.49, 1.0), colWidths=(0.72, 0.16, 0.12))
        table.auto_set_font_size(False)
        table.set_fontsize(7)
    plot_axes = figure.add_axes((0.715, 0.06, 0.27, 0.235))  # room for the axis labels under the Green view
    curve, views = (result.chartNode.GetNthPlotSeriesNode(i).GetTableNode() for i in range(2))
    lao, cran = (slicer.util.arrayFromTableColumn(curve, c) for c in (mrml_tables.LAO_COLUMN, mrml_tables.CRAN_COLUMN))
    plot_axes.plot(lao, cran, color="#1f77b4")
    names = views.GetTable().GetColumnByName(mrml_tables.VIEW_COLUMN)
    for row in range(views.GetNumberOfRows()):
        x, y = (float(views.GetTable().GetValueByName(row, c).ToDouble())
                for c in (mrml_tables.LAO_COLUMN, mrml_tables.CRAN_COLUMN))
        plot_axes.plot(x, y, "o", color="#d62728")
        plot_axes.annotate(f"{names.GetValue(row)}", (x, y), textcoords="offset points", xytext=(6, -10), fontsize=8)
    plot_axes.set_xlabel("LAO (+) / RAO (-), deg", fontsize=8, color="white")
    plot_axes.set_ylabel("CRAN (+) / CAUD (-), deg", fontsize=8, color="white")
    plot_axes.set_title("S-curve: annulus plane edge-on", fontsize=9, color="white")
    plot_axes.tick_params(labelsize=7, colors="white")
    plot_axes.grid(alpha=0.3)
    if title:
        figure.suptitle(title, color="white", fontsize=11, x=0.01, ha="left")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, facecolor=figure.get_facecolor())
    plt.close(figure)
