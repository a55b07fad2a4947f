"""Tests of quality control (AorticRootLandmarksLib.qc). Points are world LPS mm, map indices network-grid (x, y, z)."""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from AorticRootLandmarksLib import qc
from AorticRootLandmarksLib.constants import HINGE_NAMES

# RCC anterior (-y), LCC left-posterior (+x, +y), NCC right-posterior (-x, +y): a circle of radius 10 mm at z = 0,
# normal (LCC - RCC) x (NCC - RCC) = +z (superior: from the ventricle into the aorta).
S3 = np.sqrt(3.0)
ANATOMICAL = np.array([[0.0, -10.0, 0.0], [5 * S3, 5.0, 0.0], [-5 * S3, 5.0, 0.0]])
CENTRE = np.array([12.0, -30.0, 40.0])  # somewhere in a chest, so nothing relies on the origin


def rotation_x(angle_deg):
    a = np.radians(angle_deg)
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


# --------------------------------------------------------------------------- peak contrast
def gaussian_map(size, centre, sigma, amplitude=1.0):
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in size], indexing="ij"), axis=-1)
    return amplitude * np.exp(-0.5 * np.sum((grid - np.asarray(centre)) ** 2, axis=-1) / sigma**2)


@pytest.fixture(scope="module")
def contrast_maps():
    """(4, 32, 32, 24): sharp Gaussian (sigma 1 voxel), broad (6 voxels), pure noise, constant; noise SD 0.01."""
    rng = np.random.default_rng(0)
    size, centre = (32, 32, 24), (15.0, 17.0, 11.0)
    noise = lambda: 0.01 * rng.standard_normal(size)  # noqa: E731
    maps = np.stack(
        [
            gaussian_map(size, centre, 1.0) + noise(),
            gaussian_map(size, centre, 6.0) + noise(),
            noise(),
            np.full(size, 0.3),
        ]
    )
    indices = np.array([np.unravel_index(np.argmax(m), size) for m in maps], dtype=float)
    return maps, indices


def test_peak_contrast_ranks_sharp_above_broad_and_noise(contrast_maps):
    maps, indices = contrast_maps
    sharp, broad, noise, constant = qc.peak_contrast(maps, indices)
    # Sharp: height ~1 over a shell at ~0, spread = floor 0.02 * 1 (the noise MAD, 0.01, is below it) -> ~50.
    assert sharp == pytest.approx(50.0, rel=0.05)
    # Broad: the shell at 3-6 voxels is still at exp(-4.5^2 / 72) ~ 0.75 of the peak.
    assert broad < 0.5 * sharp
    # Noise: the highest of 24576 N(0, 1) draws is ~4 SD above a shell at ~0.
    assert noise < 6.0
    assert sharp > broad and sharp > noise
    assert constant == 0.0


def test_peak_contrast_is_scale_and_offset_free(contrast_maps):
    """Comparable across losses: an affine change of the map (raw critic vs probabilities) changes nothing."""
    maps, indices = contrast_maps
    np.testing.assert_allclose(qc.peak_contrast(1000.0 * maps - 7.0, indices), qc.peak_contrast(maps, indices))


def test_peak_contrast_off_peak_and_edge(contrast_maps):
    maps, indices = contrast_maps
    # A point in the sharp map's background is no peak: 0, not negative.
    assert qc.peak_contrast(maps[:1], np.array([[2.0, 2.0, 2.0]]))[0] < 3.0
    assert qc.peak_contrast(maps[:1], np.array([[15.4, 16.6, 11.2]]))[0] == pytest.approx(50.0, rel=0.05)  # rounds
    with pytest.raises(ValueError):
        qc.peak_contrast(maps, indices[:2])


# --------------------------------------------------------------------------- boundary score
AXIS_XY = np.array([-10.0, 5.0])  # world LPS (x, y) of the cylinders' axis: off-centre, so a mirrored image misses it
LUMEN_RADIUS, TISSUE_RADIUS = 10.0, 26.0


