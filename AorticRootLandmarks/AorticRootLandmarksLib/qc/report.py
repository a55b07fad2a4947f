"""The confidence of each landmark and the verdict of a detection (:func:`assess`, :class:`QualityReport`).

:func:`assess` takes the peak contrast and boundary score (signals.py), the image checks and the hinge-geometry checks
(checks.py), adds the agreement of the fold models and combines them into a per-point confidence in [0, 1] and a
case verdict ``ok`` / ``review`` / ``failed`` with its reasons in plain sentences.

The confidence of point k is a product of terms in [0, 1], each monotone in one input::

    fold     = 1 / (1 + (rms_k / fold_rms_half_mm) ** fold_exponent)       rms_k: fold disagreement, mm (with test-time
                                                                           augmentation: of every fold on every grid)
    contrast = c_k ** n / (c_k ** n + contrast_half ** n)                   c_k: peak contrast, n = contrast_exponent
    boundary = boundary_floor + (1 - boundary_floor) * b_k                  b_k: boundary score in [0, 1]
    context  = failed_factor ** (number of failed case-level families that concern the point:
                                 image not CT-like, root not located, implausible hinge geometry (hinge points only))
    refinement = refine_failed_factor if the second stage failed on the point, else 1 (term absent)
    refiner  = 1 / (1 + (r_k / refine_rms_half_mm) ** refine_exponent)     r_k: the refiner folds' disagreement, mm
    stages   = 1 / (1 + (s_k / shift_half_mm) ** shift_exponent)          s_k: how far the second stage moved it, mm
    score    = v_k ** m / (v_k ** m + refine_score_half ** m)               v_k: the refiner's map value at its peak,
                                                                           m = refine_score_exponent
    confidence = fold * contrast * boundary * context * refinement * refiner * stages * score

With one fold model on one grid there is no fold agreement: the fold term is left out (set to 1) and the report says
so (with test-time augmentation, detection.py, the "folds" are every fold model on each of the shifted grids). The
refinement term is there only when the second stage ran and failed on the point (refine.py: its peak on the patch
border, or the first-stage point outside the image); the refiner and stages terms only when it ran and refined the
point; the score term only then and when the model's constants give ``refine_score_half`` (the map value's scale is
the refiner's own, so there is no default: a calibration chooses it or the term is left out). A detection without a
second stage has the first five terms.

The constants are per model: a model folder may carry its own in ``model.json["quality_control"]`` (the second stage's
``refine/model.json`` for two-stage detections), chosen on validation CTs by ``benchmarks/calibrate_qc.py``; the
module constants below are the defaults where it does not. The bundled model's were chosen on validation phantoms
no model was trained on, never on a test split or a held-out style: they, the data they were chosen on and what they
catch there are in its ``refine/model.json`` (``quality_control``, ``quality_control_calibration``), explained in
its model card (Resources/Models/phantom-glip/README.md).

How the default constants were chosen (first guesses for a model without its own; pass a
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
  the map (see :func:`signals.peak_contrast`); the highest of ~10^6 voxels of pure noise lies about 5 SD above the
  mean (term 0.2), a peak of 10 SD is half-trusted. Measured: the raw critic's background is nearly flat (MAD 0.3-2
  against peaks of 100-1900), so the spread floor sets the scale and the contrast is 50 x (peak - shell) /
  (peak - median): 34-43 for 90 % of the points with error <= 5 mm (term 0.92-0.95), 15-30 for some gross
  misses; Spearman 0.40 (0.19 over all 144 points), a weak term on purpose.
- ``BOUNDARY_FLOOR = 0.4``: a point that is not at a blood/tissue boundary at all keeps 0.4, so the boundary alone
  asks for review (< 0.5) but a partial score of 0.5 does not (0.7). Measured: at the true hinge points of all 48
  cases the score is 1.0 for 88 % and >= 0.84 for 90 %; Spearman 0.33.
- ``FAILED_FACTOR = 0.5``: a point of a failed case is at most half as trustworthy as its own evidence says.
- ``REFINE_FAILED_FACTOR = 0.5``: a refiner that cannot find the landmark in its patch (within ~10 mm of the
  first-stage point) is evidence that the first stage missed it: the factor puts such a point at or below the review
  threshold (every other term is at most 1, and in practice below it).
- ``REVIEW_BELOW = constants.LOW_CONFIDENCE`` (0.5).
- ``refine_score_half``: none by default (the term is absent). The refiner's critic value at its peak depends on the
  refiner's training, so only a calibration on its own outputs can place it. Measured on the bundled refiner: alone
  it ranks the errors of 608 validation points better than all other terms together (Spearman -0.65 against -0.54);
  calibrated with it on 728 validation points (half 30), the confidence ranks them at -0.56 and flags 90 % of the
  bad and 14 % of the good points, against -0.50, 88 % and 19 % with the constants calibrated before without it.

Case verdict rules, in order: ``failed`` when the image is not CT-like (:func:`checks.image_checks`), the root was
not located, or any hinge-geometry check fails (mirrored cusp order, degenerate triangle, sizes or tilt outside the
widened anatomical ranges); otherwise ``review`` when any point's confidence is below ``review_below``; otherwise
``ok``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import numpy.typing as npt

from ..constants import HINGE_NAMES, LOW_CONFIDENCE
from ..inference import fold_spread
from ..typing import PointsLPS
from .checks import Check, geometry_checks, rounded

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
#: Factor on a point's confidence when the second stage failed on it (refine.FAILED).
REFINE_FAILED_FACTOR = 0.5
#: Disagreement of the refiner's fold models (RMS distance of their peaks from the refined point, mm) at which the
#: refiner term is 0.5.
REFINE_RMS_HALF_MM = 1.0
#: Steepness of the refiner term around REFINE_RMS_HALF_MM (Hill exponent).
REFINE_EXPONENT = 2.0
#: Distance the second stage moved a point from the first stage's (mm) at which the stages term is 0.5.
SHIFT_HALF_MM = 8.0
#: Steepness of the stages term around SHIFT_HALF_MM (Hill exponent).
SHIFT_EXPONENT = 4.0
#: Steepness of the refiner-score term around ``refine_score_half`` (Hill exponent; the half has no default).
REFINE_SCORE_EXPONENT = 4.0
#: A point whose confidence is below this asks for review.
REVIEW_BELOW = LOW_CONFIDENCE
#: Terms below this are named as the reason of a low confidence (the lowest term is named anyway).
TERM_REPORTED_BELOW = 0.8


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
        refine_failed_factor: factor on a point the second stage failed on.
        refine_rms_half_mm: disagreement of the refiner's folds (mm) at which the refiner term is 0.5.
        refine_exponent: Hill exponent of the refiner term.
        shift_half_mm: distance between the first-stage and the refined point (mm) at which the stages term is 0.5.
        shift_exponent: Hill exponent of the stages term.
        refine_score_half: the refiner's map value at its peak at which the score term is 0.5 (None: no score term).
        refine_score_exponent: Hill exponent of the score term.
    """

    fold_rms_half_mm: float = FOLD_RMS_HALF_MM
    fold_exponent: float = FOLD_EXPONENT
    contrast_half: float = PEAK_CONTRAST_HALF
    contrast_exponent: float = PEAK_CONTRAST_EXPONENT
    boundary_floor: float = BOUNDARY_FLOOR
    failed_factor: float = FAILED_FACTOR
    review_below: float = REVIEW_BELOW
    refine_failed_factor: float = REFINE_FAILED_FACTOR
    refine_rms_half_mm: float = REFINE_RMS_HALF_MM
    refine_exponent: float = REFINE_EXPONENT
    shift_half_mm: float = SHIFT_HALF_MM
    shift_exponent: float = SHIFT_EXPONENT
    refine_score_half: float | None = None
    refine_score_exponent: float = REFINE_SCORE_EXPONENT

    @classmethod
    def from_dict(cls, values: Mapping[str, float] | None, where: str = "quality_control") -> QcSettings:
        """Settings from a mapping of field names to numbers (a model's ``model.json["quality_control"]``); fields
        not given keep their defaults.

        Raises:
            ValueError: an unknown field or a value that is not a positive number.
        """
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{where}: unknown setting(s) {', '.join(unknown)} (the fields of qc.QcSettings)")
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
                raise ValueError(f"{where}: {key} = {value!r} is not a positive number")
        return cls(**{key: float(value) for key, value in values.items()})


