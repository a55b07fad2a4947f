"""phantom: geometry truth, tissue HU, hinge points on the lumen boundary, determinism, DICOM and dataset output,
styles (ranges, held-out disjointness, classic unchanged, docs table)."""

from __future__ import annotations

import csv
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import AorticRootLandmarksLib.phantom.params as phantom_params
import AorticRootLandmarksLib.phantom.style_params as style_params
from AorticRootLandmarksLib.grid import VoxelGrid
from AorticRootLandmarksLib.phantom import PHANTOM_VERSION, case_from_params, generate_case, save_preview, write_dataset
from AorticRootLandmarksLib.phantom.anatomy import build_anatomy
from AorticRootLandmarksLib.phantom.paint import Layer, render_region
from AorticRootLandmarksLib.phantom.params import GRADE_PROBS, GRADES, PARTS, case_streams, part_rng, sample_params
from AorticRootLandmarksLib.phantom.root import ramanujan_perimeter, root_from_params
from AorticRootLandmarksLib.phantom.scanner import form_image
from AorticRootLandmarksLib.phantom.shapes import Capsule, Ellipsoid, Tube
from AorticRootLandmarksLib.phantom.style_params import direction_matrix
from AorticRootLandmarksLib.phantom.styles import (
    HELDOUT,
    STYLES,
    VALIDATION,
    VALIDATION_OUT_OF_RANGE,
    contains,
    disjoint_dimensions,
    intervals,
    styles_markdown,
)

CLEAN = {"noise_std": 0.0, "white_frac": 0.4, "corr_mm": 1.0, "blur_mm": 0.5}


def first_index(predicate, size="small", limit=200, style="classic"):
    """First case index whose sampled parameters satisfy ``predicate`` (parameters are cheap to sample)."""
    return next(i for i in range(limit) if predicate(sample_params(0, i, size, style)))


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
        case_streams(0, index),
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
    for grade, prob in zip(GRADES, GRADE_PROBS, strict=True):
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


#: sample_params' part -> (its sampler in params.py, its key in the params dict).
PART_SAMPLERS = {
    "quality": ("sample_quality", "quality"),
    "root": ("sample_root", "root"),
    "body": ("sample_body", "body"),
    "heart": ("sample_heart", "heart"),
    "hu": ("sample_hu", "hu"),
    "calcium": ("sample_calcium", "calcs"),
    "imaging": ("sample_imaging", "imaging"),
    "grid": ("sample_grid", "grid"),
}
#: Parts whose values legitimately follow another part's outcome (passed as an argument, not through a stream).
DEPENDENTS = {"quality": {"hu", "calcs", "imaging"}, "calcium": {"imaging"}}


def _with_an_extra_draw(monkeypatch, part):
    """Patch ``part``'s sampler to draw one more random number first; returns the key of its params entry."""
    name, key = PART_SAMPLERS[part]
    original = getattr(phantom_params, name)

    def sampler(rng, *args, **kwargs):
        rng.random()
        return original(rng, *args, **kwargs)

    monkeypatch.setattr(phantom_params, name, sampler)
    return key


def _changed_keys(part, monkeypatch, cases=range(8)):
    """Top-level params keys that change for any of ``cases`` when ``part`` draws one more number."""
    before = [sample_params(0, i, "small") for i in cases]
    with monkeypatch.context() as m:
        _with_an_extra_draw(m, part)
        after = [sample_params(0, i, "small") for i in cases]
    return {k for b, a in zip(before, after, strict=True) for k in b if a[k] != b[k]}


@pytest.mark.parametrize("part", list(PART_SAMPLERS))
def test_a_draw_added_to_one_part_changes_no_other_part(monkeypatch, part):
    """Each part draws from its own stream: one more random number in ``part`` changes that part's values (so the
    patch took effect) and none of the others, except those that take its outcome as an argument."""
    changed = _changed_keys(part, monkeypatch)
    key = PART_SAMPLERS[part][1]
    assert key in changed
    assert changed - {key} <= DEPENDENTS.get(part, set()), changed


def test_the_extra_draw_check_fails_with_one_shared_stream(monkeypatch):
    """The test above is not vacuous: with one stream shared by all parts (the old design), a draw added to the root
    shifts every part sampled after it."""

    def shared_streams(seed, index):
        shared = np.random.default_rng([seed, index])
        return lambda part: shared

    monkeypatch.setattr(phantom_params, "case_streams", shared_streams)
    assert {"body", "heart", "hu", "imaging", "grid"} <= _changed_keys("root", monkeypatch)


