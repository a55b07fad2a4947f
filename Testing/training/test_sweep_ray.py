"""training.sweep_ray: a sweep as Ray Tune trials (skipped where Ray is not installed: it is an optional extra)."""

from __future__ import annotations

import csv
import json
import sys

import pytest
from helpers import tiny_cases

from AorticRootLandmarksLib.errors import InputError
from AorticRootLandmarksLib.io import write_manifest
from training.config import TrainConfig
from training.sweep import run_one, sweep
from training.sweep_ray import import_ray, trial_row
from training.sweep_spec import Execution


def test_without_ray_a_ray_sweep_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(InputError, match=r"optional extra .* pip install -e '\.\[distributed\]'"):
        import_ray()


def test_a_trial_without_its_final_report_was_stopped_and_stays_stopped(tmp_path, monkeypatch):
    run = tmp_path / "sweep" / "loss-wce"
    row = trial_row("loss-wce", {"val_median_mm": 7.5, "training_iteration": 3}, None, run)
    assert (row["status"], row["val_median_mm"]) == ("stopped", 7.5)
    assert json.loads((run / "stopped.json").read_text(encoding="utf-8")) == {"epochs": 3, "val_median_mm": 7.5}
    monkeypatch.setattr("training.sweep.train", lambda *a, **k: pytest.fail("a stopped run was trained again"))
    resumed = run_one(TrainConfig(out=str(run)), "loss-wce", resume=True)
    assert resumed["status"] == "stopped" and "ASHA after 3 epoch(s)" in resumed["error"]
    finished = {"status": "ok", "val_median_mm": 2.0, "oof_median_mm": 2.5, "run": "r", "error": "", "finished": True}
    assert trial_row("r", finished, None, run)["val_median_mm"] == 2.0
    assert trial_row("r", {}, RuntimeError("worker died"), run)["error"] == "RuntimeError: worker died"


@pytest.fixture
def base(tmp_path) -> TrainConfig:
    write_manifest(tmp_path / "manifest.csv", tiny_cases(tmp_path, 4))
    return TrainConfig(manifest=str(tmp_path / "manifest.csv"), size=[16, 16, 16], spacing=2.0, features=[4, 8],
                       epochs=2, batch_size=1, folds=2, test_fraction=0.0, cache_dir=str(tmp_path / "cache"))


@pytest.mark.slow
def test_two_tiny_trials_on_a_local_ray_instance(base, tmp_path):
    pytest.importorskip("ray.tune", reason="Ray is an optional extra: pip install -e '.[distributed]'")
    execution = Execution(ray="local", cpus_per_trial=1)
    summary = sweep(base, {"sigma": [1.0, 2.0]}, tmp_path / "sweep", execution=execution)
    with summary.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["sigma"], row["status"]) for row in rows] == [("1.0", "ok"), ("2.0", "ok")], rows
    for row in rows:
        run = tmp_path / "sweep" / row["run"]
        assert float(row["val_median_mm"]) >= 0 and (run / "model" / "model.json").is_file()
        assert (run / "cv_evaluation" / "summary.json").is_file()
    assert (tmp_path / "sweep" / "ray" / "tune").is_dir()  # Ray Tune's own records
    assert (tmp_path / "sweep" / "results.md").is_file()
