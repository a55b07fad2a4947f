"""training.augment: landmarks follow every spatial transform exactly; intensity changes do what they say in HU,
stay in [0, 1] and leave the landmarks alone; one seed, one augmentation."""

from __future__ import annotations

import dataclasses
import importlib

import numpy as np
import pytest
import torch

from AorticRootLandmarksLib.errors import InputError
from AorticRootLandmarksLib.grid import NetworkGrid
from training.augment import (
    Affine,
    AugmentOptions,
    add_noise,
    add_spots,
    augment_sample,
    blood_contrast,
    gamma,
    gaussian_blur,
    random_affine,
    rotation_matrix,
    scale_offset,
    thick_slices,
    transform_points,
    warp_volume,
)
from training.config import TrainConfig
from training.data import Sample

WINDOW = (-500.0, 1500.0)
SIZE = (40, 36, 32)
#: three landmarks at sub-voxel grid indices (x, y, z), 15-17 voxels apart (their blobs do not overlap)
POINTS = np.array([[11.3, 11.6, 12.2], [25.7, 12.1, 18.6], [17.4, 24.3, 14.9]])
#: every intensity change switched off, the spatial ranges of the defaults
SPATIAL_ONLY = dict(intensity_jitter=0.0, offset_hu=0.0, gamma_prob=0.0, contrast_prob=0.0, noise_prob=0.0,
                    blur_prob=0.0, downsample_prob=0.0)  # fmt: skip
#: no spatial change, every intensity change on
INTENSITY_ONLY = dict(rotation_deg=0.0, scale_range=(1.0, 1.0), translation_mm=0.0, gamma_prob=1.0, contrast_prob=1.0,
                      noise_prob=1.0, blur_prob=1.0, downsample_prob=1.0)  # fmt: skip


def options(**changes) -> AugmentOptions:
    return dataclasses.replace(AugmentOptions.from_config(), **changes)


def hu(values) -> torch.Tensor:
    """HU -> windowed values, as grid.resample_to_grid writes them."""
    return ((torch.as_tensor(values, dtype=torch.float32) - WINDOW[0]) / (WINDOW[1] - WINDOW[0])).clamp(0, 1)


def to_hu(volume: torch.Tensor) -> torch.Tensor:
    return volume * (WINDOW[1] - WINDOW[0]) + WINDOW[0]


def blobs(size=SIZE, centres=POINTS, sigma=1.5) -> torch.Tensor:
    """Unit Gaussian blobs (sigma voxels) at sub-voxel grid indices."""
    grids = np.indices(size).astype(float)
    volume = sum(np.exp(-sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True)) / (2 * sigma**2))
                 for centre in centres)  # fmt: skip
    return torch.from_numpy(np.asarray(volume, np.float32))


def centroids(volume: torch.Tensor, near: np.ndarray, half=4, floor=0.05) -> np.ndarray:
    """(K, 3) intensity centroid of the blob near each point (a box of +-half voxels; values above `floor` only)."""
    data = volume.numpy()
    out = []
    for point in near:
        lo = np.maximum(np.round(point).astype(int) - half, 0)
        box = tuple(slice(a, a + 2 * half + 1) for a in lo)
        weights = np.clip(data[box] - floor, 0, None)
        grids = np.indices(weights.shape)
        out.append([(g * weights).sum() / weights.sum() + a for g, a in zip(grids, lo, strict=True)])
    return np.array(out)


@pytest.mark.parametrize("seed", range(6))
def test_random_affine_moves_landmarks_with_the_volume(seed):
    augment = options(translation_mm=8.0)
    affine = random_affine(np.random.default_rng(seed), POINTS, SIZE, augment)
    moved = transform_points(POINTS, affine)
    np.testing.assert_allclose(centroids(warp_volume(blobs(), affine), moved), moved, atol=0.1)
    assert not np.allclose(moved, POINTS, atol=0.5)  # it did move them


@pytest.mark.parametrize(("angle", "scale"), [(30.0, (0.85, 0.85, 0.85)), (-30.0, (1.15, 1.15, 1.15)),
                                               (30.0, (0.85, 1.0, 1.15))])  # fmt: skip