@dataclass(frozen=True)
class RefinerSignals:
    """What the second stage says about one point, for :func:`assess` (``refine.PointRefinement`` has these fields).

    Attributes:
        failure: why its refinement failed, one plain phrase ("" when it did not).
        fold_rms_mm: disagreement of the refiner's fold models, mm (None: one fold, or no patch ran).
        shift_mm: how far the second stage moved the point from its first-stage position, mm (None: not known).
        score: the refiner's ensemble-mean map value at its peak (NaN: no patch ran).
    """

    failure: str = ""
    fold_rms_mm: float | None = None
    shift_mm: float | None = None
    score: float = float("nan")


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
            ``context``, ``refinement`` (only when the second stage failed on the point), ``refiner`` and
            ``stages`` (when it refined the point), ``score`` (then, with a calibrated ``refine_score_half``).
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
            "confidence": rounded(self.confidence),
            "verdict": self.verdict,
            "fold_rms_mm": rounded(self.fold_rms_mm),
            "peak_contrast": rounded(self.peak_contrast),
            "boundary": rounded(self.boundary),
            "terms": {key: rounded(value) for key, value in self.terms.items()},
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
    def confidence(self) -> npt.NDArray[np.float64]:
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
            "settings": {key: None if value is None else float(value) for key, value in asdict(self.settings).items()},
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


