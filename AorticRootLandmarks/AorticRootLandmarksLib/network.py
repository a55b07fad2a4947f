"""The 3D U-Net that maps a CT on the network grid to one map per landmark.

Layout (the default: ``features=(16, 32, 64, 128)``, ``stem_stride=2``; sizes for the 128x128x80 grid)::

    x        (B, 1, 128, 128, 80)
    stem     ConvBlock, first conv stride 2          ->  16 @ 64x64x40   (skip 0)
    downs[0] maxpool + ConvBlock                     ->  32 @ 32x32x20   (skip 1)
    downs[1] maxpool + ConvBlock                     ->  64 @ 16x16x10   (skip 2)
    downs[2] maxpool + ConvBlock                     -> 128 @  8x8x5     (bottom)
    ups[2]   transposed conv, cat skip 2, ConvBlock  ->  64 @ 16x16x10
    ups[1]   transposed conv, cat skip 1, ConvBlock  ->  32 @ 32x32x20
    ups[0]   transposed conv, cat skip 0, ConvBlock  ->  16 @ 64x64x40
    restore  2x2x2 transposed conv stride 2 + LeakyReLU ->  8 @ 128x128x80
    head     1x1x1 conv, no activation               ->   K @ 128x128x80  (raw: the GLiP critic, or logits)

Why a half-resolution stem: 3x3x3 convolutions on the full 1.3 M-voxel grid dominate the cost on a CPU. On 2 cores
(channels_last_3d, batch 1; ``benchmarks/bench_network.py``) the default takes 0.13 s forward and 0.55 s per
training step, a full-resolution U-Net (``stem_stride=1``, features 8->128) 0.38 s and 1.7 s. The strided stem
computes no 3x3x3 convolution at full resolution, yet the final 2x2x2 transposed convolution gives each of the 8
full-resolution children of a coarse voxel its own weights, so the output can peak on any voxel of the grid.
For speed on a CPU move the network and its input to ``torch.channels_last_3d`` (1.3-2x faster here).

torch is imported at module top on purpose: this module is only imported by code that already needs torch
(``inference.load_ensemble``, training), so ``import AorticRootLandmarksLib`` stays torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .errors import InputError

NORMS = ("instance", "batch", "none")
DOWNS = ("maxpool", "conv")
UPS = ("transpose", "trilinear")
DEFAULT_FEATURES = (16, 32, 64, 128)
DEFAULT_STEM_STRIDE = 2


def required_multiple(config: dict) -> int:
    """The number every grid size must be a multiple of: the network's total downsampling.

    The stem divides the grid by ``stem_stride`` and each of the ``len(features) - 1`` levels below it by 2, so
    ``stem_stride * 2**(len(features) - 1)`` (16 for the defaults).

    Args:
        config: network config, as `UNet3D.config()` or ``model.json["network"]`` (missing keys take the defaults).

    Example:
        >>> required_multiple({"features": [4, 8, 16], "stem_stride": 2})
        8
    """
    levels = len(config.get("features", DEFAULT_FEATURES))
    return int(config.get("stem_stride", DEFAULT_STEM_STRIDE)) * 2 ** (levels - 1)


def check_grid_size(size: Sequence[int], config: dict, where: str = "--size") -> None:
    """Refuse a grid size the network cannot take, before any preprocessing.

    Args:
        size: (X, Y, Z) grid voxels.
        config: network config (see `required_multiple`).
        where: what to name in the message (a flag, or the file the size comes from).

    Raises:
        InputError: a size that is not a positive multiple of `required_multiple(config)`.
    """
    multiple = required_multiple(config)
    if all(int(s) >= multiple and int(s) % multiple == 0 for s in size):
        return
    text = "x".join(str(s) for s in size)
    nearest = "x".join(str(max(multiple, multiple * round(int(s) / multiple))) for s in size)
    raise InputError(
        f"{where}: grid size {text} is not a multiple of {multiple} along each axis (the network downsamples "
        f"{multiple}-fold: stem_stride {config.get('stem_stride', DEFAULT_STEM_STRIDE)}, "
        f"{len(config.get('features', DEFAULT_FEATURES))} levels); use e.g. {nearest}"
    )


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "instance":
        # Instance norm written as GroupNorm with one channel per group: the same function (per sample and channel,
        # biased variance, eps 1e-5, affine), but a native CPU kernel that keeps channels_last_3d, where
        # InstanceNorm3d reshapes through batch_norm and copies (forward measured 10-25 % faster on this network).
        return nn.GroupNorm(channels, channels)
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    return nn.Identity()


class ConvBlock(nn.Sequential):
    """Two (3x3x3 conv + norm + LeakyReLU); the first conv may be strided to halve the resolution.

    Args:
        in_channels: channels in.
        out_channels: channels out (of both convolutions).
        norm: "instance", "batch" or "none".
        negative_slope: LeakyReLU slope.
        stride: stride of the first convolution (2 downsamples).
    """

    def __init__(
        self, in_channels: int, out_channels: int, norm: str, negative_slope: float, stride: int = 1
    ) -> None:
        bias = norm == "none"  # a bias right before a norm layer is cancelled by it
        super().__init__(
            nn.Conv3d(in_channels, out_channels, 3, stride=stride, padding=1, bias=bias),
            _norm(norm, out_channels),
            nn.LeakyReLU(negative_slope, inplace=True),
            nn.Conv3d(out_channels, out_channels, 3, padding=1, bias=bias),
            _norm(norm, out_channels),
            nn.LeakyReLU(negative_slope, inplace=True),
        )


class Down(nn.Sequential):
    """Halve the resolution (2x2x2 max pooling, or a strided first convolution), then a ConvBlock."""

    def __init__(self, in_channels: int, out_channels: int, norm: str, negative_slope: float, mode: str) -> None:
        if mode == "maxpool":
            super().__init__(nn.MaxPool3d(2), ConvBlock(in_channels, out_channels, norm, negative_slope))
        else:
            super().__init__(ConvBlock(in_channels, out_channels, norm, negative_slope, stride=2))


class Up(nn.Module):
    """Double the resolution, concatenate the encoder skip, then a ConvBlock.

    Args:
        in_channels: channels of the coarse input.
        out_channels: channels of the skip and of the output.
        mode: "transpose" (2x2x2 transposed conv) or "trilinear" (upsample + 1x1x1 conv).
    """

    def __init__(self, in_channels: int, out_channels: int, norm: str, negative_slope: float, mode: str) -> None:
        super().__init__()
        if mode == "transpose":
            self.upsample = nn.ConvTranspose3d(in_channels, out_channels, 2, stride=2)
        else:
            self.upsample = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False),
                nn.Conv3d(in_channels, out_channels, 1),
            )
        self.block = ConvBlock(2 * out_channels, out_channels, norm, negative_slope)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(torch.cat([self.upsample(x), skip], dim=1))


class Restore(nn.Sequential):
    """Back from the half-resolution stem to the full grid: 2x2x2 transposed conv + LeakyReLU.

    No norm layer: at full resolution every elementwise pass costs ~0.1 s on 2 cores (memory bound), and the
    1x1x1 head that follows needs no normalised input.
    """

    def __init__(self, in_channels: int, out_channels: int, negative_slope: float, stride: int) -> None:
        super().__init__(
            nn.ConvTranspose3d(in_channels, out_channels, stride, stride=stride),
            nn.LeakyReLU(negative_slope, inplace=True),
        )


class UNet3D(nn.Module):
    """3D U-Net: CT on the network grid -> one raw map per landmark on the same grid.

    Args:
        in_channels: input channels (1: the windowed CT in [0, 1]).
        out_channels: landmarks K.
        features: channels per level, finest first; level i runs at 1 / (stem_stride * 2**i) of the grid.
        norm: "instance" (default; batches are 1-2 volumes), "batch" or "none".
        stem_stride: 2 (default) runs the first level at half resolution and restores the full grid with a
            transposed convolution before the head; 1 is the classical full-resolution U-Net.
        down: "maxpool" or "conv" (strided convolution).
        up: "transpose" (transposed convolution) or "trilinear" (upsample + 1x1x1 conv).
        restore_channels: channels of the full-resolution layer after a strided stem (unused when stem_stride=1).
        negative_slope: LeakyReLU slope.

    Shapes:
        x: (B, in_channels, X, Y, Z) in grid index order (x, y, z); each of X, Y, Z a multiple of
        ``size_multiple = required_multiple(config())`` (16 for the default, 128x128x80 fits).
        Returns (B, out_channels, X, Y, Z), raw (no activation): the GLiP critic f, or logits for sigmoid losses.

    Example:
        >>> net = UNet3D(out_channels=3)
        >>> net(torch.zeros(1, 1, 32, 32, 16)).shape
        torch.Size([1, 3, 32, 32, 16])
        >>> clone = UNet3D(**net.config())
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 3,
        features: Sequence[int] = DEFAULT_FEATURES,
        norm: str = "instance",
        stem_stride: int = DEFAULT_STEM_STRIDE,
        down: str = "maxpool",
        up: str = "transpose",
        restore_channels: int = 8,
        negative_slope: float = 0.01,
    ) -> None:
        super().__init__()
        features = tuple(int(f) for f in features)
        if len(features) < 2 or min(features) < 1:
            raise ValueError(f"UNet3D: features must list >= 2 positive channel counts, got {features}")
        if norm not in NORMS or down not in DOWNS or up not in UPS:
            raise ValueError(
                f"UNet3D: norm {norm!r} / down {down!r} / up {up!r} not in {NORMS} / {DOWNS} / {UPS}"
            )
        if stem_stride not in (1, 2):
            raise ValueError(f"UNet3D: stem_stride must be 1 or 2, got {stem_stride}")
        self._config = dict(
            in_channels=int(in_channels),
            out_channels=int(out_channels),
            features=list(features),
            norm=norm,
            stem_stride=int(stem_stride),
            down=down,
            up=up,
            restore_channels=int(restore_channels),
            negative_slope=float(negative_slope),
        )
        self.size_multiple = required_multiple(self._config)

        self.stem = ConvBlock(in_channels, features[0], norm, negative_slope, stride=stem_stride)
        self.downs = nn.ModuleList(
            Down(c_in, c_out, norm, negative_slope, down)
            for c_in, c_out in zip(features[:-1], features[1:], strict=True)
        )
        # ups[i] brings level i + 1 back to level i, so it is applied from the deepest level upwards.
        self.ups = nn.ModuleList(
            Up(c_in, c_out, norm, negative_slope, up) for c_in, c_out in zip(features[1:], features[:-1], strict=True)
        )
        if stem_stride > 1:
            self.restore = Restore(features[0], restore_channels, negative_slope, stem_stride)
            head_channels = restore_channels
        else:
            self.restore = nn.Identity()
            head_channels = features[0]
        self.head = nn.Conv3d(head_channels, out_channels, 1)

    def config(self) -> dict:
        """Constructor arguments (JSON-serialisable): ``UNet3D(**net.config())`` rebuilds the same network."""
        return dict(self._config, features=list(self._config["features"]))

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless x is (B, in_channels, X, Y, Z) with X, Y, Z multiples of ``size_multiple``."""
        c_in = self._config["in_channels"]
        if x.ndim != 5 or x.shape[1] != c_in:
            raise ValueError(f"UNet3D: input must be (B, {c_in}, X, Y, Z), got {tuple(x.shape)}")
        spatial = tuple(x.shape[2:])
        if any(s % self.size_multiple for s in spatial):
            raise ValueError(
                f"UNet3D: input size {spatial} must be a multiple of {self.size_multiple} along each axis "
                f"(stem_stride {self._config['stem_stride']}, {len(self._config['features'])} levels)"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map x (B, in_channels, X, Y, Z) to raw landmark maps (B, out_channels, X, Y, Z)."""
        self.check_input(x)
        skips = [self.stem(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        y = skips.pop()
        for up in reversed(self.ups):
            y = up(y, skips.pop())
        return self.head(self.restore(y))


class PerLandmarkUNets(nn.Module):
    """One single-output `UNet3D` per landmark, outputs stacked: (B, 1, X, Y, Z) -> (B, K, X, Y, Z).

    Why: with GLiP and one shared U-Net, the first landmark whose critic peak grows takes over the shared weights
    (its large gradients dominate Adam's per-weight scaling) and the other channels stay flat. On the phantom each
    landmark learned alone reached ~2 mm validation median in 240 steps, while a shared 3-output U-Net learned
    exactly one of the three in every pilot run, and two of the three at the authors' layout, weighting and 10x the
    steps (docs/TRAINING_NOTES.md, docs/reproduction.md). Separate weights remove the competition; all networks
    still train together with one optimizer and one loss.

    Args:
        in_channels: input channels.
        out_channels: landmarks K (one network each).
        **unet: `UNet3D` arguments shared by the K networks (features, norm, ...).
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 3, **unet) -> None:
        super().__init__()
        self.nets = nn.ModuleList(UNet3D(in_channels, 1, **unet) for _ in range(out_channels))
        self._config = {"architecture": "per_landmark", **self.nets[0].config(), "out_channels": int(out_channels)}
        self.size_multiple = self.nets[0].size_multiple

    def config(self) -> dict:
        """Constructor arguments plus ``architecture``; `build_network(net.config())` rebuilds it."""
        return dict(self._config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([net(x) for net in self.nets], dim=1)


ARCHITECTURES = {"shared": UNet3D, "per_landmark": PerLandmarkUNets}


def landmark_maps(network: nn.Module, x: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
    """Each input's map of its own landmark: how a refiner (second stage) runs on patches of several landmarks.

    A refinement patch is cut around one landmark and asks for that landmark only. With `PerLandmarkUNets` the
    landmark picks the network (patches of landmark k go through ``nets[k]`` alone); with a shared `UNet3D` of K
    outputs (or any network returning K maps) the landmark picks the output channel, i.e. the landmark is an input
    of the shared network's head. (One-hot input channels would not do: a constant channel adds a constant to each
    first-layer feature, which the following instance norm subtracts again.)

    Args:
        network: K-landmark network, ``(B, C, X, Y, Z) -> (B, K, X, Y, Z)``.
        x: (B, C, X, Y, Z) patches.
        landmarks: (B,) integer landmark (output channel) of each patch.

    Returns:
        (B, 1, X, Y, Z) raw maps.
    """
    landmarks = torch.as_tensor(landmarks, dtype=torch.long, device=x.device).reshape(-1)
    if landmarks.shape[0] != x.shape[0]:
        raise ValueError(f"landmark_maps: {landmarks.shape[0]} landmarks for a batch of {x.shape[0]}")
    if isinstance(network, PerLandmarkUNets):
        out = x.new_empty((x.shape[0], 1, *x.shape[2:]))
        for k in torch.unique(landmarks).tolist():
            rows = landmarks == k
            out[rows] = network.nets[k](x[rows])
        return out
    maps = network(x)
    index = landmarks.reshape(-1, 1, 1, 1, 1).expand(-1, 1, *maps.shape[2:])
    return maps.gather(1, index)


def build_network(config: dict) -> nn.Module:
    """Network from a saved config (``model.json["network"]``): ``architecture`` picks the class (default shared)."""
    config = dict(config)
    architecture = config.pop("architecture", "shared")
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; choose from {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[architecture](**config)


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
