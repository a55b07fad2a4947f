"""The module's logic without Qt: detection into the MRML scene, the annulus plane, views and numbers, live update.

Like SlicerHeart's ``HeartValveLib``, the work lives in the library; ``AorticRootLandmarks.py`` keeps a thin
``ScriptedLoadableModuleLogic`` that adds what only Slicer has (installing torch through the PyTorch extension).
Runs in 3D Slicer and on the ``slicer-core`` wheel (tests). Arrays in and out are world LPS mm; the scene is RAS
(through the ``mrml*`` modules). Method names follow Slicer's camelCase, as the module's public Python API.

What a point list carries in the scene (saved with it): the detected positions, confidences and quality reasons
(``mrml.DETECTED_ATTRIBUTE``) and references to its annulus plane, volume, measurement table, S-curve chart and lumen
contour (``mrml.*_REFERENCE``). Files the module writes: :mod:`logic_files`.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import frames, geometry, mrml, mrml_tables, mrml_views
from .constants import HINGE_NAMES, LOW_CONFIDENCE
from .errors import InputError
from .logic_files import ResultFiles
from .review import measurement_rows, point_statuses

#: Model folder value meaning "the model shipped with the module".
BUNDLED = "bundled"
#: Loaded ensembles kept in memory (each fold model is a few MB; a GPU copy counts too).
MODEL_CACHE_SIZE = 2
#: The annulus review layout (Red large, Yellow, Green and 3D beside it, table and S-curve below).
LAYOUT_FILE = Path(__file__).resolve().parents[1] / "Resources" / "Layouts" / "AnnulusReview.xml"

Progress = Callable[[float, str], None]


class DetectionCancelled(Exception):
    """The user cancelled a detection; raised between two of its steps (nothing is written to the scene)."""


@dataclass
class AnnulusResult:
    """Landmarks and annulus numbers as they are now in the scene.

    Attributes:
        fiducialNode, planeNode: the MRML nodes (planeNode None if the plane could not be made).
        names: K control-point labels of the defined points. positionsLps: (K, 3) world LPS mm. confidence: (K,)
            detection confidence per label (None where unknown).
        measurements: ``geometry.annulus_measurements`` of RCC, LCC, NCC; implantViews: ``geometry.implant_views``.
        error: why there are no measurements (e.g. a hinge point was deleted), else "".
        detection: the ``detection.Detection`` when this result comes from a detection run.
        lowConfidence: labels whose confidence is below ``constants.LOW_CONFIDENCE`` (to be reviewed).
        verdict, qualitySummary: the detection's quality control ("ok" / "review" / "failed", and why); empty when
            the points were not detected here.
        points: every landmark of the panel with its verdict (``review.PointStatus``), hinge points and ostia first.
        tableNode: the measurement table (``mrml_tables``); chartNode: the S-curve plot chart.
        lumen: ``annulus.LumenMeasurement`` measured on the CT in the annulus plane (None when not measured);
            contourNode: its contour as a closed curve.
    """

    fiducialNode: object
    planeNode: object
    names: list
    positionsLps: np.ndarray
    confidence: list
    measurements: dict | None = None
    implantViews: dict | None = None
    error: str = ""
    detection: object = None
    lowConfidence: list = field(default_factory=list)
    verdict: str = ""
    qualitySummary: str = ""
    points: list = field(default_factory=list)
    tableNode: object = None
    chartNode: object = None
    lumen: object = None
    contourNode: object = None


def _folder_signature(folder: Path | None) -> tuple:
    """Names, sizes and modification times of a model folder's files: changes when the model is retrained there."""
    from .inference import bundled_model_dir, find_model_dir

    folder = find_model_dir(bundled_model_dir() if folder is None else folder)
    return tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file()))


def _model_meta(modelFolder: str) -> dict:
    """model.json of a model folder ("bundled" or "" for the bundled one), {} if there is none (no torch needed)."""
    from .inference import bundled_model_dir, find_model_dir

    try:
        folder = find_model_dir(bundled_model_dir() if modelFolder in ("", BUNDLED, None) else modelFolder)
        return json.loads((folder / "model.json").read_text(encoding="utf-8"))
    except (InputError, OSError, ValueError):
        return {}


