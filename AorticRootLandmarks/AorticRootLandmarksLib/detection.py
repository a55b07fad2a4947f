"""Detect the landmarks of one CT: place the grid on the root, run the ensemble, decode the peaks, check the result.

The pipeline of ``aortic-root detect`` and the Slicer module::

    where is the root?   seed point | localizer (localize.locate_root) | image centre
    network grid         grid.make_grid centred there, grid.resample_to_grid
                         (test-time augmentation: also on 4 grids shifted by 4 mm, see TTA_OFFSETS_MM)
    ensemble             inference.predict_maps, one map per landmark and fold
    peaks                inference.decode_peaks on the mean map, and per fold; averaged over the shifted grids
    second stage         refine.refine: each landmark on a full-resolution patch (when the model has a refiner)
    quality control      qc.assess: confidence per point, verdict per case

Frames: maps are (F, K, X, Y, Z) on the network grid; positions are world LPS mm.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from . import qc
from .errors import InputError
from .grid import NetworkGrid, image_center_lps, make_grid, resample_to_grid
from .inference import CONFIDENCE_TOLERANCE_VOXELS, Ensemble, Progress, combine_folds, fold_spread, predict_maps
from .localize import ROOT_NAME, RootLocation, locate_root
from .refine import Refinement, refine
from .typing import GridIndex, PointsLPS

#: The values of `detect`'s ``stages``: None = every stage the model has.
STAGES = (None, 1, 2)

#: Test-time augmentation of the first stage (world LPS mm): the network grid's centre moved by each offset; the
#: points found on the five grids are averaged (the first, unshifted grid is the one reported). The corners of a
#: tetrahedron, 4 mm (2.5 voxels) along each axis, so every axis and the sub-voxel phase of the grid vary. Chosen on
#: validation phantoms (88 CTs, 440 points: val-shift, val-edge, val-train, val-classic; docs/TRAINING_NOTES.md):
#: against the unshifted grid alone, the mean of the five grids' points took both stages' pooled median from 1.20 to
#: 1.14 mm, p95 from 8.51 to 6.37 mm and the points over 10 mm from 17 to 10 (better or equal on each set; the
#: coordinate-wise median of the five was worse than the mean), at five times the first stage's time.
TTA_OFFSETS_MM = np.array([[0, 0, 0], [4, 4, 4], [-4, -4, 4], [4, -4, -4], [-4, 4, -4]], dtype=np.float64)


@dataclass
class Detection:
    """Landmarks found in one CT.

    Attributes:
        names: K landmark names.
        positions_lps: (K, 3) world LPS mm: the final positions (refined where the second stage ran and succeeded).
        grid_indices: (K, 3) sub-voxel network-grid index (x, y, z) of ``positions_lps``.
        scores: (K,) ensemble-mean map value at the peak, on the unshifted grid.
        confidence: (K,) in [0, 1]: the quality control's confidence per point (``quality``).
        fold_agreement: (K,) in [0, 1]: exp(-rms^2 / 2 (2 voxels)^2) of the fold peaks' distance to the ensemble
            peak (1 when all folds agree or with one fold); one of the inputs of ``confidence``.
        grid: the network grid centred on the root location (the unshifted one with test-time augmentation).
        device: where the networks ran.
        seconds: wall time of `detect`, reading excluded.
        fold_positions_lps: (F, K, 3) each first-stage fold model's peak, world LPS mm (averaged over the grids).
        location: how the grid centre was chosen (seed point, localizer, image centre).
        quality: the quality-control report (verdict per case, reasons).
        stage1_positions_lps: (K, 3) world LPS mm, the first stage's positions (equal to ``positions_lps`` when
            only the first stage ran).
        refinement: the second stage's result per point (status, shift); None when it did not run.
        first_stage_grids: how many network grids the first stage ran on (1, or 5 with test-time augmentation).
    """

    names: list[str]
    positions_lps: PointsLPS
    grid_indices: GridIndex
    scores: np.ndarray
    confidence: np.ndarray
    fold_agreement: np.ndarray
    grid: NetworkGrid
    device: str
    seconds: float
    model: dict = field(default_factory=dict)
    fold_positions_lps: np.ndarray | None = None
    location: RootLocation | None = None
    quality: qc.QualityReport | None = None
    stage1_positions_lps: PointsLPS | None = None
    refinement: Refinement | None = None
    first_stage_grids: int = 1

    @property
    def stages(self) -> int:
        """1 or 2: the stages that ran."""
        return 1 if self.refinement is None else 2

    @property
    def verdict(self) -> str:
        """"ok", "review" or "failed" (quality control), "ok" when no check ran."""
        return self.quality.verdict if self.quality is not None else "ok"

    def to_dict(self) -> dict:
        """JSON-serialisable form, as written by ``aortic-root detect``."""
        landmarks = {
            name: {
                "position_lps": [round(float(v), 4) for v in self.positions_lps[k]],
                "grid_index": [round(float(v), 4) for v in self.grid_indices[k]],
                "score": float(self.scores[k]),
                "confidence": round(float(self.confidence[k]), 4),
                "fold_agreement": round(float(self.fold_agreement[k]), 4),
            }
            for k, name in enumerate(self.names)
        }
        if self.refinement is not None:
            for name, point in zip(self.names, self.refinement.points, strict=True):
                landmarks[name]["refinement"] = point.to_dict()
        record = {
            "coordinate_system": "LPS",
            "units": "mm",
            "stages": self.stages,
            "first_stage_grids": self.first_stage_grids,
            "landmarks": landmarks,
            "grid": self.grid.to_dict(),
            "device": self.device,
            "seconds": round(self.seconds, 3),
            "model": self.model,
        }
        if self.location is not None:
            record["root_location"] = self.location.to_dict()
        if self.refinement is not None:
            record["refinement"] = self.refinement.to_dict()
        if self.quality is not None:
            record["quality"] = self.quality.to_dict()
        return record


def fold_confidence(fold_peaks: np.ndarray, ensemble_peaks: np.ndarray) -> np.ndarray:
    """(F, K, 3) fold peaks and (K, 3) ensemble peaks, grid voxels -> (K,) confidence exp(-rms^2 / (2 tol^2))."""
    return np.exp(-0.5 * (fold_spread(ensemble_peaks, fold_peaks) / CONFIDENCE_TOLERANCE_VOXELS) ** 2)


def place_grid(image: sitk.Image, ensemble: Ensemble, seed_lps: PointsLPS | None = None) -> RootLocation:
    """Where the network grid goes: the user's seed point, else the model's localizer, else the image centre."""
    if seed_lps is not None:
        return RootLocation(np.asarray(seed_lps, dtype=np.float64).reshape(3), "seed point")
    if ensemble.localizer is not None:
        return locate_root(image, ensemble.localizer)
    return RootLocation(image_center_lps(image), "image centre")


@dataclass(frozen=True)
class _FirstStage:
    """The first stage on one network grid: the grid, the fold-mean map (K, X, Y, Z; None when not kept), the ensemble
    peaks (K, 3 grid index), their map values (K,), and the ensemble and fold peaks in world LPS mm (K, 3) and
    (F, K, 3)."""

    grid: NetworkGrid
    mean_map: np.ndarray | None
    indices: GridIndex
    scores: np.ndarray
    points_lps: PointsLPS
    fold_points_lps: np.ndarray


def _first_stage(
    image: sitk.Image, ensemble: Ensemble, centre_lps: PointsLPS, progress: Progress | None, keep_map: bool
) -> _FirstStage:
    """Resample the CT onto the network grid centred on `centre_lps` (world LPS mm), run the folds, decode (and keep
    the fold-mean map if `keep_map`)."""
    grid = make_grid(image, ensemble.grid_spec, centre_lps)
    maps = predict_maps(ensemble, resample_to_grid(image, grid, ensemble.grid_spec.window), progress)
    indices, scores, fold_peaks = combine_folds(maps, ensemble.decoding, ensemble.ensembling)
    return _FirstStage(grid, maps.mean(axis=0) if keep_map else None, indices, scores, grid.index_to_world(indices),
                       grid.index_to_world(fold_peaks))  # fmt: skip


def _within(progress: Progress | None, start: float, end: float) -> Progress | None:
    """`progress` with its fractions mapped onto [start, end]."""
    if progress is None:
        return None
    return lambda fraction, message: progress(start + (end - start) * fraction, message)


def detect(
    image: sitk.Image,
    ensemble: Ensemble,
    progress: Progress | None = None,
    seed_lps: PointsLPS | None = None,
    stages: int | None = None,
    tta: bool = True,
) -> Detection:
    """Detect the landmarks of one CT.

    Args:
        image: 3D CT in HU with its LPS geometry (from `io.read_image` or a Slicer volume node).
        ensemble: from `inference.load_ensemble` (with its localizer and refiner, if the model has them).
        progress: optional callback(fraction in [0, 1], message), e.g. to keep a UI responsive.
        seed_lps: (3,) world LPS mm, a point roughly on the aortic root (a click): the grid is centred there and the
            localizer is not used.
        stages: None: every stage the model has (the second when it has a refiner); 1: the first stage only;
            2: both (the model must have a refiner).
        tta: test-time augmentation: run the first stage on the grids of :data:`TTA_OFFSETS_MM` and average their
            points (about five times the first stage's time); False: the unshifted grid only.

    Returns:
        The Detection, positions in world LPS mm, with its quality-control verdict.

    Raises:
        InputError: `stages` is not None, 1 or 2, or is 2 for a model without a second stage.

    Example:
        >>> ensemble = load_ensemble()                     # bundled model
        >>> detection = detect(read_image("ct.nii.gz"), ensemble)
        >>> dict(zip(detection.names, detection.positions_lps.round(1).tolist())), detection.verdict
    """
    second = second_stage(ensemble, stages)
    start = time.perf_counter()
    if progress:
        progress(0.0, "finding the aortic root" if ensemble.localizer is not None else "resampling")
    location = place_grid(image, ensemble, seed_lps)
    offsets = TTA_OFFSETS_MM if tta else TTA_OFFSETS_MM[:1]
    runs = [_first_stage(image, ensemble, location.center_lps + offset,
                         _within(progress, 0.9 * i / len(offsets), 0.9 * (i + 1) / len(offsets)), keep_map=i == 0)
            for i, offset in enumerate(offsets)]  # fmt: skip
    if progress:
        progress(0.9, "refining on full-resolution patches" if second else "decoding peaks and checking them")
    base, grid = runs[0], runs[0].grid  # the unshifted grid: its map gives the peak contrast
    stage1 = np.mean([run.points_lps for run in runs], axis=0)
    fold_positions = np.mean([run.fold_points_lps for run in runs], axis=0)
    members = np.concatenate([run.fold_points_lps for run in runs])  # (grids x folds, K, 3): QC's disagreement
    refinement = refine(image, ensemble.names, stage1, ensemble.refiner) if second else None
    positions = stage1 if refinement is None else refinement.positions_lps
    boundary = qc.boundary_score(image, positions)
    boundary[[name == ROOT_NAME for name in ensemble.names]] = 1.0  # a localizer's root centre lies inside the lumen
    report = qc.assess(
        ensemble.names, positions, members + (positions - stage1)[None],  # their spread about the final point
        qc.peak_contrast(base.mean_map, base.indices), boundary, qc.image_checks(image), location.found,
        location.reason,
        refined=None if refinement is None else refinement.points,
        notes=() if refinement is None else refinement.notes(),
        settings=(ensemble if refinement is None else ensemble.refiner).qc_settings,  # calibrated per model
    )
    if progress:
        progress(1.0, "done")
    return Detection(
        names=ensemble.names,
        positions_lps=positions,
        grid_indices=grid.world_to_index(positions),
        scores=base.scores,
        confidence=np.asarray(report.confidence, dtype=np.float64),
        fold_agreement=fold_confidence(grid.world_to_index(fold_positions), grid.world_to_index(stage1)),
        grid=grid,
        device=str(ensemble.device),
        seconds=time.perf_counter() - start,
        model=_model_summary(ensemble, second),
        fold_positions_lps=fold_positions,
        location=location,
        quality=report,
        stage1_positions_lps=stage1,
        refinement=refinement,
        first_stage_grids=len(runs),
    )


def second_stage(ensemble: Ensemble, stages: int | None) -> bool:
    """Whether `detect` runs the second stage; refuses a `stages` value it cannot honour."""
    if stages not in STAGES:
        raise InputError(f"stages = {stages!r}: use 1 (first stage only), 2 (both) or None (all the model has)")
    if stages == 2 and ensemble.refiner is None:
        name = ensemble.meta.get("name") or "the model"
        raise InputError(f"{name}: has no second stage (no refine/ folder); detect with stages 1")
    return ensemble.refiner is not None and stages != 1


def _model_summary(ensemble: Ensemble, second: bool) -> dict:
    """The model's name and fold count as written in the detection JSON; with the refiner's when it ran."""
    summary = {"name": ensemble.meta.get("name", ""), "folds": len(ensemble.networks)}
    if second:
        meta = ensemble.refiner.meta
        architecture = meta.get("network", {}).get("architecture", "shared")
        summary["refiner"] = {"name": meta.get("name", ""), "folds": len(ensemble.refiner.networks),
                              "architecture": architecture}  # fmt: skip
    return summary
