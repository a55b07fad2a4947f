"""Training data of the second stage (``--stage refine``): out-of-fold first-stage points, regions, random patches.

Per case, once (cached on disk, like the first stage's volumes)::

    stage-1 run (--from RUN): split.json, model/fold<k>.pt (and its localizer)
    case in fold k's validation part -> detected by fold k's model alone, with the detection pipeline: an
                                        out-of-fold prediction, so the second stage sees the first stage's real errors
    per landmark: a region, a cube of the CT at the patch spacing centred on the predicted point, large enough for
                  every patch the training draws (rotation, scale, disturbance): no padding ever enters a patch

Per training item (:class:`PatchDataset`): a random rotation and scale about the region centre (augment.py's), a patch
centre shifted by a uniform offset in [-p_d, p_d] per axis (the paper's patch disturbance: the patch is cut at a
random place in a (p_s + 2 p_d)^3 cube around the point, so the refiner cannot learn to answer "the centre"), one
trilinear resampling, then the first stage's intensity augmentation. Validation: the patch centred exactly on the
out-of-fold point, as detection cuts it (refine.py).

Frames: a region and a patch are isotropic LPS-aligned grids (`grid.NetworkGrid`) of the patch spacing, arrays indexed
[x, y, z]; landmarks are region or patch indices (x, y, z); positions world LPS mm.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from AorticRootLandmarksLib.detection import detect
from AorticRootLandmarksLib.errors import InputError
from AorticRootLandmarksLib.grid import GridSpec, NetworkGrid
from AorticRootLandmarksLib.inference import Ensemble, decode_peaks, find_model_dir, load_ensemble, predict_patch_maps
from AorticRootLandmarksLib.io import Case, read_image
from AorticRootLandmarksLib.outputs import replacing_file
from AorticRootLandmarksLib.progress import progress_bar
from AorticRootLandmarksLib.refine import extract_patch, patch_grid

from .augment import (
    PARTS,
    Affine,
    AugmentOptions,
    augment_intensity,
    random_rotation_scale,
    transform_points,
    warp_volume,
)
from .config import TrainConfig
from .losses import output_activation

#: The out-of-fold first-stage points of a second-stage run, written into its folder (world LPS mm, errors mm).
STAGE1_FILE = "stage1_predictions.json"


@dataclass
class PatchSample:
    """One landmark of one case, around its out-of-fold first-stage point.

    Attributes:
        case: the manifest row.
        landmark: index of the landmark in the run's landmarks (the refiner's output channel).
        region: (R, R, R) float16 windowed CT in [0, 1] on `grid`, centred on the first-stage point.
        grid: the region's grid (patch spacing; index (R - 1) / 2 is the first-stage point).
        truth_index: (3,) region index (x, y, z) of the true landmark.
        stage1_lps: (3,) world LPS mm, the out-of-fold first-stage point.
    """

    case: Case
    landmark: int
    region: np.ndarray
    grid: NetworkGrid
    truth_index: np.ndarray
    stage1_lps: np.ndarray

    @property
    def stage1_error_mm(self) -> float:
        """Distance of the first-stage point from the truth, mm."""
        centre = (np.asarray(self.grid.size) - 1) / 2
        return float(np.linalg.norm(self.truth_index - centre) * self.grid.spacing)


def rotation_reach(rotation_deg: float) -> float:
    """The largest row sum of |R| over rotations R by at most `rotation_deg`: how far (per axis, in units of the
    box half-side) a rotated box reaches. A row of R has diagonal entry x >= cos(angle) and the rest of norm
    sqrt(1 - x^2), so its |row| sum is at most x + sqrt(2 (1 - x^2)), largest at x = cos(angle) up to 54.7 deg
    (where it reaches sqrt(3), the cube's diagonal)."""
    angle = math.radians(min(abs(rotation_deg), 180.0))
    if math.cos(angle) <= 1 / math.sqrt(3):
        return math.sqrt(3)
    return math.cos(angle) + math.sqrt(2) * math.sin(angle)


def region_spec(config: TrainConfig) -> GridSpec:
    """The region cut around each first-stage point: the patch plus a margin m on each side, (p_s + 2 m)^3 voxels.

    A patch voxel q reads the region at ``c + M^-1 (q - q_c + d)`` (c, q_c the region and patch centres, d the
    disturbance, M rotation @ scale). With ``|q - q_c| <= (p_s - 1) / 2`` and ``|d| <= p_d`` per axis, that stays
    inside the region when ``(R - 1) / 2 >= reach(rotation) / min(scale) * ((p_s - 1) / 2 + p_d)``.
    """
    size = max(int(s) for s in config.size)
    disturbance = config.disturbance_mm / config.spacing
    if config.augment:
        reach = rotation_reach(config.rotation_deg) / min(config.scale_range)
    else:
        reach = 1.0
    margin = max(0, math.ceil(reach * ((size - 1) / 2 + disturbance) - (size - 1) / 2 - 1e-9))
    return GridSpec(config.spacing, (size + 2 * margin,) * 3, tuple(config.window))


def stage1_split(run: str | Path, cases: list[Case], folds: int) -> dict:
    """The stage-1 run's split.json as positions in `cases` (the split of :func:`training.data.split_cases`).

    Raises:
        InputError: no split.json, other cases than the manifest's, or another number of folds.
    """
    path = Path(run) / "split.json"
    try:
        named = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot read the stage-1 run's split ({err})") from None
    position = {case.case_id: i for i, case in enumerate(cases)}
    listed = set(named.get("test", [])) | {c for fold in named.get("folds", []) for part in fold.values() for c in part}
    if listed != set(position):
        raise InputError(f"{path}: the stage-1 run split other cases than the manifest holds; give its manifest")
    if len(named["folds"]) != folds:
        raise InputError(f"{path}: the stage-1 run has {len(named['folds'])} folds, the config {folds}")
    return {
        "test": sorted(position[c] for c in named["test"]),
        "folds": [{part: sorted(position[c] for c in ids) for part, ids in fold.items()} for fold in named["folds"]],
    }


def out_of_fold_models(split: dict) -> dict[int, int]:
    """{case position: the fold whose model did not see it} for every case in a fold's validation part.

    Raises:
        InputError: a training case in no validation part (one train/validation split): it has no out-of-fold model.
    """
    fold_of = {i: k for k, fold in enumerate(split["folds"]) for i in fold["val"]}
    unseen = sorted({i for fold in split["folds"] for i in fold["train"]} - set(fold_of))
    if unseen:
        raise InputError(f"{len(unseen)} training case(s) of the stage-1 run are in no fold's validation part, so no "
                         "stage-1 model predicts them out of fold; train stage 1 with --folds 2 or more")  # fmt: skip
    return fold_of


def _cache_key(case: Case, model_dir: Path, fold: int, spec: GridSpec, landmarks: list[str]) -> str:
    image, weights = case.image.stat(), (model_dir / f"fold{fold}.pt").stat()
    model = hashlib.sha1((model_dir / "model.json").read_bytes()).hexdigest()
    text = json.dumps([str(case.image), image.st_mtime_ns, image.st_size, str(model_dir.resolve()), model, fold,
                       weights.st_mtime_ns, spec.to_dict(), landmarks])  # fmt: skip
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _fold_model(ensemble: Ensemble, fold: int) -> Ensemble:
    """Fold `fold` of a stage-1 ensemble alone, with its localizer, without a second stage."""
    return Ensemble([ensemble.networks[fold]], ensemble.meta, ensemble.device, ensemble.localizer)


def _predict_regions(case: Case, model: Ensemble, spec: GridSpec, landmarks: list[str]) -> tuple[np.ndarray, ...]:
    """(regions (K, R, R, R) float16, first-stage points (K, 3) world LPS mm) of one case."""
    image = read_image(case.image)
    detection = detect(image, model, stages=1, tta=False)  # the bundled refiner learned from one-grid points
    points = detection.positions_lps[[detection.names.index(name) for name in landmarks]]
    regions = np.stack([extract_patch(image, point, spec)[0] for point in points]).astype(np.float16)
    return regions, points


def case_samples(case: Case, model: Ensemble, fold: int, config: TrainConfig, cache_dir: Path) -> list[PatchSample]:
    """The :class:`PatchSample` of each landmark of one case, through the on-disk cache."""
    spec = region_spec(config)
    model_dir = find_model_dir(config.from_run)
    path = cache_dir / f"{case.case_id}-refine-{_cache_key(case, model_dir, fold, spec, config.landmarks)}.npz"
    if path.is_file():
        with np.load(path) as data:
            regions, points = data["regions"], data["points"]
    else:
        regions, points = _predict_regions(case, model, spec, list(config.landmarks))
        with replacing_file(path) as tmp:
            with tmp.open("wb") as handle:
                np.savez(handle, regions=regions, points=points)
    samples = []
    for k, point in enumerate(points):
        grid = patch_grid(point, spec)
        truth = grid.world_to_index(case.landmarks_lps[k])
        if np.all(np.isfinite(truth)):  # a landmark the manifest lacks is neither trained nor validated
            samples.append(PatchSample(case, k, regions[k], grid, truth, point))
    return samples


def load_patch_samples(config: TrainConfig, cases: list[Case], split: dict, cache_dir: Path, device) -> list:
    """Per case (in the order of `cases`) the list of its :class:`PatchSample` (one per landmark); test cases get
    an empty list (the test split is evaluated with the exported two-stage model, not with patches).

    Raises:
        InputError: a landmark the stage-1 model does not detect, or a case without an out-of-fold model.
    """
    ensemble = load_ensemble(config.from_run, str(device))
    missing = [name for name in config.landmarks if name not in ensemble.names]
    if missing:
        raise InputError(f"{config.from_run}: the stage-1 model does not detect {', '.join(missing)}")
    fold_of = out_of_fold_models(split)
    samples: list[list[PatchSample]] = [[] for _ in cases]
    for i in progress_bar(sorted(fold_of), desc="stage-1 points, patches", unit="case"):
        model = _fold_model(ensemble, fold_of[i])
        samples[i] = case_samples(cases[i], model, fold_of[i], config, cache_dir)
    return samples


def write_stage1_predictions(path: Path, samples: list, config: TrainConfig) -> dict:
    """Write the out-of-fold first-stage points and their errors (:data:`STAGE1_FILE`); returns the summary."""
    flat = [s for group in samples for s in group]
    errors = np.array([s.stage1_error_mm for s in flat])
    record = {
        "coordinate_system": "LPS",
        "units": "mm",
        "summary": {"n": int(errors.size), "median_mm": float(np.median(errors)) if errors.size else None,
                    "p95_mm": float(np.percentile(errors, 95)) if errors.size else None},  # fmt: skip
        "cases": {
            group[0].case.case_id: {
                config.landmarks[s.landmark]: {"position_lps": [round(float(v), 4) for v in s.stage1_lps],
                                               "error_mm": round(s.stage1_error_mm, 3)}  # fmt: skip
                for s in group
            }
            for group in samples
            if group
        },
    }
    with replacing_file(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record["summary"]


def inside_patch(sample: PatchSample, size, border: float = 1.0) -> bool:
    """Whether the truth lies in the patch centred on the first-stage point, `border` voxels inside its faces."""
    offset = np.abs(sample.truth_index - (np.asarray(sample.grid.size) - 1) / 2)
    return bool(np.all(offset <= (np.asarray(size) - 1) / 2 - border))


def centre_patch(sample: PatchSample, size) -> tuple[np.ndarray, np.ndarray]:
    """(patch (X, Y, Z) float32, truth (3,) patch index): the patch centred on the first-stage point, as detection
    cuts it (the region and patch sizes have the same parity, so it is a crop)."""
    size = np.asarray(size, dtype=int)
    start = (np.asarray(sample.region.shape) - size) // 2
    crop = sample.region[start[0] : start[0] + size[0], start[1] : start[1] + size[1], start[2] : start[2] + size[2]]
    return crop.astype(np.float32), sample.truth_index - start


def random_patch(sample: PatchSample, size, disturbance: float, rng: np.random.Generator, options):
    """A randomly rotated, scaled and shifted patch of a sample's region (see the module docstring).

    Args:
        sample: the region and truth.
        size: (X, Y, Z) patch voxels.
        disturbance: p_d, largest shift of the patch centre per axis, patch voxels.
        rng: the spatial random stream.
        options: rotation and scale ranges (AugmentOptions), or None: no rotation or scaling, the shift only.

    Returns:
        (patch (X, Y, Z) float32 tensor, truth (3,) patch index).
    """
    region = torch.from_numpy(sample.region.astype(np.float32))
    centre = (np.asarray(region.shape, dtype=np.float64) - 1) / 2
    matrix = random_rotation_scale(rng, options) if options is not None else np.eye(3)
    shift = rng.uniform(-disturbance, disturbance, size=3)
    # patch index q = M (p - c) + c + t; the patch centre (size - 1) / 2 reads the region at c + M^-1 shift
    affine = Affine(matrix, centre, (np.asarray(size, dtype=np.float64) - 1) / 2 - centre - shift)
    return warp_volume(region, affine, size), transform_points(sample.truth_index[None], affine)[0]


class PatchDataset(torch.utils.data.Dataset):
    """Training patches as (patch (1, X, Y, Z) float32, truth (1, 3) float32 patch index, landmark int) tensors.

    Samples whose truth is not in the patch around their first-stage point (a gross first-stage miss that no patch
    shift finds) are left out of training (``left_out``); validation keeps them.

    Args:
        samples: the training samples.
        config: patch size and spacing, disturbance_mm, augment.
        options: augmentation (rotation, scale, intensity); None = the disturbance only.
        seed: base seed; item i of epoch e draws from ``default_rng([seed, e, i])`` (resumable, as LandmarkDataset).
    """

    def __init__(self, samples: list[PatchSample], config: TrainConfig, options: AugmentOptions | None, seed: int = 0):
        self.size = tuple(int(s) for s in config.size)
        self.samples = [s for s in samples if inside_patch(s, self.size)]
        self.left_out = len(samples) - len(self.samples)
        if not self.samples:
            raise InputError("no training patch holds its landmark: the stage-1 points are all far off")
        self.disturbance = config.disturbance_mm / config.spacing
        self.options = options
        self.seed, self.epoch = seed, 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        sample = self.samples[index]
        part = dict(zip(PARTS, np.random.default_rng([self.seed, self.epoch, index]).spawn(len(PARTS)), strict=True))
        patch, truth = random_patch(sample, self.size, self.disturbance, part["spatial"], self.options)
        if self.options is not None:
            patch = augment_intensity(patch, part, self.options)
        return patch[None], torch.as_tensor(truth[None], dtype=torch.float32), sample.landmark


def validation_errors(network, samples: list[PatchSample], config: TrainConfig, device) -> np.ndarray:
    """(N,) errors in mm of the refiner on the patches centred on the first-stage points (the inference code path)."""
    size = tuple(int(s) for s in config.size)
    model = Ensemble([network.eval()], {"activation": output_activation(config.loss)}, device)
    errors = []
    for start in range(0, len(samples), 16):
        batch = samples[start : start + 16]
        cut = [centre_patch(s, size) for s in batch]
        maps = predict_patch_maps(model, np.stack([patch for patch, _ in cut]), [s.landmark for s in batch])[0]
        peaks = decode_peaks(maps, config.decoding)[0]
        errors.extend(np.linalg.norm(peaks - np.stack([t for _, t in cut]), axis=1) * config.spacing)
    return np.asarray(errors)
