"""grid: exact grid <-> world transforms, resampling with orientation handled, anti-aliasing."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from helpers import make_image

from AorticRootLandmarksLib.grid import (
    GridSpec,
    NetworkGrid,
    VoxelGrid,
    fine_factors,
    image_center_lps,
    make_grid,
    resample_to_grid,
    shrink_factors,
)

OBLIQUE = tuple(
    sitk.VersorTransform((0.3, -0.5, 0.8), 0.7).GetMatrix()  # a rotation: direction cosines of an oblique scan
)


# make_image's defaults: size (40, 36, 30), spacing (1.0, 1.2, 1.5), origin (10, -20, 30). Its centre index is
# ((n - 1) / 2) = (19.5, 17.5, 14.5), i.e. (19.5, 21.0, 21.75) mm from the origin along the image's own axes, and
# the world centre is origin + D @ (19.5, 21.0, 21.75) with D the direction matrix (its columns are the image axes).
@pytest.mark.parametrize(
    "direction, centre_lps",
    [
        # identity: (10 + 19.5, -20 + 21.0, 30 + 21.75)
        pytest.param(None, (29.5, 1.0, 51.75), id="identity"),
        # x and z flipped: (10 - 19.5, -20 + 21.0, 30 - 21.75)
        pytest.param((-1, 0, 0, 0, 1, 0, 0, 0, -1), (-9.5, 1.0, 8.25), id="flipped"),
        # image axis 0 along LPS y, axis 1 along LPS x, axis 2 along -z: (10 + 21.0, -20 + 19.5, 30 - 21.75)
        pytest.param((0, 1, 0, 1, 0, 0, 0, 0, -1), (31.0, -0.5, 8.25), id="permuted"),
    ],
)
def test_grid_is_centred_on_the_image(direction, centre_lps):
    image = make_image(direction=direction)
    grid = make_grid(image, GridSpec(spacing=2.0, size=(10, 10, 10)))
    np.testing.assert_allclose(image_center_lps(image), centre_lps, rtol=0, atol=1e-9)
    # voxel (0, 0, 0) is 4.5 voxels of 2 mm = 9 mm below the centre on every axis; the centre voxel is (4.5, 4.5, 4.5)
    np.testing.assert_allclose(grid.origin, np.asarray(centre_lps) - 9.0, rtol=0, atol=1e-9)
    np.testing.assert_allclose(grid.index_to_world([4.5, 4.5, 4.5]), centre_lps, rtol=0, atol=1e-9)
    assert grid.spacing == 2.0 and grid.size == (10, 10, 10)


def test_make_grid_on_a_given_centre():
    image = make_image(direction=(-1, 0, 0, 0, 1, 0, 0, 0, -1))
    grid = make_grid(image, GridSpec(spacing=1.6, size=(8, 6, 4)), center_lps=(1.0, 2.0, 3.0))
    # origin = centre - 1.6 * (size - 1) / 2 = (1 - 5.6, 2 - 4.0, 3 - 2.4); the image's own centre plays no part
    np.testing.assert_allclose(grid.origin, [-4.6, -2.0, 0.6], rtol=0, atol=1e-9)


# origin (-10, 5, 2.5), 1.6 mm voxels: world = origin + 1.6 * index, worked out per row
GRID_POINTS = [
    ((0.0, 0.0, 0.0), (-10.0, 5.0, 2.5)),
    ((1.0, 2.0, 3.0), (-8.4, 8.2, 7.3)),  # (-10 + 1.6, 5 + 3.2, 2.5 + 4.8)
    ((2.5, -1.0, 0.25), (-6.0, 3.4, 2.9)),  # sub-voxel and outside the box: (-10 + 4, 5 - 1.6, 2.5 + 0.4)
    ((7.0, 7.0, 7.0), (1.2, 16.2, 13.7)),  # the last voxel: + 11.2 on every axis
]


def test_index_to_world_and_back_by_hand():
    grid = NetworkGrid(origin=np.array([-10.0, 5.0, 2.5]), spacing=1.6, size=(8, 8, 8))
    indices = np.array([index for index, _ in GRID_POINTS])
    worlds = np.array([world for _, world in GRID_POINTS])
    np.testing.assert_allclose(grid.index_to_world(indices), worlds, rtol=0, atol=1e-9)
    np.testing.assert_allclose(grid.world_to_index(worlds), indices, rtol=0, atol=1e-9)
    # (..., 3) in, (..., 3) out: a (2, 2, 3) batch keeps its shape
    np.testing.assert_allclose(grid.index_to_world(indices.reshape(2, 2, 3)), worlds.reshape(2, 2, 3), atol=1e-9)
    # inside the voxel-centre box [0, 7]^3 only: rows 0, 1 and 3 (row 2 has y = -1)
    np.testing.assert_array_equal(grid.contains(worlds), [True, True, False, True])


def test_block_lands_at_the_grid_index_worked_out_by_hand():
    """A 2x2x2 block of 200 HU in a flipped image at the grid's own spacing: every image voxel centre is a grid point.

    Image: size (20, 18, 16), spacing 1.6, origin 0, direction diag(-1, 1, -1); centre index (9.5, 8.5, 7.5) is at
    world (-15.2, 13.6, -12.0). The grid of the same size is centred there, so its origin is
    (-15.2, 13.6, -12.0) - 1.6 * (9.5, 8.5, 7.5) = (-30.4, 0, -24.0) and image voxel (i, j, k) sits at world
    (-1.6 i, 1.6 j, -1.6 k), i.e. grid index (19 - i, j, 15 - k). The block covers image i in 3..4, j in 4..5,
    k in 5..6, hence grid x in 15..16, y in 4..5, z in 9..10; 200 HU in the window (-1000, 1000) is 0.6.
    """
    flipped = (-1, 0, 0, 0, 1, 0, 0, 0, -1)
    image = make_image(size=(20, 18, 16), spacing=(1.6, 1.6, 1.6), origin=(0, 0, 0), direction=flipped, value=-1000)
    array = sitk.GetArrayFromImage(image)  # (z, y, x)
    array[5:7, 4:6, 3:5] = 200
    drawn = sitk.GetImageFromArray(array)
    drawn.CopyInformation(image)
    grid = make_grid(drawn, GridSpec(spacing=1.6, size=(20, 18, 16)))
    np.testing.assert_allclose(grid.origin, [-30.4, 0.0, -24.0], rtol=0, atol=1e-9)
    expected = np.zeros((20, 18, 16), np.float32)
    expected[15:17, 4:6, 9:11] = 0.6
    np.testing.assert_allclose(resample_to_grid(drawn, grid, window=(-1000, 1000)), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "first_bright, expected_profile",
    [
        pytest.param(32, [0, 0, 0, 0, 1, 1, 1, 1], id="on-a-boundary"),  # the edge between network voxels 3 and 4
        pytest.param(33, [0, 0, 0, 0, 0.75, 1, 1, 1], id="3-of-4"),  # 3 of the 4 CT voxels of network voxel 4 bright
        pytest.param(34, [0, 0, 0, 0, 0.5, 1, 1, 1], id="2-of-4"),
        pytest.param(35, [0, 0, 0, 0, 0.25, 1, 1, 1], id="1-of-4"),
    ],
)
def test_step_edge_box_mean_by_hand(first_bright, expected_profile):
    """Each network voxel is the mean of the CT over its box, through BinShrink, fine resampling and BinShrink.

    CT: 64 voxels of 0.4 mm along x (centres 0, 0.4, ..., 25.2), 0 HU below `first_bright`, 1000 HU from there on.
    Grid: 1.6 mm, 8 voxels along x centred at x = 12.6, so its origin is 12.6 - 1.6 * 3.5 = 7.0 and network voxel n
    spans [6.2 + 1.6 n, 7.8 + 1.6 n], i.e. exactly the CT voxels 4 n + 16 ... 4 n + 19 (CT voxel i spans
    [0.4 i - 0.2, 0.4 i + 0.2]). Network voxel 4 (CT voxels 32..35) is therefore the fraction of those four that is
    bright; voxels 0-3 are all 0 and 5-7 all 1000 (window (0, 1000) maps them to 0 and 1). In y and z the CT is 4
    voxels (1.6 mm) wide and constant, one network voxel centred on it.
    """
    array = np.zeros((4, 4, 64), np.float32)  # (z, y, x)
    array[:, :, first_bright:] = 1000.0
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.4, 0.4, 0.4))
    grid = make_grid(image, GridSpec(spacing=1.6, size=(8, 1, 1)), center_lps=(12.6, 0.6, 0.6))
    np.testing.assert_allclose(grid.origin, [7.0, 0.6, 0.6], rtol=0, atol=1e-9)
    volume = resample_to_grid(image, grid, window=(0, 1000))
    np.testing.assert_allclose(volume[:, 0, 0], expected_profile, rtol=0, atol=1e-5)


@pytest.mark.parametrize("direction", [None, (-1, 0, 0, 0, -1, 0, 0, 0, 1), OBLIQUE])
def test_bright_voxel_lands_at_its_world_position(direction):
    """A bright blob drawn at a known world point appears at that point on the grid, whatever the axes' directions."""
    image = make_image(size=(60, 60, 60), spacing=(0.8, 0.8, 0.8), direction=direction, value=-1000)
    target = image_center_lps(image) + np.array([6.0, -4.0, 3.0])
    centre = np.array(image.TransformPhysicalPointToIndex(target.tolist()))
    array = sitk.GetArrayFromImage(image)
    i, j, k = centre
    array[k - 2 : k + 3, j - 2 : j + 3, i - 2 : i + 3] = 1000  # 5-voxel cube around the target (array is z, y, x)
    drawn = sitk.GetImageFromArray(array)
    drawn.CopyInformation(image)
    exact = np.array(image.TransformIndexToPhysicalPoint(centre.tolist()))
    grid = make_grid(drawn, GridSpec(spacing=1.6, size=(24, 24, 24)))
    volume = resample_to_grid(drawn, grid, window=(-1000, 1000))
    weights = np.clip(volume - volume.min(), 0, None)
    com = np.array([(g * weights).sum() / weights.sum() for g in np.indices(volume.shape)])
    np.testing.assert_allclose(grid.index_to_world(com), exact, atol=0.2)  # sub-voxel, cube symmetric


