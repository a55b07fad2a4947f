"""training.data: splits, cache, and augmentation that moves landmarks exactly with the volume."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from helpers import make_image

from AorticRootLandmarksLib.errors import InputError
from AorticRootLandmarksLib.grid import GridSpec
from AorticRootLandmarksLib.io import Case, write_image
from training.data import LandmarkDataset, load_sample, random_affine, split_cases, warp, warp_points


def test_split_cases_partitions():
    split = split_cases(20, folds=4, test_fraction=0.2, val_fraction=0.2, seed=0)
    assert len(split["test"]) == 4 and len(split["folds"]) == 4
    vals = [set(f["val"]) for f in split["folds"]]
    rest = set(range(20)) - set(split["test"])
    assert set().union(*vals) == rest and sum(len(v) for v in vals) == 16  # every non-test case validated once
    for fold in split["folds"]:
        assert set(fold["train"]) | set(fold["val"]) == rest and not set(fold["train"]) & set(fold["val"])
    assert split == split_cases(20, 4, 0.2, 0.2, 0)  # deterministic


def test_split_single_fold_and_too_few():
    split = split_cases(10, folds=1, test_fraction=0.2, val_fraction=0.25, seed=3)
    assert len(split["folds"]) == 1 and len(split["folds"][0]["val"]) == 2
    with pytest.raises(InputError, match="too few"):
        split_cases(3, folds=4, test_fraction=0.2, val_fraction=0.2, seed=0)


def blob_volume(size, centre, radius=1.5):
    grids = np.indices(size).astype(np.float32)
    d2 = sum((g - c) ** 2 for g, c in zip(grids, centre))
    return np.exp(-d2 / (2 * radius**2)).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_warp_moves_landmarks_with_the_volume(seed):
    size = (24, 20, 16)
    centre = np.array([13.3, 8.6, 7.2])
    volume = torch.from_numpy(blob_volume(size, centre))
    rotation, shift = random_affine(np.random.default_rng(seed), 15.0, 2.0)
    warped = warp(volume, rotation, shift).numpy()
    moved = warp_points(centre[None], rotation, shift, size)[0]
    weights = np.clip(warped - 0.05, 0, None)
    com = np.array([(g * weights).sum() / weights.sum() for g in np.indices(size)])
    np.testing.assert_allclose(com, moved, atol=0.1)  # same place, to a tenth of a voxel


def test_identity_warp_is_identity():
    volume = torch.rand(8, 9, 10)
    np.testing.assert_allclose(warp(volume, np.eye(3), np.zeros(3)).numpy(), volume.numpy(), atol=1e-5)


@pytest.fixture
def case(tmp_path):
    image = make_image(size=(30, 30, 30), spacing=(1.0, 1.0, 1.0), direction=(-1, 0, 0, 0, 1, 0, 0, 0, -1), value=100)
    write_image(image, tmp_path / "c.nii.gz")
    centre = np.array(image.TransformContinuousIndexToPhysicalPoint((14.5, 14.5, 14.5)))
    landmarks = centre + np.array([[2.0, 0, 0], [0, 3.0, 0], [0, 0, -4.0]])
    return Case("c", tmp_path / "c.nii.gz", landmarks, "2")


def test_load_sample_and_cache(case, tmp_path):
    spec = GridSpec(spacing=2.0, size=(16, 16, 16))
    sample = load_sample(case, spec, tmp_path / "cache")
    assert sample.volume.shape == (16, 16, 16) and sample.volume.dtype == np.float16
    np.testing.assert_allclose(sample.grid.index_to_world(sample.landmarks_index), case.landmarks_lps, atol=1e-9)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    cached = load_sample(case, spec, tmp_path / "cache")
    np.testing.assert_array_equal(cached.volume, sample.volume)
    np.testing.assert_allclose(cached.grid.origin, sample.grid.origin)


def test_landmark_outside_grid_is_refused(case, tmp_path):
    case.landmarks_lps[0] += 500.0
    with pytest.raises(InputError, match="outside the network grid"):
        load_sample(case, GridSpec(spacing=2.0, size=(16, 16, 16)), tmp_path / "cache")


def test_dataset_items_are_reproducible(case, tmp_path):
    sample = load_sample(case, GridSpec(spacing=2.0, size=(16, 16, 16)), tmp_path / "cache")
    dataset = LandmarkDataset([sample], augment=True, seed=5)
    (v1, p1), (v2, p2) = dataset[0], dataset[0]
    assert v1.shape == (1, 16, 16, 16) and p1.shape == (3, 3)
    torch.testing.assert_close(v1, v2)
    torch.testing.assert_close(p1, p2)
    dataset.epoch = 1
    assert not torch.equal(dataset[0][1], p1)  # a new epoch draws a new augmentation
    plain = LandmarkDataset([sample])[0][1]
    np.testing.assert_allclose(plain.numpy(), sample.landmarks_index, atol=1e-5)
