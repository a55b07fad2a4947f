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
