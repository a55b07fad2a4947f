"""Random parameters of a case of a non-classic style (``styles.STYLES``): the same parts, the style's ranges.

``sample_style_params(seed, index, size, style)`` returns a dict with the keys of ``params.sample_params`` (so the
rest of the generator needs no branch per style) plus ``style``. Each part draws from its own stream
``params.part_rng(seed, index, part, style)``; the style's name is folded into the stream, so the styles are
independent of each other and the classic cases never change. The classic samplers fill in the values a style does
not range over (e.g. the LVOT length), then the style's draws override the rest.

Only the output grid depends on ``size``: ``"small"`` keeps the field of view, centring and z coverage of the full
grid, at most 96 x 96 x 80 voxels, so tests on small cases see the same framing as training on full ones.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .params import (
    GRADE_TABLE,
    GRADES,
    PHANTOM_VERSION,
    case_streams,
    sample_body,
    sample_heart,
    sample_hu,
    sample_root,
)
from .styles import STYLES, check_style, draw, draw_log

#: mm: the annulus centre is kept this far inside every face of the image, so the hinge points (at most ~21 mm from
#: it, for a 110 mm perimeter at ratio 0.65) stay at least ~7 mm inside.
HINGE_MARGIN_MM = 28.0
#: mm: the image top is at most this far above the annulus (the neck above the lung apices is not modelled).
MAX_ABOVE_ROOT_MM = 250.0
#: The in-plane image centre stays inside this fraction of the body's semi-axes (a reconstruction is centred on
#: the patient, not on the air beside it), for styles that give the offset as a fraction of the field of view.
BODY_CENTRE_FRAC = 0.6
#: Largest small grid (x, y, z) voxels.
SMALL_MAX = (96, 96, 80)


def _enhanced(lumen: float, rel: float) -> float:
    """HU of a compartment enhanced ``rel`` times as much as the lumen above 40 HU (unenhanced blood)."""
    return 40.0 + rel * (lumen - 40.0)


def grade_of_noise(noise_std: float) -> str:
    """Quality grade of a style case from its noise: the classic grade whose noise range it reaches."""
    for grade in GRADES[::-1]:  # "4" (best) first
        if noise_std <= GRADE_TABLE[grade][0][1]:
            return grade
    return GRADES[0]


def sample_style_params(seed: int, index: int, size: str, style: str) -> dict[str, Any]:
    """All random generation parameters of case ``index`` of ``style`` (JSON-serialisable)."""
    if size not in ("small", "full"):
        raise ValueError(f"size must be 'small' or 'full', not {size!r}")
    s = STYLES[check_style(style)]
    rng = case_streams(seed, index, style)
    body = sample_style_body(rng("body"), s)  # the grid is centred on the patient: it takes the body as argument
    imaging = sample_style_imaging(rng("imaging"), s)
    calcs = sample_style_calcium(rng("calcium"), s)
    return {
        "phantom_version": PHANTOM_VERSION,
        "style": style,
        "seed": int(seed),
        "index": int(index),
        "size": size,
        "quality": grade_of_noise(imaging["noise_std"]),
        "root": sample_style_root(rng("root"), s),
        "body": body,
        "heart": sample_style_heart(rng("heart"), s),
        "hu": sample_style_hu(rng("hu"), s),
        "calcs": calcs,
        "imaging": imaging,
        "grid": sample_style_grid(rng("grid"), s, size, body),
    }


def sample_style_root(rng: np.random.Generator, s: dict) -> dict[str, Any]:
    """Root shape (``params.sample_root`` keys): annulus size and shape, axis orientation, sinuses, leaflets."""
    root = sample_root(rng)
    root.update(
        perimeter_mm=draw(rng, s["perimeter_mm"]),
        ratio=draw(rng, s["annulus_ratio"]),
        tilt_deg=draw(rng, s["root_tilt_deg"]),
        azimuth_deg=draw(rng, s["root_azimuth_deg"]),
        roll_deg=draw(rng, s["root_roll_deg"]),
        sinus_depth_mm=[draw(rng, s["sinus_depth_mm"]) for _ in range(3)],
        nadir_jitter_deg=[float(v) for v in rng.uniform(-12, 12, 3)],
        leaflet_mm=draw(rng, s["leaflet_mm"]),
    )
    return root


def sample_style_body(rng: np.random.Generator, s: dict) -> dict[str, Any]:
    """Body (``params.sample_body`` keys plus ``arms``, ``wires``): cavity size, fat, root position, table."""
    body = sample_body(rng)
    chest, fat = draw(rng, s["chest_scale"]), draw(rng, s["fat_mm"])
    body.update(
        semi_x=body["semi_x"] * chest + fat - body["fat_mm"],  # the cavity scales with the chest, the fat adds to it
        semi_y=body["semi_y"] * chest + fat - body["fat_mm"],
        fat_mm=fat,
        root_xy=[draw(rng, s["root_x_mm"]), draw(rng, s["root_y_frac"])],
        table=bool(rng.random() < s["p_table"]),
        arms="down" if rng.random() < s["p_arms_down"] else "up",
        wires=bool(rng.random() < s["p_wires"]),
    )
    return body


def sample_style_heart(rng: np.random.Generator, s: dict) -> dict[str, Any]:
    """Heart (``params.sample_heart`` keys): chamber size, wall thickness, ascending aorta."""
    heart = sample_heart(rng)
    scale = draw(rng, s["heart_scale"])
    for key in ("lv_radii", "la_radii", "ra_radii", "rv_radii"):
        heart[key] = [r * scale for r in heart[key]]
    for key in ("la_offset", "ra_offset", "rv_offset"):
        heart[key] = [v * scale for v in heart[key]]
    heart.update(myo_mm=draw(rng, s["myocardium_mm"]), asc_factor=draw(rng, s["ascending_factor"]))
    return heart


def sample_style_hu(rng: np.random.Generator, s: dict) -> dict[str, float]:
    """Tissue HU as in the classic sampler; the contrast phase (lumen, right heart, left atrium, SVC) from the style."""
    hu = sample_hu(rng, "3-")  # tissue values; the grade only sets the blood range, replaced below
    lumen = draw(rng, s["lumen_hu"])
    hu.update(
        blood=lumen,
        left_atrium=_enhanced(lumen, draw(rng, s["left_atrium_rel"])),
        right=_enhanced(lumen, draw(rng, s["right_heart_rel"])),
        svc=min(2500.0, _enhanced(lumen, draw(rng, s["svc_rel"]))),
        svc_mixing=draw(rng, s["svc_mixing"]),
    )
    return hu


def sample_style_calcium(rng: np.random.Generator, s: dict) -> list[dict[str, Any]]:
    """Calcium nodules (``params.sample_calcium`` entries), Poisson count with the style's mean."""
    calcs = []
    for _ in range(int(rng.poisson(draw(rng, s["calcium_mean"])))):
        kind = "leaflet" if rng.random() < 0.7 else "annulus"
        common = {"radius_mm": float(rng.uniform(0.6, 2.4)), "hu": float(rng.uniform(500, 2000))}
        if kind == "leaflet":
            where = {"cusp": int(rng.integers(3)), "frac": float(rng.uniform(0.0, 0.6)),
                     "t": float(rng.uniform(-0.85, 0.85))}  # fmt: skip
        else:
            where = {"psi": float(rng.uniform(0, 2 * math.pi)), "h": float(rng.uniform(-1.5, 1.5)),
                     "dr": float(rng.uniform(0.0, 1.5))}  # fmt: skip
        calcs.append({"kind": kind, **where, **common})
    return calcs


