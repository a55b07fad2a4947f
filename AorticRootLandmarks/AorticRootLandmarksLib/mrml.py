"""MRML nodes: volume nodes <-> SimpleITK, landmark, plane and contour nodes, links between them, point placement.

With :mod:`mrml_views` (slice views, layout) and :mod:`mrml_tables` (measurement table, plot chart) the only code that
touches MRML nodes.

Frames (see docs/ARCHITECTURE.md): the MRML scene is in **world RAS mm**; files, SimpleITK images and every array
passed in or out of this module's public functions are in **world LPS mm** unless the name says ``_ras``.
``RAS = diag(-1, -1, 1) @ LPS`` (:mod:`frames`); only the ``mrml*`` modules give the scene RAS.

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
from .geometry import Plane
from .typing import PointsLPS, PointsRAS

#: Node attribute holding the detected positions (JSON, LPS) so that "restore" survives scene save/load.
DETECTED_ATTRIBUTE = "AorticRootLandmarks.Detected"
#: Node references from a point list to the nodes shown with it (saved with the scene; :func:`link_node`).
PLANE_REFERENCE = "AorticRootLandmarks.AnnulusPlane"
VOLUME_REFERENCE = "AorticRootLandmarks.Volume"
TABLE_REFERENCE = "AorticRootLandmarks.Measurements"
CHART_REFERENCE = "AorticRootLandmarks.SCurve"
CONTOUR_REFERENCE = "AorticRootLandmarks.LumenContour"


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
    reasons: Sequence[str] | None = None,
) -> slicer.vtkMRMLMarkupsFiducialNode:
    """Write landmarks into one fiducial node, creating it if needed; re-running replaces its points.

    Args:
        scene: the MRML scene.
        names: K control-point labels (RCC, LCC, NCC, then any extra landmarks).
        points_lps: (K, 3) world LPS mm.
        confidence: (K,) in [0, 1] or None; written into each point's description, low ones flagged.
        node: the node to update; None creates a new one named ``node_name``.
        store_as_detected: also remember these positions for :func:`restore_detected`.
        reasons: (K,) why the quality control doubts each point ("" when it does not), stored with the positions.

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
                  "confidence": [None if c is None else round(c, 6) for c in conf],
                  "reasons": [""] * len(points) if reasons is None else [str(r) for r in reasons]}
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
    """What :func:`set_fiducials` stored: ``{"names", "positions_lps" (K, 3), "confidence" (K,), "reasons" (K,)}``,
    or None."""
    text = node.GetAttribute(DETECTED_ATTRIBUTE) if node is not None else None
    if not text:
        return None
    record = json.loads(text)
    record["positions_lps"] = np.asarray(record["positions_lps"], dtype=np.float64).reshape(-1, 3)
    record.setdefault("reasons", [""] * len(record["names"]))  # scenes saved before reasons were stored
    return record


def restore_detected(node: slicer.vtkMRMLMarkupsFiducialNode) -> bool:
    """Move the control points back to the detected positions; False (nothing changed) if none are stored."""
    record = detected_record(node)
    if record is None:
        return False
    set_fiducials(node.GetScene(), record["names"], record["positions_lps"], record["confidence"], node=node,
                  store_as_detected=False)
    return True


def control_point_index(node: slicer.vtkMRMLMarkupsFiducialNode, label: str, add: bool = False) -> int:
    """Index of the control point labelled ``label``; ``add`` appends an unplaced one (no position) if there is none.

    Raises:
        InputError: no such point and ``add`` is False.
    """
    labels = [node.GetNthControlPointLabel(i) for i in range(node.GetNumberOfControlPoints())]
    if label in labels:
        return labels.index(label)
    if not add:
        raise InputError(f"'{node.GetName()}': has no point {label}")
    fixed = node.GetFixedNumberOfControlPoints()
    node.SetFixedNumberOfControlPoints(False)  # a detected list is fixed so that stray clicks add nothing
    index = node.AddControlPoint(0.0, 0.0, 0.0, label)
    node.UnsetNthControlPointPosition(index)
    node.SetFixedNumberOfControlPoints(fixed)
    return index


