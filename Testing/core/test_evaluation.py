"""Tests of AorticRootLandmarksLib.evaluation on a hand-made folder: manifest, tiny images, known detection offsets."""

import csv
import json
import warnings

import numpy as np
import pytest
import SimpleITK as sitk

from AorticRootLandmarksLib import evaluation
from AorticRootLandmarksLib.errors import InputError
from AorticRootLandmarksLib.outputs import MARKER

S3 = np.sqrt(3.0)
# RCC, LCC, NCC on a circle of radius 10 in the plane z = 40 (LPS mm), normal +z.
TRUTH = np.array([[0.0, -10.0, 40.0], [5 * S3, 5.0, 40.0], [-5 * S3, 5.0, 40.0]])
# Known prediction offsets (mm) per case:
#   a: every point +1 mm along x (in-plane)    -> errors 1, 1, 1; plane distance 0, angle 0
#   b: every point +2 mm along z (normal)      -> errors 2, 2, 2; plane distance 2, angle 0
#   c: RCC +3 mm along z                        -> errors 3, 0, 0; plane z - 40 = -0.2 (y - 5):
#      distance 0.5 (1/sqrt(1.04) + 1) = 0.990290 mm (see test_geometry), angle atan(0.2) = 11.3099 deg
#   d: in the manifest, no prediction           -> reported missing
OFFSETS = {
    "a": np.array([[1.0, 0, 0], [1, 0, 0], [1, 0, 0]]),
    "b": np.array([[0, 0, 2.0], [0, 0, 2], [0, 0, 2]]),
    "c": np.array([[0, 0, 3.0], [0, 0, 0], [0, 0, 0]]),
}
QUALITY = {"a": "good", "b": "good", "c": "poor", "d": "poor"}
PLANE_C = 0.5 * (1 / np.sqrt(1.04) + 1)


def write_detection(path, points, names=("RCC", "LCC", "NCC")):
    landmarks = {
        name: {"position_lps": list(map(float, p)), "grid_index": [0, 0, 0], "score": 0.9, "confidence": 0.8}
        for name, p in zip(names, points, strict=True)
    }
    path.write_text(json.dumps({"image": "x", "landmarks": landmarks, "device": "cpu"}), encoding="utf-8")


@pytest.fixture
def dataset(tmp_path):
    """(manifest path, prediction folder) for cases a-d as described above."""
    images = tmp_path / "images"
    images.mkdir()
    rows = []
    for name in "abcd":
        sitk.WriteImage(sitk.Image(2, 2, 2, sitk.sitkInt16), str(images / f"{name}.nii.gz"))
        rows.append([f"images/{name}.nii.gz", *TRUTH.ravel(), QUALITY[name]])
    manifest = tmp_path / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image"] + [f"{n}_{a}" for n in ("RCC", "LCC", "NCC") for a in "xyz"] + ["quality"])
        writer.writerows(rows)
    preds = tmp_path / "preds"
    preds.mkdir()
    for name, offset in OFFSETS.items():
        write_detection(preds / f"{name}.json", TRUTH + offset)
    (preds / "a.mrk.json").write_text("{}", encoding="utf-8")  # Slicer markups next to detections: skipped
    write_detection(preds / "zzz.json", TRUTH)  # a prediction of no manifest case
    return manifest, preds


def test_landmark_errors_summarize_and_sdr_by_hand():
    pred = np.zeros((2, 2, 3))
    true = np.array([[[3.0, 4, 0], [0, 0, 1]], [[0, 0, 0], [1, 2, 2]]])  # 3-4-5 triangle; 1; 0; 1-2-2 -> 3
    errors = evaluation.landmark_errors(pred, true)
    np.testing.assert_allclose(errors, [[5, 1], [0, 3]], atol=1e-12)
    s = evaluation.summarize(errors, ["A", "B"])
    assert s["A"] == {"median": 2.5, "mean": 2.5, "q1": 1.25, "q3": 3.75, "max": 5.0, "n": 2}
    assert s["all"]["median"] == pytest.approx(2.0) and s["all"]["n"] == 4  # sorted 0, 1, 3, 5
    # NaN left out of statistics, counted as a miss by the SDR.
    assert evaluation.summarize(np.array([1.0, np.nan, 3.0]))["mean"] == pytest.approx(2.0)
    assert evaluation.summarize(np.array([np.nan]))["median"] is None
    sdr = evaluation.success_detection_rate(np.array([0.5, 1.2, 2.0, np.nan]))
    assert list(sdr) == ["1.0", "1.5", "2.0", "2.5", "3.0", "4.0"]
    assert sdr["1.0"] == 0.25 and sdr["1.5"] == 0.5 and sdr["2.0"] == 0.75 and sdr["4.0"] == 0.75
    with pytest.raises(ValueError):
        evaluation.landmark_errors(np.zeros((2, 3, 3)), np.zeros((2, 2, 3)))


def test_read_predictions(dataset, tmp_path):
    _, preds = dataset
    found = evaluation.read_predictions(preds, ["RCC", "LCC", "NCC"])
    assert sorted(found) == ["a", "b", "c", "zzz"]  # a.mrk.json skipped
    np.testing.assert_allclose(found["c"], TRUTH + OFFSETS["c"])
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError, match="x.json"):
        evaluation.read_predictions(bad, ["RCC"])
    (bad / "x.json").unlink()
    write_detection(bad / "y.json", TRUTH[:2], names=("RCC", "LCC"))
    with pytest.raises(InputError, match="NCC missing"):
        evaluation.read_predictions(bad, ["RCC", "LCC", "NCC"])
    write_detection(bad / "y.json", [[0, 0, float("nan")]], names=("RCC",))
    with pytest.raises(InputError, match="position_lps"):
        evaluation.read_predictions(bad, ["RCC"])
    with pytest.raises(InputError):
        evaluation.read_predictions(tmp_path / "nowhere", ["RCC"])


