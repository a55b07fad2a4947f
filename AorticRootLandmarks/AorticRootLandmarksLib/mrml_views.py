"""Slice views and the layout: the double-oblique annulus views an analyst sets by hand, the annulus review layout.

Frames as in :mod:`mrml`: the scene is **world RAS mm**; arrays passed in or out are **world LPS mm** unless the name
says ``_ras``. Works with 3D Slicer and with the ``slicer-core`` wheel (tested headless on a plain scene).

Example (Slicer's Python console)::

    from AorticRootLandmarksLib import geometry, mrml_views
    plane = geometry.annulus_plane(hinges_lps)
    mrml_views.reorient_slice_views(slicer.mrmlScene, plane, hinges_lps[0])     # Red: annulus, RCC up
"""

from __future__ import annotations

import numpy as np
import slicer
from slicer.util import arrayFromVTKMatrix, vtkMatrixFromArray

from .frames import lps_to_ras
from .geometry import Plane, plane_axes
from .typing import PointsRAS

#: Slice views that are reoriented: Red in the annulus plane, Yellow and Green through the root axis.
SLICE_VIEWS: tuple[str, str, str] = ("Red", "Yellow", "Green")


def annulus_slice_frames(plane: Plane, toward_lps: np.ndarray) -> dict[str, np.ndarray]:
    """SliceToRAS matrices of the double-oblique views an analyst sets by hand for the aortic annulus.

    With ``n`` the annulus normal (ventricle -> aorta) and ``u`` the in-plane unit direction towards
    ``toward_lps`` (RCC), all in RAS, columns are (screen x, screen up, slice normal, centre):

    - Red (annulus short axis): ``[n x u, u, n]``: the normal is the annulus normal, RCC straight up, and it is
      left-handed like Slicer's axial preset (viewed from the feet, patient's left on the screen's right), so a
      horizontal annulus with RCC anterior gives exactly the axial view.
    - Green (coronal-like long axis): ``[n x u, n, u]``: contains the root axis; aorta up.
    - Yellow (sagittal-like long axis through RCC and the root axis): ``[-u, n, n x u]``.

    All three pass through the centre (hinge-point centroid) and are mutually orthogonal. With ``n = S`` and
    ``u = A`` they equal Slicer's axial, coronal and sagittal presets.

    Args:
        plane: annulus plane, LPS (centre = hinge-point centroid).
        toward_lps: (3,) world LPS mm, the point the Red view's up direction points to (RCC).

    Returns:
        {"Red", "Yellow", "Green"}: (4, 4) SliceToRAS, RAS mm.
    """
    u_lps, _ = plane_axes(plane, toward_lps)
    n, u, center = lps_to_ras(plane.normal), lps_to_ras(u_lps), lps_to_ras(plane.center)
    columns = {
        "Red": (np.cross(n, u), u, n),
        "Green": (np.cross(n, u), n, u),
        "Yellow": (-u, n, np.cross(n, u)),
    }
    frames = {}
    for view, (x, y, z) in columns.items():
        frame = np.eye(4)
        frame[:3, 0], frame[:3, 1], frame[:3, 2], frame[:3, 3] = x, y, z, center
        frames[view] = frame
    return frames


def get_slice_nodes(scene: slicer.vtkMRMLScene, create: bool = False) -> dict[str, slicer.vtkMRMLSliceNode]:
    """{layout name: node} of the scene's Red, Yellow, Green slice nodes; ``create`` adds missing ones (headless:
    in Slicer the layout manager has made them)."""
    found = {}
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLSliceNode")
        if node.GetLayoutName() in SLICE_VIEWS:
            found.setdefault(node.GetLayoutName(), node)
    if create:
        for view in SLICE_VIEWS:
            if view not in found:
                logic = slicer.vtkMRMLSliceLogic()
                logic.SetMRMLScene(scene)
                found[view] = logic.AddSliceNode(view)
    return found


def set_slice_to_ras(slice_node: slicer.vtkMRMLSliceNode, frame: np.ndarray) -> None:
    """Set a slice node's SliceToRAS from a (4, 4) RAS matrix with orthonormal rotation columns.

    Right-handed frames go through ``SetSliceToRASByNTP`` (N = column 2, T = column 0), which only makes
    right-handed ones; a left-handed frame (like Slicer's axial preset) is copied into SliceToRAS.
    """
    frame = np.asarray(frame, dtype=np.float64)
    if np.linalg.det(frame[:3, :3]) > 0:
        slice_node.SetSliceToRASByNTP(*frame[:3, 2], *frame[:3, 0], *frame[:3, 3], 0)
    else:
        slice_node.GetSliceToRAS().DeepCopy(vtkMatrixFromArray(frame))
        slice_node.UpdateMatrices()


