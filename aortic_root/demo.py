"""The main job in one call: phantom CTs -> detection with the bundled model -> evaluation against the exact truth."""

from __future__ import annotations

import time

from AorticRootLandmarksLib.batch import detect_files
from AorticRootLandmarksLib.errors import InputError
from AorticRootLandmarksLib.evaluation import evaluate, format_table
from AorticRootLandmarksLib.inference import load_ensemble
from AorticRootLandmarksLib.io import read_manifest
from AorticRootLandmarksLib.outputs import check_output_dir, replacing_dir
from AorticRootLandmarksLib.phantom import write_dataset
from AorticRootLandmarksLib.typing import PathLike

#: Phantom seed of the demo cases; the bundled model was trained on seed 0, so these CTs are unseen.
DEMO_SEED = 2026


def run_demo(out: PathLike, n: int = 3, model: PathLike | None = None, device: str = "auto", force: bool = False):
    """Generate `n` full-size phantom CTs, detect their hinge points, evaluate, print the table and output paths.

    Writes ``out/phantom`` (CTs, manifest, truth, Slicer markups of the truth), ``out/detections`` (``<case>.json`` and
    ``<case>.mrk.json``) and ``out/evaluation`` (per-case CSV, summary JSON, error figure). The model and device are
    checked before any work; if the demo fails, an earlier output it replaces (``force``) is put back.

    Returns:
        The evaluation result (see AorticRootLandmarksLib.evaluation.evaluate).
    """
    if n < 1:
        raise InputError(f"--n {n}: at least one case is needed")
    out = check_output_dir(out, force)
    ensemble = load_ensemble(model, device)
    start = time.perf_counter()
    with replacing_dir(out, force) as out:
        print(f"1/3 writing {n} phantom CT(s) to {out / 'phantom'}")
        manifest = write_dataset(out / "phantom", n, seed=DEMO_SEED, size="full")
        images = [case.image for case in read_manifest(manifest)]
        print("2/3 detecting hinge points with the " + ("bundled model" if model is None else f"model {model}"))
        detect_files(images, out / "detections", ensemble)
        print("3/3 evaluating against the phantom truth")
        result = evaluate(out / "detections", manifest, out / "evaluation")
    print()
    print(format_table(result))
    print(f"\ndone in {time.perf_counter() - start:.0f} s. Outputs in {out}:")
    print(f"  CTs:        {out / 'phantom' / 'images'}")
    print(f"  detections: {out / 'detections'}/<case>.json, and <case>.mrk.json to drag into 3D Slicer over the CT")
    print(f"  evaluation: {out / 'evaluation'}/per_case.csv, summary.json, errors.png")
    return result
