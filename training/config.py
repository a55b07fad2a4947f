"""One typed configuration for a training run: loadable from YAML, overridable by CLI flags, saved with the run.

Each field carries its help text in its metadata; the ``aortic-root train`` and ``sweep`` flags are generated from
the fields (``aortic_root/cli.py``), so a setting is declared once, here.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from AorticRootLandmarksLib.constants import DEFAULT_LANDMARKS
from AorticRootLandmarksLib.errors import InputError
from AorticRootLandmarksLib.grid import GridSpec
from AorticRootLandmarksLib.inference import DECODINGS, ENSEMBLINGS
from AorticRootLandmarksLib.localize import LOCALIZER_SPEC, ROOT_NAME

#: Loss names (training/losses.py implements them).
LOSSES = ("glip", "ot", "wce", "focal", "mse", "l1", "sl1")
#: Per-axis target slope c of the grid penalty by name: 1/sqrt(3) (the authors' code) or 1 (the paper's text).
PENALTY_TARGETS = {"sqrt3": 1.0 / math.sqrt(3.0), "one": 1.0}
#: How the OT term of glip/ot is reduced over the minibatch (training/losses.py ot_term): "minibatch" (this project)
#: or "authors" (the authors' code: the same term divided by the batch size B, so their lambda is ours / B).
OT_REDUCTIONS = ("minibatch", "authors")
#: What a run trains: the landmark (hinge-point) model, the localizer (localize.py) that centres its grid, or the
#: second stage (refine.py) that refines each landmark on a full-resolution patch around the first stage's point.
STAGES = ("landmarks", "localizer", "refine")
#: Stage numbers ``--stage`` also takes: 1 is the landmark model, 2 its second stage.
STAGE_NUMBERS = {"1": "landmarks", "2": "refine"}
#: Settings of a ``--stage localizer`` run that differ from the defaults: a coarse grid over the whole scan, one
#: blurred target (the hinge-point centroid), large translations so the root may lie anywhere in the scan.
LOCALIZER_DEFAULTS = {
    "spacing": LOCALIZER_SPEC.spacing, "size": list(LOCALIZER_SPEC.size), "sigma": 8.0, "folds": 2,
    "translation_mm": 150.0, "rotation_deg": 15.0, "name": "aortic-root-localizer",
}  # fmt: skip
#: Settings of a ``--stage refine`` run that differ from the defaults: the network grid is the patch, 40^3 voxels of
#: 0.5 mm (20 mm a side) around each first-stage point; a small U-Net (~0.1 M weights per landmark); rotations and
#: scaling a little milder than the first stage's (the patch is cut from a region large enough for them, so no
#: padding enters it); blur and thick slices in patch voxels of 0.5 mm (up to 1 mm and 2 mm, as the first stage's
#: 1.2 and 2.5 voxels of 1.6 mm are 1.9 and 4 mm, too coarse for a 0.5 mm patch).
REFINE_DEFAULTS = {
    "spacing": 0.5, "size": [40, 40, 40], "features": [8, 16, 32], "rotation_deg": 15.0, "scale_range": [0.9, 1.1],
    "blur_sigma": 2.0, "downsample_factor": 4.0, "batch_size": 4, "epochs": 30, "name": "aortic-root-refine",
}  # fmt: skip
#: Settings a ``--stage refine`` run takes from its stage-1 run (``from_run``) unless given: the landmarks, the
#: intensity window, and what defines the split (the stage-1 run's split.json is used as it is).
REFINE_INHERITED = ("landmarks", "window", "folds", "seed", "test_fraction", "val_fraction")
#: Network layouts (AorticRootLandmarksLib/network.py ARCHITECTURES).
ARCHITECTURES = ("per_landmark", "shared")
#: Normalisation layers of the U-Net (AorticRootLandmarksLib/network.py NORMS).
NORMS = ("instance", "batch", "none")


def _option(default, help: str, choices: tuple | None = None, aliases: tuple[str, ...] = (), **kwargs):
    """A config field with its CLI help, allowed values and further flag names (``aliases``) in the metadata."""
    metadata = {"help": help, "choices": choices, "aliases": aliases}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata, **kwargs)
    return field(default=default, metadata=metadata, **kwargs)


@dataclass
class TrainConfig:
    """Everything that defines a training run (the paper's best settings are the defaults).

    The help text of each field is in its metadata (``aortic-root train --help`` prints it).
    """

    manifest: str = _option("", "dataset manifest CSV (see io.read_manifest)")
    out: str = _option("", "run folder")
    stage: str = _option(
        "landmarks", "what to train: the landmark model (also: 1), the localizer that finds the root in a whole scan, "
        "or the second stage (also: 2) that refines each landmark on a full-resolution patch", STAGES
    )
    from_run: str | None = _option(
        None, "stage refine: the finished stage-1 run folder; its fold models predict each training case out of fold "
        "(the patches are cut there), its split.json is kept and its model is exported with the second stage",
        aliases=("--from",),
    )
    disturbance_mm: float = _option(
        4.0, "stage refine: largest random shift of the patch centre per axis, mm (the paper's p_d: the patch is cut "
        "at a random offset from a (p_s + 2 p_d)^3 region), so the refiner does not learn to answer 'the centre'"
    )
    localizer: str | None = _option(None, "a trained localizer (model or run folder) to ship inside the exported model")
    landmarks: list[str] = _option(list(DEFAULT_LANDMARKS), "landmark names, the manifest's column prefixes")
    loss: str = _option("glip", "training loss", LOSSES)
    penalty: float | None = _option(None, "grid-penalty weight lambda; empty = the loss's default (glip 10, else 0)")
    penalty_target: str = _option(
        "sqrt3", "per-axis slope c of the penalty: 1/sqrt(3) (authors' code) or 1", tuple(PENALTY_TARGETS)
    )
    ot_reduction: str = _option(
        "minibatch", "OT term of glip/ot: minibatch-normalised, or the authors' reduction (the same divided by the "
        "batch size: their lambda at batch B equals our lambda * B)", OT_REDUCTIONS
    )
    sigma: float = _option(1.0, "Gaussian heatmap sigma, mm")
    spacing: float = _option(GridSpec.spacing, "network grid spacing, mm (isotropic; stage refine: of the patch)")
    size: list[int] = _option(list(GridSpec.size), "network grid size X Y Z, voxels (stage refine: the patch)")
    window: list[float] = _option(list(GridSpec.window), "intensity window low high, HU, mapped to [0, 1]")
    architecture: str = _option(
        "per_landmark", "one U-Net per landmark, or one shared U-Net with K outputs (stage refine: a patch of "
        "landmark k is read from output k, i.e. the landmark is an input of the shared network)", ARCHITECTURES
    )
    features: list[int] | None = _option(None, "U-Net channels per level; empty = the network's default")
    restore_channels: int | None = _option(None, "channels of the full-resolution layer; empty = network default")
    norm: str = _option(
        "instance", "normalisation layers of the U-Net: instance (default; minibatches of 1-4), batch (the authors' "
        "U-Net) or none", NORMS
    )
    stem_stride: int = _option(
        2, "first U-Net level at half resolution (2: the default, about 3x faster on a CPU) or at full resolution "
        "(1: the classical U-Net, as the authors')"
    )
    epochs: int = _option(50, "training epochs per fold")
    batch_size: int = _option(2, "minibatch size")
    lr: float = _option(1e-3, "Adam learning rate")
    lr_drop_epoch: int | None = _option(
        None, "epoch (counted from 0) from which Adam's rate is lr * lr_drop_factor, a calmer final phase (a step "
        "decay); empty = the rate stays lr"
    )
    lr_drop_factor: float = _option(0.1, "factor on the learning rate from lr_drop_epoch on, in (0, 1]")
    seed: int = _option(0, "random seed (splits, initialisation, augmentation)")
    steps_per_epoch: int | None = _option(None, "batches per epoch; empty = one pass over the training cases")
    folds: int = _option(4, "k of k-fold cross-validation; 1 = one train/validation split")
    val_fraction: float = _option(0.2, "validation share when folds is 1")
    test_fraction: float = _option(0.2, "held-out test share, predicted by the fold ensemble")
    augment: bool = _option(
        True, "augmentation (training/augment.py): rotation, scale, translation (landmarks moved along) and CT-like "
        "intensity changes; --no-augment switches all of it off"
    )
    rotation_deg: float = _option(30.0, "augmentation: largest rotation about a random axis, degrees")
    scale_range: list[float] = _option(
        [0.85, 1.15], "augmentation: scale factor range low high (each axis varied a little more, within the range)"
    )
    translation_mm: float = _option(
        50.0, "augmentation: largest translation per axis, mm (the landmarks are kept inside the box; stage refine: "
        "unused, see disturbance_mm)"
    )
    intensity_jitter: float = _option(0.1, "augmentation: largest relative change of the HU scale")
    offset_hu: float = _option(50.0, "augmentation: largest HU offset")
    gamma_range: list[float] = _option([0.8, 1.25], "augmentation: gamma range low high on the windowed values")
    gamma_prob: float = _option(0.3, "augmentation: probability of a gamma change")
    contrast_range: list[float] = _option(
        [0.5, 1.6], "augmentation: range low high of the factor on blood contrast (150-800 HU), at most 2"
    )
    contrast_prob: float = _option(0.5, "augmentation: probability of a blood contrast change")
    noise_hu: float = _option(40.0, "augmentation: largest standard deviation of added Gaussian noise, HU")
    noise_prob: float = _option(0.5, "augmentation: probability of added noise")
    blur_sigma: float = _option(1.2, "augmentation: largest Gaussian blur sigma, grid voxels")
    blur_prob: float = _option(0.3, "augmentation: probability of a blur")
    downsample_factor: float = _option(2.5, "augmentation: largest slice thickness along one axis, grid voxels")
    downsample_prob: float = _option(0.3, "augmentation: probability of thick slices (down-up resampling)")
    spots_prob: float = _option(
        0.0, "augmentation: probability of dense spots (calcium nodules, wire fragments: 500-1600 HU, radius 0.5-2.5 "
        "mm) added at random places of the volume"
    )
    spots_max: int = _option(8, "augmentation: largest number of dense spots (1 to this many when they are added)")
    decoding: str = _option("centroid", "peak decoding written into the exported model", DECODINGS)
    ensembling: str = _option(
        "maps", "fold ensembling in the exported model: average the maps, or the decoded coordinates", ENSEMBLINGS
    )
    device: str = _option("auto", "auto | cpu | cuda | cuda:N")
    devices: int = _option(
        1, "processes that train one model together (PyTorch DDP, training/distributed.py): GPUs cuda:0.. with CUDA "
        "(nccl), else CPU processes (gloo); each takes its share of every minibatch, batch_size stays the whole one"
    )
    threads: int | None = _option(None, "torch CPU threads; empty = torch's default")
    cache_dir: str | None = _option(None, "preprocessed-volume cache; empty = ~/.cache/aortic-root")
    name: str = _option("aortic-root-glip", "model name written into model.json")

    @property
    def target_names(self) -> list[str]:
        """The names of what the network learns: the landmarks, or :data:`localize.ROOT_NAME` for a localizer."""
        return [ROOT_NAME] if self.stage == "localizer" else list(self.landmarks)

    def __post_init__(self) -> None:
        self.stage = STAGE_NUMBERS.get(str(self.stage), self.stage)  # --stage 2 is --stage refine

    @classmethod
    def for_stage(cls, stage: str = "landmarks", **settings) -> TrainConfig:
        """A config with the stage's defaults under the given settings (None = unset).

        The defaults: :data:`LOCALIZER_DEFAULTS` for a localizer; for a second stage :data:`REFINE_DEFAULTS` and the
        :data:`REFINE_INHERITED` settings of its stage-1 run (``from_run``).
        """
        stage = STAGE_NUMBERS.get(str(stage), stage)
        given = {k: v for k, v in settings.items() if v is not None}
        base = {}
        if stage == "localizer":
            base = LOCALIZER_DEFAULTS
        elif stage == "refine":
            base = {**REFINE_DEFAULTS, **(stage1_settings(given["from_run"]) if given.get("from_run") else {})}
        return cls(**{**base, **given, "stage": stage})

    def learning_rate(self, epoch: int) -> float:
        """Adam's learning rate in `epoch` (counted from 0): lr, times lr_drop_factor from lr_drop_epoch on."""
        dropped = self.lr_drop_epoch is not None and epoch >= self.lr_drop_epoch
        return self.lr * self.lr_drop_factor if dropped else self.lr

    @property
    def grid_spec(self) -> GridSpec:
        return GridSpec(float(self.spacing), tuple(int(s) for s in self.size), tuple(float(w) for w in self.window))

    def validate(self) -> TrainConfig:
        """Raise InputError on values that cannot work; returns self."""
        for item in dataclasses.fields(self):
            _check_type(item.name, getattr(self, item.name))
            choices = item.metadata.get("choices")
            if choices and getattr(self, item.name) not in choices:
                raise InputError(f"{item.name} = {getattr(self, item.name)!r}: use one of {', '.join(choices)}")
        for problem, message in self._problems():
            if problem:
                raise InputError(message)
        return self

    def _problems(self) -> list[tuple[bool, str]]:
        """(is wrong, what to say) for every rule a run's values must keep."""
        at_least_one = ("steps_per_epoch", "threads", "restore_channels", "lr_drop_epoch")
        return [
            (self.folds < 1, f"folds = {self.folds}: must be at least 1"),
            (len(self.size) != 3 or min(self.size) < 8, f"size = {self.size}: three values of at least 8 voxels"),
            (len(self.window) != 2 or not self.window[1] > self.window[0], f"window = {self.window}: low < high"),
            (self.sigma <= 0 or self.spacing <= 0 or self.lr <= 0, "sigma, spacing and lr must be positive"),
            (not 0 <= self.test_fraction < 1 or not 0 < self.val_fraction < 1,
             "test_fraction must be in [0, 1) and val_fraction in (0, 1)"),
            (self.epochs < 1 or self.batch_size < 1, "epochs and batch_size must be at least 1"),
            (self.devices < 1, f"devices = {self.devices}: must be at least 1"),
            (self.stem_stride not in (1, 2), f"stem_stride = {self.stem_stride}: 1 or 2"),
            *[(getattr(self, k) is not None and getattr(self, k) < 1, f"{k} = {getattr(self, k)}: must be at least 1")
              for k in at_least_one],
            (self.seed < 0 or (self.penalty or 0) < 0, "seed and penalty must not be negative"),
            (not 0 < self.lr_drop_factor <= 1, f"lr_drop_factor = {self.lr_drop_factor}: must be in (0, 1]"),
            (self.features is not None and (not self.features or min(self.features) < 1),
             f"features = {self.features}: channel counts must be at least 1"),
            (not self.landmarks or len(set(self.landmarks)) != len(self.landmarks),
             f"landmarks = {self.landmarks}: give distinct names"),
            *self._refine_problems(),
            *self._augment_problems(),
        ]

    def _refine_problems(self) -> list[tuple[bool, str]]:
        """The rules of a second-stage run (and of from_run elsewhere)."""
        refine = self.stage == "refine"
        return [
            (refine and not self.from_run, "stage refine: give the stage-1 run folder (--from RUN)"),
            (not refine and bool(self.from_run), f"from_run is for stage refine, not stage {self.stage}"),
            (refine and bool(self.localizer), "stage refine: a localizer belongs to the stage-1 run (its --localizer)"),
            (self.disturbance_mm < 0, f"disturbance_mm = {self.disturbance_mm}: must not be negative"),
            (refine and self.devices > 1, "stage refine trains on one process (devices 1): its patches are small"),
        ]

    def _augment_problems(self) -> list[tuple[bool, str]]:
        """The augmentation rules (training/augment.py)."""
        probabilities = ("gamma_prob", "contrast_prob", "noise_prob", "blur_prob", "downsample_prob", "spots_prob")
        ranges = {"scale_range": 10.0, "gamma_range": 10.0, "contrast_range": 2.0}  # name: largest high value
        return [
            *[(len(getattr(self, k)) != 2 or not 0 < getattr(self, k)[0] <= getattr(self, k)[1] <= top,
               f"{k} = {getattr(self, k)}: two values, 0 < low <= high <= {top:g}") for k, top in ranges.items()],
            *[(not 0 <= getattr(self, k) <= 1, f"{k} = {getattr(self, k)}: a probability in [0, 1]")
              for k in probabilities],
            (not 0 <= self.rotation_deg <= 180, f"rotation_deg = {self.rotation_deg}: in [0, 180]"),
            (not 0 <= self.intensity_jitter < 1, f"intensity_jitter = {self.intensity_jitter}: in [0, 1)"),
            (min(self.translation_mm, self.offset_hu, self.noise_hu, self.blur_sigma) < 0,
             "translation_mm, offset_hu, noise_hu and blur_sigma must not be negative"),
            (self.downsample_factor < 1, f"downsample_factor = {self.downsample_factor}: at least 1"),
            (self.spots_max < 1, f"spots_max = {self.spots_max}: at least 1"),
        ]

    @classmethod
    def documented_yaml(cls) -> str:
        """Every key of a config file with its default and help, as YAML with comments (docs/train_config.yaml)."""
        lines = ["# aortic-root train --config FILE: every key, its default and what it means.",
                 "# Flags given on the command line override the file (--steps-per-epoch for steps_per_epoch).", ""]
        defaults = dataclasses.asdict(cls())
        for item in dataclasses.fields(cls):
            choices = item.metadata.get("choices")
            note = f" ({' | '.join(choices)})" if choices else ""
            lines.append(f"# {item.metadata['help']}{note}")
            lines.append(f"{item.name}: {json.dumps(defaults[item.name])}")  # JSON values are YAML
        return "\n".join(lines) + "\n"

    def to_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(dataclasses.asdict(self), sort_keys=False), encoding="utf-8")

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> TrainConfig:
        """Read a config file; keyword overrides (e.g. from CLI flags) that are not None win."""
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            raise InputError(f"{path}: cannot read config ({_first_line(err)})") from None
        if not isinstance(data, dict):
            raise InputError(f"{path}: a config is a mapping of keys to values")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"{path}: unknown config key(s) {', '.join(map(str, unknown))}")
        data.update({k: v for k, v in overrides.items() if v is not None})
        for key, value in data.items():
            _check_type(key, value, where=f"{path}: ")
        return cls.for_stage(data.pop("stage", None) or "landmarks", **data)


