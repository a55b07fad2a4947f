"""The paper's figures from a sweep folder (``aortic-root figures SWEEP_DIR``): PNG and SVG of each, and an index.md
that places each figure next to the claim of Ishizone et al. (arXiv 2407.04921) it tests, with its numbers.

What each figure reads (see training/sweep.py for the sweep folder):

- Figs. 2, 3, 4, 7, 9, 10 (losses compared): per loss the run chosen by cross-validation (results.csv), and its
  test errors (``test_evaluation/per_case.csv``), the held-out split that judges only these runs.
- Figs. 5, 6, 11, 12 (settings compared: with and without the penalty, sigma, lambda): every finished run's
  out-of-fold errors (``cv_evaluation/per_case.csv``, the fold models on their own validation cases); for each
  (loss, value) the run with the lowest cross-validated median among those with that value.

A figure whose data the sweep lacks (no test split, no quality grades, one sigma, no lambda varied) is skipped and
the index says why. Box plots cut the y axis above the largest whisker; values beyond it are marked at the top edge
with their number, as the paper does. matplotlib is imported only when figures are drawn.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from AorticRootLandmarksLib.errors import InputError
from AorticRootLandmarksLib.evaluation import SDR_THRESHOLDS_MM
from AorticRootLandmarksLib.outputs import atomic_output_dir

from . import figure_plots as plots
from .sweep import CV_EVALUATION, SUMMARY_FILE
from .sweep_results import RESULTS_CSV, TEST_EVALUATION

#: The default penalty weight lambda of each loss when ``penalty`` is empty (losses.make_loss).
DEFAULT_PENALTY = {"glip": 10.0}
#: Axis labels of what the figures show.
LABELS_OF = {"errors": "landmark error (mm)", "plane_distance_mm": "plane distance (mm)",
             "plane_angle_deg": "plane angle (°)"}
#: Loss names as the figures print them.
LABELS = {"glip": "GLiP", "ot": "OT", "wce": "WCE", "focal": "focal", "mse": "MSE", "l1": "L1", "sl1": "smooth L1"}


@dataclass
class Run:
    """A finished run of the sweep: its settings and per-case errors (rows of per_case.csv; None if absent)."""

    name: str
    loss: str
    sigma: float
    penalty: float
    val_median: float
    landmarks: list[str]
    test: list[dict] | None
    oof: list[dict] | None

    @property
    def family(self) -> str:
        """ot is glip without the penalty: one family for the with/without comparison."""
        return "glip" if self.loss == "ot" else self.loss


@dataclass
class Sweep:
    runs: list[Run]
    chosen: dict[str, Run]  # loss -> run chosen by cross-validation


def _read_csv(path: Path) -> list[dict] | None:
    """Rows of a CSV with numbers made floats ('' -> NaN); None if the file is missing."""
    if not path.is_file():
        return None
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [{key: _number(key, value) for key, value in row.items()} for row in rows]


def _number(key: str, value: str):
    if key.endswith(("_mm", "_deg")):
        return float(value) if value not in ("", None) else math.nan
    return value


def load_sweep(folder: str | Path) -> Sweep:
    """The finished runs of a sweep folder and the chosen run per loss.

    Raises:
        InputError: `folder` has no summary.csv (not a sweep folder) or no finished run.
    """
    folder = Path(folder)
    summary = _read_csv(folder / SUMMARY_FILE)
    if summary is None:
        raise InputError(f"{folder}: no {SUMMARY_FILE}; not a folder of aortic-root sweep")
    runs = {}
    for row in summary:
        if row["status"] == "ok" and (folder / row["run"] / "config.yaml").is_file():
            runs[row["run"]] = _load_run(folder / row["run"], row)
    if not runs:
        raise InputError(f"{folder / SUMMARY_FILE}: no run of the sweep finished; nothing to draw")
    chosen = {row["loss"]: runs[row["run"]] for row in _read_csv(folder / RESULTS_CSV) or [] if row["run"] in runs}
    return Sweep(list(runs.values()), chosen)


def _load_run(run: Path, row: dict) -> Run:
    config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    loss, penalty = config["loss"], config.get("penalty")
    return Run(
        run.name, loss, float(config["sigma"]), float(DEFAULT_PENALTY.get(loss, 0.0) if penalty is None else penalty),
        float(row["val_median_mm"]), list(config["landmarks"]),
        _read_csv(run / TEST_EVALUATION / "per_case.csv"), _read_csv(run / CV_EVALUATION / "per_case.csv"),
    )  # fmt: skip


def landmark_errors(rows: list[dict], landmarks: list[str]) -> np.ndarray:
    """Every landmark error of every case (mm), pooled."""
    return np.array([row[f"{name}_mm"] for row in rows for name in landmarks], dtype=float)


def column(rows: list[dict], key: str) -> np.ndarray:
    return np.array([row.get(key, math.nan) for row in rows], dtype=float)


# --- the figures: each returns (title, data note, figure, numbers) or a string saying why it was skipped -------------


def _with_test(sweep: Sweep) -> dict[str, Run] | str:
    tested = {loss: run for loss, run in sweep.chosen.items() if run.test}
    if not tested:
        return "no chosen run has test errors (no results.csv, or the sweep has no test split: test_fraction 0)"
    return tested


TEST_NOTE = "test split, per loss the setting chosen by cross-validation"
OOF_NOTE = "out-of-fold errors of the fold models on their validation cases (the test split judges only the chosen)"


def fig_errors(sweep: Sweep):
    tested = _with_test(sweep)
    if isinstance(tested, str):
        return tested
    names = next(iter(tested.values())).landmarks
    series = {LABELS.get(loss, loss): {name: column(run.test, f"{name}_mm") for name in names}
              for loss, run in tested.items()}  # fmt: skip
    for loss, run in tested.items():
        series[LABELS.get(loss, loss)]["all"] = landmark_errors(run.test, names)
    fig = plots.grouped_boxes(series, [*names, "all"], "landmark", "error (mm)")
    return "Landmark error per loss", TEST_NOTE, fig, plots.numbers(series)


def _plane(key: str, label: str, title: str):
    def figure(sweep: Sweep):
        tested = _with_test(sweep)
        if isinstance(tested, str):
            return tested
        series = {LABELS.get(loss, loss): {"": column(run.test, key)} for loss, run in tested.items()}
        if all(np.isnan(v[""]).all() for v in series.values()):
            return "no plane metrics (the landmarks are not the three hinge points RCC, LCC, NCC)"
        return title, TEST_NOTE, plots.grouped_boxes(series, [""], "", label), plots.numbers(series)

    return figure


def _best(runs: list[Run]) -> Run:
    return min(runs, key=lambda run: run.val_median)


def fig_penalty(metric: str):
    """With vs without the grid penalty, per loss family: landmark errors ('errors') or the plane metrics."""

    def figure(sweep: Sweep):
        pairs = {}
        for family in dict.fromkeys(run.family for run in sweep.runs):
            runs = [run for run in sweep.runs if run.family == family and run.oof]
            without, with_ = [r for r in runs if r.penalty == 0], [r for r in runs if r.penalty > 0]
            if without and with_:
                pairs[LABELS.get(family, family)] = {"without penalty": _best(without), "with penalty": _best(with_)}
        if not pairs:
            return "no loss was run both with and without the grid penalty (penalty 0 and > 0, or ot and glip)"
        keys = ("errors",) if metric == "errors" else ("plane_distance_mm", "plane_angle_deg")
        panels = {key: {side: {family: _values(pair[side], key) for family, pair in pairs.items()}
                        for side in ("without penalty", "with penalty")} for key in keys}  # fmt: skip
        fig = plots.panels(panels, list(pairs), "loss", LABELS_OF)
        title = "With vs without the grid penalty" + ("" if metric == "errors" else ": annulus plane")
        chosen = "; ".join(f"{family}: {pair['with penalty'].name} vs {pair['without penalty'].name}"
                           for family, pair in pairs.items())  # fmt: skip
        table = [line for key in keys for line in [f"*{LABELS_OF[key]}:*", "", *plots.numbers(panels[key]), ""]]
        return title, f"{OOF_NOTE}; runs {chosen}", fig, table[:-1]

    return figure


def _values(run: Run, key: str) -> np.ndarray:
    return landmark_errors(run.oof, run.landmarks) if key == "errors" else column(run.oof, key)


def fig_quality(sweep: Sweep):
    tested = _with_test(sweep)
    if isinstance(tested, str):
        return tested
    grades = sorted({row["quality"] for run in tested.values() for row in run.test if row.get("quality")})
    if not grades:
        return "the test cases have no CT quality grade (manifest column quality)"
    series = {LABELS.get(loss, loss): {g: landmark_errors([r for r in run.test if r.get("quality") == g], run.landmarks)
                                       for g in grades} for loss, run in tested.items()}  # fmt: skip
    fig = plots.grouped_boxes(series, grades, "CT quality grade", "landmark error (mm)")
    return "Landmark error by CT quality grade", TEST_NOTE, fig, plots.numbers(series)


def fig_sdr(per_landmark: bool):
    def figure(sweep: Sweep):
        tested = _with_test(sweep)
        if isinstance(tested, str):
            return tested
        names = next(iter(tested.values())).landmarks
        groups = names if per_landmark else ["all"]
        curves = {group: {LABELS.get(loss, loss): (landmark_errors(run.test, run.landmarks) if group == "all"
                                                   else column(run.test, f"{group}_mm"))
                          for loss, run in tested.items()} for group in groups}  # fmt: skip
        fig = plots.sdr_curves(curves, SDR_THRESHOLDS_MM)
        title = "Success detection rate" + (" per landmark" if per_landmark else "")
        return title, TEST_NOTE, fig, plots.sdr_numbers(curves, SDR_THRESHOLDS_MM)

    return figure


def fig_sensitivity(attribute: str, symbol: str):
    """Error against sigma or lambda, per loss (family for lambda), where the sweep varied it."""

    def figure(sweep: Sweep):
        grouping = "family" if attribute == "penalty" else "loss"
        series = {}
        for group in dict.fromkeys(getattr(run, grouping) for run in sweep.runs):
            runs = [run for run in sweep.runs if getattr(run, grouping) == group and run.oof]
            values = sorted({getattr(run, attribute) for run in runs})
            if len(values) > 1:
                best = {v: _best([r for r in runs if getattr(r, attribute) == v]) for v in values}
                series[LABELS.get(group, group)] = {f"{v:g}": landmark_errors(r.oof, r.landmarks)
                                                    for v, r in best.items()}  # fmt: skip
        if not series:
            return f"the sweep did not vary {symbol} ({attribute}) for any loss"
        categories = sorted({c for s in series.values() for c in s}, key=float)
        unit = " (mm)" if attribute == "sigma" else ""
        fig = plots.grouped_boxes(series, categories, f"{symbol}{unit}", "landmark error (mm)")
        return f"Sensitivity to {symbol}", OOF_NOTE, fig, plots.numbers(series)

    return figure


#: (file name, paper figure, the paper's claim (paraphrased), how to draw it).
FIGURES = [
    ("fig02_errors", "Fig. 2", "GLiP gives the lowest hinge-point errors of the loss functions compared, for each of "
     "RCC, LCC and NCC (median below 2 mm on the authors' CT).", fig_errors),
    ("fig03_plane_distance", "Fig. 3", "The annulus plane through GLiP's hinge points lies closest to the true plane "
     "(average projection distance).", _plane("plane_distance_mm", "plane distance (mm)", "Annulus plane distance")),
    ("fig04_plane_angle", "Fig. 4", "...and is tilted least against it (angle between the planes).",
     _plane("plane_angle_deg", "plane angle (°)", "Annulus plane angle")),
    ("fig05_penalty_errors", "Fig. 5", "The grid Lipschitz penalty lowers the landmark error of a loss compared with "
     "the same loss without it (GLiP vs. OT).", fig_penalty("errors")),
    ("fig06_penalty_planes", "Fig. 6", "...and improves the annulus plane metrics as well.", fig_penalty("planes")),
    ("fig07_quality", "Fig. 7", "Errors grow as the CT quality grade worsens; GLiP remains the most accurate in each "
     "grade.", fig_quality),
    ("fig09_sdr", "Fig. 9", "GLiP has the highest success detection rate at the clinically relevant thresholds.",
     fig_sdr(per_landmark=False)),
    ("fig10_sdr_landmarks", "Fig. 10", "...for each hinge point.", fig_sdr(per_landmark=True)),
    ("fig11_sigma", "Fig. 11", "GLiP is stable across the heatmap width sigma, while the conventional heatmap losses "
     "fail at small sigma (the precision-stability trade-off the OT loss breaks).", fig_sensitivity("sigma", "σ")),
    ("fig12_lambda", "Fig. 12", "GLiP's error is insensitive to the penalty weight lambda over a wide range.",
     fig_sensitivity("penalty", "λ")),
]  # fmt: skip


def figures(sweep_dir: str | Path, out: str | Path | None = None, force: bool = False) -> Path:
    """Draw every figure the sweep has data for into `out` (default ``SWEEP_DIR/figures``); returns index.md.

    Raises:
        InputError: not a sweep folder, no finished run, or a refused output folder.
    """
    sweep_dir = Path(sweep_dir)
    out = Path(out) if out is not None else sweep_dir / "figures"
    sweep = load_sweep(sweep_dir)
    with atomic_output_dir(out, force, [sweep_dir / SUMMARY_FILE]) as tmp:
        entries = []
        for name, label, claim, draw in FIGURES:
            drawn = draw(sweep)
            if not isinstance(drawn, str):
                plots.save(drawn[2], tmp / name)
            entries.append((name, label, claim, drawn))
        (tmp / "index.md").write_text(index_markdown(sweep_dir, entries), encoding="utf-8")
    return out / "index.md"


def index_markdown(sweep_dir: Path, entries: list) -> str:
    lines = [f"# Figures of the sweep {sweep_dir.name}", "",
             "Each figure beside the claim of Ishizone et al., *Aortic root landmark localization with optimal "
             "transport loss for heatmap regression* (arXiv 2407.04921), that it tests, paraphrased; the numbers "
             "under it are this sweep's: median [q1, q3] (n). Fig. 1 (the method) and Fig. 8 (example images) "
             "have no counterpart here.", ""]  # fmt: skip
    for name, label, claim, drawn in entries:
        lines += [f"## {label}: {drawn[0] if not isinstance(drawn, str) else name}", "",
                  f"**The paper's claim:** {claim}", ""]  # fmt: skip
        if isinstance(drawn, str):
            lines += [f"*Skipped: {drawn}.*", ""]
            continue
        lines += [f"**Data:** {drawn[1]}.", "", f"![{label}]({name}.png)", "", f"[SVG]({name}.svg)", ""]
        lines += [*drawn[3], ""]
    return "\n".join(lines)
