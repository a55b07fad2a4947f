"""Random generation parameters of a phantom case: image quality grade, root shape, body, heart, HU, calcium, imaging.

``sample_params(seed, index, size)`` returns a JSON-serialisable dict that fully determines the case; the other
phantom modules turn it into geometry (``root``, ``thorax``, ``anatomy``) and an image (``render``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

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


def sample_params(seed: int, index: int, size: str) -> dict[str, Any]:
    """All random generation parameters of case ``index`` (JSON-serialisable). Depends only on (seed, index, size).

    The anatomy, contrast and artefacts come from one stream and the output grid from another, so a case has the same
    anatomy at ``size='small'`` and ``size='full'``.
    """
    if size not in ("small", "full"):
        raise ValueError(f"size must be 'small' or 'full', not {size!r}")
    ra = np.random.default_rng([seed, index, 0])
    rg = np.random.default_rng([seed, index, 1])

    def u(lo, hi, n=None):
        v = ra.uniform(lo, hi, n)
        return float(v) if n is None else [float(x) for x in v]

    grade = GRADES[int(ra.choice(len(GRADES), p=GRADE_PROBS))]
    noise_rng, blood_rng, p_streak, p_motion, n_calc = GRADE_TABLE[grade]
    blood = u(*blood_rng)
    valve_open = bool(ra.random() < 0.5)
    root = {
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
        "valve_open": valve_open,
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
    body = {
        "semi_x": u(140, 185),
        "semi_y": u(95, 130),
        "fat_mm": u(8, 30),
        "muscle_mm": u(8, 16),
        "offset_mm": [u(-30, 30), u(-50, 50), u(-300, 150)],
        "root_xy": [u(-5, 20), u(-0.32, -0.15)],
        "table": bool(ra.random() < 0.7),
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
        "vessel_seed": int(ra.integers(1 << 30)),
    }
    heart = {
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
    hu = {
        "blood": blood,
        "left_atrium": blood * u(0.85, 1.0),
        "right": blood * u(0.25, 0.95),
        "svc": min(1500.0, blood * (u(1.5, 3.5) if ra.random() < 0.5 else u(0.4, 1.0))),
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
    calcs = []
    for _ in range(int(ra.poisson(n_calc))):
        if ra.random() < 0.7:
            calcs.append(
                {
                    "kind": "leaflet",
                    "cusp": int(ra.integers(3)),
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
    imaging: dict[str, Any] = {
        "noise_std": u(*noise_rng),
        "white_frac": u(0.3, 0.5),
        "corr_mm": u(0.6, 1.2),
        "blur_mm": u(0.35, 0.8),
    }
    if ra.random() < p_streak:
        m = int(ra.integers(6, 17))
        scale = {"1": 3.0, "2": 2.0}.get(grade, 1.0)
        imaging["streaks"] = {
            "source_kind": "calc" if calcs and ra.random() < 0.5 else "svc",
            "angles": u(0, math.pi, m),
            "amps": [a * scale * (1 if i % 2 else -1) for i, a in enumerate(u(20, 50, m))],
            "width_mm": u(1.0, 2.5),
            "decay_mm": u(60, 120),
            "z_sigma_mm": u(6, 20),
        }
    if ra.random() < p_motion:
        v = ra.normal(size=3)
        imaging["motion"] = {
            "shift_mm": [float(x) for x in v / np.linalg.norm(v) * u(1.5, 4.0)],
            "alpha": u(0.15, 0.35),
        }
    if grade in ("1", "2") and ra.random() < 0.5:
        imaging["band_offsets"] = [u(-25, 25) for _ in range(4)]

    if size == "full":
        nxy, nz = 512, int(rg.integers(200, 321))
        sxy, sz = float(rg.uniform(0.3, 0.8)), float(rg.uniform(0.5, 1.25))
    else:
        nxy, nz = int(rg.integers(80, 97)), int(rg.integers(64, 81))
        sxy, sz = float(rg.uniform(1.2, 1.6)), float(rg.uniform(1.2, 1.6))
    flip = [False, False, False]
    if rg.random() < 0.15:
        while not any(flip):
            flip = [bool(v) for v in rg.random(3) < 0.5]
    off = rg.normal(size=3)
    off = off / np.linalg.norm(off) * 12.0 * float(rg.random()) ** (1 / 3)  # uniform in a 12 mm ball
    grid = {
        "size": [nxy, nxy, nz],
        "spacing": [sxy, sxy, sz],
        "flip": flip,
        "center_offset_mm": [float(v) for v in off],
    }
    return {
        "seed": int(seed),
        "index": int(index),
        "size": size,
        "quality": grade,
        "root": root,
        "body": body,
        "heart": heart,
        "hu": hu,
        "calcs": calcs,
        "imaging": imaging,
        "grid": grid,
    }
