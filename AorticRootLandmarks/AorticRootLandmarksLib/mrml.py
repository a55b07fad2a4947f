"""The only place that touches MRML: volume nodes <-> SimpleITK, landmark and plane nodes, reoriented slice views.

Frames (see docs/ARCHITECTURE.md): the MRML scene is in **world RAS mm**; files, SimpleITK images and every array
passed in or out of this module's public functions are in **world LPS mm** unless the name says ``_ras``.
``RAS = diag(-1, -1, 1) @ LPS`` (:mod:`frames`); this is the only module that gives the scene RAS.

Works with the full 3D Slicer and with the ``slicer-core`` wheel (MRML without Qt), so every function here is tested
headless on a plain ``slicer.vtkMRMLScene()``.

Example (Slicer's Python console)::

    from AorticRootLandmarksLib import mrml
    image = mrml.volume_node_to_sitk(getNode("CTACardio"))          # LPS geometry, exact
    node = mrml.set_fiducials(slicer.mrmlScene, ["RCC", "LCC", "NCC"], points_lps, confidence=[0.9, 0.8, 0.4])
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import numpy as np
import SimpleITK as sitk
import slicer
import vtk
from slicer.util import arrayFromVolume, arrayFromVTKMatrix, updateVolumeFromArray, vtkMatrixFromArray

from .constants import LOW_CONFIDENCE
from .errors import InputError
from .frames import LPS_TO_RAS, lps_to_ras, ras_to_lps
from .geometry import Plane, plane_axes
from .typing import PointsLPS, PointsRAS

#: Slice views that are reoriented: Red in the annulus plane, Yellow and Green through the root axis.
SLICE_VIEWS: tuple[str, str, str] = ("Red", "Yellow", "Green")
#: Node attribute holding the detected positions (JSON, LPS) so that "restore" survives scene save/load.
DETECTED_ATTRIBUTE = "AorticRootLandmarks.Detected"
#: Node reference from the landmarks to their annulus plane node.
PLANE_REFERENCE = "AorticRootLandmarks.AnnulusPlane"


def volume_node_to_sitk(volume_node: slicer.vtkMRMLScalarVolumeNode) -> sitk.Image:
    """Copy a scalar volume node into a SimpleITK image with the same voxels and LPS geometry.

    The node's IJK-to-RAS matrix is ``[D_ras @ diag(spacing) | origin_ras]``; the image gets
    ``direction = F @ D_ras``, ``origin = F @ origin_ras`` with ``F = diag(-1, -1, 1)``. Only signs change, so the
    copy is exact, flipped or oblique directions included.

    Args:
        volume_node: a 3D single-component ``vtkMRMLScalarVolumeNode`` not under a transform.

    Returns:
        Image of the node's voxel type, index (i, j, k) = the node's IJK.

    Raises:
        InputError: no node or no voxels, several components, 2D, or a parent transform (harden it first).
    """
    if volume_node is None or not volume_node.IsA("vtkMRMLScalarVolumeNode"):
        raise InputError("input volume: select a scalar volume (CT)")
    name = volume_node.GetName()
    image_data = volume_node.GetImageData()
    if image_data is None or image_data.GetNumberOfPoints() == 0:
        raise InputError(f"volume '{name}': has no voxels")
    if image_data.GetNumberOfScalarComponents() != 1:
        raise InputError(f"volume '{name}': has {image_data.GetNumberOfScalarComponents()} components; a CT has 1")
    if min(image_data.GetDimensions()) < 2:
        raise InputError(f"volume '{name}': is 2D {image_data.GetDimensions()}; a 3D CT volume is needed")
    if volume_node.GetParentTransformNode() is not None:
        raise InputError(f"volume '{name}': is under a transform; harden the transform first (Data module)")
    directions = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASDirectionMatrix(directions)
    direction_lps = LPS_TO_RAS @ arrayFromVTKMatrix(directions)[:3, :3]
    # arrayFromVolume is (k, j, i), the order sitk.GetImageFromArray expects; copy because VTK owns the memory.
    image = sitk.GetImageFromArray(np.array(arrayFromVolume(volume_node), copy=True))
    image.SetSpacing([float(s) for s in volume_node.GetSpacing()])
    image.SetOrigin([float(v) for v in ras_to_lps(volume_node.GetOrigin())])
    image.SetDirection([float(v) for v in direction_lps.ravel()])
    return image


def add_volume_from_sitk(
    scene: slicer.vtkMRMLScene,
    image: sitk.Image,
    name: str = "CT",
    window_level: tuple[float, float] | None = (800.0, 200.0),
) -> slicer.vtkMRMLScalarVolumeNode:
    """Add a SimpleITK image as a scalar volume node (inverse of :func:`volume_node_to_sitk`, exact).

    Args:
        scene: the MRML scene.
        image: 3D scalar image, LPS geometry.
        name: node name.
        window_level: display window and level in HU (default suits contrast CT of the aortic root); None keeps
            Slicer's automatic window/level.

    Returns:
        The new node, with default display nodes.
    """
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"image '{name}': need a 3D scalar image")
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    directions = np.eye(4)
    directions[:3, :3] = LPS_TO_RAS @ np.array(image.GetDirection()).reshape(3, 3)
    node.SetIJKToRASDirectionMatrix(vtkMatrixFromArray(directions))
    node.SetSpacing(*image.GetSpacing())
    node.SetOrigin(*lps_to_ras(image.GetOrigin()))
    updateVolumeFromArray(node, sitk.GetArrayViewFromImage(image))
    node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    if window_level is not None and display is not None:
        display.AutoWindowLevelOff()
        display.SetWindowLevel(*window_level)
    return node


def _point_description(confidence: float | None) -> str:
    if confidence is None or not np.isfinite(confidence):
        return ""
    low = confidence < LOW_CONFIDENCE
    return f"LOW CONFIDENCE {confidence:.2f}: check this point" if low else f"confidence {confidence:.2f}"


def set_fiducials(
    scene: slicer.vtkMRMLScene,
    names: Sequence[str],
    points_lps: PointsLPS,
    confidence: Sequence[float] | None = None,
    node: slicer.vtkMRMLMarkupsFiducialNode | None = None,
    node_name: str = "AorticRootLandmarks",
    store_as_detected: bool = True,
) -> slicer.vtkMRMLMarkupsFiducialNode:
    """Write landmarks into one fiducial node, creating it if needed; re-running replaces its points.

    Args:
        scene: the MRML scene.
        names: K control-point labels (RCC, LCC, NCC, then any extra landmarks).
        points_lps: (K, 3) world LPS mm.
        confidence: (K,) in [0, 1] or None; written into each point's description, low ones flagged.
        node: the node to update; None creates a new one named ``node_name``.
        store_as_detected: also remember these positions for :func:`restore_detected`.

    Returns:
        The fiducial node; its control points are in world RAS (MRML), in the order of ``names``.
    """
    points = np.asarray(points_lps, dtype=np.float64).reshape(-1, 3)
    if len(names) != len(points):
        raise ValueError(f"{len(names)} names for {len(points)} points")
    conf = [None] * len(points) if confidence is None else [float(c) for c in confidence]
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", node_name)
        node.CreateDefaultDisplayNodes()
    was_modifying = node.StartModify()
    # Fixed count stops a stray click in placement mode from adding a point; lift it while we rewrite.
    node.SetFixedNumberOfControlPoints(False)
    if node.GetNumberOfControlPoints() != len(points):
        node.RemoveAllControlPoints()
        for label in names:
            node.AddControlPoint(0.0, 0.0, 0.0, label)
    for index, (label, point_ras) in enumerate(zip(names, lps_to_ras(points), strict=True)):
        node.SetNthControlPointLabel(index, label)
        node.SetNthControlPointPositionWorld(index, *point_ras)
        node.SetNthControlPointDescription(index, _point_description(conf[index]))
    node.SetFixedNumberOfControlPoints(True)
    if store_as_detected:
        record = {"names": list(names), "positions_lps": points.tolist(),
                  "confidence": [None if c is None else round(c, 6) for c in conf]}
        node.SetAttribute(DETECTED_ATTRIBUTE, json.dumps(record))
    node.EndModify(was_modifying)
    return node


def get_control_points_lps(node: slicer.vtkMRMLMarkupsFiducialNode) -> tuple[list[str], PointsLPS, list[bool]]:
    """Labels, (K, 3) world LPS mm positions and whether each position is defined, of every control point.

    A point "deleted" in a fixed-count point list keeps its label and last position but is no longer defined.
    """
    names, points_ras, defined = [], [], []
    for index in range(node.GetNumberOfControlPoints()):
        names.append(node.GetNthControlPointLabel(index))
        point = np.zeros(3)
        node.GetNthControlPointPositionWorld(index, point)
        points_ras.append(point)
        defined.append(node.GetNthControlPointPositionStatus(index) == node.PositionDefined)
    return names, ras_to_lps(np.reshape(points_ras, (-1, 3))), defined


def get_fiducials_lps(node: slicer.vtkMRMLMarkupsFiducialNode) -> tuple[list[str], PointsLPS]:
    """Labels and (K, 3) world LPS mm positions of the **defined** control points (world: transforms applied).

    Cleared points (no position) are left out, so a cleared hinge point counts as missing, never as its old position.
    """
    names, points, defined = get_control_points_lps(node)
    return [n for n, d in zip(names, defined, strict=True) if d], points[np.asarray(defined, dtype=bool)]


def first_defined_point_lps(node: slicer.vtkMRMLMarkupsFiducialNode) -> PointsLPS | None:
    """(3,) world LPS mm of the first control point whose position is defined, or None (an empty or cleared list)."""
    for index in range(node.GetNumberOfControlPoints()):
        if node.GetNthControlPointPositionStatus(index) == node.PositionDefined:
            point = np.zeros(3)
            node.GetNthControlPointPositionWorld(index, point)
            return ras_to_lps(point)
    return None


def detected_record(node: slicer.vtkMRMLMarkupsFiducialNode) -> dict | None:
    """What :func:`set_fiducials` stored: ``{"names", "positions_lps" (K, 3), "confidence" (K,)}``, or None."""
    text = node.GetAttribute(DETECTED_ATTRIBUTE) if node is not None else None
    if not text:
        return None
    record = json.loads(text)
    record["positions_lps"] = np.asarray(record["positions_lps"], dtype=np.float64).reshape(-1, 3)
    return record


def restore_detected(node: slicer.vtkMRMLMarkupsFiducialNode) -> bool:
    """Move the control points back to the detected positions; False (nothing changed) if none are stored."""
    record = detected_record(node)
    if record is None:
        return False
    set_fiducials(node.GetScene(), record["names"], record["positions_lps"], record["confidence"], node=node,
                  store_as_detected=False)
    return True


class ControlPointObserver:
    """Calls ``callback(node, dragging, moved)`` when a control point of ``node`` is modified.

    ``PointModifiedEvent`` comes at every step of a drag (``dragging`` True, between the markups widget's
    ``PointStartInteractionEvent`` and ``PointEndInteractionEvent``), once for a scripted move such as
    ``SetNthControlPointPositionWorld``, and also when a point is only selected, hidden, relabelled or clicked without
    moving. ``moved`` says whether any position (or defined/cleared state) changed since the last call: the caller
    reorients the views only then, so an analyst's scrolled or zoomed views stay where they are. The end of a drag
    calls back once more with ``dragging`` False and ``moved`` True if the drag moved anything. A change made inside
    the callback does not call it again. Every completed move (a whole drag, or one scripted move) is remembered, so
    :meth:`undo` puts the points back where they were before it.

    Example:
        >>> observer = ControlPointObserver(node, lambda node, dragging, moved: print(moved))
    """

    def __init__(self, node: slicer.vtkMRMLMarkupsNode, callback: Callable[[object, bool, bool], None]) -> None:
        self.node = node
        self.dragging = False
        self._callback = callback
        self._running = False
        self._last = self._positions()
        self._drag_start = self._last
        self._history: list[tuple] = []
        self._replaying = False
        events = slicer.vtkMRMLMarkupsNode
        self._tags = [
            node.AddObserver(events.PointStartInteractionEvent, self._on_start),
            node.AddObserver(events.PointModifiedEvent, self._on_modified),
            node.AddObserver(events.PointEndInteractionEvent, self._on_end),
        ]

    def _positions(self) -> tuple:
        """(label-free) world positions and defined flags of every control point, for change detection."""
        _, points, defined = get_control_points_lps(self.node)
        return tuple(map(tuple, np.round(points, 6))), tuple(defined)

    def _on_start(self, caller, event) -> None:
        self.dragging = True
        self._drag_start = self._positions()

    def _on_end(self, caller, event) -> None:
        self.dragging = False
        moved = self._positions() != self._drag_start
        self._remember(self._drag_start, moved)
        self._call(moved=moved)

    def _on_modified(self, caller, event) -> None:
        moved = self._positions() != self._last
        self._remember(self._last, moved and not self.dragging)
        self._call(moved=moved)

    def _remember(self, before: tuple, moved: bool) -> None:
        if moved and not self._running and not self._replaying:
            self._history.append(before)

    def undo(self) -> bool:
        """Put the points back where they were before the last completed move; False if there is none."""
        if not self._history:
            return False
        points, defined = self._history.pop()
        self._replaying = True
        try:
            for index, (point, is_defined) in enumerate(zip(points, defined, strict=True)):
                if is_defined:
                    self.node.SetNthControlPointPositionWorld(index, *lps_to_ras(point))
                else:
                    self.node.UnsetNthControlPointPosition(index)
        finally:
            self._replaying = False
        return True

    def _call(self, moved: bool) -> None:
        if self._running:
            return
        self._running = True
        try:
            self._last = self._positions()
            self._callback(self.node, self.dragging, moved)
        finally:
            self._running = False

    def remove(self) -> None:
        """Stop observing (safe to call twice)."""
        for tag in self._tags:
            self.node.RemoveObserver(tag)
        self._tags = []


def set_plane_node(
    scene: slicer.vtkMRMLScene,
    plane: Plane,
    in_plane_x_lps: np.ndarray | None = None,
    size_mm: float = 40.0,
    node: slicer.vtkMRMLMarkupsPlaneNode | None = None,
    node_name: str = "Annulus plane",
) -> slicer.vtkMRMLMarkupsPlaneNode:
    """Show the annulus plane as a locked markups plane node (derived from the landmarks, not edited itself).

    Args:
        plane: centre and unit normal in LPS (normal from the ventricle into the aorta).
        in_plane_x_lps: (3,) unit in-plane x axis (e.g. towards RCC), LPS; None lets Slicer choose.
        size_mm: side of the displayed square, mm.
        node: plane node to update; None creates one.

    Returns:
        The plane node (centre and normal in world RAS).
    """
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLMarkupsPlaneNode", node_name)
        node.CreateDefaultDisplayNodes()
    center_ras, normal_ras = lps_to_ras(plane.center), lps_to_ras(plane.normal)
    was_modifying = node.StartModify()
    node.SetLocked(False)
    node.SetPlaneType(slicer.vtkMRMLMarkupsPlaneNode.PlaneTypePointNormal)
    node.SetCenterWorld(*center_ras)
    if in_plane_x_lps is None:
        node.SetNormalWorld(*normal_ras)
    else:
        x_ras = lps_to_ras(in_plane_x_lps)
        node.SetAxesWorld(x_ras, np.cross(normal_ras, x_ras), normal_ras)
    node.SetSizeMode(slicer.vtkMRMLMarkupsPlaneNode.SizeModeAbsolute)
    node.SetSize(size_mm, size_mm)
    node.SetLocked(True)
    node.EndModify(was_modifying)
    return node


def link_plane(fiducial_node: slicer.vtkMRMLMarkupsFiducialNode, plane_node: slicer.vtkMRMLMarkupsPlaneNode) -> None:
    """Remember (in the scene, saved with it) which plane node shows the annulus of these landmarks."""
    fiducial_node.SetNodeReferenceID(PLANE_REFERENCE, plane_node.GetID() if plane_node is not None else None)


def linked_plane(fiducial_node: slicer.vtkMRMLMarkupsFiducialNode) -> slicer.vtkMRMLMarkupsPlaneNode | None:
    """The plane node set by :func:`link_plane`, or None."""
    return fiducial_node.GetNodeReference(PLANE_REFERENCE)


def get_plane_ras(node: slicer.vtkMRMLMarkupsPlaneNode) -> tuple[PointsRAS, PointsRAS]:
    """(centre, unit normal) of a plane node, world RAS."""
    center, normal = np.zeros(3), np.zeros(3)
    node.GetCenterWorld(center)
    node.GetNormalWorld(normal)
    return center, normal / np.linalg.norm(normal)


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
