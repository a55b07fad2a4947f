"""The main job in one call: phantom CTs -> detection with the bundled model -> evaluation against the exact truth."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from .errors import InputError
from .typing import PathLike

#: Phantom seed of the demo cases; the bundled model was trained on seed 0, so these CTs are unseen.
DEMO_SEED = 2026


def run_demo(out: PathLike, n: int = 3, model: PathLike | None = None, device: str = "auto", force: bool = False):
    """Generate `n` full-size phantom CTs, detect their hinge points, evaluate, print the table and output paths.

    Writes ``out/phantom`` (CTs, manifest, truth, Slicer markups of the truth), ``out/detections`` (``<case>.json`` and
    ``<case>.mrk.json``) and ``out/evaluation`` (per-case CSV, summary JSON, error figure). Nothing is left behind if it
    fails.

    Returns:
        The evaluation result (see training.evaluate.evaluate).
    """
    from training.evaluate import evaluate, format_table

    from .batch import detect_files
    from .io import read_manifest
    from .phantom import write_dataset

    out = Path(out)
    if n < 1:
        raise InputError(f"--n {n}: at least one case is needed")
    if out.exists() and any(out.iterdir()) and not force:
        raise InputError(f"{out}: output folder exists and is not empty (use --force to replace it)")
    if out.exists():
        shutil.rmtree(out)
    start = time.perf_counter()
    try:
        print(f"1/3 writing {n} phantom CT(s) to {out / 'phantom'}")
        manifest = write_dataset(out / "phantom", n, seed=DEMO_SEED, size="full")
        images = [case.image for case in read_manifest(manifest)]
        print("2/3 detecting hinge points with the " + ("bundled model" if model is None else f"model {model}"))
        detect_files(images, out / "detections", model, device)
        print("3/3 evaluating against the phantom truth")
        result = evaluate(out / "detections", manifest, out / "evaluation")
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    print()
    print(format_table(result))
    print(f"\ndone in {time.perf_counter() - start:.0f} s. Outputs in {out}:")
    print(f"  CTs:        {out / 'phantom' / 'images'}")
    print(f"  detections: {out / 'detections'}/<case>.json, and <case>.mrk.json to drag into 3D Slicer over the CT")
    print(f"  evaluation: {out / 'evaluation'}/per_case.csv, summary.json, errors.png")
    return result
