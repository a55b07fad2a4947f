"""Quality control of a detection: per-point confidence, image and geometry checks, and a case verdict.

Four measurements feed :func:`assess`, each computed by a pure function here:

- :func:`peak_contrast`: how sharply each landmark's peak stands out of its ensemble-mean network map
  (network grid index (x, y, z));
- :func:`boundary_score`: whether each point lies at the blood/tissue boundary of the root (world LPS mm, sampled
  in the CT in HU);
- :func:`geometry_checks`: whether the hinge triangle RCC, LCC, NCC is an anatomically plausible annulus
  (world LPS mm; x to the patient's Left, y to Posterior, z to Superior);
- :func:`image_checks`: whether the image is a CT in Hounsfield units at all.

:func:`assess` adds the agreement of the fold models and combines them into a per-point confidence in [0, 1] and
a case verdict ``ok`` / ``review`` / ``failed`` with its reasons in plain sentences (:class:`QualityReport`).

The confidence of point k is a product of terms in [0, 1], each monotone in one input::

    fold     = 1 / (1 + (rms_k / fold_rms_half_mm) ** fold_exponent)       rms_k: fold disagreement, mm
    contrast = c_k ** n / (c_k ** n + contrast_half ** n)                   c_k: peak contrast, n = contrast_exponent
    boundary = boundary_floor + (1 - boundary_floor) * b_k                  b_k: boundary score in [0, 1]
    context  = failed_factor ** (number of failed case-level families that concern the point:
                                 image not CT-like, root not located, implausible hinge geometry (hinge points only))
    confidence = fold * contrast * boundary * context

With one fold model there is no fold agreement: the fold term is left out (set to 1) and the report says so.

How the default constants were chosen (first guesses, to be calibrated on validation data; pass a
:class:`QcSettings` to :func:`assess` to change them). "Measured" below means: the bundled 4-fold GLiP model on
48 full-resolution phantom CTs (seed 7, cases 20-31 of the styles classic, train, heldout-cardiac and
heldout-extreme; 15 fail the geometry checks, all with errors of 20-170 mm), Spearman correlations with the
error over the 99 hinge points of the 33 others:

- ``FOLD_RMS_HALF_MM = 4``, ``FOLD_EXPONENT = 4``: the fold peaks of a good detection scatter by about one grid
  voxel (1.6 mm; term 0.97 at 1.6 mm, 0.94 at 2 mm); at 2.5 voxels (4 mm) the folds no longer agree on the place
  (term 0.5) and at 5 mm the term alone asks for review (0.29). The Hill form falls gently, unlike the old
  Gaussian ``exp(-rms^2 / (2 (3.2 mm)^2))``. Measured: with the RMS the whole confidence ranks errors a little
  better than with the median fold distance (Spearman 0.45 vs 0.40) but, because one fold of four far off
  (20-60 mm) dominates it, asks to review more good points (22 vs 11 of 87 with error <= 5 mm; 7 vs 4 of the 12
  above 5 mm).
- ``PEAK_CONTRAST_HALF = 10``, ``PEAK_CONTRAST_EXPONENT = 2``: the contrast is in robust standard deviations of
  the map (see :func:`peak_contrast`); the highest of ~10^6 voxels of pure noise lies about 5 SD above the mean
  (term 0.2), a peak of 10 SD is half-trusted. Measured: the raw critic's background is nearly flat (MAD 0.3-2
  against peaks of 100-1900), so the spread floor sets the scale and the contrast is 50 x (peak - shell) /
  (peak - median): 34-43 for 90 % of the points with error <= 5 mm (term 0.92-0.95), 15-30 for some gross
  misses; Spearman 0.40 (0.19 over all 144 points), a weak term on purpose.
- ``BOUNDARY_FLOOR = 0.4``: a point that is not at a blood/tissue boundary at all keeps 0.4, so the boundary alone
  asks for review (< 0.5) but a partial score of 0.5 does not (0.7). Measured: at the true hinge points of all 48
  cases the score is 1.0 for 88 % and >= 0.84 for 90 %; Spearman 0.33.
- ``FAILED_FACTOR = 0.5``: a point of a failed case is at most half as trustworthy as its own evidence says.
- ``REVIEW_BELOW = constants.LOW_CONFIDENCE`` (0.5).

Case verdict rules, in order: ``failed`` when the image is not CT-like (:func:`image_checks`), the root was not
located, or any hinge-geometry check fails (mirrored cusp order, degenerate triangle, sizes or tilt outside the
widened anatomical ranges); otherwise ``review`` when any point's confidence is below ``review_below``; otherwise
``ok``.

Pure numpy + SimpleITK: this module runs inside 3D Slicer's Python (no torch, no slicer import).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from .constants import AIR_HU, HINGE_NAMES, LOW_CONFIDENCE
from .typing import GridIndex, PointsLPS

# --------------------------------------------------------------------------- confidence (QcSettings defaults)
#: Fold disagreement (RMS distance of the fold peaks from the ensemble peak, mm) at which the fold term is 0.5.
FOLD_RMS_HALF_MM = 4.0
#: Steepness of the fold term around FOLD_RMS_HALF_MM (Hill exponent).
FOLD_EXPONENT = 4.0
#: Peak contrast (robust SDs of the map) at which the contrast term is 0.5.
PEAK_CONTRAST_HALF = 10.0
#: Steepness of the contrast term around PEAK_CONTRAST_HALF (Hill exponent).
PEAK_CONTRAST_EXPONENT = 2.0
#: Boundary term of a point with boundary score 0 (1 at score 1, linear in between).
BOUNDARY_FLOOR = 0.4
#: Factor on a point's confidence for each failed case-level family (image, location, geometry) concerning it.
FAILED_FACTOR = 0.5
#: A point whose confidence is below this asks for review.
REVIEW_BELOW = LOW_CONFIDENCE
#: Terms below this are named as the reason of a low confidence (the lowest term is named anyway).
TERM_REPORTED_BELOW = 0.8

# --------------------------------------------------------------------------- peak contrast
#: Shell around the peak, in network-grid voxels (1.6 mm: 4.8-9.6 mm), whose mean is the peak's surroundings.
SHELL_VOXELS = (3.0, 6.0)
#: Map fluctuations below this fraction of the peak height above the map's median count as this fraction, so a
#: noise-free map (sigmoid baselines: a background of exact zeros) scores at most 1 / 0.02 = 50, not infinity.
SPREAD_FLOOR_FRACTION = 0.02
#: MAD -> standard deviation for Gaussian noise.
_MAD_TO_SD = 1.4826

# --------------------------------------------------------------------------- boundary score
#: Radius of the ball sampled around a point (mm) and the spacing of the samples in it (mm, ~260 samples).
BALL_RADIUS_MM = 4.0
BALL_STEP_MM = 1.0
#: Gaussian smoothing (mm) of the CT before sampling: takes CT noise (up to ~80 HU SD) down to a few HU while an
#: edge stays sharp on the scale of the ball.
BALL_SMOOTHING_MM = 1.0
#: Percentiles of the ball's HU taken as its tissue level and its bright (lumen) level: each side must fill at
#: least ~5 % of the ball, i.e. the point lies within ~3 mm of the boundary (a 4 mm ball cut 1.1 mm from its rim
#: holds 5 %).
TISSUE_PERCENTILE, BRIGHT_PERCENTILE = 5.0, 95.0
#: Bright minus tissue level (HU): 0 below the first value, 1 above the second (lumen 180-700 HU against
#: myocardium 40-150 HU or fat -100 HU differs by >= 100-150 HU).
BOUNDARY_CONTRAST_HU = (75.0, 150.0)
#: The tissue level must be soft tissue (fat -100 HU to enhanced myocardium ~150 HU; at a hinge the blurred thin
#: wall and myocardium read up to ~200 HU in the phantom): 0 below the first pair (lung, air), ramping up to 1;
#: 1 up to the first value of the second pair, ramping down to 0 at its second value (a blood pool next to
#: something brighter still, e.g. bone).
TISSUE_LOW_HU = (-400.0, -200.0)
TISSUE_HIGH_HU = (200.0, 300.0)

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

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class QcSettings:
    """The constants of the confidence formula and the review threshold (see the module docstring).

    Attributes:
        fold_rms_half_mm: fold disagreement (mm) at which the fold term is 0.5.
        fold_exponent: Hill exponent of the fold term.
        contrast_half: peak contrast at which the contrast term is 0.5.
        contrast_exponent: Hill exponent of the contrast term.
        boundary_floor: boundary term at boundary score 0.
        failed_factor: factor per failed case-level family (image, location, geometry) concerning a point.
        review_below: a point with a lower confidence asks for review.
    """

    fold_rms_half_mm: float = FOLD_RMS_HALF_MM
    fold_exponent: float = FOLD_EXPONENT
    contrast_half: float = PEAK_CONTRAST_HALF
    contrast_exponent: float = PEAK_CONTRAST_EXPONENT
    boundary_floor: float = BOUNDARY_FLOOR
    failed_factor: float = FAILED_FACTOR
    review_below: float = REVIEW_BELOW


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
            "value": _round(self.value),
            "range": [_round(self.low), _round(self.high)],
            "unit": self.unit,
            "passed": self.passed,
            "reason": self.reason,
        }


def _round(value: float | None, digits: int = 3) -> float | None:
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


# =========================================================================== peak contrast
def peak_contrast(maps: npt.ArrayLike, indices: GridIndex) -> Array:
    """How sharply each landmark's peak stands out of its map, comparable across losses.

    ``contrast_k = max(0, m_k(p_k) - mean(m_k over the shell 3 <= |x - p_k| <= 6 voxels)) / s_k`` where ``p_k`` is
    the peak index rounded to the nearest voxel and the spread
    ``s_k = max(1.4826 * MAD(m_k), SPREAD_FLOOR_FRACTION * (m_k(p_k) - median(m_k)))``: the peak's height above
    its surroundings in robust standard deviations of the map. MAD (median absolute deviation from the median)
    ignores the peak itself, so the raw GLiP critic (unbounded) and sigmoid maps in [0, 1] are on one scale; the
    floor keeps noise-free maps finite (at most 1 / SPREAD_FLOOR_FRACTION = 50 for a perfect peak). A constant map,
    or a point that is no peak, scores 0.

    Args:
        maps: (K, X, Y, Z) ensemble-mean network maps, one per landmark.
        indices: (K, 3) network-grid index (x, y, z) of each peak (sub-voxel allowed).

    Returns:
        (K,) non-negative contrast, in robust SDs of the map.
    """
    maps = np.asarray(maps)
    indices = np.asarray(indices, dtype=np.float64)
    if maps.ndim != 4 or indices.shape != (maps.shape[0], 3):
        raise ValueError(
            f"peak_contrast: expected maps (K, X, Y, Z) and indices (K, 3), got {maps.shape}, {indices.shape}"
        )
    size = np.array(maps.shape[1:])
    r_in, r_out = SHELL_VOXELS
    reach = int(np.ceil(r_out))
    offsets = np.stack(np.meshgrid(*[np.arange(-reach, reach + 1)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    distance = np.linalg.norm(offsets, axis=1)
    offsets = offsets[(distance >= r_in) & (distance <= r_out)]
    result = np.zeros(maps.shape[0])
    for k, volume in enumerate(maps):
        if not np.all(np.isfinite(indices[k])):
            continue
        peak = np.clip(np.rint(indices[k]).astype(int), 0, size - 1)
        shell = peak + offsets
        shell = shell[np.all((shell >= 0) & (shell < size), axis=1)]
        if len(shell) == 0:
            continue
        volume = np.asarray(volume, dtype=np.float64)
        height = volume[tuple(peak)] - volume[tuple(shell.T)].mean()
        # Median and MAD of every 8th voxel: 8x faster than of all, and the same to well under 1 %.
        sample = volume[::2, ::2, ::2]
        median = float(np.median(sample))
        mad = float(np.median(np.abs(sample - median)))
        spread = max(_MAD_TO_SD * mad, SPREAD_FLOOR_FRACTION * (volume[tuple(peak)] - median))
        if height > 0 and spread > 0 and np.isfinite(height / spread):
            result[k] = height / spread
    return result


# =========================================================================== boundary score
def _ramp(x: float | Array, lo: float, hi: float) -> float | Array:
    """0 below lo, 1 above hi, linear in between."""
    return np.clip((np.asarray(x, dtype=np.float64) - lo) / (hi - lo), 0.0, 1.0)


def _ball_mask(n: int, radius: float, step: float) -> np.ndarray:
    """(2n+1)^3 booleans, (x, y, z) order: which points of a cubic lattice of ``step`` mm lie in the ball."""
    axis = np.arange(-n, n + 1) * step
    lattice = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    return np.linalg.norm(lattice, axis=1) <= radius + 1e-9


def sample_ball(image: sitk.Image, point_lps: npt.ArrayLike, radius_mm: float = BALL_RADIUS_MM) -> Array:
    """HU of the (lightly smoothed) CT in a ball around a point, by linear interpolation in world LPS mm.

    The image's direction matrix is honoured (SimpleITK maps world to index). Outside the image counts as air.

    Args:
        image: 3D scalar CT in HU.
        point_lps: (3,) world LPS mm.
        radius_mm: ball radius.

    Returns:
        (M,) HU at the points of a cubic lattice of BALL_STEP_MM inside the ball, in (x, y, z) C order (z varying
        fastest), after smoothing with a Gaussian of BALL_SMOOTHING_MM.
    """
    point = np.asarray(point_lps, dtype=np.float64).reshape(3)
    n = int(np.floor(radius_mm / BALL_STEP_MM))
    # Crop a box around the ball (margin 3 sigma for the smoothing), found through the 8 corners' indices.
    half = n * BALL_STEP_MM + 3.0 * BALL_SMOOTHING_MM + max(image.GetSpacing())
    corners = point + half * np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1], indexing="ij")).reshape(3, -1).T
    index = np.array([image.TransformPhysicalPointToContinuousIndex(c.tolist()) for c in corners])
    lo = np.maximum(np.floor(index.min(axis=0)).astype(int), 0)
    hi = np.minimum(np.ceil(index.max(axis=0)).astype(int) + 1, np.array(image.GetSize()))
    inside = _ball_mask(n, radius_mm, BALL_STEP_MM)
    if np.any(hi - lo < 1):
        return np.full(int(inside.sum()), AIR_HU)
    crop = sitk.Cast(sitk.RegionOfInterest(image, (hi - lo).tolist(), lo.tolist()), sitk.sitkFloat32)
    if BALL_SMOOTHING_MM > 0 and np.all(np.array(crop.GetSize()) >= 4):
        crop = sitk.SmoothingRecursiveGaussian(crop, BALL_SMOOTHING_MM)
    reference = sitk.Image([2 * n + 1] * 3, sitk.sitkFloat32)
    reference.SetSpacing([BALL_STEP_MM] * 3)
    reference.SetOrigin((point - n * BALL_STEP_MM).tolist())  # identity direction: a cube in LPS
    cube = sitk.Resample(crop, reference, sitk.Transform(), sitk.sitkLinear, AIR_HU, sitk.sitkFloat32)
    # GetArrayFromImage is (z, y, x); transpose to (x, y, z), the order of the mask.
    values = sitk.GetArrayFromImage(cube).transpose(2, 1, 0).reshape(-1).astype(np.float64)
    return values[inside]


def boundary_score_from_values(values: npt.ArrayLike) -> float:
    """Boundary score of the HU values of a ball (see :func:`boundary_score`)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0
    tissue, bright = np.percentile(values, [TISSUE_PERCENTILE, BRIGHT_PERCENTILE])
    contrast = _ramp(bright - tissue, *BOUNDARY_CONTRAST_HU)
    soft = _ramp(tissue, *TISSUE_LOW_HU) * (1.0 - _ramp(tissue, *TISSUE_HIGH_HU))
    return float(contrast * soft)


