"""Landmark, plane and slice-view nodes, and live updates when a control point is dragged."""

from __future__ import annotations

import numpy as np
import pytest
import slicer

from AorticRootLandmarksLib import frames, geometry, mrml, mrml_views

pytestmark = pytest.mark.slicer

NAMES = ["RCC", "LCC", "NCC"]
#: Hinge points on a horizontal circle of radius 10 around (0, 0, 50) LPS: RCC anterior (-y), LCC left-posterior,
#: NCC right-posterior. Annulus normal (LCC - RCC) x (NCC - RCC) = +z (superior) by the ARCHITECTURE.md convention.
HORIZONTAL = np.array([[0.0, -10.0, 50.0], [8.660254, 5.0, 50.0], [-8.660254, 5.0, 50.0]])


def test_fiducials_are_labelled_and_in_ras(scene, phantom):
    node = mrml.set_fiducials(scene, NAMES, phantom.landmarks_lps, confidence=[0.9, 0.7, 0.2])
    assert [node.GetNthControlPointLabel(i) for i in range(3)] == NAMES
    position = np.zeros(3)
    node.GetNthControlPointPositionWorld(0, position)
    # In the scene: RAS = (-x, -y, z) of the LPS input.
    np.testing.assert_allclose(position, phantom.landmarks_lps[0] * [-1, -1, 1], atol=0.01)
    names, points = mrml.get_fiducials_lps(node)
    assert names == NAMES
    np.testing.assert_allclose(points, phantom.landmarks_lps, atol=0.01)
    assert node.GetNthControlPointDescription(0) == "confidence 0.90"
    assert node.GetNthControlPointDescription(2).startswith("LOW CONFIDENCE 0.20")


def test_rerun_replaces_points_of_the_same_node(scene):
    first = mrml.set_fiducials(scene, NAMES, HORIZONTAL)
    second = mrml.set_fiducials(scene, NAMES + ["LCO"], HORIZONTAL[[0, 1, 2, 0]] + 1.0, node=first)
    assert second is first
    assert scene.GetNumberOfNodesByClass("vtkMRMLMarkupsFiducialNode") == 1
    names, points = mrml.get_fiducials_lps(first)
    assert names == NAMES + ["LCO"]
    np.testing.assert_allclose(points[:3], HORIZONTAL + 1.0, atol=1e-9)


def test_restore_detected_positions(scene):
    node = mrml.set_fiducials(scene, NAMES, HORIZONTAL, confidence=[0.9, 0.8, 0.7])
    node.SetNthControlPointPositionWorld(1, 1.0, 2.0, 3.0)  # the analyst drags LCC
    assert not np.allclose(mrml.get_fiducials_lps(node)[1], HORIZONTAL)
    assert mrml.restore_detected(node)
    np.testing.assert_allclose(mrml.get_fiducials_lps(node)[1], HORIZONTAL, atol=1e-9)
    assert mrml.detected_record(node)["confidence"] == [0.9, 0.8, 0.7]
    plain = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
    assert not mrml.restore_detected(plain)


def test_plane_node_centre_and_normal(scene, phantom):
    plane = geometry.annulus_plane(phantom.landmarks_lps)
    toward, _ = geometry.plane_axes(plane, phantom.landmarks_lps[0])
    node = mrml.set_plane_node(scene, plane, toward, size_mm=30.0)
    center, normal = mrml.get_plane_ras(node)
    np.testing.assert_allclose(center, frames.lps_to_ras(phantom.landmarks_lps.mean(axis=0)), atol=1e-6)
    np.testing.assert_allclose(normal, frames.lps_to_ras(plane.normal), atol=1e-9)
    assert node.GetLocked()
    # Re-running updates the same node.
    assert mrml.set_plane_node(scene, plane, toward, node=node) is node


def test_horizontal_annulus_gives_slicer_presets(scene):
    # Hand-derived: normal S, RCC anterior -> Red = axial [L, A, S], Green = coronal [L, S, A],
    # Yellow = sagittal [P, S, L] (Slicer's presets), all centred on the hinge centroid (0, 0, 50) LPS = RAS.
    plane = geometry.annulus_plane(HORIZONTAL)
    nodes = mrml_views.reorient_slice_views(scene, plane, HORIZONTAL[0])
    expected = {
        "Red": [[-1, 0, 0], [0, 1, 0], [0, 0, 1]],
        "Green": [[-1, 0, 0], [0, 0, 1], [0, 1, 0]],
        "Yellow": [[0, 0, -1], [-1, 0, 0], [0, 1, 0]],
    }
    for view, rotation in expected.items():
        frame = mrml_views.slice_to_ras(nodes[view])
        np.testing.assert_allclose(frame[:3, :3], rotation, atol=1e-9, err_msg=view)
        np.testing.assert_allclose(frame[:3, 3], [0, 0, 50], atol=1e-9)