def cylinder_ct(lumen_hu, direction=(1, 0, 0, 0, 1, 0, 0, 0, 1), noise_hu=15.0):
    """int16 CT, 1 x 1 x 1.5 mm: a lumen cylinder (radius 10 mm) in soft tissue (40 HU, radius 26 mm) in air.

    The image covers world x in [-40, 60], y in [-35, 45], z in [0, 45] mm whatever its direction matrix: the
    origin is the world position of index (0, 0, 0), placed at the corner the direction puts it at.
    """
    size, spacing = np.array([101, 81, 31]), np.array([1.0, 1.0, 1.5])
    d = np.asarray(direction, float).reshape(3, 3)
    lo, hi = np.array([-40.0, -35.0, 0.0]), np.array([60.0, 45.0, 45.0])
    origin = np.where(np.diag(d) > 0, lo, hi)
    image = sitk.Image(size.tolist(), sitk.sitkInt16)
    image.SetSpacing(spacing.tolist())
    image.SetDirection(tuple(float(v) for v in d.reshape(-1)))
    image.SetOrigin(origin.tolist())
    k, j, i = np.meshgrid(*[np.arange(s) for s in size[::-1]], indexing="ij")  # array order (z, y, x)
    world = origin + np.stack([i, j, k], axis=-1) * spacing @ d.T
    r = np.hypot(world[..., 0] - AXIS_XY[0], world[..., 1] - AXIS_XY[1])
    hu = np.where(r <= LUMEN_RADIUS, lumen_hu, np.where(r <= TISSUE_RADIUS, 40.0, -1000.0))
    hu += noise_hu * np.random.default_rng(1).standard_normal(hu.shape)
    array = sitk.GetImageFromArray(np.rint(hu).astype(np.int16))
    array.CopyInformation(image)
    return array


def at(radius_mm, z=22.0):
    """World LPS point at ``radius_mm`` from the cylinders' axis (towards +x)."""
    return [AXIS_XY[0] + radius_mm, AXIS_XY[1], z]


POINTS = {"wall": at(LUMEN_RADIUS), "lumen centre": at(0.0), "tissue": at(18.0), "air": at(38.0)}


@pytest.mark.parametrize("lumen_hu", [200, 400, 650])
@pytest.mark.parametrize(
    "direction", [(1, 0, 0, 0, 1, 0, 0, 0, 1), (-1, 0, 0, 0, 1, 0, 0, 0, -1)], ids=["identity", "flipped"]
)
def test_boundary_score_high_only_on_the_lumen_wall(lumen_hu, direction):
    image = cylinder_ct(lumen_hu, direction)
    scores = dict(zip(POINTS, qc.boundary_score(image, np.array(list(POINTS.values()))), strict=True))
    assert scores["wall"] > 0.8, scores
    for where in ("lumen centre", "tissue", "air"):
        assert scores[where] < 0.2, (where, scores)


def test_boundary_score_honours_the_direction_matrix():
    """The flipped image puts the cylinder at the same world place; sampling it by raw index would miss the wall."""
    flipped = cylinder_ct(400, (-1, 0, 0, 0, 1, 0, 0, 0, -1), noise_hu=0.0)
    identity = cylinder_ct(400, noise_hu=0.0)
    ball = [qc.sample_ball(image, POINTS["wall"]) for image in (identity, flipped)]
    np.testing.assert_allclose(ball[0], ball[1], atol=1.0)
    # Ignoring the direction would sample world x' = 20 - x (mirrored through the image centre): air, 30 mm off axis.
    assert qc.boundary_score(identity, [[20.0 - POINTS["wall"][0], POINTS["wall"][1], POINTS["wall"][2]]])[0] < 0.2


def test_boundary_score_outside_the_image_and_nan():
    image = cylinder_ct(400)
    np.testing.assert_array_equal(qc.boundary_score(image, [[500.0, 0.0, 0.0], [np.nan, 0.0, 0.0]]), [0.0, 0.0])


def test_boundary_score_from_values_examples():
    rng = np.random.default_rng(0)
    half = lambda a, b: np.concatenate([np.full(100, a), np.full(100, b)])  # noqa: E731
    assert qc.boundary_score_from_values(half(40, 400)) == 1.0  # lumen against tissue
    assert qc.boundary_score_from_values(half(-100, 200)) == 1.0  # faint lumen against fat
    assert qc.boundary_score_from_values(half(40, 90)) == 0.0  # tissue against tissue: 50 HU apart
    assert qc.boundary_score_from_values(half(-1000, 400)) == 0.0  # lumen against air: no soft tissue
    assert qc.boundary_score_from_values(half(400, 1200)) == 0.0  # lumen against bone: no soft tissue
    assert qc.boundary_score_from_values(400 + 5 * rng.standard_normal(200)) == 0.0  # blood pool
    assert qc.boundary_score_from_values([]) == 0.0


