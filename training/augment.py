"""Training augmentation: one random affine that moves the landmarks with the volume, then CT-like intensity changes.

Frames and units: a volume is a (X, Y, Z) float32 tensor on the network grid, indexed [x, y, z], holding windowed
intensities ``v = (HU - low) / (high - low)`` clipped to [0, 1] (``GridSpec.window``, -500..1500 HU by default, so
air and lung are 0). Landmarks are (K, 3) float grid indices (x, y, z). The grid is isotropic, so a rotation in grid
index is a rotation in mm; lengths given in mm are divided by the grid spacing.

Spatial: :class:`Affine` maps an input index p to the output index ``q = M (p - c) + c + t`` (M = rotation @ scale,
c the landmarks' centroid, t a translation). Landmarks move by that map (:func:`transform_points`); the volume is
resampled once by its inverse (:func:`warp_volume`, trilinear, air outside the cached grid). No flips: the anatomy is
chiral, and a mirrored root is not a root the network will ever see.

Intensity: every transform works on the windowed values with its parameters given in HU and converted through the
window's affine map, which is exactly the same as undoing the window, changing HU and windowing again, except for
values the window had already clipped (below -500 HU or above 1500 HU by default).

Randomness: everything is drawn from the ``np.random.Generator`` passed in, split into one child stream per part
(:data:`PARTS`), so changing one option (say a probability) does not change what the other parts draw.

Dense spots (:func:`add_spots`: calcium nodules or wire fragments, 500-1600 HU, 0.5-2.5 mm) painted at random
places are the one intensity change that adds structure rather than changing the scanner; they are off by default
(``spots_prob`` 0) and meant for the second stage's small patches, where one nodule beside a hinge point is a large
part of what the refiner sees.

Defaults (TrainConfig) are the strong setting the bundled model is trained with, sized to what separates real CTs
from the phantom: rotations of 30 deg (root tilt differs between patients and positions by about that much beyond
the phantom's own spread), scale +-15 % (annulus sizes of small and large patients), translations of 50 mm (the
grid is centred on the image centre, and the root lies roughly 2-5 cm from it in cardiac CT), blood contrast
x0.5-1.6 (blood of 250-550 HU in the phantom becomes 200-800 HU, early to late bolus), noise up to 40 HU and blur
up to 1.2 voxel (smooth and sharp kernels, low-dose scans), slices up to 2.5 voxels (4 mm) thick.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .config import TrainConfig

#: The parts of :func:`augment_sample`, each with its own random stream (order matters: append, never insert).
PARTS = ("spatial", "contrast", "scale", "gamma", "blur", "thickness", "noise", "spots")
#: HU of contrast-enhanced blood that :func:`blood_contrast` stretches; soft tissue below is left alone.
BLOOD_HU = (150.0, 800.0)
#: Above this HU (dense calcium, bone, metal) :func:`blood_contrast` leaves the values alone again.
DENSE_HU = 1500.0
#: HU and radius (mm) ranges of the dense spots of :func:`add_spots` (the phantom's valve calcium: 500-2000 HU,
#: 0.6-2.4 mm).
SPOT_HU = (500.0, 1600.0)
SPOT_RADIUS_MM = (0.5, 2.5)


@dataclass(frozen=True)
class AugmentOptions:
    """Augmentation ranges and probabilities; the fields named as TrainConfig fields mean what their help says.

    Build it with :meth:`from_config` (``AugmentOptions.from_config()`` gives the defaults of :class:`TrainConfig`).
    ``spots_*`` default to off (options built by hand before they existed); ``anisotropy`` (largest extra per-axis
    scale change) and ``margin_mm`` (the least distance of a translated landmark from the box faces) are not config
    fields.
    """

    rotation_deg: float
    scale_range: tuple[float, float]
    translation_mm: float
    intensity_jitter: float
    offset_hu: float
    gamma_range: tuple[float, float]
    gamma_prob: float
    contrast_range: tuple[float, float]
    contrast_prob: float
    noise_hu: float
    noise_prob: float
    blur_sigma: float
    blur_prob: float
    downsample_factor: float
    downsample_prob: float
    spacing: float
    window: tuple[float, float]
    spots_prob: float = 0.0
    spots_max: int = 8
    anisotropy: float = 0.05
    margin_mm: float = 8.0

    @classmethod
    def from_config(cls, config: TrainConfig | None = None) -> AugmentOptions:
        """The options of a training config (default: ``TrainConfig()``), fields taken by name."""
        config = TrainConfig() if config is None else config
        values = {f.name: getattr(config, f.name) for f in dataclasses.fields(cls) if hasattr(config, f.name)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


@dataclass(frozen=True)
class Affine:
    """``q = matrix @ (p - centre) + centre + translation``: input grid index p -> output grid index q.

    Attributes:
        matrix: (3, 3) rotation @ diag(scale), acting on grid index (x, y, z).
        centre: (3,) grid index the rotation and scaling keep fixed.
        translation: (3,) grid voxels.
    """

    matrix: np.ndarray
    centre: np.ndarray
    translation: np.ndarray


def rotation_matrix(axis, angle_deg: float) -> np.ndarray:
    """(3, 3) right-handed rotation by `angle_deg` about `axis` (Rodrigues); about z, +90 deg takes +x to +y."""
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    angle = math.radians(angle_deg)
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def transform_points(points: np.ndarray, affine: Affine) -> np.ndarray:
    """(K, 3) input grid index -> (K, 3) output grid index (non-finite rows stay non-finite)."""
    points = np.asarray(points, float)
    return (points - affine.centre) @ affine.matrix.T + affine.centre + affine.translation


def warp_volume(volume: torch.Tensor, affine: Affine, size=None) -> torch.Tensor:
    """Resample (X, Y, Z) once so that what was at input index p is at output index q (see :class:`Affine`).

    Output q reads the input at ``M^-1 (q - c - t) + c``, trilinearly; outside the input is 0 (air after windowing).

    Args:
        volume: (X, Y, Z) input.
        affine: input index -> output index.
        size: (X', Y', Z') of the output; default the input's. A smaller output with a translation cuts a patch out
            of the warped input (training/patches.py).
    """
    half_in = (np.array(volume.shape, float) - 1) / 2  # normalised n = (index - half) / half (align_corners=True)
    out_shape = tuple(int(n) for n in (volume.shape if size is None else size))
    half_out = (np.array(out_shape, float) - 1) / 2
    inverse = np.linalg.inv(affine.matrix)
    linear = inverse * half_out[None, :] / half_in[:, None]  # S_in^-1 M^-1 S_out
    offset = (inverse @ (half_out - affine.centre - affine.translation) + affine.centre - half_in) / half_in
    # affine_grid and grid_sample order the last axis (W, H, D) = (z, y, x) for a tensor laid out (D, H, W)
    theta = np.concatenate([linear[::-1, ::-1], offset[::-1, None]], axis=1)
    grid = F.affine_grid(torch.as_tensor(theta.copy(), dtype=torch.float32)[None], (1, 1, *out_shape),
                         align_corners=True)  # fmt: skip
    source = volume.reshape(1, 1, *volume.shape).float()
    out = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out[0, 0]


def random_rotation_scale(rng: np.random.Generator, options: AugmentOptions) -> np.ndarray:
    """(3, 3) rotation (uniform axis, angle uniform in +-rotation_deg) @ diag(scale) (isotropic in scale_range, each
    axis varied by up to +-anisotropy, clipped to the range)."""
    # the same draws whatever the options, so a run's other numbers do not depend on them
    axis, angle = rng.normal(size=3), rng.uniform(-1, 1) * options.rotation_deg
    iso, aniso = rng.uniform(), rng.uniform(size=3)
    low, high = options.scale_range
    scale = np.clip((low + (high - low) * iso) * (1 + options.anisotropy * (2 * aniso - 1)), low, high)
    return rotation_matrix(axis, angle) @ np.diag(scale)


def random_affine(rng: np.random.Generator, points: np.ndarray, size, options: AugmentOptions) -> Affine:
    """A random rotation (uniform axis, angle uniform in +-rotation_deg) and scale about the landmarks' centroid,
    then a translation uniform in +-translation_mm per axis that keeps the landmarks margin_mm inside the box.

    Args:
        points: (K, 3) grid index of the landmarks (the centre; rows with NaN are ignored).
        size: (X, Y, Z) grid size in voxels.
    """
    matrix = random_rotation_scale(rng, options)
    where = rng.uniform(size=3)
    points = np.asarray(points, float)
    finite = points[np.isfinite(points).all(axis=1)]
    last = np.asarray(size, float) - 1
    centre = finite.mean(axis=0) if len(finite) else last / 2
    if not len(finite):
        finite = centre[None]
    moved = transform_points(finite, Affine(matrix, centre, np.zeros(3)))
    reach, margin = options.translation_mm / options.spacing, min(options.margin_mm / options.spacing, last.min() / 2)
    fit_low, fit_high = margin - moved.min(axis=0), last - margin - moved.max(axis=0)  # shifts keeping all inside
    low, high = np.maximum(-reach, fit_low), np.minimum(reach, fit_high)
    fallback = np.clip((fit_low + fit_high) / 2, -reach, reach)  # nothing fits: as far inside as allowed
    translation = np.where(low <= high, low + (high - low) * where, fallback)
    return Affine(matrix, centre, translation)


def _to_window(hu, window) -> float:
    low, high = window
    return (np.asarray(hu, float) - low) / (high - low)


def blood_contrast(volume: torch.Tensor, factor: float, window) -> torch.Tensor:
    """Stretch contrast-enhanced blood: HU in BLOOD_HU map to ``150 + factor (HU - 150)``, as a later or earlier
    scan in the bolus would show; below 150 HU (soft tissue, myocardium) nothing changes, and above 800 HU values
    are mapped linearly back to DENSE_HU so the map stays continuous and monotone (factor < 2.07).

    Args:
        volume: (X, Y, Z) windowed values.
        factor: blood contrast factor (> 0); 1 is the identity.
        window: (low, high) HU of the volume's window.
    """
    x0, x1, x2 = _to_window([*BLOOD_HU, DENSE_HU], window)
    y1 = x0 + factor * (x1 - x0)
    slope = (x2 - y1) / (x2 - x1)
    out = volume + (factor - 1) * (volume - x0).clamp(min=0) + (slope - factor) * (volume - x1).clamp(min=0)
    return (out + (1 - slope) * (volume - x2).clamp(min=0)).clamp(0, 1)


def scale_offset(volume: torch.Tensor, scale: float, offset_hu: float, window) -> torch.Tensor:
    """``HU -> scale * HU + offset_hu`` (a scanner's calibration, kVp, kernel), on windowed values; stays in [0, 1]."""
    low, high = window
    return (volume * scale + ((scale - 1) * low + offset_hu) / (high - low)).clamp(0, 1)


def gamma(volume: torch.Tensor, value: float) -> torch.Tensor:
    """``v -> v ** value`` in the windowed space (0 and 1 stay); < 1 brightens mid-grey, > 1 darkens it."""
    return volume.clamp(0, 1).pow(value)


def _along_axis(volume: torch.Tensor, matrix: np.ndarray, axis: int) -> torch.Tensor:
    """Apply a (n, n) linear map to every line of `volume` along `axis`."""
    out = torch.tensordot(torch.as_tensor(matrix, dtype=torch.float32), volume, dims=([1], [axis]))
    return out.movedim(0, axis)


def _gaussian_matrix(n: int, sigma: float) -> np.ndarray:
    radius = max(1, math.ceil(3 * sigma))
    taps = np.arange(-radius, radius + 1)
    weights = np.exp(-(taps**2) / (2 * sigma**2))
    rows = np.repeat(np.arange(n), len(taps))
    cols = np.clip(rows + np.tile(taps, n), 0, n - 1)  # replicate the edge voxel
    matrix = np.zeros((n, n))
    np.add.at(matrix, (rows, cols), np.tile(weights / weights.sum(), n))
    return matrix


def gaussian_blur(volume: torch.Tensor, sigma: float) -> torch.Tensor:
    """Isotropic Gaussian blur, `sigma` in grid voxels (a softer reconstruction kernel); edges replicated."""
    if sigma <= 0:
        return volume
    for axis, n in enumerate(volume.shape):
        volume = _along_axis(volume, _gaussian_matrix(n, sigma), axis)
    return volume


def _thick_slice_matrix(n: int, factor: float, phase: float) -> np.ndarray:
    """(n, n): average over slabs `factor` voxels thick, then interpolate linearly back to the voxel centres."""
    starts = -0.5 - phase * factor + factor * np.arange(math.ceil(n / factor + phase) + 1)
    starts = starts[starts < n - 0.5]
    lower, upper = np.maximum(starts, -0.5), np.minimum(starts + factor, n - 0.5)  # slabs clipped to the volume
    voxel = np.arange(n)
    overlap = np.clip(np.minimum(upper[:, None], voxel + 0.5) - np.maximum(lower[:, None], voxel - 0.5), 0, None)
    down = overlap / overlap.sum(axis=1, keepdims=True)  # (slabs, n): each slab the mean of the voxels it covers
    centres = (lower + upper) / 2
    up = np.stack([np.interp(voxel, centres, np.eye(len(centres))[i]) for i in range(len(centres))], axis=1)
    return up @ down


def thick_slices(volume: torch.Tensor, factor: float, axis: int, phase: float = 0.0) -> torch.Tensor:
    """Emulate slices `factor` voxels thick along `axis`: slab means, linearly interpolated back (down-up).

    Args:
        volume: (X, Y, Z).
        factor: slab thickness in voxels (>= 1; 1 still smooths unless the slabs fall on the voxels).
        axis: 0, 1 or 2 (x, y, z).
        phase: where the first slab starts, in [0, 1) of a slab (real slices do not line up with the grid).
    """
    return _along_axis(volume, _thick_slice_matrix(volume.shape[axis], factor, phase), axis)


def add_noise(volume: torch.Tensor, std_hu: float, window, generator: torch.Generator) -> torch.Tensor:
    """Add white Gaussian noise of `std_hu` HU (drawn from `generator`); clipped back to [0, 1]."""
    low, high = window
    noise = torch.randn(volume.shape, generator=generator, dtype=torch.float32)
    return (volume + noise * (std_hu / (high - low))).clamp(0, 1)


def add_spots(volume: torch.Tensor, centres: np.ndarray, radii: np.ndarray, values: np.ndarray) -> torch.Tensor:
    """Paint dense spheres (calcium nodules, wire fragments) into a volume: the value rises towards ``values[i]``
    within ``radii[i]`` of ``centres[i]``, with a partial-volume rim from radius - 0.5 to radius + 0.5 voxel in which
    it falls linearly; a spot darker than the tissue never darkens a voxel.

    Args:
        volume: (X, Y, Z) windowed values in [0, 1].
        centres: (N, 3) grid index (x, y, z), anywhere (spots outside the volume paint nothing).
        radii: (N,) grid voxels.
        values: (N,) windowed values in [0, 1].

    Returns:
        (X, Y, Z) float32 in [0, 1]; voxels farther than radius + 0.5 voxel from every centre are unchanged.
    """
    out = volume.clone()
    shape = np.array(volume.shape)
    for centre, radius, value in zip(np.asarray(centres, float), np.asarray(radii, float), values, strict=True):
        low = np.clip(np.floor(centre - radius - 1).astype(int), 0, shape)
        high = np.clip(np.ceil(centre + radius + 2).astype(int), 0, shape)
        if np.any(high <= low):
            continue
        axes = [torch.arange(a, b, dtype=torch.float32) - float(c) for a, b, c in zip(low, high, centre, strict=True)]
        x, y, z = torch.meshgrid(*axes, indexing="ij")
        cover = (radius + 0.5 - torch.sqrt(x**2 + y**2 + z**2)).clamp(0, 1)  # 1 inside, linear in the rim
        box = out[low[0]:high[0], low[1]:high[1], low[2]:high[2]]
        out[low[0]:high[0], low[1]:high[1], low[2]:high[2]] = torch.maximum(box, box + cover * (float(value) - box))
    return out.clamp(0, 1)


def random_spots(rng: np.random.Generator, size, options: AugmentOptions):
    """1 to ``spots_max`` spots uniform in the volume.

    Returns:
        ((N, 3) grid index, (N,) radius in grid voxels, (N,) windowed value): the arguments of :func:`add_spots`.
    """
    n = int(rng.integers(1, options.spots_max + 1))
    centres = rng.uniform(0, 1, size=(n, 3)) * (np.asarray(size, float) - 1)
    radii = rng.uniform(*SPOT_RADIUS_MM, size=n) / options.spacing
    values = np.clip(_to_window(rng.uniform(*SPOT_HU, size=n), options.window), 0, 1)
    return centres, radii, values


def augment_sample(volume: torch.Tensor, points: np.ndarray, rng: np.random.Generator, options: AugmentOptions):
    """One random augmentation of a sample: the spatial affine, then dense spots, contrast, scale/offset, gamma, blur,
    thick slices and noise, each intensity change with its probability.

    Args:
        volume: (X, Y, Z) float32 windowed values in [0, 1] on the network grid.
        points: (K, 3) grid index (x, y, z) of the landmarks.
        rng: the only source of randomness (one child stream per part of :data:`PARTS`).
        options: ranges and probabilities.

    Returns:
        (volume (X, Y, Z) float32 in [0, 1], points (K, 3) grid index), moved by the same affine.
    """
    part = dict(zip(PARTS, rng.spawn(len(PARTS)), strict=True))  # each part's stream; each first draws if it happens
    affine = random_affine(part["spatial"], points, volume.shape, options)
    volume, points = warp_volume(volume, affine), transform_points(points, affine)
    return augment_intensity(volume, part, options), points


def augment_intensity(volume: torch.Tensor, part: dict, options: AugmentOptions) -> torch.Tensor:
    """The intensity part of :func:`augment_sample`: dense spots, contrast, scale/offset, gamma, blur, thick slices,
    noise (the spots first, so the scanner-like changes act on them too).

    Args:
        volume: (X, Y, Z) float32 windowed values in [0, 1].
        part: {name: np.random.Generator} for the parts of :data:`PARTS` (all but "spatial" are used here).
        options: ranges and probabilities (blur and slice thickness in voxels of this volume).

    Returns:
        (X, Y, Z) float32 in [0, 1].
    """
    window = options.window
    if part["spots"].uniform() < options.spots_prob:
        volume = add_spots(volume, *random_spots(part["spots"], volume.shape, options))
    if part["contrast"].uniform() < options.contrast_prob:
        volume = blood_contrast(volume, _log_uniform(part["contrast"], options.contrast_range), window)
    jitter, offset = options.intensity_jitter, options.offset_hu
    scale = 1 + part["scale"].uniform(-jitter, jitter)
    volume = scale_offset(volume, scale, part["scale"].uniform(-offset, offset), window)
    if part["gamma"].uniform() < options.gamma_prob:
        volume = gamma(volume, _log_uniform(part["gamma"], options.gamma_range))
    if part["blur"].uniform() < options.blur_prob:
        volume = gaussian_blur(volume, part["blur"].uniform(0, options.blur_sigma))
    if part["thickness"].uniform() < options.downsample_prob:
        draw = part["thickness"]
        volume = thick_slices(volume, draw.uniform(1, options.downsample_factor), int(draw.integers(3)), draw.uniform())
    if part["noise"].uniform() < options.noise_prob:
        generator = torch.Generator().manual_seed(int(part["noise"].integers(2**63 - 1)))
        volume = add_noise(volume, part["noise"].uniform(0, options.noise_hu), window, generator)
    return volume.clamp(0, 1)


def _log_uniform(rng: np.random.Generator, value_range) -> float:
    """Log-uniform between the range's ends: a factor and its inverse equally likely when the range allows both."""
    low, high = value_range
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))
