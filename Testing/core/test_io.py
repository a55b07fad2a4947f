"""io: reading images and DICOM folders, manifests, Slicer markups, atomic output folders."""

from __future__ import annotations

import gzip
import json
import re
import struct

import numpy as np
import pytest
import SimpleITK as sitk
from helpers import make_image

from AorticRootLandmarksLib.errors import InputError
from AorticRootLandmarksLib.io import (
    Case,
    case_id,
    read_image,
    read_manifest,
    read_markups,
    write_image,
    write_manifest,
    write_markups,
)


@pytest.mark.parametrize(
    "path, expected",
    [("a/ct_01.nii.gz", "ct_01"), ("b/x.nrrd", "x"), ("c/y.MHA", "y"), ("dicom/patient7", "patient7")],
)
def test_case_id(path, expected):
    assert case_id(path) == expected


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_read_image_keeps_geometry(tmp_path, flipped_image, suffix):
    path = tmp_path / f"ct{suffix}"
    write_image(flipped_image, path)
    image = read_image(path)
    np.testing.assert_allclose(image.GetOrigin(), flipped_image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(image.GetSpacing(), flipped_image.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(image.GetDirection(), flipped_image.GetDirection(), atol=1e-6)


def _write_dicom_series(image: sitk.Image, folder, series_uid="1.2.3.4"):
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    direction = image.GetDirection()
    for k in range(image.GetDepth()):
        slice_ = image[:, :, k]
        for tag, value in [
            ("0008|0060", "CT"),
            ("0020|000e", series_uid),
            ("0020|000d", "1.2.3"),
            ("0020|0037", "\\".join(str(v) for v in direction[0:3] + direction[3:6])),
            ("0020|0032", "\\".join(str(v) for v in image.TransformIndexToPhysicalPoint((0, 0, k)))),
            ("0020|0013", str(k + 1)),
        ]:
            slice_.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{series_uid}_{k:03d}.dcm"))
        writer.Execute(slice_)


def test_read_dicom_folder(tmp_path):
    image = make_image(size=(8, 6, 5), spacing=(0.7, 0.7, 1.25), origin=(-5.0, 3.0, 100.0), value=42)
    _write_dicom_series(image, tmp_path / "series")
    read = read_image(tmp_path / "series")
    assert read.GetSize() == (8, 6, 5)
    np.testing.assert_allclose(read.GetSpacing(), (0.7, 0.7, 1.25), atol=1e-4)
    np.testing.assert_allclose(read.GetOrigin(), (-5.0, 3.0, 100.0), atol=1e-4)
    assert sitk.GetArrayViewFromImage(read).mean() == pytest.approx(42)


def test_read_image_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "missing.nii.gz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no DICOM series"):
        read_image(tmp_path / "empty")
    (tmp_path / "junk.nii.gz").write_bytes(b"not an image")
    with pytest.raises(InputError, match="cannot read"):
        read_image(tmp_path / "junk.nii.gz")
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    with pytest.raises(InputError, match="unsupported"):
        read_image(tmp_path / "notes.txt")
    flat = sitk.Image(16, 16, sitk.sitkInt16)
    sitk.WriteImage(flat, str(tmp_path / "flat.nrrd"))
    with pytest.raises(InputError, match="2D"):
        read_image(tmp_path / "flat.nrrd")


def test_dicom_folder_with_two_series(tmp_path):
    image = make_image(size=(4, 4, 3))
    _write_dicom_series(image, tmp_path / "mixed", "1.2.3.4")
    _write_dicom_series(image, tmp_path / "mixed", "1.2.3.5")
    with pytest.raises(InputError, match="2 DICOM series"):
        read_image(tmp_path / "mixed")


def test_markups_round_trip_lps(tmp_path):
    points = np.array([[1.5, -2.0, 3.25], [4.0, 5.0, -6.0], [0.0, 0.0, 0.0]])
    write_markups(tmp_path / "p.mrk.json", ["RCC", "LCC", "NCC"], points)
    document = json.loads((tmp_path / "p.mrk.json").read_text(encoding="utf-8"))
    assert document["markups"][0]["coordinateSystem"] == "LPS"
    labels, read = read_markups(tmp_path / "p.mrk.json")
    assert labels == ["RCC", "LCC", "NCC"]
    np.testing.assert_allclose(read, points)


def test_read_markups_converts_ras(tmp_path):
    write_markups(tmp_path / "p.mrk.json", ["A"], np.array([[1.0, 2.0, 3.0]]))
    document = json.loads((tmp_path / "p.mrk.json").read_text(encoding="utf-8"))
    document["markups"][0]["coordinateSystem"] = "RAS"  # same numbers, now meant as RAS: LPS = (-1, -2, 3)
    (tmp_path / "p.mrk.json").write_text(json.dumps(document), encoding="utf-8")
    _, points = read_markups(tmp_path / "p.mrk.json")
    np.testing.assert_allclose(points, [[-1.0, -2.0, 3.0]])


def test_write_markups_refuses_nan(tmp_path):
    with pytest.raises(InputError, match="NaN"):
        write_markups(tmp_path / "p.mrk.json", ["A"], np.array([[np.nan, 0.0, 0.0]]))


@pytest.fixture
def dataset(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    cases = []
    for i in range(3):
        write_image(make_image(size=(6, 6, 6)), images / f"c{i}.nii.gz")
        cases.append(Case(f"c{i}", images / f"c{i}.nii.gz", np.arange(9.0).reshape(3, 3) + i, "3+"))
    write_manifest(tmp_path / "manifest.csv", cases)
    return tmp_path / "manifest.csv", cases


def test_manifest_round_trip(dataset):
    path, cases = dataset
    read = read_manifest(path)
    assert [c.case_id for c in read] == ["c0", "c1", "c2"]
    assert "images/c0.nii.gz" in path.read_text(encoding="utf-8")  # relative to the CSV
    for a, b in zip(read, cases, strict=True):
        np.testing.assert_allclose(a.landmarks_lps, b.landmarks_lps)
        assert a.quality == "3+" and a.image == b.image.resolve()


def test_manifest_accepts_authors_columns(dataset):
    path, _ = dataset
    path.write_text(path.read_text(encoding="utf-8").replace("image,", "DICOMPath,").replace(",quality", ",CTQuality"))
    assert [c.quality for c in read_manifest(path)] == ["3+"] * 3


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace("RCC_x", "RCC_q"), "lacks column"),
        (lambda t: t.replace(",0.0000,", ",nan,", 1), "not a finite number"),
        (lambda t: t.replace(",0.0000,", ",abc,", 1), "not a number"),
        (lambda t: t.replace("c1.nii.gz", "gone.nii.gz"), "not found"),
        (lambda t: t.splitlines()[0] + "\n", "no cases"),
    ],
)
def test_manifest_errors(dataset, edit, message):
    path, _ = dataset
    path.write_text(edit(path.read_text(encoding="utf-8")))
    with pytest.raises(InputError, match=message):
        read_manifest(path)


