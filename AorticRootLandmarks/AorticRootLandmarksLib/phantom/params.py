"""Random generation parameters of a phantom case, one random stream per part of the generator.

``sample_params(seed, index, size)`` returns a JSON-serialisable dict that fully determines the case; the other
phantom modules turn it into geometry (``root``, ``thorax``, ``anatomy``) and an image (``scanner``).

Every part that draws random numbers (the quality grade, root, body, heart, HU, calcium, imaging, grid, and at render
time the lung vessels, contrast swirls and noise) draws from its own generator, seeded from (seed, case index, part
name) by :func:`part_rng`. A draw added to one part therefore changes that part only, never the rest of a case.
Parts that depend on another's outcome (the HU and imaging on the quality grade) take it as an argument.

``style`` (``styles.STYLES``) picks the ranges: ``"classic"`` (the default) is this module's sampler, unchanged since
version 2; the other styles are drawn by ``style_params`` from streams that also depend on the style's name.
"""

from __future__ import annotations

import functools
import math
import zlib
from typing import Any, Callable, Optional

import numpy as np

#: Bump when the same (seed, index) gives a different case. Recorded in every case's params and truth.
#: "1": all parameters from one shared random stream; "2": one stream per part (:data:`PARTS`).
PHANTOM_VERSION = "2"

#: Every part of the generator that draws random numbers, each from its own stream.
PARTS = (
    "quality", "root", "body", "heart", "hu", "calcium", "imaging", "grid",  # sample_params
    "lung_vessels", "swirls",  # anatomy.build_anatomy: pulmonary vessel trees, unmixed contrast in the right heart
    "noise", "white_noise",  # scanner.form_image
)  # fmt: skip

#: part name -> that part's generator, for one case (see :func:`case_streams`).
Streams = Callable[[str], np.random.Generator]

GRADES = ("1", "2", "3-", "3+", "4")
GRADE_PROBS = (0.03, 0.25, 0.46, 0.25, 0.01)
#: grade -> (noise std HU range, blood HU range, p(streaks), p(motion), mean number of calcium nodules)
GRADE_TABLE = {
    "1": ((45.0, 60.0), (250.0, 330.0), 0.9, 0.8, 9.0),
    "2": ((30.0, 48.0), (270.0, 420.0), 0.5, 0.4, 6.0),
    "3-": ((20.0, 35.0), (300.0, 480.0), 0.2, 0.15, 4.0),
    "3+": ((14.0, 25.0), (350.0, 530.0), 0.08, 0.05, 3.0),
    "4": ((10.0, 16.0), (400.0, 550.0), 0.0, 0.0, 2.0),
}


def part_rng(seed: int, index: int, part: str, style: str = "classic") -> np.random.Generator:
    """The random stream of one part of case ``index`` of series ``seed``: the only place streams are derived.

    ``np.random.default_rng([seed, index, crc32(part)])`` for the classic style, ``[..., crc32(style)]`` for the
    others: NumPy's SeedSequence hashes the numbers, so the streams of different (seed, index, part, style) are
    independent, and the classic streams are those of phantom version 2.

    Raises:
        ValueError: ``part`` is not in :data:`PARTS` (a new part must be listed there).
    """
    if part not in PARTS:
        raise ValueError(f"unknown phantom part {part!r}: add it to params.PARTS")
    key = [int(seed), int(index), zlib.crc32(part.encode("utf-8"))]
    if style != "classic":
        key.append(zlib.crc32(style.encode("utf-8")))
    return np.random.default_rng(key)


def case_streams(seed: int, index: int, style: str = "classic") -> Streams:
    """part name -> :func:`part_rng` of case ``index`` of series ``seed`` in ``style`` (a fresh generator per call)."""
    if style == "classic":
        return functools.partial(part_rng, seed, index)
    return functools.partial(part_rng, seed, index, style=style)


def _uniform(rng: np.random.Generator, lo: float, hi: float, n: Optional[int] = None) -> Any:
    """A float (``n`` None) or a list of ``n`` floats uniform in [lo, hi) (JSON-friendly)."""
    v = rng.uniform(lo, hi, n)
    return float(v) if n is None else [float(x) for x in v]


def sample_params(seed: int, index: int, size: str, style: str = "classic") -> dict[str, Any]:
    """All random generation parameters of case ``index`` (JSON-serialisable). Depends only on (seed, index, size,
    style).

    Only the output grid depends on ``size``, so a case has the same anatomy at ``size='small'`` and ``size='full'``.
    ``style`` (``styles.STYLES``) is recorded in the parameters; the classic values are those of phantom version 2.

    Raises:
        ValueError: unknown ``size`` or ``style``.
    """
    if size not in ("small", "full"):
        raise ValueError(f"size must be 'small' or 'full', not {size!r}")
    if style != "classic":
        from .style_params import sample_style_params  # it builds on this module's samplers

        return sample_style_params(seed, index, size, style)
    rng = case_streams(seed, index)
    grade = sample_quality(rng("quality"))
    calcs = sample_calcium(rng("calcium"), grade)
    return {
        "phantom_version": PHANTOM_VERSION,
        "style": "classic",
        "seed": int(seed),
        "index": int(index),
        "size": size,
        "quality": grade,
        "root": sample_root(rng("root")),
        "body": sample_body(rng("body")),
        "heart": sample_heart(rng("heart")),
        "hu": sample_hu(rng("hu"), grade),
        "calcs": calcs,
        "imaging": sample_imaging(rng("imaging"), grade, has_calcium=bool(calcs)),
        "grid": sample_grid(rng("grid"), size),
    }


