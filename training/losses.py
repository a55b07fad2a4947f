"""The GLiP loss (optimal-transport critic + grid Lipschitz penalty) and the heatmap baselines.

All functions take ``pred: (B, K, X, Y, Z)`` raw network output (no activation) and ``target: (B, K, X, Y, Z)``
Gaussian heatmaps in [0, 1] (``training.heatmaps.gaussian_heatmaps``), in grid index order, and return a scalar.

GLiP. The heatmap h of landmark k is one distribution, the background 1 - h the other, and the raw output f is
trained as the Kantorovich-Rubinstein dual critic between them (Wasserstein-1):

    L_ot,k  = - sum_{b,g} h f / sum_{b,g} h  +  sum_{b,g} (1 - h) f / sum_{b,g} (1 - h)
    L_pen   = sum_{axis in x,y,z} mean_{adjacent u,v along axis} (|f_u - f_v| - c)^2
    L_glip  = mean_k L_ot,k + lambda * L_pen

Sums run over the whole minibatch (batch and voxels), so every landmark mass is normalised once per minibatch.

The authors' reduction (``reduction="authors"``): their code normalises the masses over the minibatch as above but
then averages over the batch axis, so their OT term is this one divided by the batch size B:
``ot_term(..., "authors") * B == ot_term(..., "minibatch")``. With the same penalty, their loss is therefore
``(L_ot + B lambda_authors L_pen) / B``: the authors' lambda at batch B is this project's lambda * B (their
lambda = 10 at batch 4 is our 40), and Adam, invariant to the overall 1/B, takes the same steps.
The penalty replaces WGAN-GP's gradient penalty by finite differences on the grid: it holds f to slope c per axis,
i.e. 1-Lipschitz, so f cannot grow without bound on the landmark and instead becomes a cone peaking there, which is
what ``inference`` decodes. The reported best is sigma = 1 mm, lambda = 10.

Penalty conventions (choices made here, tested in Testing/training/test_losses.py):
  * c defaults to 1/sqrt(3) ("sqrt3"), as in the authors' code: a difference of 1/sqrt(3) along each of the three
    axes is a 3D gradient of norm 1, i.e. a critic that is 1-Lipschitz in grid units (the penalty's minimiser is the
    octahedral cone -(|dx| + |dy| + |dz|)/sqrt(3)). The paper writes c = 1 ("one"), which is the L1-cost critic
    with Euclidean gradient norm sqrt(3). A float sets c directly.
  * The three per-axis means are summed, not averaged (each axis is its own constraint; averaging would only divide
    lambda by 3). lambda = 10 in this project means this sum.
  * Differences are in grid units (per voxel), not per mm.

Baselines act on sigmoid(f) (the sigmoid is applied inside): balanced weighted BCE, focal, MSE, L1, smooth L1;
each may add the same grid penalty on the raw f (``make_loss(name, penalty=...)``). "ot" is GLiP with lambda = 0.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from AorticRootLandmarksLib.errors import InputError

from .config import LOSSES, OT_REDUCTIONS, PENALTY_TARGETS

_SUM_DIMS = (0, 2, 3, 4)  # batch and voxels: everything but the landmark channel


def _check_shapes(pred: Tensor, target: Tensor) -> None:
    if pred.ndim != 5 or pred.shape != target.shape:
        raise ValueError(
            f"pred and target must both be (B, K, X, Y, Z), got {tuple(pred.shape)} and {tuple(target.shape)}"
        )


def _safe(total: Tensor) -> Tensor:
    # a channel with no landmark mass (landmark off the grid) contributes 0 instead of nan
    return total.clamp_min(torch.finfo(total.dtype).eps)


def resolve_penalty_target(penalty_target: str | float) -> float:
    """Slope c of the grid penalty: "sqrt3" -> 1/sqrt(3) (default), "one" -> 1.0, or a float >= 0."""
    if isinstance(penalty_target, str):
        if penalty_target not in PENALTY_TARGETS:
            raise InputError(f"penalty_target {penalty_target!r}: use one of {tuple(PENALTY_TARGETS)} or a number")
        return PENALTY_TARGETS[penalty_target]
    value = float(penalty_target)
    if not value >= 0.0:
        raise InputError(f"penalty_target {penalty_target!r}: must be >= 0")
    return value


def ot_term(pred: Tensor, target: Tensor, reduction: str = "minibatch") -> Tensor:
    """Negative Kantorovich-Rubinstein objective between landmark mass h and background 1 - h.

    Args:
        pred: (B, K, X, Y, Z) raw critic f.
        target: (B, K, X, Y, Z) heatmaps h in [0, 1].
        reduction: "minibatch" (this project) or "authors" (the same divided by B; see the module docstring).

    Returns:
        Scalar: mean over k of  -sum h f / sum h + sum (1-h) f / sum (1-h), sums over batch and voxels
        (divided by B for "authors").
    """
    _check_shapes(pred, target)
    if reduction not in OT_REDUCTIONS:
        raise InputError(f"ot_reduction {reduction!r}: use one of {OT_REDUCTIONS}")
    landmark = (target * pred).sum(_SUM_DIMS) / _safe(target.sum(_SUM_DIMS))
    background = ((1.0 - target) * pred).sum(_SUM_DIMS) / _safe((1.0 - target).sum(_SUM_DIMS))
    term = (background - landmark).mean()
    return term / pred.shape[0] if reduction == "authors" else term


def grid_penalty(pred: Tensor, target_slope: float = 1.0 / math.sqrt(3.0)) -> Tensor:
    """Grid Lipschitz penalty: sum over axes of mean (|f_u - f_v| - c)^2 over adjacent voxels u, v.

    Args:
        pred: (B, K, X, Y, Z) raw critic f.
        target_slope: c, the wanted absolute difference between neighbours along one axis, in grid units.

    Returns:
        Scalar; the mean runs over batch, channels and adjacent pairs of one axis, then the 3 axes are summed.
    """
    if pred.ndim != 5:
        raise ValueError(f"pred must be (B, K, X, Y, Z), got {tuple(pred.shape)}")
    total = pred.new_zeros(())
    for axis in (2, 3, 4):
        if pred.shape[axis] > 1:  # an axis of length 1 has no adjacent pairs
            total = total + (pred.diff(dim=axis).abs() - target_slope).square().mean()
    return total


def glip_loss(
    pred: Tensor, target: Tensor, penalty: float = 10.0, penalty_target: str | float = "sqrt3",
    reduction: str = "minibatch",
) -> Tensor:
    """GLiP loss: ``ot_term(pred, target, reduction) + penalty * grid_penalty(pred, c)``.

    Args:
        pred: (B, K, X, Y, Z) raw network output f.
        target: (B, K, X, Y, Z) Gaussian heatmaps in [0, 1].
        penalty: lambda (10 is the reported best; 0 gives the plain "ot" loss).
        penalty_target: c, see ``resolve_penalty_target``.
        reduction: of the OT term, "minibatch" or "authors" (see the module docstring).

    Example:
        >>> loss = glip_loss(net(x), gaussian_heatmaps(x.shape[2:], centers, sigma_mm=1.0, spacing_mm=1.6))
    """
    loss = ot_term(pred, target, reduction)
    if penalty:
        loss = loss + penalty * grid_penalty(pred, resolve_penalty_target(penalty_target))
    return loss


def weighted_bce_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Class-balanced binary cross-entropy on sigmoid(pred).

    Per channel k, with sums over batch and voxels:
        L_k = -1/2 [ sum h log s(f) / sum h  +  sum (1-h) log(1 - s(f)) / sum (1-h) ]
    i.e. foreground and background each carry half the weight. This is BCE with
    ``pos_weight = sum(1-h) / sum(h)``, scaled by N / (2 sum(1-h)) (N voxels per channel) so its size does not
    depend on the grid. Averaged over channels.
    """
    _check_shapes(pred, target)
    fg = (target * F.logsigmoid(pred)).sum(_SUM_DIMS) / _safe(target.sum(_SUM_DIMS))
    bg = ((1.0 - target) * F.logsigmoid(-pred)).sum(_SUM_DIMS) / _safe((1.0 - target).sum(_SUM_DIMS))
    return -0.5 * (fg + bg).mean()


