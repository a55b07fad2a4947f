"""Headless detection of image files: what ``aortic-root detect`` runs, also callable from Python.

Per image it writes ``<case>.json`` (landmarks in world LPS mm, grid indices, scores, confidence, annulus plane and
measurements) and ``<case>.mrk.json`` (a 3D Slicer markups fiducial file in LPS that opens on top of the CT); if
asked to, also the plan ``<case>.plan.json`` and ``<case>.plan.png`` (plan/), and one ``index.html`` for the run.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from . import geometry
from .detection import Detection, detect, second_stage
from .errors import InputError
from .inference import Ensemble, load_ensemble
from .io import case_id, read_image, write_markups
from .outputs import atomic_output_dir, check_output_dir
from .plan import write_detection_plan, write_index
from .progress import progress_bar
from .typing import PathLike


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
    for name, flag in zip(detection.names, inside, strict=True):
        record["landmarks"][name]["inside_image"] = bool(flag)
    try:
        hinges = geometry.select_points(detection.names, detection.positions_lps)
    except InputError:  # a model without the hinge points: no annulus
        return record
    try:
        plane = geometry.annulus_plane(hinges)
        record["annulus"] = {
            "center_lps": plane.center.tolist(),
            "normal_lps": plane.normal.tolist(),
            "measurements": geometry.annulus_measurements(hinges),
            "implant_views": {k: v.to_dict() for k, v in geometry.implant_views(hinges).items()},
        }
    except InputError as err:  # degenerate hinge points: report, don't fail the whole batch
        record["annulus"] = {"error": str(err)}
    return record


def detection_summary(detection: Detection, record: dict) -> str:
    """One line for the terminal: the verdict and why, e.g. "review: LCC low confidence (...)"."""
    outside = [n for n, v in record["landmarks"].items() if not v["inside_image"]]
    line = detection.quality.summary() if detection.quality is not None else "ok"
    if outside:
        line += f"; WARNING: {', '.join(outside)} outside the image"
    return line


def verdict_counts(detections: dict[str, Detection]) -> str:
    """"3 ok, 1 review, 1 failed" for the end of a batch."""
    verdicts = [d.verdict for d in detections.values()]
    return ", ".join(f"{verdicts.count(v)} {v}" for v in ("ok", "review", "failed") if v in verdicts)


def detect_files(
    images: Sequence[PathLike],
    out_dir: PathLike,
    model: PathLike | Ensemble | None = None,
    device: str = "auto",
    force: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    accept_slice_gaps: bool = False,
    stages: int | None = None,
    plan: bool = False,
    tta: bool = True,
) -> dict[str, Detection]:
    """Detect the landmarks of each image and write the results, all or nothing.

    Writes per image ``<case>.json`` (:func:`detection_record`) and ``<case>.mrk.json`` (Slicer markups, LPS); with
    ``plan``, also ``<case>.plan.json`` and ``<case>.plan.png`` (:func:`plan.write_detection_plan`) and one
    ``index.html`` listing every case (:func:`plan.write_index`).

    Args:
        images: image files or DICOM series folders.
        out_dir: output folder (see outputs.check_output_dir: refused if not empty, unless `force`).
        model: model folder, training run folder or an already loaded Ensemble; None for the bundled model.
        device: 'auto' (CUDA if present), 'cpu', 'cuda' (ignored for a loaded Ensemble).
        progress: show a progress bar on stderr.
        log: where to send one line per image (default: stderr).
        accept_slice_gaps: read DICOM series with uneven slice spacing (see `io.read_image`) instead of refusing them.
        stages: None: every stage the model has; 1: the first stage only; 2: both (see `detection.detect`).
        plan: also write the plan, its figure and the index (``aortic-root detect`` does unless ``--no-plan``).
        tta: test-time augmentation of the first stage (see `detection.detect`; ``--no-tta`` turns it off).

    Returns:
        ``{case name: Detection}`` (world LPS mm), in the order of `images`.
    """
    log = log or (lambda line: print(line, file=sys.stderr))
    names = [case_id(p) for p in images]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        shared = ", ".join(duplicates)
        raise InputError(f"several inputs share the output name(s) {shared}; rename or detect separately")
    if not images:
        raise InputError("no input images given")
    for path in images:  # fail on a missing input or a refused output before loading the model
        if not Path(path).exists():
            raise InputError(f"{path}: no such file or folder")
    check_output_dir(out_dir, force, images)
    ensemble = model if isinstance(model, Ensemble) else load_ensemble(model, device)
    second_stage(ensemble, stages)  # refuse stages the model cannot honour before any output
    detections, plans = {}, {}
    with atomic_output_dir(out_dir, force, images) as tmp:
        for path, name in progress_bar(list(zip(images, names, strict=True)), progress, desc="detect", unit="CT"):
            image = read_image(path, accept_slice_gaps=accept_slice_gaps)
            detection = detect(image, ensemble, stages=stages, tta=tta)
            record = detection_record(detection, image, path)
            (tmp / f"{name}.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
            descriptions = [f"confidence {c:.2f}" for c in detection.confidence]
            write_markups(tmp / f"{name}.mrk.json", detection.names, detection.positions_lps, descriptions=descriptions)
            log(f"{name}: {detection_summary(detection, record)} ({detection.seconds:.2f} s on {detection.device})")
            detections[name] = detection
            if plan:
                plans[name] = write_detection_plan(tmp, name, image, detection, path)
        if plan:
            write_index(plans, tmp / "index.html", title=f"Aortic root plans: {Path(out_dir).name}")
    return detections
