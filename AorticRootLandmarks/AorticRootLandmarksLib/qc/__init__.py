"""Quality control of a detection: per-point confidence, image and geometry checks, and a case verdict.

Four measurements feed :func:`assess`, each computed by a pure function:

- :func:`peak_contrast` (signals.py): how sharply each landmark's peak stands out of its ensemble-mean network map
  (network grid index (x, y, z));
- :func:`boundary_score` (signals.py): whether each point lies at the blood/tissue boundary of the root (world LPS
  mm, sampled in the CT in HU);
- :func:`geometry_checks` (checks.py): whether the hinge triangle RCC, LCC, NCC is an anatomically plausible annulus
  (world LPS mm; x to the patient's Left, y to Posterior, z to Superior);
- :func:`image_checks` (checks.py): whether the image is a CT in Hounsfield units at all.

:func:`assess` (report.py) adds the agreement of the fold models and combines them into a per-point confidence in
[0, 1] and a case verdict ``ok`` / ``review`` / ``failed`` with its reasons in plain sentences
(:class:`QualityReport`). The confidence formula, how its default constants were chosen and the verdict rules are in
report.py's docstring; the ranges of the checks and their sources next to their constants in checks.py and
signals.py.

Pure numpy + SimpleITK: this package runs inside 3D Slicer's Python (no torch, no slicer import).
"""

from .checks import Check, geometry_checks, image_checks
from .report import (
    BOUNDARY_FLOOR,
    FAILED_FACTOR,
    FOLD_EXPONENT,
    FOLD_RMS_HALF_MM,
    PEAK_CONTRAST_EXPONENT,
    PEAK_CONTRAST_HALF,
    REFINE_EXPONENT,
    REFINE_FAILED_FACTOR,
    REFINE_RMS_HALF_MM,
    REVIEW_BELOW,
    SHIFT_EXPONENT,
    SHIFT_HALF_MM,
    PointQuality,
    QcSettings,
    QualityReport,
    RefinerSignals,
    assess,
    point_quality,
)
from .signals import boundary_score, boundary_score_from_values, peak_contrast, sample_ball

__all__ = [
    "BOUNDARY_FLOOR",
    "FAILED_FACTOR",
    "FOLD_EXPONENT",
    "FOLD_RMS_HALF_MM",
    "PEAK_CONTRAST_EXPONENT",
    "PEAK_CONTRAST_HALF",
    "REFINE_EXPONENT",
    "REFINE_FAILED_FACTOR",
    "REFINE_RMS_HALF_MM",
    "REVIEW_BELOW",
    "SHIFT_EXPONENT",
    "SHIFT_HALF_MM",
    "Check",
    "PointQuality",
    "QcSettings",
    "QualityReport",
    "RefinerSignals",
    "assess",
    "boundary_score",
    "boundary_score_from_values",
    "geometry_checks",
    "image_checks",
    "peak_contrast",
    "point_quality",
    "sample_ball",
]