def sample_quality(rng: np.random.Generator) -> str:
    """Image quality grade, "1" (poor) ... "4" (excellent), with probabilities :data:`GRADE_PROBS`."""
    return GRADES[int(rng.choice(len(GRADES), p=GRADE_PROBS))]


def sample_root(rng: np.random.Generator) -> dict[str, Any]:
    """Aortic root shape and orientation (see ``root.root_from_params``): angles in degrees, lengths in mm."""
    u = functools.partial(_uniform, rng)
    return {
        "tilt_deg": u(30, 65),
        "azimuth_deg": u(15, 60),
        "roll_deg": u(-10, 10),
        "perimeter_mm": u(60, 95),
        "ratio": u(0.75, 1.0),
        "major_angle_deg": 90 + u(-25, 25),
        "nadir_jitter_deg": u(-10, 10, 3),
        "sinus_depth_mm": u(4.0, 8.0, 3),
        "stj_height_factor": u(0.75, 0.95),
        "commissure_frac": u(0.85, 0.95),
        "stj_radius_factor": u(0.95, 1.1),
        "lvot_length_mm": u(12, 20),
        "lvot_flare": u(-0.04, 0.1),
        "wall_mm": u(1.5, 2.5),
        "muscle_mm": u(5, 9),
        "valve_open": bool(rng.random() < 0.5),
        "leaflet_mm": u(0.9, 1.6),
        "coaptation_frac": u(0.45, 0.65),
        "sag_mm": u(0.0, 2.0),
        "open_bulge": u(0.2, 0.5),
        "ostia": {
            "rco_t": u(-0.35, 0.35),
            "rco_h": u(0.5, 0.8),
            "lco_t": u(-0.35, 0.35),
            "lco_h": u(0.5, 0.8),
            "rca_radius_mm": u(1.5, 2.2),
            "lm_radius_mm": u(2.0, 2.6),
        },
    }


def sample_body(rng: np.random.Generator) -> dict[str, Any]:
    """Body outline, position, table, spine, lungs and mediastinum (see ``thorax``), mm."""
    u = functools.partial(_uniform, rng)
    return {
        "semi_x": u(140, 185),
        "semi_y": u(95, 130),
        "fat_mm": u(8, 30),
        "muscle_mm": u(8, 16),
        "offset_mm": [u(-30, 30), u(-50, 50), u(-300, 150)],
        "root_xy": [u(-5, 20), u(-0.32, -0.15)],
        "table": bool(rng.random() < 0.7),
        "table_gap_mm": u(0, 8),
        "table_mm": u(15, 45),
        "spine_x": u(-5, 5),
        "spine_depth_mm": u(62, 80),
        "vertebra_mm": u(22, 27),
        "disc_mm": u(5, 7),
        "vertebra_radii": [u(14, 18), u(12, 15)],
        "lung_top_mm": u(150, 190),
        "dome_mm": u(5, 20),
        "mediastinum_x": [u(0, 15), u(38, 50)],
        "rib_drop_mm": u(40, 70),
        "oesophageal_air": bool(rng.random() < 0.5),
    }


def sample_heart(rng: np.random.Generator) -> dict[str, Any]:
    """Chambers, great vessels and arch around the root (see ``thorax._place``), mm."""
    u = functools.partial(_uniform, rng)
    return {
        "lv_axis": [0.55 + u(-0.15, 0.15), -0.45 + u(-0.15, 0.15), -0.7 + u(-0.15, 0.15)],
        "lv_radii": [u(38, 48), u(20, 26), u(18, 24)],
        "myo_mm": u(8, 12),
        "la_offset": [u(-5, 15), u(30, 42), u(-5, 10)],
        "la_radii": [u(28, 36), u(17, 23), u(20, 27)],
        "ra_offset": [u(-8, 0), u(0, 10), u(-25, -10)],
        "ra_radii": [u(22, 28), u(20, 26), u(24, 30)],
        "rv_offset": [u(-15, 5), u(-45, -32), u(-45, -30)],
        "rv_radii": [u(40, 50), u(18, 24), u(28, 34)],
        "pa_radius": u(11, 15),
        "pa_branch_radius": u(8, 11),
        "svc_radius": u(8, 11),
        "asc_factor": u(1.05, 1.3),
        "desc_offset": [u(18, 30), u(-28, -18)],
        "arch_height_mm": u(70, 95),
    }