def test_window_and_outside_is_air():
    image = make_image(size=(10, 10, 10), spacing=(1, 1, 1), value=500)
    grid = make_grid(image, GridSpec(spacing=1.0, size=(16, 16, 16)))  # larger than the image: padded
    volume = resample_to_grid(image, grid, window=(-1000, 1000))
    assert volume.shape == (16, 16, 16) and volume.dtype == np.float32
    assert volume[8, 8, 8] == pytest.approx(0.75)  # (500 + 1000) / 2000
    assert volume[0, 0, 0] == pytest.approx(0.0)  # air outside the field of view


def test_factors():
    image = make_image(size=(40, 40, 20), spacing=(0.4, 0.7, 1.25), direction=(0, 1, 0, 1, 0, 0, 0, 0, -1))
    # floor(1.6 / s) = 4, 2, 1 per image axis; the first, cheap block mean takes half of it
    np.testing.assert_array_equal(shrink_factors(image, 1.6), [2, 1, 1])
    # image axis 0 (0.4 mm) runs along LPS y and axis 1 (0.7 mm) along LPS x: fine factors are per grid axis
    np.testing.assert_array_equal(fine_factors(image, 1.6), [2, 4, 1])


def test_output_does_not_depend_on_grid_placement():
    """Shifting the grid by a fraction of a CT voxel must not change how sharp an edge looks (it did with
    block-mean-then-interpolate: benchmarks/bench_resample.py)."""
    array = np.full((40, 40, 160), -1000.0, np.float32)
    array[:, :, 80:] = 1000.0  # a sharp edge across x at 0.4 mm
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.4, 0.4, 0.4))
    profiles = []
    for shift in (0.0, 0.1, 0.2, 0.3):
        grid = make_grid(image, GridSpec(spacing=1.6, size=(16, 4, 4)), image_center_lps(image) + [shift, 0, 0])
        volume = resample_to_grid(image, grid, window=(-1000, 1000))
        profile = volume[:, 1, 1]
        profiles.append(np.sum((profile > 0.02) & (profile < 0.98)))  # voxels on the ramp of the edge
    assert max(profiles) == 1  # an edge inside one network voxel is one grey voxel, wherever it falls


