"""io: reading images and DICOM folders, manifests, Slicer markups, atomic output folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from helpers import make_image

from AorticRootLandmarksLib.errors import InputError
from AorticRootLandmarksLib.io import (
    Case,
    atomic_output_dir,
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
    for a, b in zip(read, cases):
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


def test_atomic_output_dir(tmp_path):
    out = tmp_path / "out"
    with atomic_output_dir(out) as tmp:
        (tmp / "a.txt").write_text("1", encoding="utf-8")
        assert not out.exists()  # nothing visible until the block succeeds
    assert (out / "a.txt").read_text(encoding="utf-8") == "1"
    with pytest.raises(InputError, match="--force"):
        with atomic_output_dir(out):
            pass
    with pytest.raises(RuntimeError):
        with atomic_output_dir(out, force=True) as tmp:
            (tmp / "b.txt").write_text("2", encoding="utf-8")
            raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no partial folder left
    assert (out / "a.txt").exists() and not (out / "b.txt").exists()  # old output kept on failure
    with atomic_output_dir(out, force=True) as tmp:
        (tmp / "c.txt").write_text("3", encoding="utf-8")
    assert sorted(p.name for p in out.iterdir()) == ["c.txt"]
