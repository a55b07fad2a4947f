"""Second stage: refine each landmark on a full-resolution patch of the CT centred on its first-stage position.

The first stage finds the landmarks on a 1.6 mm grid; its error is about one grid voxel. A refiner (a model folder
``refine/`` inside the exported model, loaded as ``Ensemble.refiner``) looks at a small cube of the original CT around
each first-stage point, by default 40^3 voxels of 0.5 mm (20 mm a side), and predicts that landmark's map inside it::

    first-stage point p0 (world LPS mm)
      -> patch grid centred on p0 (patch_grid), CT resampled onto it (extract_patch, air outside the image)
      -> refiner folds, the patch's own landmark only (inference.predict_patch_maps)
      -> peak (inference.combine_folds) -> patch index -> world LPS mm
      (optional, off by default: moved more than a quarter of the patch side? recentre there and refine once more)

What can go wrong is reported per point, never raised: a first-stage point outside the image is not refined
(``outside image``); a peak on the patch border means the landmark is not in the patch, and the first-stage point is
kept (``peak on patch border``); a patch partly outside the image is refined (air fills the rest) and its share
outside is reported. Quality control lowers the confidence of a point whose refinement failed (qc.report).

Recentring is off by default: on 320 validation points (phantom styles val-edge, train and classic; 34 points
where it changed anything) the first patch's peak was closer to the truth in 24, and recentring made the tail worse
(pooled p95 8.51 -> 8.82 mm, 36 -> 39 points over 5 mm; docs/TRAINING_NOTES.md).

Frames: a patch is a `grid.NetworkGrid` (isotropic, identity direction in LPS), so
``world_lps = patch.origin + patch.spacing * index`` with index (x, y, z); patch arrays are indexed [x, y, z].
Positions in and out are world LPS mm. torch is imported only inside `inference.predict_patch_maps`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from .grid import GridSpec, NetworkGrid, VoxelGrid, centred_grid, resample_patch
from .inference import Ensemble, combine_folds, fold_spread, predict_patch_maps
from .typing import PointsLPS

#: The refined position is used (one pass).
REFINED = "refined"
#: The first peak lay more than a quarter patch away; a second patch centred on it confirmed it (``recentre=True``).
RECENTRED = "refined after recentring"
#: The peak lies on the patch border: the landmark is not in the patch; the first-stage point is kept.
BORDER = "peak on patch border"
#: The first-stage point lies outside the image: not refined, kept.
OUTSIDE = "outside image"
#: The refiner does not know this landmark (e.g. a model whose refiner learned the hinge points only): kept.
NOT_REFINED = "not refined"
#: Every status a point can have; FAILED ones lower the point's confidence in quality control.
STATUSES = (REFINED, RECENTRED, BORDER, OUTSIDE, NOT_REFINED)
FAILED = (BORDER, OUTSIDE)
#: A peak closer than this (patch voxels) to a patch face is on the border.
BORDER_VOXELS = 1.0
#: Recentre and refine once more when the peak moved by more than this share of the patch side.
RECENTRE_FRACTION = 0.25
#: A patch with more than this share of its voxels outside the image is named in the quality report's notes.
OUTSIDE_NOTE_FRACTION = 0.25

_FAILURE_TEXT = {
    BORDER: "the refiner's peak lies on its patch border (the point may be off by half a patch or more)",
    OUTSIDE: "the first-stage point lies outside the image",
}


@dataclass(frozen=True)
class PointRefinement:
    """The second stage's result for one landmark.

    Attributes:
        name: landmark name.
        status: one of :data:`STATUSES`.
        position_lps: (3,) world LPS mm: refined, or the first-stage point when not refined.
        stage1_lps: (3,) world LPS mm, the first-stage point.
        passes: patches run (0, 1 or 2).
        patch_outside_fraction: share of the last patch's voxels outside the image (0 when no patch ran).
        fold_rms_mm: RMS distance of the refiner's fold peaks from its ensemble peak (None: one fold or no patch).
        score: the refiner's mean-map value at its peak (NaN when no patch ran).
    """

    name: str
    status: str
    position_lps: np.ndarray
    stage1_lps: np.ndarray
    passes: int = 0
    patch_outside_fraction: float = 0.0
    fold_rms_mm: float | None = None
    score: float = float("nan")

    @property
    def shift_mm(self) -> float:
        """Distance from the first-stage point to the final position, mm."""
        return float(np.linalg.norm(np.asarray(self.position_lps) - np.asarray(self.stage1_lps)))

    @property
    def failed(self) -> bool:
        return self.status in FAILED

    @property
    def failure(self) -> str:
        """Why the refinement failed, one plain phrase ("" when it did not)."""
        return _FAILURE_TEXT.get(self.status, "")

    def to_dict(self) -> dict:
        """JSON-serialisable (world LPS mm, 3 decimals)."""
        return {
            "status": self.status,
            "stage1_position_lps": [round(float(v), 4) for v in self.stage1_lps],
            "shift_mm": round(self.shift_mm, 3),
            "passes": int(self.passes),
            "patch_outside_fraction": round(float(self.patch_outside_fraction), 3),
            "fold_rms_mm": None if self.fold_rms_mm is None else round(float(self.fold_rms_mm), 3),
            "score": float(self.score) if np.isfinite(self.score) else None,
        }


@dataclass(frozen=True)
class Refinement:
    """The second stage's result for one CT.

    Attributes:
        points: one per landmark of the detection, in its order.
        patch: the refiner's patch (spacing mm, size voxels, window HU).
        seconds: wall time of the second stage.
    """

    points: tuple[PointRefinement, ...]
    patch: GridSpec
    seconds: float = 0.0

    @property
    def positions_lps(self) -> PointsLPS:
        """(K, 3) final positions, world LPS mm."""
        return np.stack([p.position_lps for p in self.points]).astype(np.float64)

    def notes(self) -> list[str]:
        """Things quality control should mention but that lower no confidence (patches partly outside the image)."""
        return [
            f"{p.name}: {p.patch_outside_fraction:.0%} of the refinement patch lies outside the image"
            for p in self.points
            if p.patch_outside_fraction > OUTSIDE_NOTE_FRACTION
        ]

    def to_dict(self) -> dict:
        return {"patch": self.patch.to_dict(), "seconds": round(self.seconds, 3),
                "statuses": {p.name: p.status for p in self.points}}  # fmt: skip


def patch_grid(center_lps: PointsLPS, spec: GridSpec) -> NetworkGrid:
    """The patch of `spec` (spacing mm, size voxels) centred on `center_lps` (world LPS mm): index (size - 1) / 2."""
    return centred_grid(center_lps, spec.spacing, spec.size)


def extract_patch(image: sitk.Image, center_lps: PointsLPS, spec: GridSpec) -> tuple[np.ndarray, NetworkGrid]:
    """Cut a refinement patch out of a CT.

    Args:
        image: 3D CT in HU, any origin, spacing and direction (LPS).
        center_lps: (3,) world LPS mm, the patch centre.
        spec: patch spacing (mm), size (voxels) and intensity window (HU, as the first stage's).

    Returns:
        ((X, Y, Z) float32 windowed patch in [0, 1] indexed [x, y, z], air outside the image; its grid).
    """
    grid = patch_grid(center_lps, spec)
    return resample_patch(image, grid, spec.window), grid


def outside_fraction(image: sitk.Image, grid: NetworkGrid) -> float:
    """Share of the grid's voxel centres that lie outside the image (beyond its outer voxel faces)."""
    axes = [np.arange(0, n, 2) for n in grid.size]  # every 2nd voxel: enough for a share
    index = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    return float(1.0 - VoxelGrid.from_image(image).contains(grid.index_to_world(index), margin=0.5).mean())


def on_border(index: np.ndarray, size: Sequence[int], border: float = BORDER_VOXELS) -> bool:
    """Whether a (sub-voxel) patch index (x, y, z) lies within `border` voxels of a patch face."""
    index = np.asarray(index, dtype=np.float64)
    return bool(np.any(index < border) or np.any(index > np.asarray(size) - 1 - border))


@dataclass(frozen=True)
class _Pass:
    """A batch of patches, one row each: world peak (B, 3), on the border (B,), fold RMS mm (B,; NaN with one fold),
    score (B,), share of the patch outside the image (B,)."""

    peaks_lps: np.ndarray
    border: np.ndarray
    fold_rms_mm: np.ndarray
    scores: np.ndarray
    outside: np.ndarray

    def updated(self, rows: np.ndarray, other: _Pass) -> _Pass:
        """This pass with `rows` replaced by the rows of `other` (a second pass of those patches)."""
        fields = {}
        for name in ("peaks_lps", "border", "fold_rms_mm", "scores", "outside"):
            values = getattr(self, name).copy()
            values[rows] = getattr(other, name)
            fields[name] = values
        return _Pass(**fields)


def _run_patches(image: sitk.Image, centres: np.ndarray, channels: Sequence[int], refiner: Ensemble) -> _Pass:
    """Cut a patch at each centre (world LPS mm), run the refiner for each patch's landmark channel, decode."""
    spec = refiner.grid_spec
    cut = [extract_patch(image, centre, spec) for centre in centres]
    maps = predict_patch_maps(refiner, np.stack([patch for patch, _ in cut]), channels)  # (F, B, X, Y, Z)
    indices, scores, fold_peaks = combine_folds(maps, refiner.decoding, refiner.ensembling)
    rms = fold_spread(indices, fold_peaks) * spec.spacing if len(refiner.networks) > 1 else np.full(len(cut), np.nan)
    return _Pass(
        peaks_lps=np.stack([grid.index_to_world(index) for (_, grid), index in zip(cut, indices, strict=True)]),
        border=np.array([on_border(index, spec.size) for index in indices], dtype=bool),
        fold_rms_mm=rms,
        scores=np.asarray(scores, dtype=np.float64),
        outside=np.array([outside_fraction(image, grid) for _, grid in cut]),
    )


def _refined_point(name: str, stage1_lps: np.ndarray, run: _Pass, row: int, passes: int) -> PointRefinement:
    """A refined point from row `row` of its last pass: the peak, or the first-stage point if it is on the border."""
    status = BORDER if run.border[row] else (RECENTRED if passes == 2 else REFINED)
    rms = None if np.isnan(run.fold_rms_mm[row]) else float(run.fold_rms_mm[row])
    final = stage1_lps if status == BORDER else run.peaks_lps[row]
    return PointRefinement(name, status, final, stage1_lps, passes, float(run.outside[row]), rms,
                           float(run.scores[row]))  # fmt: skip


def refine(
    image: sitk.Image, names: Sequence[str], positions_lps: PointsLPS, refiner: Ensemble, recentre: bool = False
) -> Refinement:
    """Refine first-stage landmarks on full-resolution patches.

    Args:
        image: 3D CT in HU with its LPS geometry.
        names: K landmark names of the first stage, in the order of `positions_lps`.
        positions_lps: (K, 3) first-stage positions, world LPS mm.
        refiner: the model's second stage (``Ensemble.refiner``); landmarks it does not know stay as they are.
        recentre: when a peak moved by more than :data:`RECENTRE_FRACTION` of the patch side, cut a second patch
            centred on it and take that one's peak (the first peak then lay near the first patch's edge). A second
            peak on the border fails the point (the first-stage point is kept).

    Returns:
        The Refinement: per point its status (:data:`STATUSES`), final and first-stage position (world LPS mm).
    """
    start = time.perf_counter()
    names = list(names)
    stage1 = np.asarray(positions_lps, dtype=np.float64).reshape(len(names), 3)
    spec = refiner.grid_spec
    inside = np.isfinite(stage1).all(axis=1)
    inside[inside] = VoxelGrid.from_image(image).contains(stage1[inside], margin=0.5)
    points = [PointRefinement(n, OUTSIDE if n in refiner.names else NOT_REFINED, stage1[k], stage1[k])
              for k, n in enumerate(names)]  # fmt: skip
    todo = [k for k, n in enumerate(names) if n in refiner.names and inside[k]]
    if todo:
        channels = [refiner.names.index(names[k]) for k in todo]
        run = _run_patches(image, stage1[todo], channels, refiner)
        passes = np.ones(len(todo), dtype=int)
        moved = np.linalg.norm(run.peaks_lps - stage1[todo], axis=1)
        again = np.flatnonzero(~run.border & (moved > RECENTRE_FRACTION * spec.spacing * min(spec.size)))
        if recentre and again.size:
            second = _run_patches(image, run.peaks_lps[again], [channels[i] for i in again], refiner)
            run, passes[again] = run.updated(again, second), 2
        for i, k in enumerate(todo):
            points[k] = _refined_point(names[k], stage1[k], run, i, int(passes[i]))
    return Refinement(tuple(points), spec, time.perf_counter() - start)