def test_antialias_suppresses_aliasing():
    """A 2-voxel stripe pattern at 0.4 mm averages to grey at 1.6 mm instead of aliasing to stripes."""
    array = np.zeros((8, 8, 64), np.float32)
    array[:, :, ::2] = 1000.0  # stripes along x: 0, 1000, 0, 1000 ...
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.4, 0.4, 0.4))
    grid = make_grid(image, GridSpec(spacing=1.6, size=(12, 2, 2)))
    volume = resample_to_grid(image, grid, window=(0, 1000))
    assert np.ptp(volume[2:-2]) < 0.05 and volume[2:-2].mean() == pytest.approx(0.5, abs=0.05)


# ------------------------------------------------------------------------------ VoxelGrid: the general grid

#: Direction cosines (columns: LPS directions of i, j, k): i runs along +y, j along -x, k along -z (left-handed).
PERMUTED = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])


def test_voxel_grid_index_world_by_hand():
    grid = VoxelGrid([10.0, -20.0, 30.0], [0.5, 2.0, 3.0], (8, 6, 5), PERMUTED)
    # Index (2, 3, 4) is (1, 6, 12) mm along i, j, k, i.e. 1 * (+y) + 6 * (-x) + 12 * (-z) = (-6, 1, -12) mm from the
    # origin: world (10 - 6, -20 + 1, 30 - 12) = (4, -19, 18).
    np.testing.assert_allclose(grid.index_to_world([2, 3, 4]), [4.0, -19.0, 18.0], atol=1e-12)
    np.testing.assert_allclose(grid.world_to_index([4.0, -19.0, 18.0]), [2.0, 3.0, 4.0], atol=1e-12)
    np.testing.assert_allclose(grid.world_to_index([[4.0, -19.0, 18.0]] * 2), [[2.0, 3.0, 4.0]] * 2, atol=1e-12)
    assert grid.shape == (5, 6, 8)  # arrays on it are (nz, ny, nx)
    # z = 31 is 1 mm above the origin's z = 30, against the k axis (-z): k = -1/3, outside.
    assert grid.contains([4.0, -19.0, 18.0]) and not grid.contains([4.0, -19.0, 31.0])
    # Corner voxel centres: i in {0, 7} spans y 0..3.5 mm, j in {0, 5} spans x 0..-10 mm, k in {0, 4} z 0..-12 mm.
    corners = grid.corners()
    np.testing.assert_allclose(corners.min(0), [0.0, -20.0, 18.0], atol=1e-12)
    np.testing.assert_allclose(corners.max(0), [10.0, -16.5, 30.0], atol=1e-12)


