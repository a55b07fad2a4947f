"""Training the second stage: its config (--stage 2, --from), a fold on patches, and end to end through the CLI
(stage 1 -> stage 2 -> a two-stage model -> detect with both stages or one -> resume)."""

from __future__ import annotations

import importlib
import json
import shutil

import numpy as np
import pytest
import yaml

from aortic_root.cli import main
from AorticRootLandmarksLib.errors import InputError
from AorticRootLandmarksLib.grid import NetworkGrid
from AorticRootLandmarksLib.io import Case, read_manifest
from training.config import REFINE_DEFAULTS, TrainConfig
from training.patches import PatchSample

train_module = importlib.import_module("training.train")


def _stage1_run(folder, **settings):
    folder.mkdir(parents=True, exist_ok=True)
    saved = {"stage": "landmarks", "landmarks": ["RCC", "LCC", "NCC", "LCO"], "window": [-400.0, 1200.0],
             "folds": 3, "seed": 7, "test_fraction": 0.25, "val_fraction": 0.2, "sigma": 3.0, "spacing": 1.6,
             **settings}  # fmt: skip
    (folder / "config.yaml").write_text(yaml.safe_dump(saved), encoding="utf-8")
    return folder


def test_stage_2_takes_its_stage_1_run_s_landmarks_window_and_split_settings(tmp_path):
    run = _stage1_run(tmp_path / "run1")
    config = TrainConfig.for_stage("2", from_run=str(run), architecture="shared", folds=None)
    assert config.stage == "refine" and config.from_run == str(run)
    assert config.landmarks == ["RCC", "LCC", "NCC", "LCO"] and config.window == [-400.0, 1200.0]
    assert (config.folds, config.seed, config.test_fraction) == (3, 7, 0.25)
    # not inherited: the patch grid and the heatmap are the second stage's own
    assert config.spacing == REFINE_DEFAULTS["spacing"] and config.size == REFINE_DEFAULTS["size"]
    assert config.sigma == 1.0 and config.architecture == "shared"
    # what is given wins over the stage-1 run
    assert TrainConfig.for_stage("refine", from_run=str(run), landmarks=["RCC"]).landmarks == ["RCC"]
    assert TrainConfig(stage="1").stage == "landmarks"
    config.validate()


def test_stage_2_settings_that_cannot_work(tmp_path):
    with pytest.raises(InputError, match="--from RUN"):
        TrainConfig.for_stage("refine").validate()
    with pytest.raises(InputError, match="from_run is for stage refine"):
        TrainConfig(from_run="somewhere").validate()
    run = _stage1_run(tmp_path / "run1")
    with pytest.raises(InputError, match="localizer belongs to the stage-1 run"):
        TrainConfig.for_stage("refine", from_run=str(run), localizer="loc").validate()
    with pytest.raises(InputError, match="not a landmark"):
        TrainConfig.for_stage("refine", from_run=str(_stage1_run(tmp_path / "loc", stage="localizer")))
    with pytest.raises(InputError, match="cannot read the stage-1 run's config"):
        TrainConfig.for_stage("refine", from_run=str(tmp_path / "missing"))


