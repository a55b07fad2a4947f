"""A sweep's results: per loss the setting chosen by cross-validation, evaluated on the held-out test split.

The choice reads only the runs' ``val_median_mm`` (the mean over folds of each fold's best validation median error,
from the fold logs): the test split plays no part in it. The chosen run's fold ensemble is then evaluated on the
test split (``train.evaluate_test_split``: ``test_predictions/`` and ``test_evaluation/`` in its run folder), and
nothing else is. Written into the sweep folder:

- ``results.csv``: one row per loss: the chosen run, its settings, its cross-validated errors and its test errors
  (median, mean, quartiles, max over all landmarks; median per landmark; SDR at 2 mm; plane distance and angle).
- ``results.md``: the same as a readable table, with every run of the sweep below it.
"""

from __future__ import annotations

import csv
import json
import math
import traceback
from pathlib import Path

from AorticRootLandmarksLib.io import read_manifest

from .config import TrainConfig
from .train import evaluate_test_split, training_targets

RESULTS_CSV, RESULTS_MD = "results.csv", "results.md"
#: In a run folder: the test split's evaluation (evaluation.write_report), written for the chosen runs only.
TEST_EVALUATION = "test_evaluation"


def choose(rows: list[dict], configs: dict[str, TrainConfig]) -> dict[str, dict]:
    """{loss: the summary row of the finished run with the lowest val_median_mm}, losses in order of appearance."""
    chosen: dict[str, dict] = {}
    for row in rows:
        if row["status"] != "ok":
            continue
        loss = configs[row["run"]].loss
        if loss not in chosen or row["val_median_mm"] < chosen[loss]["val_median_mm"]:
            chosen[loss] = row
    return chosen


def evaluate_chosen(chosen: dict[str, dict], configs: dict[str, TrainConfig]) -> dict[str, dict | str | None]:
    """{loss: the test evaluation (summary.json) of its chosen run}; None without a test split, the error text if
    the evaluation failed. An evaluation already on disk (a resumed sweep) is read back, not repeated."""
    tests: dict[str, dict | str | None] = {}
    for loss, row in chosen.items():
        config = configs[row["run"]]
        run = Path(config.out)
        try:
            test = json.loads((run / "split.json").read_text(encoding="utf-8"))["test"]
            if test and not (run / TEST_EVALUATION / "summary.json").is_file():
                cases = training_targets(read_manifest(config.manifest, config.landmarks), config)
                by_id = {case.case_id: case for case in cases}
                evaluate_test_split(run, [by_id[case] for case in test], config)
            summary = run / TEST_EVALUATION / "summary.json"
            tests[loss] = json.loads(summary.read_text(encoding="utf-8")) if test else None
        except Exception as err:  # the table is written whatever one evaluation did
            traceback.print_exc()
            tests[loss] = f"{type(err).__name__}: {err}".splitlines()[0]
    return tests


def result_row(loss: str, row: dict, keys: list[str], test: dict | str | None) -> dict:
    """One line of results.csv: the chosen run, its settings and errors (empty test columns without a test)."""
    line = {"loss": loss, "run": row["run"], **{k: row[k] for k in keys if k != "loss"},
            "val_median_mm": row["val_median_mm"], "oof_median_mm": row.get("oof_median_mm")}  # fmt: skip
    summary = test["summary"] if isinstance(test, dict) else {}
    errors = summary.get("errors_mm", {})
    overall = errors.get("all", {})
    line["test_cases"] = summary.get("n_cases")
    for stat in ("median", "mean", "q1", "q3", "max"):
        line[f"test_{stat}_mm"] = overall.get(stat)
    for name in test.get("landmarks", []) if isinstance(test, dict) else []:
        line[f"test_{name}_median_mm"] = errors[name]["median"]
    line["test_sdr_2mm"] = summary.get("sdr", {}).get("2.0")
    line["test_plane_distance_median_mm"] = summary.get("plane_distance_mm", {}).get("median")
    line["test_plane_angle_median_deg"] = summary.get("plane_angle_deg", {}).get("median")
    line["test_error"] = test if isinstance(test, str) else ""
    return line


def write_results(out: Path, rows: list[dict], keys: list[str], configs: dict[str, TrainConfig]) -> Path:
    """Choose per loss, evaluate the chosen on the test split, write results.csv and results.md; the .md path."""
    chosen = choose(rows, configs)
    tests = evaluate_chosen(chosen, configs)
    table = [result_row(loss, row, keys, tests[loss]) for loss, row in chosen.items()]
    columns = list(dict.fromkeys(key for line in table for key in line)) or ["loss", "run"]
    with (Path(out) / RESULTS_CSV).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows({k: _cell(line.get(k)) for k in columns} for line in table)
    path = Path(out) / RESULTS_MD
    path.write_text(_markdown(Path(out), rows, keys, table, configs), encoding="utf-8")
    return path


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _mm(value, digits: int = 2) -> str:
    return "–" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.{digits}f}"


def _markdown(out: Path, rows: list[dict], keys: list[str], table: list[dict], configs) -> str:
    counts = {status: sum(row["status"] == status for row in rows) for status in ("ok", "failed", "stopped")}
    first = next(iter(configs.values()))
    lines = [
        f"# Sweep results: {out.name}", "",
        f"Manifest `{first.manifest}`; {len(rows)} runs ({counts['ok']} finished, {counts['failed']} failed, "
        f"{counts['stopped']} stopped early); {first.folds}-fold cross-validation, seed {first.seed}, "
        f"test fraction {first.test_fraction:g}, the same split for every run.", "",
        "Per loss, the setting with the lowest cross-validated median error (`val_median_mm`: the mean over folds of "
        "each fold's best validation median) is chosen; only its fold ensemble is evaluated on the held-out test "
        "split. `oof` is the median error of the fold models detecting their own validation cases.", "",
        "## The chosen setting per loss, on the test split", "",
        "| loss | setting | CV median (mm) | oof median (mm) | test cases | test median [q1, q3] (mm) | mean | max "
        "| SDR@2mm | plane distance median (mm) | plane angle median (°) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for line in table:
        setting = ", ".join(f"{k}={line[k]}" for k in keys if k != "loss") or "(shared settings)"
        sdr = "–" if line["test_sdr_2mm"] is None else f"{line['test_sdr_2mm']:.0%}"
        test = (f"{_mm(line['test_median_mm'])} [{_mm(line['test_q1_mm'])}, {_mm(line['test_q3_mm'])}]"
                if line["test_median_mm"] is not None else (line["test_error"] or "no test split"))  # fmt: skip
        lines.append(f"| {line['loss']} | {setting} | {_mm(line['val_median_mm'])} | {_mm(line['oof_median_mm'])} | "
                     f"{line['test_cases'] or 0} | {test} | {_mm(line['test_mean_mm'])} | {_mm(line['test_max_mm'])} | "
                     f"{sdr} | {_mm(line['test_plane_distance_median_mm'])} | "
                     f"{_mm(line['test_plane_angle_median_deg'], 1)} |")  # fmt: skip
    if not table:
        lines.append("| (no run finished) | | | | | | | | | | |")
    lines += ["", "## Every run", "", "| run | status | CV median (mm) | oof median (mm) | error |",
              "|---|---|---|---|---|"]
    for row in sorted(rows, key=lambda r: (r["status"] != "ok", r["val_median_mm"] or math.inf)):
        lines.append(f"| {row['run']} | {row['status']} | {_mm(row['val_median_mm'])} | "
                     f"{_mm(row.get('oof_median_mm'))} | {row['error']} |")  # fmt: skip
    return "\n".join(lines) + "\n"
