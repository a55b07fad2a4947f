"""training.sweep: a crashed run is recorded, the sweep goes on; --resume skips finished runs, finishes the rest."""

from __future__ import annotations

import csv
import dataclasses
import importlib
from pathlib import Path

import pytest
from helpers import tiny_cases

from aortic_root.cli import main
from AorticRootLandmarksLib.errors import InputError
from AorticRootLandmarksLib.io import write_manifest
from training.config import TrainConfig
from training.sweep import grid_settings, run_name, sweep
from training.sweep_spec import Execution, read_spec

# the modules, not the functions training/__init__.py exports under the same names
train_module = importlib.import_module("training.train")
sweep_module = importlib.import_module("training.sweep")
GRID = {"sigma": [2.0, 1.0]}  # the failing run first: the sweep must go on after it


@pytest.fixture
def base(tmp_path) -> TrainConfig:
    """Four tiny cases (24^3 voxels) and the settings of a 2-fold, 2-epoch run on a 16^3 grid."""
    write_manifest(tmp_path / "manifest.csv", tiny_cases(tmp_path, 4))
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


# --- grids, spec files, and the whole sweep: choose per loss by cross-validation, test only the chosen -------------


def test_a_list_of_grids_joins_their_combinations_once():
    base = TrainConfig()  # penalty None, sigma 1.0
    grids = [{"loss": ["glip"], "penalty": [1.0, 10.0]}, {"loss": ["mse", "glip"]},
             {"loss": ["glip"], "penalty": [1.0]}]
    keys, settings = grid_settings(grids, base)
    assert keys == ["loss", "penalty"]
    # the second grid does not vary penalty: its runs take the shared value (None); the third repeats the first run
    assert settings == [{"loss": "glip", "penalty": 1.0}, {"loss": "glip", "penalty": 10.0},
                        {"loss": "mse", "penalty": None}, {"loss": "glip", "penalty": None}]  # fmt: skip
    assert run_name({"size": [64, 64, 48], "sigma": 1.0}) == "size-64x64x48_sigma-1.0"


@pytest.mark.parametrize("grid, message", [
    ({"loss": ["ot"], "penalty": [0.0, 10.0]}, "loss=ot, penalty=10.0 cannot run"),  # ot is GLiP without penalty
    ({"seed": [0, 1]}, "seed defines the split"),  # every run must share the split
    ({"sigma": []}, "give a list of values"),
    ({"sigmas": [1.0]}, "unknown setting sigmas"),
    ({"sigma": ["wide"]}, "expected float"),
    ({"folds": [2]}, "besides the split's"),  # one folds value is a shared setting: nothing is left to sweep
])  # fmt: skip
def test_bad_grids_are_refused_before_any_work(base, tmp_path, grid, message):
    with pytest.raises(InputError, match=message):
        sweep(base, grid, tmp_path / "sweep")
    assert not (tmp_path / "sweep").exists()


def _spec(tmp_path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_spec_file_names_manifest_settings_grid_and_execution(tmp_path):
    text = "manifest: data/m.csv\nsettings: {folds: 3, epochs: 7}\ngrid: {loss: [glip, wce], sigma: [1, 2]}\n"
    spec = read_spec(_spec(tmp_path, text + "execution: {workers: 2}\n"))
    assert spec.base.manifest == str(tmp_path / "data" / "m.csv")  # relative to the spec file
    assert (spec.base.folds, spec.base.epochs) == (3, 7)
    assert spec.grid == {"loss": ["glip", "wce"], "sigma": [1.0, 2.0]}  # floats: one run name per setting
    assert spec.execution == Execution(workers=2)


@pytest.mark.parametrize("text, message", [
    ("grid: {sigma: [1, 2]}\n", "'manifest' is missing"),
    ("manifest: m.csv\n", "'grid' is missing"),
    ("manifest: m.csv\ngrid: {sigma: [1]}\nwhatever: 1\n", "unknown key\\(s\\) whatever"),
    ("manifest: m.csv\ngrid: {sigma: [1]}\nsettings: {epoch: 3}\n", "settings: unknown key\\(s\\) epoch"),
    ("manifest: m.csv\ngrid: {sigma: [1]}\nsettings: {epochs: many}\n", "epochs = 'many': expected int"),
    ("manifest: m.csv\ngrid: {sigma: [1]}\nexecution: {asha: true}\n", "asha stops runs on Ray"),
    ("manifest: m.csv\ngrid: [sigma]\n", "a mapping of settings"),
    ("manifest: [m.csv\n", "cannot read the sweep spec"),
])  # fmt: skip
def test_bad_spec_files_are_one_line_naming_the_file(tmp_path, text, message):
    with pytest.raises(InputError, match=message) as caught:
        read_spec(_spec(tmp_path, text))
    assert str(caught.value).startswith(str(tmp_path / "spec.yaml")) and "\n" not in str(caught.value)


def test_cli_refuses_setting_flags_with_a_spec(tmp_path, capsys):
    spec = _spec(tmp_path, "manifest: m.csv\ngrid: {sigma: [1, 2]}\n")
    assert main(["sweep", str(spec), "--out", str(tmp_path / "s"), "--loss", "glip,wce"]) == 2
    assert "a sweep spec holds the grid" in capsys.readouterr().err


STUDY = """\
manifest: data/manifest.csv
settings: {size: [16, 16, 16], spacing: 2.0, features: [4, 8], epochs: 2, batch_size: 2, folds: 2,
           test_fraction: 0.34, threads: 1, cache_dir: cache}
grid:
  - {loss: [glip], penalty: [0.0, 10.0]}
  - {loss: [mse], sigma: [1, 2]}
execution: {workers: 2}
"""


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory) -> Path:
    """A whole sweep through the command line (spec form, 2 worker processes): 6 tiny cases with quality grades,
    2 folds, a 2-case test split; 4 runs: glip with and without penalty, mse at sigma 1 and 2."""
    root = tmp_path_factory.mktemp("study")
    (root / "data").mkdir()
    cases = tiny_cases(root / "data", 6, step=40, qualities=[str(1 + i % 2) for i in range(6)])
    write_manifest(root / "data" / "manifest.csv", cases)
    spec = root / "study.yaml"
    spec.write_text(STUDY.replace("cache_dir: cache", f"cache_dir: {root / 'cache'}"), encoding="utf-8")
    assert main(["sweep", str(spec), "--out", str(root / "sweep")]) == 0
    return root / "sweep"