# --------------------------------------------------------------------------- geometry checks
def failed(checks):
    return sorted(name for name, check in checks.items() if not check.passed)


def test_geometry_checks_pass_the_anatomical_triangle():
    checks = qc.geometry_checks(HINGE_NAMES, CENTRE + ANATOMICAL)
    assert failed(checks) == []
    # Hand values: sides 10 sqrt(3), circumradius 10, normal +z (tilt 0), RCC 15 mm anterior of the LCC-NCC midpoint.
    assert checks["RCC_LCC_mm"].value == pytest.approx(10 * S3)
    assert checks["circumradius_mm"].value == pytest.approx(10.0)
    assert checks["min_angle_deg"].value == pytest.approx(60.0)
    assert checks["tilt_deg"].value == pytest.approx(0.0, abs=1e-6)
    assert checks["normal_superior"].value == pytest.approx(1.0)
    assert checks["rcc_anterior_mm"].value == pytest.approx(15.0)


def test_geometry_checks_pass_a_realistically_tilted_annulus():
    # 50 degrees about the left-right axis: normal (0, -sin 50, cos 50) leans anterior, as in patients.
    points = CENTRE + ANATOMICAL @ rotation_x(50.0).T
    checks = qc.geometry_checks(HINGE_NAMES, points)
    assert failed(checks) == []
    assert checks["tilt_deg"].value == pytest.approx(50.0)


@pytest.mark.parametrize(
    "points, expected",
    [
        (ANATOMICAL[[0, 2, 1]], ["normal_superior"]),  # LCC and NCC swapped: mirrored cusp order
        (ANATOMICAL[[1, 2, 0]], ["rcc_anterior_mm"]),  # labels rotated by one cusp: normal still +z
        (0.3 * ANATOMICAL, ["LCC_NCC_mm", "NCC_RCC_mm", "RCC_LCC_mm", "circumradius_mm"]),  # 5.2 mm sides
        (60 / (10 * S3) * ANATOMICAL, ["LCC_NCC_mm", "NCC_RCC_mm", "RCC_LCC_mm", "circumradius_mm"]),  # 60 mm sides
        (np.array([[0.0, -10, 0], [0, 5, 0], [0, 20, 0]]), ["min_angle_deg"]),  # collinear (sides 15, 15, 30)
        (ANATOMICAL @ rotation_x(80.0).T, ["tilt_deg"]),  # plane nearly vertical
    ],
    ids=["mirrored", "rotated-labels", "3mm", "60mm", "collinear", "tilt-80"],
)
def test_geometry_checks_fail_implausible_triangles(points, expected):
    checks = qc.geometry_checks(HINGE_NAMES, CENTRE + points)
    assert failed(checks) == expected
    assert all(checks[name].reason for name in expected)


def test_geometry_checks_mirrored_reason_and_missing_hinges():
    checks = qc.geometry_checks(HINGE_NAMES, CENTRE + ANATOMICAL[[0, 2, 1]])
    assert "normal points into the ventricle" in checks["normal_superior"].reason
    assert qc.geometry_checks(["A", "B", "C"], ANATOMICAL) == {}
    # Extra landmarks are ignored; the hinges are found by name in any order.
    names = ["NCC", "ostium", "RCC", "LCC"]
    points = np.stack([ANATOMICAL[2], [0.0, 0.0, 30.0], ANATOMICAL[0], ANATOMICAL[1]])
    assert failed(qc.geometry_checks(names, CENTRE + points)) == []
    assert failed(qc.geometry_checks(HINGE_NAMES, [[np.nan, 0, 0], [0, 0, 0], [1, 0, 0]])) == ["finite"]


# --------------------------------------------------------------------------- image checks
def image_from(array, pixel=np.int16):
    return sitk.GetImageFromArray(np.asarray(array).astype(pixel))


def ct_with(value):
    """The cylinder CT as float32 with one voxel set to ``value``."""
    array = sitk.GetArrayFromImage(cylinder_ct(400)).astype(np.float32)
    array[7, 40, 50] = value
    return image_from(array, np.float32)