def boundary_score(image: sitk.Image, points_lps: npt.ArrayLike, radius_mm: float = BALL_RADIUS_MM) -> Array:
    """Whether each point lies at the blood/tissue boundary of the root, in [0, 1].

    A hinge point has contrast-filled lumen on one side and soft tissue (the wall, myocardium, fat) on the other.
    In a ball of ``radius_mm`` around the point (CT smoothed by BALL_SMOOTHING_MM, linear interpolation, world LPS)
    take the tissue level ``T`` = 5th and the bright level ``B`` = 95th percentile of the HU. Then::

        score = ramp(B - T, 75, 150 HU) * ramp(T, -400, -200 HU) * (1 - ramp(T, 200, 300 HU))

    (``ramp(x, lo, hi)``: 0 below lo, 1 above hi, linear between). High when both lumen (>= 150 HU above the
    tissue, whatever the contrast level) and soft tissue each fill >= ~5 % of the ball (the point within ~3 mm
    of the boundary); low in pure air or lung (T too low), pure blood pool or bone (T too high, or B - T small),
    pure tissue (B - T small). It does not tell a bone or calcium edge against soft tissue from the lumen edge,
    and images coarser than ~2 mm blur the tissue level up (lower scores).

    Args:
        image: 3D scalar CT in HU, any direction matrix.
        points_lps: (K, 3) world LPS mm.
        radius_mm: ball radius (mm).

    Returns:
        (K,) scores in [0, 1]; 0 for a non-finite point.
    """
    points = np.asarray(points_lps, dtype=np.float64).reshape(-1, 3)
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError("boundary_score: expected a 3D scalar image")
    scores = np.zeros(len(points))
    for k, point in enumerate(points):
        if np.all(np.isfinite(point)):
            scores[k] = boundary_score_from_values(sample_ball(image, point, radius_mm))
    return scores


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


