"""Training data: cached network-grid volumes, splits, and augmentation that moves the landmarks along.

Frames: a `Sample` holds the volume on its network grid, (X, Y, Z) indexed [x, y, z], and landmarks as grid indices
(K, 3) (x, y, z). Augmentation resamples both with the same affine map, in grid-voxel units.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from AorticRootLandmarksLib.errors import InputError
from AorticRootLandmarksLib.grid import GridSpec, NetworkGrid, make_grid, resample_to_grid
from AorticRootLandmarksLib.io import Case, read_image


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


def _cache_key(case: Case, spec: GridSpec) -> str:
    stat = case.image.stat()
    text = json.dumps([str(case.image), stat.st_mtime_ns, stat.st_size, spec.to_dict()])
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def load_sample(case: Case, spec: GridSpec, cache_dir: Path | None = None) -> Sample:
    """Read, resample and window one case, through an on-disk cache keyed by the image file and the grid spec.

    Raises:
        InputError: a landmark lies outside the network grid (it could never be found there).
    """
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
    path = cache_dir / f"{case.case_id}-{_cache_key(case, spec)}.npz"
    if path.is_file():
        with np.load(path) as data:
            volume, origin = data["volume"], data["origin"]
        grid = NetworkGrid(origin=origin, spacing=spec.spacing, size=spec.size)
    else:
        image = read_image(case.image)
        grid = make_grid(image, spec)
        volume = resample_to_grid(image, grid, spec.window).astype(np.float16)
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, volume=volume, origin=grid.origin)
        tmp.replace(path)
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


def random_affine(rng: np.random.Generator, rotation_deg: float, translation_vox: float) -> tuple[np.ndarray, np.ndarray]:
    """A random rotation (about a random axis, angle uniform in +-rotation_deg) and translation (voxels)."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = math.radians(rng.uniform(-rotation_deg, rotation_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k
    return rotation, rng.uniform(-translation_vox, translation_vox, size=3)


def warp(volume: torch.Tensor, rotation: np.ndarray, shift: np.ndarray) -> torch.Tensor:
    """Resample (X, Y, Z) so that output voxel p shows input voxel R (p - c) + c + t (c = grid centre).

    Outside the input is 0 (air after windowing). Landmarks move by `warp_points` with the same R, t.
    """
    size = torch.tensor(volume.shape, dtype=torch.float32)
    centre = (size - 1) / 2
    axes = [torch.arange(n, dtype=torch.float32) for n in volume.shape]
    points = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)  # (X, Y, Z, 3) output index
    source = (points - centre) @ torch.as_tensor(rotation, dtype=torch.float32).T + centre + torch.as_tensor(shift).float()
    normalised = 2 * source / (size - 1) - 1
    # grid_sample reads the last grid axis as (W, H, D) = (z, y, x) for an input laid out (D, H, W) = (X, Y, Z).
    grid = normalised.flip(-1)[None]
    out = F.grid_sample(volume[None, None].float(), grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out[0, 0]


def warp_points(points_index: np.ndarray, rotation: np.ndarray, shift: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """(K, 3) input grid index -> output grid index under `warp` (the inverse map: p = R^T (q - c - t) + c)."""
    centre = (np.asarray(size, float) - 1) / 2
    return (np.asarray(points_index) - centre - shift) @ rotation + centre


class LandmarkDataset(torch.utils.data.Dataset):
    """Samples as (volume (1, X, Y, Z), landmarks (K, 3) grid index) tensors, optionally augmented.

    Args:
        samples: preprocessed cases.
        augment: apply random rotation/translation/intensity jitter.
        rotation_deg, translation_mm, intensity_jitter: augmentation ranges.
        seed: base seed; each item draws from (seed, epoch, index) so runs repeat exactly.
    """

    def __init__(self, samples, augment=False, rotation_deg=10.0, translation_mm=8.0, intensity_jitter=0.05, seed=0):
        self.samples = list(samples)
        self.augment = augment
        self.rotation_deg, self.translation_mm, self.intensity_jitter = rotation_deg, translation_mm, intensity_jitter
        self.seed, self.epoch = seed, 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        sample = self.samples[index]
        volume = torch.from_numpy(sample.volume.astype(np.float32))
        points = sample.landmarks_index
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            rotation, shift = random_affine(rng, self.rotation_deg, self.translation_mm / sample.grid.spacing)
            volume = warp(volume, rotation, shift)
            points = warp_points(points, rotation, shift, volume.shape)
            scale = 1 + rng.uniform(-self.intensity_jitter, self.intensity_jitter)
            offset = rng.uniform(-self.intensity_jitter, self.intensity_jitter)
            volume = (volume * scale + offset).clamp(0, 1)
        return volume[None], torch.as_tensor(points, dtype=torch.float32)
