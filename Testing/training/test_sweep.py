"""training.sweep: a crashed run is recorded, the sweep goes on; --resume skips finished runs, finishes the rest."""

from __future__ import annotations

import csv
import dataclasses
import importlib
from pathlib import Path

import numpy as np
import pytest
from helpers import make_image

from aortic_root.cli import main
from AorticRootLandmarksLib.errors import InputError
from AorticRootLandmarksLib.io import Case, write_image, write_manifest
from training.config import TrainConfig
from training.sweep import sweep

# the modules, not the functions training/__init__.py exports under the same names
train_module = importlib.import_module("training.train")
sweep_module = importlib.import_module("training.sweep")
GRID = {"sigma": [2.0, 1.0]}  # the failing run first: the sweep must go on after it


@pytest.fixture
def base(tmp_path) -> TrainConfig:
    """Four tiny cases (24^3 voxels) and the settings of a 2-fold, 2-epoch run on a 16^3 grid."""
    cases = []
    for i in range(4):
        image = make_image(size=(24, 24, 24), spacing=(1.5, 1.5, 1.5), value=100 + 50 * i)
        write_image(image, tmp_path / f"c{i}.nii.gz")
        centre = np.array(image.TransformContinuousIndexToPhysicalPoint((11.5, 11.5, 11.5)))
        cases.append(Case(f"c{i}", tmp_path / f"c{i}.nii.gz", centre + 2.0 * np.eye(3)))
    write_manifest(tmp_path / "manifest.csv", cases)
    return TrainConfig(manifest=str(tmp_path / "manifest.csv"), size=[16, 16, 16], spacing=2.0, features=[4, 8],
                       epochs=2, batch_size=1, folds=2, test_fraction=0.0, threads=1,
                       cache_dir=str(tmp_path / "cache"))  # fmt: skip


def _rows(summary: Path) -> list[dict]:
    with summary.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _crash_in_fold1_of_sigma2(monkeypatch):
    real = train_module.train_fold

    def train_fold(config, *args, **kwargs):
        fold = args[4] if len(args) > 4 else kwargs.get("fold", 0)
        if config.sigma == 2.0 and fold == 1:
            raise RuntimeError("out of memory (simulated)\nsecond line")
        return real(config, *args, **kwargs)

    monkeypatch.setattr(train_module, "train_fold", train_fold)


def _count_train_calls(monkeypatch) -> list[tuple]:
    calls, real = [], sweep_module.train

    def train(config, **kwargs):
        calls.append((config.sigma, kwargs.get("resume", False)))
        return real(config, **kwargs)

    monkeypatch.setattr(sweep_module, "train", train)
    return calls


def test_a_crashed_run_is_recorded_and_resume_finishes_it(base, tmp_path, monkeypatch):
    _crash_in_fold1_of_sigma2(monkeypatch)
    summary = sweep(base, GRID, tmp_path / "sweep")
    failed, ok = _rows(summary)
    assert failed["status"] == "failed" and failed["val_median_mm"] == ""
    assert failed["error"] == "RuntimeError: out of memory (simulated)"  # one line
    assert ok["status"] == "ok" and float(ok["val_median_mm"]) >= 0 and ok["error"] == ""  # the sweep went on
    assert (tmp_path / "sweep" / "summary.png").stat().st_size > 1000
    crashed = tmp_path / "sweep" / failed["run"]
    fold0_log = (crashed / "fold0" / "log.csv").read_text(encoding="utf-8")
    assert (crashed / "fold0" / "done.json").is_file() and not (crashed / "fold1" / "done.json").exists()

    monkeypatch.undo()  # the cause of the crash is gone
    calls = _count_train_calls(monkeypatch)
    summary = sweep(base, GRID, tmp_path / "sweep", resume=True)
    assert calls == [(2.0, True)]  # the finished run is skipped, the crashed one resumed
    assert [row["status"] for row in _rows(summary)] == ["ok", "ok"]
    assert (crashed / "fold0" / "log.csv").read_text(encoding="utf-8") == fold0_log  # its finished fold kept
    assert (crashed / "model" / "model.json").is_file()

    calls.clear()
    sweep(base, GRID, tmp_path / "sweep", resume=True)  # a finished sweep trains nothing
    assert calls == []


def test_resume_refuses_another_grid_or_other_settings(base, tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_module, "train", _failing_train)
    with pytest.raises(InputError):
        sweep(base, GRID, tmp_path / "sweep")
    with pytest.raises(InputError, match="another grid \\(sigma\\)"):
        sweep(base, {"sigma": [1.0, 2.0]}, tmp_path / "sweep", resume=True)
    with pytest.raises(InputError, match="other epochs"):
        sweep(dataclasses.replace(base, epochs=3), GRID, tmp_path / "sweep", resume=True)
    with pytest.raises(InputError, match="--force"):
        sweep(base, GRID, tmp_path / "sweep", force=True, resume=True)


def _failing_train(config, **kwargs):
    raise ValueError(f"nothing works for sigma {config.sigma}")


def test_every_run_failed_writes_the_summary_then_says_so(base, tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_module, "train", _failing_train)
    with pytest.raises(InputError, match="every run of the sweep failed"):
        sweep(base, GRID, tmp_path / "sweep")
    rows = _rows(tmp_path / "sweep" / "summary.csv")
    assert [(row["sigma"], row["status"]) for row in rows] == [("2.0", "failed"), ("1.0", "failed")]
    assert rows[0]["error"] == "ValueError: nothing works for sigma 2.0"
    assert (tmp_path / "sweep" / "summary.png").is_file()


@pytest.mark.parametrize("extra, message", [(["--force"], "--force"), ([], "not a folder of aortic-root sweep")])
def test_cli_resume_refusals_are_one_line(base, tmp_path, capsys, extra, message):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("the user's", encoding="utf-8")
    args = ["sweep", base.manifest, "--out", str(tmp_path / "mine"), "--sigma", "1,2", "--resume", *extra]
    assert main(args) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