# =========================================================================== assess
@dataclass(frozen=True)
class PointQuality:
    """Quality of one landmark.

    Attributes:
        name: landmark name.
        confidence: in [0, 1] (see the module docstring).
        verdict: "ok", or "low" when ``confidence`` is below the review threshold.
        fold_rms_mm: RMS distance of the fold positions from the ensemble position (None with one fold).
        peak_contrast: from :func:`peak_contrast`.
        boundary: from :func:`boundary_score`.
        terms: the factors of ``confidence``: ``fold`` (absent with one fold), ``contrast``, ``boundary``,
            ``context``.
        reason: empty when ok, else what lowered the confidence (e.g. "folds disagree by 4.1 mm").
    """

    name: str
    confidence: float
    verdict: str
    fold_rms_mm: float | None
    peak_contrast: float
    boundary: float
    terms: Mapping[str, float]
    reason: str = ""

    def to_dict(self) -> dict:
        """JSON-serialisable, numbers rounded to 3 decimals."""
        return {
            "name": self.name,
            "confidence": _round(self.confidence),
            "verdict": self.verdict,
            "fold_rms_mm": _round(self.fold_rms_mm),
            "peak_contrast": _round(self.peak_contrast),
            "boundary": _round(self.boundary),
            "terms": {key: _round(value) for key, value in self.terms.items()},
            "reason": self.reason,
        }


