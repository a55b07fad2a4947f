"""Phantom styles: named ranges of every parameter that decides how a CT looks, defined here and nowhere else.

A style is a dict ``dimension -> range``. A range is ``(lo, hi)`` (drawn uniformly from the half-open ``[lo, hi)``),
a list of such intervals (one interval picked at random, then uniform in it) or, for a ``p_*`` dimension, a
probability. :data:`DIMENSIONS` says what each dimension means and in which unit; ``docs/PHANTOM.md`` holds the table
:func:`styles_markdown` generates from both (a test keeps them equal).

- ``"classic"``: what ``params.sample_params`` drew before styles existed (the default, so old datasets are
  reproducible). Its row is a *description* of that sampler (``params.py``), checked by the tests, not used to draw.
- ``"train"``: the wide family the model should learn from (``style_params.py`` draws it).
- ``"val-edge"``: for choosing settings on: the ``train`` ranges narrowed to their hardest edge (faint contrast, strong
  noise, heavy calcium, the smallest and largest annuli). Every value lies inside ``train`` (a test checks it), so a
  setting chosen here has seen nothing of the held-out styles.
- ``"val-shift"``: for choosing settings that must hold outside the training ranges (e.g. quality control): outside
  ``train`` in dimensions that no held-out style leaves ``train`` in (softer kernels, a brighter right heart and left
  atrium, thicker leaflets and myocardium, deeper sinuses, more fat), equal to ``train`` everywhere else (a test
  checks both), so what is chosen on it has seen no held-out value.
- ``"heldout-cardiac"``, ``"heldout-extreme"``: for reporting only; each lies outside the train ranges in at least one
  dimension (:func:`disjoint_dimensions`), so a score on them measures generalisation, not memory.

Changing a range changes the cases of that style: bump ``params.PHANTOM_VERSION`` when you do.
"""

from __future__ import annotations

import math
from typing import Union

import numpy as np

#: A range: (lo, hi), a list of (lo, hi) intervals, or a probability (``p_*`` dimensions).
Range = Union[tuple[float, float], list[tuple[float, float]], float]