def test_oblique_views_follow_the_annulus(scene, phantom):
    plane = geometry.annulus_plane(phantom.landmarks_lps)
    nodes = mrml_views.reorient_slice_views(scene, plane, phantom.landmarks_lps[0], field_of_view_mm=60.0)
    red, yellow, green = (mrml_views.slice_to_ras(nodes[v]) for v in ("Red", "Yellow", "Green"))
    normal_ras = frames.lps_to_ras(plane.normal)
    np.testing.assert_allclose(red[:3, 2], normal_ras, atol=1e-9)
    np.testing.assert_allclose(red[:3, 3], frames.lps_to_ras(phantom.landmarks_lps.mean(axis=0)), atol=1e-9)
    for frame in (yellow, green):
        assert abs(frame[:3, 2] @ red[:3, 2]) < 1e-9  # orthogonal to the annulus view
        np.testing.assert_allclose(frame[:3, 1], normal_ras, atol=1e-9)  # contains the root axis, aorta up
        np.testing.assert_allclose(frame[:3, 3], red[:3, 3], atol=1e-9)
    assert abs(yellow[:3, 2] @ green[:3, 2]) < 1e-9
    # Every hinge point lies in the Red view; RCC straight above the centre (screen up).
    xy = mrml_views.ras_to_slice_xy(nodes["Red"], frames.lps_to_ras(phantom.landmarks_lps))
    np.testing.assert_allclose(xy[:, 2], 0.0, atol=1e-6)
    width, height, _ = nodes["Red"].GetDimensions()
    assert abs(xy[0, 0] - width / 2) < 0.5 and xy[0, 1] > height / 2 + 10
    assert nodes["Red"].GetFieldOfView()[0] == pytest.approx(60.0)


def test_dragging_a_point_moves_plane_and_views(scene, logic, phantom):
    result = logic.showLandmarks(NAMES, phantom.landmarks_lps, [0.9, 0.9, 0.9])
    updates = []
    logic.startLiveUpdate(result.fiducialNode, callback=updates.append)
    moved_lps = phantom.landmarks_lps.copy()
    moved_lps[1] += [0.0, 0.0, 5.0]  # LCC 5 mm cranial
    result.fiducialNode.SetNthControlPointPositionWorld(1, *frames.lps_to_ras(moved_lps[1]))
    assert len(updates) == 1
    plane = geometry.annulus_plane(moved_lps)
    center, normal = mrml.get_plane_ras(result.planeNode)
    np.testing.assert_allclose(center, frames.lps_to_ras(plane.center), atol=1e-6)
    np.testing.assert_allclose(normal, frames.lps_to_ras(plane.normal), atol=1e-6)
    red = mrml_views.slice_to_ras(mrml_views.get_slice_nodes(scene)["Red"])
    np.testing.assert_allclose(red[:3, 2], frames.lps_to_ras(plane.normal), atol=1e-6)
    assert updates[-1].measurements["circumcircle_diameter_mm"] == pytest.approx(
        geometry.annulus_measurements(moved_lps)["circumcircle_diameter_mm"])

    restored = logic.restoreDetectedPositions(result.fiducialNode)
    np.testing.assert_allclose(restored.positionsLps, phantom.landmarks_lps, atol=1e-9)
    original = geometry.annulus_plane(phantom.landmarks_lps)
    np.testing.assert_allclose(mrml.get_plane_ras(result.planeNode)[1], frames.lps_to_ras(original.normal), atol=1e-6)

    logic.stopLiveUpdate()
    count = len(updates)
    result.fiducialNode.SetNthControlPointPositionWorld(0, 0.0, 0.0, 0.0)
    assert len(updates) == count  # no longer observed