@dataclass(frozen=True)
class QualityReport:
    """Quality of one detection.

    Attributes:
        verdict: "ok", "review" or "failed" (rules: module docstring).
        reasons: short plain sentences why the verdict is not "ok" (empty when ok), one per failed check or low
            point, most severe first: image, location, geometry, then points.
        notes: information that is no problem (e.g. a single fold model: no fold-agreement term).
        points: per landmark, in the detection's order.
        geometry: the hinge-geometry checks (:func:`geometry_checks`).
        image: the image checks (:func:`image_checks`).
        located: whether the root was located.
        settings: the constants used.
    """

    verdict: str
    reasons: tuple[str, ...]
    notes: tuple[str, ...]
    points: tuple[PointQuality, ...]
    geometry: Mapping[str, Check] = field(default_factory=dict)
    image: Mapping[str, Check] = field(default_factory=dict)
    located: bool = True
    settings: QcSettings = QcSettings()

    @property
    def confidence(self) -> Array:
        """(K,) per-point confidence, in the detection's order."""
        return np.array([p.confidence for p in self.points])

    def to_dict(self) -> dict:
        """JSON-serialisable, numbers rounded to 3 decimals."""
        return {
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "notes": list(self.notes),
            "points": [p.to_dict() for p in self.points],
            "geometry": {key: check.to_dict() for key, check in self.geometry.items()},
            "image": {key: check.to_dict() for key, check in self.image.items()},
            "located": self.located,
            "settings": {key: float(value) for key, value in asdict(self.settings).items()},
        }

    def summary(self) -> str:
        """One line for the terminal, e.g. ``review: LCC low confidence (folds disagree by 4.1 mm)``."""
        if not self.reasons:
            lowest = min(self.points, key=lambda p: p.confidence, default=None)
            detail = f" (lowest confidence {lowest.confidence:.2f}, {lowest.name})" if lowest else ""
            return f"{self.verdict}: all checks passed{detail}"
        shown = "; ".join(self.reasons[:2])
        more = f" (+{len(self.reasons) - 2} more)" if len(self.reasons) > 2 else ""
        return f"{self.verdict}: {shown}{more}"