def test_params_depend_only_on_seed_and_index():
    a, b = sample_params(4, 17, "small"), sample_params(4, 17, "small")
    assert a == b and json.loads(json.dumps(a)) == a  # identical and JSON round-trips exactly
    assert a["phantom_version"] == PHANTOM_VERSION
    for other in (sample_params(4, 18, "small"), sample_params(5, 17, "small")):
        for key in ("root", "body", "heart", "hu", "imaging", "grid"):  # every continuous part differs
            assert other[key] != a[key], key
    # Only the grid depends on the size: the same anatomy at 'small' and 'full'.
    full = sample_params(4, 17, "full")
    assert {k: v for k, v in full.items() if k not in ("grid", "size")} == {
        k: v for k, v in a.items() if k not in ("grid", "size")
    }


def test_part_streams_are_independent_and_registered():
    firsts = {part: part_rng(0, 0, part).random(4).tolist() for part in PARTS}
    assert len({tuple(v) for v in firsts.values()}) == len(PARTS)  # no two parts share a stream
    assert part_rng(0, 0, "root").random(4).tolist() == firsts["root"]  # a fresh generator per call
    assert part_rng(0, 1, "root").random() != firsts["root"][0] and part_rng(1, 0, "root").random() != firsts["root"][0]
    with pytest.raises(ValueError, match="PARTS"):
        part_rng(0, 0, "not a part")


def test_every_random_draw_of_a_case_comes_from_a_part_stream(monkeypatch):
    """Rendering included (lung vessels, contrast swirls, noise): no generator is made outside ``part_rng``, and
    every registered part is used."""
    real_default_rng, real_part_rng = np.random.default_rng, phantom_params.part_rng
    used, inside = [], []

    def guarded_default_rng(*args, **kwargs):
        assert inside, "a random generator made outside params.part_rng"
        return real_default_rng(*args, **kwargs)

    def logged_part_rng(seed, index, part, style="classic"):
        used.append(part)
        inside.append(part)
        try:
            return real_part_rng(seed, index, part, style)
        finally:
            inside.pop()

    monkeypatch.setattr(np.random, "default_rng", guarded_default_rng)
    monkeypatch.setattr(phantom_params, "part_rng", logged_part_rng)
    generate_case(2, seed=0, size="small")
    assert set(used) == set(PARTS)


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
        assert all(0 <= v <= s - 1 for v, s in zip(idx, small_case.image.GetSize(), strict=True))
        np.testing.assert_allclose(small_case.image.TransformContinuousIndexToPhysicalPoint(idx), p, atol=0.01)
    centre = small_case.image.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in small_case.image.GetSize()])
    assert np.linalg.norm(np.array(centre) - truth["annulus"]["center_lps"]) <= 15.0  # detector crops at the centre


def test_flipped_grid_draws_structures_at_their_world_position():
    """A blob rendered through the whole pipeline onto a grid with flipped x and z stays where it was drawn."""
    p = np.array([12.3, -40.7, 101.9])
    D = np.diag([-1.0, 1.0, -1.0])
    spacing, size = np.array([1.3, 1.1, 1.5]), np.array([40, 40, 30])
    out = VoxelGrid(p + [2.0, -3.0, 1.0] - D @ (spacing * (size - 1) / 2), spacing, tuple(size), D)
    root_grid = VoxelGrid(p - 15.0, np.full(3, 0.7), (43, 43, 43), np.eye(3))
    items = [Layer(Ellipsoid(p, np.eye(3), np.full(3, 5.0)), 1000.0)]
    hu = form_image(items, out, root_grid, (p - 20, p + 20), CLEAN, case_streams(0, 0), 1.3) + 1000.0
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


