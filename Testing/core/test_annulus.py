"""Tests of the annulus measured on the CT (AorticRootLandmarksLib.annulus).

Frames: world LPS mm for 3D points, plane (u, v) mm for in-plane points, pixel (col, row) on PlaneImage.pixels.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import SimpleITK as sitk
from helpers import rotation

from AorticRootLandmarksLib import annulus
from AorticRootLandmarksLib.constants import AIR_HU
from AorticRootLandmarksLib.errors import InputError
from AorticRootLandmarksLib.phantom.root import ramanujan_perimeter

#: An oblique image direction (columns: world LPS of the i, j, k axes) with a flipped axis.
OBLIQUE_DIRECTION = rotation([1.0, 0.3, -0.2], 25.0) @ np.diag([1.0, -1.0, 1.0])


def oblique_image(array_zyx, spacing=(0.7, 0.6, 1.1), center=(5.0, -12.0, 40.0), direction=OBLIQUE_DIRECTION):
    """A float32 image of a (nz, ny, nx) array with anisotropic spacing and an oblique, flipped direction, whose
    voxel-centre box is centred on ``center`` (world LPS mm)."""
    image = sitk.GetImageFromArray(np.asarray(array_zyx, dtype=np.float32))
    image.SetSpacing(spacing)
    image.SetDirection(tuple(np.asarray(direction, float).ravel()))
    half = (np.array(image.GetSize()) - 1) / 2.0 * np.array(spacing)
    image.SetOrigin(tuple(np.asarray(center) - np.asarray(direction) @ half))
    return image


def voxel_world(image):
    """(nz, ny, nx, 3) world LPS mm of every voxel centre."""
    d = np.reshape(image.GetDirection(), (3, 3))
    nx, ny, nz = image.GetSize()
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    index = np.stack([i, j, k], axis=-1) * np.array(image.GetSpacing())
    return np.array(image.GetOrigin()) + index @ d.T


def ellipse(a, b, n, angle=0.0, center=(0.0, 0.0)):
    """(n, 2) points of an ellipse with semi-axes a (along ``angle`` rad) and b."""
    t = np.arange(n) * (2 * np.pi / n)
    c, s = np.cos(angle), np.sin(angle)
    x, y = a * np.cos(t), b * np.sin(t)
    return np.stack([c * x - s * y, s * x + c * y], axis=1) + np.asarray(center)


# ---------------------------------------------------------------- contour geometry


@pytest.mark.parametrize("m", [3, 4, 12, 360])
def test_regular_polygon_perimeter_and_area(m):
    # A regular m-gon inscribed in a circle of radius r: side 2 r sin(pi/m); area (m/2) r^2 sin(2 pi/m).
    r = 7.0
    p = ellipse(r, r, m, angle=0.3, center=(2.0, -1.0))
    assert annulus.polygon_perimeter(p) == pytest.approx(2 * m * r * math.sin(math.pi / m), rel=1e-12)
    assert annulus.polygon_area(p) == pytest.approx(0.5 * m * r**2 * math.sin(2 * math.pi / m), rel=1e-12)
    assert annulus.polygon_area(p[::-1]) == pytest.approx(annulus.polygon_area(p), rel=1e-12)  # either orientation


@pytest.mark.parametrize(("a", "b", "angle"), [(14.0, 11.0, 0.4), (12.0, 12.0, 0.0), (15.0, 9.75, -1.2)])
def test_ellipse_measurements(a, b, angle):
    m = annulus.contour_measurements(ellipse(a, b, 4000, angle, center=(3.0, 4.0)))
    # 4000 vertices: the polygon is within (pi/4000)^2 / 6 ~ 1e-7 of the ellipse's perimeter and area.
    assert m["perimeter_mm"] == pytest.approx(ramanujan_perimeter(a, b), rel=1e-6)
    assert m["area_mm2"] == pytest.approx(math.pi * a * b, rel=1e-6)
    assert m["max_diameter_mm"] == pytest.approx(2 * a, abs=1e-4)
    assert m["min_diameter_mm"] == pytest.approx(2 * b, abs=1e-4)
    assert m["perimeter_diameter_mm"] == pytest.approx(m["perimeter_mm"] / math.pi)
    assert m["area_diameter_mm"] == pytest.approx(2 * math.sqrt(m["area_mm2"] / math.pi))
    assert m["eccentricity"] == pytest.approx(1 - b / a, abs=1e-5)
    lo, hi = m["min_ends"]
    assert np.linalg.norm(hi - lo) == pytest.approx(m["min_diameter_mm"], rel=1e-9)
    if a > b:  # the minimum runs along the minor axis through the centre
        np.testing.assert_allclose(0.5 * (lo + hi), [3.0, 4.0], atol=1e-3)
        minor = np.array([-math.sin(angle), math.cos(angle)])
        assert abs((hi - lo) @ minor) / np.linalg.norm(hi - lo) == pytest.approx(1.0, abs=1e-4)
        lo, hi = m["max_ends"]
        assert np.linalg.norm(hi - lo) == pytest.approx(2 * a, abs=1e-4)


def test_rectangle_calipers():
    # A 20 x 6 rectangle turned 30 deg: longest distance = the diagonal, smallest width = the short side.
    corners = np.array([[-10, -3], [10, -3], [10, 3], [-10, 3]], float)
    edges = [np.linspace(corners[i], corners[(i + 1) % 4], 50, endpoint=False) for i in range(4)]
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    p = np.concatenate(edges) @ np.array([[c, s], [-s, c]])
    cal = annulus.caliper_diameters(p)
    assert cal["max_mm"] == pytest.approx(math.hypot(20, 6), rel=1e-12)
    assert cal["min_mm"] == pytest.approx(6.0, rel=1e-5)


# ---------------------------------------------------------------- plane images


def test_plane_image_frames_round_trip():
    u, v = rotation([0.2, 1.0, 0.4], 40.0)[:, 0], rotation([0.2, 1.0, 0.4], 40.0)[:, 1]
    plane = annulus.PlaneImage(np.zeros((11, 21), np.float32), 0.5, np.array([1.0, 2.0, 3.0]), u, v)
    uv = np.array([[0.0, 0.0], [2.5, -1.0], [-5.0, 2.5]])
    world = plane.uv_to_world(uv)
    np.testing.assert_allclose(world[0], [1, 2, 3])
    np.testing.assert_allclose(plane.world_to_uv(world), uv, atol=1e-12)
    # Moving along the normal projects back onto the same plane point.
    np.testing.assert_allclose(plane.world_to_uv(world + 4.0 * plane.normal_lps), uv, atol=1e-12)
    # The centre is pixel ((21 - 1) / 2, (11 - 1) / 2) = (10, 5); columns run along u, rows along v.
    np.testing.assert_allclose(plane.uv_to_pixel(uv), [[10, 5], [15, 3], [0, 10]])
    np.testing.assert_allclose(plane.pixel_to_uv(plane.uv_to_pixel(uv)), uv, atol=1e-12)


def test_reconstruct_plane_matches_a_linear_field():
    # Linear interpolation reproduces a linear function of world position exactly, whatever the image's spacing
    # and direction, so every pixel must equal f(world position of that pixel); the slab mean of a linear field
    # is its value on the middle plane.
    grad, offset = np.array([3.0, -2.0, 5.0]), 100.0
    image = oblique_image(np.zeros((36, 40, 44)))
    image = oblique_image(voxel_world(image) @ grad + offset)
    axes = rotation([1.0, -0.5, 0.7], 50.0)
    center = np.array([6.0, -11.0, 41.0])
    for slab in (0.0, 1.0):
        plane = annulus.reconstruct_plane(image, center, axes[:, 0], axes[:, 1], size_mm=10.0, spacing_mm=0.5,
                                          slab_mm=slab)  # fmt: skip
        assert plane.pixels.shape == (21, 21) and plane.pixels.dtype == np.float32
        n_v, n_u = plane.pixels.shape
        cols, rows = np.meshgrid(np.arange(n_u), np.arange(n_v))
        world = plane.uv_to_world(plane.pixel_to_uv(np.stack([cols.ravel(), rows.ravel()], axis=1)))
        np.testing.assert_allclose(plane.pixels.ravel(), world @ grad + offset, atol=2e-2)  # float32 HU ~ 400
        np.testing.assert_allclose(plane.center_lps, center)
        assert plane.slab_mm == slab


def test_reconstruct_plane_orientation_and_outside_is_air():
    # A bright voxel block at a known world point shows up at its (u, v) pixel; far outside the CT is air.
    image = oblique_image(np.zeros((30, 30, 30)), spacing=(1.0, 1.0, 1.0))
    world = voxel_world(image)
    target = np.array([5.0, -12.0, 40.0]) + np.array([4.0, -3.0, 0.0])
    array = np.where(np.linalg.norm(world - target, axis=-1) < 1.5, 1000.0, 0.0)
    image = oblique_image(array, spacing=(1.0, 1.0, 1.0))
    u, v = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
    plane = annulus.reconstruct_plane(image, [5.0, -12.0, 40.0], u, v, size_mm=60.0, spacing_mm=0.5)
    row, col = np.unravel_index(np.argmax(plane.pixels), plane.pixels.shape)
    np.testing.assert_allclose(plane.pixel_to_uv([[col, row]])[0], [4.0, -3.0], atol=0.51)
    assert plane.pixels[0, 0] == AIR_HU  # the plane's corner lies 42 mm from the centre, outside the 30 mm CT


def test_reconstruct_plane_rejects_bad_arguments():
    image = oblique_image(np.zeros((8, 8, 8)))
    with pytest.raises(InputError, match="not orthogonal"):
        annulus.reconstruct_plane(image, [0, 0, 0], [1, 0, 0], [1, 1, 0])
    with pytest.raises(InputError, match="zero vector"):
        annulus.reconstruct_plane(image, [0, 0, 0], [0, 0, 0], [0, 1, 0])
    with pytest.raises(InputError, match="3D scalar"):
        annulus.reconstruct_plane(sitk.Image([8, 8], sitk.sitkFloat32), [0, 0, 0], [1, 0, 0], [0, 1, 0])
    with pytest.raises(InputError, match="spacing"):
        annulus.reconstruct_plane(image, [0, 0, 0], [1, 0, 0], [0, 1, 0], spacing_mm=0.0)


def test_annulus_plane_image_axes():
    hinges = np.array([[10.0, 0.0, 5.0], [-5.0, 8.66, 5.0], [-5.0, -8.66, 5.0]])  # counter-clockwise from +z
    plane = annulus.annulus_plane_image(oblique_image(np.zeros((8, 8, 8))), hinges, size_mm=10, spacing_mm=1.0)
    np.testing.assert_allclose(plane.u_lps, [1, 0, 0], atol=1e-12)  # towards RCC
    np.testing.assert_allclose(plane.normal_lps, [0, 0, 1], atol=1e-12)  # ventricle -> aorta
    np.testing.assert_allclose(plane.center_lps, hinges.mean(axis=0), atol=1e-12)


# ---------------------------------------------------------------- measuring a synthetic lumen


def elliptic_cylinder(a, b, noise_hu, seed=0, lumen_hu=400.0, tissue_hu=80.0):
    """An oblique, anisotropic CT of an elliptic cylinder of contrast (semi-axes a, b mm) along an oblique axis,
    with partial volume at its surface, a scanner blur of 0.6 mm and Gaussian noise; and three hinge points on
    its ellipse (RCC, LCC, NCC order, so the annulus normal is the cylinder axis)."""
    frame = rotation([0.4, -0.8, 0.3], 35.0)  # columns: major axis, minor axis, cylinder axis (LPS)
    center = np.array([5.0, -12.0, 40.0])
    image = oblique_image(np.zeros((60, 80, 80)), spacing=(0.6, 0.55, 0.9))
    local = (voxel_world(image) - center) @ frame
    rho = np.hypot(local[..., 0] / a, local[..., 1] / b)
    grad = np.hypot(local[..., 0] / a**2, local[..., 1] / b**2) / np.maximum(rho, 1e-9)
    distance = (rho - 1) / np.maximum(grad, 1e-9)  # first-order signed distance to the ellipse, mm
    occupancy = np.clip(0.5 - distance / 0.6, 0, 1)
    hu = tissue_hu + (lumen_hu - tissue_hu) * occupancy
    blurred = sitk.DiscreteGaussian(oblique_image(hu, spacing=(0.6, 0.55, 0.9)), 0.36, 32, 0.01, True)
    hu = sitk.GetArrayFromImage(blurred) + np.random.default_rng(seed).normal(0, noise_hu, hu.shape)
    t = np.radians([10.0, 130.0, 250.0])
    hinges = center + np.stack([a * np.cos(t), b * np.sin(t), 0 * t], axis=1) @ frame.T
    return oblique_image(hu, spacing=(0.6, 0.55, 0.9)), hinges


@pytest.mark.parametrize(("a", "b", "noise_hu"), [(13.0, 10.0, 0.0), (12.0, 11.0, 30.0)])
def test_measure_elliptic_cylinder(a, b, noise_hu):
    image, hinges = elliptic_cylinder(a, b, noise_hu)
    m = annulus.measure_annulus(image, hinges)
    assert m.ok, m.reason
    # Tolerances: ~1/3 of the clinical ones (2 mm, 5 %). The expected errors are the curvature shift of the
    # half-maximum contour under blur (sigma^2 / 2R ~ 0.02 mm radially) and noise averaged over 360 rays.
    assert m.perimeter_mm == pytest.approx(ramanujan_perimeter(a, b), abs=0.6)
    assert m.area_mm2 == pytest.approx(math.pi * a * b, rel=0.015)
    assert m.max_diameter_mm == pytest.approx(2 * a, abs=0.3)
    assert m.min_diameter_mm == pytest.approx(2 * b, abs=0.3)
    assert m.eccentricity == pytest.approx(1 - b / a, abs=0.02)
    assert m.threshold_hu == pytest.approx(240.0, abs=30.0)  # half way between 400 and 80 HU
    # Every contour point lies in the hinge plane, on the ellipse (radially within 0.3 mm).
    normal = m.plane_image.normal_lps
    np.testing.assert_allclose((m.contour_lps - hinges.mean(axis=0)) @ normal, 0.0, atol=1e-9)
    np.testing.assert_allclose(m.plane_image.uv_to_world(m.contour_uv_mm), m.contour_lps, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(m.max_diameter_ends_lps[1] - m.max_diameter_ends_lps[0]),
                               m.max_diameter_mm, rtol=1e-9)  # fmt: skip
    data = json.loads(json.dumps(m.to_dict()))
    assert data["ok"] is True and data["perimeter_mm"] == pytest.approx(m.perimeter_mm)
    assert len(data["contour_lps"]) == len(m.contour_lps) and "pixels" not in json.dumps(data)
    assert data["circumcircle_estimate"]["circumcircle_perimeter_mm"] > 0


def test_hinge_points_off_the_contour_are_warned():
    # Hinge points moved 25 % outwards in their plane (the plane stays): the contour is the same, each hinge lies
    # 0.25 x its distance from the centre outside it, and every one is reported.
    a, b = 13.0, 10.0
    image, hinges = elliptic_cylinder(a, b, 0.0)
    centre = np.array([5.0, -12.0, 40.0])
    moved = centre + 1.25 * (hinges - centre)
    m = annulus.measure_annulus(image, moved)
    assert m.ok, m.reason
    assert m.perimeter_mm == pytest.approx(ramanujan_perimeter(a, b), abs=0.6)
    np.testing.assert_allclose(m.hinge_offsets_mm, 0.25 * np.linalg.norm(hinges - centre, axis=1), atol=0.4)
    assert len(m.warnings) == 3 and all("outside the traced contour" in w for w in m.warnings)
    assert annulus.measure_annulus(image, hinges).warnings == ()


def test_measure_ignores_calcium_and_a_leaflet_line():
    # Calcium on the ring and a thin dark line (a leaflet) across the lumen change the contour by little.
    a, b = 13.0, 10.5
    image, hinges = elliptic_cylinder(a, b, 10.0)
    array = sitk.GetArrayFromImage(image)
    frame = rotation([0.4, -0.8, 0.3], 35.0)
    local = (voxel_world(image) - np.array([5.0, -12.0, 40.0])) @ frame
    calcium = np.linalg.norm(local - np.array([0.0, b, 0.0]), axis=-1) < 1.8  # a nodule on the ring
    leaflet = (np.abs(local[..., 0] - 6.0) < 0.5) & (local[..., 1] > 0)  # a 1 mm line through half the lumen
    array = np.where(leaflet, 100.0, np.where(calcium, 1200.0, array))
    m = annulus.measure_annulus(oblique_image(array, spacing=(0.6, 0.55, 0.9)), hinges)
    assert m.ok, m.reason
    assert m.perimeter_mm == pytest.approx(ramanujan_perimeter(a, b), abs=0.8)
    assert m.area_mm2 == pytest.approx(math.pi * a * b, rel=0.03)


def test_measure_small_phantom_case():
    from AorticRootLandmarksLib.phantom import generate_case

    case = generate_case(3, seed=0, size="small")  # ~1.4 mm voxels
    truth = case.truth["annulus"]
    m = annulus.measure_annulus(case.image, case.landmarks_lps)
    assert m.ok, m.reason
    # Voxels of ~1.4 mm blur the lumen edge 2-3x more than on full-size cases; tolerance = the (2 mm, 5 %).
    assert m.perimeter_mm == pytest.approx(truth["perimeter_mm"], abs=2.0)
    assert m.area_mm2 == pytest.approx(truth["area_mm2"], rel=0.05)
    assert m.min_diameter_mm == pytest.approx(truth["min_diameter_mm"], abs=1.0)
    assert m.max_diameter_mm == pytest.approx(truth["max_diameter_mm"], abs=1.0)


@pytest.mark.parametrize("value", [AIR_HU, 0.0])
def test_no_lumen_is_a_reason_not_an_exception(value):
    image, hinges = elliptic_cylinder(12.0, 10.0, 0.0)
    flat = sitk.GetArrayFromImage(image) * 0 + value
    m = annulus.measure_annulus(oblique_image(flat, spacing=(0.6, 0.55, 0.9)), hinges)
    assert not m.ok
    assert "no contrast-filled lumen" in m.reason
    assert math.isnan(m.perimeter_mm) and m.contour_lps.shape == (0, 3)
    data = json.loads(json.dumps(m.to_dict()))  # NaN -> null, still valid JSON
    assert data["ok"] is False and data["perimeter_mm"] is None and data["reason"] == m.reason


def test_measure_rejects_bad_arguments():
    image = oblique_image(np.zeros((8, 8, 8)))
    with pytest.raises(InputError, match="collinear"):
        annulus.measure_annulus(image, [[0, 0, 0], [1, 1, 1], [2, 2, 2]])
    with pytest.raises(InputError, match="shape"):
        annulus.measure_annulus(image, [[0, 0, 0], [1, 1, 1]])
    m = annulus.measure_annulus(sitk.Image([8, 8], sitk.sitkFloat32), [[0, 0, 0], [10, 0, 0], [0, 10, 0]])
    assert not m.ok and "3D" in m.reason


def test_fit_ellipse_recovers_a_rotated_off_centre_ellipse_and_refuses_a_line():
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    angle, centre = 0.4, np.array([3.0, -2.0])
    axes = np.stack([12.0 * np.cos(t), 8.0 * np.sin(t)], axis=1)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = centre + axes @ rot.T
    conic = annulus.fit_ellipse(points)
    a, b, c, d, e, f = conic / np.linalg.norm(conic)
    x, y = points.T
    assert np.abs(a * x * x + b * x * y + c * y * y + d * x + e * y + f).max() < 1e-9  # every point on the conic
    assert 4 * a * c - b * b > 0  # an ellipse
    centre_fit = np.linalg.solve([[2 * a, b], [b, 2 * c]], [-d, -e])
    np.testing.assert_allclose(centre_fit, centre, atol=1e-9)
    assert annulus.fit_ellipse(np.stack([t, 2 * t], axis=1)) is None  # collinear points fix no ellipse


def test_ring_fit_keeps_an_ellipse_elliptic_and_bridges_a_gap():
    """The radius of an ellipse about its centre, seen on rays with a 70 deg gap: the fit follows the ellipse in the
    gap too (the smoothness penalty acts on the deviations from the fitted ellipse, not on the ellipse)."""
    angles = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    radius = 1.0 / np.sqrt((np.cos(angles) / 13.0) ** 2 + (np.sin(angles) / 10.0) ** 2)
    use = ~((angles > np.radians(80)) & (angles < np.radians(150)))
    fit = annulus.ring_fit(angles, np.where(use, radius, 0.0), use, 8, 3e-2)
    assert np.abs(fit - radius).max() < 0.05
    assert fit.max() - fit.min() == pytest.approx(3.0, abs=0.05)  # not made rounder
