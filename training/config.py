"""One typed configuration for a training run: loadable from YAML, overridable by CLI flags, saved with the run."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from AorticRootLandmarksLib.errors import InputError
from AorticRootLandmarksLib.grid import GridSpec
from AorticRootLandmarksLib.typing import DEFAULT_LANDMARKS


@dataclass
class TrainConfig:
    """Everything that defines a training run (the paper's best settings are the defaults).

    Attributes:
        manifest: dataset manifest CSV (see io.read_manifest).
        out: run folder.
        landmarks: landmark names, the manifest's column prefixes.
        loss: glip | ot | wce | focal | mse | l1 | sl1.
        penalty: grid-penalty weight lambda; None = the loss's default (10 for glip, 0 otherwise).
        penalty_target: per-axis target slope c: "sqrt3" (1/sqrt(3), authors' code, 3D gradient norm 1) or "one".
        sigma: Gaussian heatmap sigma, mm.
        spacing, size, window: the network grid (GridSpec).
        architecture: "per_landmark" (one U-Net per landmark; default, see network.PerLandmarkUNets for why) or
            "shared" (one U-Net with K output channels, as in the paper).
        features: U-Net channels per level; None = network default.
        restore_channels: channels of the full-resolution layer before the heads; None = network default.
        epochs, batch_size, lr, seed: optimisation (Adam).
        steps_per_epoch: batches per epoch; None = one pass over the training cases.
        folds: k of k-fold cross-validation on the non-test cases; 1 = one train/validation split.
        val_fraction: validation share when folds == 1.
        test_fraction: held-out test share (ensemble of fold models predicts it).
        augment: random rotation (deg), translation (mm) and intensity jitter, landmarks moved along.
        decoding: peak decoding written into the exported model.
        device: auto | cpu | cuda | cuda:N.
        threads: torch CPU threads; None = torch default.
        cache_dir: preprocessed-volume cache; None = ~/.cache/aortic-root.
        name: model name written into model.json.
    """

    manifest: str = ""
    out: str = ""
    landmarks: list[str] = field(default_factory=lambda: list(DEFAULT_LANDMARKS))
    loss: str = "glip"
    penalty: float | None = None
    penalty_target: str = "sqrt3"
    sigma: float = 1.0
    spacing: float = 1.6
    size: list[int] = field(default_factory=lambda: [128, 128, 80])
    window: list[float] = field(default_factory=lambda: [-500.0, 1500.0])
    architecture: str = "per_landmark"
    features: list[int] | None = None
    restore_channels: int | None = None
    epochs: int = 50
    batch_size: int = 2
    lr: float = 1e-3
    seed: int = 0
    steps_per_epoch: int | None = None
    folds: int = 4
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    augment: bool = True
    rotation_deg: float = 10.0
    translation_mm: float = 8.0
    intensity_jitter: float = 0.05
    decoding: str = "centroid"
    device: str = "auto"
    threads: int | None = None
    cache_dir: str | None = None
    name: str = "aortic-root-glip"

    @property
    def grid_spec(self) -> GridSpec:
        return GridSpec(float(self.spacing), tuple(int(s) for s in self.size), tuple(float(w) for w in self.window))

    def validate(self) -> TrainConfig:
        """Raise InputError on values that cannot work; returns self."""
        if self.folds < 1:
            raise InputError(f"folds = {self.folds}: must be at least 1")
        if len(self.size) != 3 or min(self.size) < 8:
            raise InputError(f"size = {self.size}: three values of at least 8 voxels are needed")
        if self.sigma <= 0 or self.spacing <= 0 or self.lr <= 0:
            raise InputError("sigma, spacing and lr must be positive")
        if not 0 <= self.test_fraction < 1 or not 0 < self.val_fraction < 1:
            raise InputError("test_fraction must be in [0, 1) and val_fraction in (0, 1)")
        if self.architecture not in ("per_landmark", "shared"):
            raise InputError(f"architecture = {self.architecture!r}: use per_landmark or shared")
        if self.epochs < 1 or self.batch_size < 1:
            raise InputError("epochs and batch_size must be at least 1")
        return self

    def to_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(dataclasses.asdict(self), sort_keys=False), encoding="utf-8")

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> TrainConfig:
        """Read a config file; keyword overrides (e.g. from CLI flags) that are not None win."""
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as err:
            raise InputError(f"{path}: cannot read config ({err})") from None
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"{path}: unknown config key(s) {', '.join(unknown)}")
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**data)