def test_evaluate_end_to_end(dataset, tmp_path):
    manifest, preds = dataset
    out = tmp_path / "eval"
    with pytest.warns(UserWarning, match="1 of 4 cases have no prediction"):
        result = evaluation.evaluate(preds, manifest, out)
    assert result["n_cases"] == 3 and result["missing_predictions"] == ["d"] and result["extra_predictions"] == ["zzz"]
    rows = {row["case_id"]: row for row in result["per_case"]}
    assert [rows["c"][f"{n}_mm"] for n in ("RCC", "LCC", "NCC")] == pytest.approx([3, 0, 0], abs=1e-9)
    assert rows["b"]["mean_mm"] == pytest.approx(2.0)
    assert [rows[c]["plane_distance_mm"] for c in "abc"] == pytest.approx([0, 2, PLANE_C], abs=1e-9)
    assert [rows[c]["plane_angle_deg"] for c in "abc"] == pytest.approx([0, 0, 11.309932], abs=1e-5)

    s = result["summary"]
    # RCC errors 1, 2, 3 -> median 2, quartiles 1.5 / 2.5; LCC 1, 2, 0 -> median 1.
    assert s["errors_mm"]["RCC"] == {"median": 2.0, "mean": 2.0, "q1": 1.5, "q3": 2.5, "max": 3.0, "n": 3}
    assert s["errors_mm"]["LCC"]["median"] == pytest.approx(1.0)
    # all nine: 0 0 1 1 1 2 2 2 3 -> median 1, mean 12/9, q1 1, q3 2.
    assert s["errors_mm"]["all"] == pytest.approx({"median": 1, "mean": 12 / 9, "q1": 1, "q3": 2, "max": 3, "n": 9})
    assert s["sdr"] == pytest.approx({"1.0": 5 / 9, "1.5": 5 / 9, "2.0": 8 / 9, "2.5": 8 / 9, "3.0": 1, "4.0": 1})
    assert s["sdr_per_landmark"]["RCC"]["2.0"] == pytest.approx(2 / 3)
    assert s["mean_error_mm"]["median"] == pytest.approx(1.0)  # per-case means 1, 2, 1
    assert s["plane_distance_mm"]["median"] == pytest.approx(PLANE_C)
    assert s["plane_angle_deg"]["max"] == pytest.approx(11.309932, abs=1e-5)

    # good: a, b -> 1 1 1 2 2 2: median 1.5, all within 2 mm; poor: c -> 3 0 0: median 0, SDR@2 2/3.
    assert sorted(result["by_quality"]) == ["good", "poor"]
    good, poor = result["by_quality"]["good"], result["by_quality"]["poor"]
    assert good["n_cases"] == 2 and good["errors_mm"]["all"]["median"] == pytest.approx(1.5)
    assert good["sdr"]["2.0"] == pytest.approx(1.0) and poor["sdr"]["2.0"] == pytest.approx(2 / 3)
    assert poor["plane_distance_mm"]["median"] == pytest.approx(PLANE_C)

    assert sorted(p.name for p in out.iterdir()) == [MARKER, "errors.png", "per_case.csv", "summary.json"]
    with (out / "per_case.csv").open(encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert [r["case_id"] for r in table] == ["a", "b", "c"] and table[2]["quality"] == "poor"
    assert float(table[2]["plane_distance_mm"]) == pytest.approx(PLANE_C, abs=1e-4)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["summary"]["sdr"]["2.0"] == pytest.approx(8 / 9) and "per_case" not in summary
    assert (out / "errors.png").read_bytes()[:4] == b"\x89PNG"

    table_text = evaluation.format_table(result)
    assert "RCC" in table_text and "quality poor (n = 1)" in table_text and "plane angle (deg)" in table_text
    assert "89%" in table_text  # SDR@2mm of all: 8/9

    with pytest.raises(InputError, match="not empty"):  # refused before any work: no warning either
        evaluation.evaluate(preds, manifest, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval", "images", "manifest.csv", "preds"]  # no leftovers
    with pytest.warns(UserWarning):
        evaluation.evaluate(preds, manifest, out, force=True)


def test_evaluate_degenerate_prediction_and_no_overlap(dataset, tmp_path):
    manifest, preds = dataset
    collapsed = np.repeat(TRUTH[:1], 3, axis=0)  # all three predictions on RCC: no predicted plane
    write_detection(preds / "a.json", collapsed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = evaluation.evaluate(preds, manifest, tmp_path / "eval")
    assert any("no annulus plane metrics" in str(w.message) for w in caught)
    assert np.isnan(result["per_case"][0]["plane_distance_mm"])
    assert result["summary"]["plane_distance_mm"]["n"] == 2  # a left out of the plane statistics
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text(encoding="utf-8"))  # strict JSON: no NaN
    assert summary["summary"]["plane_distance_mm"]["n"] == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no prediction"):
        evaluation.evaluate(empty, manifest)


def test_evaluate_reads_no_image(tmp_path):
    """Evaluation needs the manifest's truth and the detection files, not the CTs (they may live elsewhere)."""
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("image,A_x,A_y,A_z\nfar/away/ct1.nii.gz,1,2,3\n", encoding="utf-8")
    preds = tmp_path / "preds"
    preds.mkdir()
    (preds / "ct1.json").write_text(json.dumps({"landmarks": {"A": {"position_lps": [1, 2, 7]}}}), encoding="utf-8")
    result = evaluation.evaluate(preds, manifest, landmarks=["A"])
    assert result["summary"]["errors_mm"]["A"]["median"] == pytest.approx(4.0)  # |(1, 2, 7) - (1, 2, 3)| = 4 mm