_FAILED = "the case failed"


def point_quality(
    name: str, rms: float | None, contrast: float, boundary: float, failed_families: int, settings: QcSettings,
    refine_failure: str = "", refine_rms: float | None = None, refine_shift: float | None = None,
    refine_score: float | None = None,
) -> PointQuality:
    """Confidence, terms and reason of one point (formula: module docstring).

    Args:
        name: landmark name.
        rms: disagreement of the first-stage fold models, mm (None: one fold, no fold term).
        contrast: peak contrast; boundary: boundary score in [0, 1].
        failed_families: failed case-level check families that concern the point.
        settings: the constants.
        refine_failure: why the second stage failed on the point ("" when it did not or did not run).
        refine_rms: disagreement of the refiner's fold models, mm, when the second stage refined the point (None: no
            refiner term: no second stage, one refiner fold, or the refinement failed).
        refine_shift: distance from the first-stage point to the refined point, mm (None: no stages term: no second
            stage, or the refinement failed).
        refine_score: the refiner's map value at its peak (None or NaN: no score term; nor without
            ``settings.refine_score_half`` or when the refinement failed).
    """
    terms: dict[str, float] = {}
    if rms is not None:
        terms["fold"] = _hill_down(rms, settings.fold_rms_half_mm, settings.fold_exponent)
    if refine_rms is not None and not refine_failure:
        terms["refiner"] = _hill_down(refine_rms, settings.refine_rms_half_mm, settings.refine_exponent)
    if refine_shift is not None and not refine_failure:
        terms["stages"] = _hill_down(refine_shift, settings.shift_half_mm, settings.shift_exponent)
    scored = refine_score is not None and np.isfinite(refine_score) and settings.refine_score_half is not None
    if scored and not refine_failure:
        terms["score"] = _hill_up(refine_score, settings.refine_score_half, settings.refine_score_exponent)
    terms["contrast"] = _hill_up(contrast, settings.contrast_half, settings.contrast_exponent)
    boundary = float(np.clip(np.nan_to_num(boundary), 0.0, 1.0))
    terms["boundary"] = settings.boundary_floor + (1.0 - settings.boundary_floor) * boundary
    terms["context"] = settings.failed_factor**failed_families
    if refine_failure:
        terms["refinement"] = settings.refine_failed_factor
    confidence = float(np.prod(list(terms.values())))
    low = confidence < settings.review_below
    reason = ""
    if low:
        explain = {
            "fold": f"folds disagree by {rms or 0.0:.1f} mm",
            "refiner": f"second-stage folds disagree by {refine_rms or 0.0:.1f} mm",
            "stages": f"second stage moved it {refine_shift or 0.0:.1f} mm",
            "score": f"weak second-stage peak: score {refine_score or 0.0:.0f}",
            "contrast": f"weak peak: contrast {contrast:.1f}",
            "boundary": f"not at a blood/tissue boundary: score {boundary:.2f}",
            "context": _FAILED,
            "refinement": f"refinement failed: {refine_failure}",
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
    refined: Sequence[RefinerSignals] | None = None,
    notes: Sequence[str] = (),
) -> QualityReport:
    """Per-point confidence and the case verdict of one detection (formula and rules: module docstring).

    Args:
        names: K landmark names.
        positions_lps: (K, 3) ensemble positions, world LPS mm.
        fold_positions_lps: (F, K, 3) each fold model's positions, world LPS mm (with test-time augmentation, each
            fold's on each grid: F = folds x grids); None or F = 1: no fold agreement.
        peak_contrast: (K,) from :func:`peak_contrast`.
        boundary: (K,) from :func:`boundary_score`.
        image_check: from :func:`image_checks`.
        located: whether the root was located (False: the case fails).
        location_reason: why it was not located, one plain sentence (shown in the reasons).
        settings: the constants (default: the module constants).
        refined: (K,) per point what the second stage says of it (:class:`RefinerSignals`, or the
            ``refine.PointRefinement`` of each point, which has the same fields); None: no second stage ran.
        notes: further notes to report (e.g. refinement patches partly outside the image).

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
    refined = [RefinerSignals()] * k if refined is None else list(refined)
    if len(refined) != k:
        raise ValueError(f"assess: {k} names but {len(refined)} refinement results")
    notes = list(notes)
    rms: npt.NDArray[np.float64] | None = None
    if folds is None or folds.shape[0] < 2:
        notes.append("one fold model: no fold agreement; confidence from peak contrast and boundary only")
    else:
        rms = fold_spread(positions, folds)  # world LPS mm

    if not image_check:
        notes.append("image not checked")
    geometry = geometry_checks(names, positions)
    if not geometry:
        notes.append("no RCC, LCC and NCC among the landmarks: hinge geometry not checked")
    # One sentence per failed check, most severe family first.
    image_failed = [f"image not CT-like: {c.reason}" for c in image_check.values() if not c.passed]
    geometry_failed = [f"implausible hinge geometry: {c.reason}" for c in geometry.values() if not c.passed]
    not_located = [] if located else [f"aortic root not located: {location_reason or 'no reason given'}"]
    case_failures = image_failed + not_located + geometry_failed

    points = []
    for i, name in enumerate(names):
        failed_families = int(bool(image_failed)) + int(not located)
        failed_families += int(bool(geometry_failed) and name in HINGE_NAMES)
        rms_i = None if rms is None else float(rms[i])
        ref = refined[i]
        refine_i = None if ref.fold_rms_mm is None else float(ref.fold_rms_mm)
        shift_i = None if ref.shift_mm is None else float(ref.shift_mm)
        points.append(point_quality(
            name, rms_i, contrast[i], boundary[i], failed_families, settings, str(ref.failure), refine_i, shift_i,
            float(ref.score),
        ))  # fmt: skip
    # A point that is low only because the case failed adds nothing to the case's reasons.
    low_points = [f"{p.name} low confidence ({p.reason})" for p in points if p.verdict == "low" and p.reason != _FAILED]
    verdict = "failed" if case_failures else ("review" if low_points else "ok")
    return QualityReport(
        verdict=verdict,
        reasons=tuple(case_failures + low_points),
        notes=tuple(notes),
        points=tuple(points),
        geometry=geometry,
        image=dict(image_check),
        located=located,
        settings=settings,
    )
