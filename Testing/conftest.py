"""Shared fixtures: tiny synthetic volumes with known geometry and a tiny random-weights model folder."""

from __future__ import annotations

import pytest
from helpers import make_image


@pytest.fixture(autouse=True, scope="session")
def _few_threads():
    """Keep tests polite on 2-core machines and deterministic."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


@pytest.fixture
def flipped_image():
    """Axes x and z flipped (direction diag(-1, 1, -1)): exercises orientation handling."""
    return make_image(direction=(-1, 0, 0, 0, 1, 0, 0, 0, -1))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A model folder with two random-weights folds on a 32x32x32 grid of 3.2 mm: meaningless but deterministic."""
    import torch

    from AorticRootLandmarksLib.grid import GridSpec
    from AorticRootLandmarksLib.inference import save_model_dir
    from AorticRootLandmarksLib.network import UNet3D

    torch.manual_seed(0)
    networks = [UNet3D(in_channels=1, out_channels=3, features=(4, 8, 16)) for _ in range(2)]
    meta = {
        "name": "tiny-random",
        "landmarks": ["RCC", "LCC", "NCC"],
        "grid": GridSpec(spacing=3.2, size=(32, 32, 32)).to_dict(),
        "sigma_mm": 1.0,
        "loss": "glip",
        "activation": "identity",
        "decoding": "quadratic",
        "network": networks[0].config(),
    }
    return save_model_dir(tmp_path_factory.mktemp("models") / "tiny", networks, meta)
