"""Compare peak decodings (argmax, quadratic, centroid) and fold ensembling (average the maps, or average the folds'
decoded coordinates as the GLiP authors do) on cases with known landmarks.

The networks run once per case; only the decoding and the ensembling differ. Prints the landmark error of each
combination. Choose a default on validation data (e.g. a fresh phantom seed), not on a test split.

    .venv/bin/python benchmarks/compare_decoding.py RUN_DIR              # the run's test_manifest.csv
    .venv/bin/python benchmarks/compare_decoding.py --manifest CSV [--model DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from AorticRootLandmarksLib.detection import place_grid
from AorticRootLandmarksLib.grid import make_grid, resample_to_grid
from AorticRootLandmarksLib.inference import DECODINGS, ENSEMBLINGS, combine_folds, load_ensemble, predict_maps
from AorticRootLandmarksLib.io import read_image, read_manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, nargs="?", help="training run folder (holds test_manifest.csv and model/)")
    parser.add_argument("--manifest", type=Path, help="cases to compare on (instead of the run's test split)")
    parser.add_argument("--model", type=Path, help="model folder (default: the run's, else the bundled model)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    ensemble = load_ensemble(args.model or args.run, args.device)
    spec = ensemble.grid_spec
    manifest = args.manifest or args.run / "test_manifest.csv"
    combos = [(d, e) for e in ENSEMBLINGS for d in DECODINGS]
    errors = {combo: [] for combo in combos}
    cases = read_manifest(manifest, ensemble.names)
    for case in cases:
        image = read_image(case.image)
        grid = make_grid(image, spec, place_grid(image, ensemble).center_lps)
        maps = predict_maps(ensemble, resample_to_grid(image, grid, spec.window))
        for decoding, ensembling in combos:
            peaks = grid.index_to_world(combine_folds(maps, decoding, ensembling)[0])
            errors[(decoding, ensembling)].append(np.linalg.norm(peaks - case.landmarks_lps, axis=1))
    print(f"{len(cases)} cases of {manifest}, {len(ensemble.networks)} fold model(s), errors in mm")
    print(f"{'decoding':<10} {'ensembling':<12} {'median':>7} {'mean':>7} {'q75':>7} {'max':>7} {'SDR@2mm':>8}")
    summary = {}
    for (decoding, ensembling), values in errors.items():
        e = np.concatenate(values)
        summary[f"{decoding}/{ensembling}"] = {"median": float(np.median(e)), "mean": float(e.mean())}
        print(f"{decoding:<10} {ensembling:<12} {np.median(e):7.2f} {e.mean():7.2f} {np.percentile(e, 75):7.2f} "
              f"{e.max():7.2f} {np.mean(e <= 2):8.0%}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
