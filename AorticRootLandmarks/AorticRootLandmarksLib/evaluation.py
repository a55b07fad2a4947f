"""Evaluate detections against a manifest's truth: landmark errors, SDR, annulus-plane metrics, per quality grade.

:func:`evaluate_predictions` works in memory (training calls it on its detections); :func:`evaluate` reads the
files ``PRED_DIR/<case_id>.json`` written by ``aortic-root detect``::

    {"landmarks": {"RCC": {"position_lps": [x, y, z], "score": s, "confidence": c, ...}, "LCC": ..., "NCC": ...}, ...}

matched to manifest cases by ``io.Case.case_id``. All coordinates are world LPS mm; errors are Euclidean mm.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import geometry, io
from .constants import DEFAULT_LANDMARKS, HINGE_NAMES
from .errors import InputError
from .outputs import atomic_output_dir
from .typing import PathLike

#: Success detection rate thresholds (mm), as reported in landmark-detection papers.
SDR_THRESHOLDS_MM = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0)
_STATS = ("median", "mean", "q1", "q3", "max")


def landmark_errors(pred_lps: np.ndarray, true_lps: np.ndarray) -> np.ndarray:
    """Euclidean landmark errors.

    Args:
        pred_lps: (N, K, 3) predicted positions, world LPS mm.
        true_lps: (N, K, 3) true positions, world LPS mm.

    Returns:
        (N, K) errors in mm.
    """
    pred, true = np.asarray(pred_lps, dtype=np.float64), np.asarray(true_lps, dtype=np.float64)
    if pred.shape != true.shape or pred.ndim != 3 or pred.shape[-1] != 3:
        raise ValueError(f"landmark_errors: expected two (N, K, 3) arrays, got {pred.shape} and {true.shape}")
    return np.linalg.norm(pred - true, axis=-1)


def _stats(values: np.ndarray) -> dict[str, float | int | None]:
    """median, mean, quartiles, max and count of the finite values (None when there are none)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {**{key: None for key in _STATS}, "n": 0}
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    stats = {"median": median, "mean": values.mean(), "q1": q1, "q3": q3, "max": values.max()}
    return {**{key: float(value) for key, value in stats.items()}, "n": int(values.size)}


def summarize(errors: np.ndarray, names: Sequence[str] | None = None) -> dict:
    """Summary statistics of errors; NaN values (e.g. undefined plane metrics) are left out of them.

    Args:
        errors: (N,) values, or (N, K) errors per landmark.
        names: K landmark names for (N, K) input (default "0", "1", ...).

    Returns:
        (N,): ``{"median", "mean", "q1", "q3", "max", "n"}``.
        (N, K): ``{name: stats, ..., "all": stats over every entry}``.
    """
    errors = np.asarray(errors, dtype=np.float64)
    if errors.ndim == 1:
        return _stats(errors)
    if errors.ndim != 2:
        raise ValueError(f"summarize: expected (N,) or (N, K) errors, got shape {errors.shape}")
    names = [str(k) for k in range(errors.shape[1])] if names is None else list(names)
    if len(names) != errors.shape[1]:
        raise ValueError(f"summarize: {len(names)} names for {errors.shape[1]} landmarks")
    summary = {name: _stats(errors[:, k]) for k, name in enumerate(names)}
    summary["all"] = _stats(errors)
    return summary


def success_detection_rate(errors: np.ndarray, thresholds: Sequence[float] = SDR_THRESHOLDS_MM) -> dict[str, float]:
    """Fraction of errors within each threshold (error <= t); every entry counts, a NaN as a miss.

    Args:
        errors: (N,) or (N, K) errors in mm.
        thresholds: thresholds in mm.

    Returns:
        ``{"1.0": fraction, "1.5": ..., ...}`` keyed by ``str(float(t))``; None for no errors.
    """
    errors = np.asarray(errors, dtype=np.float64).ravel()
    with np.errstate(invalid="ignore"):
        return {str(float(t)): float(np.mean(errors <= t)) if errors.size else None for t in thresholds}


