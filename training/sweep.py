"""Sweeps: train one run per combination of settings (e.g. loss x sigma x penalty) and compare them.

Each run is an ordinary run folder (config.yaml, folds, model); the sweep folder adds summary.csv and summary.png,
the validation median error of every combination (the paper's stability-at-small-sigma comparison).
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
from pathlib import Path

import numpy as np

from AorticRootLandmarksLib.errors import InputError

from .config import TrainConfig
from .train import prepare_run_dir, train


def combinations(grid: dict[str, list]) -> list[dict]:
    """{'loss': ['glip', 'wce'], 'sigma': [1, 2]} -> the 4 combinations, in a stable order."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def run_name(settings: dict) -> str:
    return "_".join(f"{k}-{v}" for k, v in settings.items())


def sweep(base: TrainConfig, grid: dict[str, list], out: str | Path, force: bool = False) -> Path:
    """Train every combination of `grid` on top of `base`; write summary.csv and summary.png into `out`.

    Args:
        base: settings shared by all runs (its `out` is ignored).
        grid: config field -> values to try; fields must exist in TrainConfig.
        out: sweep folder; each run goes to ``out/<name>``.

    Returns:
        Path of summary.csv.
    """
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(grid) - fields)
    if unknown:
        raise InputError(f"sweep: unknown setting(s) {', '.join(unknown)}")
    out = prepare_run_dir(out, force)
    rows = []
    for settings in combinations(grid):
        config = dataclasses.replace(base, out=str(out / run_name(settings)), **settings)
        run = train(config, force=False, command=f"sweep {run_name(settings)}")
        medians = _validation_medians(run)
        rows.append({**settings, "val_median_mm": float(np.mean(medians)), "run": run.name})
    summary = out / "summary.csv"
    with summary.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot_summary(rows, list(grid), out / "summary.png")
    return summary


def _validation_medians(run: Path) -> list[float]:
    """Best validation median (mm) of each fold, read back from the fold logs."""
    medians = []
    for log in sorted(run.glob("fold*/log.csv")):
        with log.open(encoding="utf-8") as handle:
            medians.append(min(float(r["val_median_mm"]) for r in csv.DictReader(handle)))
    return medians


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
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
