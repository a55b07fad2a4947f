"""Resuming a training run: a run killed (SIGKILL) mid-epoch of fold 1 and resumed ends with the weights of an
uninterrupted run, loses at most one epoch and never retrains a finished fold; what resume refuses."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from aortic_root.cli import main
from AorticRootLandmarksLib.phantom import write_dataset
from training.checkpoints import LOG_COLUMNS, open_log

REPO = Path(__file__).resolve().parents[2]
STEPS = 2  # --steps-per-epoch
TINY = [
    "--folds", "2", "--epochs", "3", "--steps-per-epoch", str(STEPS), "--batch-size", "1", "--size", "64", "64", "48",
    "--features", "4", "8", "16", "--threads", "1", "--test-fraction", "0",
]  # fmt: skip


def _command(root: Path, out: str, *extra: str) -> list[str]:
    return ["train", str(root / "data" / "manifest.csv"), "--out", str(root / out), "--cache-dir", str(root / "cache"),
            *TINY, *extra]  # fmt: skip


def _cli(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "aortic_root", *args], cwd=REPO, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen) -> None:
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err


def _fold_state(run: Path, fold: int) -> dict:
    folder = run / f"fold{fold}"
    return {
        "log": (folder / "log.csv").read_text(encoding="utf-8"),
        "best_mtime": (folder / "best.pt").stat().st_mtime_ns,
        "done": (folder / "done.json").read_text(encoding="utf-8"),
    }


def _kill_mid_fold1(run: Path, process: subprocess.Popen) -> dict:
    """SIGKILL `process` about halfway through the epoch after fold 1's first checkpoint; what was saved then."""
    last = run / "fold1" / "last.pt"
    deadline = time.monotonic() + 120
    while not last.is_file():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "fold 1 never wrote a checkpoint"
        time.sleep(0.005)
    with (run / "fold0" / "log.csv").open(encoding="utf-8") as handle:
        epoch_seconds = min(float(row["seconds"]) for row in csv.DictReader(handle))
    time.sleep(0.4 * epoch_seconds)
    os.kill(process.pid, signal.SIGKILL)
    after = time.time() - last.stat().st_mtime  # seconds of work since the checkpoint
    process.wait(timeout=30)
    checkpoint = torch.load(last, weights_only=True)
    logged = (run / "fold1" / "log.csv").read_text(encoding="utf-8").strip().count("\n")  # epoch rows
    return {"epoch": checkpoint["epoch"], "steps": checkpoint["steps"], "logged": logged, "fold0": _fold_state(run, 0),
            "after": after, "epoch_seconds": epoch_seconds}  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An uninterrupted run ("ref") and one killed mid-epoch of fold 1 and resumed ("run"); the state at the kill."""
    root = tmp_path_factory.mktemp("resume")
    write_dataset(root / "data", 4, seed=1, size="small")
    _finish(_cli(_command(root, "ref")))  # also fills the cache, so both runs read the same volumes
    process = _cli(_command(root, "run"))
    killed = _kill_mid_fold1(root / "run", process)
    assert process.returncode == -signal.SIGKILL
    assert not (root / "run" / "fold1" / "done.json").exists(), "killed too late: fold 1 had finished"
    _finish(_cli(_command(root, "run", "--resume")))
    return root, killed


def _weights(path: Path) -> dict:
    state = torch.load(path, weights_only=True)
    return state["model"] if "format" in state else state  # last.pt is a checkpoint, the others state dicts


def _assert_same_weights(reference_run: Path, run: Path, names: list[str]) -> None:
    """The weight files `names` of `run` equal those of `reference_run` (to 1e-6)."""
    for name in names:
        reference, other = _weights(reference_run / name), _weights(run / name)
        for key, value in reference.items():
            torch.testing.assert_close(other[key], value, rtol=0, atol=1e-6, msg=f"{name} {key}")


def test_killed_and_resumed_run_ends_as_the_uninterrupted_one(runs):
    root, killed = runs
    differences = []
    files = ["model/fold0.pt", "model/fold1.pt", "fold1/best.pt", "fold1/last.pt"]
    for name in files:
        reference, resumed = _weights(root / "ref" / name), _weights(root / "run" / name)
        assert reference.keys() == resumed.keys()
        for key, value in reference.items():
            torch.testing.assert_close(resumed[key], value, rtol=0, atol=1e-6, msg=f"{name} {key}")
            differences.append((resumed[key].double() - value.double()).abs().max().item())
    # lost: the steps after fold 1's last checkpoint. Part of the epoch in progress; or, killed between an epoch's
    # log row and its checkpoint, that whole epoch (the next one starts only after the checkpoint)
    assert killed["logged"] in (killed["epoch"] + 1, killed["epoch"] + 2), killed
    print(
        f"\nkilled in fold 1 {killed['after']:.2f} s after its checkpoint of epoch {killed['epoch']} "
        f"({killed['steps']} steps; an epoch of {STEPS} steps takes {killed['epoch_seconds']:.2f} s): "
        f"lost at most {STEPS} steps; largest weight difference to the uninterrupted run {max(differences):.3g}"
    )


def test_resumed_run_did_not_retrain_fold0_and_logs_each_epoch_once(runs):
    root, killed = runs
    assert _fold_state(root / "run", 0) == killed["fold0"]  # log, best.pt (mtime) and done.json untouched
    for fold in (0, 1):
        with (root / "run" / f"fold{fold}" / "log.csv").open(encoding="utf-8") as handle:
            assert [row["epoch"] for row in csv.DictReader(handle)] == ["0", "1", "2"]
    assert sorted(p.name for p in (root / "run" / "fold1").iterdir()) == ["best.pt", "done.json", "last.pt", "log.csv"]


def _snapshot(folder: Path) -> dict:
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_resuming_a_complete_run_does_not_retrain(runs, capsys):
    root, _ = runs
    before = _snapshot(root / "ref")
    # device and threads may change on resume: where and how fast, not what is computed
    assert main(_command(root, "ref", "--resume", "--device", "cpu", "--threads", "1")) == 0
    assert "complete" in capsys.readouterr().err
    assert _snapshot(root / "ref") == before


def test_resume_re_exports_a_run_whose_folds_are_finished(runs, tmp_path):
    root, _ = runs
    run = Path(shutil.copytree(root / "ref", tmp_path / "ref"))
    shutil.rmtree(run / "model")  # as if killed while exporting
    logs = [(run / f"fold{i}" / "log.csv").read_text(encoding="utf-8") for i in (0, 1)]
    args = _command(root, "ref", "--resume")
    args[args.index("--out") + 1] = str(run)
    assert main(args) == 0
    assert [(run / f"fold{i}" / "log.csv").read_text(encoding="utf-8") for i in (0, 1)] == logs  # not retrained
    for name in ("fold0.pt", "fold1.pt"):
        reference, exported = _weights(root / "ref" / "model" / name), _weights(run / "model" / name)
        assert all(torch.equal(exported[k], v) for k, v in reference.items())


def _refused(args: list[str], capsys) -> str:
    assert main(args) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_resume_refuses_flags_that_change_the_training(runs, capsys):
    root, _ = runs
    before = _snapshot(root / "ref")
    line = _refused(_command(root, "ref", "--resume", "--epochs", "2", "--lr", "0.01"), capsys)
    assert "epochs" in line and "lr" in line and "threads" not in line and "not cut to fewer" in line
    line = _refused(_command(root, "ref", "--resume", "--epochs", "5", "--lr", "0.01"), capsys)
    assert "lr" in line and "epochs" not in line  # more epochs alone would extend the run
    assert _snapshot(root / "ref") == before


def test_resume_with_more_epochs_extends_a_finished_run_into_the_longer_one(runs):
    """A finished 2-epoch run resumed with --epochs 3 ends with the weights, logs and export of the 3-epoch run."""
    root, _ = runs
    short = _command(root, "short")
    short[short.index("--epochs") + 1] = "2"
    _finish(_cli(short))
    process = _cli(_command(root, "short", "--resume"))  # TINY says --epochs 3
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "extending the run from 2 to 3 epochs" in err
    _assert_same_weights(root / "ref", root / "short", ["model/fold0.pt", "model/fold1.pt", "fold0/last.pt",
                                                          "fold1/best.pt"])  # fmt: skip
    for fold in (0, 1):
        with (root / "short" / f"fold{fold}" / "log.csv").open(encoding="utf-8") as handle:
            assert [row["epoch"] for row in csv.DictReader(handle)] == ["0", "1", "2"]
        assert json.loads((root / "short" / f"fold{fold}" / "done.json").read_text(encoding="utf-8"))["epochs"] == 3
    assert "epochs: 3" in (root / "short" / "config.yaml").read_text(encoding="utf-8")
    exported = json.loads((root / "short" / "model" / "model.json").read_text(encoding="utf-8"))
    assert exported["training"]["epochs"] == 3


def test_an_extension_may_add_a_learning_rate_drop_after_the_saved_epochs(runs, capsys):
    """A 2-epoch run extended with --epochs 3 --lr-drop-epoch 2 ends as the run started with both; the drop changed
    the weights (the rate is set each epoch, not left as Adam's saved state); a drop inside the saved epochs is
    refused."""
    root, _ = runs
    drop = ["--lr-drop-epoch", "2", "--lr-drop-factor", "0.1"]
    _finish(_cli(_command(root, "dropped", *drop)))
    short = _command(root, "short-drop")
    short[short.index("--epochs") + 1] = "2"
    _finish(_cli(short))
    _finish(_cli(_command(root, "short-drop", "--resume", *drop)))
    _assert_same_weights(root / "dropped", root / "short-drop", ["model/fold0.pt", "fold1/last.pt"])
    constant = _weights(root / "ref" / "fold1" / "last.pt")  # the same 3 epochs without the drop
    assert any(not torch.equal(constant[k], v) for k, v in _weights(root / "dropped" / "fold1" / "last.pt").items())
    assert "lr_drop_epoch: 2" in (root / "short-drop" / "config.yaml").read_text(encoding="utf-8")
    before = _snapshot(root / "ref")
    line = _refused(_command(root, "ref", "--resume", "--epochs", "5", "--lr-drop-epoch", "2"), capsys)
    assert "lr_drop_epoch" in line and "after the saved run's last" in line
    assert _snapshot(root / "ref") == before


def test_resume_refuses_a_folder_that_is_not_a_run(runs, tmp_path, capsys):
    root, _ = runs
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "config.yaml").write_text("epochs: 3\n", encoding="utf-8")  # not written by the tool
    for folder in (tmp_path / "mine", tmp_path / "missing"):
        args = _command(root, "ref", "--resume")
        args[args.index("--out") + 1] = str(folder)
        assert "not a run folder" in _refused(args, capsys)
    assert not (tmp_path / "missing").exists()


def test_resume_refuses_force(runs, capsys):
    root, _ = runs
    before = _snapshot(root / "ref")
    assert "--force" in _refused(_command(root, "ref", "--resume", "--force"), capsys)
    assert _snapshot(root / "ref") == before


def test_log_keeps_only_epochs_before_the_checkpoint(tmp_path):
    log = tmp_path / "log.csv"
    header = ",".join(LOG_COLUMNS)
    rows = [f"{e},1,2,3,4,5" for e in range(3)]
    log.write_text("\n".join([header, *rows, "3,1,2"]) + "\n", encoding="utf-8")  # epoch 3's row cut by a kill
    with open_log(log, 2) as handle:  # last checkpoint: epoch 1
        handle.write("2,9,9,9,9,9\r\n")
    assert log.read_text(encoding="utf-8").splitlines() == [header, *rows[:2], "2,9,9,9,9,9"]
