"""Reading CTs, manifests and Slicer markups; writing markups and manifests (output folders: see outputs.py).

Every coordinate read or written here is world LPS mm (the DICOM/ITK patient frame), as 3D Slicer writes files.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .constants import DEFAULT_LANDMARKS
from .errors import InputError
from .frames import ras_to_lps
from .image_checks import check_geometry, check_metaimage, check_nifti, check_slice_spacing
from .outputs import replacing_file
from .typing import PathLike, PointsLPS

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
#: Column names of the original authors' manifests, accepted as aliases.
_IMAGE_COLUMNS = ("image", "DICOMPath")
_QUALITY_COLUMNS = ("quality", "CTQuality")


def case_id(path: PathLike) -> str:
    """Name of a case: the image file name without its image suffix, or the DICOM folder's name."""
    name = Path(path).name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_image(path: PathLike, accept_slice_gaps: bool = False) -> sitk.Image:
    """Read a 3D CT from an image file or from a folder holding exactly one DICOM series.

    Origin, spacing and direction cosines are kept as written (LPS), so flipped or oblique axes give correct world
    coordinates. Damaged geometry is refused rather than guessed (checks: image_checks.py): NIfTI and MetaImage
    headers are read first (SimpleITK reads a zero or NaN NIfTI spacing as 1 mm, a negative one as a flipped axis, and
    a truncated NIfTI with the missing voxels as zeros), and every image must have a finite origin, a spacing within
    `image_checks.SPACING_RANGE_MM` and orthonormal direction cosines.

    Args:
        path: ``.nii``, ``.nii.gz``, ``.nrrd``, ``.mha``, ``.mhd`` file, or a DICOM folder.
        accept_slice_gaps: read a DICOM series whose slice spacing is uneven (a missing slice); SimpleITK then uses
            the mean spacing, so positions beyond the gap are off by up to one slice.

    Returns:
        A 3D single-component SimpleITK image.

    Raises:
        InputError: missing or unreadable path, a truncated file, spacing that is not positive, finite and within
            `image_checks.SPACING_RANGE_MM`, a non-finite origin or NIfTI transform, singular or non-orthonormal
            direction cosines, a folder with no or several DICOM series, a series with a gap, a 2D or multi-component
            image.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        image = _read_dicom_folder(path, accept_slice_gaps)
    else:
        if not any(path.name.lower().endswith(s) for s in IMAGE_SUFFIXES + (".dcm",)):
            raise InputError(f"{path}: unsupported image format (use {', '.join(IMAGE_SUFFIXES)} or a DICOM folder)")
        name = path.name.lower()
        if name.endswith((".nii", ".nii.gz")):
            check_nifti(path)
        elif name.endswith((".mha", ".mhd")):
            check_metaimage(path)
        image = _read_image_file(path)
    if image.GetDimension() != 3 or min(image.GetSize()) < 2:
        size = "x".join(str(s) for s in image.GetSize())
        raise InputError(f"{path}: image is {image.GetDimension()}D ({size}); a 3D CT volume is needed")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{path}: image has {image.GetNumberOfComponentsPerPixel()} components; a scalar CT is needed")
    check_geometry(path, image.GetSpacing(), image.GetDirection(), image.GetOrigin())
    return image


def _read_image_file(path: Path) -> sitk.Image:
    """Read the header, check its geometry, then the voxels: SimpleITK spins (> 10 min, a whole test run) reading
    the voxels of an oblique image with a spacing of 1.8e308 mm, and prints pages of numbers for cosines of 1e16."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
        check_geometry(path, reader.GetSpacing(), reader.GetDirection(), reader.GetOrigin())
        return reader.Execute()
    except RuntimeError as err:
        raise InputError(f"{path}: cannot read image ({_itk_reason(err)})") from None


def _read_dicom_folder(folder: Path, accept_slice_gaps: bool = False) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise InputError(f"{folder}: folder holds no DICOM series")
    if len(series) > 1:
        raise InputError(f"{folder}: folder holds {len(series)} DICOM series; give a folder with one series")
    files = reader.GetGDCMSeriesFileNames(str(folder), series[0])
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()  # every slice's tags, for the spacing check (measured: no extra time)
    # ITK warns about uneven spacing on its own, in several raw lines; the check below says it in one (or is waived)
    warnings = sitk.ProcessObject_GetGlobalWarningDisplay()
    sitk.ProcessObject_SetGlobalWarningDisplay(False)
    try:
        image = reader.Execute()
    except RuntimeError as err:
        raise InputError(f"{folder}: cannot read DICOM series ({_itk_reason(err)})") from None
    finally:
        sitk.ProcessObject_SetGlobalWarningDisplay(warnings)
    if not accept_slice_gaps:
        check_slice_spacing(folder, reader, len(files))
    return image