def sample_style_imaging(rng: np.random.Generator, s: dict) -> dict[str, Any]:
    """Noise, kernel, streaks, motion and stair-step bands (``params.sample_imaging`` keys plus ``sharpen`` and
    ``stairstep``)."""
    imaging: dict[str, Any] = {
        "noise_std": draw_log(rng, s["noise_hu"]),
        "white_frac": float(rng.uniform(0.3, 0.6)),
        "corr_mm": draw(rng, s["noise_grain_mm"]),
        "blur_mm": draw(rng, s["kernel_blur_mm"]),
        "sharpen": draw(rng, s["sharpen"]) if rng.random() < s["p_sharp"] else 0.0,
    }
    if rng.random() < s["p_streaks"]:
        m = int(rng.integers(6, 17))
        imaging["streaks"] = {
            "source_kind": ("calc", "wire", "svc")[int(rng.integers(3))],  # anatomy falls back to the SVC
            "angles": [float(v) for v in rng.uniform(0, math.pi, m)],
            "amps": [draw(rng, s["streak_hu"]) * (1 if i % 2 else -1) for i in range(m)],
            "width_mm": float(rng.uniform(1.0, 2.5)),
            "decay_mm": float(rng.uniform(60, 120)),
            "z_sigma_mm": float(rng.uniform(6, 20)),
        }
    if rng.random() < s["p_motion"]:
        v = rng.normal(size=3)
        imaging["motion"] = {
            "shift_mm": [float(x) for x in v / np.linalg.norm(v) * draw(rng, s["motion_mm"])],
            "alpha": float(rng.uniform(0.15, 0.35)),
        }
    if rng.random() < s["p_stairstep"]:
        slab = draw(rng, s["stairstep_slab_mm"])
        n = int(math.ceil(460.0 / slab)) + 1  # enough slabs for the longest coverage
        imaging["stairstep"] = {
            "slab_mm": slab,
            "phase_mm": float(rng.uniform(0, slab)),
            "offsets": [draw(rng, s["stairstep_hu"]) * (1 if rng.random() < 0.5 else -1) for _ in range(n)],
        }
    return imaging


