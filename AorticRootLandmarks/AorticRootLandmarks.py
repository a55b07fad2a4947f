"""3D Slicer module: detect the aortic-valve hinge points (RCC, LCC, NCC) in CT and set up the annulus views.

Module, Widget (UI), Logic and Test (self-test on a synthetic phantom), as in Slicer's scripted-module template.
The work is done in ``AorticRootLandmarksLib`` (numerics, and ``logic.LandmarkLogic`` for the Qt-free MRML work);
this file holds the UI and what only the Slicer application has (installing torch through the PyTorch extension).
Needs Slicer 5.4 or later (``parameterNodeWrapper``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import numpy as np
import qt
import slicer
import vtk
from slicer import vtkMRMLMarkupsFiducialNode, vtkMRMLMarkupsPlaneNode, vtkMRMLScalarVolumeNode

try:
    from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
except ImportError as error:  # Slicer < 5.4
    raise ImportError(f"AorticRootLandmarks needs 3D Slicer 5.4 or later (this Slicer has no {error.name})") from None
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from AorticRootLandmarksLib import frames, geometry, mrml
from AorticRootLandmarksLib.constants import HINGE_NAMES, LOW_CONFIDENCE
from AorticRootLandmarksLib.errors import InputError
from AorticRootLandmarksLib.logic import BUNDLED, AnnulusResult, LandmarkLogic

#: torch version the network code needs (weights_only loading, inference_mode).
MINIMUM_TORCH = "2.1"


class AorticRootLandmarks(ScriptedLoadableModule):
    """Module description shown in Slicer's module panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Aortic Root Landmarks"
        self.parent.categories = ["Cardiac"]
        self.parent.dependencies = []
        self.parent.contributors = ["AorticRootLandmarks contributors"]
        self.parent.helpText = """
Detects the three aortic-valve hinge points (nadirs of the right, left and non-coronary cusps) in a contrast CT with
a 3D U-Net ensemble trained with the GLiP loss, shows the annulus plane, reorients the slice views to it and reports
annulus measurements and C-arm implantation views. Drag a point to correct it: the plane, views and numbers follow.
The bundled model is trained on synthetic phantoms; use a model trained on your data for real CT.
"""
        self.parent.acknowledgementText = """
Method: GLiP (optimal-transport critic with a grid Lipschitz penalty) for landmark heatmaps.
"""