def test_the_sweep_chooses_per_loss_by_cross_validation_and_tests_only_the_chosen(finished_sweep):
    rows = _rows(finished_sweep / "summary.csv")
    assert [row["status"] for row in rows] == ["ok"] * 4, rows
    assert {row["run"] for row in rows} == {"loss-glip_penalty-0.0_sigma-1.0", "loss-glip_penalty-10.0_sigma-1.0",
                                            "loss-mse_penalty-None_sigma-1.0", "loss-mse_penalty-None_sigma-2.0"}
    results = _rows(finished_sweep / "results.csv")
    assert [line["loss"] for line in results] == ["glip", "mse"]
    for line in results:  # the lowest cross-validated median of its loss, whatever the test split says
        runs = [row for row in rows if row["loss"] == line["loss"]]
        assert line["run"] == min(runs, key=lambda row: float(row["val_median_mm"]))["run"]
        assert line["test_cases"] == "2" and float(line["test_median_mm"]) >= 0
    chosen = {line["run"] for line in results}
    for row in rows:  # every run is evaluated out of fold; only the chosen ones on the test split
        run = finished_sweep / row["run"]
        assert (run / "cv_evaluation" / "per_case.csv").is_file()
        assert len(_rows(run / "cv_evaluation" / "per_case.csv")) == 4  # each non-test case once, by its fold
        assert (run / "test_evaluation").is_dir() == (row["run"] in chosen), row["run"]
    splits = {(finished_sweep / row["run"] / "split.json").read_text(encoding="utf-8") for row in rows}
    assert len(splits) == 1  # the same split for every run
    text = (finished_sweep / "results.md").read_text(encoding="utf-8")
    assert "## The chosen setting per loss" in text and "| glip | penalty=" in text


def test_resuming_a_finished_sweep_trains_and_tests_nothing(finished_sweep, monkeypatch):
    calls = _count_train_calls(monkeypatch)
    tested = []
    monkeypatch.setattr("training.sweep_results.evaluate_test_split", lambda *a, **k: tested.append(a))
    spec = finished_sweep.parent / "study.yaml"
    assert main(["sweep", str(spec), "--out", str(finished_sweep), "--resume", "--workers", "1"]) == 0
    assert calls == [] and tested == []
    assert len(_rows(finished_sweep / "results.csv")) == 2


def test_figures_of_a_sweep_are_drawn_with_an_index(finished_sweep, capsys):
    assert main(["figures", str(finished_sweep)]) == 0
    folder = finished_sweep / "figures"
    index = (folder / "index.md").read_text(encoding="utf-8")
    for name in ("fig02_errors", "fig03_plane_distance", "fig04_plane_angle", "fig05_penalty_errors",
                 "fig06_penalty_planes", "fig07_quality", "fig09_sdr", "fig10_sdr_landmarks", "fig11_sigma",
                 "fig12_lambda"):  # fmt: skip
        assert (folder / f"{name}.png").stat().st_size > 5000, name
        assert (folder / f"{name}.svg").read_text(encoding="utf-8").lstrip().startswith("<?xml"), name
        assert f"]({name}.png)" in index
    assert "Skipped" not in index
    assert main(["figures", str(finished_sweep)]) == 2  # the figures folder exists: --force replaces it
    assert main(["figures", str(finished_sweep), "--force"]) == 0


@pytest.mark.parametrize(
    "name, runs", [("sweep_example.yaml", 18), ("study_cpu.yaml", 20), ("study_cpu_long.yaml", 3)]
)
def test_the_documented_spec_files_read(name, runs):
    spec = read_spec(Path(__file__).resolve().parents[2] / "docs" / name)
    keys, settings = grid_settings(spec.grid, spec.base)
    assert len(settings) == runs and keys[0] == "loss"
    assert spec.base.manifest.endswith("manifest.csv")
