"""Benchmark: the first stage alone against both stages on the same CTs, and what the second stage costs.

Reported for stages 1 and 2: landmark error median, 75th and 95th percentile and max (mm), success detection rate at
0.5 / 1 / 1.5 / 2 mm, annulus plane angle (median and 95th percentile, degrees); the second stage's own wall time
per case (patch cutting, refiner folds, decoding; the first stage is not counted) and its point statuses; the median
error per landmark. The JSON (``--json``) also lists each case's errors per landmark after each stage.

    .venv/bin/python benchmarks/bench_refine.py MODEL_DIR MANIFEST [--n N] [--threads 2] [--json OUT]

MODEL_DIR is a two-stage model folder (a ``--stage refine`` run's model/) or its run folder; MANIFEST holds the truth
(e.g. that run's test_manifest.csv: cases neither stage was trained or validated on; a manifest of other cases is
fairer still). The landmarks evaluated are those the refiner refines (``--landmarks`` to choose). Each case is
detected twice, with ``stages=1`` and ``stages=2``, so stage 2 starts from exactly the stage-1 points reported.
Wall time on a busy machine is not the time on an idle one: quote it from a run with nothing else on the cores. The
CPU time (process time of detect with both stages minus with one) does not depend on what else runs; with
``--threads 1`` it is the time one idle core would take.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from AorticRootLandmarksLib.constants import HINGE_NAMES
from AorticRootLandmarksLib.detection import detect
from AorticRootLandmarksLib.errors import InputError
from AorticRootLandmarksLib.evaluation import landmark_errors, success_detection_rate
from AorticRootLandmarksLib.geometry import plane_angle_deg, select_points
from AorticRootLandmarksLib.inference import load_ensemble
from AorticRootLandmarksLib.io import read_image, read_manifest
from AorticRootLandmarksLib.progress import progress_bar
from AorticRootLandmarksLib.refine import STATUSES

THRESHOLDS_MM = (0.5, 1.0, 1.5, 2.0)


def _plane_angles(pred: np.ndarray, true: np.ndarray, names: list[str]) -> np.ndarray:
    """(N,) plane angle in degrees per case (NaN without the three hinge points)."""
    if not set(HINGE_NAMES) <= set(names):
        return np.full(len(pred), np.nan)
    pairs = zip(pred, true, strict=True)
    return np.array([plane_angle_deg(select_points(names, p), select_points(names, t)) for p, t in pairs])


def summary(pred: np.ndarray, true: np.ndarray, names: list[str]) -> dict:
    """Errors (mm), SDR and plane angles of (N, K, 3) predictions against the truth, world LPS mm."""
    errors = landmark_errors(pred, true)
    angles = _plane_angles(pred, true, names)
    finite = angles[np.isfinite(angles)]
    return {
        "median": float(np.median(errors)),
        "p75": float(np.percentile(errors, 75)),
        "p95": float(np.percentile(errors, 95)),
        "max": float(errors.max()),
        "sdr": success_detection_rate(errors, THRESHOLDS_MM),
        "angle_median": float(np.median(finite)) if finite.size else None,
        "angle_p95": float(np.percentile(finite, 95)) if finite.size else None,
        "per_landmark_median": {n: float(np.median(errors[:, k])) for k, n in enumerate(names)},
    }


def run(model: Path, manifest: Path, n: int | None, landmarks: list[str] | None, tta: bool = True) -> dict:
    ensemble = load_ensemble(model, "cpu")
    if ensemble.refiner is None:
        raise SystemExit(f"{model}: the model has no second stage (no refine/ folder)")
    names = landmarks or [name for name in ensemble.names if name in ensemble.refiner.names]
    cases = read_manifest(manifest, names)[:n]
    pred, cpu = {1: [], 2: []}, {1: [], 2: []}
    seconds, statuses = [], {status: 0 for status in STATUSES}
    for case in progress_bar(cases, desc="detect, 1 and 2 stages", unit="CT"):
        image = read_image(case.image)
        for stages in (1, 2):
            start = time.process_time()
            detection = detect(image, ensemble, stages=stages, tta=tta)
            cpu[stages].append(time.process_time() - start)
            pred[stages].append(detection.positions_lps[[detection.names.index(name) for name in names]])
        seconds.append(detection.refinement.seconds)
        for point in detection.refinement.points:
            statuses[point.status] += point.name in names
    true = np.stack([case.landmarks_lps for case in cases])
    errors = {stages: landmark_errors(np.stack(pred[stages]), true) for stages in (1, 2)}
    per_case = [{"case": case.case_id, "stage1_mm": [round(float(e), 3) for e in errors[1][i]],
                 "stage2_mm": [round(float(e), 3) for e in errors[2][i]]} for i, case in enumerate(cases)]
    return {
        "model": str(model), "manifest": str(manifest), "n_cases": len(cases), "landmarks": names,
        "threads": torch.get_num_threads(),
        "stage1": summary(np.stack(pred[1]), true, names), "stage2": summary(np.stack(pred[2]), true, names),
        "added_seconds": {"median": float(np.median(seconds)), "p95": float(np.percentile(seconds, 95)),
                          "max": float(np.max(seconds))},
        # CPU time of detect with both stages minus with one: the second stage's cost, whatever else runs
        "added_cpu_seconds": float(np.median(np.subtract(cpu[2], cpu[1]))),
        "stage1_cpu_seconds": float(np.median(cpu[1])),
        "statuses": statuses,
        "cases": per_case,
    }  # fmt: skip


def _number(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_report(result: dict) -> str:
    sdr = " | ".join(f"SDR@{t:g}" for t in THRESHOLDS_MM)
    lines = [
        f"{result['n_cases']} CTs, landmarks {', '.join(result['landmarks'])}; errors in mm, plane angle in degrees",
        "",
        f"| stages | median | p75 | p95 | max | {sdr} | angle median | angle p95 |",
        "|---|" + "---|" * (6 + len(THRESHOLDS_MM)),
    ]
    for stages in (1, 2):
        s = result[f"stage{stages}"]
        rates = " | ".join(f"{100 * s['sdr'][str(float(t))]:.0f} %" for t in THRESHOLDS_MM)
        lines.append(f"| {stages} | {s['median']:.2f} | {s['p75']:.2f} | {s['p95']:.2f} | {s['max']:.2f} | {rates} | "
                     f"{_number(s['angle_median'])} | {_number(s['angle_p95'])} |")  # fmt: skip
    added = result["added_seconds"]
    lines += [
        "",
        f"added by stage 2: {added['median']:.3f} s per case median, p95 {added['p95']:.3f} s, "
        f"max {added['max']:.3f} s ({result['threads']} CPU threads); CPU time {result['added_cpu_seconds']:.3f} s "
        f"per case median (the first stage: {result['stage1_cpu_seconds']:.2f} s)",
        "statuses: " + ", ".join(f"{status} {count}" for status, count in result["statuses"].items() if count),
        "median per landmark, stage 1 -> 2: " + ", ".join(
            f"{n} {result['stage1']['per_landmark_median'][n]:.2f} -> {result['stage2']['per_landmark_median'][n]:.2f}"
            for n in result["landmarks"]),
    ]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="two-stage model folder or its run folder")
    parser.add_argument("manifest", type=Path, help="manifest CSV with the truth")
    parser.add_argument("--n", type=int, default=None, help="first N cases only")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    parser.add_argument("--landmarks", type=lambda t: t.split(","), default=None, help="comma-separated names")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--no-tta", action="store_true", help="detect on one grid (no test-time augmentation)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        result = run(args.model, args.manifest, args.n, args.landmarks, not args.no_tta)
    except InputError as error:  # e.g. a manifest without a landmark's columns: one line, no traceback
        raise SystemExit(f"bench_refine: {error}") from None
    print(format_report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
