"""GLiP loss family: hand-computed values, gradchecks, the make_loss table and an optimisation sanity check."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from training.heatmaps import gaussian_heatmaps  # noqa: E402
from training.losses import (  # noqa: E402
    LOSSES,
    GLiPLoss,
    HeatmapLoss,
    focal_loss,
    glip_loss,
    grid_penalty,
    l1_loss,
    make_loss,
    mse_loss,
    ot_term,
    output_activation,
    smooth_l1_loss,
    weighted_bce_loss,
)

C3 = 1.0 / math.sqrt(3.0)
LOG2 = math.log(2.0)


def vol(*values_per_sample):
    """(B, 1, n, 1, 1) float64 tensor from B lists of n voxel values."""
    return torch.tensor(values_per_sample, dtype=torch.float64)[:, None, :, None, None]


@pytest.fixture
def random_pair():
    generator = torch.Generator().manual_seed(0)
    pred = torch.randn(2, 3, 4, 5, 3, generator=generator, dtype=torch.float64)
    target = torch.rand(2, 3, 4, 5, 3, generator=generator, dtype=torch.float64)
    return pred, target


# ---------------------------------------------------------------- OT term


def two_channels(channel_0, channel_1):
    """(1, 2, n, 1, 1) float64 tensor from the n voxel values of each of two channels."""
    return torch.cat([vol(channel_0), vol(channel_1)], dim=1)


@pytest.mark.parametrize(
    "f, h, expected",
    [
        # B = 2, K = 1; sums run over the whole minibatch:
        # sum h = 1 + 0.5 = 1.5, sum h f = 1*2 + 0.5*4 = 4                      -> landmark mean 4 / 1.5 = 8/3
        # sum (1-h) = 0 + 1 + 0.5 + 1 = 2.5, sum (1-h) f = 0 + 0 + 0.5*4 + 1*1 = 3 -> background mean 3 / 2.5 = 6/5
        # L = 6/5 - 8/3 = -22/15 (normalising per sample instead: mean(-2 + 0, -4 + 2) = -2)
        pytest.param(vol([2.0, 0.0], [4.0, 1.0]), vol([1.0, 0.0], [0.5, 0.0]), -22.0 / 15.0, id="whole-minibatch"),
        # K = 2, soft heatmap:
        # channel 0: h = (1, 0.5, 0), f = (3, 1, -1): landmark (3 + 0.5) / 1.5 = 7/3, background (0.5 - 1) / 1.5 = -1/3
        #            -> -1/3 - 7/3 = -8/3
        # channel 1: h = (0, 0, 1), f = (2, 2, 5): landmark 5, background (2 + 2) / 2 = 2 -> 2 - 5 = -3
        # mean over channels (-8/3 - 3) / 2 = -17/6 (their sum would be -17/3)
        pytest.param(
            two_channels([3.0, 1.0, -1.0], [2.0, 2.0, 5.0]),
            two_channels([1.0, 0.5, 0.0], [0.0, 0.0, 1.0]),
            -17.0 / 6.0,
            id="soft-heatmap-two-channels",
        ),
        # the critic is higher on the background than on the landmark: a positive loss
        # h = (1, 0, 0), f = (-1, 2, 4): landmark -1, background 3 -> 3 - (-1) = 4
        pytest.param(vol([-1.0, 2.0, 4.0]), vol([1.0, 0.0, 0.0]), 4.0, id="wrong-way-round"),
        # a constant critic separates nothing: h f / h and (1-h) f / (1-h) are both 4 -> 0
        pytest.param(vol([4.0, 4.0, 4.0]), vol([0.3, 0.7, 0.2]), 0.0, id="constant-critic"),
    ],
)
def test_ot_term_by_hand(f, h, expected):
    torch.testing.assert_close(ot_term(f, h), torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-12)


def test_ot_term_averages_channels():
    h = torch.cat([vol([1.0, 0.0]), vol([0.0, 1.0])], dim=1)  # (1, 2, 2, 1, 1)
    f = torch.cat([vol([3.0, 1.0]), vol([3.0, 1.0])], dim=1)
    # channel 0: -3 + 1 = -2; channel 1: -1 + 3 = +2; mean 0
    torch.testing.assert_close(ot_term(f, h), torch.tensor(0.0, dtype=torch.float64), rtol=0, atol=1e-12)
    # channel 0 alone is -2 (the mean over channels is really taken)
    torch.testing.assert_close(ot_term(f[:, :1], h[:, :1]), torch.tensor(-2.0, dtype=torch.float64))


def test_ot_term_channel_without_mass_is_finite():
    h = torch.zeros(1, 1, 2, 2, 2, dtype=torch.float64)
    f = torch.arange(8.0, dtype=torch.float64).reshape(1, 1, 2, 2, 2)
    # no landmark mass: only the background mean of f remains, 28 / 8
    torch.testing.assert_close(ot_term(f, h), torch.tensor(3.5, dtype=torch.float64))


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="B, K, X, Y, Z"):
        ot_term(torch.zeros(1, 1, 2, 2, 2), torch.zeros(1, 2, 2, 2, 2))


# ---------------------------------------------------------------- grid penalty


def ramp(a, b, c, size=(3, 2, 4)):
    x, y, z = torch.meshgrid(*(torch.arange(n, dtype=torch.float64) for n in size), indexing="ij")
    return (a * x + b * y + c * z)[None, None]


@pytest.mark.parametrize(
    "slope, expected",
    [
        # per-axis |differences| are 1, 2, 0.5 everywhere; penalty = sum over axes of (|d| - c)^2
        (C3, (1 - C3) ** 2 + (2 - C3) ** 2 + (0.5 - C3) ** 2),
        (1.0, 0.0 + 1.0 + 0.25),
    ],
)
def test_grid_penalty_on_a_ramp(slope, expected):
    penalty = grid_penalty(ramp(1.0, -2.0, 0.5), slope)
    torch.testing.assert_close(penalty, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-12)


def test_grid_penalty_means_over_pairs_and_skips_flat_axes():
    f = vol([0.0, 1.0, 3.0])  # x differences 1 and 2; y and z have length 1 (no pairs, no nan)
    # c = 1: ((1-1)^2 + (2-1)^2) / 2 = 0.5
    torch.testing.assert_close(grid_penalty(f, 1.0), torch.tensor(0.5, dtype=torch.float64))


def test_grid_penalty_is_zero_for_a_unit_slope_octahedral_cone():
    # f = -(|x-2| + |y-2| + |z-2|) / sqrt(3): every neighbour difference is exactly 1/sqrt(3)
    g = torch.arange(5, dtype=torch.float64)
    x, y, z = torch.meshgrid(g, g, g, indexing="ij")
    f = (-((x - 2).abs() + (y - 2).abs() + (z - 2).abs()) * C3)[None, None]
    torch.testing.assert_close(grid_penalty(f), torch.tensor(0.0, dtype=torch.float64), rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "slope, penalty, penalty_target, expected",
    [
        # s = 1, lambda = 10, c = 1/sqrt(3): OT -1.5; penalty (1 - c)^2 + 2 c^2 = 4/3 - 2/sqrt(3) + 2/3 = 2 - 2/sqrt(3)
        # -> -1.5 + 20 - 20/sqrt(3) (averaging the three axes instead of summing: -1.5 + (20 - 20/sqrt(3)) / 3)
        pytest.param(1.0, 10.0, "sqrt3", 18.5 - 20.0 / math.sqrt(3.0), id="slope-1"),
        # s = c = 1/sqrt(3): OT -1.5 c = -sqrt(3)/2; the x axis is on target, y and z cost c^2 = 1/3 each -> 10 * 2/3
        pytest.param(C3, 10.0, "sqrt3", 20.0 / 3.0 - math.sqrt(3.0) / 2.0, id="slope-c"),
        # s = -2, lambda = 0.5, c = 1: OT +3; penalty (|-2| - 1)^2 + 1 + 1 = 3 (without the |.|: 9 + 2) -> 3 + 1.5
        pytest.param(-2.0, 0.5, "one", 4.5, id="falling-slope"),
        # lambda = 0 is the plain OT term: -1.5 * 2
        pytest.param(2.0, 0.0, "sqrt3", -3.0, id="no-penalty"),
    ],
)
def test_glip_loss_on_a_one_axis_ramp_by_hand(slope, penalty, penalty_target, expected):
    """f = s * x on a (3, 2, 2) grid, landmark h = 1 on the whole x = 2 slice, 0 elsewhere.

    OT: the landmark mean of f is 2 s, the background mean (x = 0 and x = 1, equally many voxels) is s / 2, so the
    OT term is s / 2 - 2 s = -1.5 s. Penalty: every x difference is s, every y and z difference 0, so
    L_pen = (|s| - c)^2 + (0 - c)^2 + (0 - c)^2, and L = -1.5 s + lambda * L_pen.
    """
    f = ramp(slope, 0.0, 0.0, size=(3, 2, 2))
    h = torch.zeros_like(f)
    h[:, :, 2] = 1.0
    expected = torch.tensor(expected, dtype=torch.float64)
    torch.testing.assert_close(glip_loss(f, h, penalty, penalty_target), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(GLiPLoss(penalty, penalty_target)(f, h), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("penalty_target, slope", [("sqrt3", C3), ("one", 1.0), (0.25, 0.25)])
def test_glip_is_ot_plus_lambda_penalty(random_pair, penalty_target, slope):
    pred, target = random_pair
    expected = ot_term(pred, target) + 7.0 * grid_penalty(pred, slope)
    torch.testing.assert_close(glip_loss(pred, target, 7.0, penalty_target), expected)
    torch.testing.assert_close(GLiPLoss(7.0, penalty_target)(pred, target), expected)


def test_glip_default_is_lambda_10_and_sqrt3(random_pair):
    pred, target = random_pair
    expected = ot_term(pred, target) + 10.0 * grid_penalty(pred, C3)
    torch.testing.assert_close(glip_loss(pred, target), expected)


# ---------------------------------------------------------------- baselines


def test_baselines_at_zero_logits_by_hand():
    pred = torch.zeros(1, 1, 4, 1, 1, dtype=torch.float64)  # sigmoid = 0.5 everywhere
    target = vol([1.0, 0.0, 0.0, 0.0])
    scalar = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    # balanced BCE: -1/2 (log 0.5 + log 0.5) = log 2
    torch.testing.assert_close(weighted_bce_loss(pred, target), scalar(LOG2))
    # focal: p_t = 0.5 -> (1 - p_t)^2 = 0.25; alpha_t 0.25 for the one positive, 0.75 for the three negatives
    torch.testing.assert_close(focal_loss(pred, target), scalar((0.25 + 3 * 0.75) * 0.25 * LOG2 / 4))
    torch.testing.assert_close(mse_loss(pred, target), scalar(0.25))  # every error is 0.5
    torch.testing.assert_close(l1_loss(pred, target), scalar(0.5))
    # smooth L1, beta 0.1: |0.5| >= beta -> 0.5 - beta/2 = 0.45
    torch.testing.assert_close(smooth_l1_loss(pred, target), scalar(0.45))


def test_weighted_bce_is_rescaled_pos_weight_bce(random_pair):
    pred, target = random_pair
    dims = (0, 2, 3, 4)
    pos_weight = (1 - target).sum(dims) / target.sum(dims)  # (K,)
    n_voxels = target[:, 0].numel()
    per_voxel = F.binary_cross_entropy_with_logits(
        pred, target, pos_weight=pos_weight[:, None, None, None], reduction="none"
    )
    # L_k = mean_k(BCE_pos_weight) * N / (2 sum(1-h)), see weighted_bce_loss
    expected = (per_voxel.mean(dims) * n_voxels / (2 * (1 - target).sum(dims))).mean()
    torch.testing.assert_close(weighted_bce_loss(pred, target), expected)


def test_focal_reduces_to_bce_without_alpha_and_gamma(random_pair):
    pred, target = random_pair
    expected = F.binary_cross_entropy_with_logits(pred, target)
    torch.testing.assert_close(focal_loss(pred, target, alpha=None, gamma=0.0), expected)


def test_focal_matches_torchvision_formula(random_pair):
    pred, target = random_pair
    p = torch.sigmoid(pred)
    ce = F.binary_cross_entropy_with_logits(pred, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    expected = ((0.4 * target + 0.6 * (1 - target)) * ce * (1 - p_t) ** 3).mean()
    torch.testing.assert_close(focal_loss(pred, target, alpha=0.4, gamma=3.0), expected)


@pytest.mark.parametrize(
    "fn, reference",
    [
        (mse_loss, lambda s, t: F.mse_loss(s, t)),
        (l1_loss, lambda s, t: F.l1_loss(s, t)),
        (smooth_l1_loss, lambda s, t: F.smooth_l1_loss(s, t, beta=0.1)),
    ],
)
def test_regression_baselines_use_sigmoid(random_pair, fn, reference):
    pred, target = random_pair
    torch.testing.assert_close(fn(pred, target), reference(torch.sigmoid(pred), target))


# ---------------------------------------------------------------- gradchecks (float64)


def test_gradcheck_ot_term(random_pair):
    pred, target = random_pair
    pred.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda f: ot_term(f, target), (pred,))


@pytest.mark.parametrize("slope", [C3, 1.0])
def test_gradcheck_grid_penalty(slope):
    # a ramp plus small noise keeps every |difference| >= 0.2, away from the kink of |.| at 0
    noise = 0.05 * torch.rand(1, 2, 3, 4, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    pred = (ramp(0.3, 0.7, -1.1, size=(3, 4, 3)).expand(1, 2, 3, 4, 3) + noise).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda f: grid_penalty(f, slope), (pred,))


@pytest.mark.parametrize("fn", [weighted_bce_loss, focal_loss, mse_loss, l1_loss, smooth_l1_loss])
def test_gradcheck_baselines(random_pair, fn):
    pred, target = random_pair
    pred.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda f: fn(f, target), (pred,))


# ---------------------------------------------------------------- make_loss table

BASES = {"wce": weighted_bce_loss, "focal": focal_loss, "mse": mse_loss, "l1": l1_loss, "sl1": smooth_l1_loss}


@pytest.mark.parametrize("name", LOSSES)
def test_make_loss_defaults(random_pair, name):
    pred, target = random_pair
    loss = make_loss(name)(pred, target)
    if name == "glip":
        expected = ot_term(pred, target) + 10.0 * grid_penalty(pred, C3)
    elif name == "ot":
        expected = ot_term(pred, target)
    else:
        expected = BASES[name](pred, target)
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("name", [n for n in LOSSES if n != "ot"])
@pytest.mark.parametrize("penalty_target, slope", [("sqrt3", C3), ("one", 1.0)])
def test_make_loss_adds_the_penalty(random_pair, name, penalty_target, slope):
    pred, target = random_pair
    base = ot_term(pred, target) if name == "glip" else BASES[name](pred, target)
    loss = make_loss(name, penalty=2.5, penalty_target=penalty_target)(pred, target)
    torch.testing.assert_close(loss, base + 2.5 * grid_penalty(pred, slope))


def test_make_loss_passes_options(random_pair):
    pred, target = random_pair
    module = make_loss("focal", alpha=None, gamma=1.0)
    assert isinstance(module, HeatmapLoss)
    torch.testing.assert_close(module(pred, target), focal_loss(pred, target, alpha=None, gamma=1.0))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="dice"), "unknown"),
        (dict(name="ot", penalty=1.0), "without penalty"),
        (dict(name="glip", penalty=-1.0), ">= 0"),
        (dict(name="glip", penalty_target="two"), "penalty_target"),
        (dict(name="glip", alpha=0.5), "no options"),
    ],
)
def test_make_loss_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_loss(**kwargs)


@pytest.mark.parametrize("penalty", [None, 0, 0.0])
def test_make_loss_ot_accepts_no_penalty(penalty):
    assert make_loss("ot", penalty=penalty).penalty == 0.0


# the critic losses decode the raw output, the baselines their sigmoid (written out, not recomputed)
ACTIVATIONS = {
    "glip": "identity",
    "ot": "identity",
    "wce": "sigmoid",
    "focal": "sigmoid",
    "mse": "sigmoid",
    "l1": "sigmoid",
    "sl1": "sigmoid",
}


def test_activation_table_covers_every_loss():
    assert set(ACTIVATIONS) == set(LOSSES)


@pytest.mark.parametrize("name, activation", ACTIVATIONS.items())
def test_output_activation(name, activation):
    assert output_activation(name) == activation


def test_output_activation_unknown():
    with pytest.raises(ValueError, match="unknown"):
        output_activation("dice")


# ---------------------------------------------------------------- the critic peaks at the landmark


@pytest.mark.parametrize("penalty_target", ["sqrt3", "one"])
def test_optimised_critic_peaks_at_the_landmark(penalty_target):
    torch.manual_seed(0)
    landmark = (5, 2, 3)
    target = gaussian_heatmaps((8, 8, 8), torch.tensor([[landmark]], dtype=torch.float32), 1.0, 1.6)
    f = (0.01 * torch.randn(1, 1, 8, 8, 8)).requires_grad_(True)
    optimizer = torch.optim.Adam([f], lr=0.05)
    for _ in range(200):
        optimizer.zero_grad()
        glip_loss(f, target, penalty=10.0, penalty_target=penalty_target).backward()
        optimizer.step()
    f = f.detach()[0, 0]
    peak = tuple(int(i) for i in torch.unravel_index(f.argmax(), f.shape))
    assert peak == landmark
    # and it is a cone: the value falls with the grid distance from the landmark (corner far below the peak)
    assert f[landmark] - f[0, 7, 7] > 3.0


def test_authors_reduction_is_the_minibatch_term_divided_by_batch_size():
    """Issue 13: OT_authors * B == OT_minibatch, and the authors' lambda at batch B is ours * B."""
    gen = torch.Generator().manual_seed(3)
    pred = torch.randn(4, 2, 5, 4, 3, generator=gen, dtype=torch.float64)
    target = torch.rand(4, 2, 5, 4, 3, generator=gen, dtype=torch.float64)
    ours, authors = ot_term(pred, target), ot_term(pred, target, "authors")
    torch.testing.assert_close(authors * 4, ours)
    assert not torch.isclose(authors, ours)  # B = 4: the reductions differ
    theirs = make_loss("glip", 10.0, ot_reduction="authors")(pred, target)
    torch.testing.assert_close(theirs * 4, make_loss("glip", 40.0)(pred, target))
    with pytest.raises(ValueError, match="ot_reduction"):  # InputError is a ValueError
        ot_term(pred, target, "per-sample")
