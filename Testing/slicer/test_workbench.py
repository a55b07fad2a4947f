"""The module as an analyst's workbench, on slicer-core: the points panel (verdicts, place/replace), the measurement
table and S-curve chart, the lumen contour, cancel and stages of a detection, the annulus review layout, the module's
state across saving and loading the scene, and the plan.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
import slicer

from AorticRootLandmarksLib import frames, geometry, mrml, mrml_tables, mrml_views
from AorticRootLandmarksLib.errors import InputError
from AorticRootLandmarksLib.logic import BUNDLED, LAYOUT_FILE, DetectionCancelled, registerAnnulusLayout

pytestmark = pytest.mark.slicer

NAMES = ["RCC", "LCC", "NCC"]
#: Hinge points on a horizontal circle of radius 10 mm around (0, 0, 50) LPS: RCC anterior, LCC left-posterior, NCC
#: right-posterior (as in test_mrml_landmarks.py). By hand: sides 10 sqrt(3) = 17.3205 mm, arcs 120 deg, diameter
#: 20 mm; normal +z, so the S-curve is CRAN 0 at every LAO; three-cusp view along RCC - (LCC + NCC)/2 = -y: AP
#: (LAO 0, CRAN 0); cusp-overlap along +-(LCC - RCC) = +-(8.66, 15, 0), anterior side (-8.66, -15, 0): RAO 30, CRAN 0.
HORIZONTAL = np.array([[0.0, -10.0, 50.0], [8.660254, 5.0, 50.0], [-8.660254, 5.0, 50.0]])


def _rows(table_node) -> dict[str, tuple[float, str]]:
    return {label: (value, unit) for label, value, unit in mrml_tables.read_measurement_table(table_node)}


# --------------------------------------------------------------------------------------------- measurement table


def test_the_table_node_holds_distances_angles_and_views(scene, logic):
    result = logic.showLandmarks(NAMES, HORIZONTAL)
    rows = _rows(result.tableNode)
    assert rows["Circumcircle diameter"] == (pytest.approx(20.0), "mm")
    assert rows["Circumcircle perimeter"][0] == pytest.approx(20.0 * np.pi)
    assert rows["Circumcircle area"] == (pytest.approx(100.0 * np.pi), "mm²")
    for pair in ("RCC–LCC", "LCC–NCC", "NCC–RCC"):
        assert rows[f"{pair} distance"] == (pytest.approx(10.0 * np.sqrt(3.0)), "mm")
        assert rows[f"{pair} arc angle (at the circumcentre)"] == (pytest.approx(120.0), "deg")
    assert rows["Three-cusp view LAO (+) / RAO (-)"][0] == pytest.approx(0.0, abs=1e-9)
    assert rows["Three-cusp view CRAN (+) / CAUD (-)"][0] == pytest.approx(0.0, abs=1e-9)
    assert rows["Cusp-overlap view LAO (+) / RAO (-)"] == (pytest.approx(-30.0), "deg")
    assert np.isnan(rows["LCO height above the annulus plane"][0])  # no ostium placed
    assert not any(label.startswith("Lumen") for label in rows)  # no CT to measure on
    # the table is the point list's, saved with it, and not editable (computed)
    assert mrml.linked_node(result.fiducialNode, mrml.TABLE_REFERENCE) is result.tableNode
    assert result.tableNode.GetLocked()
    assert [result.tableNode.GetColumnName(i) for i in range(3)] == list(mrml_tables.MEASUREMENT_COLUMNS)


def test_the_table_follows_a_moved_point_and_empties_for_a_missing_one(scene, logic, phantom):
    result = logic.showLandmarks(NAMES, HORIZONTAL)
    table = result.tableNode
    logic.startLiveUpdate(result.fiducialNode)
    result.fiducialNode.SetNthControlPointPositionWorld(1, *frames.lps_to_ras(HORIZONTAL[1] + [0.0, 0.0, 5.0]))
    moved = HORIZONTAL.copy()
    moved[1] += [0.0, 0.0, 5.0]
    expected = geometry.annulus_measurements(moved)
    rows = _rows(table)
    assert rows["RCC–LCC distance"][0] == pytest.approx(expected["RCC_LCC_mm"])
    assert rows["Circumcircle diameter"][0] == pytest.approx(expected["circumcircle_diameter_mm"])
    result.fiducialNode.UnsetNthControlPointPosition(2)  # NCC cleared: every value empty, every row kept
    cleared = _rows(table)
    assert list(cleared) == list(rows) and all(np.isnan(value) for value, _ in cleared.values())
    assert scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == 3  # the same measurement table (+ 2 chart tables)


def test_the_s_curve_is_a_plot_chart_with_the_views_on_it(scene, logic, phantom):
    result = logic.showLandmarks(NAMES, HORIZONTAL)
    chart = result.chartNode
    assert chart.GetNumberOfPlotSeriesNodes() == 2
    curve, views = (chart.GetNthPlotSeriesNode(i).GetTableNode() for i in range(2))
    lao = slicer.util.arrayFromTableColumn(curve, mrml_tables.LAO_COLUMN)
    np.testing.assert_allclose(lao[[0, -1]], [-90.0, 90.0])
    np.testing.assert_allclose(slicer.util.arrayFromTableColumn(curve, mrml_tables.CRAN_COLUMN), 0.0, atol=1e-9)
    np.testing.assert_allclose(slicer.util.arrayFromTableColumn(views, mrml_tables.LAO_COLUMN), [0.0, -30.0],
                               atol=1e-9)
    # a tilted annulus (the phantom's): the curve is geometry's S-curve, and both views lie on it
    tilted = logic.showLandmarks(NAMES, phantom.landmarks_lps, fiducialNode=result.fiducialNode)
    assert tilted.chartNode is chart
    normal = geometry.annulus_plane(phantom.landmarks_lps).normal
    np.testing.assert_allclose(slicer.util.arrayFromTableColumn(curve, mrml_tables.CRAN_COLUMN),
                               geometry.coplanar_cran_deg(normal, lao), atol=1e-9)
    view_lao = slicer.util.arrayFromTableColumn(views, mrml_tables.LAO_COLUMN)
    np.testing.assert_allclose(slicer.util.arrayFromTableColumn(views, mrml_tables.CRAN_COLUMN),
                               geometry.coplanar_cran_deg(normal, view_lao), atol=1e-6)


def test_the_lumen_is_measured_on_the_ct_and_shown_as_a_closed_curve(scene, logic, phantom):
    volume = mrml.add_volume_from_sitk(scene, phantom.image, "Phantom CT")
    result = logic.showLandmarks(NAMES, phantom.landmarks_lps, volumeNode=volume)
    lumen = result.lumen
    assert lumen is not None and lumen.ok, lumen.reason
    rows = _rows(result.tableNode)
    assert rows["Lumen perimeter"] == (pytest.approx(lumen.perimeter_mm), "mm")
    assert rows["Lumen area"] == (pytest.approx(lumen.area_mm2), "mm²")
    assert rows["Lumen minimum diameter"][0] == pytest.approx(lumen.min_diameter_mm)
    assert rows["Lumen eccentricity (1 - min/max)"][0] == pytest.approx(lumen.eccentricity)
    # the contour: a locked closed curve in the annulus plane, as long as the measured perimeter
    curve = result.contourNode
    assert curve.IsA("vtkMRMLMarkupsClosedCurveNode") and curve.GetLocked()
    assert mrml.linked_node(result.fiducialNode, mrml.CONTOUR_REFERENCE) is curve
    points_ras = slicer.util.arrayFromMarkupsControlPoints(curve, world=True)
    assert 3 < len(points_ras) <= 72
    plane = geometry.annulus_plane(phantom.landmarks_lps)
    np.testing.assert_allclose(plane.signed_distance_mm(frames.ras_to_lps(points_ras)), 0.0, atol=1e-6)
    polygon = np.vstack([points_ras, points_ras[:1]])
    assert np.linalg.norm(np.diff(polygon, axis=0), axis=1).sum() == pytest.approx(lumen.perimeter_mm, rel=0.03)

    # while a point is dragged the lumen waits (rows empty), at the end of the drag it is measured again
    logic.startLiveUpdate(result.fiducialNode)
    node, events = result.fiducialNode, slicer.vtkMRMLMarkupsNode
    node.InvokeEvent(events.PointStartInteractionEvent)
    node.SetNthControlPointPositionWorld(0, *frames.lps_to_ras(phantom.landmarks_lps[0] + [0.0, 0.0, 0.5]))
    assert np.isnan(_rows(result.tableNode)["Lumen perimeter"][0])
    node.InvokeEvent(events.PointEndInteractionEvent)
    assert np.isfinite(_rows(result.tableNode)["Lumen perimeter"][0])


# --------------------------------------------------------------------------------------------- points panel


def test_each_point_has_a_verdict(scene, logic):
    result = logic.showLandmarks(NAMES, HORIZONTAL, [0.9, 0.3, 0.8])
    verdicts = {p.name: p.verdict for p in result.points}
    assert verdicts == {"RCC": "ok", "LCC": "review", "NCC": "ok", "LCO": "not placed", "RCO": "not placed"}
    node = result.fiducialNode
    node.SetNthControlPointPositionWorld(0, *frames.lps_to_ras(HORIZONTAL[0] + [0.0, 2.0, 0.0]))
    node.UnsetNthControlPointPosition(2)
    points = {p.name: p for p in logic.updateAnnulus(node).points}
    assert (points["RCC"].verdict, points["RCC"].reason) == ("corrected", "moved 2.0 mm from the detection")
    assert points["NCC"].verdict == "missing" and points["NCC"].positionLps is None
    np.testing.assert_allclose(points["RCC"].positionLps, HORIZONTAL[0] + [0.0, 2.0, 0.0], atol=1e-9)
    logic.placePoint(node, "LCO", [5.0, 0.0, 62.0])  # not detected: placed by the analyst
    assert {p.name: p.verdict for p in logic.updateAnnulus(node).points}["LCO"] == "placed"


def test_place_or_replace_a_point(scene, logic):
    result = logic.showLandmarks(NAMES, HORIZONTAL, [0.9, 0.9, 0.9])
    node = result.fiducialNode
    updates = []
    logic.startLiveUpdate(node, callback=updates.append)

    # replace at a given position: the point moves, the plane follows
    logic.placePoint(node, "LCC", HORIZONTAL[1] + [0.0, 0.0, 4.0])
    np.testing.assert_allclose(mrml.get_fiducials_lps(node)[1][1], HORIZONTAL[1] + [0.0, 0.0, 4.0], atol=1e-9)
    assert updates[-1].planeNode is result.planeNode and mrml.get_plane_ras(result.planeNode)[1][2] < 0.99

    # replace by clicking: the point waits for the click (missing meanwhile), the mouse is in place mode for it
    index = logic.placePoint(node, "NCC")
    interaction = scene.GetNodeByID("vtkMRMLInteractionNodeSingleton")
    selection = scene.GetNodeByID("vtkMRMLSelectionNodeSingleton")
    assert index == 2 and node.GetControlPointPlacementStartIndex() == 2
    assert interaction.GetCurrentInteractionMode() == interaction.Place and interaction.GetPlaceModePersistence() == 0
    assert selection.GetActivePlaceNodeID() == node.GetID()
    assert "NCC" in updates[-1].error
    click = HORIZONTAL[2] + [-1.0, 1.0, 0.0]
    node.SetNthControlPointPositionWorld(2, *frames.lps_to_ras(click))  # what the markups widget does on the click
    assert updates[-1].error == ""
    np.testing.assert_allclose(mrml.get_fiducials_lps(node)[1][2], click, atol=1e-9)
    assert logic.undoLastMove(node) and logic.undoLastMove(node)  # the click, then the clearing: NCC as before
    np.testing.assert_allclose(mrml.get_fiducials_lps(node)[1][2], HORIZONTAL[2], atol=1e-9)

    # an ostium the list lacks is added (the list stays fixed, so stray clicks add nothing) and measured
    logic.placePoint(node, "LCO", HORIZONTAL[1] + [0.0, 0.0, 12.0])
    assert node.GetNumberOfControlPoints() == 4 and node.GetFixedNumberOfControlPoints()
    plane = geometry.annulus_plane(mrml.get_fiducials_lps(node)[1][:3])
    height = float(plane.signed_distance_mm(HORIZONTAL[1] + [0.0, 0.0, 12.0]))
    assert _rows(updates[-1].tableNode)["LCO height above the annulus plane"][0] == pytest.approx(height)


def test_placing_needs_views_to_click_in(logic):
    bare = slicer.vtkMRMLScene()  # no selection or interaction node
    node = mrml.set_fiducials(bare, NAMES, HORIZONTAL)
    logic.scene = bare
    with pytest.raises(InputError, match="no views to click in"):
        logic.placePoint(node, "RCC")


# --------------------------------------------------------------------------------------------- detection


def test_cancel_stops_detection_between_steps(scene, logic, phantom, tiny_model_dir):
    volume = mrml.add_volume_from_sitk(scene, phantom.image, "Phantom CT")
    steps = []

    def progress(fraction, message):
        steps.append(message)
        if len(steps) == 2:  # the analyst clicks Cancel while the second step runs
            logic.requestCancel()

    with pytest.raises(DetectionCancelled):
        logic.process(volume, str(tiny_model_dir), "cpu", progress=progress)
    assert len(steps) == 2  # the next step was not started (no network ran)
    assert scene.GetNumberOfNodesByClass("vtkMRMLMarkupsFiducialNode") == 0  # nothing written to the scene
    again = []
    result = logic.process(volume, str(tiny_model_dir), "cpu", progress=lambda f, m: again.append(m))
    assert result.fiducialNode is not None and len(again) > 3  # a cancel does not stick to the next run


def test_stages_are_passed_to_detection(scene, logic, phantom, tiny_model_dir, monkeypatch):
    from AorticRootLandmarksLib import detection

    seen = []
    real = detection.detect

    def recording(*args, **kwargs):
        seen.append(kwargs.get("stages"))
        return real(*args, **kwargs)

    monkeypatch.setattr(detection, "detect", recording)
    volume = mrml.add_volume_from_sitk(scene, phantom.image, "Phantom CT")
    logic.process(volume, str(tiny_model_dir), "cpu", stages=1)
    logic.process(volume, str(tiny_model_dir), "cpu")
    assert seen == [1, None]


def test_the_panel_knows_phantom_models_and_second_stages(logic, tiny_model_dir, tmp_path):
    import json
    import shutil

    assert logic.modelTrainedOnPhantoms(BUNDLED)  # the bundled model: the panel warns
    assert not logic.modelTrainedOnPhantoms(str(tiny_model_dir))
    assert not logic.modelHasSecondStage(str(tiny_model_dir))
    copy = shutil.copytree(tiny_model_dir, tmp_path / "two-stage")
    meta = json.loads((copy / "model.json").read_text(encoding="utf-8"))
    meta.update(refiner="refine", training={"manifest": "phantom-train/manifest.csv"})
    (copy / "model.json").write_text(json.dumps(meta), encoding="utf-8")
    assert logic.modelHasSecondStage(str(copy)) and logic.modelTrainedOnPhantoms(str(copy))
    assert not logic.modelHasSecondStage(str(tmp_path / "no-model-here"))


# --------------------------------------------------------------------------------------------- layout


def test_the_annulus_review_layout_is_registered_and_shows_table_and_s_curve(scene, logic):
    layout_logic = slicer.vtkMRMLLayoutLogic()  # what the application's layout manager holds
    layout_logic.SetMRMLScene(scene)
    layout_node = layout_logic.GetLayoutNode()
    result = logic.showLandmarks(NAMES, HORIZONTAL)
    layout_id = logic.showAnnulusLayout(layout_node, result.fiducialNode)
    assert layout_id == mrml_views.ANNULUS_LAYOUT_ID == layout_node.GetViewArrangement()
    assert layout_node.GetLayoutDescription(layout_id) == LAYOUT_FILE.read_text(encoding="utf-8")
    # Red (the annulus plane) takes the larger part of the top row; Yellow, Green and 3D are stacked beside it;
    # the table and the plot views are below.
    top, bottom = ET.fromstring(LAYOUT_FILE.read_text(encoding="utf-8")).findall("item")
    left, right = top.find("layout").findall("item")
    assert left.find("view").get("singletontag") == "Red"
    assert int(left.get("splitSize")) > int(right.get("splitSize")) and int(top.get("splitSize")) > int(
        bottom.get("splitSize"))
    assert [v.get("singletontag") for v in right.iter("view")] == ["Yellow", "Green", "1"]
    assert [v.get("class") for v in bottom.iter("view")] == ["vtkMRMLTableViewNode", "vtkMRMLPlotViewNode"]
    # the layout logic made the views it names; they show this point list's table and S-curve
    table_view = scene.GetSingletonNode("TableView1", "vtkMRMLTableViewNode")
    plot_view = scene.GetSingletonNode("PlotView1", "vtkMRMLPlotViewNode")
    assert table_view.GetTableNodeID() == result.tableNode.GetID()
    assert plot_view.GetPlotChartNodeID() == result.chartNode.GetID()
    assert scene.GetNumberOfNodesByClass("vtkMRMLSliceNode") == 3  # the existing Red/Yellow/Green, not new ones
    # registering again (at the next startup, or a module reload) keeps one description
    assert registerAnnulusLayout(layout_node) == layout_id and layout_node.IsLayoutDescription(layout_id)


# --------------------------------------------------------------------------------------------- scene


def _save_scene(scene, folder):
    """What Slicer's "Save" does: each node's data into its own file (markups .mrk.json, tables .tsv, volumes
    .nrrd), then the scene as .mrml. Returns the .mrml path."""
    folder.mkdir()
    for index in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(index)
        if not node.IsA("vtkMRMLStorableNode") or (node.GetStorageNode() is None and not node.AddDefaultStorageNode()):
            continue
        storage = node.GetStorageNode()
        storage.SetFileName(str(folder / f"{node.GetID()}.{storage.GetDefaultWriteFileExtension()}"))
        assert storage.WriteData(node), node.GetID()
    scene.SetURL(str(folder / "scene.mrml"))
    assert scene.Commit()
    return folder / "scene.mrml"


def _load_scene(path):
    """A fresh application's scene (selection and interaction nodes, markups support) with a saved scene loaded."""
    scene = slicer.vtkMRMLScene()
    scene.AddNode(slicer.vtkMRMLSelectionNode())
    scene.AddNode(slicer.vtkMRMLInteractionNode())
    markups = slicer.vtkSlicerMarkupsLogic()  # registers the markups storage nodes, as the application does
    markups.SetMRMLScene(scene)
    scene.SetURL(str(path))
    assert scene.Import()
    return scene, markups


