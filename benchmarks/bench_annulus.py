"""Benchmark: the annulus measured on the CT (annulus.measure_annulus) against the phantom's truth.

For each case the annulus is measured on the plane of the TRUE hinge points and, with ``--predictions``, on the plane
of DETECTED ones (``<case>.mrk.json`` files written by ``aortic-root detect``). Printed: perimeter error (mm) and area
error (%) as median / p90 / max of the absolute error with the median signed error (bias) and the worst case, per
quality grade and overall; minimum and maximum diameter errors; the circumcircle estimate of the hinge points
(geometry.annulus_measurements) for comparison; and how far the measurement moves from true to detected hinges.
Failed measurements (ok False) are counted, not scored. Prints figures; asserts nothing.

Bias to keep in mind: the phantom's truth is the analytic ellipse of the ring at h = 0, which is also where its
hinge points lie, so the true hinge plane is exactly the truth plane; and the phantom's lumen, wall and blur are
simpler than a patient's. The figures say how well the tracer follows a blurred, noisy lumen edge, not how it agrees
with a cardiologist's contour.

    # phantom cases of every quality grade, generated into --work (cached there; ~5-10 s per full-size case)
    nice -n 15 .venv/bin/python benchmarks/bench_annulus.py --style classic --per-grade 4 --work /tmp
    # an existing dataset (manifest.csv, truth.json, images/), e.g. the full-size train-style set
    nice -n 15 .venv/bin/python benchmarks/bench_annulus.py --dataset /work/data/loc-train
    # with detected hinge points: aortic-root detect --out PRED <images>, then
    nice -n 15 .venv/bin/python benchmarks/bench_annulus.py --dataset DIR --predictions PRED
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from AorticRootLandmarksLib import io
from AorticRootLandmarksLib.annulus import measure_annulus
from AorticRootLandmarksLib.constants import HINGE_NAMES
from AorticRootLandmarksLib.geometry import annulus_measurements, select_points
from AorticRootLandmarksLib.phantom import GRADES, generate_case
from AorticRootLandmarksLib.phantom.params import sample_params

TRUTH_KEYS = ("perimeter_mm", "area_mm2", "min_diameter_mm", "max_diameter_mm")


# ------------------------------------------------------------------------------------------------ the cases


def pick_indices(seed: int, style: str, per_grade: int, size: str, limit: int = 20000) -> list[int]:
    """The first ``per_grade`` case indices of each quality grade of series ``seed`` (parameters only: cheap)."""
    chosen: dict[str, list[int]] = {g: [] for g in GRADES}
    for index in range(limit):
        grade = sample_params(seed, index, size, style)["quality"]
        if len(chosen[grade]) < per_grade:
            chosen[grade].append(index)
        if all(len(v) >= per_grade for v in chosen.values()):
            break
    return sorted(i for v in chosen.values() for i in v)


def generated_cases(work: Path, style: str, seed: int, per_grade: int, size: str) -> Path:
    """Generate (or reuse) the cases into ``work/annulus-bench-<style>-s<seed>-<size>``: images/, truth.json and a
    manifest.csv that ``aortic-root detect`` and ``--dataset`` read. Returns the folder."""
    folder = work / f"annulus-bench-{style}-s{seed}-{size}"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    truth_path = folder / "truth.json"
    truth = json.loads(truth_path.read_text()) if truth_path.exists() else {}
    cases = []
    for index in pick_indices(seed, style, per_grade, size):
        case_id = f"phantom_{index:04d}"
        image_path = folder / "images" / f"{case_id}.nii.gz"
        if case_id not in truth or not image_path.exists():
            start = time.perf_counter()
            case = generate_case(index, seed, size, style)
            sitk.WriteImage(case.image, str(image_path), useCompression=True)
            truth[case_id] = case.truth
            truth_path.write_text(json.dumps(truth))
            print(f"generated {case_id} (grade {case.quality}) in {time.perf_counter() - start:.1f} s", flush=True)
        points = np.array([truth[case_id]["landmarks"][name] for name in HINGE_NAMES])
        cases.append(io.Case(case_id, image_path.resolve(), points, truth[case_id]["quality"]))
    io.write_manifest(folder / "manifest.csv", cases)
    return folder


def dataset_cases(folder: Path, limit: int | None) -> list[tuple[str, Path, dict]]:
    """(case id, image path, truth) of a dataset folder with manifest.csv and truth.json (phantom write_dataset)."""
    truth = json.loads((folder / "truth.json").read_text())
    cases = io.read_manifest(folder / "manifest.csv")
    return [(c.case_id, Path(c.image), truth[c.case_id]) for c in cases][:limit]


# ------------------------------------------------------------------------------------------------ measuring


def measure_case(case_id: str, image_path: Path, truth: dict, predictions: Path | None, label: str) -> dict:
    """Errors of one case with the true hinges (and detected ones, when there is a prediction for it)."""
    image = io.read_image(image_path)
    true_points = np.array([truth["landmarks"][name] for name in HINGE_NAMES])
    row: dict = {"case": label, "grade": truth["quality"], "style": truth.get("style", "classic")}
    start = time.perf_counter()
    row.update(_errors("true", measure_annulus(image, true_points), truth["annulus"]))
    row["seconds"] = time.perf_counter() - start
    circ = annulus_measurements(true_points)
    row["circ_perimeter_err_mm"] = circ["circumcircle_perimeter_mm"] - truth["annulus"]["perimeter_mm"]
    row["circ_area_err_pct"] = 100 * (circ["circumcircle_area_mm2"] / truth["annulus"]["area_mm2"] - 1)
    markups = None if predictions is None else _prediction_file(predictions, case_id, image_path)
    if markups is not None:
        names, points = io.read_markups(markups)
        detected = select_points(names, points)
        row["hinge_err_mm"] = float(np.linalg.norm(detected - true_points, axis=1).mean())
        row.update(_errors("det", measure_annulus(image, detected), truth["annulus"]))
        circ = annulus_measurements(detected)
        row["det_circ_perimeter_err_mm"] = circ["circumcircle_perimeter_mm"] - truth["annulus"]["perimeter_mm"]
    return row


def _prediction_file(predictions: Path, case_id: str, image_path: Path) -> Path | None:
    """``<case>.mrk.json``, or ``<dataset>_<case>.mrk.json`` (training runs prefix test cases with their dataset)."""
    dataset = image_path.parent.parent.name  # DATASET/images/<case>.nii.gz
    for name in (f"{case_id}.mrk.json", f"{dataset}_{case_id}.mrk.json"):
        if (predictions / name).is_file():
            return predictions / name
    return None


def _errors(prefix: str, m, truth: dict) -> dict:
    out = {f"{prefix}_ok": m.ok, f"{prefix}_reason": m.reason, f"{prefix}_warned": bool(m.warnings)}
    out[f"{prefix}_warnings"] = " | ".join(m.warnings)
    out[f"{prefix}_hinge_offset_mm"] = float(np.max(np.abs(m.hinge_offsets_mm))) if m.ok else float("nan")
    out[f"{prefix}_perimeter_err_mm"] = m.perimeter_mm - truth["perimeter_mm"]
    out[f"{prefix}_area_err_pct"] = 100 * (m.area_mm2 / truth["area_mm2"] - 1)
    out[f"{prefix}_min_diameter_err_mm"] = m.min_diameter_mm - truth["min_diameter_mm"]
    out[f"{prefix}_max_diameter_err_mm"] = m.max_diameter_mm - truth["max_diameter_mm"]
    out[f"{prefix}_perimeter_mm"] = m.perimeter_mm
    out[f"{prefix}_area_mm2"] = m.area_mm2
    return out


# ------------------------------------------------------------------------------------------------ reporting


def summary(rows: list[dict], key: str) -> str:
    """``median|abs| p90|abs| max|abs| (worst case) bias=median signed`` of a column over the rows that have it."""
    pairs = [(r[key], r["case"]) for r in rows if key in r and np.isfinite(r[key])]
    if not pairs:
        return "-"
    values = np.array([v for v, _ in pairs])
    worst = int(np.argmax(np.abs(values)))
    a = np.abs(values)
    return (f"{np.median(a):5.2f} {np.percentile(a, 90):5.2f} {a.max():6.2f} ({pairs[worst][1]}) "
            f"bias {np.median(values):+5.2f}")  # fmt: skip


def report(rows: list[dict], prefix: str, title: str) -> None:
    if not any(f"{prefix}_ok" in r for r in rows):
        return
    print(f"\n== {title}: |error| median p90 max (worst case), bias = median signed error")
    groups = [(g, [r for r in rows if r["grade"] == g]) for g in GRADES] + [("all", rows)]
    for name, group in groups:
        group = [r for r in group if f"{prefix}_ok" in r]
        if not group:
            continue
        ok = [r for r in group if r[f"{prefix}_ok"]]
        warned = sum(r[f"{prefix}_warned"] for r in ok)
        print(
            f"grade {name:3s} n={len(group):3d} ok={len(ok):3d} warned={warned:2d}  perimeter mm "
            f"{summary(ok, prefix + '_perimeter_err_mm')} | area % {summary(ok, prefix + '_area_err_pct')}"
        )
    ok = [r for r in rows if r.get(f"{prefix}_ok")]
    clean = [r for r in ok if not r[f"{prefix}_warned"]]
    print(
        f"without warnings (n={len(clean)}): perimeter mm {summary(clean, prefix + '_perimeter_err_mm')} | "
        f"area % {summary(clean, prefix + '_area_err_pct')}"
    )
    print(f"min diameter mm {summary(ok, prefix + '_min_diameter_err_mm')}")
    print(f"max diameter mm {summary(ok, prefix + '_max_diameter_err_mm')}")
    print(f"largest hinge-contour distance mm {summary(ok, prefix + '_hinge_offset_mm')}")
    for r in rows:
        if f"{prefix}_ok" in r and not r[f"{prefix}_ok"]:
            print(f"  failed {r['case']} (grade {r['grade']}): {r[f'{prefix}_reason']}")
        elif r.get(f"{prefix}_warned"):
            print(
                f"  warned {r['case']} (grade {r['grade']}, perimeter {r[f'{prefix}_perimeter_err_mm']:+.2f} mm, "
                f"area {r[f'{prefix}_area_err_pct']:+.1f} %): {r[f'{prefix}_warnings']}"
            )


def report_shift(rows: list[dict]) -> None:
    both = [r for r in rows if r.get("true_ok") and r.get("det_ok")]
    if not both:
        return
    for r in both:
        r["shift_perimeter_mm"] = r["det_perimeter_mm"] - r["true_perimeter_mm"]
        r["shift_area_pct"] = 100 * (r["det_area_mm2"] / r["true_area_mm2"] - 1)
    print(f"\n== shift detected - true hinges (n={len(both)}; mean hinge error "
          f"{np.mean([r['hinge_err_mm'] for r in both]):.2f} mm)")  # fmt: skip
    print(f"perimeter mm {summary(both, 'shift_perimeter_mm')}")
    print(f"area %       {summary(both, 'shift_area_pct')}")
    print(f"circumcircle of detected hinges, perimeter error mm {summary(rows, 'det_circ_perimeter_err_mm')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, action="append", default=[], help="manifest.csv + truth.json folder")
    parser.add_argument("--style", help="generate phantom cases of this style into --work")
    parser.add_argument("--per-grade", type=int, default=4, help="generated cases per quality grade")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", default="full", choices=("full", "small"))
    parser.add_argument("--work", type=Path, default=Path("/tmp"), help="folder for generated cases (cached)")
    parser.add_argument("--predictions", type=Path, help="folder of <case>.mrk.json from aortic-root detect")
    parser.add_argument("--limit", type=int, help="first N cases of each dataset")
    parser.add_argument("--only-predicted", action="store_true", help="only cases with a file in --predictions")
    parser.add_argument("--csv", type=Path, help="write the per-case rows here")
    parser.add_argument("--verbose", action="store_true", help="one line per case")
    args = parser.parse_args()
    folders = list(args.dataset)
    if args.style:
        folders.append(generated_cases(args.work, args.style, args.seed, args.per_grade, args.size))
    rows = []
    for folder in folders:
        for case_id, image_path, truth in dataset_cases(folder, args.limit):
            if args.only_predicted and not (
                args.predictions and _prediction_file(args.predictions, case_id, image_path)
            ):
                continue
            label = case_id if len(folders) == 1 else f"{folder.name}/{case_id}"  # ids repeat across datasets
            row = measure_case(case_id, image_path, truth, args.predictions, label)
            rows.append(row)
            if args.verbose:
                print(f"{row['case']} grade {row['grade']:2s} P {row['true_perimeter_err_mm']:+6.2f} mm "
                      f"A {row['true_area_err_pct']:+6.1f} % circle P {row['circ_perimeter_err_mm']:+6.2f} "
                      f"{row['seconds']:.2f} s {row['true_reason']}", flush=True)  # fmt: skip
    print(f"{len(rows)} cases from {', '.join(str(f) for f in folders)}; median "
          f"{np.median([r['seconds'] for r in rows]):.2f} s per measurement")  # fmt: skip
    report(rows, "true", "measured on the plane of the TRUE hinge points")
    print(f"circumcircle of true hinges: perimeter mm {summary(rows, 'circ_perimeter_err_mm')} | "
          f"area % {summary(rows, 'circ_area_err_pct')}")  # fmt: skip
    report(rows, "det", "measured on the plane of the DETECTED hinge points")
    report_shift(rows)
    if args.csv:
        keys = sorted({k for r in rows for k in r})
        with args.csv.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, keys)
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
