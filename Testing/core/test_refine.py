"""The second stage: patches of the CT in world LPS mm, refinement, its failures and how detection reports them.

The stand-in refiner returns its input patch as the map of every landmark, so its peak is the brightest point of the
CT in the patch: a Gaussian blob at a known sub-voxel world point, in images with oblique direction cosines and
anisotropic spacing. Whatever the refiner finds is then a check of the patch geometry (world <-> patch index).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from AorticRootLandmarksLib import qc
from AorticRootLandmarksLib.detection import detect
from AorticRootLandmarksLib.errors import InputError
from AorticRootLandmarksLib.grid import GridSpec, VoxelGrid, resample_patch, resample_to_grid
from AorticRootLandmarksLib.inference import Ensemble, attach_refiner, load_ensemble, save_model_dir
from AorticRootLandmarksLib.refine import (
    BORDER,
    NOT_REFINED,
    OUTSIDE,
    RECENTRED,
    REFINED,
    extract_patch,
    on_border,
    outside_fraction,
    patch_grid,
    refine,
)

torch = pytest.importorskip("torch")

#: 24^3 patches of 0.5 mm: 12 mm a side, the centre 5.75 mm from each face's voxel centres.
PATCH = GridSpec(spacing=0.5, size=(24, 24, 24))
OBLIQUE = tuple(sitk.VersorTransform((0.3, -0.5, 0.8), 0.7).GetMatrix())  # direction cosines of an oblique scan
SPACING = (0.45, 0.4, 0.5)  # anisotropic
BLOB_SIGMA_MM = 2.0


def blob_image(centre_lps, direction=OBLIQUE, spacing=SPACING, size=(90, 100, 80), height=1000.0):
    """0 HU with a Gaussian blob of `height` HU at `centre_lps` (world LPS mm); the image is centred on it too."""
    grid = VoxelGrid(np.zeros(3), spacing, size, np.reshape(direction, (3, 3)))
    middle = grid.index_to_world((np.asarray(size) - 1) / 2)
    grid = VoxelGrid(np.asarray(centre_lps) - middle + grid.origin, spacing, size, grid.direction)
    k, j, i = np.indices(grid.shape)
    world = grid.index_to_world(np.stack([i, j, k], axis=-1))
    distance2 = np.sum((world - np.asarray(centre_lps)) ** 2, axis=-1)
    return grid.image((height * np.exp(-distance2 / (2 * BLOB_SIGMA_MM**2))).astype(np.float32))


class PatchAsMap(torch.nn.Module):
    """A stand-in refiner: the map of each of K landmarks is the input patch itself."""

    def __init__(self, landmarks: int):
        super().__init__()
        self.landmarks = landmarks

    def forward(self, x):
        return x.repeat(1, self.landmarks, 1, 1, 1)


def identity_refiner(names=("RCC", "LCC", "NCC"), folds=1):
    meta = {"landmarks": list(names), "grid": PATCH.to_dict(), "activation": "identity", "decoding": "quadratic"}
    return Ensemble([PatchAsMap(len(names)) for _ in range(folds)], meta, torch.device("cpu"))


BLOB = np.array([12.3, -41.7, 88.05])


# --- patch geometry -----------------------------------------------------------------------------------------------


def test_patch_grid_round_trip_by_hand():
    grid = patch_grid([1.0, 2.0, 3.0], PATCH)
    # origin = centre - 0.5 * 23 / 2 = centre - 5.75 mm on every axis; index (11.5, 11.5, 11.5) is the centre
    np.testing.assert_allclose(grid.origin, [-4.75, -3.75, -2.75], atol=1e-12)
    np.testing.assert_allclose(grid.index_to_world([11.5, 11.5, 11.5]), [1.0, 2.0, 3.0], atol=1e-12)
    points = np.random.default_rng(0).uniform(-20, 20, (50, 3))
    np.testing.assert_allclose(grid.index_to_world(grid.world_to_index(points)), points, atol=1e-12)


@pytest.mark.parametrize("direction", [None, (-1, 0, 0, 0, 1, 0, 0, 0, -1), (0, 1, 0, 1, 0, 0, 0, 0, -1), OBLIQUE],
                         ids=["identity", "flipped", "permuted", "oblique"])
def test_a_blob_lands_at_its_world_position_in_the_patch(direction):
    image = blob_image(BLOB, direction=(1, 0, 0, 0, 1, 0, 0, 0, 1) if direction is None else direction)
    centre = BLOB + np.array([1.3, -2.1, 0.7])  # a first-stage point 2.6 mm off
    patch, grid = extract_patch(image, centre, PATCH)
    assert patch.shape == PATCH.size and patch.dtype == np.float32
    # window -500..1500 HU: 0 HU background is 0.25, the blob's top 0.75
    assert patch.min() == pytest.approx(0.25, abs=1e-3) and 0.6 < patch.max() <= 0.75
    weights = np.clip(patch - 0.25 - 0.5 * (patch.max() - 0.25), 0, None)  # the blob's upper half: symmetric
    index = np.array([(np.indices(patch.shape)[a] * weights).sum() / weights.sum() for a in range(3)])
    np.testing.assert_allclose(grid.index_to_world(index), BLOB, atol=0.05)  # linear interpolation of 0.4-0.5 mm voxels


def test_resample_patch_equals_resample_to_grid_on_a_fine_grid():
    image = blob_image(BLOB)
    grid = patch_grid(BLOB, PATCH)
    np.testing.assert_allclose(resample_patch(sitk.Cast(image, sitk.sitkInt16), grid),
                               resample_to_grid(sitk.Cast(image, sitk.sitkInt16), grid), atol=1e-6)  # fmt: skip


def test_a_patch_beyond_the_image_border_is_air_and_its_share_is_reported():
    image = blob_image(BLOB, size=(40, 40, 40), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1), spacing=(1.0, 1.0, 1.0))
    corner = VoxelGrid.from_image(image).index_to_world([39.5, 20.0, 20.0])  # on the +x face (voxel edge)
    patch, grid = extract_patch(image, corner, PATCH)
    # half the patch along x lies beyond the face: its voxels there are air (-1000 HU -> 0 after the window)
    assert outside_fraction(image, grid) == pytest.approx(0.5, abs=0.05)
    assert np.all(patch[13:] == 0.0) and np.all(patch[:11] > 0.2)


@pytest.mark.parametrize("index, border", [((11.5, 11.5, 11.5), False), ((1.0, 5, 5), False), ((0.9, 5, 5), True),
                                           ((5, 22.0, 5), False), ((5, 22.1, 5), True), ((5, 5, 23), True)])
def test_on_border(index, border):
    assert on_border(np.array(index, float), PATCH.size) is border


# --- refinement ---------------------------------------------------------------------------------------------------


def test_refine_finds_the_blob_and_keeps_what_it_cannot_refine():
    image = blob_image(BLOB)
    stage1 = np.stack([
        BLOB + [1.1, -0.8, 1.4],  # 2 mm off: one pass
        BLOB + [0.0, 4.0, -1.0],  # 4.1 mm off, more than a quarter patch (3 mm): recentred
        BLOB + [9.0, 0.0, 0.0],  # 9 mm off: the blob is outside its patch, the peak on the border
        BLOB + [0.0, 0.0, 80.0],  # outside the image (its half-extent is 20 mm)
        BLOB,  # a landmark the refiner does not know
    ])
    names = ["RCC", "LCC", "NCC", "LCO", "RCO"]
    result = refine(image, names, stage1, identity_refiner(("RCC", "LCC", "NCC", "LCO"), folds=2), recentre=True)
    statuses = [p.status for p in result.points]
    assert statuses == [REFINED, RECENTRED, BORDER, OUTSIDE, NOT_REFINED]
    positions = result.positions_lps
    np.testing.assert_allclose(positions[:2], [BLOB, BLOB], atol=0.1)  # sub-voxel (quadratic) on 0.5 mm voxels
    np.testing.assert_array_equal(positions[2:], stage1[2:])  # failures keep the first-stage point
    assert [p.passes for p in result.points] == [1, 2, 1, 0, 0]
    assert result.points[0].shift_mm == pytest.approx(np.linalg.norm([1.1, -0.8, 1.4]), abs=0.1)
    assert result.points[0].fold_rms_mm == pytest.approx(0.0, abs=1e-6)  # two identical folds
    failures = [p.failure for p in result.points]
    assert failures[:2] == ["", ""] and "border" in failures[2] and "outside" in failures[3]
    record = result.points[2].to_dict()
    assert record["status"] == BORDER and record["shift_mm"] == 0.0
    json.dumps([p.to_dict() for p in result.points] + [result.to_dict()])  # JSON-serialisable


def test_without_recentring_a_far_peak_is_taken_from_the_first_patch():
    """Recentring is off by default (a validation choice: refine.py's docstring)."""
    image = blob_image(BLOB)
    result = refine(image, ["RCC"], (BLOB + [0.0, 4.0, -1.0])[None], identity_refiner(("RCC",)))
    assert result.points[0].status == REFINED and result.points[0].passes == 1
    np.testing.assert_allclose(result.positions_lps[0], BLOB, atol=0.1)


# --- detection with two stages ------------------------------------------------------------------------------------


class PeakAt(torch.nn.Module):
    """A stand-in first stage: its maps peak at fixed network-grid indices, whatever the input."""

    def __init__(self, size, indices):
        super().__init__()
        grids = np.indices(size).astype(float)
        maps = [-sum((g - c) ** 2 for g, c in zip(grids, i, strict=True)) for i in indices]
        self.maps = torch.from_numpy(np.stack(maps).astype(np.float32))

    def forward(self, x):
        return self.maps[None]


STAGE1 = GridSpec(spacing=2.0, size=(16, 16, 16))


def first_stage_meta(spec: GridSpec) -> dict:
    """model.json of a stand-in first stage for the hinge points on the grid `spec`."""
    return {"name": "stand-in", "landmarks": ["RCC", "LCC", "NCC"], "grid": spec.to_dict(),
            "activation": "identity", "decoding": "quadratic"}  # fmt: skip


def two_stage_model(image, seed, points_lps, refiner):
    """A first stage finding `points_lps` (world LPS mm) on its grid centred at `seed`, with `refiner`."""
    from AorticRootLandmarksLib.grid import make_grid

    grid = make_grid(image, STAGE1, seed)
    network = PeakAt(STAGE1.size, grid.world_to_index(np.asarray(points_lps)))
    return Ensemble([network], first_stage_meta(STAGE1), torch.device("cpu"), refiner=refiner)


def test_detect_runs_the_second_stage_and_reports_it():
    image = blob_image(BLOB)
    points = np.stack([BLOB + [1.2, 0.4, -0.6], BLOB + [9.0, 0.0, 0.0], BLOB + [-1.0, 0.8, 0.0]])
    model = two_stage_model(image, BLOB, points, identity_refiner())
    detection = detect(image, model, seed_lps=BLOB)
    assert detection.stages == 2
    np.testing.assert_allclose(detection.stage1_positions_lps, points, atol=1e-3)
    np.testing.assert_allclose(detection.positions_lps[[0, 2]], [BLOB, BLOB], atol=0.1)
    np.testing.assert_allclose(detection.positions_lps[1], points[1], atol=1e-3)  # peak on border: stage 1 kept
    np.testing.assert_allclose(detection.grid.index_to_world(detection.grid_indices), detection.positions_lps)
    record = detection.to_dict()
    assert record["stages"] == 2 and record["model"]["refiner"]["folds"] == 1
    assert [record["landmarks"][n]["refinement"]["status"] for n in ("RCC", "LCC", "NCC")] == [REFINED, BORDER,
                                                                                               REFINED]  # fmt: skip
    lcc = detection.quality.points[1]
    assert lcc.terms["refinement"] == qc.REFINE_FAILED_FACTOR and "refinement failed" in lcc.reason
    assert "refinement" not in detection.quality.points[0].terms
    assert any("LCC low confidence" in reason and "border" in reason for reason in detection.quality.reasons)
    # the same model, first stage only: positions are the first stage's, no refinement recorded
    first = detect(image, model, seed_lps=BLOB, stages=1)
    assert first.stages == 1 and first.refinement is None and "refiner" not in first.to_dict()["model"]
    np.testing.assert_allclose(first.positions_lps, points, atol=1e-3)
    assert "refinement" not in first.quality.points[1].terms
    assert first.confidence[1] > detection.confidence[1]


def test_detect_refuses_stages_it_cannot_honour():
    image = blob_image(BLOB)
    model = two_stage_model(image, BLOB, np.stack([BLOB] * 3), None)
    assert detect(image, model, seed_lps=BLOB).stages == 1  # no refiner: the first stage only
    with pytest.raises(InputError, match="has no second stage"):
        detect(image, model, seed_lps=BLOB, stages=2)
    with pytest.raises(InputError, match="stages = 3"):
        detect(image, model, seed_lps=BLOB, stages=3)


# --- model folders ------------------------------------------------------------------------------------------------


def test_a_model_folder_carries_its_refiner(tmp_path, tiny_model_dir):
    import shutil

    from AorticRootLandmarksLib.network import build_network

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    config = {"architecture": "per_landmark", "out_channels": 2, "features": [4, 8]}
    meta = {"name": "tiny-refiner", "stage": "refine", "landmarks": ["LCC", "RCC"], "grid": PATCH.to_dict(),
            "network": build_network(config).config()}  # fmt: skip
    save_model_dir(tmp_path / "refiner", [build_network(config), build_network(config)], meta)
    attach_refiner(model, tmp_path / "refiner")
    assert json.loads((model / "model.json").read_text(encoding="utf-8"))["refiner"] == "refine"
    ensemble = load_ensemble(model, "cpu")
    assert ensemble.refiner is not None and ensemble.refiner.names == ["LCC", "RCC"]
    assert ensemble.refiner.grid_spec == PATCH and len(ensemble.refiner.networks) == 2
    assert load_ensemble(tiny_model_dir, "cpu").refiner is None
    # a refiner of a landmark the model does not detect is refused
    data = json.loads((model / "refine" / "model.json").read_text(encoding="utf-8"))
    (model / "refine" / "model.json").write_text(json.dumps({**data, "landmarks": ["LCC", "LCO"]}), encoding="utf-8")
    with pytest.raises(InputError, match="refines LCO, which the model lacks"):
        load_ensemble(model, "cpu")


@pytest.mark.parametrize("architecture", ["per_landmark", "shared"])
def test_landmark_maps_pick_each_patch_s_own_landmark(architecture):
    from AorticRootLandmarksLib.network import build_network, landmark_maps

    torch.manual_seed(0)
    network = build_network({"architecture": architecture, "out_channels": 3, "features": [4, 8]}).eval()
    x = torch.rand(4, 1, 8, 8, 8)
    which = torch.tensor([2, 0, 2, 1])
    with torch.no_grad():
        maps = landmark_maps(network, x, which)
        full = network(x)  # every landmark's map of every patch
    assert maps.shape == (4, 1, 8, 8, 8)
    for b, k in enumerate(which.tolist()):
        torch.testing.assert_close(maps[b, 0], full[b, k], rtol=1e-5, atol=1e-5)


# --- test-time augmentation of the first stage --------------------------------------------------------------------


def test_test_time_augmentation_averages_the_points_of_the_shifted_grids():
    """With ``tta`` the first-stage points are the mean of the points found on grids centred at the root location
    moved by each of TTA_OFFSETS_MM: the same as five one-grid detections seeded there. The stand-in first stage maps
    the CT itself, so its peak is the blob, found a little differently on each grid (sub-voxel phase)."""
    from AorticRootLandmarksLib.detection import TTA_OFFSETS_MM

    image = blob_image(BLOB)
    spec = GridSpec(spacing=1.6, size=(16, 16, 16))  # the real spacing: a 4 mm shift is 2.5 voxels
    model = Ensemble([PatchAsMap(3)], first_stage_meta(spec), torch.device("cpu"))
    seen = []
    augmented = detect(image, model, progress=lambda f, m: seen.append(f), seed_lps=BLOB)
    singles = [detect(image, model, seed_lps=BLOB + offset, tta=False) for offset in TTA_OFFSETS_MM]
    assert augmented.first_stage_grids == 5 and augmented.to_dict()["first_stage_grids"] == 5
    assert all(single.first_stage_grids == 1 for single in singles)
    expected = np.mean([single.positions_lps for single in singles], axis=0)
    np.testing.assert_allclose(augmented.positions_lps, expected, atol=1e-6)
    assert np.ptp([single.positions_lps[0] for single in singles], axis=0).max() > 1e-3  # the grids do differ
    np.testing.assert_allclose(augmented.positions_lps, np.stack([BLOB] * 3), atol=0.3)
    np.testing.assert_allclose(augmented.grid.index_to_world(augmented.grid_indices), augmented.positions_lps)
    assert augmented.grid.to_dict() == singles[0].grid.to_dict()  # the unshifted grid is the one reported
    assert seen == sorted(seen) and seen[0] == 0.0 and seen[-1] == 1.0  # one progress from 0 to 1 over all grids
    np.testing.assert_allclose(np.sum(TTA_OFFSETS_MM, axis=0), 0.0)  # a symmetric set: no net shift