def _read_prediction(path: Path, landmarks: Sequence[str]) -> np.ndarray:
    """(K, 3) LPS positions of the named landmarks in one detection JSON."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: not a readable JSON file ({error})") from None
    found = document.get("landmarks") if isinstance(document, dict) else None
    if not isinstance(found, dict):
        raise InputError(f"{path}: no 'landmarks' object; not a detection file")
    points = []
    for name in landmarks:
        entry = found.get(name)
        position = entry.get("position_lps") if isinstance(entry, dict) else None
        if position is None:
            raise InputError(f"{path}: landmark {name} missing (has {', '.join(found) or 'none'})")
        try:
            point = np.array(position, dtype=np.float64)
        except (TypeError, ValueError):
            point = np.full(0, np.nan)
        if point.shape != (3,) or not np.all(np.isfinite(point)):
            raise InputError(f"{path}: landmark {name} position_lps {position!r} is not 3 finite numbers")
        points.append(point)
    return np.stack(points)


def read_predictions(pred_dir: PathLike, landmarks: Sequence[str] = DEFAULT_LANDMARKS) -> dict[str, np.ndarray]:
    """Read every detection file of a folder.

    Args:
        pred_dir: folder of ``<case_id>.json`` detection files (``*.mrk.json`` Slicer markups and ``*.plan.json``
            plans are skipped).
        landmarks: the K names to read, in this order.

    Returns:
        ``{case_id: (K, 3) world LPS mm}``.

    Raises:
        InputError: missing folder, unreadable JSON, a missing landmark or a bad position.
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise InputError(f"{pred_dir}: prediction folder not found")
    return {path.name[: -len(".json")]: _read_prediction(path, landmarks) for path in _prediction_files(pred_dir)}


def _prediction_files(pred_dir: Path) -> list[Path]:
    files = (p for p in pred_dir.glob("*.json") if p.is_file() and not p.name.startswith("."))
    return sorted(p for p in files if not p.name.endswith((".mrk.json", ".plan.json")))


def _plane_metrics(pred: np.ndarray, true: np.ndarray, names: Sequence[str], case: str) -> tuple[float, float]:
    """(plane distance mm, plane angle deg) of the hinge points among (K, 3) `pred` and `true`; NaN if undefined."""
    try:
        pred, true = geometry.select_points(names, pred), geometry.select_points(names, true)
        return geometry.plane_distance_mm(pred, true), geometry.plane_angle_deg(pred, true)
    except InputError as error:
        warnings.warn(f"{case}: no annulus plane metrics ({error})", stacklevel=4)
        return math.nan, math.nan


def _block(errors: np.ndarray, planes: np.ndarray | None, names: Sequence[str]) -> dict:
    """Summary of one set of cases: errors (N, K) mm, planes (N, 2) distance mm / angle deg or None."""
    block = {
        "n_cases": int(errors.shape[0]),
        "errors_mm": summarize(errors, names),
        "mean_error_mm": summarize(errors.mean(axis=1)),
        "sdr": success_detection_rate(errors),
        "sdr_per_landmark": {name: success_detection_rate(errors[:, k]) for k, name in enumerate(names)},
    }
    if planes is not None:
        block["plane_distance_mm"] = summarize(planes[:, 0])
        block["plane_angle_deg"] = summarize(planes[:, 1])
    return block


def evaluate(
    pred_dir: PathLike,
    manifest: PathLike,
    out_dir: PathLike | None = None,
    landmarks: Sequence[str] = DEFAULT_LANDMARKS,
    force: bool = False,
) -> dict:
    """Compare the detection files of a folder with the manifest's truth (the images need not exist).

    Args:
        pred_dir: folder of ``<case_id>.json`` detection files.
        manifest: manifest CSV (``io.read_manifest``), truth in world LPS mm.
        out_dir: if given, the report is written there (:func:`write_report`).
        landmarks: names to evaluate; plane metrics when RCC, LCC and NCC are among them.
        force: replace an existing ``out_dir`` written by this tool.

    Returns:
        See :func:`evaluate_predictions`.

    Raises:
        InputError: bad manifest or prediction files, no manifest case with a prediction, a refused ``out_dir``.
    """
    pred_dir = Path(pred_dir)
    # Enter the output folder first, so a refused one fails before any work.
    output = atomic_output_dir(out_dir, force, [pred_dir, manifest]) if out_dir else contextlib.nullcontext()
    with output as tmp:
        if not pred_dir.is_dir():
            raise InputError(f"{pred_dir}: prediction folder not found")
        cases = io.read_manifest(manifest, landmarks, check_images=False)
        available = {p.name[: -len(".json")]: p for p in _prediction_files(pred_dir)}
        found = [c.case_id for c in cases if c.case_id in available]
        predictions = {name: _read_prediction(available[name], landmarks) for name in found}
        if not predictions:
            raise InputError(f"{pred_dir}: no prediction for any of the {len(cases)} cases of {manifest}")
        result = evaluate_predictions(predictions, cases, landmarks)
        result.update(manifest=str(manifest), predictions=str(pred_dir))
        result["extra_predictions"] = sorted(set(available) - {c.case_id for c in cases})
        if tmp is not None:
            write_report(result, tmp)
    if out_dir is not None:
        result["out_dir"] = str(out_dir)
    return result


