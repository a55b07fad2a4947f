"""Reading CTs, manifests and Slicer markups; writing markups and manifests (output folders: see outputs.py).

Every coordinate read or written here is world LPS mm (the DICOM/ITK patient frame), as 3D Slicer writes files.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import os
import re
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .constants import DEFAULT_LANDMARKS
from .errors import InputError
from .frames import ras_to_lps
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
    coordinates. Damaged geometry is refused rather than guessed: NIfTI and MetaImage headers are read here first
    (SimpleITK reads a zero or NaN NIfTI spacing as 1 mm, a negative one as a flipped axis, and a truncated NIfTI with
    the missing voxels as zeros), and every image must have a finite origin, a spacing within `SPACING_RANGE_MM` and
    orthonormal direction cosines.

    Args:
        path: ``.nii``, ``.nii.gz``, ``.nrrd``, ``.mha``, ``.mhd`` file, or a DICOM folder.
        accept_slice_gaps: read a DICOM series whose slice spacing is uneven (a missing slice); SimpleITK then uses
            the mean spacing, so positions beyond the gap are off by up to one slice.

    Returns:
        A 3D single-component SimpleITK image.

    Raises:
        InputError: missing or unreadable path, a truncated file, spacing that is not positive, finite and within
            `SPACING_RANGE_MM`, a non-finite origin or NIfTI transform, singular or non-orthonormal direction cosines,
            a folder with no or several DICOM series, a series with a gap, a 2D or multi-component image.
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
            _check_nifti(path)
        elif name.endswith((".mha", ".mhd")):
            _check_metaimage(path)
        image = _read_image_file(path)
    if image.GetDimension() != 3 or min(image.GetSize()) < 2:
        size = "x".join(str(s) for s in image.GetSize())
        raise InputError(f"{path}: image is {image.GetDimension()}D ({size}); a 3D CT volume is needed")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{path}: image has {image.GetNumberOfComponentsPerPixel()} components; a scalar CT is needed")
    _check_geometry(path, image.GetSpacing(), image.GetDirection(), image.GetOrigin())
    return image


def _read_image_file(path: Path) -> sitk.Image:
    """Read the header, check its geometry, then the voxels: SimpleITK spins (> 10 min, a whole test run) reading
    the voxels of an oblique image with a spacing of 1.8e308 mm, and prints pages of numbers for cosines of 1e16."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
        _check_geometry(path, reader.GetSpacing(), reader.GetDirection(), reader.GetOrigin())
        return reader.Execute()
    except RuntimeError as err:
        raise InputError(f"{path}: cannot read image ({_itk_reason(err)})") from None


#: Voxel sizes outside this range (mm) come from a damaged header; SimpleITK hangs reading some (1e308, oblique).
SPACING_RANGE_MM = (1e-6, 1e6)


def _check_spacing(path: Path, spacing: Sequence[float], source: str = "") -> None:
    if not all(math.isfinite(s) and s > 0 for s in spacing):
        raise InputError(f"{path}: voxel spacing {_numbers(spacing)} mm{source} is not positive and finite")
    low, high = SPACING_RANGE_MM
    if not all(low <= s <= high for s in spacing):
        raise InputError(f"{path}: voxel spacing {_numbers(spacing)} mm{source} is outside {low:g} to {high:g} mm")


def _check_geometry(
    path: Path, spacing: Sequence[float], direction: Sequence[float], origin: Sequence[float] = ()
) -> None:
    """Refuse spacing that is not positive, finite and plausible, direction cosines that are not a rotation (or
    reflection), and a non-finite origin.

    Orthonormality is checked to 1e-2, loose enough for cosines written with few decimals, tight enough to refuse a
    singular matrix or a scaled axis (which would silently change the voxel size).
    """
    _check_spacing(path, spacing)
    if not all(math.isfinite(v) for v in origin):
        raise InputError(f"{path}: origin {_numbers(origin)} mm is not finite")
    matrix = np.asarray(direction, float).reshape(len(spacing), len(spacing))
    if not np.all(np.isfinite(matrix)):
        raise InputError(f"{path}: direction cosines {_numbers(direction)} are not finite")
    with np.errstate(over="ignore", invalid="ignore"):  # 1e300 cosines: inf, refused below
        deviation = np.abs(matrix.T @ matrix - np.eye(len(spacing))).max()
    if not deviation <= 1e-2:
        raise InputError(
            f"{path}: direction cosines {_numbers(direction)} are not orthonormal (singular or scaled axes)"
        )


def _numbers(values: Sequence[float]) -> str:
    return " x ".join(f"{v:.6g}" for v in values) if len(values) <= 3 else " ".join(f"{v:.4g}" for v in values)