def start_placing(scene: slicer.vtkMRMLScene, node: slicer.vtkMRMLMarkupsFiducialNode, index: int) -> None:
    """Let the next click in a view place control point ``index`` of ``node`` (its old position is cleared).

    What Slicer's Markups module does for an unplaced point of a fixed list: clear the position, make the point the
    next to be placed, make the list the active place node and switch the mouse to place mode for one click.

    Raises:
        InputError: the scene has no selection or interaction node (no views to click in).
    """
    selection = scene.GetNodeByID("vtkMRMLSelectionNodeSingleton")
    interaction = scene.GetNodeByID("vtkMRMLInteractionNodeSingleton")
    if selection is None or interaction is None:
        raise InputError("place a point: this scene has no views to click in (no selection or interaction node)")
    node.UnsetNthControlPointPosition(index)
    node.SetControlPointPlacementStartIndex(index)
    selection.SetReferenceActivePlaceNodeClassName(node.GetClassName())
    selection.SetReferenceActivePlaceNodeID(node.GetID())
    interaction.SetPlaceModePersistence(0)
    interaction.SetCurrentInteractionMode(interaction.Place)


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


def link_node(node: slicer.vtkMRMLNode, role: str, target: slicer.vtkMRMLNode | None) -> None:
    """Remember (in the scene, saved with it) which node plays ``role`` for ``node`` (None forgets it).

    Roles: :data:`PLANE_REFERENCE`, :data:`VOLUME_REFERENCE`, :data:`TABLE_REFERENCE`, :data:`CHART_REFERENCE`,
    :data:`CONTOUR_REFERENCE`.
    """
    node.SetNodeReferenceID(role, target.GetID() if target is not None else None)


def linked_node(node: slicer.vtkMRMLNode, role: str) -> slicer.vtkMRMLNode | None:
    """The node set by :func:`link_node` for ``role``, or None."""
    return node.GetNodeReference(role)


def set_closed_curve(
    scene: slicer.vtkMRMLScene,
    points_lps: PointsLPS,
    node: slicer.vtkMRMLMarkupsClosedCurveNode | None = None,
    node_name: str = "Lumen contour",
    max_points: int = 72,
) -> slicer.vtkMRMLMarkupsClosedCurveNode:
    """Show a measured contour as a locked, unlabelled closed curve (straight segments between its points).

    Args:
        points_lps: (M, 3) world LPS mm, in order along the contour; more than ``max_points`` are thinned evenly
            (a contour of hundreds of points would draw hundreds of handles).
        node: curve to update; None creates one named ``node_name``.

    Returns:
        The closed-curve node (world RAS).
    """
    points = np.asarray(points_lps, dtype=np.float64).reshape(-1, 3)
    if len(points) > max_points:
        points = points[np.linspace(0, len(points), max_points, endpoint=False).astype(int)]
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLMarkupsClosedCurveNode", node_name)
        node.CreateDefaultDisplayNodes()
    was_modifying = node.StartModify()
    node.SetLocked(False)
    node.RemoveAllControlPoints()
    slicer.util.updateMarkupsControlPointsFromArray(node, lps_to_ras(points), world=True)
    node.SetCurveTypeToLinear()
    node.SetLocked(True)
    display = node.GetDisplayNode()
    if display is not None:
        display.SetPointLabelsVisibility(False)
        display.SetPropertiesLabelVisibility(False)
    node.EndModify(was_modifying)
    return node


def get_plane_ras(node: slicer.vtkMRMLMarkupsPlaneNode) -> tuple[PointsRAS, PointsRAS]:
    """(centre, unit normal) of a plane node, world RAS."""
    center, normal = np.zeros(3), np.zeros(3)
    node.GetCenterWorld(center)
    node.GetNormalWorld(normal)
    return center, normal / np.linalg.norm(normal)
