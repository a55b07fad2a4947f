"""Merge phantom datasets into one training manifest with every landmark (hinge points and coronary ostia).

    .venv/bin/python scripts/merge_phantom_datasets.py OUT_DIR DATASET_DIR [DATASET_DIR ...]

Each DATASET_DIR is an ``aortic-root phantom`` output (manifest.csv, truth.json, images/). The images are hard-linked
into OUT_DIR/images under ``<dataset folder>_<case>`` names (case names must be unique in a manifest) and
OUT_DIR/manifest.csv gets the columns of ``constants.ALL_LANDMARKS``, the ostia taken from truth.json (datasets made
before the phantom wrote ostia columns work too).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "AorticRootLandmarks"))
from AorticRootLandmarksLib import io  # noqa: E402
from AorticRootLandmarksLib.constants import ALL_LANDMARKS, HINGE_NAMES, OSTIA_NAMES  # noqa: E402


def main(out: Path, folders: list[Path]) -> None:
    (out / "images").mkdir(parents=True, exist_ok=True)
    cases = []
    for folder in folders:
        truth = json.loads((folder / "truth.json").read_text(encoding="utf-8"))
        for case in io.read_manifest(folder / "manifest.csv", HINGE_NAMES):
            ostia = [truth[case.case_id]["ostia"][name] for name in OSTIA_NAMES]
            link = out / "images" / f"{folder.name}_{case.image.name}"
            if not link.exists():
                os.link(case.image, link)
            points = np.concatenate([case.landmarks_lps, ostia])
            cases.append(io.Case(io.case_id(link), link, points, case.quality))
    io.write_manifest(out / "manifest.csv", cases, ALL_LANDMARKS)
    print(f"{len(cases)} cases -> {out / 'manifest.csv'}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), [Path(a) for a in sys.argv[2:]])
