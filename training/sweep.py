"""Sweeps: train one run per combination of settings (e.g. loss x sigma x penalty), choose per loss by
cross-validation, and evaluate only the chosen settings on the held-out test split.

The sweep folder holds ``sweep.yaml`` (the grid and the shared settings, written when the sweep starts), one ordinary
run folder per combination (config.yaml, split.json, folds, model), summary.csv and summary.png (every run and its
cross-validated error), and results.csv and results.md (per loss the chosen setting and its test errors,
training/sweep_results.py). ``aortic-root figures SWEEP`` draws the paper's figures from it (training/figures.py).

Every run uses the same split: the settings that define it (sweep_spec.SPLIT_KEYS) are shared. A run is trained
without looking at the test split (``train(..., evaluate_test=False)``); its fold models then predict their own
validation cases with the detection pipeline (``cv_predictions/``, evaluated in ``cv_evaluation/``: the
out-of-fold errors that compare settings in the figures). Per loss, the run with the lowest ``val_median_mm`` (the
mean over folds of each fold's best validation median, as train.py records it) is chosen; its fold ensemble alone is
evaluated on the test split (``test_evaluation/`` in its run folder).

Runs go one at a time, in ``workers`` local processes, or as Ray Tune trials (training/sweep_ray.py). A run that
crashes (any exception but Ctrl-C) is recorded as ``failed``, with its error, in summary.csv, and the sweep goes on;
a run stopped early by ASHA is recorded as ``stopped``. ``resume=True`` (``--resume``) continues an interrupted sweep
in place: it refuses another grid or other shared settings, skips finished and stopped runs, resumes unfinished ones
(see training/train.py) and retries failed ones.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import itertools
import json
import multiprocessing
import os
import sys
import traceback
from collections import Counter
from pathlib import Path

import numpy as np
import yaml

from AorticRootLandmarksLib.batch import detect_files
from AorticRootLandmarksLib.errors import InputError
from AorticRootLandmarksLib.evaluation import evaluate_predictions, write_report
from AorticRootLandmarksLib.inference import load_ensemble
from AorticRootLandmarksLib.io import read_manifest
from AorticRootLandmarksLib.outputs import atomic_output_dir, check_output_dir, is_tool_output, replacing_dir

from .checkpoints import DONE, conflicting_keys
from .config import TrainConfig
from .losses import make_loss
from .sweep_results import write_results
from .sweep_spec import SPLIT_KEYS, Execution, check_grid
from .train import train, training_targets

#: The sweep's grid and shared settings, written into the sweep folder when it starts.
SWEEP_FILE = "sweep.yaml"
#: Every run: its settings, status, cross-validated errors, error message.
SUMMARY_FILE = "summary.csv"
#: In a run folder: the fold models' predictions of their validation cases, and their evaluation.
CV_PREDICTIONS, CV_EVALUATION = "cv_predictions", "cv_evaluation"
#: In a run folder: written when ASHA stopped the run early (a resumed sweep leaves it stopped).
STOPPED = "stopped.json"


def combinations(grid: dict[str, list]) -> list[dict]:
    """{'loss': ['glip', 'wce'], 'sigma': [1, 2]} -> the 4 combinations, in a stable order."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]


def run_name(settings: dict) -> str:
    """The run folder of a combination: ``loss-glip_sigma-1.0`` (a list value joined by x: ``size-64x64x48``)."""
    def text(value) -> str:
        return "x".join(map(str, value)) if isinstance(value, list) else str(value).replace(os.sep, "_")

    return "_".join(f"{k}-{text(v)}" for k, v in settings.items())


def grid_settings(grid: dict | list[dict], base: TrainConfig) -> tuple[list[str], list[dict]]:
    """(keys, settings): every combination of a grid or list of grids, each with every key of all grids (a key a
    grid does not vary takes the shared value), without repeats, in order."""
    grids = grid if isinstance(grid, list) else [grid]
    keys = list(dict.fromkeys(key for g in grids for key in g))
    settings = []
    for combination in (c for g in grids for c in combinations(g)):
        full = {key: combination.get(key, getattr(base, key)) for key in keys}
        if full not in settings:
            settings.append(full)
    return keys, settings


