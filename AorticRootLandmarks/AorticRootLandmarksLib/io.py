"""Reading CTs, manifests and Slicer markups; writing outputs without leaving partial results.

Every coordinate read or written here is world LPS mm (the DICOM/ITK patient frame), as 3D Slicer writes files.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .typing import DEFAULT_LANDMARKS, PathLike, PointsLPS

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
#: Column names of the original authors' manifests, accepted as aliases.
_IMAGE_COLUMNS = ("image", "DICOMPath")
_QUALITY_COLUMNS = ("quality", "CTQuality")
_LPS_TO_RAS = np.array([-1.0, -1.0, 1.0])


def case_id(path: PathLike) -> str:
    """Name of a case: the image file name without its image suffix, or the DICOM folder's name."""
    name = Path(path).name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_image(path: PathLike) -> sitk.Image:
    """Read a 3D CT from an image file or from a folder holding exactly one DICOM series.

    Origin, spacing and direction cosines are kept as written (LPS), so flipped or oblique axes give correct world
    coordinates.

    Args:
        path: ``.nii``, ``.nii.gz``, ``.nrrd``, ``.mha``, ``.mhd`` file, or a DICOM folder.

    Returns:
        A 3D single-component SimpleITK image.

    Raises:
        InputError: missing or unreadable path, a folder with no or several DICOM series, a 2D or multi-component image.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        image = _read_dicom_folder(path)
    else:
        if not any(path.name.lower().endswith(s) for s in IMAGE_SUFFIXES + (".dcm",)):
            raise InputError(f"{path}: unsupported image format (use {', '.join(IMAGE_SUFFIXES)} or a DICOM folder)")
        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError as err:
            raise InputError(f"{path}: cannot read image ({_first_line(err)})") from None
    if image.GetDimension() != 3 or min(image.GetSize()) < 2:
        size = "x".join(str(s) for s in image.GetSize())
        raise InputError(f"{path}: image is {image.GetDimension()}D ({size}); a 3D CT volume is needed")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{path}: image has {image.GetNumberOfComponentsPerPixel()} components; a scalar CT is needed")
    return image


def _read_dicom_folder(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise InputError(f"{folder}: folder holds no DICOM series")
    if len(series) > 1:
        raise InputError(f"{folder}: folder holds {len(series)} DICOM series; give a folder with one series")
    files = reader.GetGDCMSeriesFileNames(str(folder), series[0])
    reader.SetFileNames(files)
    try:
        return reader.Execute()
    except RuntimeError as err:
        raise InputError(f"{folder}: cannot read DICOM series ({_first_line(err)})") from None


def _first_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


def write_image(image: sitk.Image, path: PathLike) -> None:
    """Write an image file (format from the suffix), compressing where the format allows."""
    sitk.WriteImage(image, str(path), useCompression=True)


def write_markups(
    path: PathLike,
    names: Sequence[str],
    points_lps: PointsLPS,
    *,
    descriptions: Sequence[str] | None = None,
) -> None:
    """Write a 3D Slicer markups fiducial file (``.mrk.json``) in LPS, one labelled control point per landmark.

    Args:
        path: output file, conventionally ``<case>.mrk.json``.
        names: K labels (e.g. RCC, LCC, NCC).
        points_lps: (K, 3) world LPS mm.
        descriptions: optional K descriptions shown in Slicer's markups table.
    """
    points = _check_points(points_lps, len(names), str(path))
    control_points = []
    for i, (name, point) in enumerate(zip(names, points)):
        control_points.append(
            {
                "id": str(i + 1),
                "label": name,
                "description": descriptions[i] if descriptions else "",
                "associatedNodeID": "",
                "position": [float(v) for v in point],
                "orientation": [-1.0, -0.0, -0.0, -0.0, -1.0, -0.0, 0.0, 0.0, 1.0],
                "selected": True,
                "locked": False,
                "visibility": True,
                "positionStatus": "defined",
            }
        )
    document = {
        "@schema": "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/Schema/"
        "markups-schema-v1.0.3.json#",
        "markups": [
            {
                "type": "Fiducial",
                "coordinateSystem": "LPS",
                "coordinateUnits": "mm",
                "locked": False,
                "labelFormat": "%N-%d",
                "controlPoints": control_points,
                "measurements": [],
                "display": {"visibility": True, "textScale": 3.0, "glyphScale": 3.0, "selectedColor": [1.0, 0.5, 0.0]},
            }
        ],
    }
    Path(path).write_text(json.dumps(document, indent=2), encoding="utf-8")


def read_markups(path: PathLike) -> tuple[list[str], PointsLPS]:
    """Read the control points of a 3D Slicer markups file.

    Returns:
        (labels, points) with points (K, 3) world LPS mm; files written in RAS are converted.
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        markup = document["markups"][0]
        labels = [p["label"] for p in markup["controlPoints"]]
        points = np.array([p["position"] for p in markup["controlPoints"]], dtype=float).reshape(-1, 3)
    except (OSError, ValueError, KeyError, IndexError, TypeError) as err:
        raise InputError(f"{path}: not a readable Slicer markups file ({err})") from None
    if markup.get("coordinateSystem", "LPS") == "RAS":
        points = points * _LPS_TO_RAS
    return labels, points


