"""phantom: geometry truth, tissue HU, hinge points on the lumen boundary, determinism, DICOM and dataset output."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import SimpleITK as sitk

from AorticRootLandmarksLib.phantom import generate_case, save_preview, write_dataset
from AorticRootLandmarksLib.phantom.anatomy import build_anatomy
from AorticRootLandmarksLib.phantom.params import GRADE_PROBS, GRADES, sample_params
from AorticRootLandmarksLib.phantom.render import Ellipsoid, Grid, Layer, form_image, render_region
from AorticRootLandmarksLib.phantom.root import ramanujan_perimeter, root_from_params

CLEAN = {"noise_std": 0.0, "white_frac": 0.4, "corr_mm": 1.0, "blur_mm": 0.5}


def first_index(predicate, size="small", limit=200):
    """First case index whose sampled parameters satisfy ``predicate`` (parameters are cheap to sample)."""
    return next(i for i in range(limit) if predicate(sample_params(0, i, size)))


def clean_case(index, size="small", flip=None):
    """(image, anatomy) rendered without noise or artefacts, optionally with forced axis flips."""
    params = sample_params(0, index, size)
    params["imaging"] = dict(CLEAN)
    if flip is not None:
        params["grid"]["flip"] = list(flip)
    anat = build_anatomy(params)
    hu = form_image(
        anat.items,
        anat.out_grid,
        anat.root_grid,
        anat.heart_box,
        anat.imaging,
        np.random.default_rng(0),
        anat.coarse_spacing,
        anat.fine_from,
    )
    return anat.out_grid.image(hu), anat


def sample(image, points_lps):
    """Trilinear HU at world LPS points (N, 3) of a SimpleITK image (any direction)."""
    arr = sitk.GetArrayViewFromImage(image).astype(float)
    out = []
    for p in np.atleast_2d(points_lps):
        i = np.array(image.TransformPhysicalPointToContinuousIndex([float(v) for v in p]))
        i0 = np.floor(i).astype(int)
        f = i - i0
        v = 0.0
        for corner in np.ndindex(2, 2, 2):
            w = np.prod([f[a] if c else 1 - f[a] for a, c in enumerate(corner)])
            ii = i0 + corner
            v += w * arr[ii[2], ii[1], ii[0]]
        out.append(v)
    return np.array(out)


@pytest.fixture(scope="module")
def small_case():
    return generate_case(3, seed=0, size="small")


@pytest.fixture(scope="module")
def clean_flipped():
    """A clean case with x and z flipped (left-handed direction) and the same case unflipped."""
    return clean_case(5, flip=[True, False, True]), clean_case(5, flip=[False, False, False])


@pytest.fixture(scope="module")
def clean_cases(clean_flipped):
    """(image, anatomy, HU table) of clean cases: case 5 flipped and not, an open and a closed valve."""
    is_open = [sample_params(0, i, "small")["root"]["valve_open"] for i in range(6, 40)]
    more = [6 + is_open.index(True), 6 + is_open.index(False)]
    cases = [(*c, sample_params(0, 5, "small")["hu"]) for c in clean_flipped]
    return cases + [(*clean_case(i, flip=[False, True, False]), sample_params(0, i, "small")["hu"]) for i in more]


# ------------------------------------------------------------------------------------------------ parameters


def test_parameter_distributions_match_the_specification():
    params = [sample_params(7, i, "small") for i in range(400)]
    grades = [p["quality"] for p in params]
    for grade, prob in zip(GRADES, GRADE_PROBS):
        # Binomial(400, p): 4.5 standard deviations around the expected count.
        assert abs(grades.count(grade) - 400 * prob) <= 4.5 * math.sqrt(400 * prob * (1 - prob)) + 1, grade
    noise = {g: np.mean([p["imaging"]["noise_std"] for p in params if p["quality"] == g]) for g in ("2", "3-", "3+")}
    assert noise["2"] > noise["3-"] > noise["3+"]  # better grade, less noise
    flipped = np.mean([any(p["grid"]["flip"]) for p in params])
    assert 0.08 < flipped < 0.22  # ~15 %
    for p in params[:100]:
        root = root_from_params(p["root"], np.zeros(3))
        n = root.normal
        tilt = math.degrees(math.acos(n[2]))
        assert 30 <= tilt <= 65 and n[0] < 0 and n[1] < 0  # superior, to the patient's right and anterior
        a, b = root.semi_major, root.semi_minor
        assert 60 - 1e-6 <= ramanujan_perimeter(a, b) <= 95 + 1e-6 and 0.75 - 1e-9 <= b / a <= 1.0
        gaps = np.degrees(np.diff(np.r_[root.nadir_angles, root.nadir_angles[0] + 2 * np.pi]))
        assert np.all((gaps > 95) & (gaps < 145))  # ~120 deg apart with +-10 deg jitter each
        json.dumps(p)


def test_ramanujan_perimeter_known_values():
    assert ramanujan_perimeter(10.0, 10.0) == pytest.approx(2 * math.pi * 10.0, rel=1e-12)  # circle
    # Ellipse a=2, b=1: complete elliptic integral value 9.688448220547675 (tables).
    assert ramanujan_perimeter(2.0, 1.0) == pytest.approx(9.688448220547675, rel=1e-8)


# ------------------------------------------------------------------------------------------------ geometry truth


def test_landmarks_are_the_drawn_hinge_points_and_roundtrip_through_the_image(small_case):
    truth = small_case.truth
    root = root_from_params(truth["params"]["root"], np.array(truth["annulus"]["center_lps"]))
    np.testing.assert_allclose(small_case.landmarks_lps, root.hinge_points(), atol=0.01)
    for p in small_case.landmarks_lps:
        idx = small_case.image.TransformPhysicalPointToContinuousIndex(p.tolist())
        assert all(0 <= v <= s - 1 for v, s in zip(idx, small_case.image.GetSize()))
        np.testing.assert_allclose(small_case.image.TransformContinuousIndexToPhysicalPoint(idx), p, atol=0.01)
    centre = small_case.image.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in small_case.image.GetSize()])
    assert np.linalg.norm(np.array(centre) - truth["annulus"]["center_lps"]) <= 15.0  # detector crops at the centre


def test_flipped_grid_draws_structures_at_their_world_position():
    """A blob rendered through the whole pipeline onto a grid with flipped x and z stays where it was drawn."""
    p = np.array([12.3, -40.7, 101.9])
    D = np.diag([-1.0, 1.0, -1.0])
    spacing, size = np.array([1.3, 1.1, 1.5]), np.array([40, 40, 30])
    out = Grid(p + [2.0, -3.0, 1.0] - D @ (spacing * (size - 1) / 2), spacing, tuple(size), D)
    root_grid = Grid(p - 15.0, np.full(3, 0.7), (43, 43, 43), np.eye(3))
    items = [Layer(Ellipsoid(p, np.eye(3), np.full(3, 5.0)), 1000.0)]
    hu = form_image(items, out, root_grid, (p - 20, p + 20), CLEAN, np.random.default_rng(0), 1.3) + 1000.0
    image = out.image(hu)
    arr = sitk.GetArrayFromImage(image)
    k, j, i = np.meshgrid(*[np.arange(n) for n in arr.shape], indexing="ij")
    w = arr / arr.sum()
    centroid_index = [(w * i).sum(), (w * j).sum(), (w * k).sum()]
    # A symmetric blob's centroid is its centre (resampling error well below a voxel).
    np.testing.assert_allclose(image.TransformContinuousIndexToPhysicalPoint(centroid_index), p, atol=0.05)


def test_truth_perimeter_and_area_match_the_drawn_annulus(small_case):
    truth = small_case.truth
    root = root_from_params(truth["params"]["root"], np.array(truth["annulus"]["center_lps"]))
    psi = np.linspace(0, 2 * np.pi, 20000, endpoint=False).astype(np.float32)
    r = root.lumen_radius(psi, np.zeros_like(psi)).astype(float)  # the lumen boundary at the ring level
    xy = np.stack([r * np.cos(psi), r * np.sin(psi)], 1)
    perimeter = np.linalg.norm(np.roll(xy, -1, 0) - xy, axis=1).sum()
    area = 0.5 * abs(np.sum(xy[:, 0] * np.roll(xy[:, 1], -1) - np.roll(xy[:, 0], -1) * xy[:, 1]))
    a = truth["annulus"]
    assert perimeter == pytest.approx(a["perimeter_mm"], rel=1e-4)
    assert area == pytest.approx(a["area_mm2"], rel=1e-4)
    assert 2 * r.min() == pytest.approx(a["min_diameter_mm"], rel=1e-4)
    assert 2 * r.max() == pytest.approx(a["max_diameter_mm"], rel=1e-4)


def test_annulus_area_measured_in_an_oblique_resample(clean_flipped):
    (image, anat), _ = clean_flipped
    root = anat.root
    e1, e2, n = root.frame.T
    pixel, half = 0.2, root.semi_major + 3.0
    ref = sitk.Image(int(2 * half / pixel) + 1, int(2 * half / pixel) + 1, 1, sitk.sitkFloat32)
    ref.SetSpacing((pixel, pixel, 1.0))
    ref.SetDirection(np.stack([e1, e2, n], 1).ravel().tolist())
    ref.SetOrigin((root.center - half * e1 - half * e2 - 1.0 * n).tolist())  # 1 mm below the ring: outflow tract
    plane = sitk.GetArrayFromImage(sitk.Resample(image, ref, sitk.Transform(), sitk.sitkLinear, -1000.0))[0]
    p = sample_params(0, 5, "small")["hu"]
    lumen = plane > (p["blood"] + p["myocardium"]) / 2
    yy, xx = np.mgrid[: lumen.shape[0], : lumen.shape[1]] * pixel - half
    lumen &= xx**2 + yy**2 < half**2
    truth_area = math.pi * root.semi_major * root.semi_minor
    assert lumen.sum() * pixel**2 == pytest.approx(truth_area, rel=0.1)


def test_normal_points_from_ventricle_into_the_aorta(small_case):
    t = small_case.truth
    rcc, lcc, ncc = small_case.landmarks_lps
    normal = np.cross(lcc - rcc, ncc - rcc)
    normal /= np.linalg.norm(normal)
    np.testing.assert_allclose(normal, t["annulus"]["normal_lps"], atol=1e-6)
    centre = np.array(t["annulus"]["center_lps"])
    for ostium in t["ostia"].values():  # coronary ostia arise from the sinuses, above the ring
        assert 5.0 < (np.array(ostium) - centre) @ normal < 25.0


def test_sinus_lumen_above_the_ring_and_muscle_below(clean_cases):
    """At each cusp the lumen bulges outwards above the ring (sinus) where muscle surrounds the outflow tract below."""
    for image, anat, hu in clean_cases:
        root = anat.root
        for k, psi in enumerate(root.nadir_angles):
            re = float(root.ellipse_radius(np.float32(psi)))
            h = 0.35 * root.stj_height
            bulge = float(root.radii(np.float32(psi), np.float32(h))[2])
            band = [(r, psi + d) for r in np.linspace(re + 0.5, re + 0.9 * bulge, 4) for d in np.radians([-10, 0, 10])]
            above = np.mean([sample(image, root.world(r, a, h)) for r, a in band])
            below = np.mean([sample(image, root.world(r, a, -4.0)) for r, a in band])
            # Sinus blood (partly leaflet) versus myocardium: at least 30 % of the blood-muscle contrast apart.
            assert above > below + 0.3 * (hu["blood"] - hu["myocardium"]), (k, above, below)
        # Straight along the axis: contrast beyond the sinotubular junction (the aorta).
        above_axis = sample(image, root.center + root.normal * (root.stj_height + 8))
        assert above_axis[0] > hu["blood"] - 60


def test_hinge_points_sit_on_the_lumen_boundary_at_the_base_of_the_sinuses(small_case):
    t = small_case.truth
    root = root_from_params(t["params"]["root"], np.array(t["annulus"]["center_lps"]))
    for k, p in enumerate(small_case.landmarks_lps):
        d = root.distances(*[np.float32(v) for v in p])
        assert abs(float(d["lumen"])) < 0.01  # on the lumen boundary
        assert float(d["leaflets"]) <= 0.05  # the leaflet attaches here
        psi = np.float32(root.nadir_angles[k])
        bulge = [float(root.radii(psi, np.float32(h))[2]) for h in (-1.0, 0.0, 1.0, 3.0)]
        assert bulge[0] == bulge[1] == 0.0 and bulge[2] > 0.4 * root.sinus_depth[k] and bulge[3] > bulge[2]
        # The nadir is the lowest point of the crown-shaped attachment line.
        t_grid = np.linspace(-1, 1, 201).astype(np.float32)
        assert float(root.attachment_height(np.float32(0))) == 0.0
        assert np.all(root.attachment_height(t_grid) >= 0)
        k_of, t_of = root.sinus_coords(psi)
        assert int(k_of) == k and abs(float(t_of)) < 1e-5


def test_hinge_image_pattern_contrast_above_inside_tissue_below_outside(clean_cases):
    """Contrast just above each hinge point (the leaflet hinges there, open or closed), tissue below and outside."""
    for image, anat, hu in clean_cases:
        root = anat.root
        for psi in root.nadir_angles:
            re = float(root.ellipse_radius(np.float32(psi)))
            up = max(
                sample(image, root.world(re + dr, psi, h))[0] for h in (2.0, 3.0, 4.0) for dr in (-3, -1.5, 0, 1.5)
            )
            down = min(sample(image, root.world(re + dr, psi, h))[0] for h in (-3.0, -4.0, -5.0) for dr in (3, 4))
            assert up > hu["blood"] - 60 and down < hu["myocardium"] + 60, (psi, up, down)


# ------------------------------------------------------------------------------------------------ HU


def test_tissue_hu_ranges_in_the_drawn_anatomy():
    params = sample_params(0, 11, "small")
    anat = build_anatomy(params)
    b = params["body"]
    O = np.array(b["offset_mm"])
    grid = Grid(O - [200, 150, 30], np.full(3, 3.0), (135, 101, 41))  # noise-free, the whole chest
    hu = grid.image(render_region(anat.items, grid))
    cav_x = b["semi_x"] - b["fat_mm"] - b["muscle_mm"]
    lung = sample(hu, O + [0.8 * cav_x, 0.0, 60.0])[0]
    assert lung < -600
    fat = sample(hu, O + [0.0, -b["semi_y"] + b["fat_mm"] / 2, 0.0])[0]
    assert -130 < fat < -60
    muscle = sample(hu, O + [b["semi_x"] - b["fat_mm"] - b["muscle_mm"] / 2, 0.0, 0.0])[0]
    assert 20 < muscle < 70
    root = anat.root
    blood = sample(hu, root.center + root.normal * root.stj_height / 2)[0]
    assert 250 <= blood <= 550
    air = sample(hu, O + [0.0, -b["semi_y"] - 20.0, 0.0])[0]
    assert air == -1000.0
    p = params["hu"]
    assert 300 <= p["cortical"] <= 750 and p["cancellous"] >= 150 and 80 <= p["myocardium"] <= 130
    assert all(600 <= c["hu"] <= 2000 for c in params["calcs"])


def test_image_hu_and_noise(small_case):
    t = small_case.truth
    root = root_from_params(t["params"]["root"], np.array(t["annulus"]["center_lps"]))
    e1, e2, n = root.frame.T
    offsets = np.array([[a, b, c] for a in (-2, 0, 2) for b in (-2, 0, 2) for c in (-2, 0, 2)], float)
    lumen = sample(small_case.image, root.center + n * (root.stj_height + 8) + offsets @ np.stack([e1, e2, n]))
    noise = t["params"]["imaging"]["noise_std"]
    assert 10 <= noise <= 60
    assert 250 - 3 * noise <= lumen.mean() <= 550 + 3 * noise
    assert sitk.GetArrayViewFromImage(small_case.image).dtype == np.int16


# ------------------------------------------------------------------------------------------------ determinism


def test_case_depends_only_on_seed_and_index(small_case):
    for i in (0, 1, 2):
        generate_case(i, seed=0, size="small")  # a batch before it changes nothing
    again = generate_case(3, seed=0, size="small")
    assert np.array_equal(sitk.GetArrayViewFromImage(again.image), sitk.GetArrayViewFromImage(small_case.image))
    assert again.truth == small_case.truth and again.image.GetOrigin() == small_case.image.GetOrigin()
    other = generate_case(3, seed=1, size="small")
    assert not np.allclose(other.landmarks_lps, small_case.landmarks_lps)


# ------------------------------------------------------------------------------------------------ output


def test_dicom_series_reads_back_with_simpleitk_and_pydicom(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from AorticRootLandmarksLib.phantom.dicom import write_dicom_series

    index = first_index(lambda p: sum(p["grid"]["flip"]) % 2 == 1)  # left-handed: slice order reverses in DICOM
    case = generate_case(index, seed=0, size="small")
    image = case.image
    files = write_dicom_series(image, tmp_path / "dcm", uid_key="test/0", patient_id=case.case_id)
    assert len(files) == image.GetSize()[2]
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path / "dcm")))
    back = reader.Execute()
    a, b = sitk.DICOMOrient(back, "LPS"), sitk.DICOMOrient(image, "LPS")
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)
    assert np.array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))
    for p in case.landmarks_lps:  # the same world point indexes the same voxel value in both
        ia = back.TransformPhysicalPointToIndex(p.tolist())
        ib = image.TransformPhysicalPointToIndex(p.tolist())
        assert back[ia] == image[ib]

    arr = sitk.GetArrayViewFromImage(image)
    d = np.array(image.GetDirection()).reshape(3, 3)
    uids = set()
    for k in (0, len(files) - 1):
        ds = pydicom.dcmread(files[k])
        assert ds.Modality == "CT" and int(ds.InstanceNumber) == k + 1
        np.testing.assert_allclose(
            [float(v) for v in ds.ImagePositionPatient], image.TransformIndexToPhysicalPoint((0, 0, k)), atol=1e-4
        )
        np.testing.assert_allclose([float(v) for v in ds.ImageOrientationPatient], [*d[:, 0], *d[:, 1]], atol=1e-6)
        np.testing.assert_allclose([float(v) for v in ds.PixelSpacing], image.GetSpacing()[1::-1], atol=1e-5)
        assert float(ds.SliceThickness) == pytest.approx(image.GetSpacing()[2], abs=1e-5)
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        assert np.array_equal(hu, arr[k])
        uids.add((ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID))
    assert len(uids) == 1


def test_dicom_right_handed_geometry_is_kept_exactly(tmp_path):
    from AorticRootLandmarksLib.phantom.dicom import write_dicom_series

    image, _ = clean_case(2, flip=[True, True, False])
    image = sitk.Cast(image, sitk.sitkInt16)
    write_dicom_series(image, tmp_path, uid_key="test/1", patient_id="p")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path)))
    back = reader.Execute()
    np.testing.assert_allclose(back.GetOrigin(), image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(back.GetDirection(), image.GetDirection(), atol=1e-6)
    assert np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(image))


def test_write_dataset_nifti_and_dicom_read_back(tmp_path, small_case):
    io = pytest.importorskip("AorticRootLandmarksLib.io")
    for fmt in ("nifti", "dicom"):
        out = tmp_path / fmt
        manifest = write_dataset(out, 4, seed=0, fmt=fmt, size="small", preview=(fmt == "nifti"), progress=False)
        assert manifest == out / "manifest.csv"
        cases = io.read_manifest(manifest)
        assert [c.case_id for c in cases] == [f"phantom_{i:04d}" for i in range(4)]
        truth = json.loads((out / "truth.json").read_text(encoding="utf-8"))
        c3 = cases[3]
        np.testing.assert_allclose(c3.landmarks_lps, small_case.landmarks_lps, atol=1e-4)
        assert c3.quality == small_case.quality == truth["phantom_0003"]["quality"]
        labels, points = io.read_markups(out / "markups" / "phantom_0003.mrk.json")
        assert labels == ["RCC", "LCC", "NCC"]
        np.testing.assert_allclose(points, small_case.landmarks_lps, atol=1e-6)
        image = io.read_image(c3.image)
        a, b = sitk.DICOMOrient(image, "LPS"), sitk.DICOMOrient(small_case.image, "LPS")
        np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-4)
        assert np.array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))
        assert (out / "previews" / "phantom_0000.png").is_file() == (fmt == "nifti")


def test_write_dataset_refuses_bad_input_and_leaves_no_partial_output(tmp_path, monkeypatch):
    pytest.importorskip("AorticRootLandmarksLib.io")
    import AorticRootLandmarksLib.phantom as phantom
    from AorticRootLandmarksLib.errors import InputError

    with pytest.raises(InputError, match="format"):
        write_dataset(tmp_path / "a", 1, fmt="png", size="small", progress=False)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep.txt").write_text("x", encoding="utf-8")
    with pytest.raises(InputError, match="not empty"):
        write_dataset(tmp_path / "b", 1, size="small", progress=False)

    def broken(index, seed=0, size="full"):
        if index == 1:
            raise RuntimeError("disk full")
        return generate_case(index, seed, size)

    monkeypatch.setattr(phantom, "generate_case", broken)
    with pytest.raises(RuntimeError):
        write_dataset(tmp_path / "c", 2, size="small", progress=False)
    assert not (tmp_path / "c").exists() and not list(tmp_path.glob(".c.*"))


def test_preview_png(tmp_path, small_case):
    pytest.importorskip("matplotlib")
    save_preview(small_case, tmp_path / "p" / "case.png")
    data = (tmp_path / "p" / "case.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


@pytest.mark.slow
def test_full_size_case():
    case = generate_case(0, seed=0, size="full")
    nx, ny, nz = case.image.GetSize()
    sx, sy, sz = case.image.GetSpacing()
    assert nx == ny == 512 and 200 <= nz <= 320 and 0.3 <= sx == sy <= 0.8 and 0.5 <= sz <= 1.25
    t = case.truth
    root = root_from_params(t["params"]["root"], np.array(t["annulus"]["center_lps"]))
    hu, noise = t["params"]["hu"], t["params"]["imaging"]["noise_std"]
    jitter = np.random.default_rng(0).normal(0, 0.4, (9, 3))  # average a few samples against the noise

    def mean_at(r, psi, h):
        return sample(case.image, root.world(r, psi, h) + jitter).mean()

    for psi in root.nadir_angles:
        re = float(root.ellipse_radius(np.float32(psi)))
        up = max(mean_at(re + dr, psi, h) for h in (2.0, 3.0, 4.0) for dr in (-3, -1.5, 0, 1.5))
        down = min(mean_at(re + dr, psi, h) for h in (-3.0, -4.0, -5.0) for dr in (3, 4))
        assert up > hu["blood"] - 60 - noise / 2 and down < hu["myocardium"] + 60 + noise / 2