# sizeof_hdr of NIfTI-1 and NIfTI-2 -> (struct format, byte offset) of the header fields checked here, and the magic
# of a single-file .nii (nifti1.h, nifti2.h).
_NIFTI_FIELDS = {
    348: {"dim": ("8h", 40), "bitpix": ("h", 72), "pixdim": ("8f", 76), "vox_offset": ("f", 108),
          "qform_code": ("h", 252), "sform_code": ("h", 254), "qform": ("6f", 256), "sform": ("12f", 280),
          "magic": ("4s", 344)},
    540: {"magic": ("8s", 4), "bitpix": ("h", 14), "dim": ("8q", 16), "pixdim": ("8d", 104), "vox_offset": ("q", 168),
          "qform_code": ("i", 344), "sform_code": ("i", 348), "qform": ("6d", 352), "sform": ("12d", 400)},
}
_NIFTI_SINGLE_FILE = {348: b"n+1\0", 540: b"n+2\0\r\n\x1a\n"}


def _check_nifti(path: Path) -> None:
    """Read the NIfTI header and refuse what SimpleITK would misread: pixdim[1..3] that is not positive and finite
    (0, NaN and inf are read as 1 mm, a negative one as a flipped axis), NaN or infinite values in the qform or sform in
    use (read as 0 or replaced), and a file shorter than its header says (the missing voxels are read as zeros).

    The size check costs no decompression for an intact ``.nii.gz``: the gzip trailer holds the uncompressed size
    (mod 2**32), compared with ``vox_offset + voxels * bitpix / 8``. Only when they differ (a truncated file, or a
    rare multi-member gzip) is the file decompressed to count its bytes.
    """
    header, compressed = _nifti_header(path)
    dim, bitpix, vox_offset = header["dim"], header["bitpix"][0], header["vox_offset"][0]
    if not 1 <= dim[0] <= 7:
        raise InputError(f"{path}: cannot read image (NIfTI header dim[0] = {dim[0]}, not 1 to 7)")
    _check_spacing(path, header["pixdim"][1 : 1 + min(dim[0], 3)], " in the NIfTI header (pixdim)")
    for transform in ("qform", "sform"):
        if header[f"{transform}_code"][0] > 0 and not all(math.isfinite(v) for v in header[transform]):
            values = _numbers(header[transform])
            raise InputError(f"{path}: the NIfTI {transform} holds NaN or infinite values ({values})")
    sizes = dim[1 : dim[0] + 1]
    if (
        header["magic"][0] != _NIFTI_SINGLE_FILE[header["sizeof_hdr"]]
        or min(sizes) < 1
        or bitpix < 8
        or bitpix % 8
        or not (math.isfinite(vox_offset) and vox_offset >= 0)
    ):
        return  # nothing reliable to compare with; SimpleITK reports what it cannot read
    expected = int(vox_offset) + math.prod(sizes) * bitpix // 8
    available = _gzip_size(path, expected) if compressed else path.stat().st_size
    if available < expected:
        held = "its compressed data end before that" if compressed else f"it holds {available}"
        raise InputError(f"{path}: file is truncated (its header needs {expected} bytes, {held})")


def _nifti_header(path: Path) -> tuple[dict, bool]:
    """The fields of `_NIFTI_FIELDS` (tuples, either byte order) plus ``sizeof_hdr``, and whether the file is gzip."""
    with path.open("rb") as handle:
        compressed = handle.read(2) == b"\x1f\x8b"  # gzip magic; SimpleITK reads a plain file named .nii.gz too
    try:
        with (gzip.open(path) if compressed else path.open("rb")) as handle:
            data = handle.read(540)
    except EOFError:
        raise InputError(f"{path}: file is truncated (its compressed data end inside the NIfTI header)") from None
    except (OSError, zlib.error) as err:
        raise InputError(f"{path}: cannot read image (damaged gzip data: {err})") from None
    sizes = {struct.unpack(e + "i", data[:4])[0]: e for e in "<>"} if len(data) >= 4 else {}
    found = [(n, e) for n, e in sizes.items() if n in _NIFTI_FIELDS and len(data) >= n]
    if not found:
        raise InputError(f"{path}: cannot read image (not a NIfTI-1 or NIfTI-2 file, or truncated in its header)")
    size, e = found[0]
    if size == 540 and not sitk.ImageFileReader().GetImageIOFromFileName(str(path)):
        raise InputError(f"{path}: cannot read image (NIfTI-2, which this SimpleITK cannot read; save it as NIfTI-1)")
    header = {name: struct.unpack_from(e + fmt, data, at) for name, (fmt, at) in _NIFTI_FIELDS[size].items()}
    return {**header, "sizeof_hdr": size}, compressed


def _gzip_size(path: Path, expected: int) -> int:
    """Uncompressed size of a gzip file: `expected` if the trailer agrees, else counted up to `expected` (a truncated
    file: the bytes decompressed before its data end, to 64 KiB)."""
    with path.open("rb") as handle:
        handle.seek(-4, os.SEEK_END)
        if struct.unpack("<I", handle.read(4))[0] == expected % 2**32:
            return expected
    total = 0
    try:
        with gzip.open(path) as handle:
            while total < expected and (chunk := handle.read(1 << 16)):
                total += len(chunk)
    except (OSError, EOFError, zlib.error):
        pass  # the data end early: a truncated or damaged file
    return total