@pytest.mark.parametrize("architecture", ["per_landmark", "shared"])
def test_a_refiner_fold_trains_on_patches(tmp_path, architecture):
    rng = np.random.default_rng(0)
    grids = np.indices((24, 24, 24)).astype(float)
    samples = []
    for i in range(4):  # a bright blob at the truth, 0-3 voxels from the region centre 11.5
        truth = 11.5 + rng.uniform(-3, 3, 3)
        blob = np.exp(-sum((g - t) ** 2 for g, t in zip(grids, truth, strict=True)) / 8.0).astype(np.float16)
        case = Case(f"c{i}", None, np.zeros((2, 3)))
        samples.append(PatchSample(case, i % 2, blob, NetworkGrid(np.zeros(3), 0.5, (24, 24, 24)), truth, np.zeros(3)))
    config = TrainConfig(stage="refine", from_run="unused", landmarks=["RCC", "LCC"], architecture=architecture,
                         spacing=0.5, size=[16, 16, 16], features=[4, 8], epochs=2, batch_size=2, augment=False,
                         disturbance_mm=1.0)  # fmt: skip
    network, best = train_module.train_fold(config, samples[:3], samples[3:], tmp_path / "fold0", "cpu")
    rows = (tmp_path / "fold0" / "log.csv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 3 and np.isfinite(best) and best >= 0
    assert network.config()["out_channels"] == 2
    assert (network.config().get("architecture", "shared")) == architecture


TINY = ["--epochs", "2", "--steps-per-epoch", "2", "--batch-size", "2", "--threads", "1"]
STAGE1 = ["--folds", "2", "--size", "64", "64", "48", "--features", "4", "8", "16", "--test-fraction", "0.34"]
# a coarse 'patch' (32^3 of 4 mm): the untrained stage 1 is tens of mm off, and the truth must lie in the patch
# 3 epochs against stage 1's 2: a finished stage-2 run is judged by its own epochs, not the copied stage-1 model's
STAGE2 = ["--stage", "2", "--spacing", "4", "--size", "32", "32", "32", "--features", "4", "8", "--epochs", "3"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Six small phantoms, a tiny stage-1 run, a tiny stage-2 run from it, and detections with its model."""
    root = tmp_path_factory.mktemp("refine")
    assert main(["phantom", "--out", str(root / "data"), "--n", "6", "--size", "small", "--seed", "3"]) == 0
    manifest = str(root / "data" / "manifest.csv")
    common = [manifest, "--cache-dir", str(root / "cache"), *TINY]
    assert main(["train", *common, "--out", str(root / "run1"), *STAGE1]) == 0
    assert main(["train", *common, "--out", str(root / "run2"), "--from", str(root / "run1"), *STAGE2]) == 0
    return root


def test_the_stage_2_run_exports_a_two_stage_model(runs):
    run1, run2 = runs / "run1", runs / "run2"
    assert json.loads((run2 / "split.json").read_text()) == json.loads((run1 / "split.json").read_text())
    model = json.loads((run2 / "model" / "model.json").read_text(encoding="utf-8"))
    assert model["refiner"] == "refine" and model["landmarks"] == ["RCC", "LCC", "NCC"]
    for name in model["folds"]:  # the stage-1 model, unchanged
        assert (run2 / "model" / name).read_bytes() == (run1 / "model" / name).read_bytes()
    refiner = json.loads((run2 / "model" / "refine" / "model.json").read_text(encoding="utf-8"))
    assert refiner["stage"] == "refine" and refiner["grid"]["size"] == [32, 32, 32] and refiner["grid"]["spacing"] == 4
    assert refiner["network"]["architecture"] == "per_landmark" and refiner["folds"] == ["fold0.pt", "fold1.pt"]
    oof = json.loads((run2 / "stage1_predictions.json").read_text(encoding="utf-8"))
    test = set(json.loads((run1 / "split.json").read_text())["test"])
    assert set(oof["cases"]) == {c.case_id for c in read_manifest(runs / "data" / "manifest.csv")} - test
    record = json.loads(next((run2 / "test_predictions").glob("*[0-9].json")).read_text(encoding="utf-8"))
    assert record["stages"] == 2 and "refinement" in record["landmarks"]["RCC"]


def test_detect_with_both_stages_or_one(runs):
    image = str(read_manifest(runs / "data" / "manifest.csv")[0].image)
    model = ["--model", str(runs / "run2"), "--device", "cpu"]
    assert main(["detect", image, "--out", str(runs / "both"), *model]) == 0
    assert main(["detect", image, "--out", str(runs / "one"), "--stages", "1", *model]) == 0
    both = json.loads(next((runs / "both").glob("*[0-9].json")).read_text(encoding="utf-8"))
    one = json.loads(next((runs / "one").glob("*[0-9].json")).read_text(encoding="utf-8"))
    assert both["stages"] == 2 and one["stages"] == 1 and "refinement" not in one["landmarks"]["LCC"]
    for name in ("RCC", "LCC", "NCC"):  # the same first stage under both
        np.testing.assert_allclose(both["landmarks"][name]["refinement"]["stage1_position_lps"],
                                   one["landmarks"][name]["position_lps"], atol=1e-3)  # fmt: skip
    # a model without a second stage cannot be asked for two
    assert main(["detect", image, "--out", str(runs / "no"), "--stages", "2", "--model", str(runs / "run1")]) == 2
    assert not (runs / "no").exists()


def test_a_stage_2_run_resumes(runs, capsys):
    run2 = runs / "run2"
    assert main(["train", str(runs / "data" / "manifest.csv"), "--out", str(run2), "--resume"]) == 0
    assert "nothing to resume" in capsys.readouterr().err
    before = (run2 / "fold0" / "best.pt").read_bytes()
    (run2 / "fold1" / "done.json").unlink()  # as if killed after fold 1's last epoch, before it was marked done
    shutil.rmtree(run2 / "model")
    assert main(["train", str(runs / "data" / "manifest.csv"), "--out", str(run2), "--resume"]) == 0
    assert (run2 / "fold1" / "done.json").is_file() and (run2 / "model" / "refine" / "model.json").is_file()
    assert (run2 / "fold0" / "best.pt").read_bytes() == before  # a finished fold is not retrained