# --- damaged images: truncation, spacing, direction, DICOM gaps (each one line naming the file) ---


def _cut(path, fraction=2 / 3):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def _data_file(path):
    """The file that holds the voxels: the .mhd's .raw/.zraw, else the file itself."""
    if path.suffix != ".mhd":
        return path
    (data,) = [p for p in path.parent.iterdir() if p.stem == path.stem and p.suffix in (".raw", ".zraw")]
    return data


@pytest.mark.parametrize(
    "name, compress, message",
    [
        # SimpleITK reads these two with the missing voxels as zeros: our header check refuses them
        ("ct.nii.gz", True, "file is truncated"),
        ("ct.nii", False, "file is truncated"),
        # MetaImage: SimpleITK refuses too, but says "No such file or directory"; our check names the truncation
        ("ct.mha", False, "file is truncated"),
        ("ct.mhd", False, "file is truncated"),
        ("ct.mhd", True, "file is truncated"),
        # NRRD: SimpleITK refuses with a clear reason of its own
        ("ct.nrrd", False, "cannot read image"),
        ("ct.nrrd", True, "cannot read image"),
    ],
)
def test_truncated_image_is_refused(tmp_path, name, compress, message):
    path = tmp_path / name
    sitk.WriteImage(make_image(size=(40, 36, 30), value=40), str(path), useCompression=compress)
    _cut(_data_file(path))
    with pytest.raises(InputError, match=rf"{re.escape(name)}: {message}") as error:
        read_image(path)
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)


