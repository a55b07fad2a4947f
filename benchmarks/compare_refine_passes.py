"""Validation study: the second stage with and without recentring, and averaged over shifted patches.

For every case of the manifests the model detects both stages as bundled, then runs the refiner again on patches
centred on the stage-1 points shifted by 0 and +-SHIFT mm along each axis (7 patches per landmark). It prints, over
all points, the error of: stage 1; both stages as ``detect`` does it; the first patch's peak (no recentring); the mean
and the median of the 7 shifted peaks; and the rank correlation of the 7 peaks' spread and of the QC confidence with
the error. Use validation manifests only (never a test split or a held-out style).

    PYTHONPATH=AorticRootLandmarks .venv/bin/python benchmarks/compare_refine_passes.py MANIFEST [MANIFEST ...] \\
        [--model DIR] [--shift 2.5] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from bench_generalisation import spearman

from AorticRootLandmarksLib.detection import detect
from AorticRootLandmarksLib.errors import InputError
from AorticRootLandmarksLib.inference import load_ensemble
from AorticRootLandmarksLib.io import read_image, read_manifest
from AorticRootLandmarksLib.refine import _run_patches, refine  # _run_patches: one pass, without refine()'s rules


def case_rows(image, truth: np.ndarray, ensemble, names: list[str], shift: float, recentre: bool) -> list[dict]:
    """One row per landmark: errors (mm) of each variant, the shifted peaks' RMS spread (mm) and the QC confidence."""
    detection = detect(image, ensemble, stages=2)
    if recentre:  # as detection did before recentring was switched off
        refined = refine(image, detection.names, detection.stage1_positions_lps, ensemble.refiner, recentre=True)
        final = refined.positions_lps
    else:
        final = detection.positions_lps
    k = [detection.names.index(n) for n in names]
    stage1 = detection.stage1_positions_lps[k]
    offsets = np.vstack([np.zeros(3), shift * np.eye(3), -shift * np.eye(3)])
    channels = [ensemble.refiner.names.index(n) for n in names]
    peaks = np.stack([_run_patches(image, stage1 + o, channels, ensemble.refiner).peaks_lps for o in offsets])
    mean, median = peaks.mean(axis=0), np.median(peaks, axis=0)
    spread = np.sqrt(((peaks - mean) ** 2).sum(axis=-1).mean(axis=0))

    def err(points: np.ndarray) -> np.ndarray:
        return np.linalg.norm(points - truth, axis=1)

    columns = {"stage1": err(stage1), "detect": err(final[k]), "first_patch": err(peaks[0]), "mean_of_7": err(mean),
               "median_of_7": err(median), "spread_mm": spread, "confidence": detection.confidence[k]}
    return [{"landmark": n, **{key: float(v[i]) for key, v in columns.items()}} for i, n in enumerate(names)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifests", type=Path, nargs="+")
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the bundled model)")
    parser.add_argument("--shift", type=float, default=2.5, help="patch shift per axis, mm (default: %(default)s)")
    parser.add_argument("--recentre", action="store_true", help="the 'detect' column with recentring")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    torch.set_num_threads(2)
    try:  # a missing model or manifest column: one line, no traceback
        ensemble = load_ensemble(args.model, "cpu")
        rows, names = [], [n for n in ensemble.names if n in ensemble.refiner.names]
        for manifest in args.manifests:
            for case in read_manifest(manifest, names):
                rows += case_rows(read_image(case.image), case.landmarks_lps, ensemble, names, args.shift,
                                  args.recentre)  # fmt: skip
    except InputError as error:
        raise SystemExit(f"compare_refine_passes: {error}") from None
    print(f"{len(rows)} points; errors in mm")
    for key in ("stage1", "detect", "first_patch", "mean_of_7", "median_of_7"):
        e = np.array([r[key] for r in rows])
        print(f"{key:<12} median {np.median(e):5.2f} p75 {np.percentile(e, 75):5.2f} p90 {np.percentile(e, 90):5.2f} "
              f"p95 {np.percentile(e, 95):5.2f} mean {e.mean():5.2f} >5 mm {(e > 5).sum()}")  # fmt: skip
    errors = np.array([r["detect"] for r in rows])
    spread, confidence = (np.array([r[key] for r in rows]) for key in ("spread_mm", "confidence"))
    print(f"rank correlation with the error: spread of the 7 peaks {spearman(spread, errors):+.2f}, "
          f"QC confidence {spearman(confidence, errors):+.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
