"""training.distributed: one model trained by 2 processes (DDP, gloo on the CPU) ends where one process ends."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from AorticRootLandmarksLib.errors import InputError
from AorticRootLandmarksLib.io import Case, write_image, write_manifest
from training.config import TrainConfig
from training.distributed import ShardedBatches
from training.train import build_network, stream_seed, train


class _Items(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 5

    def __getitem__(self, index: int):
        return torch.tensor([index])


@pytest.mark.parametrize("world", [2, 3])
def test_the_shares_of_the_processes_make_up_the_single_process_minibatches(world):
    generator = torch.Generator()
    loader = torch.utils.data.DataLoader(_Items(), batch_size=2, shuffle=True, generator=generator)
    for seed in range(3):
        generator.manual_seed(seed)
        expected = [batch.ravel().tolist() for batch in loader]  # one process: [[a, b], [c, d], [e]]
        shares = []
        for rank in range(world):
            generator.manual_seed(seed)
            sharded = ShardedBatches(loader, rank, world)
            shares.append([(batch.ravel().tolist(), list(sharded.counts)) for batch in sharded])
        for step, minibatch in enumerate(expected):
            counts = shares[0][step][1]
            # the real items of each share, in rank order, are the minibatch; every share has the same length
            assert [i for rank in range(world) for i in shares[rank][step][0][: counts[rank]]] == minibatch
            assert len({len(shares[rank][step][0]) for rank in range(world)}) == 1


def _textured_cases(folder) -> list[Case]:
    """Four 24^3 noise images (a network's gradients are not degenerate on them, as on constant images)."""
    cases = []
    for i in range(4):
        image = sitk.GetImageFromArray(np.random.default_rng(i).normal(200, 300, (24, 24, 24)).astype(np.int16))
        image.SetSpacing((1.5, 1.5, 1.5))
        write_image(image, folder / f"c{i}.nii.gz")
        centre = np.array(image.TransformContinuousIndexToPhysicalPoint((11.5, 11.5, 11.5)))
        cases.append(Case(f"c{i}", folder / f"c{i}.nii.gz", centre + 2.0 * np.eye(3)))
    return cases


def _log(run) -> list[dict]:
    with (run / "fold0" / "log.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _weights(path) -> torch.Tensor:
    state = torch.load(path, weights_only=True)
    state = state.get("model", state)
    return torch.cat([value.float().ravel() for value in state.values()])


@pytest.mark.slow
def test_two_processes_train_the_model_one_process_trains(tmp_path):
    """GLiP with augmentation, 3 training cases in minibatches of 2: the second minibatch (1 case) leaves the second
    process with padding only, and GLiP's OT term is normalised over the whole minibatch; both must come out as in
    one process."""
    write_manifest(tmp_path / "manifest.csv", _textured_cases(tmp_path))
    config = TrainConfig(manifest=str(tmp_path / "manifest.csv"), size=[16, 16, 16], spacing=2.0, features=[4, 8],
                         epochs=2, batch_size=2, folds=1, val_fraction=0.25, test_fraction=0.0, threads=1,
                         cache_dir=str(tmp_path / "cache"))  # fmt: skip
    one = train(dataclasses.replace(config, out=str(tmp_path / "one")))
    two = train(dataclasses.replace(config, out=str(tmp_path / "two"), devices=2))
    for row_one, row_two in zip(_log(one), _log(two), strict=True):
        for key in ("train_loss", "val_median_mm", "val_mean_mm"):
            assert float(row_two[key]) == pytest.approx(float(row_one[key]), rel=1e-3), key
    torch.manual_seed(stream_seed(config.seed, 0))
    start = torch.cat([v.float().ravel() for v in build_network(config).state_dict().values()])
    moved = _weights(one / "fold0" / "last.pt") - start
    difference = _weights(two / "fold0" / "last.pt") - _weights(one / "fold0" / "last.pt")
    # measured 1.7e-3 (floating-point rounding, grown by Adam where a gradient is near 0); each process's loss on its
    # own share instead of the whole minibatch's fails the train_loss check above and differs here by 0.08 and more
    assert difference.norm() / moved.norm() < 0.01
    assert (two / "fold0" / "done.json").is_file() and (two / "model" / "model.json").is_file()


@pytest.mark.parametrize("settings, message", [
    ({"devices": 0}, "devices = 0: must be at least 1"),
    ({"devices": 2, "stage": "refine", "from_run": "stage1"}, "stage refine trains on one process"),
])  # fmt: skip
def test_impossible_device_counts_are_refused(settings, message):
    with pytest.raises(InputError, match=message):
        TrainConfig(**settings).validate()