def _hill_down(x: float, half: float, exponent: float) -> float:
    """1 at x = 0, 0.5 at x = half, decreasing to 0."""
    return float(1.0 / (1.0 + (max(x, 0.0) / half) ** exponent))


def _hill_up(x: float, half: float, exponent: float) -> float:
    """0 at x = 0, 0.5 at x = half, increasing to 1."""
    x = max(float(x), 0.0)
    if not np.isfinite(x):
        return 1.0
    return float(x**exponent / (x**exponent + half**exponent))


def fold_rms_mm(positions_lps: npt.ArrayLike, fold_positions_lps: npt.ArrayLike) -> Array:
    """(K,) RMS distance (mm) of the fold positions (F, K, 3) from the ensemble positions (K, 3), world LPS mm."""
    positions = np.asarray(positions_lps, dtype=np.float64)
    folds = np.asarray(fold_positions_lps, dtype=np.float64)
    return np.sqrt(np.mean(np.sum((folds - positions[None]) ** 2, axis=-1), axis=0))


_FAILED = "the case failed"


def _point_quality(
    name: str, rms: float | None, contrast: float, boundary: float, failed_families: int, settings: QcSettings
) -> PointQuality:
    """Confidence, terms and reason of one point (formula: module docstring); rms None: no fold term."""
    terms: dict[str, float] = {}
    if rms is not None:
        terms["fold"] = _hill_down(rms, settings.fold_rms_half_mm, settings.fold_exponent)
    terms["contrast"] = _hill_up(contrast, settings.contrast_half, settings.contrast_exponent)
    boundary = float(np.clip(np.nan_to_num(boundary), 0.0, 1.0))
    terms["boundary"] = settings.boundary_floor + (1.0 - settings.boundary_floor) * boundary
    terms["context"] = settings.failed_factor**failed_families
    confidence = float(np.prod(list(terms.values())))
    low = confidence < settings.review_below
    reason = ""
    if low:
        explain = {
            "fold": f"folds disagree by {rms or 0.0:.1f} mm",
            "contrast": f"weak peak: contrast {contrast:.1f}",
            "boundary": f"not at a blood/tissue boundary: score {boundary:.2f}",
            "context": _FAILED,
        }
        weak = sorted((value, key) for key, value in terms.items() if value < TERM_REPORTED_BELOW)
        reason = ", ".join(explain[key] for _, key in weak or [min((v, k) for k, v in terms.items())])
    return PointQuality(
        name=name,
        confidence=confidence,
        verdict="low" if low else "ok",
        fold_rms_mm=rms,
        peak_contrast=float(contrast),
        boundary=boundary,
        terms=terms,
        reason=reason,
    )


