"""inference.combine_folds: the two ways of ensembling fold models, on maps whose peaks are known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from AorticRootLandmarksLib.inference import combine_folds


def parabola(shape, centre, height=0.0):
    grids = np.indices(shape).astype(float)
    return height - sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True))


def test_maps_and_coordinates_ensembling_by_hand():
    # Two folds, one landmark: parabolas of curvature 1 at a = (2, 3, 4) and b = (4, 3, 4), the second 6 higher.
    # Mean map: -((x-2)^2 + (x-4)^2)/2 + 3 - ... = -(x-3)^2 - 1 + 3 - ...: its peak is at x = 3 (heights only shift it
    # by a constant), so "maps" finds (3, 3, 4); "coordinates" averages the folds' peaks: also (3, 3, 4) here.
    shape = (8, 8, 8)
    a, b = (2.0, 3.0, 4.0), (4.0, 3.0, 4.0)
    maps = np.stack([parabola(shape, a)[None], parabola(shape, b, 6.0)[None]])
    for ensembling in ("maps", "coordinates"):
        index, score, folds = combine_folds(maps, "quadratic", ensembling)
        np.testing.assert_allclose(folds[:, 0], [a, b], atol=1e-9)
        np.testing.assert_allclose(index[0], [3.0, 3.0, 4.0], atol=1e-9)
        assert score[0] == pytest.approx(maps.mean(axis=0)[0, 3, 3, 4])  # -1 + 3 = 2


def test_coordinates_ensembling_averages_fold_peaks_where_the_mean_map_would_not():
    # Fold 1 peaks sharply at (1, 1, 1) (curvature 10), fold 2 gently at (5, 1, 1) (curvature 1). The mean map peaks
    # where 10 (x - 1) + (x - 5) = 0, x = 15/11; the coordinates mean is x = 3.
    shape = (8, 4, 4)
    sharp = 10 * parabola(shape, (1.0, 1.0, 1.0))
    gentle = parabola(shape, (5.0, 1.0, 1.0))
    maps = np.stack([sharp[None], gentle[None]])
    by_maps = combine_folds(maps, "quadratic", "maps")[0][0]
    by_coordinates = combine_folds(maps, "quadratic", "coordinates")[0][0]
    np.testing.assert_allclose(by_coordinates, [3.0, 1.0, 1.0], atol=1e-9)
    assert by_maps[0] == pytest.approx(15 / 11, abs=0.2)  # quadratic sub-voxel on the voxel grid: near 1.36
    with pytest.raises(ValueError, match="unknown ensembling"):
        combine_folds(maps, "quadratic", "median")
