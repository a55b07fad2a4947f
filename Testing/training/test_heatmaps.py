"""Gaussian heatmap targets: peak, known offsets, sub-voxel centres, mm scaling, missing landmarks."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from training.heatmaps import gaussian_heatmaps  # noqa: E402


def centers(*points):
    """(1, K, 3) float32 grid indices."""
    return torch.tensor([points], dtype=torch.float32)


def test_shape_dtype_and_peak_at_an_integer_centre():
    h = gaussian_heatmaps((9, 7, 5), centers((4, 3, 2), (0, 6, 4)), sigma_mm=1.0, spacing_mm=1.6)
    assert h.shape == (1, 2, 9, 7, 5) and h.dtype == torch.float32
    assert h[0, 0, 4, 3, 2] == 1.0 and h[0, 1, 0, 6, 4] == 1.0
    assert int(h[0, 0].argmax()) == (4 * 7 + 3) * 5 + 2  # flat index of (4, 3, 2): the peak is there
    assert float(h.min()) >= 0.0 and float(h.max()) <= 1.0


@pytest.mark.parametrize(
    "offset",
    [(1, 0, 0), (0, -1, 0), (0, 0, 1), (1, 2, -1)],
)
def test_value_at_a_known_offset(offset):
    sigma, spacing = 1.0, 1.6
    center = (4, 3, 2)
    h = gaussian_heatmaps((9, 7, 5), centers(center), sigma, spacing)
    voxel = tuple(c + o for c, o in zip(center, offset, strict=True))
    d2_mm = sum(o * o for o in offset) * spacing**2  # (1, 2, -1): 6 * 2.56 = 15.36 mm^2
    expected = math.exp(-d2_mm / (2 * sigma**2))  # (1, 0, 0): exp(-1.28) = 0.278
    torch.testing.assert_close(h[(0, 0, *voxel)], torch.tensor(expected), rtol=1e-6, atol=1e-7)


def test_sub_voxel_centre():
    sigma, spacing = 2.0, 1.0
    h = gaussian_heatmaps((8, 6, 6), centers((3.5, 2.0, 2.25)), sigma, spacing)[0, 0]
    # x: voxels 3 and 4 are equally 0.5 away, so they tie; z: 0.25 from voxel 2, 0.75 from voxel 3
    torch.testing.assert_close(h[3, 2, 2], h[4, 2, 2])
    expected = math.exp(-(0.5**2 + 0.25**2) / (2 * sigma**2))
    torch.testing.assert_close(h[3, 2, 2], torch.tensor(expected), rtol=1e-6, atol=1e-7)
    assert h[3, 2, 2] > h[3, 2, 3] and h.max() < 1.0


def test_matches_the_3d_formula_brute_force():
    size, sigma, spacing = (6, 5, 4), 1.3, 0.9
    c = torch.tensor([2.3, 1.7, 3.1])
    idx = torch.stack(torch.meshgrid(*(torch.arange(n, dtype=torch.float32) for n in size), indexing="ij"), -1)
    expected = torch.exp(-((idx - c) * spacing).square().sum(-1) / (2 * sigma**2))
    h = gaussian_heatmaps(size, c[None, None], sigma, spacing)[0, 0]
    torch.testing.assert_close(h, expected, rtol=1e-5, atol=1e-7)


def test_mm_scaling_with_spacing():
    c = centers((4, 4, 4))
    # only sigma / spacing matters: 2 mm on a 2 mm grid equals 1 mm on a 1 mm grid
    torch.testing.assert_close(
        gaussian_heatmaps((9, 9, 9), c, sigma_mm=2.0, spacing_mm=2.0),
        gaussian_heatmaps((9, 9, 9), c, sigma_mm=1.0, spacing_mm=1.0),
    )
    # doubling the spacing at fixed sigma: the neighbour sits 2 mm away, exp(-4 / 2) instead of exp(-1 / 2)
    h = gaussian_heatmaps((9, 9, 9), c, sigma_mm=1.0, spacing_mm=2.0)
    torch.testing.assert_close(h[0, 0, 5, 4, 4], torch.tensor(math.exp(-2.0)))


def test_batches_are_independent_and_missing_landmark_is_zero():
    c = torch.tensor([[[1.0, 1.0, 1.0], [float("nan"), 0.0, 0.0]], [[3.0, 2.0, 1.0], [2.0, 2.0, 2.0]]])
    h = gaussian_heatmaps((5, 4, 3), c, 1.0, 1.0)
    assert h.shape == (2, 2, 5, 4, 3)
    assert h[0, 0, 1, 1, 1] == 1.0 and h[1, 0, 3, 2, 1] == 1.0 and h[1, 1, 2, 2, 2] == 1.0
    assert torch.all(h[0, 1] == 0.0)  # NaN centre: no landmark mass at all


@pytest.mark.parametrize(
    "size, c, sigma, spacing",
    [
        ((4, 4, 4), torch.zeros(1, 3), 1.0, 1.0),  # centres not (B, K, 3)
        ((4, 4), torch.zeros(1, 1, 3), 1.0, 1.0),
        ((4, 4, 4), torch.zeros(1, 1, 3), 0.0, 1.0),
        ((4, 4, 4), torch.zeros(1, 1, 3), 1.0, -1.6),
    ],
)
def test_bad_arguments_raise(size, c, sigma, spacing):
    with pytest.raises(ValueError):
        gaussian_heatmaps(size, c, sigma, spacing)
