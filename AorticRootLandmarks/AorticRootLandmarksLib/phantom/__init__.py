"""Synthetic contrast CT of the aortic root with exact hinge-point truth.

Example:
    >>> from AorticRootLandmarksLib.phantom import generate_case
    >>> case = generate_case(3, seed=0, size="small")
    >>> case.landmarks_lps.shape          # RCC, LCC, NCC world LPS mm
    (3, 3)

Case ``index`` depends only on ``(seed, index)`` (and ``size`` for the grid), never on how many cases are made.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import SimpleITK as sitk

from .anatomy import build_anatomy
from .params import GRADES, sample_params
from .render import form_image
from .root import CUSPS

__all__ = ["PhantomCase", "generate_case", "write_dataset", "save_preview", "GRADES"]


@dataclass
class PhantomCase:
    """One synthetic case.

    Attributes:
        case_id: ``f"phantom_{index:04d}"``.
        image: 3D int16 HU image (origin, spacing, direction in world LPS mm).
        landmarks_lps: (3, 3) hinge points RCC, LCC, NCC, world LPS mm.
        quality: "1" (poor) ... "4" (excellent).
        truth: JSON-serialisable: annulus, ostia, landmarks, quality, params, image geometry.
    """

    case_id: str
    image: sitk.Image
    landmarks_lps: np.ndarray
    quality: str
    truth: dict[str, Any]


def generate_case(index: int, seed: int = 0, size: str = "full") -> PhantomCase:
    """Generate phantom case ``index`` of the series ``seed``.

    Args:
        index: case number (>= 0).
        seed: series seed.
        size: "full" (512x512x200-320, 0.3-0.8 mm in-plane) or "small" (~88x88x72 at 1.2-1.6 mm).

    Returns:
        The PhantomCase.
    """
    return case_from_params(sample_params(seed, index, size))


def case_from_params(params: dict[str, Any]) -> PhantomCase:
    """Render a case from its parameters (``sample_params`` output, or ``truth["params"]`` of a written case).

    Editing the parameters (e.g. the grid, to benchmark the largest image) gives a modified case.
    """
    seed, index = params["seed"], params["index"]
    anat = build_anatomy(params)
    rng = np.random.default_rng([seed, index, 2])
    hu = form_image(
        anat.items,
        anat.out_grid,
        anat.root_grid,
        anat.heart_box,
        anat.imaging,
        rng,
        anat.coarse_spacing,
        anat.fine_from,
    )
    np.rint(hu, out=hu)
    np.clip(hu, -1024, 3071, out=hu)
    image = anat.out_grid.image(hu.astype(np.int16))
    landmarks = anat.root.hinge_points()
    truth = {
        "annulus": anat.root.annulus_truth(),
        "ostia": {k: [float(v) for v in p] for k, p in anat.ostia.items()},
        "landmarks": {name: [float(v) for v in p] for name, p in zip(CUSPS, landmarks)},
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


def _progress(iterable, total: int, enabled: bool, desc: str):
    if not enabled:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=desc, unit="case")


def write_dataset(
    out_dir: Union[str, Path],
    n: int,
    seed: int = 0,
    fmt: str = "nifti",
    size: str = "full",
    preview: bool = False,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Write ``n`` phantom cases with images, markups, manifest and truth, atomically (no partial output).

    Layout of ``out_dir``: ``images/<case_id>.nii.gz`` (or ``images/<case_id>/`` DICOM series),
    ``markups/<case_id>.mrk.json`` (RCC/LCC/NCC, LPS), ``manifest.csv``, ``truth.json`` and, with ``preview``,
    ``previews/<case_id>.png``.

    Returns:
        Path of ``manifest.csv``.

    Raises:
        InputError: bad ``n``, ``fmt`` or ``size``, or ``out_dir`` exists and is not empty (without ``force``).
    """
    from .. import io
    from ..errors import InputError
    from .dicom import write_dicom_series

    if fmt not in ("nifti", "dicom"):
        raise InputError(f"--format: expected 'nifti' or 'dicom', got {fmt!r}")
    if size not in ("small", "full"):
        raise InputError(f"--size: expected 'small' or 'full', got {size!r}")
    if int(n) < 1:
        raise InputError(f"--n: expected at least 1 case, got {n}")
    out_dir = Path(out_dir)
    with io.atomic_output_dir(out_dir, force) as tmp:
        tmp = Path(tmp)
        for sub in ("images", "markups") + (("previews",) if preview else ()):
            (tmp / sub).mkdir(parents=True, exist_ok=True)
        cases, truth = [], {}
        for i in _progress(range(int(n)), int(n), progress, "phantom"):
            case = generate_case(i, seed, size)
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
            io.write_markups(
                tmp / "markups" / f"{cid}.mrk.json",
                list(CUSPS),
                case.landmarks_lps,
                descriptions=[f"{name} hinge point (cusp nadir)" for name in CUSPS],
            )
            cases.append(io.Case(cid, image_path.resolve(), case.landmarks_lps, case.quality))
            truth[cid] = case.truth
            if preview:
                save_preview(case, tmp / "previews" / f"{cid}.png")
        io.write_manifest(tmp / "manifest.csv", cases)
        (tmp / "truth.json").write_text(json.dumps(truth, indent=1), encoding="utf-8")
    return out_dir / "manifest.csv"
