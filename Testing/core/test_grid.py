"""grid: exact grid <-> world transforms, resampling with orientation handled, anti-aliasing."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from helpers import make_image

from AorticRootLandmarksLib.grid import (
    GridSpec,
    fine_factors,
    image_center_lps,
    make_grid,
    resample_to_grid,
    shrink_factors,
)

OBLIQUE = tuple(
    sitk.VersorTransform((0.3, -0.5, 0.8), 0.7).GetMatrix()  # a rotation: direction cosines of an oblique scan
)


@pytest.mark.parametrize("direction", [None, (-1, 0, 0, 0, 1, 0, 0, 0, -1), OBLIQUE])
def test_world_grid_world_round_trip(direction):
    image = make_image(direction=direction)
    grid = make_grid(image, GridSpec(spacing=1.6, size=(16, 16, 8)))
    rng = np.random.default_rng(0)
    points = image_center_lps(image) + rng.uniform(-10, 10, size=(20, 3))
    np.testing.assert_allclose(grid.index_to_world(grid.world_to_index(points)), points, atol=1e-2 * 1e-3)
    # and through the image's own index space, as read from the file
    for point in points:
        index = image.TransformPhysicalPointToContinuousIndex(point.tolist())
        np.testing.assert_allclose(image.TransformContinuousIndexToPhysicalPoint(index), point, atol=1e-5)


def test_grid_is_centred_on_the_image():
    image = make_image(direction=(-1, 0, 0, 0, 1, 0, 0, 0, -1))
    grid = make_grid(image, GridSpec(spacing=2.0, size=(10, 10, 10)))
    # the grid's centre voxel (4.5, 4.5, 4.5) sits on the image's physical centre
    np.testing.assert_allclose(grid.index_to_world([4.5, 4.5, 4.5]), image_center_lps(image))


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