def sweep(
    base: TrainConfig, grid: dict | list[dict], out: str | Path, force: bool = False, resume: bool = False,
    execution: Execution | None = None,
) -> Path:
    """Train every combination of `grid` on top of `base`, choose per loss, evaluate the chosen on the test split.

    Args:
        base: settings shared by all runs (its `out` is ignored).
        grid: config field -> values to try, or a list of such grids (their combinations joined).
        out: sweep folder; each run goes to ``out/<name>``.
        force: replace an existing sweep folder written by this tool.
        resume: continue the interrupted sweep in `out` (same grid and shared settings), in place.
        execution: one run at a time (default), local worker processes, or Ray (sweep_spec.Execution).

    Returns:
        Path of summary.csv (results.csv and results.md lie next to it).

    Raises:
        InputError: bad settings, a sweep that cannot be resumed, or every run failed (after the summary is written).
    """
    execution = (execution or Execution()).validate()
    base, grid = _shared_split(base, check_grid(grid))
    keys, settings = grid_settings(grid, base)
    configs = [dataclasses.replace(base, **s).validate() for s in settings]
    _check_losses(settings, configs)
    cases = read_manifest(base.manifest, base.landmarks)  # a bad manifest is refused before the sweep folder exists
    names = [run_name(s) for s in settings]
    if len(set(names)) != len(names):  # e.g. values that differ only in a character a folder name cannot hold
        raise InputError(f"grid: two combinations share a run folder name ({Counter(names).most_common(1)[0][0]})")
    if resume:
        out = _resumable_sweep(out, base, grid, force)
        rows = _sweep_in(out, keys, settings, names, configs, execution, resume=True)
    else:
        check_output_dir(out, force, [base.manifest, *(c.image for c in cases)])
        with replacing_dir(out, force, [base.manifest]) as out:
            record = {"grid": grid, "base": dataclasses.asdict(base)}
            (out / SWEEP_FILE).write_text(yaml.safe_dump(record, sort_keys=False), encoding="utf-8")
            rows = _sweep_in(out, keys, settings, names, configs, execution)
    summary = Path(out) / SUMMARY_FILE
    if not any(row["status"] == "ok" for row in rows):
        raise InputError(f"{summary}: every run of the sweep failed (the errors are in the summary)")
    return summary


def _shared_split(base: TrainConfig, grid):
    """A split setting given once in the grid (e.g. ``--folds 2``) is a shared setting: moved into `base`."""
    grids = grid if isinstance(grid, list) else [grid]
    shared = {key: values[0] for g in grids for key, values in g.items() if key in SPLIT_KEYS}
    for key in shared:
        if len({json.dumps(g[key]) for g in grids if key in g}) > 1:
            raise InputError(f"grid: {key} defines the split, which every run of a sweep shares: give one value")
    kept = [{k: v for k, v in g.items() if k not in shared} for g in grids]
    if not all(kept):
        raise InputError("grid: give at least one setting with several values besides the split's")
    return dataclasses.replace(base, **shared), kept if isinstance(grid, list) else kept[0]


def _check_losses(settings: list[dict], configs: list[TrainConfig]) -> None:
    """Refuse a combination no loss can be built for (e.g. loss ot with a penalty) before any training."""
    for values, config in zip(settings, configs, strict=True):
        try:
            make_loss(config.loss, config.penalty, config.penalty_target, config.ot_reduction)
        except InputError as err:
            shown = ", ".join(f"{k}={v}" for k, v in values.items())
            raise InputError(f"grid: the combination {shown} cannot run ({err}); use a list of grids "
                             "(docs/sweep_example.yaml)") from None


def _sweep_in(out: Path, keys, settings, names, configs, execution: Execution, resume: bool = False) -> list[dict]:
    """Run everything into `out`; write summary.csv/png and the results; the summary rows."""
    jobs = []
    for name, config in zip(names, configs, strict=True):
        config.out = str((Path(out) / name).resolve())  # absolute: Ray trials run in other working folders
        jobs.append((name, config))
    rows = [{**values, **row} for values, row in zip(settings, run_jobs(jobs, execution, resume), strict=True)]
    write_summary(out, rows, keys)
    write_results(out, rows, keys, dict(jobs))
    return rows


