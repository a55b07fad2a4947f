"""Calibrate quality control on validation CTs: collect each landmark's signals and error, then choose the
confidence constants (qc.QcSettings) that flag the bad points and spare the good ones.

    .venv/bin/python benchmarks/calibrate_qc.py collect MANIFEST [MANIFEST ...] --out signals.csv [--model DIR]
    .venv/bin/python benchmarks/calibrate_qc.py fit signals.csv [signals.csv ...] [--write MODEL_DIR]

`collect` runs the real detection on every case and writes one row per landmark the manifest has: its error (mm; and
the first stage's, before refinement) and every signal quality control has (stage-1 fold disagreement, peak
contrast, boundary score, the refiner's fold disagreement, shift, peak score, passes and status, whether the case
failed a case-level check). It does not overwrite an existing --out file. `fit` grid-searches the
constants of the confidence formula (qc/report.py) on those rows and prints, for the chosen constants and for the
current defaults: the rank correlation of confidence and error, the share of points > 5 mm flagged and the share of
good points flagged. "Flagged" is the point's own verdict (confidence below the review threshold, or its case failed).
`--write MODEL_DIR` stores the chosen constants in the model (``refine/model.json`` when the signals come from the
second stage, else ``model.json``; key ``quality_control``), where detection reads them (Ensemble.qc_settings).

Use validation CTs only (phantom seeds no model was trained on, never the test split or a held-out style): the
held-out styles are reported by benchmarks/bench_generalisation.py with the chosen constants.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import json
import time
from pathlib import Path

import numpy as np
from bench_generalisation import FLAG_ERROR_MM, spearman  # the same "bad point" and rank correlation as reported

from AorticRootLandmarksLib import qc
from AorticRootLandmarksLib.detection import detect
from AorticRootLandmarksLib.inference import load_ensemble
from AorticRootLandmarksLib.io import read_image, read_manifest

COLUMNS = ("case", "landmark", "error_mm", "stage1_error_mm", "stage1_rms_mm", "peak_contrast", "boundary",
           "refine_rms_mm", "refine_shift_mm", "refine_score", "refine_passes", "refine_status", "refine_failure",
           "case_failed_families", "verdict")  # fmt: skip
#: Values `fit` tries, per QcSettings field (the others keep their defaults).
GRID = {
    "fold_rms_half_mm": (3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 48.0),
    "refine_rms_half_mm": (0.5, 0.75, 1.0, 1.5, 2.0, 3.0),
    "refine_exponent": (2.0, 4.0),
    "shift_half_mm": (4.0, 6.0, 8.0, 12.0, 1e9),
    "contrast_half": (5.0, 10.0),
    "boundary_floor": (0.4, 0.6, 0.8),
    "refine_score_half": (None, 30.0, 40.0, 50.0, 60.0),  # None: no score term (the refiner's own scale)
}


def manifest_landmarks(manifest: Path, names: list[str]) -> list[str]:
    """The model's landmarks that `manifest` has columns for (NAME_x, NAME_y, NAME_z)."""
    with manifest.open(newline="", encoding="utf-8") as f:
        header = next(csv.reader(f), [])
    return [name for name in names if all(f"{name}_{axis}" in header for axis in "xyz")]


def collect_rows(manifest: Path, ensemble) -> list[dict]:
    """One row per landmark of every case of `manifest` that the manifest has the truth of (columns: COLUMNS)."""
    rows, names = [], manifest_landmarks(manifest, ensemble.names)
    for case in read_manifest(manifest, names):
        detection = detect(read_image(case.image), ensemble)
        report = detection.quality
        failed = {"image": any(not c.passed for c in report.image.values()), "located": not report.located,
                  "geometry": any(not c.passed for c in report.geometry.values())}  # fmt: skip
        refined = {} if detection.refinement is None else {p.name: p for p in detection.refinement.points}
        points = {p.name: p for p in report.points}
        for i, name in enumerate(detection.names):
            if name not in names:
                continue
            truth = case.landmarks_lps[names.index(name)]
            point, ref = points[name], refined.get(name)
            rows.append({
                "case": Path(case.image).name, "landmark": name,
                "error_mm": float(np.linalg.norm(detection.positions_lps[i] - truth)),
                "stage1_error_mm": None if ref is None else float(np.linalg.norm(ref.stage1_lps - truth)),
                "stage1_rms_mm": point.fold_rms_mm, "peak_contrast": point.peak_contrast, "boundary": point.boundary,
                "refine_rms_mm": None if ref is None else ref.fold_rms_mm,
                "refine_shift_mm": None if ref is None else ref.shift_mm,
                "refine_score": None if ref is None or not np.isfinite(ref.score) else ref.score,
                "refine_passes": None if ref is None else ref.passes,
                "refine_status": "" if ref is None else ref.status,
                "refine_failure": "" if ref is None else ref.failure,
                "case_failed_families": int(failed["image"]) + int(failed["located"]) + int(failed["geometry"]),
                "verdict": report.verdict,
            })  # fmt: skip
    return rows


def _float(text: str) -> float | None:
    return None if text in ("", "None") else float(text)


