"""C-arm angles of the plan: the S-curve of the annulus plane and the two named implantation views.

Convention (geometry.py's module docstring; sources in docs/PLAN.md): patient supine, head first; the view vector
points from the patient (isocentre) to the image detector, in world LPS; LAO and CRAN positive, RAO and CAUD
negative, in degrees.

- The **S-curve** (perpendicularity curve): every LAO/RAO - CRAN/CAUD pair whose view vector lies in the annulus
  plane, so the plane is seen edge-on (a line) on the detector. Sampled from RAO 90 to LAO 90; with the detector on
  the patient's anterior side only (a C-arm over a supine patient).
- The **three-cusp view**: the S-curve view with the RCC hinge projected midway between the LCC and NCC hinges (the
  RCC in the middle, "follow the right cusp").
- The **cusp-overlap view**: the S-curve view with the RCC and LCC hinges projected onto each other, the NCC apart.

Numpy only: runs inside 3D Slicer's Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from .. import geometry
from ..geometry import CarmAngles

#: LAO/RAO angles at which the S-curve is sampled: RAO 90 to LAO 90 in 1 degree steps.
S_CURVE_LAO_DEG = np.arange(-90.0, 90.5, 1.0)

#: What each named view shows, in words (written into plan.json next to its angles).
VIEW_DEFINITIONS: dict[str, str] = {
    "three_cusp": "annulus plane edge-on with the RCC hinge projected midway between the LCC and NCC hinges "
    "(three-cusp coplanar view, RCC in the middle)",
    "cusp_overlap": "annulus plane edge-on with the RCC and LCC hinges projected onto each other and the NCC apart "
    "(cusp-overlap view)",
}
#: Short names for figures and tables.
VIEW_TITLES: dict[str, str] = {"three_cusp": "three-cusp", "cusp_overlap": "cusp-overlap"}


def s_curve(normal_lps: npt.ArrayLike, lao_deg: npt.ArrayLike = S_CURVE_LAO_DEG) -> tuple[np.ndarray, np.ndarray]:
    """The S-curve of a plane: for each LAO/RAO angle, the CRAN/CAUD angle that shows the plane edge-on.

    Args:
        normal_lps: (3,) plane normal, LPS (either orientation).
        lao_deg: (N,) LAO (+) / RAO (-) degrees (default RAO 90 ... LAO 90 in 1 degree steps).

    Returns:
        (lao_deg, cran_deg), both (N,) degrees; every ``carm_view_vector(lao, cran)`` is perpendicular to the normal.
        For a normal that is horizontal (n_z = 0) the curve is at CRAN/CAUD +-90 (see
        :func:`geometry.coplanar_cran_deg`).

    Example:
        >>> lao, cran = s_curve([0.0, 0.0, 1.0])   # annulus in an axial plane: every view without angulation
        >>> float(abs(cran).max())
        0.0
    """
    lao = np.asarray(lao_deg, dtype=np.float64).reshape(-1)
    return lao, np.asarray(geometry.coplanar_cran_deg(normal_lps, lao), dtype=np.float64).reshape(-1)


@dataclass(frozen=True)
class CarmPlan:
    """The C-arm part of a plan.

    Attributes:
        lao_deg: (N,) S-curve samples, LAO (+) / RAO (-) degrees.
        cran_deg: (N,) S-curve samples, CRAN (+) / CAUD (-) degrees.
        views: named views on the S-curve, ``three_cusp`` and ``cusp_overlap`` (:func:`geometry.implant_views`).
    """

    lao_deg: np.ndarray
    cran_deg: np.ndarray
    views: dict[str, CarmAngles] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-serialisable: the convention, the S-curve as two parallel lists, the views with named fields."""
        return {
            "convention": {
                "patient": "supine, head first",
                "view_vector": "from the patient (isocentre) to the image detector",
                "lao_deg": "LAO positive, RAO negative",
                "cran_deg": "CRAN (cranial) positive, CAUD (caudal) negative",
            },
            "s_curve": {
                "definition": "C-arm angles at which the annulus plane is seen edge-on (view vector in the plane)",
                "lao_deg": [round(float(v), 2) for v in self.lao_deg],
                "cran_deg": [round(float(v), 2) for v in self.cran_deg],
            },
            "views": {
                name: {**angles.to_dict(), "definition": VIEW_DEFINITIONS[name]} for name, angles in self.views.items()
            },
        }


def carm_plan(hinges_lps: npt.ArrayLike) -> CarmPlan:
    """The S-curve of the annulus plane and the named views, from the hinge points.

    Args:
        hinges_lps: (3, 3) world LPS mm, order RCC, LCC, NCC.

    Returns:
        The CarmPlan.

    Raises:
        InputError: NaN/inf or a degenerate hinge triangle.
    """
    plane = geometry.annulus_plane(hinges_lps)
    lao, cran = s_curve(plane.normal)
    return CarmPlan(lao, cran, geometry.implant_views(hinges_lps))