@pytest.mark.parametrize("direction", [np.diag([-1.0, 1.0, -1.0]), PERMUTED, np.reshape(OBLIQUE, (3, 3))])
def test_voxel_grid_agrees_with_simpleitk(direction):
    """Index <-> world as SimpleITK computes it for an image of the same geometry (anisotropic, flipped or oblique)."""
    image = make_image(size=(7, 9, 5), spacing=(0.7, 1.3, 2.1), origin=(-4.0, 12.5, 100.0), direction=direction.ravel())
    grid = VoxelGrid(image.GetOrigin(), image.GetSpacing(), image.GetSize(), direction)
    index = np.random.default_rng(0).uniform(-2, 10, size=(25, 3))  # continuous, some outside the grid
    world = np.array([image.TransformContinuousIndexToPhysicalPoint(v.tolist()) for v in index])
    np.testing.assert_allclose(grid.index_to_world(index), world, atol=1e-9)
    np.testing.assert_allclose(grid.world_to_index(world), index, atol=1e-9)
    back = np.array([image.TransformPhysicalPointToContinuousIndex(p.tolist()) for p in world])
    np.testing.assert_allclose(grid.world_to_index(world), back, atol=1e-9)
    np.testing.assert_allclose(VoxelGrid.from_image(image).index_to_world(index), world, atol=1e-9)
    # Arrays on the grid are (nz, ny, nx): voxel (i, j, k) is array[k, j, i].
    array = np.arange(np.prod(grid.shape), dtype=np.float32).reshape(grid.shape)
    written = grid.image(array)
    assert written.GetSize() == image.GetSize() and written[3, 5, 2] == array[2, 5, 3]
    np.testing.assert_allclose(written.GetDirection(), image.GetDirection(), atol=1e-12)
    np.testing.assert_allclose(written.GetOrigin(), image.GetOrigin(), atol=1e-12)
    empty = grid.image()
    assert empty.GetSize() == image.GetSize() and empty.GetPixelID() == sitk.sitkFloat32


def test_voxel_grid_refuses_an_array_in_x_y_z_order():
    grid = VoxelGrid([0.0, 0.0, 0.0], [1.0, 1.0, 2.0], (8, 6, 5))
    with pytest.raises(ValueError, match="not on this grid"):
        grid.image(np.zeros((8, 6, 5), np.float32))


def test_network_grid_is_the_isotropic_axis_aligned_voxel_grid():
    """NetworkGrid (arrays [x, y, z]) and VoxelGrid (arrays (z, y, x)) map indices to the world the same way."""
    network = make_grid(make_image(direction=OBLIQUE), GridSpec(spacing=1.6, size=(16, 12, 8)))
    general = VoxelGrid(network.origin, network.spacing, network.size)
    index = np.random.default_rng(1).uniform(-1, 16, size=(20, 3))
    points = network.index_to_world(index)
    np.testing.assert_allclose(general.index_to_world(index), points, atol=1e-12)
    np.testing.assert_allclose(general.world_to_index(points), network.world_to_index(points), atol=1e-12)
    np.testing.assert_array_equal(general.contains(points), network.contains(points))
    assert general.shape == tuple(reversed(network.size))