def read_rows(paths: list[Path]) -> list[dict]:
    rows = []
    for path in paths:
        with path.open(newline="", encoding="utf-8") as f:
            rows += list(csv.DictReader(f))
    return rows


def confidences(rows: list[dict], settings: qc.QcSettings) -> tuple[np.ndarray, np.ndarray]:
    """(N,) confidence and (N,) flagged of each row under `settings` (qc.point_quality: the detection's formula)."""
    conf, flagged = [], []
    for row in rows:
        families = int(row["case_failed_families"])
        point = qc.point_quality(
            row["landmark"], _float(row["stage1_rms_mm"]), float(row["peak_contrast"]), float(row["boundary"]),
            families, settings, row["refine_failure"], refine_rms=_float(row["refine_rms_mm"]),
            refine_shift=_float(row["refine_shift_mm"]), refine_score=_float(row.get("refine_score", "")),
        )
        conf.append(point.confidence)
        flagged.append(point.verdict == "low" or families > 0)
    return np.array(conf), np.array(flagged)


def figures(rows: list[dict], settings: qc.QcSettings) -> dict:
    errors = np.array([float(r["error_mm"]) for r in rows])
    conf, flagged = confidences(rows, settings)
    bad = errors > FLAG_ERROR_MM
    return {"spearman": spearman(conf, errors), "bad_flagged": float(flagged[bad].mean()) if bad.any() else np.nan,
            "good_flagged": float(flagged[~bad].mean()), "bad": int(bad.sum()), "points": len(rows)}  # fmt: skip


def score(f: dict) -> tuple:
    """Ordering of candidate settings: first catch >= 90 % of the bad points, then flag the fewest good ones, then
    the strongest (most negative) rank correlation."""
    return (f["bad_flagged"] >= 0.9, -f["good_flagged"], -f["spearman"])


def fit(rows: list[dict]) -> tuple[qc.QcSettings, dict]:
    best = None
    for values in itertools.product(*GRID.values()):
        settings = dataclasses.replace(qc.QcSettings(), **dict(zip(GRID, values, strict=True)))
        f = figures(rows, settings)
        if best is None or score(f) > score(best[1]):
            best = (settings, f)
    return best


def _print(label: str, f: dict) -> None:
    print(f"{label:<22} rank correlation {f['spearman']:+.2f}   bad points flagged {f['bad_flagged']:.0%} "
          f"(of {f['bad']})   good points flagged {f['good_flagged']:.0%} (of {f['points'] - f['bad']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="detect every case and write the per-point signals")
    c.add_argument("manifests", type=Path, nargs="+")
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--model", type=Path, help="model folder (default: the bundled model)")
    c.add_argument("--device", default="cpu")
    f = sub.add_parser("fit", help="choose the confidence constants on collected signals")
    f.add_argument("signals", type=Path, nargs="+")
    f.add_argument("--write", type=Path, metavar="MODEL_DIR", help="store the chosen constants in this model folder")
    args = parser.parse_args()
    if args.command == "collect":
        if args.out.exists():
            parser.error(f"{args.out} exists; give another --out (collect does not overwrite)")
        ensemble, start, rows = load_ensemble(args.model, args.device), time.perf_counter(), []
        for manifest in args.manifests:
            rows += collect_rows(manifest, ensemble)
            print(f"{manifest}: done ({time.perf_counter() - start:.0f} s)", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("w", newline="", encoding="utf-8") as out:
            writer = csv.DictWriter(out, COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {len(rows)} points to {args.out}")
        return
    missing = [str(path) for path in args.signals if not path.is_file()]
    if missing:
        parser.error(f"no such signals file: {', '.join(missing)}")
    rows = read_rows(args.signals)
    _print("current defaults", figures(rows, qc.QcSettings()))
    settings, best = fit(rows)
    _print("chosen", best)
    changed = {k: getattr(settings, k) for k in GRID if getattr(settings, k) is not None}  # None: the term is off
    print("chosen constants:", ", ".join(f"{k} = {v:g}" for k, v in changed.items()))
    if args.write:
        write(args.write, rows, changed, best, [p.name for p in args.signals])


def write(model: Path, rows: list[dict], constants: dict, found: dict, sources: list[str]) -> None:
    """Store `constants` as ``quality_control`` in the model's (or its second stage's) model.json, with how they
    were chosen (``quality_control_calibration``)."""
    second = all(row["refine_status"] for row in rows)
    path = model / ("refine" if second else "") / "model.json"
    meta = json.loads(path.read_text(encoding="utf-8"))
    meta["quality_control"] = {k: float(v) for k, v in constants.items()}
    meta["quality_control_calibration"] = {
        "by": "benchmarks/calibrate_qc.py fit", "signals": sources, "points": found["points"],
        "points_over_5mm": found["bad"], "rank_correlation": round(found["spearman"], 3),
        "bad_flagged": round(found["bad_flagged"], 3), "good_flagged": round(found["good_flagged"], 3),
    }  # fmt: skip
    path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    print(f"wrote the constants into {path}")


if __name__ == "__main__":
    main()
