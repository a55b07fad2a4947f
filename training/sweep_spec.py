"""A sweep's spec file, ``aortic-root sweep SPEC.yaml --out DIR``: the manifest, the shared settings, the grid, and
how to run it (docs/sweep_example.yaml is an example with every key).

::

    manifest: data/phantom/manifest.csv    # relative to the spec file
    config: base.yaml                      # optional: a train config file (keys: docs/train_config.yaml)
    settings: {folds: 4, epochs: 50}       # shared settings, TrainConfig keys; over the config file
    grid:                                  # TrainConfig key -> values: one run per combination
      loss: [glip, wce, mse]
      sigma: [1, 2, 4]
    execution: {workers: 1}                # see Execution; the command's flags override it

``grid`` may also be a list of such mappings: their combinations are joined (e.g. lambda values for glip only).
The settings that define the split (:data:`SPLIT_KEYS`) are the same for every run of a sweep.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from AorticRootLandmarksLib.errors import InputError

from .config import TrainConfig, _check_type, field_types

#: The keys of a spec file.
SPEC_KEYS = ("manifest", "config", "settings", "grid", "execution")
#: Settings that define the split (and what is evaluated): one value for the whole sweep, never a grid axis.
SPLIT_KEYS = ("manifest", "out", "folds", "seed", "test_fraction", "val_fraction", "landmarks")


def _option(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class Execution:
    """How a sweep runs its trainings (none of it changes a result, so a resumed sweep may change it)."""

    workers: int = _option(1, "local worker processes, each training one run at a time")
    ray: str | None = _option(
        None, "run on Ray Tune instead: 'local' (start a Ray instance here), 'auto' (the running cluster) or the "
        "cluster's address; needs the extra: pip install -e '.[distributed]'"
    )
    cpus_per_trial: float = _option(1.0, "Ray: CPUs of one run (also its torch threads)")
    gpus_per_trial: float = _option(0.0, "Ray: GPUs of one run (with settings' devices N, give N)")
    asha: bool = _option(False, "Ray: stop hopeless runs early (ASHA on each epoch's validation median)")
    asha_grace: int | None = _option(None, "Ray, ASHA: epochs a run trains before it may be stopped; empty = 1/4")

    def validate(self) -> Execution:
        """Raise InputError on values that cannot work; returns self."""
        problems = [
            (not isinstance(self.workers, int) or isinstance(self.workers, bool) or self.workers < 1,
             f"workers = {self.workers!r}: a whole number of at least 1"),
            (self.ray is not None and (not isinstance(self.ray, str) or not self.ray.strip()),
             f"ray = {self.ray!r}: 'local', 'auto' or an address"),
            (not _number(self.cpus_per_trial) or self.cpus_per_trial <= 0,
             f"cpus_per_trial = {self.cpus_per_trial!r}: a positive number"),
            (not _number(self.gpus_per_trial) or self.gpus_per_trial < 0,
             f"gpus_per_trial = {self.gpus_per_trial!r}: a number, 0 or more"),
            (not isinstance(self.asha, bool), f"asha = {self.asha!r}: true or false"),
            (self.asha_grace is not None and (not isinstance(self.asha_grace, int) or self.asha_grace < 1),
             f"asha_grace = {self.asha_grace!r}: a whole number of epochs, at least 1"),
            (self.asha and self.ray is None, "asha stops runs on Ray: give ray as well"),
            (self.ray is not None and self.workers != 1, "give workers (local processes) or ray, not both"),
        ]  # fmt: skip
        for problem, message in problems:
            if problem:
                raise InputError(f"execution: {message}")
        return self


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class SweepSpec:
    """What a spec file holds: the shared settings (with the manifest), the grid, and the execution."""

    base: TrainConfig
    grid: dict[str, list] | list[dict[str, list]]
    execution: Execution = dataclasses.field(default_factory=Execution)


def is_spec(path: str | Path) -> bool:
    """A sweep spec is a YAML file (``.yaml``/``.yml``); anything else given to ``sweep`` is a manifest."""
    return Path(path).suffix.lower() in (".yaml", ".yml")


def read_spec(path: str | Path) -> SweepSpec:
    """Read and check a spec file; relative paths in it are relative to the file.

    Raises:
        InputError: one line naming the file and what is wrong.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise InputError(f"{path}: cannot read the sweep spec ({type(err).__name__})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: a sweep spec is a mapping with the keys {', '.join(SPEC_KEYS)}")
    unknown = sorted(map(str, set(data) - set(SPEC_KEYS)))
    if unknown:
        raise InputError(f"{path}: unknown key(s) {', '.join(unknown)} (a spec has {', '.join(SPEC_KEYS)})")
    for key in ("manifest", "grid"):
        if not data.get(key):
            raise InputError(f"{path}: '{key}' is missing")
    base = _base_config(path, data)
    grid = check_grid(data["grid"], f"{path}: grid: ")
    execution = _mapping(path, data, "execution")
    fields = {f.name for f in dataclasses.fields(Execution)}
    if set(execution) - fields:
        raise InputError(f"{path}: execution: unknown key(s) {', '.join(sorted(set(execution) - fields))}")
    try:
        return SweepSpec(base, grid, Execution(**execution).validate())
    except InputError as err:
        raise InputError(f"{path}: {err}") from None