def test_extreme_rotation_and_scale_move_landmarks_with_the_volume(angle, scale):
    matrix = rotation_matrix([1.0, -2.0, 0.5], angle) @ np.diag(scale)
    affine = Affine(matrix, POINTS.mean(axis=0), np.array([1.7, -2.2, 0.6]))
    moved = transform_points(POINTS, affine)
    np.testing.assert_allclose(centroids(warp_volume(blobs(), affine), moved), moved, atol=0.1)


@pytest.mark.parametrize("seed", range(4))
def test_augment_sample_returns_the_landmarks_of_its_volume(seed):
    volume, points = augment_sample(blobs(), POINTS, np.random.default_rng(seed), options(**SPATIAL_ONLY))
    assert volume.shape == SIZE and volume.dtype == torch.float32 and points.shape == (3, 3)
    np.testing.assert_allclose(centroids(volume, points), points, atol=0.1)


def test_rotation_by_90_degrees_about_z_by_hand():
    # Convention: q = M (p - c) + c + t. A right-handed +90 deg turn about z takes +x to +y, so
    # (x, y, z) -> (c_x - (y - c_y), c_y + (x - c_x), z) + t; with c = (4, 5, 3), t = (1, 0, 0):
    # (6, 5, 2) -> (4 - 0, 5 + 2, 2) + (1, 0, 0) = (5, 7, 2).
    matrix = rotation_matrix([0, 0, 1], 90.0)
    np.testing.assert_allclose(matrix, [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)
    affine = Affine(matrix, np.array([4.0, 5.0, 3.0]), np.array([1.0, 0.0, 0.0]))
    np.testing.assert_allclose(transform_points(np.array([[6.0, 5.0, 2.0]]), affine), [[5.0, 7.0, 2.0]], atol=1e-12)
    volume = torch.zeros(9, 11, 7)
    volume[6, 5, 2] = 1.0
    warped = warp_volume(volume, affine)
    assert warped[5, 7, 2] == pytest.approx(1.0, abs=1e-4)  # the voxel landed where the hand calculation says
    assert warped.sum() == pytest.approx(1.0, abs=1e-4)  # and nowhere else


def test_identity_affine_keeps_the_volume_and_outside_is_air():
    volume = torch.rand(8, 9, 10)
    identity = Affine(np.eye(3), np.array([3.5, 4.0, 4.5]), np.zeros(3))
    torch.testing.assert_close(warp_volume(volume, identity), volume, atol=1e-5, rtol=0)
    shifted = warp_volume(torch.ones(8, 9, 10), Affine(np.eye(3), np.zeros(3), np.array([3.0, 0, 0])))
    assert shifted[:3].abs().max() < 1e-6 and shifted[3:].min() == pytest.approx(1.0)  # air came in from the left


def test_translation_can_put_the_landmarks_anywhere_in_the_box_and_keeps_them_inside():
    size, augment = (64, 64, 48), options(translation_mm=1000.0)
    margin = augment.margin_mm / augment.spacing
    moved = np.stack([transform_points(POINTS, random_affine(np.random.default_rng(s), POINTS, size, augment))
                      for s in range(300)])  # fmt: skip
    assert moved.min() >= margin - 1e-9 and (moved.max(axis=(0, 1)) <= np.array(size) - 1 - margin + 1e-9).all()
    centres = moved.mean(axis=1)
    spread = centres.max(axis=0) - centres.min(axis=0)
    assert (spread > 0.8 * (np.array(size) - 1 - 2 * margin - 8)).all()  # the root visits the whole box
    small = np.stack([random_affine(np.random.default_rng(s), POINTS, size, options()).translation for s in range(50)])
    assert np.abs(small).max() <= 50.0 / 1.6 + 1e-9  # translation_mm bounds it when the box does not


def test_blood_contrast_changes_blood_and_leaves_soft_tissue():
    volume = hu([40.0, 400.0, -800.0, 2000.0])
    # blood at 400 HU: 150 + factor (400 - 150); soft tissue at 40 HU and the clipped ends stay
    torch.testing.assert_close(to_hu(blood_contrast(volume, 1.5, WINDOW)), torch.tensor([40.0, 525.0, -500, 1500]),
                               atol=1e-3, rtol=0)  # fmt: skip
    torch.testing.assert_close(to_hu(blood_contrast(volume, 0.5, WINDOW)), torch.tensor([40.0, 275.0, -500, 1500]),
                               atol=1e-3, rtol=0)  # fmt: skip
    ramp = hu(torch.linspace(-600, 1600, 2201))
    for factor in (0.5, 1.6, 2.0):
        out = blood_contrast(ramp, factor, WINDOW)
        assert out.min() >= 0 and out.max() <= 1 and (out.diff() >= -1e-7).all()  # in range and monotone


def test_scale_offset_and_gamma_by_hand():
    # 100 HU * 1.1 + 20 = 130 HU; -100 HU * 0.9 - 30 = -120 HU
    out = to_hu(scale_offset(hu([100.0, -100.0]), 1.1, 20.0, WINDOW)[:1])
    torch.testing.assert_close(out, torch.tensor([130.0]), atol=1e-3, rtol=0)
    torch.testing.assert_close(to_hu(scale_offset(hu([-100.0]), 0.9, -30.0, WINDOW)), torch.tensor([-120.0]),
                               atol=1e-3, rtol=0)  # fmt: skip
    # 1400 * 1.2 - 100 = 1580 HU and -450 * 1.2 - 100 = -640 HU: outside the window, clipped to 1 and 0
    assert scale_offset(hu([1400.0, -450.0]), 1.2, -100.0, WINDOW).tolist() == [1.0, 0.0]
    torch.testing.assert_close(gamma(torch.tensor([0.0, 0.25, 1.0]), 2.0), torch.tensor([0.0, 0.0625, 1.0]))


def test_noise_has_the_requested_standard_deviation():
    volume = hu(torch.full((48, 48, 48), 400.0))
    noisy = to_hu(add_noise(volume, 30.0, WINDOW, torch.Generator().manual_seed(0)))
    assert noisy.std().item() == pytest.approx(30.0, rel=0.02)  # 110 592 draws: the std is known to ~0.2 %
    assert noisy.mean().item() == pytest.approx(400.0, abs=0.5)


def test_blur_has_the_requested_sigma_and_keeps_constants():
    impulse = torch.zeros(31, 31, 31)
    impulse[15, 15, 15] = 1.0
    out = gaussian_blur(impulse, 1.2)
    assert out.sum().item() == pytest.approx(1.0, abs=1e-5)
    offsets = torch.arange(31, dtype=torch.float32) - 15
    variance = (out.sum(dim=(1, 2)) * offsets**2).sum().item()
    assert variance == pytest.approx(1.2**2, rel=0.01)  # the sampled Gaussian's second moment is sigma^2
    torch.testing.assert_close(gaussian_blur(torch.full((9, 8, 7), 0.3), 1.0), torch.full((9, 8, 7), 0.3))


def test_thick_slices_by_hand():
    # factor 2, phase 0 along x: slabs [-0.5, 1.5] and [1.5, 3.5] hold the means 2 and 4 at x = 0.5 and 2.5;
    # interpolated back at x = 0..3: 2 (edge), 0.75 * 2 + 0.25 * 4, 0.25 * 2 + 0.75 * 4, 4 (edge)
    line = torch.tensor([0.0, 4.0, 8.0, 0.0]).reshape(4, 1, 1)
    torch.testing.assert_close(thick_slices(line, 2.0, 0).flatten(), torch.tensor([2.0, 2.5, 3.5, 4.0]))
    constant = torch.full((10, 11, 12), 0.7)
    torch.testing.assert_close(thick_slices(constant, 2.3, 2, 0.4), constant)


@pytest.mark.parametrize("seed", range(4))
def test_intensity_changes_keep_range_and_landmarks(seed):
    volume = blobs() * 0.6 + hu(60.0)  # blobs of ~1200 HU on 60 HU tissue
    out, points = augment_sample(volume, POINTS, np.random.default_rng(seed), options(**INTENSITY_ONLY))
    assert out.min() >= 0 and out.max() <= 1 and not torch.allclose(out, volume, atol=1e-3)
    np.testing.assert_array_equal(points, POINTS)  # no spatial change: the landmarks are the same numbers
    # blur and thick slices are symmetric (up to a random slab phase): the blobs stay on the landmarks
    np.testing.assert_allclose(centroids(out, points, floor=float(out.mean()) + 0.05), POINTS, atol=0.3)


def test_same_seed_same_augmentation_other_seed_other():
    everything = options(**{k: v for k, v in INTENSITY_ONLY.items() if k.endswith("_prob")})
    first = augment_sample(blobs(), POINTS, np.random.default_rng([3, 1, 4]), everything)
    again = augment_sample(blobs(), POINTS, np.random.default_rng([3, 1, 4]), everything)
    other = augment_sample(blobs(), POINTS, np.random.default_rng([3, 1, 5]), everything)
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert not torch.equal(first[0], other[0]) and not np.allclose(first[1], other[1])


def test_options_come_from_the_config_and_no_augment_switches_them_off():
    config = TrainConfig(rotation_deg=12.0, contrast_range=[0.7, 1.3], spacing=2.0)
    augment = AugmentOptions.from_config(config)
    assert augment.rotation_deg == 12.0 and augment.contrast_range == (0.7, 1.3) and augment.spacing == 2.0
    assert augment.window == tuple(config.window)
    train_module = importlib.import_module("training.train")
    grid = NetworkGrid(origin=np.zeros(3), spacing=1.6, size=(16, 16, 16))
    samples = [Sample(None, np.zeros((16, 16, 16), np.float16), grid, np.full((3, 3), 8.0))]
    dataset, _, _ = train_module._shuffled_loader(TrainConfig(augment=False), samples, 0)
    assert dataset.options is None
    dataset, _, _ = train_module._shuffled_loader(TrainConfig(), samples, 0)
    assert dataset.options == AugmentOptions.from_config()


def test_spots_by_hand():
    volume = torch.full(SIZE, 0.3)
    out = add_spots(volume, np.array([[10.0, 10.0, 10.0]]), np.array([2.0]), np.array([0.9]))
    distance = np.sqrt(((np.indices(SIZE) - 10.0) ** 2).sum(axis=0))
    np.testing.assert_allclose(out.numpy()[distance <= 1.5], 0.9, atol=1e-6)  # inside: the spot's value
    np.testing.assert_allclose(out.numpy()[distance >= 2.5], 0.3, atol=1e-7)  # beyond the rim: untouched
    rim = (distance > 1.5) & (distance < 2.5)
    expected = 0.3 + (2.5 - distance[rim]) * 0.6  # partial volume: linear in the one-voxel rim about the radius
    np.testing.assert_allclose(out.numpy()[rim], expected, atol=1e-5)
    dark = add_spots(volume, np.array([[10.0, 10.0, 10.0]]), np.array([3.0]), np.array([0.1]))
    assert torch.equal(dark, volume)  # a spot darker than the tissue changes nothing
    centres = np.array([[-1.0, 5.0, 5.0], [-40.0, 5.0, 5.0]])
    edge = add_spots(volume, centres, np.array([2.0, 2.0]), np.array([1.0, 1.0]))
    assert edge[0, 5, 5] == 1.0 and edge[3:].eq(0.3).all()  # cut by the border; far outside paints nothing


@pytest.mark.parametrize("seed", range(3))
def test_spots_only_brighten_and_keep_the_landmarks(seed):
    volume = blobs() * 0.2 + hu(60.0)
    spatial_off = dict(rotation_deg=0.0, scale_range=(1.0, 1.0), translation_mm=0.0)
    only_spots = options(**SPATIAL_ONLY, **spatial_off, spots_prob=1.0, spots_max=3)
    out, points = augment_sample(volume, POINTS, np.random.default_rng(seed), only_spots)
    np.testing.assert_array_equal(points, POINTS)
    changed = (out - volume).abs() > 1e-6
    assert changed.any() and (out >= volume - 1e-6).all() and out.max() >= hu(500.0) - 1e-6
    same, _ = augment_sample(volume, POINTS, np.random.default_rng(seed), dataclasses.replace(only_spots, spots_prob=0))
    torch.testing.assert_close(same, volume)  # probability 0: nothing painted


BAD = [dict(contrast_range=[0.5, 2.5]), dict(scale_range=[1.1]), dict(gamma_range=[1.2, 0.8]), dict(noise_prob=1.5),
       dict(rotation_deg=-1.0), dict(downsample_factor=0.5), dict(noise_hu=-1.0), dict(intensity_jitter=1.0),
       dict(spots_prob=1.5), dict(spots_max=0)]


@pytest.mark.parametrize("change", BAD)
def test_config_refuses_bad_augmentation_values(change):
    TrainConfig().validate()  # the defaults are fine
    with pytest.raises(InputError, match=next(iter(change))):
        TrainConfig(**change).validate()
