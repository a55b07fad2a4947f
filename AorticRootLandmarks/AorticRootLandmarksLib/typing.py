"""Shared type aliases. Arrays name their coordinate frame (see docs/ARCHITECTURE.md)."""

from __future__ import annotations

import os
from typing import Union

import numpy as np
import numpy.typing as npt

PathLike = Union[str, "os.PathLike[str]"]
#: (3,) or (N, 3) float array of world coordinates, LPS mm.
PointsLPS = npt.NDArray[np.float64]
#: (3,) or (N, 3) float array of world coordinates, RAS mm (MRML scene only).
PointsRAS = npt.NDArray[np.float64]
#: (3,) or (N, 3) float array of (sub-)voxel indices on the network grid, (x, y, z) order.
GridIndex = npt.NDArray[np.float64]
