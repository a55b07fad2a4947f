"""The module's Logic on slicer-core: detection into MRML, re-runs, progress, measurements."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import slicer

from AorticRootLandmarksLib import frames, geometry, inference, mrml
from AorticRootLandmarksLib.detection import detect

pytestmark = pytest.mark.slicer


def test_module_logic_is_the_library_logic():
    import AorticRootLandmarks
    from AorticRootLandmarksLib.logic import LandmarkLogic

    # The module file keeps a thin Logic: the work is the library's (usable without the application).
    assert issubclass(AorticRootLandmarks.AorticRootLandmarksLogic, LandmarkLogic)
    own = set(vars(AorticRootLandmarks.AorticRootLandmarksLogic)) - {"__module__", "__doc__", "__qualname__"}
    assert own <= {"__init__", "getParameterNode", "ensureTorch"}


def test_detection_lands_in_the_scene_in_ras(scene, logic, phantom, tiny_model_dir):
    volume = mrml.add_volume_from_sitk(scene, phantom.image, "Phantom CT")
    progress = []
    result = logic.process(volume, str(tiny_model_dir), "cpu", progress=lambda f, m: progress.append((f, m)))
    detection = result.detection
    # Same numbers as the core run on the same image (the random tiny model is deterministic).
    expected = detect(phantom.image, inference.load_ensemble(tiny_model_dir, "cpu"))
    np.testing.assert_allclose(detection.positions_lps, expected.positions_lps, atol=1e-4)
    names, points_lps = mrml.get_fiducials_lps(result.fiducialNode)
    assert names == detection.names
    np.testing.assert_allclose(points_lps, detection.positions_lps, atol=0.01)
    position = np.zeros(3)
    result.fiducialNode.GetNthControlPointPositionWorld(0, position)
    np.testing.assert_allclose(position, detection.positions_lps[0] * [-1, -1, 1], atol=0.01)
    fractions = [f for f, _ in progress]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert result.confidence == pytest.approx(list(detection.confidence), abs=1e-6)
    assert result.lowConfidence == [n for n, c in zip(detection.names, detection.confidence, strict=True) if c < 0.5]


def test_rerun_updates_the_same_nodes(scene, logic, phantom, tiny_model_dir):
    volume = mrml.add_volume_from_sitk(scene, phantom.image, "Phantom CT")
    first = logic.process(volume, str(tiny_model_dir), "cpu")
    second = logic.process(volume, str(tiny_model_dir), "cpu", fiducialNode=first.fiducialNode)
    assert second.fiducialNode is first.fiducialNode
    assert scene.GetNumberOfNodesByClass("vtkMRMLMarkupsFiducialNode") == 1
    if first.planeNode is not None:  # random weights may put the points on a line: then there is no plane
        assert second.planeNode is first.planeNode
        assert scene.GetNumberOfNodesByClass("vtkMRMLMarkupsPlaneNode") == 1
    assert logic.loadEnsemble(str(tiny_model_dir), "cpu") is logic.loadEnsemble(str(tiny_model_dir), "cpu")


def test_measurements_and_views_match_geometry(scene, logic, phantom):
    result = logic.showLandmarks(geometry.HINGE_NAMES, phantom.landmarks_lps)
    assert result.error == ""
    assert result.measurements == geometry.annulus_measurements(phantom.landmarks_lps)
    assert result.implantViews == geometry.implant_views(phantom.landmarks_lps)
    # The plane node is sized to the annulus: 1.5 circumcircle diameters.
    size = result.planeNode.GetSize()
    assert size[0] == pytest.approx(1.5 * result.measurements["circumcircle_diameter_mm"])


class _FakePyTorchUtilsLogic:
    """Stands in for SlicerPyTorch's PyTorchUtils.PyTorchUtilsLogic (same method names and arguments)."""

    answer = None  # what installTorch returns: None when the user cancels the confirmation
    calls: list = []

    @staticmethod
    def torchInstalled():
        return False

    def installTorch(self, askConfirmation=False, forceComputationBackend=None, torchVersionRequirement=None,
                     torchvisionVersionRequirement=None):
        _FakePyTorchUtilsLogic.calls.append((askConfirmation, torchVersionRequirement))
        return _FakePyTorchUtilsLogic.answer


def test_torch_comes_from_the_pytorch_extension(monkeypatch):
    import types

    import AorticRootLandmarks
    from AorticRootLandmarksLib.errors import InputError

    ensure = AorticRootLandmarks.AorticRootLandmarksLogic.ensureTorch
    monkeypatch.setitem(sys.modules, "torch", None)  # "import torch" fails, as in a fresh Slicer
    monkeypatch.setitem(sys.modules, "PyTorchUtils", None)
    with pytest.raises(InputError, match="install the 'PyTorch' extension"):
        ensure()

    fake = types.ModuleType("PyTorchUtils")
    fake.PyTorchUtilsLogic = _FakePyTorchUtilsLogic
    monkeypatch.setitem(sys.modules, "PyTorchUtils", fake)
    _FakePyTorchUtilsLogic.calls = []
    with pytest.raises(InputError, match="cancelled"):
        ensure()
    assert _FakePyTorchUtilsLogic.calls == [(True, ">=2.1")]  # the user is asked before anything is installed
    installed = types.ModuleType("torch")
    _FakePyTorchUtilsLogic.answer = installed
    assert ensure() is installed