@pytest.fixture(scope="module")
def ct_image():
    return cylinder_ct(400)


def test_image_checks_pass_a_ct(ct_image):
    checks = qc.image_checks(ct_image)
    assert failed(checks) == []
    assert checks["low_hu"].value == pytest.approx(-1000.0, abs=60)


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: image_from(np.zeros((20, 30, 30))), ["low_hu", "max_hu", "spread_hu", "value_range_hu"]),
        (lambda: ct_with(np.nan), ["finite"]),  # a CT but for one voxel
        (lambda: ct_with(-np.inf), ["finite"]),
        (lambda: image_from(np.random.default_rng(0).uniform(0, 3000, (20, 30, 30))), ["low_hu"]),  # MR-like
        (lambda: image_from(np.random.default_rng(0).uniform(0, 1, (20, 30, 30)), np.float32),  # normalised
         ["low_hu", "max_hu", "spread_hu"]),
        (lambda: sitk.Image([30, 30], sitk.sitkInt16), ["dimension"]),
        (lambda: sitk.Image([10, 10, 10], sitk.sitkVectorUInt8, 3), ["components"]),
    ],
    ids=["zeros", "nan", "-inf", "mr-like", "normalised", "2d", "rgb"],
)  # fmt: skip
def test_image_checks_fail_non_ct(make, expected):
    checks = qc.image_checks(make())
    assert failed(checks) == expected
    assert all(checks[name].reason for name in expected)


def test_image_checks_huge_finite_values_are_finite():
    """Values whose squares overflow float32 are still finite: the fast test is confirmed elementwise."""
    array = np.zeros((10, 10, 10), np.float32)
    array[3, 4, 5] = 1e30
    assert "finite" not in failed(qc.image_checks(image_from(array, np.float32)))


# --------------------------------------------------------------------------- assess
def image_ok():
    return {"finite": qc.Check(1.0, 1.0, 1.0, "", True)}


