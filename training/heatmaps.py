"""Gaussian heatmap targets on the network grid.

``h_k(g) = exp(-||g - l_k||^2 / (2 sigma^2))`` with g the voxel centres and l_k the landmark, both in mm relative
to the grid (grid index * spacing; the grid is isotropic). The peak value is 1 (at an integer centre), so h is
both the GLiP landmark mass (normalised inside ``losses.ot_term``) and a [0, 1] target for the sigmoid baselines.
The reported best sigma is 1 mm: on the 1.6 mm grid the nearest neighbours of the peak voxel then hold
exp(-1.6^2 / 2) = 0.28.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def gaussian_heatmaps(
    size: Sequence[int], centers_index: Tensor, sigma_mm: float, spacing_mm: float
) -> Tensor:
    """One Gaussian heatmap per landmark on a grid of ``size`` voxels.

    Args:
        size: (X, Y, Z) grid size in voxels.
        centers_index: (B, K, 3) landmark positions as (sub-voxel) grid index (x, y, z), i.e.
            ``grid.world_to_index(points_lps)``. A non-finite row (a missing landmark) gives an all-zero map.
        sigma_mm: Gaussian standard deviation in mm (> 0).
        spacing_mm: isotropic grid spacing in mm (> 0).

    Returns:
        (B, K, X, Y, Z) float32 on the device of ``centers_index``, values in [0, 1].

    Example:
        >>> h = gaussian_heatmaps((128, 128, 80), torch.tensor([[[64.0, 60.5, 40.0]]]), sigma_mm=1.0, spacing_mm=1.6)
        >>> h.shape
        torch.Size([1, 1, 128, 128, 80])
    """
    centers = torch.as_tensor(centers_index)
    if centers.ndim != 3 or centers.shape[-1] != 3:
        raise ValueError(f"centers_index must be (B, K, 3) grid indices, got {tuple(centers.shape)}")
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"size must be 3 positive voxel counts (X, Y, Z), got {tuple(size)}")
    if not (sigma_mm > 0 and spacing_mm > 0):
        raise ValueError(f"sigma_mm ({sigma_mm}) and spacing_mm ({spacing_mm}) must be > 0")
    # float64 for the distances so sub-voxel centres on large grids keep their precision
    centers = centers.to(torch.float64)
    missing = ~torch.isfinite(centers).all(dim=-1)  # (B, K)
    centers = torch.where(missing[..., None], torch.zeros_like(centers), centers)
    # The Gaussian is separable: the product of three 1D profiles, (B, K, X) x (B, K, Y) x (B, K, Z), which is
    # far cheaper than evaluating the 3D distance on every voxel.
    profiles = []
    for axis, n in enumerate(size):
        coords = torch.arange(int(n), dtype=torch.float64, device=centers.device)
        dist_mm = (coords - centers[..., axis, None]) * spacing_mm  # (B, K, n)
        profiles.append(torch.exp(-dist_mm.square() / (2.0 * sigma_mm**2)).to(torch.float32))
    px, py, pz = profiles
    heatmaps = px[..., :, None, None] * py[..., None, :, None] * pz[..., None, None, :]
    return heatmaps * (~missing).to(heatmaps.dtype)[..., None, None, None]
