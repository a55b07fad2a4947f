"""training.figures: what a sweep folder holds becomes the paper's figures; values beyond the axis carry their number;
a figure without data is skipped with the reason in the index. (A sweep that really trained: test_sweep.py.)"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from AorticRootLandmarksLib.errors import InputError
from training.figure_plots import grouped_boxes
from training.figures import figures, load_sweep

COLUMNS = ["case_id", "quality", "RCC_mm", "LCC_mm", "NCC_mm", "mean_mm", "plane_distance_mm", "plane_angle_deg"]


def test_values_beyond_the_axis_are_written_at_its_top():
    series = {"GLiP": {"RCC": [1.0, 1.2, 1.4, 1.6, 40.0]}, "MSE": {"RCC": [2.0, 2.5, 3.0, 3.5]}}
    ax = grouped_boxes(series, ["RCC"], "landmark", "error (mm)").axes[0]
    # GLiP: q1 1.2, q3 1.6, whisker limit 2.2 -> whisker 1.6 (40 is beyond it); MSE: q1 2.375, q3 3.125, limit 4.25
    # -> whisker 3.5. The axis ends 15 % above the largest whisker: 3.5 * 1.15.
    assert ax.get_ylim() == pytest.approx((0.0, 4.025))
    assert [text.get_text() for text in ax.texts] == ["40"]


def test_all_values_fit_when_none_lies_beyond_the_whiskers():
    ax = grouped_boxes({"GLiP": {"RCC": [1.0, 2.0, 3.0]}}, ["RCC"], "landmark", "error (mm)").axes[0]
    assert ax.get_ylim() == pytest.approx((0.0, 3.0 * 1.05)) and not ax.texts


def _write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _cases(errors: list[float], quality: str = "") -> list[dict]:
    """Per-case rows whose three landmark errors are all `error`."""
    return [dict(zip(COLUMNS, [f"c{i}", quality, e, e, e, e, e / 2, 2 * e], strict=True)) for i, e in enumerate(errors)]


def _fake_sweep(folder: Path, runs: dict, chosen: dict[str, str]) -> Path:
    """A sweep folder as training.sweep writes it, by hand: runs {name: (loss, sigma, penalty, cv, test, oof)}."""
    summary = []
    for name, (loss, sigma, penalty, cv, test, oof) in runs.items():
        config = {"loss": loss, "sigma": sigma, "penalty": penalty, "landmarks": ["RCC", "LCC", "NCC"]}
        (folder / name).mkdir(parents=True)
        (folder / name / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        for part, rows in (("test_evaluation", test), ("cv_evaluation", oof)):
            if rows:
                _write_csv(folder / name / part / "per_case.csv", rows)
        summary.append({"run": name, "status": "ok", "val_median_mm": cv, "error": ""})
    _write_csv(folder / "summary.csv", summary)
    _write_csv(folder / "results.csv", [{"loss": loss, "run": run} for loss, run in chosen.items()])
    return folder


def test_a_sweep_without_test_split_or_variation_skips_every_figure_and_says_why(tmp_path):
    runs = {"glip": ("glip", 1.0, None, 2.0, None, _cases([1.0, 2.0])),
            "mse": ("mse", 1.0, None, 3.0, None, _cases([2.0, 3.0]))}  # fmt: skip
    index = figures(_fake_sweep(tmp_path / "sweep", runs, {"glip": "glip", "mse": "mse"})).read_text(encoding="utf-8")
    assert index.count("*Skipped:") == 10
    assert "*Skipped: the sweep did not vary λ (penalty) for any loss.*" in index
    assert "no chosen run has test errors" in index
    assert not list((tmp_path / "sweep" / "figures").glob("*.png"))


def test_figures_show_the_chosen_runs_test_errors_and_every_runs_out_of_fold_errors(tmp_path):
    runs = {  # glip: lambda 10 (chosen) and 0 (= ot, for the penalty comparison); mse at sigma 1 and 2
        "glip10": ("glip", 1.0, None, 1.0, _cases([1.0, 2.0, 3.0], "1"), _cases([1.0, 1.0])),
        "glip0": ("glip", 1.0, 0.0, 4.0, None, _cases([5.0, 7.0])),
        "mse1": ("mse", 1.0, None, 2.0, _cases([4.0, 6.0], "2"), _cases([2.0, 4.0])),
        "mse2": ("mse", 2.0, None, 3.0, None, _cases([8.0, 8.0])),
    }
    folder = _fake_sweep(tmp_path / "sweep", runs, {"glip": "glip10", "mse": "mse1"})
    index = figures(folder).read_text(encoding="utf-8")
    assert "Skipped" not in index
    assert len(list((folder / "figures").glob("*.svg"))) == 10
    # Fig. 2, landmark RCC: the chosen runs' test errors, median [q1, q3] (n)
    assert "| GLiP | 2.00 [1.50, 2.50] (3) |" in index and "| MSE | 5.00 [4.50, 5.50] (2) |" in index
    # Fig. 12 (lambda, glip): out-of-fold errors of the glip runs with lambda 0 and 10 (default), 6 errors each
    assert "| GLiP | 6.00 [5.00, 7.00] (6) | 1.00 [1.00, 1.00] (6) |" in index
    # Fig. 7: the test cases by quality grade: glip's cases are grade 1, mse's grade 2
    assert "| GLiP | 2.00 [1.00, 3.00] (9) | – |" in index


def test_a_folder_that_is_no_sweep_is_refused(tmp_path):
    with pytest.raises(InputError, match="not a folder of aortic-root sweep"):
        load_sweep(tmp_path)