def _resumable_sweep(out: str | Path, base: TrainConfig, grid, force: bool) -> Path:
    """The sweep folder `out`, if it can be resumed with `base` and `grid`; else one-line InputError."""
    out = Path(out)
    if force:
        raise InputError(f"{out}: --resume continues a sweep in place and --force replaces it; give one of them")
    path = out / SWEEP_FILE
    if not is_tool_output(out) or not path.is_file():
        raise InputError(f"{out}: not a folder of aortic-root sweep (no {SWEEP_FILE} written by it); cannot resume")
    try:
        saved = yaml.safe_load(path.read_text(encoding="utf-8"))
        saved_grid, saved_base = saved["grid"], dict(saved["base"])
    except (OSError, UnicodeDecodeError, yaml.YAMLError, TypeError, KeyError, ValueError):
        raise InputError(f"{path}: cannot read the sweep's grid and settings; cannot resume") from None
    if json.dumps(saved_grid) != json.dumps(grid):  # the same keys, values and order
        saved_keys = saved_grid if isinstance(saved_grid, dict) else {}
        given = grid if isinstance(grid, dict) else {}
        differing = [k for k in dict.fromkeys([*saved_keys, *given]) if saved_keys.get(k) != given.get(k)]
        raise InputError(f"{path}: the sweep was started with another grid ({', '.join(differing) or 'grids'}); "
                         "start a new sweep")
    differing = conflicting_keys(saved_base, dataclasses.asdict(base))
    if differing:
        raise InputError(f"{path}: the sweep was started with other {', '.join(differing)}; start a new sweep")
    return out


def run_jobs(jobs: list[tuple[str, TrainConfig]], execution: Execution, resume: bool = False) -> list[dict]:
    """One row per (name, config): status (ok / failed / stopped), val_median_mm, oof_median_mm, run, error."""
    if execution.ray:
        from .sweep_ray import run_on_ray

        return run_on_ray(jobs, execution, resume)
    if execution.workers > 1:
        return _run_in_processes(jobs, execution.workers, resume)
    return [run_one(config, name, resume) for name, config in jobs]