def test_truncated_nii_gz_inside_its_header(tmp_path):
    path = tmp_path / "ct.nii.gz"
    write_image(make_image(size=(8, 8, 8)), path)
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:200]))  # a whole gzip of 200 header bytes
    with pytest.raises(InputError, match="ct.nii.gz: cannot read image"):
        read_image(path)


def test_multi_member_gzip_nifti_still_reads(tmp_path):
    """The gzip trailer holds only the last member's size: the check must count the data rather than refuse."""
    image = make_image(size=(8, 7, 6), value=7)
    write_image(image, tmp_path / "one.nii.gz")
    raw = gzip.decompress((tmp_path / "one.nii.gz").read_bytes())
    (tmp_path / "two.nii.gz").write_bytes(gzip.compress(raw[:500]) + gzip.compress(raw[500:]))
    read = read_image(tmp_path / "two.nii.gz")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read), sitk.GetArrayFromImage(image))


def _patch_nifti(path, offset, fmt, values):
    """Overwrite header bytes of a .nii or .nii.gz (decompress, patch, recompress)."""
    compressed = path.name.endswith(".gz")
    data = bytearray(gzip.decompress(path.read_bytes()) if compressed else path.read_bytes())
    struct.pack_into(fmt, data, offset, *values)
    path.write_bytes(gzip.compress(bytes(data)) if compressed else bytes(data))


@pytest.mark.parametrize("name", ["ct.nii", "ct.nii.gz"])
@pytest.mark.parametrize(
    "pixdim",
    [(0.0, 1.2, 1.5), (-1.0, 1.2, 1.5), (1.0, 1.2, -1.5), (float("nan"), 1.2, 1.5), (1.0, float("inf"), 1.5)],
    ids=["zero", "negative-x", "negative-z", "nan", "inf"],
)
def test_nifti_spacing_not_positive_is_refused(tmp_path, name, pixdim):
    """SimpleITK reads pixdim 0, NaN or inf as 1 mm and a negative one as a flipped axis; the header check refuses."""
    path = tmp_path / name
    write_image(make_image(size=(6, 5, 4)), path)
    _patch_nifti(path, 80, "<3f", pixdim)  # pixdim[1..3]: float32 at byte 80 of the NIfTI-1 header
    with pytest.raises(InputError, match=rf"{name}: voxel spacing .* not positive and finite"):
        read_image(path)


@pytest.mark.parametrize(
    "offset, form",
    [
        (268, "qform"),  # qoffset_x: with the sform off, SimpleITK reads a NaN origin as 0
        (256, "qform"),  # quatern_b: read as the identity rotation
        (292, "sform"),  # srow_x[3] (the x origin)
        (280, "sform"),  # srow_x[0]
    ],
)
def test_nifti_nan_in_the_transform_is_refused(tmp_path, offset, form):
    path = tmp_path / "ct.nii"
    write_image(make_image(size=(6, 5, 4)), path)
    if form == "qform":
        _patch_nifti(path, 254, "<h", [0])  # sform_code 0: SimpleITK takes the qform
    _patch_nifti(path, offset, "<f", [float("nan")])
    with pytest.raises(InputError, match=f"ct.nii: the NIfTI {form} holds NaN or infinite values"):
        read_image(path)


