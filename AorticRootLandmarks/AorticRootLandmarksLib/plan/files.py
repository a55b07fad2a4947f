"""Plans written to files: ``<case>.plan.json`` and ``<case>.plan.png``, for a detection or for given landmarks.

:func:`plan_files` is what ``aortic-root plan IMAGE --landmarks FILE.mrk.json`` runs (output folders follow
outputs.py: a new folder, or one this tool wrote with ``force``; all or nothing). :func:`write_detection_plan` is
what ``aortic-root detect`` adds per case.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import SimpleITK as sitk

from ..errors import InputError
from ..io import case_id, read_image, read_markups
from ..outputs import atomic_output_dir, check_output_dir
from ..typing import PathLike
from .figure import save_plan_figure
from .record import Plan, make_plan

if TYPE_CHECKING:
    from ..detection import Detection


def plan_paths(folder: PathLike, case: str) -> tuple[Path, Path]:
    """``(<folder>/<case>.plan.json, <folder>/<case>.plan.png)``."""
    folder = Path(folder)
    return folder / f"{case}.plan.json", folder / f"{case}.plan.png"


def write_plan(plan: Plan, image: sitk.Image, folder: PathLike, figure: bool = True) -> list[Path]:
    """Write ``<case>.plan.json`` (and with ``figure`` ``<case>.plan.png``) into an existing folder.

    Returns:
        The files written.
    """
    json_path, png_path = plan_paths(folder, plan.case or "case")
    json_path.write_text(json.dumps(plan.to_dict(), indent=2), encoding="utf-8")
    if not figure:
        return [json_path]
    return [json_path, save_plan_figure(plan, image, png_path)]


def write_detection_plan(
    folder: PathLike, case: str, image: sitk.Image, detection: Detection, image_path: PathLike, figure: bool = True
) -> Plan | str:
    """The plan of a detection, written into ``folder``; a string saying why when there is none.

    A detection without usable hinge points (a model without them, a degenerate triangle) has no plan; that is
    reported, not raised, so one case does not stop a batch.
    """
    try:
        plan = make_plan(image, detection.names, detection.positions_lps, detection, case=case,
                         image_path=str(image_path))  # fmt: skip
    except InputError as err:
        return f"no plan: {err}"
    write_plan(plan, image, folder, figure)
    return plan


def _check_inside(image: sitk.Image, names: list[str], points, landmarks: Path, image_path: Path) -> None:
    from ..batch import inside_image  # batch imports this package: import it when called

    outside = [n for n, flag in zip(names, inside_image(image, points), strict=True) if not flag]
    if outside:
        raise InputError(f"{landmarks}: {', '.join(outside)} outside the image {image_path}; "
                         "landmarks of another image?")  # fmt: skip


def plan_files(
    image_path: PathLike,
    landmarks_path: PathLike,
    out_dir: PathLike,
    force: bool = False,
    figure: bool = True,
    accept_slice_gaps: bool = False,
) -> Plan:
    """The plan of a CT from landmarks given in a Slicer markups file (e.g. points an analyst corrected).

    Writes ``<case>.plan.json`` and ``<case>.plan.png`` into ``out_dir`` (refused if it exists and is not empty,
    unless ``force`` and aortic-root wrote it; written all at once).

    Args:
        image_path: CT file or DICOM series folder.
        landmarks_path: ``.mrk.json`` with RCC, LCC, NCC (and optionally LCO, RCO) control points, LPS or RAS.
        out_dir: output folder.
        force: replace an output folder that aortic-root wrote earlier.
        figure: also write the PNG figure.
        accept_slice_gaps: read a DICOM series with uneven slice spacing (see ``io.read_image``).

    Returns:
        The Plan.

    Raises:
        InputError: a missing or unreadable input, missing hinge points, points outside the image, a degenerate
            hinge triangle, or a refused output folder (one line each).
    """
    image_path, landmarks_path = Path(image_path), Path(landmarks_path)
    inputs = [image_path, landmarks_path]
    for path in inputs:
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
    check_output_dir(out_dir, force, inputs)
    names, points = read_markups(landmarks_path)
    image = read_image(image_path, accept_slice_gaps=accept_slice_gaps)
    _check_inside(image, names, points, landmarks_path, image_path)
    plan = make_plan(image, names, points, case=case_id(image_path), image_path=str(image_path),
                     source=f"landmarks file {landmarks_path}")  # fmt: skip
    with atomic_output_dir(out_dir, force, inputs) as tmp:
        write_plan(plan, image, tmp, figure)
    return plan
