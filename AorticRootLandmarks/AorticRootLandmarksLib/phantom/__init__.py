"""Synthetic contrast CT of the aortic root with exact hinge-point truth.

Example:
    >>> from AorticRootLandmarksLib.phantom import generate_case
    >>> case = generate_case(3, seed=0, size="small")
    >>> case.landmarks_lps.shape          # RCC, LCC, NCC world LPS mm
    (3, 3)

Case ``index`` depends only on ``(seed, index)`` (and ``size`` for the grid), never on how many cases are made, and
each part of the generator draws from its own random stream (``params.part_rng``). ``PHANTOM_VERSION``, recorded in
every case's params and truth, changes whenever the same ``(seed, index)`` would give a different case.

``style`` picks the family of CTs (``styles.STYLES``, documented in ``docs/PHANTOM.md``): ``"classic"`` (the default,
the cases of phantom version 2), ``"train"`` (wide ranges of field of view, centring, sampling, contrast, noise and
anatomy) and the held-out ``"heldout-cardiac"`` and ``"heldout-extreme"`` for reporting.

Modules, in the order a case is made: ``params`` (random parameters, one stream per part), ``root`` (the analytic
aortic root), ``thorax`` and ``anatomy`` (everything around it, as paint items), ``shapes`` (signed-distance shapes),
``paint`` (voxelising into HU), ``scanner`` (blur, noise, artefacts, resampling), then ``dicom`` and ``preview``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import SimpleITK as sitk

from ..constants import ALL_LANDMARKS, HINGE_NAMES, LANDMARK_DESCRIPTIONS, OSTIA_NAMES
from .anatomy import build_anatomy
from .params import GRADES, PHANTOM_VERSION, case_streams, sample_params
from .scanner import form_image
from .styles import STYLES, check_style

__all__ = [
    "PhantomCase",
    "generate_case",
    "case_from_params",
    "write_dataset",
    "all_landmarks_lps",
    "save_preview",
    "GRADES",
    "PHANTOM_VERSION",
    "STYLES",
]


@dataclass
class PhantomCase:
    """One synthetic case.

    Attributes:
        case_id: ``f"phantom_{index:04d}"``.
        image: 3D int16 HU image (origin, spacing, direction in world LPS mm).
        landmarks_lps: (3, 3) hinge points RCC, LCC, NCC, world LPS mm.
        quality: "1" (poor) ... "4" (excellent).
        truth: JSON-serialisable: phantom version, style, annulus, ostia, landmarks, quality, params, image geometry.
    """

    case_id: str
    image: sitk.Image
    landmarks_lps: np.ndarray
    quality: str
    truth: dict[str, Any]


def generate_case(index: int, seed: int = 0, size: str = "full", style: str = "classic") -> PhantomCase:
    """Generate phantom case ``index`` of the series ``seed``.

    Args:
        index: case number (>= 0).
        seed: series seed.
        size: "full" or "small". Classic: 512x512x200-320 at 0.3-0.8 mm in-plane, or ~88x88x72 at 1.2-1.6 mm;
            other styles: the style's grid, or the same field of view in at most 96x96x80 voxels.
        style: a key of ``STYLES``.

    Returns:
        The PhantomCase.
    """
    return case_from_params(sample_params(seed, index, size, style))


def case_from_params(params: dict[str, Any]) -> PhantomCase:
    """Render a case from its parameters (``sample_params`` output, or ``truth["params"]`` of a written case).

    Editing the parameters (e.g. the grid, to benchmark the largest image) gives a modified case.

    Raises:
        ValueError: the parameters come from another phantom version (they would not give the case they describe).
    """
    version = params.get("phantom_version", "1")
    if version != PHANTOM_VERSION:
        raise ValueError(f"parameters of phantom version {version}; this is version {PHANTOM_VERSION}")
    seed, index, style = params["seed"], params["index"], params.get("style", "classic")
    anat = build_anatomy(params)
    hu = form_image(
        anat.items,
        anat.out_grid,
        anat.root_grid,
        anat.heart_box,
        anat.imaging,
        case_streams(seed, index, style),
        anat.coarse_spacing,
        anat.fine_from,
    )
    np.rint(hu, out=hu)
    np.clip(hu, -1024, 3071, out=hu)
    image = anat.out_grid.image(hu.astype(np.int16))
    landmarks = anat.root.hinge_points()
    truth = {
        "phantom_version": PHANTOM_VERSION,
        "style": style,
        "annulus": anat.root.annulus_truth(),
        "ostia": {k: [float(v) for v in p] for k, p in anat.ostia.items()},
        "landmarks": {name: [float(v) for v in p] for name, p in zip(HINGE_NAMES, landmarks, strict=True)},
        "quality": params["quality"],
        "params": params,
        "image": {
            "size": list(image.GetSize()),
            "spacing": list(image.GetSpacing()),
            "origin": list(image.GetOrigin()),
            "direction": list(image.GetDirection()),
        },
    }
    return PhantomCase(f"phantom_{index:04d}", image, landmarks, params["quality"], truth)


def save_preview(case: PhantomCase, png_path: Union[str, Path]) -> None:
    """PNG of three orthogonal slices and the annulus plane with the hinge points (see ``preview.save_preview``)."""
    from .preview import save_preview as _save

    _save(case, png_path)


def write_dataset(
    out_dir: Union[str, Path],
    n: int,
    seed: int = 0,
    fmt: str = "nifti",
    size: str = "full",
    preview: bool = False,
    force: bool = False,
    progress: bool = True,
    style: str = "classic",
) -> Path:
    """Write ``n`` phantom cases with images, markups, manifest and truth, atomically (no partial output).

    Layout of ``out_dir``: ``images/<case_id>.nii.gz`` (or ``images/<case_id>/`` DICOM series),
    ``markups/<case_id>.mrk.json`` (RCC, LCC, NCC, LCO, RCO, LPS), ``manifest.csv`` (columns for the hinge points and
    the coronary ostia, ``constants.ALL_LANDMARKS``, and a ``style`` column, which ``io.read_manifest`` ignores),
    ``truth.json`` (case id -> truth, each with its ``phantom_version`` and ``style``) and, with ``preview``,
    ``previews/<case_id>.png``.

    Returns:
        Path of ``manifest.csv``.

    Raises:
        InputError: bad ``n``, ``fmt``, ``size`` or ``style``, or ``out_dir`` exists and is not empty (without
            ``force``).
    """
    from .. import io
    from ..errors import InputError
    from ..outputs import atomic_output_dir
    from ..progress import progress_bar
    from .dicom import write_dicom_series

    if fmt not in ("nifti", "dicom"):
        raise InputError(f"--format: expected 'nifti' or 'dicom', got {fmt!r}")
    if size not in ("small", "full"):
        raise InputError(f"--size: expected 'small' or 'full', got {size!r}")
    if style not in STYLES:
        raise InputError(f"--style: expected one of {', '.join(STYLES)}, got {style!r}")
    if int(n) < 1:
        raise InputError(f"--n: expected at least 1 case, got {n}")
    out_dir = Path(out_dir)
    with atomic_output_dir(out_dir, force) as tmp:
        tmp = Path(tmp)
        for sub in ("images", "markups") + (("previews",) if preview else ()):
            (tmp / sub).mkdir(parents=True, exist_ok=True)
        cases, truth = [], {}
        for i in progress_bar(range(int(n)), enabled=progress, total=int(n), desc="phantom", unit="case"):
            case = generate_case(i, seed, size, style)
            cid = case.case_id
            if fmt == "nifti":
                image_path = tmp / "images" / f"{cid}.nii.gz"
                io.write_image(case.image, image_path)
            else:
                image_path = tmp / "images" / cid
                write_dicom_series(
                    case.image,
                    image_path,
                    uid_key=f"aortic-root-phantom/{seed}/{cid}",
                    patient_id=cid,
                    description=f"Synthetic aortic root CT {cid} (quality {case.quality})",
                )
            points = all_landmarks_lps(case)
            io.write_markups(
                tmp / "markups" / f"{cid}.mrk.json",
                list(ALL_LANDMARKS),
                points,
                descriptions=[LANDMARK_DESCRIPTIONS[name] for name in ALL_LANDMARKS],
            )
            cases.append(io.Case(cid, image_path.resolve(), points, case.quality))
            truth[cid] = case.truth
            if preview:
                save_preview(case, tmp / "previews" / f"{cid}.png")
        io.write_manifest(tmp / "manifest.csv", cases, ALL_LANDMARKS)
        _add_manifest_column(tmp / "manifest.csv", "style", [check_style(style)] * len(cases))
        (tmp / "truth.json").write_text(json.dumps(truth, indent=1), encoding="utf-8")
    return out_dir / "manifest.csv"


def all_landmarks_lps(case: PhantomCase) -> np.ndarray:
    """(5, 3) world LPS mm: the hinge points then the coronary ostia, in the order of ``constants.ALL_LANDMARKS``."""
    ostia = np.array([case.truth["ostia"][name] for name in OSTIA_NAMES], dtype=np.float64)
    return np.concatenate([np.asarray(case.landmarks_lps, dtype=np.float64).reshape(len(HINGE_NAMES), 3), ostia])


def _add_manifest_column(csv_path: Path, name: str, values: list[str]) -> None:
    """Append a column to a written manifest (``io.read_manifest`` reads only the columns it knows)."""
    import csv

    with csv_path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    rows[0].append(name)
    for row, value in zip(rows[1:], values, strict=True):
        row.append(value)
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
