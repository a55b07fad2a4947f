"""Checks of image files before and after SimpleITK reads them: truncation, spacing, geometry, DICOM slice gaps.

SimpleITK reads some damaged files without complaint: a zero or NaN NIfTI spacing as 1 mm, a negative one as a flipped
axis, a truncated NIfTI with the missing voxels as zeros, a DICOM series with a missing slice with the mean spacing.
`check_nifti` and `check_metaimage` read the header first and refuse such files; `check_geometry` refuses implausible
spacing, origin and direction cosines of any image; `check_slice_spacing` refuses uneven DICOM slice gaps. Each raises
`InputError` with one line naming the file and what is wrong. Coordinates are world LPS mm, as SimpleITK gives them.
"""

from __future__ import annotations

import gzip
import math
import os
import re
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import InputError

#: Voxel sizes outside this range (mm) come from a damaged header; SimpleITK hangs reading some (1e308, oblique).
SPACING_RANGE_MM = (1e-6, 1e6)


def _check_spacing(path: Path, spacing: Sequence[float], source: str = "") -> None:
    if not all(math.isfinite(s) and s > 0 for s in spacing):
        raise InputError(f"{path}: voxel spacing {_numbers(spacing)} mm{source} is not positive and finite")
    low, high = SPACING_RANGE_MM
    if not all(low <= s <= high for s in spacing):
        raise InputError(f"{path}: voxel spacing {_numbers(spacing)} mm{source} is outside {low:g} to {high:g} mm")


def check_geometry(
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


def check_nifti(path: Path) -> None:
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


def check_metaimage(path: Path) -> None:
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


#: Slice gaps that differ from the series' median by more than this fraction are refused (a missing slice doubles one).
SLICE_SPACING_TOLERANCE = 0.1


def check_slice_spacing(folder: Path, reader: sitk.ImageSeriesReader, count: int) -> None:
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