def stage1_settings(run: str | Path) -> dict:
    """The :data:`REFINE_INHERITED` settings of a stage-1 run folder (its config.yaml), for a second stage.

    Raises:
        InputError: `run` has no readable config.yaml, or it is not a landmark (stage-1) run.
    """
    path = Path(run) / "config.yaml"
    try:
        saved = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise InputError(f"{path}: cannot read the stage-1 run's config ({_first_line(err)})") from None
    if not isinstance(saved, dict) or saved.get("stage", "landmarks") != "landmarks":
        raise InputError(f"{run}: not a landmark (stage-1) run; --from needs one")
    return {key: saved[key] for key in REFINE_INHERITED if key in saved}


@functools.cache
def field_types() -> dict[str, type]:
    """{field name: its type without None} (e.g. ``penalty`` -> float, ``size`` -> list[int])."""
    return {name: _without_none(hint) for name, hint in typing.get_type_hints(TrainConfig).items()}


def _without_none(hint):
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def _check_type(key: str, value, where: str = "") -> None:
    """Raise InputError unless `value` fits the field's type (None allowed where the field allows it)."""
    hint = field_types()[key]
    if value is None:
        if key in _OPTIONAL:
            return
        raise InputError(f"{where}{key}: a value is needed")
    origin = typing.get_origin(hint)
    items = value if origin is list else [value]
    kind = typing.get_args(hint)[0] if origin is list else hint
    if origin is list and not isinstance(value, list):
        raise InputError(f"{where}{key} = {value!r}: expected a list of {kind.__name__}")
    for item in items:
        ok = isinstance(item, kind) and not (kind is int and isinstance(item, bool))
        if kind is float:
            ok = isinstance(item, (int, float)) and not isinstance(item, bool) and math.isfinite(item)
        if not ok:
            expected = f"a list of {kind.__name__}" if origin is list else kind.__name__
            raise InputError(f"{where}{key} = {value!r}: expected {expected}")


_OPTIONAL = {name for name, hint in typing.get_type_hints(TrainConfig).items() if type(None) in typing.get_args(hint)}


def _first_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__
