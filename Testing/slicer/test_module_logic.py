"""The module's Logic on slicer-core: detection into MRML, re-runs, progress, measurements."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from AorticRootLandmarksLib import geometry, inference, mrml

pytestmark = pytest.mark.slicer


def test_module_imports_without_qt():
    import AorticRootLandmarks

    # slicer-core has no Qt: the Logic and the helpers must still be there (the Widget is only usable in Slicer).
    assert hasattr(AorticRootLandmarks, "AorticRootLandmarksLogic")
    assert AorticRootLandmarks.formatCarmAngles(-12.4, 8.0) == "RAO 12° CRA 8°"
    assert AorticRootLandmarks.formatCarmAngles(30.0, -20.6) == "LAO 30° CAU 21°"


def test_detection_lands_in_the_scene_in_ras(scene, logic, phantom, tiny_model_dir):
    volume = mrml.add_volume_from_sitk(scene, phantom.image, "Phantom CT")
    progress = []
    result = logic.process(volume, str(tiny_model_dir), "cpu", progress=lambda f, m: progress.append((f, m)))
    detection = result.detection
    # Same numbers as the core run on the same image (the random tiny model is deterministic).
    expected = inference.detect(phantom.image, inference.load_ensemble(tiny_model_dir, "cpu"))
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
    assert result.lowConfidence == [n for n, c in zip(detection.names, detection.confidence) if c < 0.5]


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
    # Runs the bundled model on the phantom when the model is in the tree (else the self-test skips itself).
    self_test.test_DetectionOnPhantom()
    assert self_test.messages[-1].startswith(("Test passed", "Skipping detection"))
