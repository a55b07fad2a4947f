"""training.train: a fold's checkpoints and log, Ctrl-C leaving a resume checkpoint, and resuming a fold exactly."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
import torch
from helpers import tiny_cases

from AorticRootLandmarksLib.grid import GridSpec
from AorticRootLandmarksLib.network import build_network
from training.checkpoints import LOG_COLUMNS
from training.config import TrainConfig
from training.data import load_sample

# the module, not the `training.train` function that training/__init__.py exports under the same name
train_module = importlib.import_module("training.train")
SPEC = GridSpec(spacing=2.0, size=(16, 16, 16))


@pytest.fixture
def samples(tmp_path):
    return [load_sample(case, SPEC, tmp_path / "cache") for case in tiny_cases(tmp_path, 3)]


def config(**changes):
    settings = {"size": list(SPEC.size), "spacing": SPEC.spacing, "features": [4, 8], "epochs": 2, "batch_size": 1}
    return TrainConfig(**{**settings, **changes})


def test_train_fold_writes_log_and_checkpoints(samples, tmp_path):
    network, best = train_module.train_fold(config(), samples[:2], samples[2:], tmp_path / "fold0", "cpu")
    rows = (tmp_path / "fold0" / "log.csv").read_text(encoding="utf-8").splitlines()
    assert rows[0].split(",") == list(LOG_COLUMNS) and len(rows) == 3
    assert np.isfinite(best) and best >= 0
    state = torch.load(tmp_path / "fold0" / "best.pt", weights_only=True)
    assert all(torch.equal(state[k], v) for k, v in network.state_dict().items())  # best weights are loaded
    last = torch.load(tmp_path / "fold0" / "last.pt", weights_only=True)
    assert last["format"] == 1 and last["epoch"] == 1 and last["steps"] == 4  # 2 epochs x 2 cases / batch 1
    assert last["best_median"] == best and set(last["optimizer"]) == {"state", "param_groups"}
    assert json.loads((tmp_path / "fold0" / "done.json").read_text(encoding="utf-8"))["best_median_mm"] == best


def test_the_authors_unet_layout_is_built_from_the_config():
    """--norm batch --stem-stride 1 (the authors' U-Net: batch norm, first level at full resolution) reach the
    network, and the defaults keep the fast layout (instance norm, half-resolution stem)."""
    authors = train_module.build_network(config(architecture="shared", norm="batch", stem_stride=1))
    assert authors.config()["norm"] == "batch" and authors.config()["stem_stride"] == 1
    assert any(isinstance(m, torch.nn.BatchNorm3d) for m in authors.modules())
    assert authors.stem[0].stride == (1, 1, 1) and isinstance(authors.restore, torch.nn.Identity)
    fast = train_module.build_network(config())
    assert fast.config()["norm"] == "instance" and fast.config()["stem_stride"] == 2
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in fast.modules())
    with pytest.raises(Exception, match="stem_stride = 3"):
        config(stem_stride=3).validate()


def test_seed_streams_do_not_collide():
    # seed + fold would give seed 0 fold 1 the numbers of seed 1 fold 0
    assert train_module.stream_seed(0, 1) != train_module.stream_seed(1, 0)
    assert train_module.stream_seed(0, 1, 2) == train_module.stream_seed(0, 1, 2)


def _interrupting_loss(real, at_call):
    def make(*args, **kwargs):
        loss, calls = real(*args, **kwargs), []

        def call(pred, target):
            calls.append(1)
            if len(calls) == at_call:
                raise KeyboardInterrupt
            return loss(pred, target)

        return call

    return make


def test_ctrl_c_leaves_a_resume_checkpoint_and_resuming_ends_as_uninterrupted(samples, tmp_path, monkeypatch):
    reference, _ = train_module.train_fold(config(epochs=3), samples[:2], samples[2:], tmp_path / "ref", "cpu")
    # epoch 0 = loss calls 1-2; call 3 updates the weights in epoch 1; call 4 is Ctrl-C
    monkeypatch.setattr(train_module, "make_loss", _interrupting_loss(train_module.make_loss, 4))
    with pytest.raises(KeyboardInterrupt):
        train_module.train_fold(config(epochs=3), samples[:2], samples[2:], tmp_path / "fold0", "cpu")
    monkeypatch.undo()
    assert not list((tmp_path / "fold0").glob("*.tmp"))  # no half-written file
    assert not (tmp_path / "fold0" / "done.json").exists()
    # last.pt is the checkpoint of the last finished epoch (the step into epoch 1 is lost), and its weights load
    last = torch.load(tmp_path / "fold0" / "last.pt", weights_only=True)
    assert last["epoch"] == 0 and last["steps"] == 2
    network = build_network({"architecture": "per_landmark", "in_channels": 1, "out_channels": 3, "features": [4, 8]})
    network.load_state_dict(last["model"])
    assert (tmp_path / "fold0" / "log.csv").read_text(encoding="utf-8").count("\n") == 2  # header + epoch 0

    resumed, _ = train_module.train_fold(
        config(epochs=3), samples[:2], samples[2:], tmp_path / "fold0", "cpu", resume=True
    )
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=1e-6)
    epochs = [row.split(",")[0] for row in (tmp_path / "fold0" / "log.csv").read_text(encoding="utf-8").splitlines()]
    assert epochs == ["epoch", "0", "1", "2"]  # appended, each epoch once