def test_a_tube_paints_as_the_union_of_its_capsules():
    """The painter treats every shape alike: a tube's occupancy is the maximum of its capsules' occupancies."""
    points = np.array([[0.0, 0.0, 0.0], [12.0, 3.0, 1.0], [18.0, 14.0, -4.0]])
    tube = Tube(points, np.array([3.0, 2.0, 2.5]))
    grid = VoxelGrid([-6.0, 21.5, -9.0], [0.9, 1.1, 1.3], (30, 25, 15), np.diag([1.0, -1.0, 1.0]))  # y flipped
    occ = [(render_region([Layer(c, 1000.0)], grid) + 1000.0) / 2000.0 for c in tube.parts()]
    painted = render_region([Layer(tube, 1000.0)], grid)
    np.testing.assert_allclose(painted, -1000.0 + 2000.0 * np.max(occ, axis=0), atol=1e-3)
    assert painted.max() == 1000.0  # fully inside somewhere
    # Its signed distance is the capsules' minimum: inside on the axis, 2 mm outside a segment's surface.
    on_axis = ((points[0] + points[1]) / 2).astype(np.float32)
    d = float(tube.sdf(*on_axis))
    assert d < 0 and d == pytest.approx(min(float(c.sdf(*on_axis)) for c in tube.parts()))
    below = np.float32([0.0, 0.0, -5.0])  # 5 mm below the first point, where the radius is 3 mm
    assert float(tube.sdf(*below)) == pytest.approx(2.0, abs=1e-5)
    capsule = Capsule(points[0], points[1], 3.0, 2.0)
    assert len(capsule.parts()) == 1 and capsule.parts()[0] is capsule  # a simple shape is its own single part


# ------------------------------------------------------------------------------------------------ HU


def test_tissue_hu_ranges_in_the_drawn_anatomy():
    params = sample_params(0, 11, "small")
    anat = build_anatomy(params)
    b = params["body"]
    mid = np.array(b["offset_mm"])
    grid = VoxelGrid(mid - [200, 150, 30], np.full(3, 3.0), (135, 101, 41))  # noise-free, the whole chest
    hu = grid.image(render_region(anat.items, grid))
    cav_x = b["semi_x"] - b["fat_mm"] - b["muscle_mm"]
    lung = sample(hu, mid + [0.8 * cav_x, 0.0, 60.0])[0]
    assert lung < -600
    fat = sample(hu, mid + [0.0, -b["semi_y"] + b["fat_mm"] / 2, 0.0])[0]
    assert -130 < fat < -60
    muscle = sample(hu, mid + [b["semi_x"] - b["fat_mm"] - b["muscle_mm"] / 2, 0.0, 0.0])[0]
    assert 20 < muscle < 70
    root = anat.root
    blood = sample(hu, root.center + root.normal * root.stj_height / 2)[0]
    assert 250 <= blood <= 550
    air = sample(hu, mid + [0.0, -b["semi_y"] - 20.0, 0.0])[0]
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
        assert labels == ["RCC", "LCC", "NCC", "LCO", "RCO"]  # hinge points, then the coronary ostia
        np.testing.assert_allclose(points[:3], small_case.landmarks_lps, atol=1e-6)
        ostia = [truth["phantom_0003"]["ostia"][name] for name in ("LCO", "RCO")]
        np.testing.assert_allclose(points[3:], ostia, atol=1e-6)
        with_ostia = io.read_manifest(manifest, ["RCC", "LCC", "NCC", "LCO", "RCO"])[3]
        np.testing.assert_allclose(with_ostia.landmarks_lps[3:], ostia, atol=1e-4)
        image = io.read_image(c3.image)
        a, b = sitk.DICOMOrient(image, "LPS"), sitk.DICOMOrient(small_case.image, "LPS")
        np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-4)
        assert np.array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))
        assert (out / "previews" / "phantom_0000.png").is_file() == (fmt == "nifti")


def test_truth_json_records_the_phantom_version(tmp_path):
    pytest.importorskip("AorticRootLandmarksLib.io")
    write_dataset(tmp_path / "d", 2, seed=1, size="small", progress=False)
    truth = json.loads((tmp_path / "d" / "truth.json").read_text(encoding="utf-8"))
    assert sorted(truth) == ["phantom_0000", "phantom_0001"]
    for case in truth.values():
        assert case["phantom_version"] == case["params"]["phantom_version"] == PHANTOM_VERSION == "2"


def test_params_of_another_phantom_version_are_refused():
    params = sample_params(0, 0, "small")
    params["phantom_version"] = "1"
    with pytest.raises(ValueError, match="phantom version 1"):
        case_from_params(params)
    del params["phantom_version"]  # written before versions were recorded: version 1
    with pytest.raises(ValueError, match="phantom version 1"):
        case_from_params(params)


