"""Tests of the annulus geometry (AorticRootLandmarksLib.geometry). Points are world LPS mm throughout."""

import json

import numpy as np
import pytest
from helpers import ANATOMICAL, rotation, tilted_hinges

from AorticRootLandmarksLib import geometry
from AorticRootLandmarksLib.errors import InputError

S3 = np.sqrt(3.0)


def detector_xy(points, view):
    """(K, 2) coordinates of points projected along ``view`` onto a detector plane (any in-plane basis)."""
    e1 = np.cross(view, [0.0, 0.0, 1.0]) if abs(view[2]) < 0.9 else np.cross(view, [1.0, 0.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(view, e1)
    return np.stack([points @ e1, points @ e2], axis=1)


# ---------------------------------------------------------------- annulus_plane


def test_plane_counter_clockwise_from_plus_z():
    # In z = 5, (0,0)->(10,0)->(0,10) turns counter-clockwise seen from +z: normal +z, centre = centroid.
    plane = geometry.annulus_plane([[0, 0, 5], [10, 0, 5], [0, 10, 5]])
    np.testing.assert_allclose(plane.normal, [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(plane.center, [10 / 3, 10 / 3, 5], atol=1e-12)


def test_plane_mirrored_order_flips_normal():
    plane = geometry.annulus_plane([[0, 0, 5], [0, 10, 5], [10, 0, 5]])
    np.testing.assert_allclose(plane.normal, [0, 0, -1], atol=1e-12)


def test_plane_anatomical_convention_points_into_aorta():
    # RCC, LCC, NCC in LPS: the normal points superior (+z), from the ventricle into the aorta.
    np.testing.assert_allclose(geometry.annulus_plane(ANATOMICAL).normal, [0, 0, 1], atol=1e-12)


def test_plane_least_squares_hexagon():
    # Hexagon of radius 10 around z = 5 with heights alternating +-0.5: the alternation has no linear
    # (tilt) component, so the least-squares plane is exactly z = 5, normal +z (first three turn CCW from +z).
    angles = np.radians(np.arange(6) * 60.0)
    heights = 5 + 0.5 * (-1) ** np.arange(6)
    points = np.stack([10 * np.cos(angles), 10 * np.sin(angles), heights], axis=1)
    plane = geometry.annulus_plane(points)
    np.testing.assert_allclose(plane.normal, [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(plane.center, [0, 0, 5], atol=1e-12)
    # Reversed order: same least-squares plane, opposite orientation.
    np.testing.assert_allclose(geometry.annulus_plane(points[::-1]).normal, [0, 0, -1], atol=1e-12)
    # Rotated and shifted: the normal rotates with the points.
    rot = rotation([1, 2, 3], 40.0)
    moved = geometry.annulus_plane(points @ rot.T + [1, 2, 3])
    np.testing.assert_allclose(moved.normal, rot @ [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(moved.center, rot @ [0, 0, 5] + [1, 2, 3], atol=1e-12)


@pytest.mark.parametrize(
    "points",
    [
        [[0, 0, 0], [1, 0, 0], [np.nan, 1, 0]],
        [[0, 0, 0], [1, 0, 0], [np.inf, 1, 0]],
        [[0, 0, 0], [10, 0, 0], [20, 0.05, 0]],  # nearly collinear: area 0.25 mm^2
        [[3, 3, 3], [3, 3, 3], [3, 3, 3]],  # coincident
        [[0, 0, 0], [10, 0, 0]],  # two points
        [[0, 0], [10, 0], [0, 10]],  # 2D
    ],
)
def test_plane_rejects_bad_points(points):
    with pytest.raises(InputError):
        geometry.annulus_plane(points)


def test_plane_axes_right_handed_towards_point():
    plane = geometry.annulus_plane(ANATOMICAL)
    u, v = geometry.plane_axes(plane, ANATOMICAL[0] + [0, 0, 7])  # the out-of-plane part is dropped
    np.testing.assert_allclose(u, [0, -1, 0], atol=1e-12)  # towards RCC
    np.testing.assert_allclose(v, np.cross([0, 0, 1], [0, -1, 0]), atol=1e-12)  # = (1, 0, 0)
    assert np.linalg.det(np.stack([u, v, plane.normal])) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(InputError):
        geometry.plane_axes(plane, [0, 0, 10])  # on the normal through the centre


# ---------------------------------------------------------------- circumcircle and measurements


def test_circumcircle_equilateral_and_right_triangles_in_3d():
    rot, shift = rotation([0.3, -1, 0.5], 67.0), np.array([-20.0, 15.0, 300.0])
    s = 14.0
    equilateral = np.array([[0, 0, 0], [s, 0, 0], [s / 2, s * S3 / 2, 0]])
    center, radius = geometry.circumcircle(equilateral @ rot.T + shift)
    assert radius == pytest.approx(s / S3, rel=1e-12)  # R = s / sqrt(3)
    np.testing.assert_allclose(center, rot @ [s / 2, s * S3 / 6, 0] + shift, atol=1e-10)  # the centroid
    # Legs 6 and 8, hypotenuse 10: R = 5, centre at the hypotenuse's midpoint (Thales).
    right = np.array([[0, 0, 0], [6, 0, 0], [0, 8, 0]])
    center, radius = geometry.circumcircle(right @ rot.T + shift)
    assert radius == pytest.approx(5.0, rel=1e-12)
    np.testing.assert_allclose(center, rot @ [3, 4, 0] + shift, atol=1e-10)
    with pytest.raises(InputError):
        geometry.circumcircle([[0, 0, 0], [1, 1, 1], [2, 2, 2]])


def test_measurements_symmetric_valve():
    # Circumradius 12 -> diameter 24, perimeter 24 pi = 75.398, area 144 pi = 452.39, side 12 sqrt(3) = 20.785.
    points = ANATOMICAL * 1.2 + [5, 5, 5]
    m = geometry.annulus_measurements(points)
    assert m["circumcircle_diameter_mm"] == pytest.approx(24.0, rel=1e-12)
    assert m["circumcircle_perimeter_mm"] == pytest.approx(24 * np.pi, rel=1e-12)
    assert m["circumcircle_area_mm2"] == pytest.approx(144 * np.pi, rel=1e-12)
    for key in ("RCC_LCC_mm", "LCC_NCC_mm", "NCC_RCC_mm"):
        assert m[key] == pytest.approx(12 * S3, rel=1e-12)
    for key in ("RCC_LCC_deg", "LCC_NCC_deg", "NCC_RCC_deg"):
        assert m[key] == pytest.approx(120.0, abs=1e-9)
    np.testing.assert_allclose(m["plane_normal_lps"], [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(m["circumcenter_lps"], [5, 5, 5], atol=1e-12)
    json.dumps(m)  # plain floats and lists only


def test_measurements_obtuse_triangle_arcs():
    # Hinges at 0, 30 and 60 degrees on a circle of radius 10 (z = 0): arcs 30, 30 and 300 (> 180, the
    # circumcentre lies outside the triangle).
    angles = np.radians([0.0, 30.0, 60.0])
    points = np.stack([10 * np.cos(angles), 10 * np.sin(angles), np.zeros(3)], axis=1)
    m = geometry.annulus_measurements(points)
    assert m["RCC_LCC_deg"] == pytest.approx(30.0, abs=1e-9)
    assert m["LCC_NCC_deg"] == pytest.approx(30.0, abs=1e-9)
    assert m["NCC_RCC_deg"] == pytest.approx(300.0, abs=1e-9)
    assert m["circumcircle_diameter_mm"] == pytest.approx(20.0, rel=1e-12)
    assert m["RCC_LCC_mm"] == pytest.approx(2 * 10 * np.sin(np.radians(15)), rel=1e-12)  # chord 2R sin(arc/2)


# ---------------------------------------------------------------- C-arm angles


@pytest.mark.parametrize(
    "lao, cran, expected",
    [
        (0, 0, [0, -1, 0]),  # AP: detector anterior
        (90, 0, [1, 0, 0]),  # LAO 90: detector at the patient's left
        (-90, 0, [-1, 0, 0]),  # RAO 90
        (0, 90, [0, 0, 1]),  # CRA 90: towards the head
        (0, -90, [0, 0, -1]),  # CAU 90
        # LAO 30 CRA 20: (sin30 cos20, -cos30 cos20, sin20)
        (30, 20, [0.5 * 0.9396926, -0.8660254 * 0.9396926, 0.3420201]),
    ],
)
def test_carm_view_vector_cardinal(lao, cran, expected):
    np.testing.assert_allclose(geometry.carm_view_vector(lao, cran), expected, atol=1e-7)


def test_carm_round_trip_over_grid():
    for lao in np.arange(-170.0, 181.0, 10.0):
        for cran in np.arange(-80.0, 81.0, 10.0):
            back = geometry.carm_angles(geometry.carm_view_vector(lao, cran))
            np.testing.assert_allclose(back, (lao, cran), atol=1e-9)
    assert geometry.carm_angles([0, 0, -3]) == (0.0, -90.0)  # LAO undefined straight caudal: 0
    lao, cran = np.meshgrid([-30.0, 0.0, 40.0], [-20.0, 25.0])
    assert geometry.carm_view_vector(lao, cran).shape == (2, 3, 3)
    with pytest.raises(InputError):
        geometry.carm_angles([0, 0, 0])


def test_coplanar_cran_hand_value_and_s_curve():
    # Normal tilted 20 deg anteriorly from superior: n = (0, -sin20, cos20). Seen from AP the plane is edge-on
    # at CAU 20: v = (0, -cos20, -sin20), v . n = sin20 cos20 - cos20 sin20 = 0.
    n = np.array([0.0, -np.sin(np.radians(20)), np.cos(np.radians(20))])
    assert geometry.coplanar_cran_deg(n, 0.0) == pytest.approx(-20.0, abs=1e-9)
    assert isinstance(geometry.coplanar_cran_deg(n, 0.0), float)
    assert geometry.coplanar_cran_deg(-n, 0.0) == pytest.approx(-20.0, abs=1e-9)  # sign of n irrelevant
    _, n = tilted_hinges()
    lao = np.arange(-90.0, 91.0, 5.0)
    cran = geometry.coplanar_cran_deg(n, lao)
    assert cran.shape == lao.shape
    np.testing.assert_allclose(geometry.carm_view_vector(lao, cran) @ n, 0.0, atol=1e-12)
    # The clinical S-curve for an axis pointing superior-right-anterior: RAO views need caudal angulation,
    # and the caudal angle shrinks towards LAO.
    assert cran[0] < cran[-1] and geometry.coplanar_cran_deg(n, -30.0) < -20.0


def test_implant_views_axial_annulus():
    # Annulus in the axial plane: three-cusp = AP (RCC straight in front of the LCC-NCC midpoint);
    # cusp overlap along RCC - LCC = (-5 sqrt3, -15, 0): RAO atan(5 sqrt3 / 15) = RAO 30, no angulation.
    views = geometry.implant_views(ANATOMICAL)
    np.testing.assert_allclose(views["three_cusp"], (0.0, 0.0), atol=1e-9)
    np.testing.assert_allclose(views["cusp_overlap"], (-30.0, 0.0), atol=1e-9)


def test_implant_views_project_as_intended():
    points, n = tilted_hinges()
    rcc, lcc, ncc = points
    views = geometry.implant_views(points)
    for name, (lao, cran) in views.items():
        view = geometry.carm_view_vector(lao, cran)
        assert view[1] < 0, name  # detector on the anterior side
        assert cran == pytest.approx(geometry.coplanar_cran_deg(n, lao), abs=1e-9), name  # on the S-curve
        xy = detector_xy(points, view)
        # Edge-on: the three hinges project onto one line (zero 2D cross product).
        d1, d2 = xy[1] - xy[0], xy[2] - xy[0]
        assert abs(d1[0] * d2[1] - d1[1] * d2[0]) < 1e-9, name
    xy = detector_xy(points, geometry.carm_view_vector(*views["three_cusp"]))
    np.testing.assert_allclose(xy[0], 0.5 * (xy[1] + xy[2]), atol=1e-9)  # RCC centred between LCC and NCC
    assert np.linalg.norm(xy[1] - xy[2]) > 15.0  # LCC and NCC well apart (chord 17.3 mm, seen edge-on)
    xy = detector_xy(points, geometry.carm_view_vector(*views["cusp_overlap"]))
    np.testing.assert_allclose(xy[0], xy[1], atol=1e-9)  # RCC and LCC superimposed
    assert np.linalg.norm(xy[2] - xy[0]) > 10.0  # NCC apart
    assert views["cusp_overlap"][0] < 0 and views["cusp_overlap"][1] < 0  # RAO caudal, as in the clinic


# ---------------------------------------------------------------- plane metrics


def test_plane_distance():
    points, n = tilted_hinges()
    assert geometry.plane_distance_mm(points, points) == pytest.approx(0.0, abs=1e-12)
    assert geometry.plane_distance_mm(points + 2.0 * n, points) == pytest.approx(2.0, abs=1e-12)
    # Raise RCC by 3 mm: the predicted plane is z = -0.2 (y - 5) (through y = 5, z = 0 and y = -10, z = 3).
    # True points to it: |0.2 y - 1| / sqrt(1.04) = 3 / sqrt(1.04) for RCC, 0 for LCC/NCC; predicted points to
    # z = 0: 3, 0, 0. Mean of the two means: 0.5 (1 / sqrt(1.04) + 1) = 0.99029.
    pred = ANATOMICAL + [[0, 0, 3], [0, 0, 0], [0, 0, 0]]
    assert geometry.plane_distance_mm(pred, ANATOMICAL) == pytest.approx(0.5 * (1 / np.sqrt(1.04) + 1), rel=1e-12)
    assert geometry.plane_distance_mm(ANATOMICAL, pred) == pytest.approx(0.5 * (1 / np.sqrt(1.04) + 1), rel=1e-12)


def test_plane_angle():
    points, n = tilted_hinges()
    center = points.mean(axis=0)
    assert geometry.plane_angle_deg(points, points) == pytest.approx(0.0, abs=1e-9)
    # A rotation by 10 deg about an axis perpendicular to the normal turns the normal by exactly 10 deg.
    turned = (points - center) @ rotation(np.cross(n, [1, 0, 0]), 10.0).T + center
    assert geometry.plane_angle_deg(turned, points) == pytest.approx(10.0, abs=1e-9)
    # Mirror order (LCC and NCC swapped) flips the oriented normal: 180, not 0.
    assert geometry.plane_angle_deg(points[[0, 2, 1]], points) == pytest.approx(180.0, abs=1e-9)


def test_select_points_by_label():
    points = np.arange(12.0).reshape(4, 3)
    # default order RCC, LCC, NCC -> rows 2, 3, 1 of the labels X, NCC, RCC, LCC
    np.testing.assert_array_equal(geometry.select_points(["X", "NCC", "RCC", "LCC"], points), points[[2, 3, 1]])
    np.testing.assert_array_equal(geometry.select_points(["A", "B"], points[:2], ["B"]), points[[1]])
    with pytest.raises(InputError, match="no point labelled LCC"):
        geometry.select_points(["RCC", "NCC"], points[:2])