def folds_around(points, spread_mm=None, n=4):
    """(n, 3, 3) fold positions: +-0.5 mm along x around ``points``; ``spread_mm`` {k: d}: point k at +-d along y
    instead."""
    folds = np.repeat(points[None], n, axis=0) + 0.5 * np.array([1, -1] * (n // 2))[:, None, None] * [1, 0, 0]
    for k, d in (spread_mm or {}).items():
        folds[:, k] = points[k] + d * np.array([1, -1] * (n // 2))[:, None] * [0, 1, 0]  # RMS exactly d
    return folds


GOOD = CENTRE + ANATOMICAL @ rotation_x(45.0).T


def report(**changes):
    args = {
        "names": HINGE_NAMES,
        "positions_lps": GOOD,
        "fold_positions_lps": folds_around(GOOD),
        "peak_contrast": np.full(3, 40.0),
        "boundary": np.full(3, 0.95),
        "image_check": image_ok(),
    }
    args.update(changes)
    return qc.assess(**args)


@pytest.mark.parametrize(
    "changes, verdict, reason",
    [
        ({}, "ok", None),
        ({"fold_positions_lps": folds_around(GOOD, {1: 5.0})}, "review",
         "LCC low confidence (folds disagree by 5.0 mm"),
        ({"positions_lps": GOOD[[0, 2, 1]], "fold_positions_lps": folds_around(GOOD[[0, 2, 1]])}, "failed",
         "annulus normal points into the ventricle"),
        ({"image_check": qc.image_checks(image_from(np.zeros((8, 8, 8))))}, "failed",
         "image not CT-like: constant image: value range 0.0 HU"),
        ({"located": False, "location_reason": "no contrast-filled aorta found"}, "failed",
         "aortic root not located: no contrast-filled aorta found"),
        ({"boundary": np.array([0.95, 0.0, 0.95])}, "review",
         "LCC low confidence (not at a blood/tissue boundary: score 0.00)"),
        ({"peak_contrast": np.array([40.0, 40.0, 2.0])}, "review", "NCC low confidence (weak peak: contrast 2.0)"),
    ],
    ids=["good", "fold-spread", "mirrored", "non-ct", "not-located", "off-boundary", "weak-peak"],
)  # fmt: skip
def test_assess_verdicts(changes, verdict, reason):
    result = report(**changes)
    assert result.verdict == verdict, result.summary()
    if reason is None:
        assert result.reasons == ()
        assert all(p.verdict == "ok" for p in result.points)
        assert result.summary().startswith("ok: all checks passed")
    else:
        assert any(reason in r for r in result.reasons), result.reasons
        assert result.summary().startswith(f"{verdict}: ")


def test_assess_names_only_the_low_point():
    result = report(fold_positions_lps=folds_around(GOOD, {1: 5.0}))
    assert [p.verdict for p in result.points] == ["ok", "low", "ok"]
    assert result.points[1].fold_rms_mm == pytest.approx(5.0)
    assert result.points[1].confidence < 0.5 <= result.points[0].confidence
    assert result.summary() == f"review: {result.reasons[0]}" and len(result.reasons) == 1


def test_assess_failed_geometry_lowers_every_hinge_point():
    good = report()
    mirrored = report(positions_lps=GOOD[[0, 2, 1]], fold_positions_lps=folds_around(GOOD[[0, 2, 1]]))
    np.testing.assert_allclose(mirrored.confidence, qc.FAILED_FACTOR * good.confidence)
    # The points' own evidence is fine: the case's reasons are the geometry, not three "low confidence" lines.
    assert mirrored.reasons == (
        "implausible hinge geometry: annulus normal points into the ventricle (cusp order mirrored: LCC and NCC "
        "swapped?)",
    )


def test_assess_single_fold_has_no_fold_term():
    result = report(fold_positions_lps=GOOD[None])
    assert result.verdict == "ok"
    assert any("one fold" in note for note in result.notes)
    for point in result.points:
        assert point.fold_rms_mm is None and "fold" not in point.terms
        # Confidence from the other terms only: contrast 40 -> 40^2 / (40^2 + half^2), boundary 0.4 + 0.6 * 0.95.
        contrast_term = 40.0**2 / (40.0**2 + qc.PEAK_CONTRAST_HALF**2)
        assert point.confidence == pytest.approx(contrast_term * (0.4 + 0.6 * 0.95))
    assert qc.assess(HINGE_NAMES, GOOD, None, np.full(3, 40.0), np.full(3, 0.95), image_ok()).verdict == "ok"


@pytest.mark.parametrize("term", ["fold", "contrast", "boundary"])
def test_confidence_is_monotone_in_each_input(term):
    values = {"fold": [0.0, 1.0, 2.0, 4.0, 8.0, 30.0], "contrast": [0.0, 2.0, 6.0, 20.0, 50.0],
              "boundary": [0.0, 0.3, 0.6, 1.0]}[term]  # fmt: skip
    confidences = []
    for value in values:
        if term == "fold":
            result = report(fold_positions_lps=folds_around(GOOD, {0: value}))
        elif term == "contrast":
            result = report(peak_contrast=np.array([value, 40.0, 40.0]))
        else:
            result = report(boundary=np.array([value, 0.95, 0.95]))
        confidences.append(result.points[0].confidence)
    steps = np.diff(confidences)
    assert np.all(steps < 0) if term == "fold" else np.all(steps > 0), confidences
    assert all(0.0 <= c <= 1.0 for c in confidences)


def refiner_rms(*rms_mm):
    return [qc.RefinerSignals(fold_rms_mm=rms) for rms in rms_mm]


def test_refiner_term_only_for_refined_points_and_monotone():
    settings = qc.QcSettings()
    # No second stage, or the refinement failed: no refiner term.
    assert "refiner" not in report().points[0].terms
    failed = report(refined=[qc.RefinerSignals("peak on the patch border", 0.2), *[qc.RefinerSignals("", 0.2)] * 2])
    assert "refiner" not in failed.points[0].terms and failed.points[0].terms["refinement"] == 0.5
    assert failed.points[1].terms["refiner"] == pytest.approx(
        1.0 / (1.0 + (0.2 / settings.refine_rms_half_mm) ** settings.refine_exponent)
    )
    # The more the refiner's folds disagree, the lower the confidence; at the half value the term is 0.5.
    spreads = (0.0, 0.3, 1.0, 3.0, 10.0)
    confidences = [report(refined=refiner_rms(rms, 0.1, 0.1)).points[0].confidence for rms in spreads]
    assert np.all(np.diff(confidences) < 0), confidences
    half = report(refined=refiner_rms(settings.refine_rms_half_mm, 0.1, 0.1)).points[0]
    assert half.terms["refiner"] == pytest.approx(0.5)
    # A large disagreement asks for review and says why.
    spread = report(refined=refiner_rms(None, 10 * settings.refine_rms_half_mm, None))
    assert spread.verdict == "review" and [p.verdict for p in spread.points] == ["ok", "low", "ok"]
    assert "LCC low confidence (second-stage folds disagree by" in spread.reasons[0]
    with pytest.raises(ValueError):
        report(refined=refiner_rms(0.1, 0.1))


def test_assess_settings_change_the_constants():
    spread = folds_around(GOOD, {1: 5.0})
    assert report(fold_positions_lps=spread).verdict == "review"
    lenient = qc.QcSettings(fold_rms_half_mm=10.0)
    assert report(fold_positions_lps=spread, settings=lenient).verdict == "ok"


def test_quality_report_to_dict_is_json_and_rounded():
    result = report(fold_positions_lps=folds_around(GOOD, {1: 5.0}))
    data = json.loads(json.dumps(result.to_dict()))
    assert data["verdict"] == "review"
    assert data["points"][1]["name"] == "LCC" and data["points"][1]["verdict"] == "low"
    assert data["points"][1]["fold_rms_mm"] == 5.0
    assert data["geometry"]["circumradius_mm"]["value"] == 10.0
    assert data["geometry"]["normal_superior"]["passed"] is True
    confidence = data["points"][0]["confidence"]
    assert confidence == round(confidence, 3)
    assert data["settings"]["fold_rms_half_mm"] == qc.FOLD_RMS_HALF_MM


def test_assess_checks_shapes():
    with pytest.raises(ValueError):
        report(peak_contrast=np.ones(2))
    with pytest.raises(ValueError):
        report(fold_positions_lps=np.zeros((4, 2, 3)))


def test_a_point_the_second_stage_moved_far_loses_confidence_and_says_so():
    settings = qc.QcSettings()
    moved = [qc.RefinerSignals("", 0.1, shift) for shift in (0.5, 4 * settings.shift_half_mm, 0.5)]
    result = report(refined=moved)
    still = report(refined=[qc.RefinerSignals("", 0.1, 0.5)] * 3)
    assert result.points[1].confidence < still.points[1].confidence
    assert result.points[0].confidence == pytest.approx(still.points[0].confidence)
    assert result.verdict == "review" and "second stage moved it" in result.reasons[0]


def test_refiner_score_term_only_when_calibrated_and_rises_with_the_score():
    scored = [qc.RefinerSignals("", 0.1, 0.5, score) for score in (10.0, 60.0, 60.0)]
    # No calibrated half: no score term, whatever the score.
    assert "score" not in report(refined=scored).points[0].terms
    settings = qc.QcSettings(refine_score_half=40.0)
    result = report(refined=scored, settings=settings)
    low, high = result.points[0].terms["score"], result.points[1].terms["score"]
    assert low == pytest.approx(10.0**4 / (10.0**4 + 40.0**4)) and high > 0.8
    assert result.points[0].verdict == "low" and "weak second-stage peak: score 10" in result.reasons[0]
    at_half = report(refined=[qc.RefinerSignals("", 0.1, 0.5, 40.0)] * 3, settings=settings)
    assert at_half.points[0].terms["score"] == pytest.approx(0.5)
    # A failed refinement or a point no patch ran on (NaN score) has no score term.
    failed = [qc.RefinerSignals("peak on the patch border", None, None, 5.0), qc.RefinerSignals(), scored[2]]
    terms = report(refined=failed, settings=settings).points
    assert "score" not in terms[0].terms and "score" not in terms[1].terms and "score" in terms[2].terms
    # The half comes from a model's constants, and the report writes it (None when absent).
    assert qc.QcSettings.from_dict({"refine_score_half": 40}).refine_score_half == 40.0
    with pytest.raises(ValueError):
        qc.QcSettings.from_dict({"refine_score_half": -1.0})
    assert json.loads(json.dumps(report().to_dict()))["settings"]["refine_score_half"] is None
    assert result.to_dict()["settings"]["refine_score_half"] == 40.0