@pytest.fixture
def self_test(scene, monkeypatch):
    """The module's self-test class, on slicer-core: the two application-only calls are stubbed (message display,
    fitting the views); ``self_test.messages`` collects what Slicer would display."""
    import slicer

    import AorticRootLandmarks

    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    monkeypatch.setattr(slicer.util, "setSliceViewerLayers", lambda **kwargs: None)
    messages = []
    monkeypatch.setattr(AorticRootLandmarks.AorticRootLandmarksTest, "delayDisplay",
                        lambda self, message, *args: messages.append(message), raising=False)
    test = AorticRootLandmarks.AorticRootLandmarksTest()
    test.messages = messages
    return test


def test_module_self_test_annulus(self_test):
    self_test.test_AnnulusFromPhantomTruth()
    assert self_test.messages[-1] == "Test passed"


@pytest.mark.slow
def test_module_self_test_detection(self_test):
    # The bundled model on the phantom; without torch or the model it raises unittest.SkipTest (a skip, not a pass).
    self_test.test_DetectionOnPhantom()
    assert self_test.messages[-1] == "Test passed"


def test_self_test_skips_honestly_without_torch(self_test, monkeypatch):
    import unittest

    monkeypatch.setitem(sys.modules, "torch", None)  # "import torch" fails
    with pytest.raises(unittest.SkipTest, match="torch is not installed"):
        self_test.test_DetectionOnPhantom()
    assert "Test passed" not in self_test.messages


def test_model_cache_is_bounded_and_follows_retraining(scene, tiny_model_dir, tmp_path):
    import shutil

    from AorticRootLandmarksLib.logic import MODEL_CACHE_SIZE, LandmarkLogic

    logic = LandmarkLogic(scene)
    copies = [shutil.copytree(tiny_model_dir, tmp_path / f"m{i}") for i in range(MODEL_CACHE_SIZE + 1)]
    first = logic.loadEnsemble(str(copies[0]), "cpu")
    for folder in copies[1:]:
        logic.loadEnsemble(str(folder), "cpu")
    assert len(logic._ensembles) == MODEL_CACHE_SIZE
    assert logic.loadEnsemble(str(copies[0]), "cpu") is not first  # evicted, loaded again
    again = logic.loadEnsemble(str(copies[0]), "cpu")
    assert logic.loadEnsemble(str(copies[0]), "cpu") is again
    meta = copies[0] / "model.json"
    meta.write_text(meta.read_text(encoding="utf-8").replace('"tiny-random"', '"tiny-retrained"'), encoding="utf-8")
    reloaded = logic.loadEnsemble(str(copies[0]), "cpu")
    assert reloaded is not again and reloaded.meta["name"] == "tiny-retrained"


def test_a_root_seed_point_centres_the_grid(scene, logic, phantom, tiny_model_dir):
    volume = mrml.add_volume_from_sitk(scene, phantom.image, "Phantom CT")
    seed_lps = phantom.landmarks_lps.mean(axis=0) + [12.0, -8.0, 5.0]
    seed = mrml.set_fiducials(scene, ["root"], seed_lps[None], node_name="seed", store_as_detected=False)
    result = logic.process(volume, str(tiny_model_dir), "cpu", seedNode=seed)
    location = result.detection.location
    assert location.method == "seed point"
    np.testing.assert_allclose(location.center_lps, seed_lps, atol=1e-6)  # RAS in the scene, LPS here
    grid = result.detection.grid  # the grid is centred on the seed: origin + spacing * (size - 1) / 2
    np.testing.assert_allclose(grid.index_to_world((np.asarray(grid.size) - 1) / 2), seed_lps, atol=1e-6)
    assert result.verdict in ("ok", "review", "failed") and result.qualitySummary


def test_a_cleared_seed_point_is_no_seed(scene, phantom):
    node = mrml.set_fiducials(scene, ["root"], phantom.landmarks_lps[:1], node_name="seed", store_as_detected=False)
    node.SetFixedNumberOfControlPoints(False)
    node.UnsetNthControlPointPosition(0)
    assert mrml.first_defined_point_lps(node) is None


def test_an_older_slicer_gets_one_clear_line(monkeypatch):
    import importlib.util

    from conftest import MODULE_DIR

    monkeypatch.setitem(sys.modules, "slicer.parameterNodeWrapper", None)  # Slicer < 5.4 has no parameterNodeWrapper
    spec = importlib.util.spec_from_file_location("AorticRootLandmarks_on_old_slicer",
                                                  MODULE_DIR / "AorticRootLandmarks.py")
    with pytest.raises(ImportError, match=r"needs 3D Slicer 5\.4 or later"):
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