def focal_loss(pred: Tensor, target: Tensor, alpha: float | None = 0.25, gamma: float = 2.0) -> Tensor:
    """Sigmoid focal loss (Lin et al. 2017) with soft targets, mean over all voxels.

    ``p_t = p h + (1-p)(1-h)``, ``loss = alpha_t (1 - p_t)^gamma BCE(f, h)``, ``alpha_t = alpha h + (1-alpha)(1-h)``
    (torchvision ``sigmoid_focal_loss``; alpha=None disables the class weight).
    """
    _check_shapes(pred, target)
    prob = torch.sigmoid(pred)
    ce = F.binary_cross_entropy_with_logits(pred, target, reduction="none")
    p_t = prob * target + (1.0 - prob) * (1.0 - target)
    loss = ce * (1.0 - p_t) ** gamma
    if alpha is not None:
        loss = (alpha * target + (1.0 - alpha) * (1.0 - target)) * loss
    return loss.mean()


def mse_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error between sigmoid(pred) and the heatmap."""
    _check_shapes(pred, target)
    return F.mse_loss(torch.sigmoid(pred), target)


def l1_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error between sigmoid(pred) and the heatmap."""
    _check_shapes(pred, target)
    return F.l1_loss(torch.sigmoid(pred), target)


def smooth_l1_loss(pred: Tensor, target: Tensor, beta: float = 0.1) -> Tensor:
    """Smooth L1 (Huber / beta) between sigmoid(pred) and the heatmap.

    beta defaults to 0.1, not torch's 1.0: errors live in [0, 1], so beta = 1 would be 0.5 * MSE everywhere.
    """
    _check_shapes(pred, target)
    return F.smooth_l1_loss(torch.sigmoid(pred), target, beta=beta)


