"""End to end through the command line: phantom -> train a few steps -> detect -> evaluate, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from aortic_root.cli import main
from AorticRootLandmarksLib.io import read_manifest, read_markups

TINY_TRAIN = [
    "--epochs", "2", "--steps-per-epoch", "2", "--folds", "2", "--batch-size", "2", "--size", "64", "64", "48",
    "--features", "4", "8", "16", "--test-fraction", "0.34", "--threads", "1",
]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Six small phantom CTs, a 2-fold model trained for 2 x 2 steps, detections and an evaluation."""
    root = tmp_path_factory.mktemp("e2e")
    assert main(["phantom", "--out", str(root / "data"), "--n", "6", "--size", "small", "--seed", "3"]) == 0
    manifest = root / "data" / "manifest.csv"
    args = ["train", str(manifest), "--out", str(root / "run"), "--cache-dir", str(root / "cache"), *TINY_TRAIN]
    assert main(args) == 0
    images = [str(c.image) for c in read_manifest(manifest)]
    assert main(["detect", *images, "--out", str(root / "det"), "--model", str(root / "run"), "--device", "cpu"]) == 0
    assert main(["evaluate", str(root / "det"), str(manifest), "--out", str(root / "eval")]) == 0
    return root


def test_run_folder(run):
    names = {p.name for p in (run / "run").iterdir()}
    assert {"config.yaml", "split.json", "fold0", "fold1", "model", "test_predictions", "test_evaluation"} <= names
    for fold in ("fold0", "fold1"):
        log = (run / "run" / fold / "log.csv").read_text(encoding="utf-8").splitlines()
        assert log[0].startswith("epoch,train_loss,val_median_mm") and len(log) == 3  # header + 2 epochs
        assert (run / "run" / fold / "best.pt").is_file() and (run / "run" / fold / "last.pt").is_file()
    meta = json.loads((run / "run" / "model" / "model.json").read_text(encoding="utf-8"))
    assert meta["landmarks"] == ["RCC", "LCC", "NCC"] and meta["folds"] == ["fold0.pt", "fold1.pt"]
    assert meta["grid"]["size"] == [64, 64, 48] and meta["loss"] == "glip"
    split = json.loads((run / "run" / "split.json").read_text(encoding="utf-8"))
    assert len(split["test"]) == 2 and len(list((run / "run" / "test_predictions").glob("*.mrk.json"))) == 2


def test_detections(run):
    cases = read_manifest(run / "data" / "manifest.csv")
    for case in cases:
        record = json.loads((run / "det" / f"{case.case_id}.json").read_text(encoding="utf-8"))
        assert record["coordinate_system"] == "LPS"
        positions = np.array([record["landmarks"][n]["position_lps"] for n in ("RCC", "LCC", "NCC")])
        grid = record["grid"]
        index = (positions - np.array(grid["origin_lps"])) / grid["spacing"]
        assert np.all(index >= 0) and np.all(index <= np.array(grid["size"]) - 1)  # on the network grid
        assert all(0 <= record["landmarks"][n]["confidence"] <= 1 for n in ("RCC", "LCC", "NCC"))
        labels, points = read_markups(run / "det" / f"{case.case_id}.mrk.json")
        assert labels == ["RCC", "LCC", "NCC"]
        np.testing.assert_allclose(points, positions, atol=1e-3)


def test_evaluation(run):
    summary = json.loads((run / "eval" / "summary.json").read_text(encoding="utf-8"))
    text = json.dumps(summary)
    assert "RCC" in text and "NCC" in text
    assert (run / "eval" / "per_case.csv").read_text(encoding="utf-8").count("\n") >= 7  # header + 6 cases
    assert (run / "eval" / "errors.png").stat().st_size > 1000


def cli(*args, cwd=None):
    """The installed console script, as a user runs it."""
    command = [sys.executable, "-m", "aortic_root", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=300)


def test_bad_input_is_one_line_and_leaves_nothing(run, tmp_path):
    result = cli("detect", tmp_path / "missing.nii.gz", "--out", tmp_path / "out", "--model", run / "run")
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("error: ") and "missing.nii.gz" in result.stderr
    assert not (tmp_path / "out").exists()
    # an existing output folder is refused without --force, and left as it was
    first_image = sorted((run / "data" / "images").iterdir())[0]
    before = sorted(p.name for p in (run / "det").iterdir())
    assert len([n for n in before if n.endswith(".mrk.json")]) == 6 and "index.html" in before
    result = cli("detect", first_image, "--out", run / "det", "--model", run / "run")
    assert result.returncode == 2 and "--force" in result.stderr
    assert sorted(p.name for p in (run / "det").iterdir()) == before
    # a manifest with a NaN coordinate
    bad = tmp_path / "bad.csv"
    text = (run / "data" / "manifest.csv").read_text(encoding="utf-8").splitlines()
    fields = text[1].split(",")
    fields[1] = "nan"
    bad.write_text("\n".join([text[0], ",".join(fields)]) + "\n", encoding="utf-8")
    (tmp_path / "images").symlink_to(run / "data" / "images")
    result = cli("evaluate", run / "det", bad)
    assert result.returncode == 2 and "not a finite number" in result.stderr