def test_saving_and_loading_the_scene_keeps_the_modules_state(scene, phantom, tmp_path, monkeypatch):
    import AorticRootLandmarks

    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)  # the application's scene
    markups = slicer.vtkSlicerMarkupsLogic()
    markups.SetMRMLScene(scene)
    logic = AorticRootLandmarks.AorticRootLandmarksLogic(scene)
    volume = mrml.add_volume_from_sitk(scene, phantom.image, "Phantom CT")
    seed = mrml.set_fiducials(scene, ["root"], phantom.landmarks_lps[:1], node_name="seed", store_as_detected=False)
    result = logic.showLandmarks(NAMES, phantom.landmarks_lps, [0.9, 0.8, 0.3], nodeName="CT hinge points",
                                 volumeNode=volume)
    params = logic.getParameterNode()
    params.inputVolume, params.outputFiducials, params.outputPlane, params.rootSeed = (
        volume, result.fiducialNode, result.planeNode, seed)
    params.modelFolder, params.device, params.refine, params.reorientViews = "/models/run-7", "cpu", False, False
    rows = mrml_tables.read_measurement_table(result.tableNode)
    logic.stopLiveUpdate()
    path = _save_scene(scene, tmp_path / "saved")

    loaded, _ = _load_scene(path)
    monkeypatch.setattr(slicer, "mrmlScene", loaded, raising=False)
    reloaded_logic = AorticRootLandmarks.AorticRootLandmarksLogic(loaded)
    state = reloaded_logic.getParameterNode()
    assert loaded.GetNumberOfNodesByClass("vtkMRMLScriptedModuleNode") == 1  # the saved one, not a new one
    assert (state.modelFolder, state.device, state.refine, state.reorientViews) == ("/models/run-7", "cpu", False,
                                                                                    False)
    assert state.inputVolume.GetName() == "Phantom CT" and state.inputVolume.GetImageData() is not None
    assert state.outputFiducials.GetName() == "CT hinge points" and state.rootSeed.GetName() == "seed"
    assert state.outputPlane.GetID() == result.planeNode.GetID()
    fiducials = state.outputFiducials
    np.testing.assert_allclose(mrml.get_fiducials_lps(fiducials)[1], phantom.landmarks_lps, atol=1e-3)
    # the point list still knows its detection, plane, CT, table, S-curve and contour
    assert mrml.detected_record(fiducials)["confidence"] == [0.9, 0.8, 0.3]
    assert mrml.linked_node(fiducials, mrml.VOLUME_REFERENCE) is state.inputVolume
    table = mrml.linked_node(fiducials, mrml.TABLE_REFERENCE)
    assert [r[0] for r in mrml_tables.read_measurement_table(table)] == [r[0] for r in rows]
    np.testing.assert_allclose([r[1] for r in mrml_tables.read_measurement_table(table)], [r[1] for r in rows],
                               rtol=1e-5, equal_nan=True)  # the .tsv keeps 6 significant digits
    for role in (mrml.CHART_REFERENCE, mrml.CONTOUR_REFERENCE, mrml.PLANE_REFERENCE):
        assert mrml.linked_node(fiducials, role) is not None, role
    # and the work goes on: a correction is measured into the same nodes and restore still works
    update = reloaded_logic.updateAnnulus(fiducials)
    assert update.tableNode is table and update.lumen is not None and update.lumen.ok
    fiducials.SetNthControlPointPositionWorld(0, 0.0, 0.0, 0.0)
    restored = reloaded_logic.restoreDetectedPositions(fiducials)
    np.testing.assert_allclose(restored.positionsLps, phantom.landmarks_lps, atol=1e-3)
    assert loaded.GetNumberOfNodesByClass("vtkMRMLTableNode") == scene.GetNumberOfNodesByClass("vtkMRMLTableNode")


# --------------------------------------------------------------------------------------------- plan


def test_save_plan_writes_the_plan_of_the_points_on_their_ct(scene, logic, phantom, tmp_path):
    import json

    volume = mrml.add_volume_from_sitk(scene, phantom.image, "CT 7")
    result = logic.showLandmarks(NAMES, phantom.landmarks_lps, volumeNode=volume)
    plan, files = logic.savePlan(result.fiducialNode, tmp_path / "plan")
    assert [f.name for f in files] == ["CT_7.plan.json", "CT_7.plan.png"] and all(f.is_file() for f in files)
    record = json.loads(files[0].read_text(encoding="utf-8"))
    assert record["case"] == "CT_7" and record["coordinate_system"] == "LPS"
    assert record["lumen"]["perimeter_mm"] == pytest.approx(result.lumen.perimeter_mm, abs=0.01)
    assert plan.carm.views["cusp_overlap"] == pytest.approx(result.implantViews["cusp_overlap"])
    unlinked = mrml.set_fiducials(scene, NAMES, phantom.landmarks_lps, node_name="no CT")
    with pytest.raises(InputError, match="has no CT"):
        logic.savePlan(unlinked, tmp_path / "plan2")
