"""training.train: a fold's checkpoints and log, and Ctrl-C leaving a usable last checkpoint."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from helpers import make_image

from AorticRootLandmarksLib.grid import GridSpec
from AorticRootLandmarksLib.io import Case, write_image
from AorticRootLandmarksLib.network import build_network
from training.config import TrainConfig
from training.data import load_sample

# the module, not the `training.train` function that training/__init__.py exports under the same name
train_module = importlib.import_module("training.train")
SPEC = GridSpec(spacing=2.0, size=(16, 16, 16))


@pytest.fixture
def samples(tmp_path):
    out = []
    for i in range(3):
        image = make_image(size=(24, 24, 24), spacing=(1.5, 1.5, 1.5), value=100 + 50 * i)
        write_image(image, tmp_path / f"c{i}.nii.gz")
        centre = np.array(image.TransformContinuousIndexToPhysicalPoint((11.5, 11.5, 11.5)))
        case = Case(f"c{i}", tmp_path / f"c{i}.nii.gz", centre + np.array([[2.0, 0, 0], [0, 2.0, 0], [0, 0, 2.0]]))
        out.append(load_sample(case, SPEC, tmp_path / "cache"))
    return out


def config(**changes):
    return TrainConfig(size=list(SPEC.size), spacing=SPEC.spacing, features=[4, 8], epochs=2, batch_size=1, **changes)


def test_train_fold_writes_log_and_checkpoints(samples, tmp_path):
    network, best = train_module.train_fold(config(), samples[:2], samples[2:], tmp_path / "fold0", "cpu")
    rows = (tmp_path / "fold0" / "log.csv").read_text(encoding="utf-8").splitlines()
    assert rows[0].split(",") == list(train_module.LOG_COLUMNS) and len(rows) == 3
    assert np.isfinite(best) and best >= 0
    state = torch.load(tmp_path / "fold0" / "best.pt", weights_only=True)
    assert all(torch.equal(state[k], v) for k, v in network.state_dict().items())  # best weights are loaded


def test_ctrl_c_leaves_a_usable_last_checkpoint(samples, tmp_path, monkeypatch):
    real = train_module.make_loss

    def interrupting_loss(*args, **kwargs):
        loss, calls = real(*args, **kwargs), []

        def call(pred, target):
            calls.append(1)
            if len(calls) == 4:  # epoch 0 = calls 1-2; call 3 updates the weights in epoch 1; call 4 is Ctrl-C
                raise KeyboardInterrupt
            return loss(pred, target)

        return call

    monkeypatch.setattr(train_module, "make_loss", interrupting_loss)
    with pytest.raises(KeyboardInterrupt):
        train_module.train_fold(config(), samples[:2], samples[2:], tmp_path / "fold0", "cpu")
    network = build_network({"architecture": "per_landmark", "in_channels": 1, "out_channels": 3, "features": [4, 8]})
    network.load_state_dict(torch.load(tmp_path / "fold0" / "last.pt", weights_only=True))  # loads: usable
    assert not list((tmp_path / "fold0").glob("*.tmp"))  # no half-written checkpoint
    # last.pt holds the weights at the interruption (one step past epoch 0), not only the end-of-epoch save
    last = torch.load(tmp_path / "fold0" / "last.pt", weights_only=True)
    best = torch.load(tmp_path / "fold0" / "best.pt", weights_only=True)
    assert any(not torch.equal(last[k], best[k]) for k in best)
    assert (tmp_path / "fold0" / "log.csv").read_text(encoding="utf-8").count("\n") == 2  # header + epoch 0