def test_write_dataset_refuses_bad_input_and_leaves_no_partial_output(tmp_path, monkeypatch):
    pytest.importorskip("AorticRootLandmarksLib.io")
    import AorticRootLandmarksLib.phantom as phantom
    from AorticRootLandmarksLib.errors import InputError

    with pytest.raises(InputError, match="format"):
        write_dataset(tmp_path / "a", 1, fmt="png", size="small", progress=False)
    with pytest.raises(InputError, match="style"):
        write_dataset(tmp_path / "a", 1, size="small", progress=False, style="cardiac")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep.txt").write_text("x", encoding="utf-8")
    with pytest.raises(InputError, match="not empty"):
        write_dataset(tmp_path / "b", 1, size="small", progress=False)

    def broken(index, seed=0, size="full", style="classic"):
        if index == 1:
            raise RuntimeError("disk full")
        return generate_case(index, seed, size, style)

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


# ------------------------------------------------------------------------------------------------ styles

DOCS = Path(__file__).resolve().parents[2] / "docs" / "PHANTOM.md"
#: sha256[:16] of json.dumps(sample_params(seed, index, size) without "style", sort_keys=True), recorded with the
#: code before styles existed (phantom version 2): the classic style must keep drawing exactly these values.
CLASSIC_HASHES = {
    (0, 0, "small"): "b91eafb145f2cf42",
    (0, 1, "small"): "1f635d9003588e05",
    (0, 2, "small"): "1980cbaf3e322fff",
    (0, 7, "small"): "3f1563c50121569a",
    (3, 5, "full"): "92741a510e864680",
    (1, 11, "full"): "c7c72b0cb4d8bd52",
}
#: Hinge points (RCC, LCC, NCC; world LPS mm) of classic cases 0 and 3 of seed 0, recorded with the same code.
CLASSIC_HINGES = {
    0: [[-14.230377, -16.009589, -194.430161], [-12.803736, -4.508605, -179.454112],
        [-27.666798, -2.476098, -194.01482]],
    3: [[-24.897869, -59.646939, -151.207947], [-28.450717, -45.240714, -139.13222],
        [-39.42388, -46.622787, -159.853025]],
}  # fmt: skip


def _params_hash(params):
    without_style = {k: v for k, v in params.items() if k != "style"}
    return hashlib.sha256(json.dumps(without_style, sort_keys=True).encode()).hexdigest()[:16]


def test_classic_style_is_unchanged():
    for (seed, index, size), expected in CLASSIC_HASHES.items():
        params = sample_params(seed, index, size)
        assert params["style"] == "classic" and params == sample_params(seed, index, size, "classic")
        assert _params_hash(params) == expected, (seed, index, size)
    for index, hinges in CLASSIC_HINGES.items():
        anat = build_anatomy(sample_params(0, index, "small"))
        np.testing.assert_allclose(anat.root.hinge_points(), hinges, atol=1e-5)


def test_style_streams_are_their_own():
    classic = part_rng(0, 0, "root").random(4).tolist()
    assert part_rng(0, 0, "root", "classic").random(4).tolist() == classic
    firsts = {style: part_rng(0, 0, "root", style).random() for style in STYLES}
    assert len(set(firsts.values())) == len(STYLES)  # every style draws from streams of its own
    with pytest.raises(ValueError, match="style"):
        sample_params(0, 0, "small", "cardiac")


#: A style's part -> (its sampler in style_params.py, its key in the params dict).
STYLE_PART_SAMPLERS = {
    "root": ("sample_style_root", "root"),
    "body": ("sample_style_body", "body"),
    "heart": ("sample_style_heart", "heart"),
    "hu": ("sample_style_hu", "hu"),
    "calcium": ("sample_style_calcium", "calcs"),
    "imaging": ("sample_style_imaging", "imaging"),
    "grid": ("sample_style_grid", "grid"),
}
#: The grid is centred on the patient (takes the body); the quality grade follows from the noise.
STYLE_DEPENDENTS = {"body": {"grid"}, "imaging": {"quality"}}


