"""Sweeps: train one run per combination of settings (e.g. loss x sigma x penalty) and compare them.

The sweep folder holds ``sweep.yaml`` (the grid and the shared settings, written when the sweep starts), one ordinary
run folder per combination (config.yaml, folds, model), and summary.csv and summary.png: the validation median error
of every combination (the paper's stability-at-small-sigma comparison).

A run that crashes (any exception but Ctrl-C) is recorded as ``failed``, with its error, in summary.csv, and the sweep
goes on; the summary is written whatever failed, and the plot shows the runs that finished. ``resume=True``
(``aortic-root sweep ... --resume``) continues an interrupted sweep in place: it refuses another grid or other shared
settings, skips finished runs, resumes unfinished ones (see training/train.py) and retries failed ones.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import sys
import traceback
from pathlib import Path

import numpy as np
import yaml

from AorticRootLandmarksLib.errors import InputError
from AorticRootLandmarksLib.io import read_manifest
from AorticRootLandmarksLib.outputs import check_output_dir, is_tool_output, replacing_dir

from .config import TrainConfig
from .train import conflicting_keys, run_finished, train

#: The sweep's grid and shared settings, written into the sweep folder when it starts.
SWEEP_FILE = "sweep.yaml"


def combinations(grid: dict[str, list]) -> list[dict]:
    """{'loss': ['glip', 'wce'], 'sigma': [1, 2]} -> the 4 combinations, in a stable order."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]


def run_name(settings: dict) -> str:
    return "_".join(f"{k}-{v}" for k, v in settings.items())


def sweep(base: TrainConfig, grid: dict[str, list], out: str | Path, force: bool = False, resume: bool = False) -> Path:
    """Train every combination of `grid` on top of `base`; write summary.csv and summary.png into `out`.

    Args:
        base: settings shared by all runs (its `out` is ignored).
        grid: config field -> values to try; fields must exist in TrainConfig.
        out: sweep folder; each run goes to ``out/<name>``.
        force: replace an existing sweep folder written by this tool.
        resume: continue the interrupted sweep in `out` (same grid and shared settings), in place.

    Returns:
        Path of summary.csv.

    Raises:
        InputError: bad settings, a sweep that cannot be resumed, or every run failed (after the summary is written).
    """
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(grid) - fields)
    if unknown:
        raise InputError(f"sweep: unknown setting(s) {', '.join(unknown)}")
    settings = combinations(grid)
    configs = [dataclasses.replace(base, **s).validate() for s in settings]
    cases = read_manifest(base.manifest, base.landmarks)  # a bad manifest is refused before the sweep folder exists
    if resume:
        out = _resumable_sweep(out, base, grid, force)
        rows = _run_all(out, settings, configs, resume=True)
    else:
        check_output_dir(out, force, [base.manifest, *(c.image for c in cases)])
        with replacing_dir(out, force, [base.manifest]) as out:
            record = {"grid": grid, "base": dataclasses.asdict(base)}
            (out / SWEEP_FILE).write_text(yaml.safe_dump(record, sort_keys=False), encoding="utf-8")
            rows = _run_all(out, settings, configs)
    summary = write_summary(out, rows, list(grid))
    if not any(row["status"] == "ok" for row in rows):
        raise InputError(f"{summary}: every run of the sweep failed (the errors are in the summary)")
    return summary


def _resumable_sweep(out: str | Path, base: TrainConfig, grid: dict[str, list], force: bool) -> Path:
    """The sweep folder `out`, if it can be resumed with `base` and `grid`; else one-line InputError."""
    out = Path(out)
    if force:
        raise InputError(f"{out}: --resume continues a sweep in place and --force replaces it; give one of them")
    path = out / SWEEP_FILE
    if not is_tool_output(out) or not path.is_file():
        raise InputError(f"{out}: not a folder of aortic-root sweep (no {SWEEP_FILE} written by it); cannot resume")
    try:
        saved = yaml.safe_load(path.read_text(encoding="utf-8"))
        saved_grid, saved_base = dict(saved["grid"]), dict(saved["base"])
    except (OSError, UnicodeDecodeError, yaml.YAMLError, TypeError, KeyError, ValueError):
        raise InputError(f"{path}: cannot read the sweep's grid and settings; cannot resume") from None
    if list(saved_grid.items()) != list(grid.items()):
        differing = [k for k in dict.fromkeys([*saved_grid, *grid]) if saved_grid.get(k) != grid.get(k)] or list(grid)
        raise InputError(f"{path}: the sweep was started with another grid ({', '.join(differing)}); start a new sweep")
    differing = conflicting_keys(saved_base, dataclasses.asdict(base))
    if differing:
        raise InputError(f"{path}: the sweep was started with other {', '.join(differing)}; start a new sweep")
    return out


def _run_all(out: Path, settings: list[dict], configs: list[TrainConfig], resume: bool = False) -> list[dict]:
    """One summary row per combination: its settings, status (ok/failed), val_median_mm, run and error."""
    rows = []
    for values, config in zip(settings, configs, strict=True):
        config.out = str(out / run_name(values))
        rows.append({**values, **_run_one(config, run_name(values), resume)})
    return rows


def _run_one(config: TrainConfig, name: str, resume: bool) -> dict:
    """Train one run (resuming: skip it if finished, else continue it); a crash is recorded, Ctrl-C stops the sweep."""
    run = Path(config.out)
    try:
        if not (resume and run_finished(run, config.folds)):
            resumable = resume and (run / "config.yaml").is_file()
            # resuming, a folder this tool left without config.yaml (it failed at once) is started again
            train(config, force=resume and not resumable, command=f"sweep {name}", resume=resumable)
        median = float(np.mean(_validation_medians(run)))
    except Exception as err:  # one failed run must not end the sweep; KeyboardInterrupt is not an Exception
        if not isinstance(err, InputError):
            traceback.print_exc()
        error = f"{type(err).__name__}: {_first_line(err)}"
        print(f"sweep: run {name} failed: {error}", file=sys.stderr)
        return {"status": "failed", "val_median_mm": None, "run": name, "error": error}
    return {"status": "ok", "val_median_mm": median, "run": name, "error": ""}


def _first_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else ""


def _validation_medians(run: Path) -> list[float]:
    """Best validation median (mm) of each fold, read back from the fold logs."""
    medians = []
    for log in sorted(run.glob("fold*/log.csv")):
        with log.open(encoding="utf-8") as handle:
            medians.append(min(float(r["val_median_mm"]) for r in csv.DictReader(handle)))
    return medians


def write_summary(out: Path, rows: list[dict], keys: list[str]) -> Path:
    """summary.csv (every row; a failed run has an empty val_median_mm) and summary.png (the runs that finished)."""
    summary = out / "summary.csv"
    with summary.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot_summary([row for row in rows if row["status"] == "ok"], keys, out / "summary.png")
    return summary


def plot_summary(rows: list[dict], keys: list[str], path: Path) -> None:
    """Validation median error against the first numeric setting, one line per combination of the others."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    numeric = [k for k in keys if all(isinstance(r[k], (int, float)) for r in rows)]
    x_key = numeric[0] if numeric else keys[0]
    others = [k for k in keys if k != x_key]
    fig, ax = plt.subplots(figsize=(6, 4))
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
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