class LandmarkLogic(ResultFiles):
    """Detection and annulus set-up in an MRML scene, usable without the GUI.

    Args:
        scene: the MRML scene to work in.
        ensureTorch: called before a model is loaded (in Slicer: install torch through the PyTorch extension).
    """

    def __init__(self, scene, ensureTorch: Callable[[], object] | None = None):
        self.scene = scene
        self._ensureTorch = ensureTorch
        self._ensembles: OrderedDict = OrderedDict()
        self._observers: dict = {}
        self._cancelRequested = False
        self._image: tuple = (None, None)

    # --------------------------------------------------------------------------------------------- detection

    @staticmethod
    def modelTrainedOnPhantoms(modelFolder: str = BUNDLED) -> bool:
        """Whether the model was trained on synthetic phantoms only: the bundled one, or one whose model.json names
        phantom data in its training summary (the panel then warns that it is not validated on patient CT)."""
        training = json.dumps(_model_meta(modelFolder).get("training", {})).lower()
        return modelFolder in ("", BUNDLED, None) or "phantom" in training

    @staticmethod
    def modelHasSecondStage(modelFolder: str = BUNDLED) -> bool:
        """Whether the model has a second stage (model.json names a "refiner") that refines on full-resolution
        patches."""
        return bool(_model_meta(modelFolder).get("refiner"))

    def loadEnsemble(self, modelFolder: str = BUNDLED, device: str = "auto"):
        """Load the ensemble in ``modelFolder`` ("bundled" or "" for the bundled one) on ``device``.

        Kept in a small LRU cache (:data:`MODEL_CACHE_SIZE`); a model retrained in the same folder is reloaded.
        """
        if self._ensureTorch is not None:
            self._ensureTorch()
        from . import inference

        folder = None if modelFolder in ("", BUNDLED, None) else Path(modelFolder).resolve()
        key = (str(folder), device, _folder_signature(folder))
        if key in self._ensembles:
            self._ensembles.move_to_end(key)
        else:
            self._ensembles[key] = inference.load_ensemble(folder, device=device)
            while len(self._ensembles) > MODEL_CACHE_SIZE:
                self._ensembles.popitem(last=False)
        return self._ensembles[key]

    def requestCancel(self) -> None:
        """Ask the running detection to stop: it raises :class:`DetectionCancelled` at its next step."""
        self._cancelRequested = True

    def _checkedProgress(self, progress: Progress | None) -> Progress:
        """``progress`` that first raises :class:`DetectionCancelled` if a cancel was requested."""

        def report(fraction: float, message: str) -> None:
            if self._cancelRequested:
                raise DetectionCancelled("Detection cancelled; nothing was changed.")
            if progress is not None:
                progress(fraction, message)

        return report

    def detect(self, volumeNode, modelFolder: str = BUNDLED, device: str = "auto", progress: Progress | None = None,
               seedNode=None, stages: int | None = None, tta: bool = True):
        """Run the ensemble on a volume node. Returns ``detection.Detection`` (positions in world LPS mm).

        progress: optional callback(fraction in [0, 1], message), called at each step (model, root, resampling,
            each fold network, second stage, decoding); :meth:`requestCancel` (e.g. from it) stops at the next step.
        seedNode: optional point list whose first defined point lies roughly on the aortic root; the network grid is
            centred there instead of where the model's localizer (or the image centre) puts it.
        stages: None runs every stage the model has; 1 only the first (no refinement on full-resolution patches).
        tta: test-time augmentation of the first stage (five shifted grids, about five times its time; see
            ``detection.TTA_OFFSETS_MM``); False: one grid.

        Raises:
            DetectionCancelled: :meth:`requestCancel` was called during the detection.
        """
        from .detection import detect

        self._cancelRequested = False
        report = self._checkedProgress(progress)
        image = mrml.volume_node_to_sitk(volumeNode)
        seed = mrml.first_defined_point_lps(seedNode) if seedNode is not None else None
        report(0.0, "loading the model")
        ensemble = self.loadEnsemble(modelFolder, device)
        detection = detect(image, ensemble, progress=report, seed_lps=seed, stages=stages, tta=tta)
        report(1.0, "done")  # a cancel during the last step still cancels
        return detection

    def process(self, volumeNode, modelFolder: str = BUNDLED, device: str = "auto", fiducialNode=None,
                planeNode=None, reorientViews: bool = True, progress: Progress | None = None,
                seedNode=None, stages: int | None = None, tta: bool = True) -> AnnulusResult:
        """Detect the hinge points, write them to ``fiducialNode`` (created if None), make the plane, move the views,
        fill the measurement table and the S-curve.

        Re-running with the same ``fiducialNode`` replaces its points; the detected positions are stored on the
        node for :meth:`restoreDetectedPositions`. ``seedNode``, ``stages``, ``tta``: see :meth:`detect`. The result's
        ``verdict`` and ``qualitySummary`` carry the quality control (a "failed" detection still places its points,
        flagged).
        """
        detection = self.detect(volumeNode, modelFolder, device, progress, seedNode, stages, tta)
        reasons = [p.reason for p in detection.quality.points] if detection.quality is not None else None
        fiducialNode = mrml.set_fiducials(self.scene, detection.names, detection.positions_lps, detection.confidence,
                                          node=fiducialNode, node_name=f"{volumeNode.GetName()} hinge points",
                                          reasons=reasons)
        result = self.updateAnnulus(fiducialNode, planeNode, reorientViews, volumeNode=volumeNode)
        result.detection = detection
        result.verdict = detection.verdict
        result.qualitySummary = detection.quality.summary() if detection.quality is not None else ""
        return result

    # --------------------------------------------------------------------------------------------- annulus

    def showLandmarks(self, names, positionsLps, confidence=None, fiducialNode=None, planeNode=None,
                      reorientViews: bool = True, nodeName: str = "Hinge points", volumeNode=None) -> AnnulusResult:
        """Put landmarks (K, 3 world LPS mm) into the scene as if detected, then update plane, views, numbers.

        fiducialNode: point list to overwrite (None: a new one called ``nodeName``).
        """
        fiducialNode = mrml.set_fiducials(self.scene, list(names), positionsLps, confidence, node=fiducialNode,
                                          node_name=nodeName)
        return self.updateAnnulus(fiducialNode, planeNode, reorientViews, volumeNode=volumeNode)

    def updateAnnulus(self, fiducialNode, planeNode=None, reorientViews: bool = True, volumeNode=None,
                      measureLumen: bool = True) -> AnnulusResult:
        """Recompute the plane node, the slice views, the measurement table and the S-curve from the control points.

        planeNode: None uses the plane linked to ``fiducialNode`` (or creates one). volumeNode: the CT to measure the
        lumen on (remembered on the point list; None uses the remembered one). measureLumen: False leaves the lumen
        rows empty (while a point is dragged). A missing or degenerate hinge point does not raise: the result carries
        the error message and the table says "not measurable" (NaN).
        """
        if volumeNode is not None:
            mrml.link_node(fiducialNode, mrml.VOLUME_REFERENCE, volumeNode)
        points = point_statuses(*mrml.get_control_points_lps(fiducialNode), mrml.detected_record(fiducialNode))
        names, positions = mrml.get_fiducials_lps(fiducialNode)
        byName = {p.name: p for p in points}
        confidence = [byName[name].confidence if name in byName else None for name in names]
        low = [n for n, c in zip(names, confidence, strict=True) if c is not None and c < LOW_CONFIDENCE]
        result = AnnulusResult(fiducialNode, None, names, positions, confidence, lowConfidence=low, points=points)
        planeNode = planeNode if planeNode is not None else mrml.linked_node(fiducialNode, mrml.PLANE_REFERENCE)
        result.planeNode = planeNode
        try:
            hinges = geometry.select_points(names, positions)
            plane = geometry.annulus_plane(hinges)
            result.measurements = geometry.annulus_measurements(hinges)
            result.implantViews = geometry.implant_views(hinges)
        except InputError as error:
            result.error = str(error)
            self._updateTables(result, hinges=None)
            return result
        towardRcc, _ = geometry.plane_axes(plane, hinges[0])
        size = 1.5 * result.measurements["circumcircle_diameter_mm"]
        result.planeNode = mrml.set_plane_node(self.scene, plane, towardRcc, size_mm=size, node=planeNode,
                                               node_name=f"{fiducialNode.GetName()} annulus plane")
        mrml.link_node(fiducialNode, mrml.PLANE_REFERENCE, result.planeNode)
        self._updateLumen(result, hinges, measureLumen)
        self._updateTables(result, hinges)
        if reorientViews:
            mrml_views.reorient_slice_views(self.scene, plane, hinges[0])
        return result

    def _volumeImage(self, volumeNode):
        """The volume as a SimpleITK image, converted once per volume content (a CT is copied, not viewed)."""
        imageData = volumeNode.GetImageData()
        key = (volumeNode.GetID(), volumeNode.GetMTime(), imageData.GetMTime() if imageData is not None else 0)
        if self._image[0] != key:
            self._image = (key, mrml.volume_node_to_sitk(volumeNode))
        return self._image[1]

    def _updateLumen(self, result: AnnulusResult, hinges: np.ndarray, measureLumen: bool) -> None:
        """Measure the lumen on the linked CT in the annulus plane; its contour becomes a closed curve."""
        volumeNode = mrml.linked_node(result.fiducialNode, mrml.VOLUME_REFERENCE)
        contour = mrml.linked_node(result.fiducialNode, mrml.CONTOUR_REFERENCE)
        if volumeNode is None or not measureLumen:
            return
        from .annulus import measure_annulus

        result.lumen = measure_annulus(self._volumeImage(volumeNode), hinges)
        if result.lumen.ok:
            name = f"{result.fiducialNode.GetName()} lumen contour"
            contour = mrml.set_closed_curve(self.scene, result.lumen.contour_lps, node=contour, node_name=name)
            mrml.link_node(result.fiducialNode, mrml.CONTOUR_REFERENCE, contour)
        result.contourNode = contour
        if contour is not None and contour.GetDisplayNode() is not None:
            contour.GetDisplayNode().SetVisibility(bool(result.lumen.ok))  # no stale contour of a failed trace

    def _updateTables(self, result: AnnulusResult, hinges: np.ndarray | None) -> None:
        """Rewrite the measurement table and (with hinge points) the S-curve chart linked to the point list."""
        from .plan import carm, ostia_heights

        node = result.fiducialNode
        plane = geometry.annulus_plane(hinges) if hinges is not None else None
        heights = ostia_heights(plane, result.names, result.positionsLps) if plane is not None else {}
        rows = measurement_rows(result.measurements, result.implantViews, heights, result.lumen,
                                lumen_rows=mrml.linked_node(node, mrml.VOLUME_REFERENCE) is not None)
        table = mrml_tables.set_measurement_table(self.scene, rows, mrml.linked_node(node, mrml.TABLE_REFERENCE),
                                                  node_name=f"{node.GetName()} measurements")
        mrml.link_node(node, mrml.TABLE_REFERENCE, table)
        result.tableNode = table
        result.chartNode = mrml.linked_node(node, mrml.CHART_REFERENCE)
        if plane is None:
            return
        lao, cran = carm.s_curve(plane.normal)
        views = {carm.VIEW_TITLES[key]: angles for key, angles in result.implantViews.items()}
        result.chartNode = mrml_tables.set_s_curve_chart(self.scene, lao, cran, views, result.chartNode,
                                                         node_name=f"{node.GetName()} S-curve")
        mrml.link_node(node, mrml.CHART_REFERENCE, result.chartNode)

    # --------------------------------------------------------------------------------------------- corrections

    @staticmethod
    def hasHingePoints(fiducialNode) -> bool:
        """Whether a point list can be measured: it has control points labelled RCC, LCC and NCC (detected here,
        corrected earlier and loaded from a .mrk.json file, or placed by another reader), defined or not."""
        if fiducialNode is None:
            return False
        labels = {fiducialNode.GetNthControlPointLabel(i) for i in range(fiducialNode.GetNumberOfControlPoints())}
        return set(HINGE_NAMES) <= labels

    def restoreDetectedPositions(self, fiducialNode, reorientViews: bool = True) -> AnnulusResult:
        """Move the points back to the detected positions and update plane, views and numbers."""
        if not mrml.restore_detected(fiducialNode):
            raise InputError(f"'{fiducialNode.GetName()}': holds no detected positions to restore")
        return self.updateAnnulus(fiducialNode, reorientViews=reorientViews)

    def restorePoint(self, fiducialNode, label: str) -> None:
        """Move one point back to its detected position (the others stay as corrected)."""
        record = mrml.detected_record(fiducialNode)
        names, _, _ = mrml.get_control_points_lps(fiducialNode)
        if record is None or label not in record["names"] or label not in names:
            raise InputError(f"'{fiducialNode.GetName()}': no detected position of {label} to restore")
        point = record["positions_lps"][record["names"].index(label)]
        fiducialNode.SetNthControlPointPositionWorld(names.index(label), *frames.lps_to_ras(point))

    def placePoint(self, fiducialNode, label: str, positionLps=None) -> int:
        """Place or replace one landmark: at ``positionLps`` (3,) world LPS mm, or (None) where the analyst clicks next.

        A label the list lacks (a hinge point missing from a loaded file, an ostium) is added. With live update on,
        the plane, views and numbers follow once the point has its position, and :meth:`undoLastMove` puts the old
        position back. Returns the control point's index.

        Raises:
            InputError: no position given and the scene has no views to click in.
        """
        index = mrml.control_point_index(fiducialNode, label, add=True)
        if positionLps is None:
            mrml.start_placing(self.scene, fiducialNode, index)
        else:
            fiducialNode.SetNthControlPointPositionWorld(index, *frames.lps_to_ras(np.reshape(positionLps, 3)))
        return index

    def jumpToPoint(self, fiducialNode, label: str) -> None:
        """Centre the slice views on one point, keeping their orientation and zoom."""
        names, points = mrml.get_fiducials_lps(fiducialNode)
        if label not in names:
            raise InputError(f"'{fiducialNode.GetName()}': {label} has no position")
        for node in mrml_views.get_slice_nodes(self.scene).values():
            node.JumpSliceByCentering(*frames.lps_to_ras(points[names.index(label)]))

    # --------------------------------------------------------------------------------------------- live update

    def startLiveUpdate(self, fiducialNode, reorientViews: bool = True, callback=None) -> None:
        """Keep the plane, views and measurements following the points when the analyst moves them.

        The plane, the table and the S-curve follow every step of a drag; the views turn and the lumen is measured
        on the CT when the drag ends (turning the view a point is being dragged in would pull the point away from
        the mouse), and only when a position changed: selecting, hiding, relabelling or clicking a point leaves the
        analyst's views where they are. Scripted moves update everything. A cleared (undefined) point counts as
        missing: no plane, measurements unavailable.
        callback: optional function(AnnulusResult) called after each update (the Widget refreshes its panel).
        """
        self.stopLiveUpdate(fiducialNode)

        def onPointsMoved(node, dragging, moved):
            result = self.updateAnnulus(node, reorientViews=reorientViews and moved and not dragging,
                                        measureLumen=not dragging)
            if callback is not None:
                callback(result)

        self._observers[fiducialNode.GetID()] = mrml.ControlPointObserver(fiducialNode, onPointsMoved)

    def undoLastMove(self, fiducialNode) -> bool:
        """Undo the last move of a point (a whole drag, one scripted move, a placement) while live update follows
        the node. Returns False when there is nothing to undo. Plane, views and numbers follow as for any move."""
        observer = self._observers.get(fiducialNode.GetID())
        return observer.undo() if observer is not None else False

    def stopLiveUpdate(self, fiducialNode=None) -> None:
        """Stop following ``fiducialNode`` (None: all nodes)."""
        keys = list(self._observers) if fiducialNode is None else [fiducialNode.GetID()]
        for key in keys:
            observer = self._observers.pop(key, None)
            if observer is not None:
                observer.remove()

    # --------------------------------------------------------------------------------------------- layout

    def showAnnulusLayout(self, layoutNode, fiducialNode=None) -> int:
        """Switch to the annulus review layout (registering it first) and show the point list's table and S-curve.

        layoutNode: the application's layout node (``slicer.app.layoutManager().layoutLogic().GetLayoutNode()``).
        Returns the layout id (``mrml_views.ANNULUS_LAYOUT_ID``).
        """
        registerAnnulusLayout(layoutNode)
        layoutNode.SetViewArrangement(mrml_views.ANNULUS_LAYOUT_ID)
        if fiducialNode is not None:
            mrml_views.show_in_views(self.scene, mrml.linked_node(fiducialNode, mrml.TABLE_REFERENCE),
                                     mrml.linked_node(fiducialNode, mrml.CHART_REFERENCE))
        return mrml_views.ANNULUS_LAYOUT_ID


def registerAnnulusLayout(layoutNode) -> int:
    """Register the annulus review layout (:data:`LAYOUT_FILE`) with the layout node; returns its id.

    Called when the application starts, so that a scene saved in this layout opens in it (as SlicerHeart does).
    """
    mrml_views.register_layout(layoutNode, mrml_views.ANNULUS_LAYOUT_ID, LAYOUT_FILE.read_text(encoding="utf-8"))
    return mrml_views.ANNULUS_LAYOUT_ID