def sample_hu(rng: np.random.Generator, grade: str) -> dict[str, float]:
    """Tissue and contrast HU; the blood pool's range depends on the quality grade (:data:`GRADE_TABLE`)."""
    u = functools.partial(_uniform, rng)
    blood = u(*GRADE_TABLE[grade][1])
    return {
        "blood": blood,
        "left_atrium": blood * u(0.85, 1.0),
        "right": blood * u(0.25, 0.95),
        "svc": min(1500.0, blood * (u(1.5, 3.5) if rng.random() < 0.5 else u(0.4, 1.0))),
        "myocardium": u(80, 130),
        "fat": u(-115, -75),
        "muscle": u(35, 60),
        "lung": u(-880, -820),
        "cortical": u(350, 750),
        "cancellous": u(150, 280),
        "liver": u(55, 100),
        "wall": u(40, 80),
        "leaflets": u(60, 140),
        "disc": u(60, 100),
        "cartilage": u(90, 160),
        "csf": u(5, 25),
        "table": u(-400, 0),
        "soft": u(25, 50),
    }


def sample_calcium(rng: np.random.Generator, grade: str) -> list[dict[str, Any]]:
    """Calcium nodules on the leaflets (70 %) or the annulus; Poisson count with the grade's mean."""
    u = functools.partial(_uniform, rng)
    calcs = []
    for _ in range(int(rng.poisson(GRADE_TABLE[grade][4]))):
        if rng.random() < 0.7:
            calcs.append(
                {
                    "kind": "leaflet",
                    "cusp": int(rng.integers(3)),
                    "frac": u(0.0, 0.6),
                    "t": u(-0.85, 0.85),
                    "radius_mm": u(0.6, 2.2),
                    "hu": u(600, 2000),
                }
            )
        else:
            calcs.append(
                {
                    "kind": "annulus",
                    "psi": u(0, 2 * math.pi),
                    "h": u(-1.5, 1.5),
                    "dr": u(0.0, 1.5),
                    "radius_mm": u(0.6, 2.0),
                    "hu": u(600, 2000),
                }
            )
    return calcs


def sample_imaging(rng: np.random.Generator, grade: str, has_calcium: bool) -> dict[str, Any]:
    """Noise, blur, streaks, motion and banding; their strength and likelihood depend on the quality grade.

    ``has_calcium`` only decides whether streaks may come from calcium; the draws are the same either way.
    """
    u = functools.partial(_uniform, rng)
    noise_range, _, p_streak, p_motion, _ = GRADE_TABLE[grade]
    imaging: dict[str, Any] = {
        "noise_std": u(*noise_range),
        "white_frac": u(0.3, 0.5),
        "corr_mm": u(0.6, 1.2),
        "blur_mm": u(0.35, 0.8),
    }
    if rng.random() < p_streak:
        m = int(rng.integers(6, 17))
        scale = {"1": 3.0, "2": 2.0}.get(grade, 1.0)
        from_calcium = rng.random() < 0.5
        imaging["streaks"] = {
            "source_kind": "calc" if has_calcium and from_calcium else "svc",
            "angles": u(0, math.pi, m),
            "amps": [a * scale * (1 if i % 2 else -1) for i, a in enumerate(u(20, 50, m))],
            "width_mm": u(1.0, 2.5),
            "decay_mm": u(60, 120),
            "z_sigma_mm": u(6, 20),
        }
    if rng.random() < p_motion:
        v = rng.normal(size=3)
        imaging["motion"] = {
            "shift_mm": [float(x) for x in v / np.linalg.norm(v) * u(1.5, 4.0)],
            "alpha": u(0.15, 0.35),
        }
    if grade in ("1", "2") and rng.random() < 0.5:
        imaging["band_offsets"] = [u(-25, 25) for _ in range(4)]
    return imaging


def sample_grid(rng: np.random.Generator, size: str) -> dict[str, Any]:
    """Output image grid: voxels (x, y, z), spacing mm, axis flips (15 %), centre offset from the annulus (mm)."""
    if size == "full":
        nxy, nz = 512, int(rng.integers(200, 321))
        sxy, sz = float(rng.uniform(0.3, 0.8)), float(rng.uniform(0.5, 1.25))
    else:
        nxy, nz = int(rng.integers(80, 97)), int(rng.integers(64, 81))
        sxy, sz = float(rng.uniform(1.2, 1.6)), float(rng.uniform(1.2, 1.6))
    flip = [False, False, False]
    if rng.random() < 0.15:
        while not any(flip):
            flip = [bool(v) for v in rng.random(3) < 0.5]
    off = rng.normal(size=3)
    off = off / np.linalg.norm(off) * 12.0 * float(rng.random()) ** (1 / 3)  # uniform in a 12 mm ball
    return {
        "size": [nxy, nxy, nz],
        "spacing": [sxy, sxy, sz],
        "flip": flip,
        "center_offset_mm": [float(v) for v in off],
    }