def test_views_turn_when_a_mouse_drag_ends(scene, logic):
    # During a drag the plane follows at once, the views only at the end (as Slicer's markups widget signals it).
    result = logic.showLandmarks(NAMES, HORIZONTAL)
    logic.startLiveUpdate(result.fiducialNode)
    red_node = mrml_views.get_slice_nodes(scene)["Red"]
    before = mrml_views.slice_to_ras(red_node)
    node, events = result.fiducialNode, slicer.vtkMRMLMarkupsNode
    node.InvokeEvent(events.PointStartInteractionEvent)
    tilted = HORIZONTAL[1] + [0.0, 0.0, 6.0]  # LCC 6 mm up: the normal tilts
    node.SetNthControlPointPositionWorld(1, *frames.lps_to_ras(tilted))
    normal = mrml.get_plane_ras(result.planeNode)[1]
    assert normal[2] < 0.99  # plane followed
    np.testing.assert_array_equal(mrml_views.slice_to_ras(red_node), before)  # view did not move mid-drag
    node.InvokeEvent(events.PointEndInteractionEvent)
    np.testing.assert_allclose(mrml_views.slice_to_ras(red_node)[:3, 2], normal, atol=1e-9)


def test_deleted_hinge_label_is_reported_not_raised(scene, logic):
    result = logic.showLandmarks(NAMES, HORIZONTAL)
    result.fiducialNode.SetNthControlPointLabel(2, "X")
    update = logic.updateAnnulus(result.fiducialNode)
    assert update.measurements is None and "NCC" in update.error


def test_slicer_markups_files_agree_with_our_lps(scene, tmp_path):
    # Slicer's own .mrk.json writer converts the scene's RAS to LPS: it must give back exactly our LPS input, and a
    # file from io.write_markups (LPS) must load into MRML at the same points.
    from AorticRootLandmarksLib import io

    points = np.array([[1.5, -2.25, 30.0], [8.0, 5.0, 31.0], [-8.0, 5.0, 29.0]])
    node = mrml.set_fiducials(scene, NAMES, points, [0.9, 0.8, 0.2])
    storage = scene.AddNode(slicer.vtkMRMLMarkupsJsonStorageNode())
    storage.SetFileName(str(tmp_path / "slicer.mrk.json"))
    assert storage.WriteData(node)
    names, read_back = io.read_markups(tmp_path / "slicer.mrk.json")
    assert names == NAMES
    np.testing.assert_allclose(read_back, points, atol=0.01)

    io.write_markups(tmp_path / "ours.mrk.json", NAMES, points)
    loaded = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
    reader = scene.AddNode(slicer.vtkMRMLMarkupsJsonStorageNode())
    reader.SetFileName(str(tmp_path / "ours.mrk.json"))
    assert reader.ReadData(loaded)
    np.testing.assert_allclose(mrml.get_fiducials_lps(loaded)[1], points, atol=0.01)


@pytest.mark.parametrize("action", ["select", "hide", "relabel", "describe", "click without moving"])
def test_the_analysts_views_stay_when_no_point_moves(scene, logic, action):
    result = logic.showLandmarks(NAMES, HORIZONTAL)
    logic.startLiveUpdate(result.fiducialNode)
    node, red = result.fiducialNode, mrml_views.get_slice_nodes(scene)["Red"]
    red.SetFieldOfView(25.0, 25.0, 1.0)  # the analyst zooms in ...
    red.GetSliceToRAS().SetElement(2, 3, red.GetSliceToRAS().GetElement(2, 3) + 7.0)  # ... and scrolls 7 mm
    red.UpdateMatrices()
    before, fov = mrml_views.slice_to_ras(red), red.GetFieldOfView()
    events = slicer.vtkMRMLMarkupsNode
    {
        "select": lambda: node.SetNthControlPointSelected(1, False),
        "hide": lambda: node.SetNthControlPointVisibility(2, False),
        "relabel": lambda: (node.SetNthControlPointLabel(0, "R"), node.SetNthControlPointLabel(0, "RCC")),
        "describe": lambda: node.SetNthControlPointDescription(0, "checked"),
        "click without moving": lambda: (node.InvokeEvent(events.PointStartInteractionEvent),
                                         node.InvokeEvent(events.PointEndInteractionEvent)),
    }[action]()
    np.testing.assert_array_equal(mrml_views.slice_to_ras(red), before)
    assert red.GetFieldOfView() == fov
    # a real move still turns the views
    node.SetNthControlPointPositionWorld(1, *frames.lps_to_ras(HORIZONTAL[1] + [0.0, 0.0, 6.0]))
    assert not np.allclose(mrml_views.slice_to_ras(red), before)