@parameterNodeWrapper
class AorticRootLandmarksParameterNode:
    """GUI state saved with the scene.

    inputVolume: CT to analyse. modelFolder: "bundled" or a model folder. device: auto/cpu/cuda.
    outputFiducials, outputPlane: nodes written by "Detect" (None: created). rootSeed: optional point list whose
    first point is roughly on the root (replaces the automatic search). reorientViews: move slice views.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    modelFolder: str = BUNDLED
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"
    outputFiducials: vtkMRMLMarkupsFiducialNode
    outputPlane: vtkMRMLMarkupsPlaneNode
    rootSeed: vtkMRMLMarkupsFiducialNode
    reorientViews: bool = True


class AorticRootLandmarksLogic(ScriptedLoadableModuleLogic, LandmarkLogic):
    """Detection and annulus set-up, usable without the GUI (the work is in ``logic.LandmarkLogic``).

    Example (Slicer's Python console, or a script run with ``Slicer --no-main-window --python-script run.py``)::

        import AorticRootLandmarks
        logic = AorticRootLandmarks.AorticRootLandmarksLogic()
        volume = slicer.util.loadVolume("ct.nii.gz")
        result = logic.process(volume)                     # bundled model, CUDA when available
        print(result.names, result.positionsLps)           # world LPS mm
        print(result.measurements["circumcircle_diameter_mm"], result.implantViews["three_cusp"])
        slicer.util.saveNode(result.fiducialNode, "hinges.mrk.json")
    """

    def __init__(self, scene=None):
        """scene: the MRML scene to work in (default ``slicer.mrmlScene``; pass one when running headless)."""
        ScriptedLoadableModuleLogic.__init__(self)
        LandmarkLogic.__init__(self, scene if scene is not None else slicer.mrmlScene, self.ensureTorch)

    def getParameterNode(self):
        return AorticRootLandmarksParameterNode(super().getParameterNode())

    @staticmethod
    def ensureTorch():
        """Import torch, installing it through the PyTorch extension (after the user confirms) when missing.

        Raises:
            InputError: the PyTorch extension is not installed, or the user declined the installation.
        """
        try:
            import torch

            return torch
        except ImportError:
            pass
        try:
            import PyTorchUtils
        except ImportError:
            raise InputError(
                "PyTorch is not available: install the 'PyTorch' extension (Extensions Manager), restart Slicer"
            ) from None
        torchLogic = PyTorchUtils.PyTorchUtilsLogic()
        if not torchLogic.torchInstalled():
            torch = torchLogic.installTorch(askConfirmation=True, torchVersionRequirement=f">={MINIMUM_TORCH}")
            if torch is None:
                raise InputError("PyTorch installation was cancelled; hinge-point detection needs it")
            return torch
        return torchLogic.torch


class AorticRootLandmarksWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel: inputs, Detect button with progress, results and measurement tables, Restore button."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._running = False

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/AorticRootLandmarks.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = AorticRootLandmarksLogic()
        self.ui.progressBar.hide()
        self.ui.resultsTable.horizontalHeader().setSectionResizeMode(qt.QHeaderView.Stretch)
        self.ui.measurementsTable.horizontalHeader().setSectionResizeMode(qt.QHeaderView.Stretch)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.detectButton.connect("clicked(bool)", self.onDetectButton)
        self.ui.restoreButton.connect("clicked(bool)", self.onRestoreButton)
        self.ui.exportButton.connect("clicked(bool)", self.onExportButton)
        self.ui.jumpButton.connect("clicked(bool)", lambda: self._onSelectedPoint(self.logic.jumpToPoint))
        self.ui.restorePointButton.connect("clicked(bool)", lambda: self._onSelectedPoint(self.logic.restorePoint))
        self.ui.undoButton.connect("clicked(bool)", self.onUndoButton)
        self.ui.saveButton.connect("clicked(bool)", self.onSaveButton)
        self.ui.modelPathLineEdit.connect("currentPathChanged(QString)", self.onModelFolderChanged)
        self.ui.outputFiducialSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onFiducialNodeChanged)
        self.initializeParameterNode()

    def cleanup(self):
        self.logic.stopLiveUpdate()
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)

    def onSceneStartClose(self, caller, event):
        self.logic.stopLiveUpdate()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            self._parameterNode.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")

    def setParameterNode(self, parameterNode):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.ui.modelPathLineEdit.currentPath = self._parameterNode.modelFolder
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
        self._updateButtons()

    def onModelFolderChanged(self, path):
        if self._parameterNode:
            self._parameterNode.modelFolder = path.strip() or BUNDLED

    def _updateButtons(self, caller=None, event=None):
        hasInput = bool(self._parameterNode and self._parameterNode.inputVolume)
        self.ui.detectButton.enabled = hasInput and not self._running
        self.ui.detectButton.toolTip = "Detect the hinge points" if hasInput else "Select a CT volume first"
        fiducials = self._parameterNode.outputFiducials if self._parameterNode else None
        self.ui.restoreButton.enabled = bool(fiducials and mrml.detected_record(fiducials)) and not self._running
        self.ui.exportButton.enabled = hasInput and self.logic.hasHingePoints(fiducials) and not self._running
        self.ui.saveButton.enabled = self.logic.hasHingePoints(fiducials) and not self._running
        for button in (self.ui.jumpButton, self.ui.restorePointButton, self.ui.undoButton):
            button.enabled = self.ui.saveButton.enabled

    def onFiducialNodeChanged(self, node):
        """Follow the selected point list: live plane/view updates and its numbers in the tables."""
        self.logic.stopLiveUpdate()
        if self.logic.hasHingePoints(node):  # detected here, or any point list with RCC/LCC/NCC (e.g. loaded)
            reorient = self._parameterNode.reorientViews if self._parameterNode else True
            self.logic.startLiveUpdate(node, reorient, callback=self.showResult)
            self.showResult(self.logic.updateAnnulus(node, reorientViews=False))
        self._updateButtons()

    def _onProgress(self, fraction: float, message: str) -> None:
        self.ui.progressBar.value = int(round(100 * fraction))
        self.ui.statusLabel.text = message
        slicer.app.processEvents()  # keep the UI painted; a second click is ignored by the _running guard

    def onDetectButton(self):
        if self._running:
            return
        self._running = True
        self._updateButtons()
        self.ui.progressBar.value = 0
        self.ui.progressBar.show()
        params = self._parameterNode
        try:
            self.logic.stopLiveUpdate()
            with slicer.util.tryWithErrorDisplay("Hinge-point detection failed.", waitCursor=True):
                try:
                    result = self.logic.process(params.inputVolume, params.modelFolder, params.device,
                                                params.outputFiducials, params.outputPlane, params.reorientViews,
                                                progress=self._onProgress, seedNode=params.rootSeed)
                except InputError as error:  # the user's to fix: one clear line, no traceback
                    self.ui.statusLabel.text = str(error)
                    slicer.util.errorDisplay(str(error))
                    return
                params.outputFiducials, params.outputPlane = result.fiducialNode, result.planeNode
                self.logic.startLiveUpdate(result.fiducialNode, params.reorientViews, callback=self.showResult)
                self.showResult(result)
        finally:
            self._running = False
            self.ui.progressBar.hide()
            self._updateButtons()

    def onRestoreButton(self):
        with slicer.util.tryWithErrorDisplay("Could not restore the detected positions.", waitCursor=True):
            result = self.logic.restoreDetectedPositions(self._parameterNode.outputFiducials,
                                                         self._parameterNode.reorientViews)
            self.showResult(result)

    def _onSelectedPoint(self, action) -> None:
        """Run ``action(pointList, label)`` on the point selected in the results table."""
        row = self.ui.resultsTable.currentRow()
        item = self.ui.resultsTable.item(row, 0) if row >= 0 else None
        if item is None:
            self.ui.statusLabel.text = "Select a point in the table first."
            return
        with slicer.util.tryWithErrorDisplay("Could not do that for this point.", waitCursor=True):
            action(self._parameterNode.outputFiducials, item.text())

    def onUndoButton(self):
        if not self.logic.undoLastMove(self._parameterNode.outputFiducials):
            self.ui.statusLabel.text = "Nothing to undo."

    def onSaveButton(self):
        parent = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), "Folder to save the results in")
        if not parent:
            return
        with slicer.util.tryWithErrorDisplay("Could not save the results.", waitCursor=True):
            node = self._parameterNode.outputFiducials
            folder = Path(parent) / f"{node.GetName()} results"
            files = self.logic.saveResults(node, folder)
            red = slicer.app.layoutManager().sliceWidget("Red")
            if red is not None:  # the annulus view as the analyst sees it
                red.sliceView().grab().save(str(folder / "annulus_view.png"))
            self.ui.statusLabel.text = f"Saved {len(files)} files and the annulus view to {folder}."

    def onExportButton(self):
        path = qt.QFileDialog.getSaveFileName(slicer.util.mainWindow(), "Training manifest to add this case to",
                                              "manifest.csv", "Manifest (*.csv)")
        if not path:
            return
        with slicer.util.tryWithErrorDisplay("Could not export the case.", waitCursor=True):
            params = self._parameterNode
            replaced = self.logic.exportCaseForTraining(params.inputVolume, params.outputFiducials, path)
            self.ui.statusLabel.text = f"{'Replaced' if replaced else 'Added'} this case in {path}."

    def showResult(self, result: AnnulusResult) -> None:
        """Fill the landmark table (RAS, confidence; low ones flagged) and the measurement table."""
        positionsRas = frames.lps_to_ras(result.positionsLps)
        table = self.ui.resultsTable
        table.setRowCount(len(result.names))
        for row, (name, ras, conf) in enumerate(zip(result.names, positionsRas, result.confidence, strict=True)):
            low = conf is not None and conf < LOW_CONFIDENCE
            cells = [name, *(f"{v:.1f}" for v in ras), "-" if conf is None else f"{conf:.2f}" + (" low" if low else "")]
            for column, text in enumerate(cells):
                item = qt.QTableWidgetItem(text)
                if low:
                    item.setBackground(qt.QBrush(qt.QColor(255, 200, 200)))
                    item.setToolTip("Low confidence: check this point and drag it if needed")
                table.setItem(row, column, item)
        rows = []
        if result.measurements:
            m = result.measurements
            rows += [("Circumcircle diameter", f"{m['circumcircle_diameter_mm']:.1f} mm"),
                     ("Circumcircle perimeter", f"{m['circumcircle_perimeter_mm']:.1f} mm"),
                     ("Circumcircle area", f"{m['circumcircle_area_mm2']:.0f} mm²")]
            labels = {"three_cusp": "Three-cusp view", "cusp_overlap": "Cusp-overlap view"}
            rows += [(labels[key], formatCarmAngles(*angles)) for key, angles in result.implantViews.items()]
        self.ui.measurementsTable.setRowCount(len(rows))
        for row, (label, value) in enumerate(rows):
            self.ui.measurementsTable.setItem(row, 0, qt.QTableWidgetItem(label))
            self.ui.measurementsTable.setItem(row, 1, qt.QTableWidgetItem(value))
        status = result.error
        if not status and result.detection is not None:
            status = f"Detected in {result.detection.seconds:.1f} s on {result.detection.device}."
        if result.verdict and result.verdict != "ok":
            status += f" Quality check: {result.qualitySummary}."
            if result.verdict == "failed":
                slicer.util.warningDisplay(f"No usable hinge points: {result.qualitySummary}. Check the image, or "
                                           "place a root seed point and detect again.")
        elif result.lowConfidence:
            status += f" Low confidence: {', '.join(result.lowConfidence)}; check before measuring."
        self.ui.statusLabel.text = status.strip()


def formatCarmAngles(laoDeg: float, cranDeg: float) -> str:
    """C-arm angulation as a cath-lab label, e.g. (-12.3, 8.0) -> 'RAO 12° CRA 8°'."""
    return (f"{'LAO' if laoDeg >= 0 else 'RAO'} {abs(laoDeg):.0f}° "
            f"{'CRA' if cranDeg >= 0 else 'CAU'} {abs(cranDeg):.0f}°")


class AorticRootLandmarksTest(ScriptedLoadableModuleTest):
    """Self-test on a small synthetic phantom (no network access); detection runs only where torch is present."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_AnnulusFromPhantomTruth()
        self.setUp()
        self.test_DetectionOnPhantom()

    def _loadPhantom(self):
        from AorticRootLandmarksLib.phantom import generate_case

        case = generate_case(0, size="small")
        return case, mrml.add_volume_from_sitk(slicer.mrmlScene, case.image, "Phantom CT")

    def test_AnnulusFromPhantomTruth(self):
        self.delayDisplay("Landmarks, plane and views from the phantom's true hinge points")
        case, volume = self._loadPhantom()
        slicer.util.setSliceViewerLayers(background=volume, fit=True)
        logic = AorticRootLandmarksLogic()
        result = logic.showLandmarks(HINGE_NAMES, case.landmarks_lps, [0.9, 0.8, 0.3])
        self.assertEqual(result.names, list(HINGE_NAMES))
        np.testing.assert_allclose(result.positionsLps, case.landmarks_lps, atol=1e-6)
        self.assertEqual(result.lowConfidence, ["NCC"])
        plane = geometry.annulus_plane(case.landmarks_lps)
        center, normal = mrml.get_plane_ras(result.planeNode)
        np.testing.assert_allclose(center, frames.lps_to_ras(plane.center), atol=1e-6)
        np.testing.assert_allclose(normal, frames.lps_to_ras(plane.normal), atol=1e-6)
        red = mrml.get_slice_nodes(slicer.mrmlScene)["Red"]
        np.testing.assert_allclose(mrml.slice_to_ras(red)[:3, 2], frames.lps_to_ras(plane.normal), atol=1e-6)

        self.delayDisplay("Drag a point: the plane follows; then restore")
        logic.startLiveUpdate(result.fiducialNode)
        moved = frames.lps_to_ras(case.landmarks_lps[1] + [0.0, 0.0, 4.0])
        result.fiducialNode.SetNthControlPointPositionWorld(1, *moved)
        self.assertGreater(np.linalg.norm(mrml.get_plane_ras(result.planeNode)[1] - normal), 1e-3)
        logic.restoreDetectedPositions(result.fiducialNode)
        np.testing.assert_allclose(mrml.get_plane_ras(result.planeNode)[1], normal, atol=1e-6)
        logic.stopLiveUpdate()
        self.delayDisplay("Test passed")

    def test_DetectionOnPhantom(self):
        try:  # a test never installs anything: without torch it is skipped, and says so
            import torch  # noqa: F401
        except ImportError:
            self.skipTest("torch is not installed (PyTorch extension); detection not tested")
        from AorticRootLandmarksLib.inference import bundled_model_dir

        if not (bundled_model_dir() / "model.json").is_file():
            self.skipTest("no bundled model in this build; detection not tested")
        self.delayDisplay("Detecting hinge points in the phantom with the bundled model")
        case, volume = self._loadPhantom()
        logic = AorticRootLandmarksLogic()
        result = logic.process(volume, device="cpu")
        first = result.fiducialNode
        result = logic.process(volume, device="cpu", fiducialNode=first)
        self.assertIs(result.fiducialNode, first)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLMarkupsFiducialNode"), 1)
        hinges = geometry.select_points(result.names, result.positionsLps)
        errors = np.linalg.norm(hinges - case.landmarks_lps, axis=1)
        logging.info(f"Phantom hinge-point errors (mm): {np.round(errors, 2)}")
        # Loose bound: this checks the wiring (frames, order), not the model's accuracy.
        self.assertLess(float(errors.max()), 15.0)
        self.delayDisplay("Test passed")
