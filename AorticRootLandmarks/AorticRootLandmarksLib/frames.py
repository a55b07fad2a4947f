"""The one conversion between the two world frames of the project (see docs/ARCHITECTURE.md).

Files, SimpleITK images and the numerical core use **world LPS mm**; the MRML scene uses **world RAS mm**.
``RAS = diag(-1, -1, 1) @ LPS`` and the same flips go back. Only :mod:`mrml` (the scene) and :func:`io.read_markups`
(markups files written in RAS) need it.
"""

from __future__ import annotations

import numpy as np

from .typing import PointsLPS, PointsRAS

#: (3, 3) LPS <-> RAS: the same diagonal flips either way.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
_FLIP = np.diag(LPS_TO_RAS)


def lps_to_ras(points_lps: PointsLPS) -> PointsRAS:
    """(..., 3) world LPS mm -> (..., 3) world RAS mm (negate x and y)."""
    return np.asarray(points_lps, dtype=np.float64) * _FLIP


def ras_to_lps(points_ras: PointsRAS) -> PointsLPS:
    """(..., 3) world RAS mm -> (..., 3) world LPS mm (negate x and y)."""
    return np.asarray(points_ras, dtype=np.float64) * _FLIP