def reorient_slice_views(
    scene: slicer.vtkMRMLScene,
    plane: Plane,
    toward_lps: np.ndarray,
    field_of_view_mm: float | None = 80.0,
    create: bool = False,
) -> dict[str, slicer.vtkMRMLSliceNode]:
    """Turn Red into the annulus short-axis view and Yellow/Green into the long-axis views (double oblique).

    Args:
        plane: annulus plane, LPS; the views are centred on ``plane.center`` (hinge-point centroid).
        toward_lps: (3,) world LPS mm, the point that appears straight up in Red (RCC).
        field_of_view_mm: shorter side of each view's field of view (zoom to the root); None keeps the zoom.
        create: create missing slice nodes (headless).

    Returns:
        {layout name: slice node} reoriented; axes as in :func:`annulus_slice_frames`.
    """
    nodes = get_slice_nodes(scene, create=create)
    frames = annulus_slice_frames(plane, toward_lps)
    for view, node in nodes.items():
        was_modifying = node.StartModify()
        set_slice_to_ras(node, frames[view])
        if field_of_view_mm is not None:
            width, height, _ = node.GetDimensions()
            scale = field_of_view_mm / max(min(width, height), 1)
            node.SetFieldOfView(width * scale, height * scale, node.GetFieldOfView()[2])
        node.EndModify(was_modifying)
    return nodes


def slice_to_ras(slice_node: slicer.vtkMRMLSliceNode) -> np.ndarray:
    """(4, 4) SliceToRAS of a slice node: columns screen x, screen up, slice normal, centre (RAS)."""
    return arrayFromVTKMatrix(slice_node.GetSliceToRAS())


def ras_to_slice_xy(slice_node: slicer.vtkMRMLSliceNode, points_ras: PointsRAS) -> np.ndarray:
    """Project (K, 3) world RAS mm into the slice view: (K, 3) = (pixel x, pixel y from the bottom, mm off-slice).

    Uses the node's XYToRAS (pixels of a view of ``GetDimensions()``), the matrix Slicer's slice views render with.
    The third column is the signed distance to the slice along its normal, in mm.
    """
    points = np.asarray(points_ras, dtype=np.float64).reshape(-1, 3)
    ras_to_xy = np.linalg.inv(arrayFromVTKMatrix(slice_node.GetXYToRAS()))
    xyz = points @ ras_to_xy[:3, :3].T + ras_to_xy[:3, 3]
    frame = slice_to_ras(slice_node)
    xyz[:, 2] = (points - frame[:3, 3]) @ frame[:3, 2]
    return xyz


# --------------------------------------------------------------------------------------------- layout

#: Layout id of the annulus review layout (an application-wide integer; SlicerHeart uses 1512 and 1513).
ANNULUS_LAYOUT_ID = 1570


def register_layout(layout_node: slicer.vtkMRMLLayoutNode, layout_id: int, description: str) -> None:
    """Register (or update) a custom layout with the application's layout node, as SlicerHeart does at startup.

    Args:
        layout_node: the layout node (in Slicer ``slicer.app.layoutManager().layoutLogic().GetLayoutNode()``).
        layout_id: integer id of the layout.
        description: the layout XML (``<layout type=...>`` with ``<view class=... singletontag=...>`` items).
    """
    if layout_node.IsLayoutDescription(layout_id):
        layout_node.SetLayoutDescription(layout_id, description)
    else:
        layout_node.AddLayoutDescription(layout_id, description)


def show_in_views(scene: slicer.vtkMRMLScene, table_node=None, chart_node=None) -> None:
    """Show a table node in every table view and a plot chart in every plot view, and make them the active ones.

    What the application's ``PropagateTableSelection`` / ``PropagatePlotChartSelection`` do, in MRML only.
    """
    selection = scene.GetNodeByID("vtkMRMLSelectionNodeSingleton")
    for node, view_class, setter, active in (
        (table_node, "vtkMRMLTableViewNode", "SetTableNodeID", "SetReferenceActiveTableID"),
        (chart_node, "vtkMRMLPlotViewNode", "SetPlotChartNodeID", "SetReferenceActivePlotChartID"),
    ):
        if node is None:
            continue
        for index in range(scene.GetNumberOfNodesByClass(view_class)):
            getattr(scene.GetNthNodeByClass(index, view_class), setter)(node.GetID())
        if selection is not None:
            getattr(selection, active)(node.GetID())