def _run_in_processes(jobs: list[tuple[str, TrainConfig]], workers: int, resume: bool) -> list[dict]:
    """Runs in `workers` local processes (each with its share of the CPU threads unless threads is set)."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = [pool.submit(run_one, dataclasses.replace(config, threads=config.threads or threads), name, resume)
                   for name, config in jobs]  # fmt: skip
        rows = []
        for (name, _), future in zip(jobs, futures, strict=True):
            try:
                rows.append(future.result())
            except Exception as err:  # the worker process itself died (killed, out of memory)
                rows.append(failed_row(name, err))
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return rows


def run_one(config: TrainConfig, name: str, resume: bool = False, on_epoch=None) -> dict:
    """Train one run (resuming: skip it if trained, else continue it) and evaluate it out of fold; a crash is
    recorded, Ctrl-C stops the sweep. `on_epoch` is passed to ``train`` (Ray reports there)."""
    run = Path(config.out)
    try:
        if resume and (run / STOPPED).is_file():
            return stopped_row(name, json.loads((run / STOPPED).read_text(encoding="utf-8")))
        if not (resume and trained(run, config.folds)):
            resumable = resume and (run / "config.yaml").is_file()
            # resuming, a folder this tool left without config.yaml (it failed at once) is started again
            train(config, force=resume and not resumable, command=f"sweep {name}", resume=resumable,
                  evaluate_test=False, on_epoch=on_epoch)  # fmt: skip
        oof = evaluate_out_of_fold(run, config)
        median = float(np.mean(validation_medians(run)))
    except Exception as err:  # one failed run must not end the sweep; KeyboardInterrupt is not an Exception
        if not isinstance(err, InputError):
            traceback.print_exc()
        return failed_row(name, err)
    return {"status": "ok", "val_median_mm": median, "oof_median_mm": oof, "run": name, "error": ""}


def failed_row(name: str, err: BaseException) -> dict:
    error = f"{type(err).__name__}: {_first_line(err)}"
    print(f"sweep: run {name} failed: {error}", file=sys.stderr)
    return {"status": "failed", "val_median_mm": None, "oof_median_mm": None, "run": name, "error": error}


def stopped_row(name: str, record: dict) -> dict:
    """A run ASHA stopped: its last validation median (not comparable with finished runs, never chosen)."""
    error = f"stopped early by ASHA after {record.get('epochs', '?')} epoch(s)"
    return {"status": "stopped", "val_median_mm": record.get("val_median_mm"), "oof_median_mm": None, "run": name,
            "error": error}  # fmt: skip


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else ""


def trained(run: Path, folds: int) -> bool:
    """Every fold finished and the ensemble exported (a sweep's runs have no test evaluation of their own)."""
    return (run / "model" / "model.json").is_file() and all((run / f"fold{i}" / DONE).is_file() for i in range(folds))


def validation_medians(run: Path) -> list[float]:
    """Best validation median (mm) of each fold, read back from the fold logs."""
    medians = []
    for log in sorted(run.glob("fold*/log.csv")):
        with log.open(encoding="utf-8") as handle:
            medians.append(min(float(r["val_median_mm"]) for r in csv.DictReader(handle)))
    return medians


def evaluate_out_of_fold(run: Path, config: TrainConfig) -> float:
    """Each fold model detects its own validation cases (``cv_predictions/fold<i>/``); evaluated together in
    ``cv_evaluation/`` (evaluation.write_report). Kept when there. Returns the median error over all landmarks, mm."""
    folder = run / CV_EVALUATION
    if not (folder / "summary.json").is_file():
        split = json.loads((run / "split.json").read_text(encoding="utf-8"))
        cases = {c.case_id: c for c in training_targets(read_manifest(config.manifest, config.landmarks), config)}
        ensemble, names, predictions = load_ensemble(run / "model", config.device), config.target_names, {}
        for fold, part in enumerate(split["folds"]):
            images = [cases[case].image for case in part["val"]]
            found = detect_files(images, run / CV_PREDICTIONS / f"fold{fold}", _fold_model(ensemble, fold, config),
                                 force=True, progress=False, log=lambda line: None)  # fmt: skip
            predictions.update({case: d.positions_lps[[d.names.index(n) for n in names]] for case, d in found.items()})
        result = evaluate_predictions(predictions, [cases[case] for case in predictions], names)
        with atomic_output_dir(folder, force=True) as tmp:
            write_report(result, tmp)
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    return float(summary["summary"]["errors_mm"]["all"]["median"])


def _fold_model(ensemble, fold: int, config: TrainConfig):
    """The exported ensemble with fold `fold`'s network alone (and its second stage's, for a refine run)."""
    one = dataclasses.replace(ensemble, networks=[ensemble.networks[fold]])
    if config.stage == "refine" and ensemble.refiner is not None:
        one.refiner = dataclasses.replace(ensemble.refiner, networks=[ensemble.refiner.networks[fold]])
    return one


def write_summary(out: Path, rows: list[dict], keys: list[str]) -> Path:
    """summary.csv (every row; a failed run has an empty val_median_mm) and summary.png (the runs that finished)."""
    summary = Path(out) / SUMMARY_FILE
    with summary.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot_summary([row for row in rows if row["status"] == "ok"], keys, summary.with_suffix(".png"))
    return summary


def plot_summary(rows: list[dict], keys: list[str], path: Path) -> None:
    """Validation median error against the first numeric setting, one line per combination of the others."""
    from matplotlib.figure import Figure  # lazy: matplotlib only when a figure is drawn

    numeric = [k for k in keys if all(isinstance(r[k], (int, float)) for r in rows)]
    x_key = numeric[0] if numeric else keys[0]
    others = [k for k in keys if k != x_key]
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    groups: dict[str, list] = {}
    for row in rows:
        groups.setdefault(", ".join(f"{k}={row[k]}" for k in others) or "all", []).append(row)
    for label, group in groups.items():
        ax.plot([str(r[x_key]) for r in group], [r["val_median_mm"] for r in group], marker="o", label=label)
    ax.set_xlabel(x_key)
    ax.set_ylabel("validation median error (mm)")
    if rows:
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no run finished", ha="center", va="center", transform=ax.transAxes)
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=120)
