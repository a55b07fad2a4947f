"""Case-level quality checks: is the hinge triangle a plausible annulus, is the image a CT in HU at all.

- :func:`geometry_checks`: whether the hinge triangle RCC, LCC, NCC is an anatomically plausible annulus
  (world LPS mm; x to the patient's Left, y to Posterior, z to Superior);
- :func:`image_checks`: whether the image is a CT in Hounsfield units at all.

Each returns named :class:`Check` results; a failed check makes the case ``failed`` (rules: report.py). Pure numpy +
SimpleITK (no torch, no slicer import).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from ..constants import HINGE_NAMES

# --------------------------------------------------------------------------- geometry checks (world LPS mm)
# Real annuli have a perimeter of 55-100 mm (CT sizing for TAVI: e.g. Blanke et al., JACC Cardiovasc Imaging
# 2019; Achenbach et al., J Cardiovasc Comput Tomogr 2012), i.e. a mean radius of 8.8-16 mm; the phantom draws
# 60-95 mm. The hinge points sit 100-140 degrees apart on that ring, so the hinge-to-hinge distances are
# 2 r sin(50..70 deg) = 13.4-30 mm. The ranges below are these, widened for elliptic annuli and for phantoms:
# the truth of 1000 cases of each phantom style gives distances 11.3-36.5 mm (the small and large annuli of
# heldout-extreme), circumradii 7.4-18.4 mm, smallest angles 41-60 degrees, tilts 20-70 degrees, RCC 4.3-27 mm
# anterior of the LCC-NCC midpoint, and passes every check.
#: Plausible distance between two hinge points, mm.
HINGE_DISTANCE_MM = (10.0, 40.0)
#: Plausible radius of the circle through the three hinge points, mm.
CIRCUMRADIUS_MM = (7.0, 20.0)
#: Smallest triangle angle (degrees) of a non-degenerate hinge triangle: 50-70 degrees for hinges 100-140 degrees
#: apart on a circle, down to 41 on the phantoms' ellipses; below 20 the triangle is a sliver (or collinear).
MIN_TRIANGLE_ANGLE_DEG = 20.0
#: Largest angle (degrees) between the annulus normal (either orientation) and the patient's superior axis:
#: 20-70 in the phantoms, typically 40-60 in patients and up to ~70 in horizontal aortas; 75 allows a margin.
MAX_TILT_DEG = 75.0
#: The patient's superior axis and anterior direction, LPS.
SUPERIOR_LPS = np.array([0.0, 0.0, 1.0])
ANTERIOR_LPS = np.array([0.0, -1.0, 0.0])

# --------------------------------------------------------------------------- image checks (HU)
#: Voxels read for the percentile checks (a regular subsample): fast on 512x512x320.
IMAGE_SAMPLES = 1_000_000
#: A chest CT has bone or contrast above this (HU).
MIN_BRIGHT_HU = 100.0
#: ... a 1st-99th percentile spread of at least this (HU; air/lung to bone/contrast is > 1000) ...
MIN_SPREAD_HU = 200.0
#: ... and its 1st percentile (lung, air, fat) below this (HU); MR, ultrasound and unrescaled CT have no negatives.
MAX_LOW_PERCENTILE_HU = -100.0


@dataclass(frozen=True)
class Check:
    """One named quality check.

    Attributes:
        value: the measured value (None when it could not be measured).
        low, high: the plausible range, inclusive (None: unbounded on that side).
        unit: unit of ``value`` ("" for a ratio or a count).
        passed: whether ``value`` lies in the range.
        reason: empty when passed, else a short plain sentence saying what is wrong.
    """

    value: float | None
    low: float | None
    high: float | None
    unit: str
    passed: bool
    reason: str = ""

    def to_dict(self) -> dict:
        """JSON-serialisable, numbers rounded to 3 decimals."""
        return {
            "value": rounded(self.value),
            "range": [rounded(self.low), rounded(self.high)],
            "unit": self.unit,
            "passed": self.passed,
            "reason": self.reason,
        }


def rounded(value: float | None, digits: int = 3) -> float | None:
    """``value`` rounded for JSON; None for None, NaN and infinity."""
    return None if value is None or not np.isfinite(value) else round(float(value), digits)


def _range_check(value: float, low: float | None, high: float | None, unit: str, what: str) -> Check:
    """A Check that ``value`` lies in [low, high]; the reason names ``what``, the value and the range."""
    passed = bool(np.isfinite(value) and (low is None or value >= low) and (high is None or value <= high))
    if passed:
        return Check(float(value), low, high, unit, True)
    if low is not None and high is not None:
        wanted = f"{low:g}-{high:g}"
    else:
        wanted = f">= {low:g}" if low is not None else f"<= {high:g}"
    reason = f"{what} {value:.1f} {unit} (plausible: {wanted} {unit})".replace(" )", ")")
    return Check(float(value), low, high, unit, False, reason)


# =========================================================================== geometry checks
def geometry_checks(names: Sequence[str], points_lps: npt.ArrayLike) -> dict[str, Check]:
    """Plausibility of the hinge triangle RCC, LCC, NCC as an aortic annulus.

    Checks (ranges and their sources: see the module constants):

    - ``finite``: the three points have finite coordinates (else no other check is made);
    - ``RCC_LCC_mm``, ``LCC_NCC_mm``, ``NCC_RCC_mm``: hinge-to-hinge distances in HINGE_DISTANCE_MM;
    - ``min_angle_deg``: the smallest triangle angle >= MIN_TRIANGLE_ANGLE_DEG (not collinear, not a sliver;
      when this fails, the plane-based checks below are not made);
    - ``circumradius_mm``: radius of the circle through the points in CIRCUMRADIUS_MM;
    - ``tilt_deg``: angle between the annulus plane's normal line and the superior axis <= MAX_TILT_DEG;
    - ``normal_superior``: cosine between the oriented normal ``(LCC - RCC) x (NCC - RCC)`` and the superior axis
      > 0, i.e. it points from the ventricle up into the aorta (two cusps swapped flip it);
    - ``rcc_anterior_mm``: RCC lies anterior of the LCC-NCC midpoint (> 0 mm; a cyclic relabelling breaks it).

    Args:
        names: K landmark names.
        points_lps: (K, 3) world LPS mm.

    Returns:
        Check per name, in the order above; empty when RCC, LCC or NCC is not among ``names`` (nothing to check).
    """
    names = list(names)
    points_all = np.asarray(points_lps, dtype=np.float64).reshape(-1, 3)
    if any(h not in names for h in HINGE_NAMES):
        return {}
    points = np.stack([points_all[names.index(h)] for h in HINGE_NAMES])
    checks: dict[str, Check] = {}
    finite = bool(np.all(np.isfinite(points)))
    checks["finite"] = Check(float(finite), 1.0, 1.0, "", finite, "" if finite else "a hinge point has no position")
    if not finite:
        return checks
    for i in range(3):
        j = (i + 1) % 3
        key = f"{HINGE_NAMES[i]}_{HINGE_NAMES[j]}_mm"
        distance = float(np.linalg.norm(points[j] - points[i]))
        checks[key] = _range_check(distance, *HINGE_DISTANCE_MM, "mm", f"{HINGE_NAMES[i]}-{HINGE_NAMES[j]} distance")
    angles = []
    for i in range(3):
        e1, e2 = points[(i + 1) % 3] - points[i], points[(i + 2) % 3] - points[i]
        lengths = np.linalg.norm(e1) * np.linalg.norm(e2)
        angles.append(0.0 if lengths < 1e-9 else float(np.degrees(np.arccos(np.clip(e1 @ e2 / lengths, -1, 1)))))
    checks["min_angle_deg"] = _range_check(
        min(angles), MIN_TRIANGLE_ANGLE_DEG, None, "deg", "hinge triangle is degenerate: smallest angle"
    )
    if not checks["min_angle_deg"].passed:
        return checks
    a, b = points[1] - points[0], points[2] - points[0]
    cross = np.cross(a, b)
    normal = cross / np.linalg.norm(cross)
    radius = float(np.linalg.norm(a) * np.linalg.norm(b) * np.linalg.norm(a - b) / (2.0 * np.linalg.norm(cross)))
    checks["circumradius_mm"] = _range_check(radius, *CIRCUMRADIUS_MM, "mm", "annulus circumradius")
    cos_superior = float(normal @ SUPERIOR_LPS)
    tilt = float(np.degrees(np.arccos(min(1.0, abs(cos_superior)))))
    checks["tilt_deg"] = _range_check(tilt, 0.0, MAX_TILT_DEG, "deg", "annulus plane tilt from horizontal")
    up = cos_superior > 0
    checks["normal_superior"] = Check(
        cos_superior, 0.0, 1.0, "", up,
        "" if up else "annulus normal points into the ventricle (cusp order mirrored: LCC and NCC swapped?)",
    )  # fmt: skip
    anterior = float((points[0] - 0.5 * (points[1] + points[2])) @ ANTERIOR_LPS)
    checks["rcc_anterior_mm"] = Check(
        anterior, 0.0, None, "mm", anterior > 0,
        "" if anterior > 0 else "RCC is not anterior of LCC and NCC (cusp labels rotated?)",
    )  # fmt: skip
    return checks


# =========================================================================== image checks
def image_checks(image: sitk.Image) -> dict[str, Check]:
    """Whether an image is a CT in Hounsfield units (catches zeros, NaN, MR, unrescaled or normalised images).

    Exact on the whole volume: finite values (a single NaN or inf fails; one BLAS pass, float images only). On a
    regular subsample of about IMAGE_SAMPLES voxels (every n-th voxel along each axis): not constant, some value
    >= MIN_BRIGHT_HU (bone, contrast), a 1st-99th percentile spread >= MIN_SPREAD_HU, and a 1st percentile
    <= MAX_LOW_PERCENTILE_HU (air, lung or fat: MR-like images from 0 up, e.g. 0..3000, have none).
    Measured on 512x512x320 (2 cores): 0.012 s int16, 0.037 s float32 (0.03 and 0.08 s with the cores busy).

    Args:
        image: the input image (any pixel type).

    Returns:
        ``dimension``, ``components``, then (for a 3D scalar image) ``finite``, ``value_range_hu``,
        ``max_hu``, ``spread_hu``, ``low_hu``.
    """
    checks: dict[str, Check] = {}
    dimension, components = image.GetDimension(), image.GetNumberOfComponentsPerPixel()
    checks["dimension"] = Check(
        float(dimension), 3.0, 3.0, "", dimension == 3, "" if dimension == 3 else f"image is {dimension}D, not 3D"
    )
    checks["components"] = Check(
        float(components), 1.0, 1.0, "", components == 1,
        "" if components == 1 else f"image has {components} components per voxel (colour?), not one HU value",
    )  # fmt: skip
    if dimension != 3 or components != 1:
        return checks
    array = sitk.GetArrayViewFromImage(image)  # no copy
    finite = True
    if np.issubdtype(array.dtype, np.floating):
        flat = array.reshape(-1)
        # NaN or +-inf anywhere makes the sum of squares non-finite; so would finite values beyond ~1e19 (float32),
        # hence the (slow) elementwise confirmation, only then.
        with np.errstate(over="ignore", invalid="ignore"):
            finite = bool(np.isfinite(np.dot(flat, flat))) or bool(np.isfinite(flat).all())
    checks["finite"] = Check(
        float(finite), 1.0, 1.0, "", finite, "" if finite else "image contains NaN or infinite values"
    )
    stride = max(1, int(np.ceil((array.size / IMAGE_SAMPLES) ** (1.0 / 3.0))))
    sample = np.asarray(array[::stride, ::stride, ::stride], dtype=np.float64).reshape(-1)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return checks
    lowest, highest = float(sample.min()), float(sample.max())
    checks["value_range_hu"] = _range_check(highest - lowest, 1e-6, None, "HU", "constant image: value range")
    p1, p99 = (float(v) for v in np.percentile(sample, [1.0, 99.0]))
    checks["max_hu"] = _range_check(highest, MIN_BRIGHT_HU, None, "HU", "no bone or contrast: brightest value")
    checks["spread_hu"] = _range_check(
        p99 - p1, MIN_SPREAD_HU, None, "HU", "too little contrast for a CT: 1st-99th percentile spread"
    )
    checks["low_hu"] = _range_check(
        p1, None, MAX_LOW_PERCENTILE_HU, "HU", "no air, lung or fat (MR-like or not in HU): 1st percentile"
    )
    return checks