def _direction(rng: np.random.Generator, s: dict) -> tuple[list[bool], float, list[float]]:
    """Axis flips, and an oblique rotation (angle deg, unit axis) mostly about the left-right axis (gantry tilt)."""
    flip = [False, False, False]
    if rng.random() < s["p_flip"]:
        while not any(flip):
            flip = [bool(v) for v in rng.random(3) < 0.5]
    angle, axis = 0.0, np.array([1.0, 0.0, 0.0])
    if rng.random() < s["p_oblique"]:
        angle = draw(rng, s["oblique_deg"]) * (1 if rng.random() < 0.5 else -1)
        axis = axis + rng.normal(0, 0.3, 3)
        axis /= np.linalg.norm(axis)
    return flip, float(angle), [float(v) for v in axis]


def direction_matrix(grid: dict) -> np.ndarray:
    """(3, 3) direction (columns: world LPS of i, j, k) of a grid's ``flip`` and optional ``oblique_deg``/``_axis``."""
    D = np.diag([-1.0 if f else 1.0 for f in grid["flip"]])
    angle = math.radians(grid.get("oblique_deg", 0.0))
    if angle:
        k = np.asarray(grid["oblique_axis"], float)
        K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        D = (np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K) @ D  # Rodrigues
    return D


def _inside_body(off: np.ndarray, body: dict) -> np.ndarray:
    """In-plane offset (image centre - annulus centre, mm) pulled back so that the image centre lies inside the
    ellipse of :data:`BODY_CENTRE_FRAC` times the body's semi-axes around the body axis."""
    root = np.array([body["root_xy"][0], body["root_xy"][1] * body["semi_y"]])  # annulus - body axis (thorax.py)
    centre = root + off
    k = math.hypot(centre[0] / body["semi_x"], centre[1] / body["semi_y"]) / BODY_CENTRE_FRAC
    return centre / k - root if k > 1 else off


def _centre_offset(
    rng: np.random.Generator, s: dict, fov: float, coverage: float, body: dict, direction: np.ndarray
) -> np.ndarray:
    """Image centre - annulus centre (world LPS mm), drawn along the image's own axes (in-plane i, j; k); the
    annulus kept :data:`HINGE_MARGIN_MM` inside the image."""
    phi = rng.uniform(0, 2 * math.pi)
    mm = "offset_xy_mm" in s  # explicit crop offsets (tight cardiac fields of view), else a fraction of the FOV
    radial = draw(rng, s["offset_xy_mm"]) if mm else draw(rng, s["offset_xy_frac"]) * fov
    z = draw(rng, s["offset_z_frac"]) * coverage
    world = direction @ np.array([radial * math.cos(phi), radial * math.sin(phi), z])
    if not mm:
        world[:2] = _inside_body(world[:2], body)
    world[2] = min(world[2], MAX_ABOVE_ROOT_MM - coverage / 2)  # the image top at most 250 mm above the annulus
    limit = np.array([fov, fov, coverage]) / 2 - HINGE_MARGIN_MM
    return direction @ np.clip(direction.T @ world, -limit, limit)


def sample_style_grid(rng: np.random.Generator, s: dict, size: str, body: dict) -> dict[str, Any]:
    """Output grid: field of view, matrix, pixel and slice spacing, direction, centre offset from the annulus.

    The same draws for both sizes; ``"small"`` coarsens the voxels of the full grid over the same extent. ``body``
    (``sample_style_body``) places the image centre on the patient.
    """
    fov, coverage = draw(rng, s["fov_mm"]), draw(rng, s["z_coverage_mm"])
    lo, hi = s["pixel_mm"]
    lo, hi = max(lo, fov / 512), min(hi, fov / 256)
    pixel = float(rng.uniform(lo, max(lo, hi)))
    slice_mm = float(rng.uniform(max(s["slice_mm"][0], coverage / 400), s["slice_mm"][1]))
    n = [round(fov / pixel)] * 2 + [max(8, round(coverage / slice_mm))]  # <= 512 and <= 400 by the bounds above
    spacing = [pixel, pixel, slice_mm]
    fov, coverage = n[0] * pixel, n[2] * slice_mm  # the scanner's pixel is exact; the extent within half a pixel
    flip, angle, axis = _direction(rng, s)
    grid = {"flip": flip, "oblique_deg": angle, "oblique_axis": axis}
    off = _centre_offset(rng, s, fov, coverage, body, direction_matrix(grid))
    if size == "small":  # the same extent in fewer, larger voxels
        n = [min(v, m) for v, m in zip(n, SMALL_MAX, strict=True)]
        spacing = [fov / n[0], fov / n[1], coverage / n[2]]
    grid.update(
        size=[int(v) for v in n],
        spacing=[float(v) for v in spacing],
        center_offset_mm=[float(v) for v in off],
        slice_fwhm_mm=float(spacing[2]),
    )
    return grid
