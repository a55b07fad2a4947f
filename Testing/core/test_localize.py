"""Finding the root anywhere in a scan: the localizer's coarse pass and the recentred network grid.

The stand-in localizer returns a map that peaks at a chosen world point; a flipped, permuted image places that point
far from the image centre, so the grid must follow the localizer (not the image centre), in world LPS mm.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import make_image

from AorticRootLandmarksLib.detection import detect, place_grid
from AorticRootLandmarksLib.grid import GridSpec, image_center_lps, make_grid
from AorticRootLandmarksLib.inference import Ensemble
from AorticRootLandmarksLib.localize import MAX_FOLD_SPREAD_MM, locate_root, root_from_landmarks

torch = pytest.importorskip("torch")

LOC_SPEC = GridSpec(spacing=8.0, size=(32, 32, 32))
STAGE_SPEC = GridSpec(spacing=4.0, size=(8, 8, 8))
#: x and z flipped, y and z swapped: direction columns are the image axes in LPS.
DIRECTION = (-1, 0, 0, 0, 0, 1, 0, -1, 0)


def parabola(shape, centre):
    grids = np.indices(shape).astype(float)
    return -sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True))


class PeakAt(torch.nn.Module):
    """A stand-in network whose output peaks at a fixed grid index, whatever the input."""

    def __init__(self, size, indices):
        super().__init__()
        self.maps = torch.from_numpy(np.stack([parabola(size, i) for i in indices]).astype(np.float32))

    def forward(self, x):
        assert tuple(x.shape[2:]) == tuple(self.maps.shape[1:])
        return self.maps[None]


def _localizer(image, root_lps, fold_offsets_mm=((0, 0, 0),)):
    grid = make_grid(image, LOC_SPEC, image_center_lps(image))
    folds = [PeakAt(LOC_SPEC.size, [grid.world_to_index(np.asarray(root_lps) + o)]) for o in fold_offsets_mm]
    meta = {"landmarks": ["ROOT"], "grid": LOC_SPEC.to_dict(), "activation": "identity", "decoding": "quadratic"}
    return Ensemble(folds, meta, torch.device("cpu"))


def _image():
    # 60 x 50 x 40 voxels of 2 x 2.5 x 3 mm: extents 120 x 125 x 120 mm
    return make_image(size=(60, 50, 40), spacing=(2.0, 2.5, 3.0), origin=(40.0, -70.0, 20.0), direction=DIRECTION)


def test_the_root_is_found_far_from_the_image_centre():
    image = _image()
    centre = image_center_lps(image)
    # image centre by hand: origin + D @ (spacing * (size - 1) / 2); D's columns (the i, j, k axes in LPS) are
    # (-1, 0, 0), (0, 0, -1), (0, 1, 0), half extents (59, 61.25, 58.5): (40 - 59, -70 + 58.5, 20 - 61.25)
    np.testing.assert_allclose(centre, [-19.0, -11.5, -41.25], atol=1e-9)
    root = centre + np.array([35.0, -30.0, 40.0])  # 61 mm off centre, still inside the image
    location = locate_root(image, _localizer(image, root))
    assert location.found and location.method == "localizer" and location.spread_mm == pytest.approx(0.0, abs=1e-3)
    np.testing.assert_allclose(location.center_lps, root, atol=0.01)


def test_detection_recentres_the_network_grid_on_the_localizer(tmp_path):
    image = _image()
    root = image_center_lps(image) + np.array([35.0, -30.0, 40.0])
    # stage 1 peaks at its grid centre (3.5, 3.5, 3.5): the detected point is wherever the grid was put
    stage = Ensemble([PeakAt(STAGE_SPEC.size, [(3.5, 3.5, 3.5)])],
                     {"landmarks": ["A"], "grid": STAGE_SPEC.to_dict(), "activation": "identity",
                      "decoding": "quadratic"}, torch.device("cpu"), localizer=_localizer(image, root))
    detection = detect(image, stage)
    np.testing.assert_allclose(detection.grid.origin, root - 3.5 * 4.0, atol=0.01)
    np.testing.assert_allclose(detection.positions_lps[0], root, atol=0.01)
    assert detection.to_dict()["root_location"]["method"] == "localizer"
    # without the localizer the same model looks at the image centre, 61 mm away
    stage.localizer = None
    assert np.linalg.norm(detect(image, stage).positions_lps[0] - root) > 60


def test_a_seed_point_overrides_the_localizer():
    image = _image()
    seed = image_center_lps(image) + np.array([-20.0, 10.0, 5.0])
    stage = Ensemble([], {"landmarks": ["A"], "grid": STAGE_SPEC.to_dict()}, torch.device("cpu"),
                     localizer=_localizer(image, image_center_lps(image)))
    location = place_grid(image, stage, seed)
    assert location.method == "seed point"
    np.testing.assert_allclose(location.center_lps, seed)
    stage.localizer = None
    assert place_grid(image, stage).method == "image centre"


def test_a_lost_localizer_says_so():
    image = _image()
    centre = image_center_lps(image)
    apart = ((0, 0, 0), (2 * MAX_FOLD_SPREAD_MM + 10, 0, 0))  # two folds 40 mm apart: rms spread 20 mm > 15
    location = locate_root(image, _localizer(image, centre, apart))
    assert not location.found and "disagree" in location.reason
    # the image spans z -102.5 .. 20 mm; the localizer grid reaches 128 mm above the centre
    outside = locate_root(image, _localizer(image, centre + np.array([0.0, 0.0, 90.0])))
    assert not outside.found and "outside the image" in outside.reason


def test_the_localizer_target_is_the_hinge_centroid():
    points = np.array([[0.0, -10.0, 0.0], [8.66, 5.0, 0.0], [-8.66, 5.0, 3.0], [50.0, 50.0, 50.0]])
    np.testing.assert_allclose(root_from_landmarks(["RCC", "LCC", "NCC", "LCO"], points), [0.0, 0.0, 1.0])


def test_a_localizers_root_is_not_judged_as_a_boundary_point():
    # The root centre lies inside the lumen: the blood/tissue boundary term must not lower its confidence.
    image = _image()  # uniform 0 HU: no boundary anywhere
    centre = image_center_lps(image)
    localizer = _localizer(image, centre)
    root = detect(image, localizer).quality.points[0]
    assert root.terms["boundary"] == pytest.approx(1.0)
    stage = Ensemble(localizer.networks, {**localizer.meta, "landmarks": ["RCC"]}, torch.device("cpu"))
    assert detect(image, stage).quality.points[0].terms["boundary"] < 1.0  # a hinge point there would be
