"""Writing a phantom case as a DICOM CT series (one file per slice) with SimpleITK's GDCM writer.

Follows SimpleITK's "DicomSeriesFromArray" example: every slice carries the series-wide tags (study, series and frame
of reference UIDs, orientation, spacing) and its own ImagePositionPatient and InstanceNumber. Values are int16 HU
(RescaleSlope 1, RescaleIntercept 0). UIDs are derived deterministically from a key (``2.25.<uuid5>``), so writing the
same case twice gives the same series.

A direction with a negative determinant (an odd number of flipped axes) cannot be stored in DICOM: slices are sorted
along ``row x column`` on reading, so SimpleITK reads such a series back with the slice axis reversed. The world
position of every voxel is unchanged (``sitk.DICOMOrient`` of both images agrees).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Union

import numpy as np
import SimpleITK as sitk

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
_NAMESPACE = uuid.UUID("6d1f7c1e-4a53-4b61-9d0e-6b2f2f1c9a10")


def make_uid(key: str) -> str:
    """Deterministic DICOM UID ``2.25.<decimal uuid5(key)>`` (at most 44 characters)."""
    return "2.25." + str(uuid.uuid5(_NAMESPACE, key).int)


def _num(v: float) -> str:
    return f"{float(v):.6f}".rstrip("0").rstrip(".") if abs(v) > 5e-7 else "0"


def _series_tags(img: sitk.Image, uid_key: str, patient_id: str, description: str) -> list[tuple[str, str]]:
    """(tag, value) pairs shared by every slice of the series: CT image storage, patient, UIDs, orientation, HU."""
    d = np.array(img.GetDirection()).reshape(3, 3)
    spacing = img.GetSpacing()
    return [
        ("0008|0008", "DERIVED\\SECONDARY\\AXIAL"),
        ("0008|0016", CT_IMAGE_STORAGE),
        ("0008|0020", "20240101"),
        ("0008|0021", "20240101"),
        ("0008|0030", "120000"),
        ("0008|0031", "120000"),
        ("0008|0060", "CT"),
        ("0008|0070", "AorticRootLandmarks phantom"),
        ("0008|1030", "Synthetic cardiac CT"),
        ("0008|103e", description),
        ("0010|0010", f"Phantom^{patient_id}"),
        ("0010|0020", patient_id),
        ("0010|0030", ""),
        ("0010|0040", "O"),
        ("0018|0050", _num(spacing[2])),  # SliceThickness
        ("0018|5100", "HFS"),
        ("0020|000d", make_uid(uid_key + "/study")),
        ("0020|000e", make_uid(uid_key + "/series")),
        ("0020|0052", make_uid(uid_key + "/frame")),
        ("0020|0010", "1"),
        ("0020|0011", "1"),
        ("0020|0037", "\\".join(_num(v) for v in (*d[:, 0], *d[:, 1]))),  # ImageOrientationPatient: row\column
        ("0028|1050", "300"),
        ("0028|1051", "1000"),
        ("0028|1052", "0"),
        ("0028|1053", "1"),
        ("0028|1054", "HU"),
    ]


def write_dicom_series(
    image: sitk.Image,
    folder: Union[str, Path],
    *,
    uid_key: str,
    patient_id: str,
    description: str = "Synthetic aortic root CT phantom",
) -> list[Path]:
    """Write a 3D image as one DICOM CT file per slice.

    Args:
        image: 3D scalar image (cast to int16 HU), any origin/spacing/direction (world LPS mm).
        folder: output folder (created); files are ``IM0001.dcm``, ``IM0002.dcm``, ...
        uid_key: seed of the study/series/frame-of-reference/instance UIDs (e.g. "seed0/phantom_0003").
        patient_id: PatientID and PatientName.
        description: SeriesDescription.

    Returns:
        The written file paths in slice order.
    """
    if image.GetDimension() != 3:
        raise ValueError("write_dicom_series needs a 3D image")
    img = sitk.Cast(image, sitk.sitkInt16) if image.GetPixelID() != sitk.sitkInt16 else image
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    d = np.array(img.GetDirection()).reshape(3, 3)
    normal = np.cross(d[:, 0], d[:, 1])
    series = _series_tags(img, uid_key, patient_id, description)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()  # use our UIDs, not freshly generated ones
    paths = []
    for k in range(img.GetSize()[2]):
        sl = img[:, :, k]
        for tag, value in series:
            sl.SetMetaData(tag, value)
        pos = img.TransformIndexToPhysicalPoint((0, 0, k))
        sl.SetMetaData("0008|0018", make_uid(f"{uid_key}/instance/{k}"))
        sl.SetMetaData("0020|0013", str(k + 1))  # InstanceNumber
        sl.SetMetaData("0020|0032", "\\".join(_num(v) for v in pos))  # ImagePositionPatient
        sl.SetMetaData("0020|1041", _num(float(np.dot(pos, normal))))  # SliceLocation
        path = folder / f"IM{k + 1:04d}.dcm"
        writer.SetFileName(str(path))
        writer.Execute(sl)
        paths.append(path)
    return paths
