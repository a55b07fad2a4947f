"""training.data: splits, the cache, and a dataset whose augmented items repeat exactly (see test_augment.py)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from helpers import make_image

from AorticRootLandmarksLib.errors import InputError
from AorticRootLandmarksLib.grid import GridSpec
from AorticRootLandmarksLib.io import Case, write_image
from training.augment import AugmentOptions
from training.config import TrainConfig
from training.data import LandmarkDataset, check_cache_dir, load_sample, split_cases


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
    options = AugmentOptions.from_config(TrainConfig(spacing=2.0, size=[16, 16, 16]))
    dataset = LandmarkDataset([sample, sample], options, seed=5)
    (v1, p1), (v2, p2) = dataset[0], dataset[0]
    assert v1.shape == (1, 16, 16, 16) and v1.dtype == torch.float32 and p1.shape == (3, 3)
    assert torch.equal(v1, v2) and torch.equal(p1, p2)
    assert not torch.equal(dataset[1][0], v1)  # another item, another augmentation of the same case
    dataset.epoch = 1
    v3, p3 = dataset[0]
    assert not torch.equal(p3, p1)  # a new epoch draws a new augmentation
    # what a resumed run does: a fresh dataset, set to the epoch, gives the same items in any order
    resumed = LandmarkDataset([sample, sample], options, seed=5)
    resumed.epoch = 1
    resumed[1]
    v4, p4 = resumed[0]
    assert torch.equal(v4, v3) and torch.equal(p4, p3)
    plain = LandmarkDataset([sample])[0]
    np.testing.assert_allclose(plain[1].numpy(), sample.landmarks_index, atol=1e-5)
    np.testing.assert_array_equal(plain[0][0].numpy(), sample.volume.astype(np.float32))


def test_dataset_refuses_options_for_another_grid(case, tmp_path):
    sample = load_sample(case, GridSpec(spacing=2.0, size=(16, 16, 16)), tmp_path / "cache")
    with pytest.raises(ValueError, match="grids of"):
        LandmarkDataset([sample], AugmentOptions.from_config())  # options for the 1.6 mm default grid


# --- the cache folder: checked once, before preprocessing, one line naming it ---

UNDER_A_FILE = "the cache folder cannot be made, a file lies on its path"


def test_check_cache_dir_creates_a_writable_folder(tmp_path):
    assert check_cache_dir(tmp_path / "a" / "cache") == tmp_path / "a" / "cache"
    assert (tmp_path / "a" / "cache").is_dir() and not any((tmp_path / "a" / "cache").iterdir())


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda t: (t / "f").write_text("x") and t / "f", "the cache folder is a file"),
        (lambda t: (t / "f").write_text("x") and t / "f" / "cache", UNDER_A_FILE),
        (lambda t: (t / "f").write_text("x") and t / "f" / "a" / "b", UNDER_A_FILE),
    ],
)
def test_check_cache_dir_refuses_a_path_through_a_file(tmp_path, make, message):
    folder = make(tmp_path)
    with pytest.raises(InputError, match=f"^{folder}: {message}$"):
        check_cache_dir(folder)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_check_cache_dir_refuses_a_read_only_folder(tmp_path):
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    with pytest.raises(InputError, match="ro: cannot write to the cache folder"):
        check_cache_dir(tmp_path / "ro")


def test_load_sample_refuses_a_cache_under_a_file(tmp_path):
    write_image(make_image(size=(20, 20, 20), spacing=(2.0, 2.0, 2.0), value=40), tmp_path / "ct.nii.gz")
    case = Case("ct", tmp_path / "ct.nii.gz", np.array([[29.0, -1.0, 49.0]] * 3))
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="f/cache: cannot write to the cache folder"):
        load_sample(case, GridSpec(spacing=3.2, size=(8, 8, 8)), tmp_path / "f" / "cache")