#: dimension -> (unit, meaning). Order = the rows of the table; "## " entries are section headings.
DIMENSIONS: dict[str, tuple[str, str]] = {
    "## Field of view and centring": ("", ""),
    "fov_mm": ("mm", "in-plane field of view (square): matrix x pixel spacing"),
    "offset_xy_frac": ("x FOV", "in-plane distance of the image centre from the annulus centre, as a fraction of the "
                       "FOV (direction uniform)"),
    "offset_xy_mm": ("mm", "the same distance in mm (styles that give it instead of the fraction)"),
    "z_coverage_mm": ("mm", "scan length: number of slices x slice spacing (cardiac only ... chest and abdomen)"),
    "offset_z_frac": ("x coverage", "signed z offset of the image centre from the annulus centre (the image top is "
                      "kept at most 250 mm above the annulus)"),
    "## Sampling": ("", ""),
    "pixel_mm": ("mm", "in-plane pixel spacing; the matrix is 256-512, so at least FOV / 512"),
    "slice_mm": ("mm", "slice spacing = slice thickness (FWHM of the slice profile); at least coverage / 400"),
    "p_flip": ("prob.", "some image axes flipped (negative direction-matrix entries)"),
    "p_oblique": ("prob.", "rotated direction matrix: gantry tilt or oblique reconstruction"),
    "oblique_deg": ("deg", "rotation angle of an oblique direction matrix (axis mostly left-right)"),
    "## Contrast timing": ("", ""),
    "lumen_hu": ("HU", "aortic root, left ventricle and aorta lumen"),
    "right_heart_rel": ("x lumen", "right atrium, ventricle and pulmonary arteries: 40 HU + rel x (lumen - 40 HU); "
                        "0 = unenhanced, > 1 = brighter than the left heart"),
    "left_atrium_rel": ("x lumen", "left atrium and pulmonary veins, as above"),
    "svc_rel": ("x lumen", "superior vena cava, as above (> 1.5: undiluted contrast from the arm vein)"),
    "svc_mixing": ("x HU", "amplitude of unmixed-contrast swirls in the SVC and right heart"),
    "## Image quality": ("", ""),
    "noise_hu": ("HU", "noise standard deviation (log-uniform)"),
    "noise_grain_mm": ("mm", "correlation length of the correlated part of the noise"),
    "kernel_blur_mm": ("mm", "Gaussian point-spread sigma of the reconstruction kernel (large = soft)"),
    "p_sharp": ("prob.", "sharp kernel with edge enhancement"),
    "sharpen": ("gain", "edge-enhancement gain of a sharp kernel (unsharp mask at twice the blur sigma)"),
    "p_streaks": ("prob.", "streaks from the densest calcium, a sternal wire or the contrast-filled SVC"),
    "streak_hu": ("HU", "peak amplitude of one streak"),
    "p_motion": ("prob.", "cardiac motion of the heart and root"),
    "motion_mm": ("mm", "motion: a 15-35 % ghost of the heart shifted by this distance (double contours, blur)"),
    "p_stairstep": ("prob.", "stair-step artefact of an ECG-gated acquisition"),
    "stairstep_hu": ("HU", "HU offset of each acquisition slab (z-offset bands), either sign"),
    "stairstep_slab_mm": ("mm", "slab height (detector coverage per heartbeat)"),
    "## Anatomy": ("", ""),
    "perimeter_mm": ("mm", "annulus (virtual basal ring) perimeter"),
    "annulus_ratio": ("", "minor / major diameter of the annulus ellipse"),
    "root_tilt_deg": ("deg", "angle of the root axis from the body's long axis"),
    "root_azimuth_deg": ("deg", "direction of the axis' horizontal part, 0 = patient's right, 90 = anterior"),
    "root_roll_deg": ("deg", "rotation of the cusps about the root axis"),
    "sinus_depth_mm": ("mm", "outward bulge of each sinus, drawn per sinus (asymmetry)"),
    "calcium_mean": ("nodules", "mean number of valve calcium nodules (Poisson); 0 = none"),
    "leaflet_mm": ("mm", "leaflet thickness"),
    "myocardium_mm": ("mm", "left-ventricular wall thickness (> 12: hypertrophy)"),
    "ascending_factor": ("x STJ", "ascending aorta radius / sinotubular junction radius (> 1.4: dilated)"),
    "heart_scale": ("x", "size of the four chambers"),
    "root_x_mm": ("mm", "annulus left of the body's midline"),
    "root_y_frac": ("x depth", "annulus anterior (-) of the body's centre, fraction of its half depth"),
    "chest_scale": ("x", "size of the thoracic cavity"),
    "fat_mm": ("mm", "subcutaneous fat (thin ... obese patient)"),
    "p_arms_down": ("prob.", "arms down beside the chest (else up, outside the scan)"),
    "p_table": ("prob.", "patient table in the image"),
    "p_wires": ("prob.", "sternal wires (after sternotomy)"),
}  # fmt: skip

_TRAIN: dict[str, Range] = {
    "fov_mm": (150.0, 450.0),
    "offset_xy_frac": (0.0, 0.45),
    "z_coverage_mm": (80.0, 450.0),
    "offset_z_frac": (-0.45, 0.45),
    "pixel_mm": (0.25, 1.0),
    "slice_mm": (0.5, 3.0),
    "p_flip": 0.3,
    "p_oblique": 0.3,
    "oblique_deg": (0.0, 15.0),
    "lumen_hu": (180.0, 700.0),
    "right_heart_rel": (0.0, 1.3),
    "left_atrium_rel": (0.5, 1.1),
    "svc_rel": (0.2, 4.0),
    "svc_mixing": (0.05, 0.4),
    "noise_hu": (5.0, 80.0),
    "noise_grain_mm": (0.4, 1.5),
    "kernel_blur_mm": (0.25, 1.2),
    "p_sharp": 0.3,
    "sharpen": (0.2, 1.0),
    "p_streaks": 0.35,
    "streak_hu": (20.0, 150.0),
    "p_motion": 0.3,
    "motion_mm": (0.5, 6.0),
    "p_stairstep": 0.2,
    "stairstep_hu": (5.0, 40.0),
    "stairstep_slab_mm": (15.0, 40.0),
    "perimeter_mm": (55.0, 100.0),
    "annulus_ratio": (0.65, 1.0),
    "root_tilt_deg": (20.0, 70.0),
    "root_azimuth_deg": (0.0, 80.0),
    "root_roll_deg": (-25.0, 25.0),
    "sinus_depth_mm": (2.0, 10.0),
    "calcium_mean": (0.0, 12.0),
    "leaflet_mm": (0.8, 3.0),
    "myocardium_mm": (7.0, 20.0),
    "ascending_factor": (1.0, 1.8),
    "heart_scale": (0.8, 1.3),
    "root_x_mm": (-15.0, 35.0),
    "root_y_frac": (-0.4, -0.1),
    "chest_scale": (0.85, 1.15),
    "fat_mm": (3.0, 60.0),
    "p_arms_down": 0.3,
    "p_table": 0.8,
    "p_wires": 0.15,
}