def _mapping(path: Path, data: dict, key: str) -> dict:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise InputError(f"{path}: '{key}' must be a mapping of keys to values")
    return value


def _base_config(path: Path, data: dict) -> TrainConfig:
    """The shared settings: the config file (if any), `settings` over it, the manifest; paths made absolute."""
    settings = _mapping(path, data, "settings")
    for key in set(settings) & {"manifest", "out"}:
        raise InputError(f"{path}: settings: '{key}' is not a setting (the spec's manifest, the command's --out)")
    unknown = sorted(map(str, set(settings) - set(field_types())))
    if unknown:
        raise InputError(f"{path}: settings: unknown key(s) {', '.join(unknown)} (keys: docs/train_config.yaml)")
    for key, value in settings.items():
        _check_type(key, value, where=f"{path}: settings: ")
    manifest = str(_relative_to(path, data["manifest"]))
    if data.get("config"):
        return TrainConfig.from_yaml(_relative_to(path, data["config"]), **settings, manifest=manifest).validate()
    return TrainConfig.for_stage(settings.pop("stage", None) or "landmarks", **settings, manifest=manifest).validate()


def _relative_to(spec: Path, value) -> Path:
    if not isinstance(value, str):
        raise InputError(f"{spec}: {value!r} is not a path")
    path = Path(value).expanduser()
    return path if path.is_absolute() else (spec.parent / path).resolve()


def check_grid(grid, where: str = "grid: ") -> dict[str, list] | list[dict[str, list]]:
    """A grid (field -> values) or a list of grids, checked against TrainConfig; ints of float fields made floats.

    Raises:
        InputError: not a mapping (or list of them), an unknown field, an empty or badly typed value, several values
            of a setting that defines the split (:data:`SPLIT_KEYS`).
    """
    grids = grid if isinstance(grid, list) else [grid]
    if not grids or not all(isinstance(g, dict) and g for g in grids):
        raise InputError(f"{where}a mapping of settings to lists of values, or a list of such mappings")
    checked = [{str(key): _values(str(key), values, where) for key, values in g.items()} for g in grids]
    return checked if isinstance(grid, list) else checked[0]


def _values(key: str, values, where: str) -> list:
    types = field_types()
    if key not in types:
        raise InputError(f"{where}unknown setting {key} (the settings: docs/train_config.yaml)")
    if not isinstance(values, list) or not values:
        raise InputError(f"{where}{key}: give a list of values, e.g. {key}: [a, b]")
    if key in SPLIT_KEYS and len(values) > 1:
        raise InputError(f"{where}{key} defines the split, which every run of a sweep shares: give one value")
    for value in values:
        _check_type(key, value, where=where)
    return [_as_field_type(key, value, types[key]) for value in values]


def _as_field_type(key: str, value, kind):
    """1 -> 1.0 for a float field (and in a list of floats), so the same setting has one run name."""
    if kind is float and isinstance(value, int):
        return float(value)
    if typing.get_origin(kind) is list and typing.get_args(kind)[0] is float and isinstance(value, list):
        return [float(v) for v in value]
    return value