def test_a_cleared_hinge_point_is_missing_not_measured(scene, logic):
    result = logic.showLandmarks(NAMES, HORIZONTAL)
    logic.startLiveUpdate(result.fiducialNode, callback=lambda r: updates.append(r))
    updates = []
    result.fiducialNode.UnsetNthControlPointPosition(1)  # Slicer's "delete" on a fixed-count list
    assert updates and updates[-1].measurements is None and "LCC" in updates[-1].error
    names, _ = mrml.get_fiducials_lps(result.fiducialNode)
    assert names == ["RCC", "NCC"]


def test_a_point_list_loaded_from_a_file_is_measured(scene, logic, tmp_path):
    from AorticRootLandmarksLib import io

    path = tmp_path / "corrected.mrk.json"  # e.g. an analyst's corrections saved earlier: no "detected" marker
    io.write_markups(path, ["NCC", "RCC", "LCC"], HORIZONTAL[[2, 0, 1]])
    storage = slicer.vtkMRMLMarkupsJsonStorageNode()  # what Slicer's "Add data" uses for .mrk.json
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "corrected")
    assert storage.ReadData(node)
    assert mrml.detected_record(node) is None and logic.hasHingePoints(node)
    result = logic.updateAnnulus(node)
    assert result.error == "" and result.measurements == geometry.annulus_measurements(HORIZONTAL)
    assert not logic.hasHingePoints(scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "other"))


def test_undo_restore_one_point_and_jump_to(scene, logic):
    result = logic.showLandmarks(NAMES, HORIZONTAL)
    node = result.fiducialNode
    logic.startLiveUpdate(node)
    assert not logic.undoLastMove(node)  # nothing moved yet
    events = slicer.vtkMRMLMarkupsNode
    node.InvokeEvent(events.PointStartInteractionEvent)  # one drag of LCC, in two steps ...
    for dz in (2.0, 5.0):
        node.SetNthControlPointPositionWorld(1, *frames.lps_to_ras(HORIZONTAL[1] + [0.0, 0.0, dz]))
    node.InvokeEvent(events.PointEndInteractionEvent)
    node.SetNthControlPointPositionWorld(2, *frames.lps_to_ras(HORIZONTAL[2] + [1.0, 0.0, 0.0]))  # ... then NCC
    assert logic.undoLastMove(node)  # NCC back, LCC still dragged
    _, points = mrml.get_fiducials_lps(node)
    np.testing.assert_allclose(points[2], HORIZONTAL[2], atol=1e-9)
    np.testing.assert_allclose(points[1], HORIZONTAL[1] + [0.0, 0.0, 5.0], atol=1e-9)
    assert logic.undoLastMove(node)  # the whole drag undone at once, not step by step
    np.testing.assert_allclose(mrml.get_fiducials_lps(node)[1], HORIZONTAL, atol=1e-9)
    assert not logic.undoLastMove(node)
    np.testing.assert_allclose(mrml.get_plane_ras(result.planeNode)[1], [0.0, 0.0, 1.0], atol=1e-9)  # plane followed

    node.SetNthControlPointPositionWorld(0, *frames.lps_to_ras(HORIZONTAL[0] + [0.0, 3.0, 0.0]))
    node.SetNthControlPointPositionWorld(1, *frames.lps_to_ras(HORIZONTAL[1] + [0.0, 0.0, 3.0]))
    logic.restorePoint(node, "LCC")  # one point back to the detection, the other correction stays
    _, points = mrml.get_fiducials_lps(node)
    np.testing.assert_allclose(points[1], HORIZONTAL[1], atol=1e-9)
    np.testing.assert_allclose(points[0], HORIZONTAL[0] + [0.0, 3.0, 0.0], atol=1e-9)

    red = mrml_views.get_slice_nodes(scene)["Red"]
    orientation = mrml_views.slice_to_ras(red)[:3, :3].copy()
    logic.jumpToPoint(node, "NCC")
    ras = frames.lps_to_ras(HORIZONTAL[2])
    np.testing.assert_allclose(mrml_views.ras_to_slice_xy(red, ras[None])[0, 2], 0.0, atol=1e-6)  # NCC on the slice
    np.testing.assert_allclose(mrml_views.slice_to_ras(red)[:3, :3], orientation)  # orientation kept