def _heldout_cardiac() -> dict[str, Range]:
    style = {k: v for k, v in _TRAIN.items() if k != "offset_xy_frac"}
    style.update(
        fov_mm=(140.0, 170.0),
        offset_xy_mm=(25.0, 40.0),
        z_coverage_mm=(80.0, 120.0),
        pixel_mm=(0.25, 0.35),
        slice_mm=(0.5, 0.75),
        noise_hu=(80.0, 100.0),
    )
    return style


STYLES: dict[str, dict[str, Range]] = {
    "classic": {
        "fov_mm": (153.6, 409.6),
        "offset_xy_mm": (0.0, 12.0),
        "z_coverage_mm": (100.0, 400.0),
        "offset_z_frac": (-0.12, 0.12),
        "pixel_mm": (0.3, 0.8),
        "slice_mm": (0.5, 1.25),
        "p_flip": 0.15,
        "p_oblique": 0.0,
        "lumen_hu": (250.0, 550.0),
        "right_heart_rel": (0.1, 0.95),
        "left_atrium_rel": (0.8, 1.0),
        "svc_rel": (0.25, 4.0),
        "svc_mixing": (0.1, 0.1),
        "noise_hu": (10.0, 60.0),
        "noise_grain_mm": (0.6, 1.2),
        "kernel_blur_mm": (0.35, 0.8),
        "p_sharp": 0.0,
        "p_streaks": 0.26,
        "streak_hu": (20.0, 150.0),
        "p_motion": 0.21,
        "motion_mm": (1.5, 4.0),
        "p_stairstep": 0.14,
        "stairstep_hu": (0.0, 25.0),
        "stairstep_slab_mm": (30.0, 30.0),
        "perimeter_mm": (60.0, 95.0),
        "annulus_ratio": (0.75, 1.0),
        "root_tilt_deg": (30.0, 65.0),
        "root_azimuth_deg": (15.0, 60.0),
        "root_roll_deg": (-10.0, 10.0),
        "sinus_depth_mm": (4.0, 8.0),
        "calcium_mean": (2.0, 9.0),
        "leaflet_mm": (0.9, 1.6),
        "myocardium_mm": (8.0, 12.0),
        "ascending_factor": (1.05, 1.3),
        "heart_scale": (1.0, 1.0),
        "root_x_mm": (-5.0, 20.0),
        "root_y_frac": (-0.32, -0.15),
        "chest_scale": (1.0, 1.0),
        "fat_mm": (8.0, 30.0),
        "p_arms_down": 0.0,
        "p_table": 0.7,
        "p_wires": 0.0,
    },
    "train": dict(_TRAIN),
    "val-edge": {
        **_TRAIN,
        "lumen_hu": (180.0, 250.0),
        "noise_hu": (40.0, 80.0),
        "perimeter_mm": [(55.0, 60.0), (95.0, 100.0)],
        "calcium_mean": (8.0, 12.0),
    },
    "val-shift": {
        **_TRAIN,
        "kernel_blur_mm": (1.2, 1.6),
        "right_heart_rel": (1.3, 1.7),
        "left_atrium_rel": (1.1, 1.4),
        "leaflet_mm": (3.0, 3.8),
        "myocardium_mm": (20.0, 24.0),
        "sinus_depth_mm": (10.0, 12.0),
        "fat_mm": (60.0, 80.0),
    },
    "heldout-cardiac": _heldout_cardiac(),
    "heldout-extreme": {
        **_TRAIN,
        "lumen_hu": [(120.0, 180.0), (700.0, 850.0)],
        "perimeter_mm": [(50.0, 55.0), (100.0, 110.0)],
        "calcium_mean": (12.0, 25.0),
    },
}

