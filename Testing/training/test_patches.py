"""training.patches: the region around a first-stage point, random patch disturbance, out-of-fold bookkeeping."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from AorticRootLandmarksLib.errors import InputError
from AorticRootLandmarksLib.grid import NetworkGrid
from AorticRootLandmarksLib.io import Case
from training.augment import AugmentOptions
from training.config import TrainConfig
from training.patches import (
    PatchDataset,
    PatchSample,
    centre_patch,
    out_of_fold_models,
    random_patch,
    region_spec,
    rotation_reach,
    stage1_split,
)

PATCH = [16, 16, 16]


def config(**changes) -> TrainConfig:
    settings = {"stage": "refine", "from_run": "unused", "spacing": 0.5, "size": PATCH, "disturbance_mm": 2.0,
                "rotation_deg": 15.0, "scale_range": [0.9, 1.1]}  # fmt: skip
    return TrainConfig(**{**settings, **changes})


def sample(region: np.ndarray, truth_index, landmark: int = 0) -> PatchSample:
    size = region.shape
    grid = NetworkGrid(np.zeros(3), 0.5, size)
    case = Case("c0", None, np.zeros((1, 3)))
    return PatchSample(case, landmark, region.astype(np.float16), grid, np.asarray(truth_index, float),
                       grid.index_to_world((np.asarray(size) - 1) / 2))  # fmt: skip


@pytest.mark.parametrize("angle, reach", [
    (0.0, 1.0),
    (30.0, math.cos(math.radians(30)) + math.sqrt(2) * math.sin(math.radians(30))),  # 0.866 + 0.707 = 1.573
    (54.0, math.cos(math.radians(54)) + math.sqrt(2) * math.sin(math.radians(54))),  # just below the cube diagonal
    (90.0, math.sqrt(3)),
])  # fmt: skip
def test_rotation_reach_by_hand(angle, reach):
    assert rotation_reach(angle) == pytest.approx(reach)
    # and it bounds the row sums of |R| of random rotations by at most that angle
    rng = np.random.default_rng(0)
    from training.augment import rotation_matrix

    rotations = [rotation_matrix(rng.normal(size=3), rng.uniform(-angle, angle)) for _ in range(500)]
    assert max(np.abs(r).sum(axis=1).max() for r in rotations) <= reach + 1e-9


def test_region_spec_by_hand():
    # 16 voxels, p_d = 2 mm = 4 voxels of 0.5 mm; 15 deg: reach 0.9659 + 1.4142 * 0.2588 = 1.3319, / scale 0.9 = 1.4799
    # half-side needed 1.4799 * (7.5 + 4) = 17.02 voxels; the patch has 7.5, so m = ceil(9.52) = 10: 16 + 20 = 36
    spec = region_spec(config())
    assert spec.size == (36, 36, 36) and spec.spacing == 0.5 and spec.window == (-500.0, 1500.0)
    # without augmentation only the disturbance: m = ceil(7.5 + 4 - 7.5) = 4
    assert region_spec(config(augment=False)).size == (24, 24, 24)


def test_random_patches_never_reach_outside_their_region():
    cfg = config(rotation_deg=15.0)
    spec = region_spec(cfg)
    options = AugmentOptions.from_config(cfg)
    ones = sample(np.ones(spec.size), np.full(3, (spec.size[0] - 1) / 2))
    lowest = min(float(random_patch(ones, PATCH, 4.0, np.random.default_rng(i), options)[0].min()) for i in range(60))
    assert lowest > 1 - 1e-4  # no air (zero padding) in any patch
    # the region of a run without rotation or scaling (24^3) is too small for these patches: the test can fail
    small = region_spec(config(augment=False)).size
    ones = sample(np.ones(small), np.full(3, (small[0] - 1) / 2))
    lowest = min(float(random_patch(ones, PATCH, 4.0, np.random.default_rng(i), options)[0].min()) for i in range(60))
    assert lowest < 0.9


def test_disturbance_shifts_the_patch_uniformly_within_p_d():
    # no rotation: the truth's patch index is its region index minus the crop origin (c - 7.5) minus the shift
    region = np.zeros((24, 24, 24))
    truth = np.array([12.25, 10.0, 13.5])  # region index; the region centre is 11.5
    shifts = []
    for i in range(400):
        _, index = random_patch(sample(region, truth), PATCH, 4.0, np.random.default_rng(i), None)
        shifts.append(truth - (11.5 - 7.5) - index)
    shifts = np.array(shifts)
    assert np.all(np.abs(shifts) <= 4.0)
    assert np.abs(shifts).max() > 3.8 and np.abs(shifts.mean(axis=0)).max() < 0.4  # fills [-4, 4], centred
    np.testing.assert_allclose(shifts.std(axis=0), 8 / math.sqrt(12), rtol=0.15)  # uniform on [-4, 4]: sd 2.31


def test_the_truth_follows_the_content_through_rotation_scale_and_shift():
    cfg = config()
    spec = region_spec(cfg)
    truth = np.array([17.3, 18.8, 16.4])
    grids = np.indices(spec.size).astype(float)
    blob = np.exp(-sum((g - t) ** 2 for g, t in zip(grids, truth, strict=True)) / (2 * 1.5**2))
    options = AugmentOptions.from_config(cfg)
    for i in range(10):
        patch, index = random_patch(sample(blob, truth), PATCH, 4.0, np.random.default_rng(i), options)
        weights = (patch - 0.5 * patch.max()).clamp(min=0).numpy()  # the blob's upper half, symmetric about its centre
        centre = [(np.indices(PATCH)[a] * weights).sum() / weights.sum() for a in range(3)]
        np.testing.assert_allclose(centre, index, atol=0.1)  # patch voxels (trilinear resampling of a 1.5-voxel blob)


def test_the_validation_patch_is_the_centre_crop():
    region = np.random.default_rng(0).uniform(size=(24, 24, 24))
    patch, index = centre_patch(sample(region, [12.0, 11.0, 10.0]), PATCH)
    np.testing.assert_array_equal(patch, region[4:20, 4:20, 4:20].astype(np.float16).astype(np.float32))
    np.testing.assert_allclose(index, [8.0, 7.0, 6.0])


def test_dataset_leaves_out_far_misses_and_draws_the_same_item_twice():
    region = np.random.default_rng(1).uniform(size=(24, 24, 24))
    near, far = sample(region, [12.0, 11.0, 10.0], 1), sample(region, [23.0, 11.0, 10.0], 2)  # 11.5 voxels off
    dataset = PatchDataset([near, far], config(augment=False), AugmentOptions.from_config(config()), seed=5)
    assert len(dataset) == 1 and dataset.left_out == 1
    patch, truth, landmark = dataset[0]
    assert patch.shape == (1, 16, 16, 16) and truth.shape == (1, 3) and landmark == 1
    again = dataset[0]
    torch.testing.assert_close(patch, again[0]) and torch.testing.assert_close(truth, again[1])
    dataset.epoch = 1
    assert not torch.equal(dataset[0][1], truth)  # another epoch, another disturbance
    with pytest.raises(InputError, match="no training patch"):
        PatchDataset([far], config(), None)


def test_out_of_fold_bookkeeping():
    split = {"test": [4], "folds": [{"train": [2, 3], "val": [0, 1]}, {"train": [0, 1], "val": [2, 3]}]}
    assert out_of_fold_models(split) == {0: 0, 1: 0, 2: 1, 3: 1}
    one_fold = {"test": [], "folds": [{"train": [0, 1, 2], "val": [3]}]}
    with pytest.raises(InputError, match="no fold's validation part"):
        out_of_fold_models(one_fold)


def test_stage1_split_maps_case_ids_to_positions(tmp_path):
    import json

    cases = [Case(f"c{i}", None, np.zeros((1, 3))) for i in range(5)]
    named = {"test": ["c4"], "folds": [{"train": ["c2", "c3"], "val": ["c0", "c1"]},
                                       {"train": ["c0", "c1"], "val": ["c2", "c3"]}]}  # fmt: skip
    (tmp_path / "split.json").write_text(json.dumps(named), encoding="utf-8")
    split = stage1_split(tmp_path, cases[::-1], 2)  # positions in the given order: c4 is 0, c0 is 4
    assert split == {"test": [0], "folds": [{"train": [1, 2], "val": [3, 4]}, {"train": [3, 4], "val": [1, 2]}]}
    with pytest.raises(InputError, match="other cases"):
        stage1_split(tmp_path, cases[:4], 2)
    with pytest.raises(InputError, match="2 folds, the config 4"):
        stage1_split(tmp_path, cases, 4)