@dataclass
class Case:
    """One manifest row.

    Attributes:
        case_id: name of the case (see `case_id`).
        image: absolute path of the image file or DICOM folder.
        landmarks_lps: (K, 3) world LPS mm, in the order of the landmark names.
        quality: free-text image quality grade, or None.
    """

    case_id: str
    image: Path
    landmarks_lps: PointsLPS
    quality: str | None = None


def read_manifest(csv_path: PathLike, landmarks: Sequence[str] = DEFAULT_LANDMARKS) -> list[Case]:
    """Read a dataset manifest.

    Columns: ``image`` (or ``DICOMPath``), a path relative to the CSV's folder; ``<NAME>_x, <NAME>_y, <NAME>_z`` for
    each landmark name, world LPS mm; optional ``quality`` (or ``CTQuality``).

    Raises:
        InputError: missing file or columns, empty manifest, missing image, NaN or non-numeric coordinates,
            duplicated case names.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise InputError(f"{csv_path}: manifest not found")
    with csv_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        rows = list(reader)
    image_column = next((c for c in _IMAGE_COLUMNS if c in columns), None)
    quality_column = next((c for c in _QUALITY_COLUMNS if c in columns), None)
    needed = [f"{name}_{axis}" for name in landmarks for axis in "xyz"]
    missing = ([] if image_column else ["image"]) + [c for c in needed if c not in columns]
    if missing:
        raise InputError(f"{csv_path}: manifest lacks column(s) {', '.join(missing)}")
    if not rows:
        raise InputError(f"{csv_path}: manifest has no cases")
    cases, seen = [], set()
    for line, row in enumerate(rows, start=2):
        image = (csv_path.parent / row[image_column]).resolve()
        if not image.exists():
            raise InputError(f"{csv_path}, line {line}: image {row[image_column]} not found")
        values = []
        for column in needed:
            try:
                value = float(row[column])
            except (TypeError, ValueError):
                raise InputError(f"{csv_path}, line {line}: {column} = {row[column]!r} is not a number") from None
            if not math.isfinite(value):
                raise InputError(f"{csv_path}, line {line}: {column} = {row[column]!r} is not a finite number")
            values.append(value)
        name = case_id(image)
        if name in seen:
            raise InputError(f"{csv_path}, line {line}: case name {name!r} appears twice")
        seen.add(name)
        quality = (row.get(quality_column) or "").strip() or None if quality_column else None
        cases.append(Case(name, image, np.array(values).reshape(len(landmarks), 3), quality))
    return cases


def write_manifest(csv_path: PathLike, cases: Sequence[Case], landmarks: Sequence[str] = DEFAULT_LANDMARKS) -> None:
    """Write a manifest (see `read_manifest`); image paths are made relative to the CSV's folder."""
    csv_path = Path(csv_path)
    columns = ["image"] + [f"{name}_{axis}" for name in landmarks for axis in "xyz"] + ["quality"]
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for case in cases:
            points = _check_points(case.landmarks_lps, len(landmarks), case.case_id)
            image = os.path.relpath(Path(case.image).resolve(), csv_path.parent.resolve())
            writer.writerow([Path(image).as_posix(), *[f"{v:.4f}" for v in points.ravel()], case.quality or ""])


def _check_points(points: PointsLPS, count: int, where: str) -> np.ndarray:
    points = np.asarray(points, dtype=float)
    if points.shape != (count, 3):
        raise InputError(f"{where}: expected {count} points of 3 coordinates, got shape {points.shape}")
    if not np.all(np.isfinite(points)):
        raise InputError(f"{where}: coordinates contain NaN or infinite values")
    return points


@contextlib.contextmanager
def atomic_output_dir(path: PathLike, force: bool = False) -> Iterator[Path]:
    """Write a folder all at once: yield a temporary sibling, move it into place only if the block succeeds.

    Args:
        path: the output folder.
        force: replace an existing non-empty folder (it is removed only after the new one is complete).

    Raises:
        InputError: `path` exists, is not empty and `force` is False; or `path` is a file.

    Example:
        >>> with atomic_output_dir("out/detections") as tmp:
        ...     (tmp / "case.json").write_text("{}", encoding="utf-8")
    """
    path = Path(path)
    if path.is_file():
        raise InputError(f"{path}: output folder is an existing file")
    if path.exists() and any(path.iterdir()) and not force:
        raise InputError(f"{path}: output folder exists and is not empty (use --force to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the output is an ordinary folder
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(path)
