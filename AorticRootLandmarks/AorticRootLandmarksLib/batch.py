"""Headless detection of image files: what ``aortic-root detect`` runs, also callable from Python.

Per image it writes ``<case>.json`` (landmarks in world LPS mm, grid indices, scores, confidence, annulus plane and
measurements) and ``<case>.mrk.json`` (a 3D Slicer markups fiducial file in LPS that opens on top of the CT).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from . import geometry
from .errors import InputError
from .inference import Detection, detect, load_ensemble
from .io import atomic_output_dir, case_id, read_image, write_markups
from .typing import DEFAULT_LANDMARKS, PathLike


def inside_image(image: sitk.Image, points_lps: np.ndarray) -> np.ndarray:
    """(K, 3) world LPS mm -> (K,) bool: the point lies within the CT's voxel-centre box."""
    size = np.asarray(image.GetSize()) - 1
    flags = []
    for point in np.asarray(points_lps, float):
        index = np.asarray(image.TransformPhysicalPointToContinuousIndex([float(v) for v in point]))
        flags.append(bool(np.all(index >= -0.5) and np.all(index <= size + 0.5)))
    return np.array(flags)


def detection_record(detection: Detection, image: sitk.Image, image_path: PathLike) -> dict:
    """The JSON document written per image: the detection plus annulus geometry when RCC, LCC, NCC are present."""
    record = {"image": str(image_path), **detection.to_dict()}
    inside = inside_image(image, detection.positions_lps)
    for name, flag in zip(detection.names, inside):
        record["landmarks"][name]["inside_image"] = bool(flag)
    if set(DEFAULT_LANDMARKS) <= set(detection.names):
        hinges = np.stack([detection.positions_lps[detection.names.index(n)] for n in DEFAULT_LANDMARKS])
        try:
            plane = geometry.annulus_plane(hinges)
            record["annulus"] = {
                "center_lps": plane.center.tolist(),
                "normal_lps": plane.normal.tolist(),
                "measurements": geometry.annulus_measurements(hinges),
                "implant_views": {k: list(v) for k, v in geometry.implant_views(hinges).items()},
            }
        except InputError as err:  # degenerate hinge points: report, don't fail the whole batch
            record["annulus"] = {"error": str(err)}
    return record


def detect_files(
    images: Sequence[PathLike],
    out_dir: PathLike,
    model: PathLike | None = None,
    device: str = "auto",
    force: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> list[Path]:
    """Detect the landmarks of each image and write the results, all or nothing.

    Args:
        images: image files or DICOM series folders.
        out_dir: output folder (refused if it exists and is not empty, unless `force`).
        model: model folder or training run folder; None for the bundled model.
        device: 'auto' (CUDA if present), 'cpu', 'cuda'.
        progress: show a progress bar on stderr.
        log: where to send one line per image (default: stderr).

    Returns:
        The per-image JSON paths, in the order of `images`.
    """
    log = log or (lambda line: print(line, file=sys.stderr))
    names = [case_id(p) for p in images]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"several inputs share the output name(s) {', '.join(duplicates)}; rename or detect separately")
    if not images:
        raise InputError("no input images given")
    for path in images:  # fail on a missing input before loading the model
        if not Path(path).exists():
            raise InputError(f"{path}: no such file or folder")
    ensemble = load_ensemble(model, device)
    written = []
    with atomic_output_dir(out_dir, force) as tmp:
        iterator = zip(images, names)
        if progress:
            try:
                from tqdm.auto import tqdm

                iterator = tqdm(list(iterator), desc="detect", unit="CT", file=sys.stderr)
            except ImportError:
                pass
        for path, name in iterator:
            image = read_image(path)
            detection = detect(image, ensemble)
            record = detection_record(detection, image, path)
            (tmp / f"{name}.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
            descriptions = [f"confidence {c:.2f}" for c in detection.confidence]
            write_markups(tmp / f"{name}.mrk.json", detection.names, detection.positions_lps, descriptions=descriptions)
            outside = [n for n, v in record["landmarks"].items() if not v["inside_image"]]
            warning = f"  WARNING: {', '.join(outside)} outside the image" if outside else ""
            log(f"{name}: {detection.seconds:.2f} s on {detection.device}{warning}")
            written.append(Path(out_dir) / f"{name}.json")
    return written