def _handmade_nifti1(path, endian, pixdim, size=(6, 5, 4)):
    """A minimal single-file NIfTI-1 (int16, qform only, origin (10, -20, 30)) in either byte order."""
    header = bytearray(352)
    struct.pack_into(endian + "i", header, 0, 348)
    struct.pack_into(endian + "8h", header, 40, 3, *size, 1, 1, 1, 1)
    struct.pack_into(endian + "2h", header, 70, 4, 16)  # datatype int16, bitpix
    struct.pack_into(endian + "8f", header, 76, 1.0, *pixdim, 0, 0, 0, 0)
    struct.pack_into(endian + "2f", header, 108, 352.0, 1.0)  # vox_offset, scl_slope
    struct.pack_into(endian + "2h", header, 252, 1, 0)  # qform_code, sform_code
    struct.pack_into(endian + "6f", header, 256, 0, 0, 0, 10, -20, 30)  # quatern_b/c/d, qoffset_x/y/z
    header[344:348] = b"n+1\0"
    voxels = np.arange(np.prod(size), dtype=np.dtype("int16").newbyteorder(endian))
    path.write_bytes(bytes(header) + voxels.tobytes())


@pytest.mark.parametrize("endian", ["<", ">"], ids=["little-endian", "big-endian"])
def test_nifti_header_read_in_either_byte_order(tmp_path, endian):
    _handmade_nifti1(tmp_path / "ok.nii", endian, (0.5, 0.75, 2.0))
    np.testing.assert_allclose(read_image(tmp_path / "ok.nii").GetSpacing(), (0.5, 0.75, 2.0))
    _handmade_nifti1(tmp_path / "zero.nii", endian, (0.5, 0.0, 2.0))
    with pytest.raises(InputError, match="zero.nii: voxel spacing"):
        read_image(tmp_path / "zero.nii")
    _handmade_nifti1(tmp_path / "short.nii", endian, (0.5, 0.75, 2.0))
    _cut(tmp_path / "short.nii", 0.9)
    with pytest.raises(InputError, match="short.nii: file is truncated"):
        read_image(tmp_path / "short.nii")


def test_nifti2_is_refused_clearly(tmp_path):
    """SimpleITK (2.5) has no NIfTI-2 reader; say so rather than "unable to determine ImageIO reader"."""
    header = bytearray(544)
    struct.pack_into("<i8s2h8q", header, 0, 540, b"n+2\0\r\n\x1a\n", 4, 16, 3, 6, 5, 4, 1, 1, 1, 1)
    struct.pack_into("<8dq", header, 104, 1.0, 1.0, 1.0, 1.0, 0, 0, 0, 0, 544)
    (tmp_path / "ct.nii").write_bytes(bytes(header) + bytes(2 * 6 * 5 * 4))
    with pytest.raises(InputError, match="ct.nii: cannot read image .*NIfTI-2"):
        read_image(tmp_path / "ct.nii")


def _edit_metaimage_header(path, key, value):
    data = path.read_bytes()
    data = re.sub(rb"^" + key.encode() + rb" = [^\n]*", f"{key} = {value}".encode(), data, count=1, flags=re.M)
    path.write_bytes(data)


@pytest.mark.parametrize(
    "key, value, message",
    [
        # SimpleITK reads a negative ElementSpacing as a flipped axis: refused like NIfTI's
        ("ElementSpacing", "-1 1.2 1.5", "voxel spacing -1 x 1.2 x 1.5 mm"),
        ("ElementSpacing", "0 1.2 1.5", "voxel spacing 0 x 1.2 x 1.5 mm"),
        ("ElementSpacing", "nan 1.2 1.5", "voxel spacing nan x 1.2 x 1.5 mm"),
        # SimpleITK hangs (> 10 min) on the voxels of such an image when it is oblique: refused from the header
        ("ElementSpacing", "1 1 1.7976931348623157e308", "outside 1e-06 to 1e\\+06 mm"),
        # SimpleITK reads a NaN origin as 0
        ("Offset", "nan -20 30", r"origin nan x -20 x 30 mm \(Offset\) is not finite"),
        # singular (MetaImage stores the matrix column by column): refused from the header, before the voxels
        ("TransformMatrix", "1 0 0 1 0 0 0 0 1", "direction cosines 1 1 0 0 0 0 0 0 1 are not orthonormal"),
        # scaled axis: SimpleITK accepts it, and every world distance along x would double
        ("TransformMatrix", "2 0 0 0 1 0 0 0 1", "not orthonormal"),
        ("TransformMatrix", "nan 0 0 0 1 0 0 0 1", "ct.mha"),
    ],
)
def test_metaimage_bad_geometry_is_refused(tmp_path, key, value, message):
    path = tmp_path / "ct.mha"
    sitk.WriteImage(make_image(size=(6, 5, 4)), str(path))
    _edit_metaimage_header(path, key, value)
    with pytest.raises(InputError, match=message) as error:
        read_image(path)
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)