_BASELINES = {
    "wce": weighted_bce_loss,
    "focal": focal_loss,
    "mse": mse_loss,
    "l1": l1_loss,
    "sl1": smooth_l1_loss,
}


class GLiPLoss(nn.Module):
    """``glip_loss`` as a module. Args as ``glip_loss``; penalty=0 is the plain OT loss."""

    def __init__(self, penalty: float = 10.0, penalty_target: str | float = "sqrt3", reduction: str = "minibatch"):
        super().__init__()
        if reduction not in OT_REDUCTIONS:
            raise InputError(f"ot_reduction {reduction!r}: use one of {OT_REDUCTIONS}")
        self.penalty = float(penalty)
        self.penalty_target = penalty_target
        self.slope = resolve_penalty_target(penalty_target)
        self.reduction = reduction

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return glip_loss(pred, target, self.penalty, self.slope, self.reduction)

    def extra_repr(self) -> str:
        return f"penalty={self.penalty}, penalty_target={self.penalty_target!r}, reduction={self.reduction!r}"


class HeatmapLoss(nn.Module):
    """A baseline on sigmoid(f) plus, when penalty > 0, ``penalty * grid_penalty(f)`` on the raw f.

    Args:
        name: one of "wce", "focal", "mse", "l1", "sl1".
        penalty: lambda of the optional grid penalty (0: none).
        penalty_target: c of the grid penalty.
        **options: keyword arguments of the loss function (focal: alpha, gamma; sl1: beta).
    """

    def __init__(self, name: str, penalty: float = 0.0, penalty_target: str | float = "sqrt3", **options) -> None:
        super().__init__()
        if name not in _BASELINES:
            raise InputError(f"loss {name!r}: not a baseline, use one of {tuple(_BASELINES)}")
        self.name = name
        self.penalty = float(penalty)
        self.penalty_target = penalty_target
        self.slope = resolve_penalty_target(penalty_target)
        self.options = options

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        loss = _BASELINES[self.name](pred, target, **self.options)
        if self.penalty:
            loss = loss + self.penalty * grid_penalty(pred, self.slope)
        return loss

    def extra_repr(self) -> str:
        return f"name={self.name!r}, penalty={self.penalty}, penalty_target={self.penalty_target!r}, {self.options}"


def make_loss(
    name: str, penalty: float | None = None, penalty_target: str | float = "sqrt3", ot_reduction: str = "minibatch",
    **options,
) -> nn.Module:
    """Build a loss module by name (see ``LOSSES``).

    Args:
        name: "glip" (penalty default 10), "ot" (no penalty: penalty must be None or 0), or a baseline
            "wce", "focal", "mse", "l1", "sl1" (penalty default 0; > 0 adds the grid penalty on the raw output).
        penalty: lambda, >= 0; None picks the default of the loss.
        penalty_target: "sqrt3" (1/sqrt(3), default), "one" or a float: c of the grid penalty.
        ot_reduction: "minibatch" (default) or "authors": the OT term of glip/ot (ignored by the baselines).
        **options: baseline options (focal: alpha, gamma; sl1: beta).

    Raises:
        InputError (a ValueError): unknown name, negative penalty, "ot" with a penalty, options for glip/ot.
    """
    if name not in LOSSES:
        raise InputError(f"loss {name!r}: unknown, use one of {LOSSES}")
    if penalty is not None and not float(penalty) >= 0.0:
        raise InputError(f"penalty {penalty!r}: must be >= 0")
    if name in ("glip", "ot"):
        if options:
            raise InputError(f"loss {name!r}: takes no options, got {sorted(options)}")
        if name == "ot":
            if penalty:
                raise InputError(f"loss 'ot' is GLiP without penalty; got penalty={penalty} (use 'glip')")
            return GLiPLoss(penalty=0.0, penalty_target=penalty_target, reduction=ot_reduction)
        return GLiPLoss(10.0 if penalty is None else penalty, penalty_target, ot_reduction)
    return HeatmapLoss(name, penalty=penalty or 0.0, penalty_target=penalty_target, **options)


def output_activation(name: str) -> str:
    """What the decoded maps of a model trained with loss ``name`` are: "identity" (glip, ot) or "sigmoid"."""
    if name not in LOSSES:
        raise InputError(f"loss {name!r}: unknown, use one of {LOSSES}")
    return "identity" if name in ("glip", "ot") else "sigmoid"
