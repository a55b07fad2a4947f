"""The ``aortic-root`` parser: train/sweep flags generated from TrainConfig, --version, help with defaults."""

from __future__ import annotations

import dataclasses

import pytest

from aortic_root.cli import build_parser, config_overrides, sweep_grid
from AorticRootLandmarksLib import __version__
from AorticRootLandmarksLib.errors import InputError
from training.config import TrainConfig


def _subparser(name):
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices[name]


def test_every_config_field_is_a_train_flag_with_its_help():
    options = {a.dest: a for a in _subparser("train")._actions}
    for item in dataclasses.fields(TrainConfig):
        if item.name in ("manifest", "out"):
            continue
        assert item.name in options, f"no flag for TrainConfig.{item.name}"
        assert options[item.name].help.startswith(item.metadata["help"])
    assert "(default: 1.6)" in options["spacing"].help and "(default: 128 128 80)" in options["size"].help
    assert options["loss"].choices == ("glip", "ot", "wce", "focal", "mse", "l1", "sl1")


def test_train_flags_map_onto_config_fields():
    args = build_parser().parse_args(
        ["train", "Testing/conftest.py", "--out", "r", "--sigma", "2", "--size", "64", "64", "48",
         "--landmarks", "RCC,LCC", "--no-augment", "--steps-per-epoch", "3"]
    )
    given = {k: v for k, v in config_overrides(args).items() if v is not None}
    assert given == {"sigma": 2.0, "size": [64, 64, 48], "landmarks": ["RCC", "LCC"], "augment": False,
                     "steps_per_epoch": 3}
    config = TrainConfig(**given).validate()  # what cmd_train builds: types as the config declares them
    assert config.grid_spec.size == (64, 64, 48) and config.augment is False


def test_sweep_values_are_parsed_as_the_field_type():
    args = build_parser().parse_args(["sweep", "Testing/conftest.py", "--out", "s", "--loss", "glip,wce",
                                      "--sigma", "1,2.5", "--epochs", "3"])
    assert sweep_grid(args) == {"loss": ["glip", "wce"], "sigma": [1.0, 2.5], "epochs": [3]}
    args = build_parser().parse_args(["sweep", "Testing/conftest.py", "--out", "s", "--sigma", "1,two"])
    with pytest.raises(InputError, match="'two' is not float"):
        sweep_grid(args)


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"aortic-root {__version__}"


@pytest.mark.parametrize("command", ["demo", "phantom", "detect", "train", "sweep", "evaluate"])
def test_every_flag_has_help(command):
    for action in _subparser(command)._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"{command} {action.option_strings} has no help"
