"""Compare peak decodings (argmax, quadratic, centroid) on a training run's held-out test cases.

The network runs once per case; only the decoding differs. Prints the landmark error per decoding.

    .venv/bin/python benchmarks/compare_decoding.py RUN_DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from AorticRootLandmarksLib.grid import make_grid, resample_to_grid
from AorticRootLandmarksLib.inference import DECODINGS, decode_peaks, load_ensemble, predict_maps
from AorticRootLandmarksLib.io import read_image, read_manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="training run folder (holds test_manifest.csv and model/)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    ensemble = load_ensemble(args.run, args.device)
    spec = ensemble.grid_spec
    errors = {method: [] for method in DECODINGS}
    cases = read_manifest(args.run / "test_manifest.csv", ensemble.names)
    for case in cases:
        image = read_image(case.image)
        grid = make_grid(image, spec)
        maps = predict_maps(ensemble, resample_to_grid(image, grid, spec.window)).mean(axis=0)
        for method in DECODINGS:
            peaks = grid.index_to_world(decode_peaks(maps, method)[0])
            errors[method].append(np.linalg.norm(peaks - case.landmarks_lps, axis=1))
    print(f"{len(cases)} test cases of {args.run}, {len(ensemble.networks)} fold model(s), errors in mm")
    print(f"{'decoding':<10} {'median':>7} {'mean':>7} {'q75':>7} {'SDR@2mm':>8}")
    summary = {}
    for method, values in errors.items():
        e = np.concatenate(values)
        summary[method] = {"median": float(np.median(e)), "mean": float(e.mean())}
        print(f"{method:<10} {np.median(e):7.2f} {e.mean():7.2f} {np.percentile(e, 75):7.2f} {np.mean(e <= 2):8.0%}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
