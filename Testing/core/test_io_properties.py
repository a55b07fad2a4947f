"""io, property-based: whatever a manifest cell or an image header holds, the reader returns exactly what was written
or raises InputError (one line naming the file), never another exception and never a silently changed value.

Each example writes small files into one folder per test (Hypothesis runs many examples per test function, so the
function-scoped ``tmp_path`` would be shared anyway; a module folder says so).
"""

from __future__ import annotations

import csv
import math
import re
import struct

import numpy as np
import pytest
import SimpleITK as sitk
from helpers import make_image

from AorticRootLandmarksLib.constants import DEFAULT_LANDMARKS
from AorticRootLandmarksLib.errors import InputError
from AorticRootLandmarksLib.image_checks import SPACING_RANGE_MM
from AorticRootLandmarksLib.io import Case, read_image, read_manifest, write_manifest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

FAST = settings(
    max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
COLUMNS = [f"{name}_{axis}" for name in DEFAULT_LANDMARKS for axis in "xyz"]
SPECIAL = [0.0, -0.0, -1.0, math.nan, math.inf, -math.inf, 5e-324, 1e-300, 1e300, 1.7976931348623157e308]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("properties")


# --- manifests ---

cells = st.one_of(
    st.floats().map(repr),  # nan, inf, -0.0, 5e-324, 1e+308, ...
    st.floats(allow_nan=False, allow_infinity=False).map(lambda v: f"{v:.4f}"),
    st.integers().map(str),
    st.text(max_size=12),  # any unicode: NUL, BOM, quotes, commas, line breaks, digits of other scripts
    st.sampled_from(["", " ", "nan", "NaN", "-inf", "Infinity", "1e309", "\ufeff1.5", "1,5", "0x10", "1_000", " 7 "]),
)


@FAST
@given(
    coordinates=st.lists(cells, min_size=9, max_size=9),
    image=st.one_of(st.just("ct.nii.gz"), st.text(max_size=12)),
    quality=st.text(max_size=6),
    bom=st.booleans(),
)
def test_manifest_cells_read_as_written_or_refused(folder, coordinates, image, quality, bom):
    path = folder / "manifest.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        if bom:
            handle.write("\ufeff")
        writer = csv.writer(handle)
        writer.writerow(["image", *COLUMNS, "quality"])
        writer.writerow([image, *coordinates, quality])
    try:
        cases = read_manifest(path, check_images=False)
    except InputError as error:
        assert str(error).startswith(f"{path}")
        return
    # read: then every cell was a finite number, and the coordinates are those numbers, in column order
    expected = [float(cell) for cell in coordinates]
    assert all(math.isfinite(v) for v in expected)
    assert len(cases) == 1 and image.strip()
    np.testing.assert_array_equal(cases[0].landmarks_lps, np.reshape(expected, (3, 3)))
    assert cases[0].quality == (quality.strip() or None)


@FAST
@given(
    values=st.lists(st.one_of(st.floats(), st.sampled_from(SPECIAL)), min_size=9, max_size=9),
    quality=st.text(max_size=6),
)
def test_manifest_round_trip(folder, values, quality):
    """write_manifest writes 4 decimals; read_manifest returns exactly those numbers, or either refuses a NaN/inf."""
    points = np.reshape(values, (3, 3))
    path = folder / "round_trip.csv"
    try:
        write_manifest(path, [Case("ct", folder / "ct.nii.gz", points, quality)])
    except InputError:
        assert not np.all(np.isfinite(points))
        return
    (case,) = read_manifest(path, check_images=False)
    np.testing.assert_array_equal(case.landmarks_lps, [[float(f"{v:.4f}") for v in row] for row in points])
    assert np.all(np.abs(case.landmarks_lps - points) <= 5e-5 + 1e-15 * np.abs(points))
    assert case.image == (folder / "ct.nii.gz").resolve() and case.quality == (quality.strip() or None)


# --- image headers ---

spacings = st.one_of(st.floats(), st.sampled_from(SPECIAL), st.floats(min_value=0.01, max_value=100.0))


def _plausible(spacing) -> bool:
    """Positive, finite and within SPACING_RANGE_MM (beyond it SimpleITK hangs on some oblique images): must be read."""
    return all(math.isfinite(s) and SPACING_RANGE_MM[0] <= s <= SPACING_RANGE_MM[1] for s in spacing)


@pytest.fixture(scope="module")
def nifti_bytes(folder):
    """A valid 6x5x4 NIfTI-1 with its sform switched off, so that SimpleITK takes spacing from pixdim alone."""
    sitk.WriteImage(make_image(size=(6, 5, 4), spacing=(1.0, 1.0, 1.0)), str(folder / "base.nii"))
    data = bytearray((folder / "base.nii").read_bytes())
    struct.pack_into("<h", data, 254, 0)  # sform_code = 0
    return bytes(data)


@FAST
@given(spacing=st.tuples(*[st.one_of(st.floats(width=32), st.sampled_from(SPECIAL[:4] + [1e-30, 1e30, 1e-45]))] * 3))
def test_nifti_spacing_read_as_written_or_refused(folder, nifti_bytes, spacing):
    path = folder / "ct.nii"
    data = bytearray(nifti_bytes)
    struct.pack_into("<3f", data, 80, *spacing)  # pixdim[1..3], float32
    path.write_bytes(bytes(data))
    written = np.array(spacing, dtype=np.float32).astype(float)
    try:
        image = read_image(path)
    except InputError as error:
        assert str(error).startswith(f"{path}: ") and "\n" not in str(error)
        assert not _plausible(written), f"a valid spacing {written} was refused: {error}"
        return
    assert np.all(np.isfinite(written) & (written > 0))
    np.testing.assert_array_equal(image.GetSpacing(), written)


def _rotation(angles) -> list[float]:
    a, b, c = angles
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rx = np.array([[1, 0, 0], [0, math.cos(c), -math.sin(c)], [0, math.sin(c), math.cos(c)]])
    return (rz @ ry @ rx).ravel().tolist()


directions = st.one_of(
    st.lists(st.one_of(st.floats(), st.sampled_from(SPECIAL)), min_size=9, max_size=9),  # mostly not a rotation
    st.tuples(*[st.floats(-math.pi, math.pi)] * 3).map(_rotation),  # rotations, kept
    st.permutations(range(3)).flatmap(  # axis permutations with flips, kept
        lambda order: st.tuples(*[st.sampled_from([-1.0, 1.0])] * 3).map(
            lambda signs: np.diag(signs)[list(order)].ravel().tolist()
        )
    ),
)


@pytest.fixture(scope="module")
def metaimage_bytes(folder):
    sitk.WriteImage(make_image(size=(6, 5, 4)), str(folder / "base.mha"))
    return (folder / "base.mha").read_bytes()


@FAST
@given(
    spacing=st.tuples(spacings, spacings, spacings),
    direction=directions,
    origin=st.tuples(*[st.one_of(st.floats(-1e4, 1e4), st.floats(), st.sampled_from(SPECIAL))] * 3),
)
def test_metaimage_geometry_read_as_written_or_refused(folder, metaimage_bytes, spacing, direction, origin):
    path = folder / "ct.mha"
    data = re.sub(rb"ElementSpacing = [^\n]*", " ".join(["ElementSpacing ="] + [repr(v) for v in spacing]).encode(),
                  metaimage_bytes)
    data = re.sub(rb"Offset = [^\n]*", " ".join(["Offset ="] + [repr(v) for v in origin]).encode(), data)
    matrix = np.reshape(direction, (3, 3))
    # MetaImage stores the direction matrix column by column (SimpleITK writes the transpose of GetDirection())
    stored = " ".join(["TransformMatrix ="] + [repr(float(v)) for v in matrix.T.ravel()])
    path.write_bytes(re.sub(rb"TransformMatrix = [^\n]*", stored.encode(), data))
    with np.errstate(over="ignore", invalid="ignore"):
        rotation = bool(np.all(np.isfinite(matrix)) and np.allclose(matrix.T @ matrix, np.eye(3), atol=1e-9))
    try:
        image = read_image(path)
    except InputError as error:
        assert str(error).startswith(f"{path}: ") and "\n" not in str(error)
        assert not (_plausible(spacing) and rotation and all(map(math.isfinite, origin))), f"refused: {error}"
        return
    assert _plausible(spacing)
    np.testing.assert_array_equal(image.GetSpacing(), spacing)  # never changed: no flip folded in, no default 1 mm
    # never a NaN read as 0 (a subnormal 2e-313 mm read as 0 is the same place)
    np.testing.assert_allclose(image.GetOrigin(), origin, rtol=1e-15, atol=1e-300)
    np.testing.assert_allclose(image.GetDirection(), direction, rtol=0, atol=1e-12)
