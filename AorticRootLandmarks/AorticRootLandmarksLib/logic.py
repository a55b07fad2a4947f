"""The module's logic without Qt: detection into the MRML scene, the annulus plane, views and numbers, live update.

Like SlicerHeart's ``HeartValveLib``, the work lives in the library; ``AorticRootLandmarks.py`` keeps a thin
``ScriptedLoadableModuleLogic`` that adds what only Slicer has (installing torch through the PyTorch extension).
Runs in 3D Slicer and on the ``slicer-core`` wheel (tests). Arrays in and out are world LPS mm; the scene is RAS
(through :mod:`mrml`). Method names follow Slicer's camelCase, as the module's public Python API.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import frames, geometry, mrml
from .constants import HINGE_NAMES, LOW_CONFIDENCE
from .errors import InputError

#: Model folder value meaning "the model shipped with the module".
BUNDLED = "bundled"
#: Loaded ensembles kept in memory (each fold model is a few MB; a GPU copy counts too).
MODEL_CACHE_SIZE = 2

Progress = Callable[[float, str], None]


@dataclass
class AnnulusResult:
    """Landmarks and annulus numbers as they are now in the scene.

    Attributes:
        fiducialNode, planeNode: the MRML nodes (planeNode None if the plane could not be made).
        names: K control-point labels. positionsLps: (K, 3) world LPS mm. confidence: (K,) detection confidence
            per label (None where unknown).
        measurements: ``geometry.annulus_measurements`` of RCC, LCC, NCC; implantViews: ``geometry.implant_views``.
        error: why there are no measurements (e.g. a hinge point was deleted), else "".
        detection: the ``detection.Detection`` when this result comes from a detection run.
        lowConfidence: labels whose confidence is below ``constants.LOW_CONFIDENCE`` (to be reviewed).
        verdict, qualitySummary: the detection's quality control ("ok" / "review" / "failed", and why); empty when
            the points were not detected here.
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


def _folder_signature(folder: Path | None) -> tuple:
    """Names, sizes and modification times of a model folder's files: changes when the model is retrained there."""
    from .inference import bundled_model_dir, find_model_dir

    folder = find_model_dir(bundled_model_dir() if folder is None else folder)
    return tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file()))


