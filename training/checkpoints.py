"""A run folder's state on disk, and the rules of resuming it: checkpoints, the epoch log, finished folds.

Resuming an interrupted run (``train(config, resume=True)``, ``aortic-root train ... --resume``):

- ``fold<i>/last.pt`` is for resuming. It is replaced atomically (written to a temporary file, then renamed) at the
  end of every epoch: ``{"format": 1, "model": state dict, "optimizer": Adam state dict, "epoch": last completed
  epoch, "steps": optimizer steps so far, "best_median": lowest validation median so far, mm}``. Its ``model`` holds
  the latest weights, also after Ctrl-C or a crash: ``torch.load(path, weights_only=True)["model"]``.
- ``fold<i>/best.pt`` is a plain state dict: the weights with the lowest validation median error, what is exported.
- ``fold<i>/done.json`` (``{"best_median_mm", "epochs"}``) marks a finished fold. One small file per fold rather than
  a run-level progress file, so a fold folder describes itself. A resumed run loads a finished fold's best.pt and
  never retrains it.
- No random state is stored: everything random in an epoch (the loader's shuffle, the augmentation, torch's global
  generator) is seeded from (seed, fold, epoch) when the epoch starts. An epoch redone after a kill draws the same
  numbers, so a resumed run ends with the weights of an uninterrupted one, and a kill loses at most the epoch in
  progress.
- A resumed fold's log.csv is appended to; rows of epochs after the checkpoint are dropped first, so each epoch
  appears once.
- The run's config.yaml is the truth: a resume that changes a setting of the training itself is refused; only where
  and how fast it runs (:data:`HARMLESS`) may change. The resumed run continues in its folder, in place.
- One exception: ``--resume --epochs N`` with N above the saved number extends a run, finished or not, to N epochs
  (nnU-Net's "continue training"). Every epoch's learning rate depends on the epoch alone (``lr``, times
  ``lr_drop_factor`` from ``lr_drop_epoch`` on) and every epoch is seeded from (seed, fold, epoch), so the extended
  run ends with the weights of a run started with N epochs; config.yaml is rewritten with N, and the model and the
  test evaluation are exported again. The extension may add a learning-rate drop (``--lr-drop-epoch E``) with E at or
  after the saved number of epochs, as no epoch already run changes its rate. Fewer epochs than saved are refused.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import pickle
import sys
from pathlib import Path

import numpy as np
import torch

from AorticRootLandmarksLib.errors import InputError
from AorticRootLandmarksLib.inference import REFINER_FOLDER
from AorticRootLandmarksLib.outputs import is_tool_output, replacing_file

from .config import TrainConfig

LOG_COLUMNS = ("epoch", "train_loss", "val_median_mm", "val_mean_mm", "val_max_mm", "seconds")
#: Version of the ``last.pt`` resume checkpoint.
CHECKPOINT_FORMAT = 1
#: Written into a fold folder when the fold is finished.
DONE = "done.json"
#: Settings a resumed run may change: where and how fast it runs, not what it computes.
HARMLESS = ("out", "device", "devices", "threads", "cache_dir")
#: The learning-rate schedule's settings: an extension (``--resume --epochs N``) may set them if every epoch of the
#: saved run keeps its rate, i.e. the drop comes after the saved run's last epoch.
LR_SCHEDULE = ("lr_drop_epoch", "lr_drop_factor")


def fold_finished(folder: Path, epochs: int) -> bool:
    """True if the fold folder has its done.json for at least `epochs` epochs (fewer: a run being extended)."""
    try:
        return int(json.loads((folder / DONE).read_text(encoding="utf-8"))["epochs"]) >= epochs
    except (OSError, ValueError, KeyError, TypeError):
        return False


def save_atomic(state: dict, path: Path) -> None:
    """torch.save, atomically: a kill leaves the old file or the new one, never half of one."""
    with replacing_file(path) as tmp:
        torch.save(state, tmp)


def write_json(data: dict, path: Path) -> None:
    with replacing_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def load_checkpoint(path: Path, network, optimizer, device) -> dict:
    """Load a ``last.pt`` into `network` and `optimizer`; returns its epoch, steps and best_median."""
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
        raise InputError(f"{path}: cannot read the checkpoint ({type(err).__name__}); cannot resume") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path}: not a resume checkpoint (format {CHECKPOINT_FORMAT}); cannot resume")
    network.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    return {key: checkpoint[key] for key in ("epoch", "steps", "best_median")}


def open_log(path: Path, start: int):
    """The fold's log.csv, open for appending; only rows of epochs before `start` are kept (each epoch once)."""
    kept = []
    if start > 0 and path.is_file():
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))[1:]
        # a row cut short by a kill has too few fields
        kept = [r for r in rows if len(r) == len(LOG_COLUMNS) and r[0].isdigit() and int(r[0]) < start]
    with replacing_file(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([LOG_COLUMNS, *kept])
    return path.open("a", newline="", encoding="utf-8")


def save_checkpoint(folder: Path, network, optimizer, state: dict) -> None:
    checkpoint = {"format": CHECKPOINT_FORMAT, "model": network.state_dict(), "optimizer": optimizer.state_dict()}
    save_atomic({**checkpoint, **state}, folder / "last.pt")


def log_epoch(handle, epoch: int, losses: list[float], errors: np.ndarray, seconds: float) -> None:
    row = [epoch, np.mean(losses), float(np.median(errors)), errors.mean(), errors.max(), seconds]
    csv.writer(handle).writerow([f"{v:.5g}" if isinstance(v, float) else v for v in row])
    handle.flush()


def resume_config(run: str | Path, **overrides) -> TrainConfig:
    """The config.yaml of a run folder, with `overrides` (those not None) on top: the config ``--resume`` continues.

    Raises:
        InputError: `run` is not a run folder written by ``aortic-root train``.
    """
    run = Path(run)
    if not is_tool_output(run) or not (run / "config.yaml").is_file():
        raise InputError(f"{run}: not a run folder of aortic-root train (no config.yaml written by it); cannot resume")
    return TrainConfig.from_yaml(run / "config.yaml", **overrides)


def conflicting_keys(saved: dict, given: dict) -> list[str]:
    """Settings (config fields as dicts) whose values differ, ignoring the :data:`HARMLESS` ones."""

    def same(key: str) -> bool:
        if key == "manifest":  # the same file, however it was written
            return Path(saved[key]).resolve() == Path(given[key]).resolve()
        return saved.get(key) == given.get(key)

    return [key for key in given if key not in HARMLESS and not same(key)]


def resumed_config(config: TrainConfig, force: bool) -> TrainConfig:
    """The saved config of run folder ``config.out``, with the harmless settings of `config`; refuses all else."""
    if force:
        raise InputError(f"{config.out}: --resume continues a run in place and --force replaces it; give one of them")
    saved = resume_config(config.out)
    extend = config.epochs > saved.epochs  # more epochs: continue the run (see the module docstring)
    # an extension may also add a learning-rate drop, if no epoch of the saved run changes its rate
    same_rates = all(saved.learning_rate(e) == config.learning_rate(e) for e in range(saved.epochs))
    extended = {"epochs", *(LR_SCHEDULE if same_rates else ())} if extend else set()
    differing = conflicting_keys(dataclasses.asdict(saved), dataclasses.asdict(config))
    differing = [key for key in differing if key not in extended]
    if differing:
        fewer = " (a run can be extended to more epochs, not cut to fewer)" if "epochs" in differing else ""
        later = (" (an extension may drop the learning rate only from an epoch after the saved run's last)"
                 if extend and set(differing) & set(LR_SCHEDULE) else "")  # fmt: skip
        raise InputError(
            f"{Path(config.out) / 'config.yaml'}: the run was started with other {', '.join(differing)}{fewer}"
            f"{later}; resume with its settings (the saved config is used) or start a new run"
        )
    kept = {key: getattr(config, key) for key in (*HARMLESS, *sorted(extended))}
    return dataclasses.replace(saved, **kept)


def record_extension(run: Path, config: TrainConfig) -> None:
    """Rewrite the run's config.yaml with the epochs (and learning-rate drop) of `config` when a resume extends it;
    called once nothing can refuse the resume any more, so a refused one leaves the run folder as it was."""
    saved = resume_config(run)
    if config.epochs > saved.epochs:
        schedule = {key: getattr(config, key) for key in LR_SCHEDULE}
        with replacing_file(run / "config.yaml") as tmp:
            dataclasses.replace(saved, epochs=config.epochs, **schedule).to_yaml(tmp)
        print(f"{run}: extending the run from {saved.epochs} to {config.epochs} epochs", file=sys.stderr)


def check_split(path: Path, named: dict) -> None:
    """Refuse to resume a run whose manifest changed (its split differs); write split.json if a kill left none."""
    if not path.is_file():
        write_json(named, path)
    elif json.loads(path.read_text(encoding="utf-8")) != named:
        raise InputError(f"{path}: the manifest's cases changed since the run started; cannot resume")


def run_finished(run: str | Path, config: TrainConfig) -> bool:
    """True if every fold of a run folder is finished for ``config.epochs``, its model exported for as many (a second
    stage's in ``model/refine/``) and (with a test split) evaluated."""
    run = Path(run)
    meta = run / "model" / (REFINER_FOLDER if config.stage == "refine" else "") / "model.json"
    try:
        exported = int(json.loads(meta.read_text(encoding="utf-8"))["training"]["epochs"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if exported < config.epochs or not all(fold_finished(run / f"fold{i}", config.epochs) for i in range(config.folds)):
        return False
    try:
        test = json.loads((run / "split.json").read_text(encoding="utf-8"))["test"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return not test or (run / "test_evaluation").is_dir()