def assess(
    names: Sequence[str],
    positions_lps: PointsLPS,
    fold_positions_lps: npt.ArrayLike | None,
    peak_contrast: npt.ArrayLike,
    boundary: npt.ArrayLike,
    image_check: Mapping[str, Check],
    located: bool = True,
    location_reason: str = "",
    settings: QcSettings | None = None,
) -> QualityReport:
    """Per-point confidence and the case verdict of one detection (formula and rules: module docstring).

    Args:
        names: K landmark names.
        positions_lps: (K, 3) ensemble positions, world LPS mm.
        fold_positions_lps: (F, K, 3) each fold model's positions, world LPS mm; None or F = 1: no fold agreement.
        peak_contrast: (K,) from :func:`peak_contrast`.
        boundary: (K,) from :func:`boundary_score`.
        image_check: from :func:`image_checks`.
        located: whether the root was located (False: the case fails).
        location_reason: why it was not located, one plain sentence (shown in the reasons).
        settings: the constants (default: the module constants).

    Returns:
        The QualityReport.
    """
    settings = settings or QcSettings()
    names = list(names)
    positions = np.asarray(positions_lps, dtype=np.float64).reshape(-1, 3)
    k = len(names)
    contrast = np.asarray(peak_contrast, dtype=np.float64).reshape(-1)
    boundary = np.asarray(boundary, dtype=np.float64).reshape(-1)
    if positions.shape[0] != k or contrast.shape != (k,) or boundary.shape != (k,):
        raise ValueError(
            f"assess: {k} names but positions {positions.shape}, peak_contrast {contrast.shape}, "
            f"boundary {boundary.shape}"
        )
    folds = None if fold_positions_lps is None else np.asarray(fold_positions_lps, dtype=np.float64)
    if folds is not None and (folds.ndim != 3 or folds.shape[1:] != (k, 3)):
        raise ValueError(f"assess: fold positions must be (F, {k}, 3), got {folds.shape}")
    notes: list[str] = []
    rms: Array | None = None
    if folds is None or folds.shape[0] < 2:
        notes.append("one fold model: no fold agreement; confidence from peak contrast and boundary only")
    else:
        rms = fold_rms_mm(positions, folds)

    if not image_check:
        notes.append("image not checked")
    geometry = geometry_checks(names, positions)
    if not geometry:
        notes.append("no RCC, LCC and NCC among the landmarks: hinge geometry not checked")
    # One sentence per failed check, most severe family first.
    image_failed = [f"image not CT-like: {c.reason}" for c in image_check.values() if not c.passed]
    geometry_failed = [f"implausible hinge geometry: {c.reason}" for c in geometry.values() if not c.passed]
    not_located = [] if located else [f"aortic root not located: {location_reason or 'no reason given'}"]
    failures = image_failed + not_located + geometry_failed

    points = []
    for i, name in enumerate(names):
        failed_families = int(bool(image_failed)) + int(not located)
        failed_families += int(bool(geometry_failed) and name in HINGE_NAMES)
        rms_i = None if rms is None else float(rms[i])
        points.append(_point_quality(name, rms_i, contrast[i], boundary[i], failed_families, settings))
    # A point that is low only because the case failed adds nothing to the case's reasons.
    low_points = [f"{p.name} low confidence ({p.reason})" for p in points if p.verdict == "low" and p.reason != _FAILED]
    verdict = "failed" if failures else ("review" if low_points else "ok")
    return QualityReport(
        verdict=verdict,
        reasons=tuple(failures + low_points),
        notes=tuple(notes),
        points=tuple(points),
        geometry=geometry,
        image=dict(image_check),
        located=located,
        settings=settings,
    )