_META_TYPE_SIZES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
                    "MET_FLOAT": 4, "MET_DOUBLE": 8, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8}


def _check_metaimage(path: Path) -> None:
    """Read a MetaImage header (``key = value`` lines up to ElementDataFile) and refuse what SimpleITK would misread:
    a non-positive ElementSpacing (read as a flipped axis), a NaN or infinite origin (read as 0), and data shorter than
    the header says (refused there too, but as "No such file or directory")."""
    with path.open("rb") as handle:
        head = handle.read(1 << 16)
    match = re.search(rb"^ElementDataFile *= *([^\r\n]*)\r?\n?", head, re.MULTILINE)
    if match is None:
        raise InputError(f"{path}: cannot read image (no MetaImage header: its ElementDataFile line is missing)")
    fields = {}
    for line in head[: match.start()].decode("latin-1").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    try:
        spacing = [float(v) for v in fields.get("ElementSpacing", fields.get("ElementSize", "1")).split()]
        origin = [float(v) for v in fields.get("Offset", fields.get("Position", fields.get("Origin", "0"))).split()]
    except ValueError:
        raise InputError(f"{path}: cannot read image (ElementSpacing or Offset is not a list of numbers)") from None
    _check_spacing(path, spacing, " (ElementSpacing)")
    if not all(math.isfinite(v) for v in origin):
        raise InputError(f"{path}: origin {_numbers(origin)} mm (Offset) is not finite")
    data_file = match.group(1).decode("latin-1").strip()
    if data_file == "LOCAL":
        available = path.stat().st_size - match.end()
    elif data_file.startswith("LIST") or "%" in data_file or " " in data_file:
        return  # one file per slice: SimpleITK checks them
    elif not (path.parent / data_file).is_file():
        raise InputError(f"{path}: its data file {data_file} is missing")
    else:
        available = (path.parent / data_file).stat().st_size
    expected = _metaimage_data_size(fields)
    if expected is not None and available < expected:
        raise InputError(f"{path}: file is truncated (its header needs {expected} bytes of data, it holds {available})")


def _metaimage_data_size(fields: dict[str, str]) -> int | None:
    """Bytes of voxel data a MetaImage header announces, None where it cannot be worked out here (SimpleITK checks)."""
    if "HeaderSize" in fields:
        return None
    try:
        if fields.get("CompressedData", "False").lower() == "true":
            return int(fields["CompressedDataSize"])
        voxels = math.prod(int(n) for n in fields["DimSize"].split()) * int(fields.get("ElementNumberOfChannels", "1"))
        return voxels * _META_TYPE_SIZES[fields["ElementType"]]
    except (KeyError, ValueError):
        return None


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
        _check_slice_spacing(folder, reader, len(files))
    return image


#: Slice gaps that differ from the series' median by more than this fraction are refused (a missing slice doubles one).
SLICE_SPACING_TOLERANCE = 0.1


def _check_slice_spacing(folder: Path, reader: sitk.ImageSeriesReader, count: int) -> None:
    """Refuse a series whose slices are not evenly spaced along the slice normal (a missing or repeated slice).

    SimpleITK would read it with the mean spacing, so every position beyond the gap is off. Uses each slice's
    ImagePositionPatient (0020|0032) and ImageOrientationPatient (0020|0037); a series without them, or of fewer than
    3 slices, is left as SimpleITK read it.
    """
    if count < 3:
        return
    try:
        positions = np.array([[float(v) for v in reader.GetMetaData(i, "0020|0032").split("\\")] for i in range(count)])
        cosines = np.array([float(v) for v in reader.GetMetaData(0, "0020|0037").split("\\")])
    except (RuntimeError, ValueError):  # a tag missing or not numbers
        return
    if positions.shape != (count, 3) or cosines.shape != (6,):
        return
    gaps = np.diff(np.sort(positions @ np.cross(cosines[:3], cosines[3:])))
    typical = float(np.median(gaps))
    uneven = np.flatnonzero(np.abs(gaps - typical) > SLICE_SPACING_TOLERANCE * typical)
    if typical <= 0 or uneven.size:
        k = int(uneven[0]) if uneven.size else 0
        raise InputError(
            f"{folder}: slice spacing jumps from {_mm(typical)} to {_mm(gaps[k])} mm after slice {k + 1} of "
            f"{count} (a missing or repeated slice?); accept_slice_gaps (--accept-slice-gaps) reads it anyway"
        )


def _mm(value: float) -> str:
    text = f"{value:.3f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


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


def _check_points(points: PointsLPS, count: int, where: str) -> np.ndarray:
    points = np.asarray(points, dtype=float)
    if points.shape != (count, 3):
        raise InputError(f"{where}: expected {count} points of 3 coordinates, got shape {points.shape}")
    if not np.all(np.isfinite(points)):
        raise InputError(f"{where}: coordinates contain NaN or infinite values")
    return points
