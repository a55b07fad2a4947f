"""training.config: one typed config, YAML round trip, overrides, validation."""

from __future__ import annotations

import pytest

from AorticRootLandmarksLib.errors import InputError
from training.config import TrainConfig


def test_yaml_round_trip_and_overrides(tmp_path):
    config = TrainConfig(manifest="m.csv", out="run", loss="wce", penalty=5.0, size=[64, 64, 48], features=[4, 8])
    config.to_yaml(tmp_path / "c.yaml")
    assert TrainConfig.from_yaml(tmp_path / "c.yaml") == config
    changed = TrainConfig.from_yaml(tmp_path / "c.yaml", sigma=2.0, loss=None)  # None = flag not given
    assert changed.sigma == 2.0 and changed.loss == "wce"
    assert changed.grid_spec.size == (64, 64, 48)


def test_unknown_key_and_bad_values(tmp_path):
    (tmp_path / "c.yaml").write_text("sigmaa: 1\n", encoding="utf-8")
    with pytest.raises(InputError, match="unknown config key"):
        TrainConfig.from_yaml(tmp_path / "c.yaml")
    with pytest.raises(InputError, match="folds"):
        TrainConfig(folds=0).validate()
    with pytest.raises(InputError, match="size"):
        TrainConfig(size=[64, 64]).validate()
    with pytest.raises(InputError, match="positive"):
        TrainConfig(sigma=0).validate()


def test_documented_yaml_is_current_and_loads(tmp_path):
    from pathlib import Path

    text = TrainConfig.documented_yaml()
    docs = Path(__file__).resolve().parents[2] / "docs" / "train_config.yaml"
    assert docs.read_text(encoding="utf-8") == text, "regenerate docs/train_config.yaml from TrainConfig"
    (tmp_path / "c.yaml").write_text(text, encoding="utf-8")
    assert TrainConfig.from_yaml(tmp_path / "c.yaml") == TrainConfig()  # every key, every default, round trip


def test_wrong_types_in_a_config_file_are_one_line_errors(tmp_path):
    for text, key in (("sigma: wide\n", "sigma"), ("size: [64, 64]\nfolds: two\n", "folds"),
                      ("augment: 3\n", "augment"), ("landmarks: RCC\n", "landmarks"), ("lr: .nan\n", "lr")):
        (tmp_path / "c.yaml").write_text(text, encoding="utf-8")
        with pytest.raises(InputError, match=key):
            TrainConfig.from_yaml(tmp_path / "c.yaml")


def test_network_choices_match_the_network():
    """config keeps torch-free copies of the network's choices (architectures, norms): they must not drift."""
    from AorticRootLandmarksLib import network
    from training import config

    assert set(config.ARCHITECTURES) == set(network.ARCHITECTURES)
    assert config.NORMS == network.NORMS


def test_learning_rate_drops_from_the_given_epoch_on():
    assert [TrainConfig(lr=0.01).learning_rate(e) for e in (0, 5, 99)] == [0.01, 0.01, 0.01]
    dropped = TrainConfig(lr=0.01, lr_drop_epoch=3, lr_drop_factor=0.5)
    assert [dropped.learning_rate(e) for e in range(5)] == [0.01, 0.01, 0.01, 0.005, 0.005]
    for bad, key in (({"lr_drop_factor": 0.0}, "lr_drop_factor"), ({"lr_drop_factor": 1.5}, "lr_drop_factor"),
                     ({"lr_drop_epoch": 0}, "lr_drop_epoch")):
        with pytest.raises(InputError, match=key):
            TrainConfig(**bad).validate()