@pytest.mark.parametrize("part", list(STYLE_PART_SAMPLERS))
def test_a_draw_added_to_one_part_of_a_style_changes_no_other_part(monkeypatch, part):
    name, key = STYLE_PART_SAMPLERS[part]
    original = getattr(style_params, name)

    def sampler(rng, *args, **kwargs):
        rng.random()
        return original(rng, *args, **kwargs)

    before = [sample_params(0, i, "small", "train") for i in range(8)]
    monkeypatch.setattr(style_params, name, sampler)
    after = [sample_params(0, i, "small", "train") for i in range(8)]
    changed = {k for b, a in zip(before, after, strict=True) for k in b if a[k] != b[k]}
    assert key in changed and changed - {key} <= STYLE_DEPENDENTS.get(part, set()), changed


def _measured(params):
    """dimension of ``styles.DIMENSIONS`` -> list of the values a case's parameters take (grid in image axes)."""
    g, hu, im, root, body = params["grid"], params["hu"], params["imaging"], params["root"], params["body"]
    n, sp = np.array(g["size"]), np.array(g["spacing"])
    D = direction_matrix(g)
    off = D.T @ np.array(g["center_offset_mm"])  # image centre - annulus centre along the image's axes
    fov, _, coverage = n * sp
    lumen = hu["blood"]
    m = {
        "fov_mm": list(n[:2] * sp[:2]),
        "offset_xy_frac": [math.hypot(*off[:2]) / fov],
        "offset_xy_mm": [math.hypot(*off[:2])],
        "z_coverage_mm": [coverage],
        "offset_z_frac": [off[2] / coverage],
        "pixel_mm": list(sp[:2]),
        "slice_mm": [sp[2]],
        "lumen_hu": [lumen],
        "right_heart_rel": [(hu["right"] - 40) / (lumen - 40)],
        "left_atrium_rel": [(hu["left_atrium"] - 40) / (lumen - 40)],
        "svc_rel": [(hu["svc"] - 40) / (lumen - 40)],
        "svc_mixing": [hu.get("svc_mixing", 0.1)],
        "noise_hu": [im["noise_std"]],
        "noise_grain_mm": [im["corr_mm"]],
        "kernel_blur_mm": [im["blur_mm"]],
        "sharpen": [im["sharpen"]] if im.get("sharpen") else [],
        "streak_hu": [abs(a) for a in im["streaks"]["amps"]] if "streaks" in im else [],
        "motion_mm": [float(np.linalg.norm(im["motion"]["shift_mm"]))] if "motion" in im else [],
        "stairstep_hu": [abs(o) for o in im.get("band_offsets", im.get("stairstep", {}).get("offsets", []))],
        "stairstep_slab_mm": [30.0] * ("band_offsets" in im) + [s["slab_mm"] for s in [im.get("stairstep")] if s],
        "perimeter_mm": [root["perimeter_mm"]],
        "annulus_ratio": [root["ratio"]],
        "root_tilt_deg": [root["tilt_deg"]],
        "root_azimuth_deg": [root["azimuth_deg"]],
        "root_roll_deg": [root["roll_deg"]],
        "sinus_depth_mm": root["sinus_depth_mm"],
        "leaflet_mm": [root["leaflet_mm"]],
        "myocardium_mm": [params["heart"]["myo_mm"]],
        "ascending_factor": [params["heart"]["asc_factor"]],
        "root_x_mm": [body["root_xy"][0]],
        "root_y_frac": [body["root_xy"][1]],
        "fat_mm": [body["fat_mm"]],
    }
    if g.get("oblique_deg"):
        m["oblique_deg"] = [abs(g["oblique_deg"])]
    return m


#: Probability dimension -> whether a case's parameters show it.
EVENTS = {
    "p_flip": lambda p: any(p["grid"]["flip"]),
    "p_oblique": lambda p: bool(p["grid"].get("oblique_deg")),
    "p_sharp": lambda p: bool(p["imaging"].get("sharpen")),
    "p_streaks": lambda p: "streaks" in p["imaging"],
    "p_motion": lambda p: "motion" in p["imaging"],
    "p_stairstep": lambda p: "stairstep" in p["imaging"] or "band_offsets" in p["imaging"],
    "p_arms_down": lambda p: p["body"].get("arms") == "down",
    "p_table": lambda p: p["body"]["table"],
    "p_wires": lambda p: p["body"].get("wires", False),
}