def evaluate_predictions(
    predictions: dict[str, np.ndarray], cases: Sequence[io.Case], landmarks: Sequence[str] = DEFAULT_LANDMARKS
) -> dict:
    """Compare predicted landmarks with the truth of `cases`, in memory.

    Cases without a prediction are left out, listed in ``missing_predictions`` and warned about.

    Args:
        predictions: ``{case_id: (K, 3) world LPS mm}`` in the order of `landmarks`.
        cases: the manifest's cases (truth in world LPS mm, same landmark order).
        landmarks: the K names.

    Returns:
        ``{"landmarks", "thresholds_mm", "n_cases", "missing_predictions", "summary", "by_quality", "per_case"}``.
        ``summary`` and each ``by_quality[grade]`` hold ``errors_mm`` (stats per landmark and "all"),
        ``mean_error_mm``, ``sdr``, ``sdr_per_landmark`` and, with hinge points, ``plane_distance_mm`` and
        ``plane_angle_deg`` (:func:`geometry.plane_distance_mm`, symmetric reading of the paper's eq. 9; oriented
        normal angle in [0, 180]). ``by_quality`` is empty when no case has a grade.

    Raises:
        InputError: no case has a prediction.
    """
    landmarks = list(landmarks)
    matched = [case for case in cases if case.case_id in predictions]
    missing = [case.case_id for case in cases if case.case_id not in predictions]
    if not matched:
        raise InputError(f"no prediction for any of the {len(cases)} cases")
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        warnings.warn(f"{len(missing)} of {len(cases)} cases have no prediction ({shown})", stacklevel=2)

    pred = np.stack([np.asarray(predictions[case.case_id], dtype=np.float64) for case in matched])
    true = np.stack([case.landmarks_lps for case in matched])
    errors = landmark_errors(pred, true)
    planes = None
    if set(HINGE_NAMES) <= set(landmarks):
        triples = zip(pred, true, matched, strict=True)
        planes = np.array([_plane_metrics(p, t, landmarks, c.case_id) for p, t, c in triples])

    per_case = []
    for n, case in enumerate(matched):
        row = {"case_id": case.case_id, "quality": case.quality}
        row.update({f"{name}_mm": float(errors[n, k]) for k, name in enumerate(landmarks)})
        row["mean_mm"] = float(errors[n].mean())
        if planes is not None:
            row["plane_distance_mm"], row["plane_angle_deg"] = float(planes[n, 0]), float(planes[n, 1])
        per_case.append(row)

    grades = [case.quality for case in matched]
    by_quality = {}
    if any(grade is not None for grade in grades):
        for grade in sorted({g or "(none)" for g in grades}):
            rows = np.array([(g or "(none)") == grade for g in grades])
            by_quality[grade] = _block(errors[rows], None if planes is None else planes[rows], landmarks)

    return {
        "landmarks": landmarks,
        "thresholds_mm": list(SDR_THRESHOLDS_MM),
        "n_cases": len(matched),
        "missing_predictions": missing,
        "summary": _block(errors, planes, landmarks),
        "by_quality": by_quality,
        "per_case": per_case,
    }


def write_report(result: dict, folder: PathLike) -> None:
    """Write an :func:`evaluate_predictions` result into an existing folder: per_case.csv, summary.json, errors.png."""
    folder = Path(folder)
    _write_per_case(folder / "per_case.csv", result["per_case"])
    summary = {key: value for key, value in result.items() if key != "per_case"}
    (folder / "summary.json").write_text(json.dumps(_json_safe(summary), indent=2) + "\n", encoding="utf-8")
    rows, names = result["per_case"], result["landmarks"]
    errors = np.array([[row[f"{name}_mm"] for name in names] for row in rows])
    plot_errors(folder / "errors.png", errors, names, [row["quality"] for row in rows])


