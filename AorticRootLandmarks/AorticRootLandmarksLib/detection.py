"""Detect the landmarks of one CT: place the grid on the root, run the ensemble, decode the peaks, check the result.

The pipeline of ``aortic-root detect`` and the Slicer module::

    where is the root?   seed point | localizer (localize.locate_root) | image centre
    network grid         grid.make_grid centred there, grid.resample_to_grid
    ensemble             inference.predict_maps, one map per landmark and fold
    peaks                inference.decode_peaks on the mean map, and per fold
    quality control      qc.assess: confidence per point, verdict per case

Frames: maps are (F, K, X, Y, Z) on the network grid; positions are world LPS mm.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from . import qc
from .grid import NetworkGrid, image_center_lps, make_grid, resample_to_grid
from .inference import CONFIDENCE_TOLERANCE_VOXELS, Ensemble, Progress, combine_folds, fold_spread, predict_maps
from .localize import ROOT_NAME, RootLocation, locate_root
from .typing import GridIndex, PointsLPS


@dataclass
class Detection:
    """Landmarks found in one CT.

    Attributes:
        names: K landmark names.
        positions_lps: (K, 3) world LPS mm.
        grid_indices: (K, 3) sub-voxel network-grid index (x, y, z).
        scores: (K,) ensemble-mean map value at the peak.
        confidence: (K,) in [0, 1]: the quality control's confidence per point (``quality``).
        fold_agreement: (K,) in [0, 1]: exp(-rms^2 / 2 (2 voxels)^2) of the fold peaks' distance to the ensemble
            peak (1 when all folds agree or with one fold); one of the inputs of ``confidence``.
        grid: the network grid used.
        device: where the networks ran.
        seconds: wall time of `detect`, reading excluded.
        fold_positions_lps: (F, K, 3) each fold model's peak, world LPS mm.
        location: how the grid centre was chosen (seed point, localizer, image centre).
        quality: the quality-control report (verdict per case, reasons).
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
        record = {
            "coordinate_system": "LPS",
            "units": "mm",
            "landmarks": landmarks,
            "grid": self.grid.to_dict(),
            "device": self.device,
            "seconds": round(self.seconds, 3),
            "model": self.model,
        }
        if self.location is not None:
            record["root_location"] = self.location.to_dict()
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


def detect(
    image: sitk.Image, ensemble: Ensemble, progress: Progress | None = None, seed_lps: PointsLPS | None = None
) -> Detection:
    """Detect the landmarks of one CT.

    Args:
        image: 3D CT in HU with its LPS geometry (from `io.read_image` or a Slicer volume node).
        ensemble: from `inference.load_ensemble` (with its localizer, if the model has one).
        progress: optional callback(fraction in [0, 1], message), e.g. to keep a UI responsive.
        seed_lps: (3,) world LPS mm, a point roughly on the aortic root (a click): the grid is centred there and the
            localizer is not used.

    Returns:
        The Detection, positions in world LPS mm, with its quality-control verdict.

    Example:
        >>> ensemble = load_ensemble()                     # bundled model
        >>> detection = detect(read_image("ct.nii.gz"), ensemble)
        >>> dict(zip(detection.names, detection.positions_lps.round(1).tolist())), detection.verdict
    """
    start = time.perf_counter()
    if progress:
        progress(0.0, "finding the aortic root" if ensemble.localizer is not None else "resampling")
    location = place_grid(image, ensemble, seed_lps)
    spec = ensemble.grid_spec
    grid = make_grid(image, spec, location.center_lps)
    volume = resample_to_grid(image, grid, spec.window)
    maps = predict_maps(ensemble, volume, progress)
    if progress:
        progress(0.9, "decoding peaks and checking them")
    mean_map = maps.mean(axis=0)
    indices, scores, fold_peaks = combine_folds(maps, ensemble.decoding, ensemble.ensembling)
    positions = grid.index_to_world(indices)
    fold_positions = grid.index_to_world(fold_peaks)
    boundary = qc.boundary_score(image, positions)
    boundary[[name == ROOT_NAME for name in ensemble.names]] = 1.0  # a localizer's root centre lies inside the lumen
    report = qc.assess(
        ensemble.names, positions, fold_positions, qc.peak_contrast(mean_map, indices),
        boundary, qc.image_checks(image), location.found, location.reason,
    )
    if progress:
        progress(1.0, "done")
    return Detection(
        names=ensemble.names,
        positions_lps=positions,
        grid_indices=indices,
        scores=scores,
        confidence=np.asarray(report.confidence, dtype=np.float64),
        fold_agreement=fold_confidence(fold_peaks, indices),
        grid=grid,
        device=str(ensemble.device),
        seconds=time.perf_counter() - start,
        model={"name": ensemble.meta.get("name", ""), "folds": len(ensemble.networks)},
        fold_positions_lps=fold_positions,
        location=location,
        quality=report,
    )