#: The styles ``train`` never samples from (reporting only).
HELDOUT = ("heldout-cardiac", "heldout-extreme")

#: Validation styles: subsets of ``train`` (cases of their own seeds are unseen, their values are not).
VALIDATION = ("val-edge",)

#: Validation styles outside ``train`` only where no held-out style is (for settings that must hold out of range).
VALIDATION_OUT_OF_RANGE = ("val-shift",)


def check_style(style: str) -> str:
    """``style`` if it is a key of :data:`STYLES`.

    Raises:
        ValueError: unknown style (the message lists the known ones).
    """
    if style not in STYLES:
        raise ValueError(f"unknown phantom style {style!r}; expected one of {', '.join(STYLES)}")
    return style


def intervals(value: Range) -> list[tuple[float, float]]:
    """A range as a list of (lo, hi) intervals (a probability p as [(p, p)])."""
    if isinstance(value, (int, float)):
        return [(float(value), float(value))]
    if isinstance(value, tuple):
        return [(float(value[0]), float(value[1]))]
    return [(float(lo), float(hi)) for lo, hi in value]


def draw(rng: np.random.Generator, value: Range) -> float:
    """One value of a range: uniform in [lo, hi) of one interval (picked with equal probability if several)."""
    parts = intervals(value)
    lo, hi = parts[int(rng.integers(len(parts)))] if len(parts) > 1 else parts[0]
    return float(rng.uniform(lo, hi))


def draw_log(rng: np.random.Generator, value: Range) -> float:
    """One value of a (lo, hi) range, log-uniform (e.g. noise: as many cases in 5-10 HU as in 40-80 HU)."""
    (lo, hi), *_ = intervals(value)
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def contains(value: Range, x: float, tol: float = 1e-6) -> bool:
    """Whether ``x`` lies in one of the range's intervals (closed, with tolerance ``tol``)."""
    return any(lo - tol <= x <= hi + tol for lo, hi in intervals(value))


def disjoint_dimensions(a: str, b: str) -> list[str]:
    """Dimensions (not probabilities) where no value of style ``a`` is a value of style ``b`` (half-open intervals)."""
    out = []
    for dim in DIMENSIONS:
        if dim.startswith("p_") or dim not in STYLES[a] or dim not in STYLES[b]:
            continue
        pairs = [(x, y) for x in intervals(STYLES[a][dim]) for y in intervals(STYLES[b][dim])]
        if all(x[1] <= y[0] or y[1] <= x[0] for x, y in pairs):
            out.append(dim)
    return out


def _cell(value: Range | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, (int, float)):
        return f"{value:g}"
    return " or ".join(f"{lo:g}" if lo == hi else f"{lo:g} to {hi:g}" for lo, hi in intervals(value))


def styles_markdown() -> str:
    """The style table of ``docs/PHANTOM.md``: one row per dimension, one column per style (Markdown)."""
    names = list(STYLES)
    lines = [
        "| dimension | unit | " + " | ".join(f"`{n}`" for n in names) + " | meaning |",
        "|---|---|" + "---|" * len(names) + "---|",
    ]
    for dim, (unit, meaning) in DIMENSIONS.items():
        if dim.startswith("## "):
            lines.append(f"| **{dim[3:]}** | |" + " |" * len(names) + " |")
            continue
        cells = " | ".join(_cell(STYLES[n].get(dim)) for n in names)
        lines.append(f"| `{dim}` | {unit} | {cells} | {meaning} |")
    return "\n".join(lines) + "\n"