@pytest.mark.parametrize("style", list(STYLES))
def test_sampled_parameters_fall_inside_the_style_ranges(style):
    ranges = STYLES[style]
    params = [sample_params(5, i, "full", style) for i in range(300)]
    values = {}
    for p in params:
        assert p["style"] == style and p["quality"] in GRADES
        json.dumps(p)
        for dim, vs in _measured(p).items():
            values.setdefault(dim, []).extend(vs)
    pixel = max(max(values["pixel_mm"]), max(values["slice_mm"]))
    for dim, vs in values.items():
        if dim not in ranges or not vs:
            continue
        # The extent is matrix x pixel: within half a pixel (slice) of the drawn field of view (coverage).
        tol = pixel if dim in ("fov_mm", "z_coverage_mm") else 1e-6
        lo, hi = min(vs), max(vs)
        assert contains(ranges[dim], lo, tol) and contains(ranges[dim], hi, tol), (dim, lo, hi, ranges[dim])
    if style != "classic":  # the ranges are really used: the draws span most of each main range
        for dim in ("fov_mm", "z_coverage_mm", "pixel_mm", "slice_mm", "lumen_hu", "noise_hu", "perimeter_mm"):
            width = sum(b - a for a, b in intervals(ranges[dim]))
            assert max(values[dim]) - min(values[dim]) > 0.6 * width, dim
    for dim, happened in EVENTS.items():
        count, p_dim = sum(bool(happened(p)) for p in params), ranges[dim]
        # Binomial(300, p): 4.5 standard deviations (classic's probabilities are rounded to two decimals).
        assert abs(count - 300 * p_dim) <= 4.5 * math.sqrt(300 * p_dim * (1 - p_dim)) + 4, (dim, count)


def test_style_voxel_counts_are_bounded():
    for style in ("train", "heldout-cardiac", "heldout-extreme"):
        for i in range(100):
            full, small = sample_params(2, i, "full", style)["grid"], sample_params(2, i, "small", style)["grid"]
            nx, ny, nz = full["size"]
            assert nx == ny <= 512 and nz <= 400 and 256 <= nx
            assert all(s <= m for s, m in zip(small["size"], (96, 96, 80), strict=True))
            np.testing.assert_allclose(np.multiply(small["size"], small["spacing"]),
                                       np.multiply(full["size"], full["spacing"]), rtol=1e-9)  # fmt: skip
            assert small["center_offset_mm"] == full["center_offset_mm"]


def test_train_and_heldout_ranges_are_disjoint():
    assert disjoint_dimensions("train", "train") == []  # the check can fail
    assert "noise_hu" in disjoint_dimensions("train", "heldout-cardiac")
    assert {"lumen_hu", "perimeter_mm", "calcium_mean"} <= set(disjoint_dimensions("train", "heldout-extreme"))
    for style in HELDOUT:
        assert disjoint_dimensions("train", style), style
    for style in VALIDATION:  # inside train: every interval of every dimension within one of train's
        for dim, value in STYLES[style].items():
            train = intervals(STYLES["train"][dim])
            assert all(any(a <= lo and hi <= b for a, b in train) for lo, hi in intervals(value)), (style, dim)
    noise = [sample_params(1, i, "small", "train")["imaging"]["noise_std"] for i in range(200)]
    assert max(noise) < STYLES["heldout-cardiac"]["noise_hu"][0]  # training never sees held-out noise


def _leaves_train(style: str) -> set[str]:
    """Dimensions where `style`'s range differs from train's."""
    return {dim for dim, value in STYLES[style].items() if intervals(value) != intervals(STYLES["train"].get(dim, -1))}


def test_out_of_range_validation_leaves_train_only_where_no_heldout_style_does():
    assert _leaves_train("heldout-extreme") >= {"lumen_hu", "perimeter_mm", "calcium_mean"}  # the check can fail
    heldout = set().union(*(_leaves_train(style) for style in HELDOUT))
    for style in VALIDATION_OUT_OF_RANGE:
        assert set(STYLES[style]) == set(STYLES["train"]), style
        assert disjoint_dimensions("train", style), style  # outside train somewhere
        assert not _leaves_train(style) & heldout, (style, _leaves_train(style) & heldout)