def _itk_reason(err: Exception) -> str:
    """The informative line of a SimpleITK exception: NRRD's last message, else ITK's, without the C++ location."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    nrrd = [line for line in lines if line.startswith("[nrrd]")]
    itk = [re.sub(r"^ITK ERROR: \w+\(0x[0-9a-fA-F]+\): ", "", line) for line in lines if line.startswith("ITK ERROR:")]
    reason = nrrd[-1] if nrrd else itk[0] if itk else lines[-1] if lines else type(err).__name__
    return reason if len(reason) <= 160 else reason[:157] + "..."


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
    for i, (name, point) in enumerate(zip(names, points, strict=True)):
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
        points = ras_to_lps(points)
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


def read_manifest(
    csv_path: PathLike, landmarks: Sequence[str] = DEFAULT_LANDMARKS, check_images: bool = True
) -> list[Case]:
    """Read a dataset manifest (UTF-8 CSV; the byte-order mark spreadsheet programs write is accepted).

    Columns: ``image`` (or ``DICOMPath``), a path relative to the CSV's folder; ``<NAME>_x, <NAME>_y, <NAME>_z`` for
    each landmark name, world LPS mm; optional ``quality`` (or ``CTQuality``).

    Args:
        csv_path: the manifest.
        landmarks: K names, the coordinate columns' prefixes.
        check_images: refuse a row whose image does not exist (evaluation, which reads no image, turns it off).

    Raises:
        InputError: missing file or columns, empty manifest, missing image, NaN or non-numeric coordinates,
            duplicated case names.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise InputError(f"{csv_path}: manifest not found")
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            rows = list(reader)
    except UnicodeDecodeError as err:
        raise InputError(
            f"{csv_path}: manifest is not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8"
        ) from None
    except csv.Error as err:  # e.g. a field longer than csv.field_size_limit()
        raise InputError(f"{csv_path}: not a readable CSV file ({err})") from None
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
        where = f"{csv_path}, line {line}"
        cell = (row[image_column] or "").strip()
        if not cell:
            raise InputError(f"{where}: empty {image_column} cell")
        try:
            image = (csv_path.parent / cell).resolve()
        except (OSError, ValueError):  # a NUL character, a path too long
            raise InputError(f"{where}: image {cell!r} is not a valid path") from None
        if check_images and not image.exists():
            raise InputError(f"{where}: image {row[image_column]} not found")
        values = [_coordinate(where, column, row[column]) for column in needed]
        name = case_id(image)
        if name in seen:
            raise InputError(f"{where}: case name {name!r} appears twice")
        seen.add(name)
        quality = (row.get(quality_column) or "").strip() or None if quality_column else None
        cases.append(Case(name, image, np.array(values).reshape(len(landmarks), 3), quality))
    return cases


def _coordinate(where: str, column: str, cell: str | None) -> float:
    """One coordinate cell as a finite float (a short row leaves None)."""
    try:
        value = float(cell)
    except (TypeError, ValueError):
        raise InputError(f"{where}: {column} = {cell!r} is not a number") from None
    if not math.isfinite(value):
        raise InputError(f"{where}: {column} = {cell!r} is not a finite number")
    return value


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


def add_manifest_case(csv_path: PathLike, case: Case, landmarks: Sequence[str] = DEFAULT_LANDMARKS) -> bool:
    """Add one case to a manifest (created if missing), replacing a row of the same case; other rows and columns stay.

    For an analyst's corrected points, so they feed the next ``aortic-root train``. The file is replaced atomically.

    Returns:
        True if a row of the same case was replaced, False if the case was added.

    Raises:
        InputError: the manifest exists but lacks the landmark columns, or is not readable UTF-8 CSV.
    """
    csv_path = Path(csv_path)
    points = _check_points(case.landmarks_lps, len(landmarks), case.case_id)
    needed = [f"{name}_{axis}" for name in landmarks for axis in "xyz"]
    header, rows = ["image", *needed, "quality"], []
    if csv_path.is_file():
        try:
            with csv_path.open(newline="", encoding="utf-8-sig") as handle:
                reader = csv.DictReader(handle)
                header, rows = list(reader.fieldnames or []), list(reader)
        except (UnicodeDecodeError, csv.Error) as err:
            raise InputError(f"{csv_path}: not a readable UTF-8 CSV manifest ({err})") from None
        missing = [c for c in needed if c not in header] + ([] if set(_IMAGE_COLUMNS) & set(header) else ["image"])
        if missing:
            raise InputError(f"{csv_path}: manifest lacks column(s) {', '.join(missing)}")
    image_column = next(c for c in (*_IMAGE_COLUMNS, "image") if c in header)
    quality_column = next((c for c in _QUALITY_COLUMNS if c in header), None)
    before = len(rows)
    rows = [r for r in rows if case_id((r.get(image_column) or "").strip()) != case.case_id]
    image = Path(os.path.relpath(Path(case.image).resolve(), csv_path.parent.resolve())).as_posix()
    row = {image_column: image, **{c: f"{v:.4f}" for c, v in zip(needed, points.ravel(), strict=True)}}
    if quality_column:
        row[quality_column] = case.quality or ""
    rows.append(row)
    with replacing_file(csv_path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return len(rows) == before


def _check_points(points: PointsLPS, count: int, where: str) -> np.ndarray:
    points = np.asarray(points, dtype=float)
    if points.shape != (count, 3):
        raise InputError(f"{where}: expected {count} points of 3 coordinates, got shape {points.shape}")
    if not np.all(np.isfinite(points)):
        raise InputError(f"{where}: coordinates contain NaN or infinite values")
    return points
