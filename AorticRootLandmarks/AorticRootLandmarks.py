"""3D Slicer module: detect the aortic-valve hinge points (RCC, LCC, NCC) in CT and set up the annulus views.

Module, Widget (UI), Logic and Test (self-test on a synthetic phantom), as in Slicer's scripted-module template.
The work is done in ``AorticRootLandmarksLib`` (numerics, and ``logic.LandmarkLogic`` for the Qt-free MRML work);
this file holds the UI and what only the Slicer application has (installing torch through the PyTorch extension,
the layout manager, screen capture). User-visible text goes through ``_()`` (Slicer's translation function).
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
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from AorticRootLandmarksLib import frames, geometry, mrml, mrml_tables, mrml_views
from AorticRootLandmarksLib.constants import HINGE_NAMES
from AorticRootLandmarksLib.errors import InputError
from AorticRootLandmarksLib.logic import (
    BUNDLED,
    AnnulusResult,
    DetectionCancelled,
    LandmarkLogic,
    registerAnnulusLayout,
)

#: torch version the network code needs (weights_only loading, inference_mode).
MINIMUM_TORCH = "2.1"
#: The extension's name in the Extensions Manager (its CMake project).
EXTENSION_NAME = "AorticRootLandmarks"


def documentationUrl() -> str:
    """Where the module's documentation is: the extension's homepage as the Extensions Manager knows it (set from
    the extension's CMakeLists.txt), else the README.md of the source checkout this module runs from, else ""."""
    try:
        homepage = slicer.app.extensionsManagerModel().extensionMetadata(EXTENSION_NAME).get("homepage", "")
    except AttributeError:  # no application (tests), or no Extensions Manager in this build
        homepage = ""
    readme = Path(__file__).resolve().parents[1] / "README.md"
    return homepage or (readme.as_uri() if readme.is_file() else "")


def documentationLink() -> str:
    """The help text's paragraph that links to the documentation (:func:`documentationUrl`)."""
    url = documentationUrl()
    if not url:
        return _("<p>Documentation: the README.md of the AorticRootLandmarks repository.</p>")
    return _('<p>See the <a href="{url}">documentation</a> (README) for the workflow, the model and its limits.</p>'
             ).format(url=url)


def registerLayoutAtStartup() -> None:
    """Register the annulus review layout with the application's layout manager (at startup, as SlicerHeart does,
    so that a scene saved in this layout opens in it)."""
    layoutManager = slicer.app.layoutManager()
    if layoutManager is not None:  # None when Slicer runs without a main window
        registerAnnulusLayout(layoutManager.layoutLogic().GetLayoutNode())


class AorticRootLandmarks(ScriptedLoadableModule):
    """Module description shown in Slicer's module panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Aortic Root Landmarks")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Cardiac")]
        self.parent.dependencies = []
        self.parent.contributors = ["AorticRootLandmarks developers"]
        self.parent.helpText = _("""
Detects the three aortic-valve hinge points (nadirs of the right, left and non-coronary cusps) in a contrast CT with
a 3D U-Net ensemble trained with the GLiP loss, shows the annulus plane, reorients the slice views to it and reports
annulus measurements, coronary heights and C-arm implantation views. Drag, place or restore a point to correct it:
the plane, views and numbers follow. The bundled model is trained on synthetic phantoms only; use a model trained
on your data for real CT.
""") + documentationLink()
        self.parent.acknowledgementText = _("""
Method: GLiP (optimal-transport critic with a grid Lipschitz penalty) for landmark heatmaps.
""")
        slicer.app.connect("startupCompleted()", registerLayoutAtStartup)


@parameterNodeWrapper
class AorticRootLandmarksParameterNode:
    """GUI state saved with the scene (nodes as node references, values as parameters of the module's node).

    inputVolume: CT to analyse. modelFolder: "bundled" or a model folder. device: auto/cpu/cuda.
    outputFiducials, outputPlane: nodes written by "Detect" (None: created). rootSeed: optional point list whose
    first point is roughly on the root (replaces the automatic search). reorientViews: move slice views.
    refine: run the model's second stage (full-resolution patches) when it has one.
    tta: test-time augmentation of the first stage (five shifted grids: steadier, about 5x its time).
    """

    inputVolume: vtkMRMLScalarVolumeNode
    modelFolder: str = BUNDLED
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"
    outputFiducials: vtkMRMLMarkupsFiducialNode
    outputPlane: vtkMRMLMarkupsPlaneNode
    rootSeed: vtkMRMLMarkupsFiducialNode
    reorientViews: bool = True
    refine: bool = True
    tta: bool = True


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


#: Columns of the points panel (``resultsTable``).
POINT_COLUMNS = 6


class AorticRootLandmarksWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel: inputs, Detect/Cancel with progress, the points panel, the measurement table, file buttons.

    It only wires the UI to the logic (``logic.LandmarkLogic``); what a button does is a logic method.
    """

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
        self.ui.cancelButton.hide()
        self.ui.resultsTable.horizontalHeader().setSectionResizeMode(qt.QHeaderView.Stretch)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        actions = {
            self.ui.detectButton: self.onDetectButton,
            self.ui.cancelButton: self.onCancelButton,
            self.ui.restoreButton: self.onRestoreButton,
            self.ui.jumpButton: lambda: self._onSelectedPoint(self.logic.jumpToPoint),
            self.ui.placeButton: lambda: self._onSelectedPoint(self.onPlacePoint),
            self.ui.restorePointButton: lambda: self._onSelectedPoint(self.logic.restorePoint),
            self.ui.undoButton: self.onUndoButton,
            self.ui.layoutButton: self.onLayoutButton,
            self.ui.saveButton: self.onSaveButton,
            self.ui.savePlanButton: self.onSavePlanButton,
            self.ui.exportButton: self.onExportButton,
        }
        for button, action in actions.items():
            button.connect("clicked(bool)", lambda checked, action=action: action())
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
            self.onModelFolderChanged(self._parameterNode.modelFolder)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
        self._updateButtons()

    def onModelFolderChanged(self, path):
        """Remember the model; show the phantom warning and offer the second stage when the model has them."""
        folder = path.strip() or BUNDLED
        if self._parameterNode:
            self._parameterNode.modelFolder = folder
        self.ui.modelWarningLabel.text = _(
            "This model was trained on synthetic phantoms only. It shows the workflow; it is not validated on patient "
            "CT. Check every point; for patients, use a model trained and validated on your own data.")
        self.ui.modelWarningLabel.visible = self.logic.modelTrainedOnPhantoms(folder)
        self.ui.refineCheckBox.enabled = self.logic.modelHasSecondStage(folder)

    def _updateButtons(self, caller=None, event=None):
        """Enable what can be done now; while detection runs, lock every input (only Cancel works)."""
        running = self._running
        hasInput = bool(self._parameterNode and self._parameterNode.inputVolume)
        fiducials = self._parameterNode.outputFiducials if self._parameterNode else None
        hasPoints = self.logic.hasHingePoints(fiducials) and not running
        self.ui.inputsCollapsibleButton.enabled = self.ui.outputsCollapsibleButton.enabled = not running
        self.ui.detectButton.enabled = hasInput and not running
        self.ui.detectButton.toolTip = _("Detect the hinge points") if hasInput else _("Select a CT volume first")
        self.ui.cancelButton.visible = running
        self.ui.restoreButton.enabled = bool(fiducials and mrml.detected_record(fiducials)) and not running
        self.ui.exportButton.enabled = hasInput and hasPoints
        self.ui.saveButton.enabled = self.ui.savePlanButton.enabled = hasPoints
        for button in (self.ui.jumpButton, self.ui.placeButton, self.ui.restorePointButton, self.ui.undoButton):
            button.enabled = bool(fiducials) and not running

    def onFiducialNodeChanged(self, node):
        """Follow the selected point list: live plane/view updates, its landmarks and numbers in the panel."""
        self.logic.stopLiveUpdate()
        self.ui.measurementsTableView.setMRMLTableNode(None)
        if node is not None:  # detected here, loaded from a file, or an empty list the analyst places points in
            params = self._parameterNode
            reorient = params.reorientViews if params else True
            self.logic.startLiveUpdate(node, reorient, callback=self.showResult)
            volume = params.inputVolume if params and not mrml.linked_node(node, mrml.VOLUME_REFERENCE) else None
            self.showResult(self.logic.updateAnnulus(node, reorientViews=False, volumeNode=volume))
        self._updateButtons()

    def _onProgress(self, fraction: float, message: str) -> None:
        self.ui.progressBar.value = int(round(100 * fraction))
        self.ui.statusLabel.text = _("Detecting: {step}").format(step=message)
        slicer.app.processEvents()  # keep the UI painted and let Cancel be clicked; inputs are locked meanwhile

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
            with slicer.util.tryWithErrorDisplay(_("Hinge-point detection failed."), waitCursor=True):
                try:
                    result = self.logic.process(params.inputVolume, params.modelFolder, params.device,
                                                params.outputFiducials, params.outputPlane, params.reorientViews,
                                                progress=self._onProgress, seedNode=params.rootSeed,
                                                stages=None if params.refine else 1, tta=params.tta)
                except (InputError, DetectionCancelled) as error:  # the user's to fix, or asked: one line
                    self.ui.statusLabel.text = str(error)
                    if isinstance(error, InputError):
                        slicer.util.errorDisplay(str(error))
                    return
                params.outputFiducials, params.outputPlane = result.fiducialNode, result.planeNode
                self.logic.startLiveUpdate(result.fiducialNode, params.reorientViews, callback=self.showResult)
                self.showResult(result)
        finally:
            self._running = False
            self.ui.progressBar.hide()
            self._updateButtons()

    def onCancelButton(self):
        self.logic.requestCancel()
        self.ui.statusLabel.text = _("Cancelling after the current step...")

    def onRestoreButton(self):
        with slicer.util.tryWithErrorDisplay(_("Could not restore the detected positions."), waitCursor=True):
            self.showResult(self.logic.restoreDetectedPositions(self._parameterNode.outputFiducials,
                                                                self._parameterNode.reorientViews))

    def _onSelectedPoint(self, action) -> None:
        """Run ``action(pointList, label)`` on the landmark selected in the points panel."""
        row = self.ui.resultsTable.currentRow()
        item = self.ui.resultsTable.item(row, 0) if row >= 0 else None
        if item is None:
            self.ui.statusLabel.text = _("Select a landmark in the table first.")
            return
        with slicer.util.tryWithErrorDisplay(_("Could not do that for this point."), waitCursor=True):
            action(self._parameterNode.outputFiducials, item.text())

    def onPlacePoint(self, node, label: str) -> None:
        self.logic.placePoint(node, label)
        self.ui.statusLabel.text = _("Click in a view where {label} belongs.").format(label=label)

    def onUndoButton(self):
        if not self.logic.undoLastMove(self._parameterNode.outputFiducials):
            self.ui.statusLabel.text = _("Nothing to undo.")

    def onLayoutButton(self):
        layoutNode = slicer.app.layoutManager().layoutLogic().GetLayoutNode()
        self.logic.showAnnulusLayout(layoutNode, self._parameterNode.outputFiducials)
        slicer.app.processEvents()  # lay the views out before anything captures them

    def _pickFolder(self, title: str) -> str:
        return qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), title)

    def onSaveButton(self):
        parent = self._pickFolder(_("Folder to save the results in"))
        if not parent:
            return
        with slicer.util.tryWithErrorDisplay(_("Could not save the results."), waitCursor=True):
            import ScreenCapture

            node = self._parameterNode.outputFiducials
            folder = Path(parent) / f"{node.GetName()} results"
            self.onLayoutButton()  # the picture shows the annulus views, table and S-curve
            capture = ScreenCapture.ScreenCaptureLogic().captureImageFromView  # None: the whole view layout
            files = self.logic.saveResults(node, folder, screenshot=lambda path: capture(None, str(path)))
            self.ui.statusLabel.text = _("Saved {count} files to {folder}.").format(count=len(files), folder=folder)

    def onSavePlanButton(self):
        parent = self._pickFolder(_("Folder to save the plan in"))
        if not parent:
            return
        with slicer.util.tryWithErrorDisplay(_("Could not save the plan."), waitCursor=True):
            node = self._parameterNode.outputFiducials
            plan, files = self.logic.savePlan(node, Path(parent) / f"{node.GetName()} plan")
            self.ui.statusLabel.text = _("Saved {files}. {summary}").format(
                files=", ".join(str(f) for f in files), summary=plan.summary())

    def onExportButton(self):
        path = qt.QFileDialog.getSaveFileName(slicer.util.mainWindow(), _("Training manifest to add this case to"),
                                              "manifest.csv", _("Manifest (*.csv)"))
        if not path:
            return
        with slicer.util.tryWithErrorDisplay(_("Could not export the case."), waitCursor=True):
            params = self._parameterNode
            replaced = self.logic.exportCaseForTraining(params.inputVolume, params.outputFiducials, path)
            message = _("Replaced this case in {path}.") if replaced else _("Added this case to {path}.")
            self.ui.statusLabel.text = message.format(path=path)

    def showResult(self, result: AnnulusResult) -> None:
        """Fill the points panel (position RAS, confidence, verdict), show the measurement table, say the status."""
        table = self.ui.resultsTable
        table.setRowCount(len(result.points))
        for row, point in enumerate(result.points):
            ras = frames.lps_to_ras(point.positionLps) if point.positionLps is not None else [None] * 3
            cells = [point.name, *("" if v is None else f"{v:.1f}" for v in ras),
                     "" if point.confidence is None else f"{point.confidence:.2f}", point.verdict]
            for column, text in enumerate(cells):
                item = qt.QTableWidgetItem(text)
                item.setToolTip(point.reason)
                if point.verdict in ("review", "missing"):
                    item.setBackground(qt.QBrush(qt.QColor(255, 200, 200)))
                table.setItem(row, column, item)
        self.ui.measurementsTableView.setMRMLTableNode(result.tableNode)
        self.ui.carmLabel.text = "; ".join(f"{label}: {angles.label}" for label, angles in (
            (_("Three-cusp view"), (result.implantViews or {}).get("three_cusp")),
            (_("Cusp-overlap view"), (result.implantViews or {}).get("cusp_overlap"))) if angles is not None)
        self.ui.statusLabel.text = self._status(result)

    @staticmethod
    def _status(result: AnnulusResult) -> str:
        status = result.error
        if not status and result.detection is not None:
            status = _("Detected in {seconds:.1f} s on {device}.").format(seconds=result.detection.seconds,
                                                                         device=result.detection.device)
        if result.verdict and result.verdict != "ok":
            status += " " + _("Quality check: {summary}.").format(summary=result.qualitySummary)
            if result.verdict == "failed":
                slicer.util.warningDisplay(_("No usable hinge points: {summary}. Check the image, or place a root "
                                             "seed point and detect again.").format(summary=result.qualitySummary))
        elif result.lowConfidence:
            status += " " + _("Low confidence: {labels}; check before measuring.").format(
                labels=", ".join(result.lowConfidence))
        if result.lumen is not None and not result.lumen.ok:
            status += " " + _("Lumen not measured: {reason}.").format(reason=result.lumen.reason)
        elif result.lumen is not None and result.lumen.warnings:
            status += " " + _("Check the lumen: {warnings}.").format(warnings="; ".join(result.lumen.warnings))
        return status.strip()


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
        red = mrml_views.get_slice_nodes(slicer.mrmlScene)["Red"]
        np.testing.assert_allclose(mrml_views.slice_to_ras(red)[:3, 2], frames.lps_to_ras(plane.normal), atol=1e-6)

        self.delayDisplay("Measurement table and the verdict of each point")
        rows = {label: value for label, value, _ in mrml_tables.read_measurement_table(result.tableNode)}
        expected = geometry.annulus_measurements(case.landmarks_lps)["circumcircle_diameter_mm"]
        self.assertAlmostEqual(rows["Circumcircle diameter"], expected, places=6)
        self.assertEqual([p.verdict for p in result.points[:3]], ["ok", "ok", "review"])

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