def test_export_corrected_case_for_training(scene, logic, phantom, tmp_path):
    from AorticRootLandmarksLib.errors import InputError
    from AorticRootLandmarksLib.io import read_manifest

    image_path = tmp_path / "images" / "ct7.nii.gz"
    volume = mrml.add_volume_from_sitk(scene, phantom.image, "ct7")
    result = logic.showLandmarks(geometry.HINGE_NAMES, phantom.landmarks_lps)
    with pytest.raises(InputError, match="save it first"):
        logic.exportCaseForTraining(volume, result.fiducialNode, tmp_path / "manifest.csv")
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(image_path))
    volume.SetAndObserveStorageNodeID(storage.GetID())
    # an existing manifest of the analyst's, with a column of their own
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("image,RCC_x,RCC_y,RCC_z,LCC_x,LCC_y,LCC_z,NCC_x,NCC_y,NCC_z,reader\n"
                        "images/ct1.nii.gz,1,2,3,4,5,6,7,8,9,anna\n", encoding="utf-8")
    assert logic.exportCaseForTraining(volume, result.fiducialNode, manifest) is False  # added
    corrected = phantom.landmarks_lps.copy()
    corrected[1] += [0.0, 0.0, 2.5]  # the analyst moves LCC, exports again: the row is replaced
    result.fiducialNode.SetNthControlPointPositionWorld(1, *frames.lps_to_ras(corrected[1]))
    assert logic.exportCaseForTraining(volume, result.fiducialNode, manifest) is True
    cases = read_manifest(manifest, check_images=False)
    assert [c.case_id for c in cases] == ["ct1", "ct7"]
    assert cases[1].image == image_path.resolve()
    np.testing.assert_allclose(cases[1].landmarks_lps, corrected, atol=1e-3)  # LPS, 4 decimals
    assert manifest.read_text(encoding="utf-8").splitlines()[1].endswith(",anna")  # the analyst's column stays
    result.fiducialNode.UnsetNthControlPointPosition(2)
    with pytest.raises(InputError, match="NCC"):
        logic.exportCaseForTraining(volume, result.fiducialNode, manifest)


def test_save_results_writes_points_and_numbers_all_or_nothing(scene, logic, phantom, tmp_path):
    import csv
    import json

    from AorticRootLandmarksLib import mrml_tables
    from AorticRootLandmarksLib.errors import InputError
    from AorticRootLandmarksLib.io import read_markups

    result = logic.showLandmarks(geometry.HINGE_NAMES, phantom.landmarks_lps, [0.9, 0.8, 0.3],
                                 nodeName="CT 7 hinge points")
    shots = []

    def screenshot(path):  # in Slicer: ScreenCapture's capture of the view layout
        shots.append(path)
        path.write_bytes(b"\x89PNG\r\n\x1a\n")

    files = logic.saveResults(result.fiducialNode, tmp_path / "results", screenshot=screenshot)
    assert [f.name for f in files] == ["CT_7_hinge_points.mrk.json", "measurements.json", "measurements.csv",
                                       "annulus_views.png"]
    assert all(f.is_file() for f in files) and shots[0].name == "annulus_views.png"
    labels, points = read_markups(files[0])
    assert labels == ["RCC", "LCC", "NCC"]
    np.testing.assert_allclose(points, phantom.landmarks_lps, atol=1e-3)
    markups = json.loads(files[0].read_text(encoding="utf-8"))["markups"][0]["controlPoints"]
    assert [p["description"].split(":")[0] for p in markups] == ["ok", "ok", "review"]  # verdicts travel with them
    record = json.loads(files[1].read_text(encoding="utf-8"))
    expected = geometry.annulus_measurements(phantom.landmarks_lps)["circumcircle_diameter_mm"]
    assert record["measurements"]["circumcircle_diameter_mm"] == pytest.approx(expected)
    assert record["landmarks"]["NCC"]["confidence"] == pytest.approx(0.3)
    assert record["landmarks"]["NCC"]["verdict"] == "review"
    assert record["table"][0] == {"measurement": "Circumcircle diameter", "value": pytest.approx(expected, abs=1e-4),
                                  "unit": "mm"}
    rows = {row[0]: row[1:] for row in csv.reader(files[2].open(encoding="utf-8"))}
    assert rows["measurement"] == ["value", "unit"]
    assert float(rows["Circumcircle diameter"][0]) == pytest.approx(expected, rel=1e-3)
    assert float(rows["RCC x (LPS)"][0]) == pytest.approx(phantom.landmarks_lps[0, 0], abs=1e-3)
    # the CSV is the table the analyst sees, row for row
    table = mrml_tables.read_measurement_table(result.tableNode)
    assert [label for label in rows if not label.endswith("(LPS)")][1:] == [label for label, _, _ in table]
    with pytest.raises(InputError, match="--force"):  # an existing folder is not overwritten
        logic.saveResults(result.fiducialNode, tmp_path / "results")

    def failing_screenshot(path):
        raise RuntimeError("no views")

    with pytest.raises(RuntimeError):
        logic.saveResults(result.fiducialNode, tmp_path / "other", screenshot=failing_screenshot)
    assert not (tmp_path / "other").exists()  # all or nothing