class LandmarkLogic:
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

    # --------------------------------------------------------------------------------------------- detection

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

    def detect(self, volumeNode, modelFolder: str = BUNDLED, device: str = "auto", progress: Progress | None = None,
               seedNode=None):
        """Run the ensemble on a volume node. Returns ``detection.Detection`` (positions in world LPS mm).

        progress: optional callback(fraction in [0, 1], message).
        seedNode: optional point list whose first defined point lies roughly on the aortic root; the network grid is
            centred there instead of where the model's localizer (or the image centre) puts it.
        """
        from .detection import detect

        image = mrml.volume_node_to_sitk(volumeNode)
        seed = mrml.first_defined_point_lps(seedNode) if seedNode is not None else None
        if progress:
            progress(0.0, "loading the model")
        ensemble = self.loadEnsemble(modelFolder, device)
        return detect(image, ensemble, progress=progress, seed_lps=seed)

    def process(self, volumeNode, modelFolder: str = BUNDLED, device: str = "auto", fiducialNode=None,
                planeNode=None, reorientViews: bool = True, progress: Progress | None = None,
                seedNode=None) -> AnnulusResult:
        """Detect the hinge points, write them to ``fiducialNode`` (created if None), make the plane, move the views.

        Re-running with the same ``fiducialNode`` replaces its points; the detected positions are stored on the
        node for :meth:`restoreDetectedPositions`. ``seedNode``: see :meth:`detect`. The result's ``verdict`` and
        ``qualitySummary`` carry the quality control (a "failed" detection still places its points, flagged).
        """
        detection = self.detect(volumeNode, modelFolder, device, progress, seedNode)
        result = self.showLandmarks(detection.names, detection.positions_lps, detection.confidence, fiducialNode,
                                    planeNode, reorientViews, nodeName=f"{volumeNode.GetName()} hinge points")
        result.detection = detection
        result.verdict = detection.verdict
        result.qualitySummary = detection.quality.summary() if detection.quality is not None else ""
        return result

    # --------------------------------------------------------------------------------------------- annulus

    def showLandmarks(self, names, positionsLps, confidence=None, fiducialNode=None, planeNode=None,
                      reorientViews: bool = True, nodeName: str = "Hinge points") -> AnnulusResult:
        """Put landmarks (K, 3 world LPS mm) into the scene as if detected, then update plane, views, numbers.

        fiducialNode: point list to overwrite (None: a new one called ``nodeName``).
        """
        fiducialNode = mrml.set_fiducials(self.scene, list(names), positionsLps, confidence, node=fiducialNode,
                                          node_name=nodeName)
        return self.updateAnnulus(fiducialNode, planeNode, reorientViews)

    def updateAnnulus(self, fiducialNode, planeNode=None, reorientViews: bool = True) -> AnnulusResult:
        """Recompute the plane node, the slice views and the measurements from the current control points.

        planeNode: None uses the plane linked to ``fiducialNode`` (or creates one). A missing or degenerate hinge
        point does not raise: the result carries the error message instead.
        """
        names, points = mrml.get_fiducials_lps(fiducialNode)
        record = mrml.detected_record(fiducialNode)
        byName = dict(zip(record["names"], record["confidence"], strict=True)) if record else {}
        confidence = [byName.get(name) for name in names]
        low = [n for n, c in zip(names, confidence, strict=True) if c is not None and c < LOW_CONFIDENCE]
        result = AnnulusResult(fiducialNode, None, names, points, confidence, lowConfidence=low)
        planeNode = planeNode if planeNode is not None else mrml.linked_plane(fiducialNode)
        try:
            hinges = geometry.select_points(names, points)
            plane = geometry.annulus_plane(hinges)
            result.measurements = geometry.annulus_measurements(hinges)
            result.implantViews = geometry.implant_views(hinges)
        except InputError as error:
            result.error = str(error)
            result.planeNode = planeNode
            return result
        towardRcc, _ = geometry.plane_axes(plane, hinges[0])
        size = 1.5 * result.measurements["circumcircle_diameter_mm"]
        result.planeNode = mrml.set_plane_node(self.scene, plane, towardRcc, size_mm=size, node=planeNode,
                                               node_name=f"{fiducialNode.GetName()} annulus plane")
        mrml.link_plane(fiducialNode, result.planeNode)
        if reorientViews:
            mrml.reorient_slice_views(self.scene, plane, hinges[0])
        return result

    def saveResults(self, fiducialNode, folder, force: bool = False) -> list[Path]:
        """Write the point list and its annulus numbers into a new folder, all or nothing.

        Files: ``<name>.mrk.json`` (Slicer markups, LPS), ``measurements.json`` (positions in world LPS mm, confidence,
        measurements, C-arm views, or why there are none) and ``measurements.csv`` (one quantity per row).

        Returns:
            The written files.
        """
        import csv
        import json

        from .io import write_markups
        from .outputs import atomic_output_dir

        result = self.updateAnnulus(fiducialNode, reorientViews=False)
        name = "".join(c if c.isalnum() or c in "-_" else "_" for c in fiducialNode.GetName()) or "points"
        record = {
            "coordinate_system": "LPS", "units": "mm",
            "landmarks": {n: {"position_lps": [round(float(v), 4) for v in p], "confidence": c}
                          for n, p, c in zip(result.names, result.positionsLps, result.confidence, strict=True)},
            "measurements": result.measurements, "implant_views": result.implantViews, "error": result.error,
        }  # fmt: skip
        rows = [(f"{n}_{axis}_lps_mm", f"{v:.3f}") for n, p in zip(result.names, result.positionsLps, strict=True)
                for axis, v in zip("xyz", p, strict=True)]
        rows += [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in (result.measurements or {}).items()]
        with atomic_output_dir(folder, force) as tmp:
            write_markups(tmp / f"{name}.mrk.json", result.names, result.positionsLps)
            (tmp / "measurements.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
            with (tmp / "measurements.csv").open("w", newline="", encoding="utf-8") as handle:
                csv.writer(handle).writerows([("quantity", "value"), *rows])
        return [Path(folder) / f for f in (f"{name}.mrk.json", "measurements.json", "measurements.csv")]

    @staticmethod
    def exportCaseForTraining(volumeNode, fiducialNode, manifestPath) -> bool:
        """Write the volume's file and the point list's RCC/LCC/NCC (world LPS mm) as a row of a training manifest.

        The analyst's corrections then feed the next ``aortic-root train`` (data contract: README). A row of the same
        case is replaced. Returns True if a row was replaced.

        Raises:
            InputError: the volume was not loaded from or saved to a file, or a hinge point is missing or cleared.
        """
        from .io import Case, add_manifest_case, case_id

        storage = volumeNode.GetStorageNode() if volumeNode is not None else None
        path = storage.GetFileName() if storage is not None else None
        if not path:
            raise InputError("export: the volume has no file; save it first (the manifest refers to the image file)")
        names, points = mrml.get_fiducials_lps(fiducialNode)
        hinges = geometry.select_points(names, points)
        return add_manifest_case(manifestPath, Case(case_id(path), Path(path), hinges), HINGE_NAMES)

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

    # --------------------------------------------------------------------------------------------- live update

    def startLiveUpdate(self, fiducialNode, reorientViews: bool = True, callback=None) -> None:
        """Keep the plane, views and measurements following the points when the analyst moves them.

        The plane and the numbers follow every step of a drag; the views turn when the drag ends (turning the view
        a point is being dragged in would pull the point away from the mouse), and only when a position changed:
        selecting, hiding, relabelling or clicking a point leaves the analyst's views where they are. Scripted moves
        update everything. A cleared (undefined) point counts as missing: no plane, measurements unavailable.
        callback: optional function(AnnulusResult) called after each update (the Widget refreshes its tables).
        """
        self.stopLiveUpdate(fiducialNode)

        def onPointsMoved(node, dragging, moved):
            result = self.updateAnnulus(node, reorientViews=reorientViews and moved and not dragging)
            if callback is not None:
                callback(result)

        self._observers[fiducialNode.GetID()] = mrml.ControlPointObserver(fiducialNode, onPointsMoved)

    def undoLastMove(self, fiducialNode) -> bool:
        """Undo the last move of a point (a whole drag, or one scripted move) while live update follows the node.

        Returns False when there is nothing to undo. Plane, views and numbers follow as for any move.
        """
        observer = self._observers.get(fiducialNode.GetID())
        return observer.undo() if observer is not None else False

    def restorePoint(self, fiducialNode, label: str) -> None:
        """Move one point back to its detected position (the others stay as corrected)."""
        record = mrml.detected_record(fiducialNode)
        names, _, _ = mrml.get_control_points_lps(fiducialNode)
        if record is None or label not in record["names"] or label not in names:
            raise InputError(f"'{fiducialNode.GetName()}': no detected position of {label} to restore")
        point = record["positions_lps"][record["names"].index(label)]
        fiducialNode.SetNthControlPointPositionWorld(names.index(label), *frames.lps_to_ras(point))

    def jumpToPoint(self, fiducialNode, label: str) -> None:
        """Centre the slice views on one point, keeping their orientation and zoom."""
        names, points = mrml.get_fiducials_lps(fiducialNode)
        if label not in names:
            raise InputError(f"'{fiducialNode.GetName()}': {label} has no position")
        for node in mrml.get_slice_nodes(self.scene).values():
            node.JumpSliceByCentering(*frames.lps_to_ras(points[names.index(label)]))

    def stopLiveUpdate(self, fiducialNode=None) -> None:
        """Stop following ``fiducialNode`` (None: all nodes)."""
        keys = list(self._observers) if fiducialNode is None else [fiducialNode.GetID()]
        for key in keys:
            observer = self._observers.pop(key, None)
            if observer is not None:
                observer.remove()
