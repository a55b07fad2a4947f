"""Training data: cached network-grid volumes, splits, and the dataset that serves them (augmented).

Frames: a `Sample` holds the volume on its network grid, (X, Y, Z) indexed [x, y, z], and landmarks as grid indices
(K, 3) (x, y, z). `LandmarkDataset` serves them, augmented by `training.augment` (which moves both with one affine map).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from AorticRootLandmarksLib.errors import InputError
from AorticRootLandmarksLib.grid import GridSpec, NetworkGrid, make_grid, resample_to_grid
from AorticRootLandmarksLib.io import Case, read_image

from .augment import AugmentOptions, augment_sample


@dataclass
class Sample:
    """One preprocessed case.

    Attributes:
        case: the manifest row.
        volume: (X, Y, Z) float16 in [0, 1] on the network grid.
        grid: the case's network grid.
        landmarks_index: (K, 3) grid index (x, y, z) of the true landmarks.
    """

    case: Case
    volume: np.ndarray
    grid: NetworkGrid
    landmarks_index: np.ndarray


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "aortic-root"


def check_cache_dir(cache_dir: Path | None = None) -> Path:
    """The preprocessed-volume cache folder, created if missing and checked writable; call once before preprocessing.

    Raises:
        InputError: naming the folder: it is a file, lies under a file, or cannot be created or written to.
    """
    folder = default_cache_dir() if cache_dir is None else Path(cache_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except FileExistsError:
        raise InputError(f"{folder}: the cache folder is a file") from None
    except NotADirectoryError:
        raise InputError(f"{folder}: the cache folder cannot be made, a file lies on its path") from None
    except OSError as err:
        raise InputError(f"{folder}: cannot write to the cache folder ({err.strerror or err})") from None
    return folder


def _cache_key(case: Case, spec: GridSpec, center_lps: np.ndarray | None) -> str:
    stat = case.image.stat()
    centre = None if center_lps is None else [round(float(v), 4) for v in center_lps]
    text = json.dumps([str(case.image), stat.st_mtime_ns, stat.st_size, spec.to_dict(), centre])
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def load_sample(
    case: Case, spec: GridSpec, cache_dir: Path | None = None, center_lps: np.ndarray | None = None
) -> Sample:
    """Read, resample and window one case, through an on-disk cache keyed by the image file, grid spec and centre.

    Args:
        case: the case (image path, landmarks in world LPS mm).
        spec: the network grid.
        cache_dir: the cache folder (default: ``default_cache_dir()``).
        center_lps: (3,) world LPS mm where the grid is centred; None = the image centre (the localizer's grid).
            The landmark model is trained on grids centred on the aortic root, as detection places them (localizer
            or seed point); augmentation then moves the root around inside the grid.

    Raises:
        InputError: a landmark lies outside the network grid (it could never be found there).
    """
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
    path = cache_dir / f"{case.case_id}-{_cache_key(case, spec, center_lps)}.npz"
    if path.is_file():
        with np.load(path) as data:
            volume, origin = data["volume"], data["origin"]
        grid = NetworkGrid(origin=origin, spacing=spec.spacing, size=spec.size)
    else:
        image = read_image(case.image)
        grid = make_grid(image, spec, center_lps)
        volume = resample_to_grid(image, grid, spec.window).astype(np.float16)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            np.savez(tmp, volume=volume, origin=grid.origin)
            tmp.replace(path)
        except OSError as err:
            if tmp.is_file():  # a part written before the disk filled up
                tmp.unlink()
            raise InputError(f"{cache_dir}: cannot write to the cache folder ({err.strerror or err})") from None
    inside = grid.contains(case.landmarks_lps)
    if not inside.all():
        raise InputError(f"{case.image}: landmark(s) {np.flatnonzero(~inside).tolist()} lie outside the network grid")
    return Sample(case, volume, grid, grid.world_to_index(case.landmarks_lps))


def split_cases(n: int, folds: int, test_fraction: float, val_fraction: float, seed: int) -> dict:
    """Held-out test split, then k folds (or one train/validation split) on the rest.

    Returns:
        {"test": [...], "folds": [{"train": [...], "val": [...]}, ...]} of case positions (ints).
    """
    order = np.random.default_rng(seed).permutation(n).tolist()
    n_test = int(round(n * test_fraction))
    test, rest = sorted(order[:n_test]), order[n_test:]
    if folds == 1:
        n_val = max(1, int(round(len(rest) * val_fraction)))
        splits = [(rest[n_val:], rest[:n_val])]
    else:
        parts = [rest[i::folds] for i in range(folds)]
        splits = [([j for p in parts[:i] + parts[i + 1 :] for j in p], parts[i]) for i in range(folds)]
    if any(not train or not val for train, val in splits):
        raise InputError(f"{n} cases are too few for {folds} fold(s) with a {test_fraction:.0%} test split")
    return {"test": test, "folds": [{"train": sorted(t), "val": sorted(v)} for t, v in splits]}


class LandmarkDataset(torch.utils.data.Dataset):
    """Samples as (volume (1, X, Y, Z) float32, landmarks (K, 3) float32 grid index) tensors, optionally augmented.

    Args:
        samples: preprocessed cases, all on grids of ``options.spacing`` when augmenting.
        options: augmentation (training/augment.py); None = the cached samples as they are.
        seed: base seed; item i of epoch e draws everything random from ``default_rng([seed, e, i])``, so an item
            is the same whenever it is asked for (the resume logic of train.py depends on it).
    """

    def __init__(self, samples, options: AugmentOptions | None = None, seed: int = 0):
        self.samples = list(samples)
        self.options = options
        self.seed, self.epoch = seed, 0
        spacings = {float(s.grid.spacing) for s in self.samples}
        if options is not None and spacings - {float(options.spacing)}:
            raise ValueError(f"samples on grids of {sorted(spacings)} mm, augmentation options for {options.spacing}")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        sample = self.samples[index]
        volume = torch.from_numpy(sample.volume.astype(np.float32))
        points = sample.landmarks_index
        if self.options is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            volume, points = augment_sample(volume, points, rng, self.options)
        return volume[None], torch.as_tensor(points, dtype=torch.float32)