@pytest.mark.parametrize("style", list(STYLES))
def test_truth_hinge_points_lie_inside_the_image(style):
    """From the geometry of 40 cases per style (cheap, nothing rendered), full and small, with 5 mm to spare."""
    for i in range(40):
        for size in ("full", "small"):
            anat = build_anatomy(sample_params(3, i, size, style))
            grid, hinges = anat.out_grid, anat.root.hinge_points()
            index = grid.world_to_index(hinges)
            margin = 5.0 / grid.spacing
            assert np.all((index >= margin) & (index <= np.array(grid.size) - 1 - margin)), (style, i, size)


@pytest.fixture(scope="module")
def style_cases():
    """One rendered small case per style (case 1 of seed 0)."""
    return {style: generate_case(1, seed=0, size="small", style=style) for style in STYLES}


def test_rendered_style_cases_record_their_style_and_truth(style_cases):
    for style, case in style_cases.items():
        image = case.image
        assert case.truth["style"] == case.truth["params"]["style"] == style
        idx = [image.TransformPhysicalPointToContinuousIndex(p.tolist()) for p in case.landmarks_lps]
        assert all(0 <= v <= n - 1 for i in idx for v, n in zip(i, image.GetSize(), strict=True)), style
        root = root_from_params(case.truth["params"]["root"], np.array(case.truth["annulus"]["center_lps"]))
        np.testing.assert_allclose(case.landmarks_lps, root.hinge_points(), atol=1e-6)
        arr = sitk.GetArrayViewFromImage(image)
        assert arr.dtype == np.int16 and arr.min() >= -1024 and arr.max() <= 3071


def test_heldout_cardiac_root_is_off_centre_in_the_image(style_cases):
    """The image centre lies 25-40 mm from the annulus in the image plane (the hinge centroid is within ~5 mm of
    the annulus centre)."""
    cases = [style_cases["heldout-cardiac"]] + [generate_case(i, 0, "small", "heldout-cardiac") for i in (4, 7)]
    for case in cases:
        image = case.image
        centre = np.array(image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()]))
        D = np.reshape(image.GetDirection(), (3, 3))
        d = D.T @ (case.landmarks_lps.mean(0) - centre)  # along the image's i, j, k
        assert 20.0 <= math.hypot(d[0], d[1]) <= 45.0, case.case_id
        fov = image.GetSize()[0] * image.GetSpacing()[0]
        assert 140.0 - 1 <= fov <= 170.0 + 1


def test_hinge_image_pattern_in_a_clean_train_case():
    """A thin-slice train case without noise: contrast just above each hinge point, tissue below and outside."""
    index = first_index(
        lambda p: p["grid"]["spacing"][2] < 1.2 and p["grid"]["size"][0] * p["grid"]["spacing"][0] < 260,
        size="full",
        style="train",
    )
    params = sample_params(0, index, "full", "train")
    params["imaging"] = dict(CLEAN, slice_fwhm_mm=params["grid"]["slice_fwhm_mm"])
    image = case_from_params(params).image
    root, hu = root_from_params(params["root"], build_anatomy(params).root.center), params["hu"]
    for psi in root.nadir_angles:
        re = float(root.ellipse_radius(np.float32(psi)))
        up = max(sample(image, root.world(re + dr, psi, h))[0] for h in (2.0, 3.0, 4.0) for dr in (-3, -1.5, 0, 1.5))
        down = min(sample(image, root.world(re + dr, psi, h))[0] for h in (-3.0, -4.0, -5.0) for dr in (3, 4))
        assert up > hu["blood"] - 60 and down < hu["myocardium"] + 60, (psi, up, down)


def test_write_dataset_records_the_style(tmp_path):
    io = pytest.importorskip("AorticRootLandmarksLib.io")
    manifest = write_dataset(tmp_path / "d", 1, seed=2, size="small", style="heldout-extreme", progress=False)
    truth = json.loads((tmp_path / "d" / "truth.json").read_text(encoding="utf-8"))
    assert truth["phantom_0000"]["style"] == "heldout-extreme"
    with manifest.open(encoding="utf-8") as handle:
        assert next(csv.DictReader(handle))["style"] == "heldout-extreme"
    (case,) = io.read_manifest(manifest)  # the extra column is ignored
    np.testing.assert_allclose(case.landmarks_lps, generate_case(0, 2, "small", "heldout-extreme").landmarks_lps,
                               atol=1e-4)  # fmt: skip


def test_docs_table_matches_the_code():
    assert styles_markdown() in DOCS.read_text(encoding="utf-8"), "regenerate the table in docs/PHANTOM.md"