@pytest.mark.parametrize("name, compress", [("ct.nii", False), ("ct.nii.gz", True), ("ct.mhd", False),
                                            ("ct.mhd", True), ("ct.mha", True), ("ct.nrrd", False)])
def test_valid_image_reads_with_same_geometry_and_voxels(tmp_path, name, compress):
    """The checks refuse nothing valid: an oblique, flipped image reads back as written."""
    angle = np.radians(20)
    direction = (np.cos(angle), -np.sin(angle), 0, np.sin(angle), np.cos(angle), 0, 0, 0, -1)
    voxels = (np.arange(7 * 8 * 9).reshape(7, 8, 9) % 300).astype(np.int16)  # (k, j, i)
    image = sitk.GetImageFromArray(voxels)
    image.CopyInformation(make_image(size=(9, 8, 7), spacing=(0.6, 0.8, 2.5), direction=direction))
    sitk.WriteImage(image, str(tmp_path / name), useCompression=compress)
    read = read_image(tmp_path / name)
    np.testing.assert_allclose(read.GetSpacing(), (0.6, 0.8, 2.5), atol=1e-6)
    np.testing.assert_allclose(read.GetOrigin(), image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(read.GetDirection(), direction, atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read), voxels)


def _dicom_series(folder, drop=None):
    from AorticRootLandmarksLib.phantom.dicom import write_dicom_series

    image = make_image(size=(8, 6, 12), spacing=(0.7, 0.7, 1.5), origin=(-5.0, 3.0, 100.0), value=42)
    files = write_dicom_series(image, folder, uid_key="gap-test", patient_id="P1")
    if drop is not None:
        files[drop].unlink()
    return folder


def test_dicom_series_with_a_missing_slice_is_refused(tmp_path, capfd):
    # slices 1..12 at z = 100, 101.5, ...; without file 6 (index 5) the 5th gap, after slice 5, is 3.0 mm
    folder = _dicom_series(tmp_path / "series", drop=5)
    with pytest.raises(InputError, match=r"series: slice spacing jumps from 1\.5 to 3\.0 mm after slice 5 of 11"):
        read_image(folder)
    assert "WARNING" not in capfd.readouterr().err  # ITK's own multi-line warning is silenced


def test_dicom_series_with_a_gap_reads_when_accepted(tmp_path, capfd):
    folder = _dicom_series(tmp_path / "series", drop=5)
    image = read_image(folder, accept_slice_gaps=True)
    assert image.GetSize() == (8, 6, 11)
    # SimpleITK spreads the gap: (16.5 mm from first to last slice) / 10 gaps
    assert image.GetSpacing()[2] == pytest.approx(1.65, abs=1e-4)
    assert "WARNING" not in capfd.readouterr().err
    assert sitk.ProcessObject_GetGlobalWarningDisplay()  # restored after the read


def test_dicom_series_without_gap_reads_as_written(tmp_path):
    image = read_image(_dicom_series(tmp_path / "series"))
    assert image.GetSize() == (8, 6, 12)
    np.testing.assert_allclose(image.GetSpacing(), (0.7, 0.7, 1.5), atol=1e-4)
    np.testing.assert_allclose(image.GetOrigin(), (-5.0, 3.0, 100.0), atol=1e-4)