def _json_safe(value):
    """Replace NaN/inf by None (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _csv_cell(value) -> str:
    """4 decimals for floats, empty for None/NaN (undefined plane metrics)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _write_per_case(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({key: _csv_cell(value) for key, value in row.items()} for row in rows)


def plot_errors(path: PathLike, errors: np.ndarray, names: Sequence[str], grades: Sequence[str | None]) -> None:
    """Figure of the errors: box + points per landmark, the SDR curve, and mean error per quality grade.

    Args:
        path: output image (``.png``).
        errors: (N, K) errors in mm.
        names: K landmark names.
        grades: N quality grades (None where unknown); the third panel appears only if some grade is known.
    """
    from matplotlib.figure import Figure  # lazy: matplotlib only when a figure is asked for

    grouped = any(g is not None for g in grades)
    fig = Figure(figsize=(5.0 * (3 if grouped else 2), 4.2), layout="constrained")
    axes = fig.subplots(1, 3 if grouped else 2)
    rng = np.random.default_rng(0)  # fixed jitter: the same figure for the same data

    def box_strip(ax, columns, labels):
        ax.boxplot(columns, showfliers=False, widths=0.5)
        ax.set_xticks(range(1, len(labels) + 1), labels)
        for i, values in enumerate(columns, start=1):
            ax.plot(i + rng.uniform(-0.15, 0.15, len(values)), values, "o", ms=3, alpha=0.6, color="tab:blue")

    box_strip(axes[0], [errors[:, k] for k in range(len(names))] + [errors.mean(axis=1)], [*names, "mean"])
    axes[0].axhline(2.0, color="gray", ls="--", lw=0.8)
    axes[0].set(ylabel="error (mm)", title=f"Landmark errors (n = {errors.shape[0]} cases)")
    top = max(5.0, float(np.nanmax(errors)) * 1.05) if np.isfinite(errors).any() else 5.0
    thresholds = np.linspace(0.0, top, 200)
    for k, name in enumerate([*names, "all"]):
        values = errors.ravel() if name == "all" else errors[:, k]
        axes[1].plot(thresholds, [(values <= t).mean() for t in thresholds], label=name, lw=2 if name == "all" else 1)
    for t in SDR_THRESHOLDS_MM:
        axes[1].axvline(t, color="gray", lw=0.5, alpha=0.5)
    axes[1].set(xlabel="threshold (mm)", ylabel="fraction within", title="Success detection rate", ylim=(0, 1.02))
    axes[1].legend(loc="lower right")
    if grouped:
        labels = sorted({g or "(none)" for g in grades})
        means = errors.mean(axis=1)
        columns = [means[[(g or "(none)") == label for g in grades]] for label in labels]
        box_strip(axes[2], columns, [f"{label}\n(n = {len(c)})" for label, c in zip(labels, columns, strict=True)])
        axes[2].set(ylabel="mean error per case (mm)", title="By image quality")
    fig.savefig(path, dpi=120)


def _fmt(value) -> str:
    """Two decimals, or '-' for an undefined statistic."""
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.2f}"


def format_table(result: dict) -> str:
    """A short printed table of an :func:`evaluate` result (errors mm, SDR@2mm, plane metrics, quality grades)."""
    summary, at_2mm, missing = result["summary"], str(2.0), result.get("missing_predictions", [])
    header = f"{result['n_cases']} cases"
    if missing:
        header += f" ({len(missing)} without prediction: {', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})"
    lines = [header, f"{'landmark':<10}" + "".join(f"{key:>8}" for key in _STATS) + f"{'SDR@2mm':>9}"]
    for name in [*result["landmarks"], "all"]:
        stats = summary["errors_mm"][name]
        sdr = summary["sdr"] if name == "all" else summary["sdr_per_landmark"][name]
        lines.append(f"{name:<10}" + "".join(f"{_fmt(stats[key]):>8}" for key in _STATS) + f"{sdr[at_2mm]:>9.0%}")
    for key, label in (("plane_distance_mm", "plane distance (mm)"), ("plane_angle_deg", "plane angle (deg)")):
        if key in summary:
            med, mean, top = (_fmt(summary[key][stat]) for stat in ("median", "mean", "max"))
            lines.append(f"{label}: median {med}, mean {mean}, max {top}")
    for grade, block in result.get("by_quality", {}).items():
        stats = block["errors_mm"]["all"]
        line = (f"quality {grade} (n = {block['n_cases']}): median {_fmt(stats['median'])} mm, "
                f"mean {_fmt(stats['mean'])} mm, SDR@2mm {block['sdr'][at_2mm]:.0%}")
        if "plane_distance_mm" in block:
            line += f", plane distance median {_fmt(block['plane_distance_mm']['median'])} mm"
        lines.append(line)
    return "\n".join(lines)
