"""Tests of the plan (AorticRootLandmarksLib.plan): S-curve, named views, coronary heights, plan.json, figure, index.

Points are world LPS mm (x to the patient's Left, y Posterior, z Superior); C-arm angles degrees, LAO and CRAN
positive, the view vector from the patient to the detector (geometry.py's module docstring).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
from helpers import ANATOMICAL, tilted_hinges

from AorticRootLandmarksLib import geometry, qc
from AorticRootLandmarksLib.constants import ALL_LANDMARKS, HINGE_NAMES, OSTIA_NAMES
from AorticRootLandmarksLib.errors import InputError
from AorticRootLandmarksLib.geometry import CarmAngles
from AorticRootLandmarksLib.phantom import all_landmarks_lps, generate_case
from AorticRootLandmarksLib.plan import (
    DISCLAIMER,
    NO_OSTIA,
    SCHEMA_VERSION,
    carm_plan,
    make_plan,
    ostia_heights,
    point_heights_mm,
    s_curve,
    save_plan_figure,
    write_detection_plan,
    write_index,
    write_plan,
)
from AorticRootLandmarksLib.plan.figure import WARNING_LINE_IN, _lumen_text, _warning_lines
from AorticRootLandmarksLib.plan.heights import NO_OSTIA_GIVEN, heights_record

# ---------------------------------------------------------------- S-curve


@pytest.mark.parametrize(
    "normal",
    [[0.0, 0.0, 1.0], [-0.4, -0.3, 0.87], [0.3, 0.2, -0.9], [0.0, -np.sin(0.5), np.cos(0.5)], [0.7, -0.7, 0.14]],
)
def test_every_s_curve_view_sees_the_plane_edge_on(normal):
    lao, cran = s_curve(normal)
    assert lao.shape == cran.shape == (181,) and lao[0] == -90.0 and lao[-1] == 90.0
    n = np.asarray(normal) / np.linalg.norm(normal)
    np.testing.assert_allclose(geometry.carm_view_vector(lao, cran) @ n, 0.0, atol=1e-12)
    assert np.all(np.abs(cran) <= 90.0)


def test_s_curve_of_an_axial_annulus_is_flat():
    # Normal straight up: every view without angulation (v_z = 0) is perpendicular to it.
    _, cran = s_curve([0.0, 0.0, 1.0])
    np.testing.assert_allclose(cran, 0.0, atol=1e-12)


def test_s_curve_of_a_vertical_annulus_is_at_the_cran_caud_limits():
    # Normal horizontal (anterior, -y): the plane is coronal; away from LAO/RAO 90 only a straight cranial or caudal
    # view (v = +-z) lies in it: tan(cran) = (n_y cos lao - n_x sin lao) / n_z = -cos(lao) / 0 -> CAUD 90.
    lao, cran = s_curve([0.0, -1.0, 0.0], np.arange(-80.0, 81.0, 10.0))
    np.testing.assert_allclose(np.abs(cran), 90.0, atol=1e-9)


@pytest.mark.parametrize("tilt", [10.0, 25.0, 40.0])
def test_s_curve_of_an_anteriorly_tilted_annulus(tilt):
    # n = (0, -sin t, cos t): tan(cran) = -tan(t) cos(lao): CAUD t at AP, no angulation at LAO/RAO 90, symmetric.
    t = np.radians(tilt)
    lao, cran = s_curve([0.0, -np.sin(t), np.cos(t)], [-90.0, -45.0, 0.0, 45.0, 90.0])
    expected = np.degrees(np.arctan(-np.tan(t) * np.cos(np.radians(lao))))
    np.testing.assert_allclose(cran, expected, atol=1e-9)
    assert cran[2] == pytest.approx(-tilt, abs=1e-9) and cran[0] == pytest.approx(0.0, abs=1e-9)


def test_s_curve_of_an_annulus_tilted_to_the_patients_right():
    # n = (-sin t, 0, cos t): tan(cran) = tan(t) sin(lao): CRAN t at LAO 90, CAUD t at RAO 90, none at AP.
    t = np.radians(30.0)
    _, cran = s_curve([-np.sin(t), 0.0, np.cos(t)], [-90.0, 0.0, 90.0])
    np.testing.assert_allclose(cran, [-30.0, 0.0, 30.0], atol=1e-9)


# ---------------------------------------------------------------- named C-arm views


def test_carm_angles_have_named_fields_and_stay_tuples():
    angles = CarmAngles(12.4, -7.6)
    assert angles == (12.4, -7.6) and angles.lao_deg == 12.4 and angles.cran_deg == -7.6
    lao, cran = angles
    assert (lao, cran) == (12.4, -7.6)
    assert angles.label == "LAO 12 CAUD 8"
    assert CarmAngles(-25.4, 30.2).label == "RAO 25 CRAN 30"
    assert CarmAngles(-0.2, 0.3).label == "LAO 0 CRAN 0"  # no "RAO 0"
    assert angles.to_dict() == {"lao_deg": 12.4, "cran_deg": -7.6, "label": "LAO 12 CAUD 8"}
    assert isinstance(geometry.carm_angles([0.0, -1.0, 0.0]), CarmAngles)
    assert json.loads(json.dumps(angles.to_dict()))["label"] == "LAO 12 CAUD 8"


def test_named_views_of_an_axial_annulus():
    # Axial annulus: the three-cusp view is AP (RCC straight in front of the LCC-NCC midpoint); the cusp-overlap view
    # looks along RCC - LCC = (-5 sqrt3, -15, 0): RAO atan(5 sqrt3 / 15) = RAO 30, no angulation.
    plan = carm_plan(ANATOMICAL)
    np.testing.assert_allclose(plan.views["three_cusp"], (0.0, 0.0), atol=1e-9)
    np.testing.assert_allclose(plan.views["cusp_overlap"], (-30.0, 0.0), atol=1e-9)
    record = plan.to_dict()
    assert record["views"]["cusp_overlap"]["label"] == "RAO 30 CRAN 0"
    assert set(record["views"]["three_cusp"]) == {"lao_deg", "cran_deg", "label", "definition"}
    assert record["convention"]["view_vector"] == "from the patient (isocentre) to the image detector"
    assert len(record["s_curve"]["lao_deg"]) == len(record["s_curve"]["cran_deg"]) == 181


def test_named_views_lie_on_the_s_curve_and_show_what_they_name():
    points, n = tilted_hinges()
    plan = carm_plan(points)
    for name, angles in plan.views.items():
        assert angles.cran_deg == pytest.approx(geometry.coplanar_cran_deg(n, angles.lao_deg), abs=1e-9), name
        # on the sampled curve too (linear interpolation between 1-degree samples)
        assert angles.cran_deg == pytest.approx(np.interp(angles.lao_deg, plan.lao_deg, plan.cran_deg), abs=0.2)
    view = geometry.carm_view_vector(*plan.views["cusp_overlap"])
    rcc, lcc, ncc = points - (points @ view)[:, None] * view  # projections along the view
    np.testing.assert_allclose(rcc, lcc, atol=1e-9)  # RCC and LCC superimposed
    assert np.linalg.norm(ncc - rcc) > 10.0  # NCC apart
    view = geometry.carm_view_vector(*plan.views["three_cusp"])
    rcc, lcc, ncc = points - (points @ view)[:, None] * view
    np.testing.assert_allclose(rcc, 0.5 * (lcc + ncc), atol=1e-9)  # RCC in the middle
    assert plan.views["cusp_overlap"].lao_deg < 0 and plan.views["cusp_overlap"].cran_deg < 0  # RAO caudal


# ---------------------------------------------------------------- coronary heights


def test_heights_of_points_at_known_distances():
    points, n = tilted_hinges()
    plane = geometry.annulus_plane(points)
    u, v = geometry.plane_axes(plane, points[0])
    # 12 mm above, 15 mm above and 4 mm in-plane off-centre, 3 mm below (on the ventricle side)
    probes = np.stack([plane.center + 12 * n, plane.center + 15 * n + 4 * u - 7 * v, plane.center - 3 * n])
    np.testing.assert_allclose(point_heights_mm(plane, probes), [12.0, 15.0, -3.0], atol=1e-9)
    heights = ostia_heights(plane, [*HINGE_NAMES, "RCO", "LCO"], np.concatenate([points, probes[:2]]))
    assert list(heights) == ["LCO", "RCO"]  # in the order of OSTIA_NAMES
    assert heights["RCO"].height_mm == pytest.approx(12.0, abs=1e-9)
    assert heights["LCO"].height_mm == pytest.approx(15.0, abs=1e-9)
    foot = heights["LCO"].foot_lps
    assert plane.signed_distance_mm(foot) == pytest.approx(0.0, abs=1e-9)  # the foot lies on the annulus plane
    np.testing.assert_allclose(heights["LCO"].position_lps - foot, 15.0 * n, atol=1e-9)


def test_heights_not_available_without_ostia():
    plane = geometry.annulus_plane(ANATOMICAL)
    assert ostia_heights(plane, list(HINGE_NAMES), ANATOMICAL) == {}
    assert heights_record({}) == {"available": False, "reason": NO_OSTIA}
    one = ostia_heights(plane, [*HINGE_NAMES, "LCO"], np.concatenate([ANATOMICAL, [[0.0, 0.0, 14.0]]]))
    record = heights_record(one)
    assert record["available"] and record["LCO"]["height_mm"] == 14.0
    assert record["RCO"] == "not available: no point labelled RCO"


# ---------------------------------------------------------------- plan.json on a phantom


@pytest.fixture(scope="module")
def phantom():
    return generate_case(0, seed=11, size="small")


@pytest.fixture(scope="module")
def full_plan(phantom):
    return make_plan(phantom.image, list(ALL_LANDMARKS), all_landmarks_lps(phantom), case="phantom_0000")


def test_plan_json_schema_on_a_phantom(phantom, full_plan):
    record = json.loads(json.dumps(full_plan.to_dict(), allow_nan=False))  # strict JSON: no NaN
    assert record["schema"] == "aortic-root-plan" and record["schema_version"] == SCHEMA_VERSION
    assert record["disclaimer"] == DISCLAIMER and "not a medical device" in DISCLAIMER
    assert record["coordinate_system"] == "LPS"
    assert record["units"] == {"length": "mm", "area": "mm2", "angle": "deg"}
    expected_keys = {"landmarks", "annulus_plane", "lumen", "circumcircle", "coronary_heights", "carm", "quality"}
    assert expected_keys <= set(record)
    assert list(record["landmarks"]) == list(ALL_LANDMARKS)
    truth_plane = phantom.truth["annulus"]
    np.testing.assert_allclose(record["annulus_plane"]["normal_lps"], truth_plane["normal_lps"], atol=1e-4)
    # lumen: traced on the CT, close to the phantom's true annulus (small CT: 1.5 mm voxels)
    assert record["lumen"]["ok"] and record["lumen"]["perimeter_mm"] == pytest.approx(
        truth_plane["perimeter_mm"], rel=0.06)  # fmt: skip
    assert "secondary estimate" in record["circumcircle"]["note"]
    # heights: the true ostia's distances to the true hinge plane
    plane = geometry.annulus_plane(phantom.landmarks_lps)
    for name in OSTIA_NAMES:
        expected = plane.signed_distance_mm(np.array(phantom.truth["ostia"][name]))
        assert record["coronary_heights"][name]["height_mm"] == pytest.approx(expected, abs=0.01)
        assert 5.0 < expected < 25.0
    assert record["coronary_heights"]["available"] is True
    views = record["carm"]["views"]
    assert set(views) == {"three_cusp", "cusp_overlap"}
    assert all(set(v) >= {"lao_deg", "cran_deg", "label"} for v in views.values())
    assert record["quality"]["verdict"] == "ok" and record["quality"]["landmark_verdict"] == "ok"
    assert "no detection confidence" in record["quality"]["notes"][0]


def test_plan_with_hinges_only_says_heights_are_not_available(phantom):
    plan = make_plan(phantom.image, list(HINGE_NAMES), phantom.landmarks_lps, case="c")
    assert plan.heights == {}
    assert plan.to_dict()["coronary_heights"] == {"available": False, "reason": NO_OSTIA_GIVEN}
    detection = SimpleNamespace(quality=None, confidence=np.array([0.9, 0.8, 0.7]))
    plan = make_plan(phantom.image, list(HINGE_NAMES), phantom.landmarks_lps, detection, case="c")
    assert plan.to_dict()["coronary_heights"] == {"available": False, "reason": NO_OSTIA}
    assert [v["confidence"] for v in plan.to_dict()["landmarks"].values()] == [0.9, 0.8, 0.7]


def test_plan_takes_the_detections_verdict(phantom):
    names, points = list(HINGE_NAMES), phantom.landmarks_lps
    report = qc.assess(names, points, None, [40.0, 40.0, 2.0], [1.0, 1.0, 1.0], {})  # NCC: a weak peak
    detection = SimpleNamespace(quality=report, confidence=report.confidence)
    record = make_plan(phantom.image, names, points, detection).to_dict()
    assert record["landmarks_source"] == "detection"
    assert record["quality"]["verdict"] == "review" and "NCC low confidence" in record["quality"]["reasons"][0]


def test_a_plan_without_measurable_lumen_asks_for_review(phantom):
    flat = sitk.Image(phantom.image.GetSize(), sitk.sitkInt16) + 40  # no contrast anywhere
    flat.CopyInformation(phantom.image)
    plan = make_plan(flat, list(HINGE_NAMES), phantom.landmarks_lps)
    assert not plan.lumen.ok and plan.verdict in ("review", "failed")
    record = json.loads(json.dumps(plan.to_dict(), allow_nan=False))
    assert any(r.startswith("annulus lumen not measured") for r in record["quality"]["reasons"])
    assert record["lumen"]["perimeter_mm"] is None


@pytest.mark.parametrize(
    "names, points, message",
    [
        (["RCC", "LCC"], ANATOMICAL[:2], "no point labelled NCC"),
        (list(HINGE_NAMES), np.zeros((3, 3)), "collinear or coincident"),
        (list(HINGE_NAMES), [[0, 0, np.nan], [1, 0, 0], [0, 1, 0]], "NaN"),
    ],
)
def test_make_plan_refuses_unusable_hinge_points(phantom, names, points, message):
    with pytest.raises(InputError, match=message):
        make_plan(phantom.image, names, points)


def test_a_detection_without_usable_hinges_has_no_plan_but_says_why(tmp_path, phantom):
    detection = SimpleNamespace(names=list(HINGE_NAMES), positions_lps=np.zeros((3, 3)), quality=None,
                                confidence=np.ones(3))  # fmt: skip
    result = write_detection_plan(tmp_path, "c", phantom.image, detection, "c.nii.gz")
    assert result.startswith("no plan: ") and "collinear" in result
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- figure and index


def _not_blank(png_path, min_dark_fraction=0.02):
    """The PNG has real content: many grey levels, and a fair share of dark (image) pixels on a light page."""
    from matplotlib.image import imread

    pixels = imread(str(png_path))[..., :3].mean(axis=-1)
    return pixels.std() > 0.1 and (pixels < 0.5).mean() > min_dark_fraction


def test_figure_and_index(tmp_path, phantom, full_plan):
    files = write_plan(full_plan, phantom.image, tmp_path)
    assert [f.name for f in files] == ["phantom_0000.plan.json", "phantom_0000.plan.png"]
    assert _not_blank(files[1], 0.1)
    hinges_only = make_plan(phantom.image, list(HINGE_NAMES), phantom.landmarks_lps, case="hinges_only")
    assert _not_blank(save_plan_figure(hinges_only, phantom.image, tmp_path / "hinges_only.plan.png"), 0.1)
    cases = {"phantom_0000": full_plan, "hinges_only": hinges_only.to_dict(), "<odd & name>": "no plan: broken"}
    page = write_index(cases, tmp_path / "index.html").read_text(encoding="utf-8")
    assert page.count("<tr>") == 4  # header + 3 cases
    assert "src='phantom_0000.plan.png'" in page and "href='phantom_0000.plan.json'" in page
    assert "&lt;odd &amp; name&gt;" in page and "<odd" not in page  # escaped
    assert DISCLAIMER in page and "not available" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page  # self-contained


def test_figure_shows_the_lumens_warnings_below_the_annulus_panel(tmp_path, phantom, full_plan):
    from matplotlib.image import imread

    quiet = dataclasses.replace(full_plan, lumen=dataclasses.replace(full_plan.lumen, warnings=()))
    said = (
        "hinge point RCC lies 3.1 mm outside the traced contour: check the contour (streaks, calcium, leaflets, noise) "
        "or the hinge point",
        "irregular lumen boundary: edges scatter 2.4 mm about the smooth contour",
    )
    warned = dataclasses.replace(full_plan, lumen=dataclasses.replace(full_plan.lumen, warnings=said))
    assert "check" not in _lumen_text(quiet)
    lines = _warning_lines(warned)
    assert len(lines) == 3 and lines[0].startswith("check: hinge point RCC") and lines[2].startswith("check: irregular")
    assert " ".join(lines).replace("check: ", "") == " ".join(said)  # every word, nothing cut
    assert _lumen_text(warned).endswith("\n".join(lines))
    heights = [imread(str(save_plan_figure(p, phantom.image, tmp_path / f"{i}.png", dpi=50))).shape[0]
               for i, p in enumerate((quiet, warned))]  # fmt: skip
    assert heights[1] - heights[0] == pytest.approx(3 * WARNING_LINE_IN * 50, abs=1)  # a line more per line of text


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_index_renders_in_headless_chromium(tmp_path, phantom, full_plan):
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium/chrome binary on PATH: cannot check that index.html renders")
    write_plan(full_plan, phantom.image, tmp_path)
    index = write_index({"phantom_0000": full_plan}, tmp_path / "index.html")
    shot = tmp_path / "shot.png"
    command = [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--window-size=1400,900", f"--screenshot={shot}", index.as_uri()]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    from matplotlib.image import imread

    pixels = imread(str(shot))[..., :3]
    assert pixels.shape[:2] == (900, 1400)
    assert _not_blank(shot)  # text and the figure's thumbnail drawn, not a white page
    red = (pixels[..., 0] > 0.6) & (pixels[..., 1] < 0.2) & (pixels[..., 2] < 0.2)
    assert red.sum() > 200  # the disclaimer line is drawn in red
