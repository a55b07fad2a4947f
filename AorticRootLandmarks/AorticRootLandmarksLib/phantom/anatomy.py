"""Random case parameters and the analytic aortic root: basal ring, sinuses, leaflets, hinge points, ostia.

Root frame (all world LPS mm): ``center`` is the centre of the elliptical virtual basal ring, ``n`` its unit normal
from the left ventricle into the aorta, ``e1`` the anterior direction projected on the ring plane (towards the right
coronary cusp) and ``e2 = n x e1``. Cylindrical root coordinates are ``r`` (mm from the axis), ``psi`` (rad from
``e1`` towards ``e2``, counter-clockwise seen from the aorta) and ``h`` (mm along ``n`` above the ring).
The cusp nadirs (hinge points) sit at ``h = 0`` on the ring at increasing ``psi`` in the order RCC, LCC, NCC, so
``(LCC - RCC) x (NCC - RCC)`` points along ``+n``. The leaflets attach along a crown whose lowest points are the
nadirs and highest points the commissures; each sinus of Valsalva bulges out of the wall starting at that line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .render import F32, Capsule, Cylinder, Ellipsoid, Grid, Layer, Table, Tube, blend, occupancy

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
CUSPS = ("RCC", "LCC", "NCC")


def ramanujan_perimeter(a: float, b: float) -> float:
    """Ellipse perimeter (Ramanujan's second approximation, relative error < 1e-9 for b/a >= 0.75)."""
    h = ((a - b) / (a + b)) ** 2
    return math.pi * (a + b) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h)))


def _smoothstep(t):
    return t * t * (3 - 2 * t)


@dataclass(frozen=True)
class RootGeometry:
    """Analytic aortic root. Lengths in mm, angles in rad, positions world LPS mm (see the module docstring)."""

    center: np.ndarray  # (3,)
    frame: np.ndarray  # (3, 3) columns e1, e2, n
    semi_major: float
    semi_minor: float
    major_angle: float  # angle of the major axis from e1
    nadir_angles: np.ndarray  # (3,) RCC, LCC, NCC, increasing
    sinus_depth: np.ndarray  # (3,) maximal outward bulge of each sinus
    stj_height: float  # sinotubular junction above the ring
    commissure_height: float
    stj_radius: float
    lvot_length: float
    lvot_flare: float
    wall: float  # aortic wall thickness
    muscle: float  # muscular/fibrous tissue around the outflow tract
    valve_open: bool
    leaflet_thickness: float
    coaptation_height: float  # closed valve: height of the central coaptation point
    sag: float  # closed valve: belly sag of the cusps
    open_bulge: float  # open valve: fraction of the sinus bulge the leaflet follows

    @property
    def normal(self) -> np.ndarray:
        return self.frame[:, 2]

    # --------------------------------------------------------------------------- coordinates
    def local(self, x, y, z):
        """World LPS x, y, z (broadcastable) -> root cylindrical (r, psi, h), float32."""
        d = (x - F32(self.center[0]), y - F32(self.center[1]), z - F32(self.center[2]))
        c = [tuple(F32(v) for v in self.frame[:, k]) for k in range(3)]
        lx = c[0][0] * d[0] + c[0][1] * d[1] + c[0][2] * d[2]
        ly = c[1][0] * d[0] + c[1][1] * d[1] + c[1][2] * d[2]
        h = c[2][0] * d[0] + c[2][1] * d[1] + c[2][2] * d[2]
        return np.sqrt(lx * lx + ly * ly), np.arctan2(ly, lx), h

    def world(self, r, psi, h) -> np.ndarray:
        """Root cylindrical (r, psi, h) -> (..., 3) world LPS mm."""
        r, psi, h = np.broadcast_arrays(np.asarray(r, float), np.asarray(psi, float), np.asarray(h, float))
        loc = np.stack([r * np.cos(psi), r * np.sin(psi), h], -1)
        return self.center + loc @ self.frame.T

    # --------------------------------------------------------------------------- shape functions
    def ellipse_radius(self, psi):
        """Radius of the basal ring (ellipse) in direction ``psi``."""
        a, b = self.semi_major, self.semi_minor
        phi = psi - F32(self.major_angle)
        return F32(a * b) / np.sqrt((F32(b) * np.cos(phi)) ** 2 + (F32(a) * np.sin(phi)) ** 2)

    def _half_widths(self):
        gaps = (np.roll(self.nadir_angles, -1) - self.nadir_angles) % (2 * np.pi)
        return gaps / 2, np.roll(gaps, 1) / 2  # towards the next / previous commissure

    def sinus_coords(self, psi):
        """Sinus index k (0 RCC, 1 LCC, 2 NCC) and position t in [-1, 1] (0 nadir, +-1 commissures) of ``psi``."""
        two_pi = 2 * np.pi
        n1, n2 = (self.nadir_angles[1:] - self.nadir_angles[0]) % two_pi
        rel = np.mod(np.asarray(psi, F32) - F32(self.nadir_angles[0]), F32(two_pi))
        # Six arcs between nadirs and commissures (mid-angles): nadir 0, comm 0-1, nadir 1, comm 1-2, nadir 2, comm 2-0.
        edges = np.array([n1 / 2, n1, (n1 + n2) / 2, n2, (n2 + two_pi) / 2], F32)
        anchor = np.array([0, n1, n1, n2, n2, two_pi], F32)
        half = np.array([n1, n1, n2 - n1, n2 - n1, two_pi - n2, two_pi - n2], F32) / 2
        seg = np.searchsorted(edges, rel, side="right")
        t = (rel - anchor[seg]) / half[seg]
        return np.array([0, 1, 1, 2, 2, 0], np.int8)[seg], np.clip(t, -1, 1)

    def angle_of(self, k: int, t: float) -> float:
        right, left = self._half_widths()
        return float(self.nadir_angles[k] + t * (right[k] if t >= 0 else left[k]))

    def attachment_height(self, t):
        """Height of the leaflet attachment (crown) at sinus position t: 0 at the nadir, commissure height at |t|=1."""
        return F32(self.commissure_height) * np.abs(t) ** F32(1.7)

    def radii(self, psi, h):
        """Lumen radius at (psi, h) and its parts: (radius, base radius without sinus, sinus bulge, t, k)."""
        k, t = self.sinus_coords(psi)
        re = self.ellipse_radius(psi)
        H = F32(self.stj_height)
        tau = _smoothstep(np.clip(h / H, 0, 1))
        above = re + (F32(self.stj_radius) - re) * tau
        below = re * (1 + F32(self.lvot_flare) * np.clip(-h / F32(self.lvot_length), 0, 1))
        base = np.where(h < 0, below, above)
        za = self.attachment_height(t)
        u = np.clip((h - za) / np.maximum(H - za, F32(0.5)), 0, 1)
        # Steep rise at u = 0: the sinus wall leaves the ring abruptly at the leaflet hinge, as in real roots.
        s = np.maximum(np.sin(F32(np.pi) * u ** F32(0.8)), 0) ** F32(0.6)
        depth = np.asarray(self.sinus_depth, F32)[k]
        bulge = depth * np.cos(F32(np.pi / 2) * np.clip(t, -1, 1)) ** F32(1.5) * s
        return base + bulge, base, bulge, t, k

    def lumen_radius(self, psi, h):
        return self.radii(np.asarray(psi, F32), np.asarray(h, F32))[0]

    def leaflet_point(self, k: int, frac: float, t: float) -> np.ndarray:
        """World point on cusp k at sinus position t, ``frac`` of the way from its attachment towards the free edge."""
        psi = self.angle_of(k, t)
        za = float(self.attachment_height(np.float32(t)))
        if self.valve_open:
            h = za + frac * (self.commissure_height - za)
            _, base, bulge, _, _ = self.radii(np.float32(psi), np.float32(h))
            r = float(base + self.open_bulge * bulge)
        else:
            r_att = float(self.radii(np.float32(psi), np.float32(za))[1])
            rho = 1.0 - frac
            h = self._closed_height(rho, za, t)
            r = rho * r_att
        return self.world(r, psi, h)

    def _closed_height(self, rho, za, t):
        zc = self.coaptation_height
        return zc + (za - zc) * rho - self.sag * 4 * rho * (1 - rho) * (1 - t * t)

    def distances(self, x, y, z) -> dict[str, np.ndarray]:
        """Signed distances (mm, negative inside) of the root's parts at world x, y, z (broadcastable float32).

        Keys: ``muscle`` (outflow-tract myocardium below the ring), ``wall`` (aortic wall), ``lumen``, ``leaflets``.
        """
        r, psi, h = self.local(x, y, z)
        R, base, bulge, t, _ = self.radii(psi, h)
        H, L = F32(self.stj_height), F32(self.lvot_length)
        top, bottom = H + F32(8), -L - F32(6)
        d_lumen = np.maximum(np.maximum(r - R, bottom - h), h - top)
        # Caps of wall and muscle lie inside the lumen's extent, so no partial-volume seam where the root meets the
        # aorta above and the ventricle below.
        d_wall = np.maximum(np.maximum(r - R - F32(self.wall), F32(-2.5) - h), h - H)  # above: the aorta's wall
        d_muscle = np.maximum(np.maximum(r - R - F32(self.muscle), bottom + F32(3) - h), h - F32(1.0))
        za = self.attachment_height(t)
        half = F32(self.leaflet_thickness / 2)
        if self.valve_open:
            r_leaf = base + F32(self.open_bulge) * bulge
            d_leaf = np.maximum(np.maximum(np.abs(r - r_leaf) - half, za - h), h - F32(self.commissure_height))
        else:
            r_att = self.radii(psi, za)[1]
            rho = r / r_att
            zl = self._closed_height(rho, za, t)
            slope = np.abs(za - F32(self.coaptation_height)) / r_att
            d_leaf = np.maximum(np.abs(h - zl) / np.sqrt(1 + slope * slope) - half, r - r_att)
        return {"muscle": d_muscle, "wall": d_wall, "lumen": d_lumen, "leaflets": d_leaf}

    def fine_extent(self) -> tuple[float, float, float]:
        """(radius, lowest h, highest h) of the region worth rendering finely: lumen, leaflets, wall and calcium."""
        rmax = self.semi_major + float(np.max(self.sinus_depth)) + max(self.stj_radius - self.semi_minor, 0)
        return rmax + self.wall + 3.0, -8.0, self.stj_height + 6.0

    def extent(self) -> tuple[float, float, float]:
        """(max radius incl. wall, lowest h, highest h) of everything painted by ``distances``."""
        rmax = (
            self.semi_major + float(np.max(self.sinus_depth)) + max(self.stj_radius - self.semi_minor, 0) + self.muscle
        )
        return rmax + 1.0, -self.lvot_length - 7.0, self.stj_height + 9.0

    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        rmax, lo, hi = self.extent()
        pts = [self.center + self.normal * h for h in (lo, hi)]
        pts = np.array([p + s * rmax * self.frame[:, i] for p in pts for i in (0, 1) for s in (-1, 1)])
        return pts.min(0), pts.max(0)

    # --------------------------------------------------------------------------- truth
    def hinge_points(self) -> np.ndarray:
        """(3, 3) world LPS mm of the cusp nadirs RCC, LCC, NCC (on the ring, h = 0)."""
        psi = self.nadir_angles.astype(F32)
        return self.world(self.ellipse_radius(psi).astype(float), self.nadir_angles, 0.0)

    def annulus_truth(self) -> dict[str, Any]:
        a, b = self.semi_major, self.semi_minor
        return {
            "center_lps": [float(v) for v in self.center],
            "normal_lps": [float(v) for v in self.normal],
            "perimeter_mm": ramanujan_perimeter(a, b),
            "area_mm2": math.pi * a * b,
            "min_diameter_mm": 2 * b,
            "max_diameter_mm": 2 * a,
        }


@dataclass(frozen=True)
class RootPainter:
    """Paints the root's parts in order (myocardium, wall, lumen, leaflets) with one evaluation of its geometry."""

    root: RootGeometry
    hu: dict[str, float]

    def bbox(self):
        return self.root.bbox()

    def paint(self, hu, x, y, z, ramp):
        d = self.root.distances(x, y, z)
        for part in ("muscle", "wall", "lumen", "leaflets"):
            blend(hu, np.broadcast_to(occupancy(d[part], ramp), hu.shape), F32(self.hu[part]))


def root_from_params(p: dict, center: np.ndarray) -> RootGeometry:
    """Build the RootGeometry from the sampled ``params['root']`` and the ring centre (world LPS mm)."""
    tilt, azim, roll = (math.radians(p[k]) for k in ("tilt_deg", "azimuth_deg", "roll_deg"))
    # Horizontal part points to the patient's right (-x) and anterior (-y); the axis rises superiorly (+z).
    n = np.array([-math.sin(tilt) * math.cos(azim), -math.sin(tilt) * math.sin(azim), math.cos(tilt)])
    ant = np.array([0.0, -1.0, 0.0])
    e1 = ant - (ant @ n) * n
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(n, e1)
    c, s = math.cos(roll), math.sin(roll)
    e1, e2 = c * e1 + s * e2, -s * e1 + c * e2
    ratio, perim = p["ratio"], p["perimeter_mm"]
    a = perim / ramanujan_perimeter(1.0, ratio)
    b = a * ratio
    nadir = np.radians(np.array([0.0, 120.0, 240.0]) + np.array(p["nadir_jitter_deg"]))
    mean_r = perim / (2 * math.pi)
    stj_h = p["stj_height_factor"] * 2 * mean_r
    return RootGeometry(
        center=np.asarray(center, float),
        frame=np.stack([e1, e2, n], 1),
        semi_major=a,
        semi_minor=b,
        major_angle=math.radians(p["major_angle_deg"]),
        nadir_angles=nadir,
        sinus_depth=np.array(p["sinus_depth_mm"]),
        stj_height=stj_h,
        commissure_height=p["commissure_frac"] * stj_h,
        stj_radius=p["stj_radius_factor"] * mean_r,
        lvot_length=p["lvot_length_mm"],
        lvot_flare=p["lvot_flare"],
        wall=p["wall_mm"],
        muscle=p["muscle_mm"],
        valve_open=bool(p["valve_open"]),
        leaflet_thickness=p["leaflet_mm"],
        coaptation_height=p["coaptation_frac"] * p["commissure_frac"] * stj_h,
        sag=p["sag_mm"],
        open_bulge=p["open_bulge"],
    )


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


# ============================================================================================ thorax and heart layout


@dataclass
class Anatomy:
    """One case's analytic anatomy in world LPS mm, ready to render.

    Attributes:
        root: the aortic root geometry (hinge points, ring).
        items: paint order (``render.Layer`` or painters) from the table to the calcium nodules.
        ostia: {"RCO": (3,), "LCO": (3,)} coronary ostia on the lumen boundary.
        heart_box: (lo, hi) world box of the heart (motion artefacts).
        imaging: the sampled imaging parameters with streak source / bands resolved to world positions.
        out_grid: the output image grid; root_grid: fine grid around the root; coarse_spacing: mm.
        fine_from: index of the first item repainted on the fine root grid (the heart onwards).
    """

    root: RootGeometry
    items: list
    ostia: dict[str, np.ndarray]
    heart_box: tuple[np.ndarray, np.ndarray]
    imaging: dict[str, Any]
    out_grid: Grid
    root_grid: Grid
    coarse_spacing: float
    fine_from: int


def build_anatomy(params: dict[str, Any]) -> Anatomy:
    """Place every structure of the case in world LPS mm from ``sample_params`` output."""
    root = root_from_params(params["root"], _ring_centre(params["body"]))
    lay = _place(params, root)
    vr = np.random.default_rng(params["body"]["vessel_seed"])  # vessel trees and contrast swirls
    items: list = []
    _body_items(lay, items, vr)
    fine_from = len(items)
    heart_box = _heart_items(lay, items, vr)
    _posterior_items(lay, items, vr)
    ostia = _root_items(lay, items)
    out_grid, root_grid, coarse = _grids(params, root)
    return Anatomy(root, items, ostia, heart_box, _imaging(params, lay, items), out_grid, root_grid, coarse, fine_from)


def _unit(v) -> np.ndarray:
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def _add(items: list, shape, value: float, name: str, waves=()) -> None:
    items.append(Layer(shape, float(value), tuple(waves), name))


def _ring_centre(body: dict) -> np.ndarray:
    """World LPS mm of the annulus centre: the body axis is at ``offset_mm`` (x, y), the ring at its z."""
    return np.array(body["offset_mm"], float) + [body["root_xy"][0], body["root_xy"][1] * body["semi_y"], 0.0]


def _spline(points: np.ndarray, radii: np.ndarray, step: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """Centripetal Catmull-Rom curve through ``points`` (N, 3), sampled every ~``step`` mm; radii interpolated."""
    p = np.vstack([2 * points[0] - points[1], points, 2 * points[-1] - points[-2]])
    out, rad = [], []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        t0 = 0.0
        t1 = t0 + np.linalg.norm(p1 - p0) ** 0.5 + 1e-6
        t2 = t1 + np.linalg.norm(p2 - p1) ** 0.5 + 1e-6
        t3 = t2 + np.linalg.norm(p3 - p2) ** 0.5 + 1e-6
        m = max(2, int(np.ceil(np.linalg.norm(p2 - p1) / step)))
        for t in np.linspace(t1, t2, m, endpoint=False):
            a1 = (t1 - t) / (t1 - t0) * p0 + (t - t0) / (t1 - t0) * p1
            a2 = (t2 - t) / (t2 - t1) * p1 + (t - t1) / (t2 - t1) * p2
            a3 = (t3 - t) / (t3 - t2) * p2 + (t - t2) / (t3 - t2) * p3
            b1 = (t2 - t) / (t2 - t0) * a1 + (t - t0) / (t2 - t0) * a2
            b2 = (t3 - t) / (t3 - t1) * a2 + (t - t1) / (t3 - t1) * a3
            out.append((t2 - t) / (t2 - t1) * b1 + (t - t1) / (t2 - t1) * b2)
            rad.append(radii[i - 1] + (radii[i] - radii[i - 1]) * (t - t1) / (t2 - t1))
    out.append(points[-1])
    rad.append(radii[-1])
    return np.array(out), np.array(rad)


def _push_clear(p: np.ndarray, r: float, spheres: list[tuple[np.ndarray, float]], margin: float = 2.0) -> np.ndarray:
    """Move point p (tube radius r) away from the keep-out spheres until it clears them by ``margin`` mm."""
    p = np.array(p, float)
    for _ in range(60):
        gaps = [np.linalg.norm(p - c) - rc - r for c, rc in spheres]
        i = int(np.argmin(gaps))
        if gaps[i] >= margin:
            break
        c, rc = spheres[i]
        p = c + _unit(p - c if np.linalg.norm(p - c) > 1e-6 else [0.0, 0.0, 1.0]) * (rc + r + margin + 0.5)
    return p


def _push_ellipsoid(center, axes, radii, direction, keep_out: np.ndarray, limit: float) -> np.ndarray:
    """Shift an ellipsoid along ``direction`` (1 mm steps, at most ``limit``) until no keep-out point is inside."""
    c = np.array(center, float)
    for _ in range(int(limit)):
        u = (keep_out - c) @ np.asarray(axes).T / np.asarray(radii)
        if np.all((u**2).sum(1) >= 1.0):
            break
        c = c + direction
    return c


@dataclass
class _Layout:
    """Positions shared by the layout steps, world LPS mm (chambers are ellipsoids: centre, axes rows, radii)."""

    params: dict
    root: RootGeometry
    origin: np.ndarray  # body axis (x, y), ring level z
    cavity: tuple[float, float]  # semi-axes of the thoracic cavity inside fat and muscle
    lv: tuple[np.ndarray, np.ndarray, np.ndarray]  # cavity; the epicardium adds myo_mm
    rv: tuple[np.ndarray, np.ndarray, np.ndarray]
    la: np.ndarray
    ra: np.ndarray
    spine: tuple[float, float]  # x, y of the vertebral bodies' centres
    aorta: tuple[np.ndarray, np.ndarray]  # centre line (N, 3), radii (N,)
    svc: tuple[float, float]  # x, y
    dome: float  # z of the left diaphragm dome
    keep_root: list  # keep-out spheres around the root
    keep_aorta: list

    @property
    def centre(self) -> np.ndarray:
        return self.root.center


def _place(params: dict, root: RootGeometry) -> _Layout:
    """Heart chambers, aorta and caval veins around the root, pushed clear of it (no chamber swallows a sinus)."""
    b, hp = params["body"], params["heart"]
    O = np.array(b["offset_mm"], float)
    C, n, H = root.center, root.normal, root.stj_height
    rmax = root.semi_major + float(np.max(root.sinus_depth))
    keep = np.array(
        [root.world(rmax + root.wall + 2, a, h) for h in (-3.0, 0.0, H / 2, H) for a in np.linspace(0, 6.28, 12)]
    )
    u_lv = _unit(hp["lv_axis"])
    v_lv = _unit(np.cross(u_lv, [0.0, 0.0, 1.0]))
    axes = np.stack([u_lv, v_lv, np.cross(u_lv, v_lv)])
    lv_r = np.array(hp["lv_radii"])
    E = C - n * root.lvot_length  # outflow tract entrance, inside the ventricle's base
    lv_c = _push_ellipsoid(E + u_lv * 0.6 * lv_r[0], axes, lv_r, u_lv, keep, 0.35 * lv_r[0])
    rv_off, rv_r = np.array(hp["rv_offset"]), np.array(hp["rv_radii"])
    rv_c = _push_ellipsoid(C + rv_off, axes, rv_r + 3, _unit(rv_off * [1, 1, 0.3]), keep, 40)
    la_c = _push_ellipsoid(C + hp["la_offset"], np.eye(3), np.array(hp["la_radii"]) + 2.5, [0, 1.0, 0], keep, 40)

    spine = (O[0] + b["spine_x"], O[1] + b["semi_y"] - b["spine_depth_mm"])
    r_stj = root.stj_radius
    r_asc = r_stj * hp["asc_factor"]
    r_desc = float(np.clip(0.72 * r_asc, 9, 14))
    desc = (
        spine[0] + max(hp["desc_offset"][0], b["vertebra_radii"][0] + 0.6 * r_desc),
        spine[1] + hp["desc_offset"][1] + 10,
    )
    S = C + n * H
    P1 = S + n * 15
    arch_z = C[2] + hp["arch_height_mm"]
    P2 = np.array([P1[0] - 3, P1[1] + 2, max(P1[2] + 12, C[2] + 0.6 * hp["arch_height_mm"])])
    P3 = np.array([spine[0] + 5, 0.5 * (P2[1] + desc[1]), arch_z])
    ctrl = np.array([S, P1, P2, P3, [*desc, arch_z - 25], [*desc, C[2] + 30], [desc[0] + 5, desc[1] - 10, C[2] - 400]])
    aorta, aorta_r = _spline(ctrl, np.array([r_stj, r_asc, r_asc, 0.85 * r_asc, r_desc, r_desc, 0.9 * r_desc]))

    sel = (aorta[:, 2] > C[2] + 15) & (aorta[:, 2] < C[2] + 60) & (aorta[:, 1] < P3[1])  # ascending aorta
    if np.any(sel):  # the superior vena cava runs to the right of the ascending aorta
        svc = (
            float(np.min(aorta[sel, 0] - aorta_r[sel])) - hp["svc_radius"] - 4.0,
            float(np.mean(aorta[sel, 1])) + 6.0,
        )
    else:
        svc = (C[0] - 45.0, C[1] + 5.0)
    ra_r = np.array(hp["ra_radii"])
    ra_c = np.array([svc[0] + hp["ra_offset"][0], svc[1] + hp["ra_offset"][1], C[2] + hp["ra_offset"][2]])
    ra_c = _push_ellipsoid(ra_c, np.eye(3), ra_r + 2, _unit([-1.0, 0.3, 0.0]), keep, 40)
    fat_mus = b["fat_mm"] + b["muscle_mm"]
    return _Layout(
        params=params, root=root, origin=O, cavity=(b["semi_x"] - fat_mus, b["semi_y"] - fat_mus),
        lv=(lv_c, axes, lv_r), rv=(rv_c, axes, rv_r), la=la_c, ra=ra_c, spine=spine, aorta=(aorta, aorta_r),
        svc=svc, dome=float((lv_c + u_lv * (lv_r[0] + hp["myo_mm"]))[2]) + b["dome_mm"],
        keep_root=[(C + n * h, rmax + 3.0) for h in np.linspace(-root.lvot_length, H, 6)],
        keep_aorta=[(p, r + root.wall) for p, r in zip(aorta[::2], aorta_r[::2])],
    )  # fmt: skip


def _body_items(lay: _Layout, items: list, vr: np.random.Generator) -> None:
    """Table, body wall, abdomen under the diaphragm, lungs with vessels, mediastinal fat."""
    b, hu = lay.params["body"], lay.params["hu"]
    O, C, (cx, cy), dome = lay.origin, lay.centre, lay.cavity, lay.dome
    Ax, Ay = b["semi_x"], b["semi_y"]
    if b["table"]:
        _add(items, Table(O[0], O[1] + Ay + b["table_gap_mm"], 460.0, b["table_mm"], -0.0008), hu["table"], "table")
    _add(items, Cylinder(O[0], O[1], Ax, Ay, -1e5, 1e5), hu["fat"], "subcutaneous fat")
    _add(items, Cylinder(O[0], O[1], Ax - b["fat_mm"], Ay - b["fat_mm"], -1e5, 1e5), hu["muscle"], "chest wall muscle")
    _add(items, Cylinder(O[0], O[1], cx, cy, -1e5, 1e5), hu["soft"], "body cavity")
    eye = np.eye(3)
    _add(
        items,
        Ellipsoid(O + [-0.35 * cx, 0.05 * cy, dome - 75], eye, np.array([0.6 * cx, 0.85 * cy, 90])),
        hu["liver"],
        "liver",
    )
    _add(
        items,
        Ellipsoid(O + [0.55 * cx, 0.5 * cy, dome - 55], eye, np.array([25, 45, 50.0])),
        hu["liver"] + 15,
        "spleen",
    )
    _add(items, Ellipsoid(O + [0.4 * cx, -0.25 * cy, dome - 45], eye, np.array([45, 38, 42.0])), 20.0, "stomach")
    _add(items, Ellipsoid(O + [0.4 * cx, -0.45 * cy, dome - 20], eye, np.array([25, 12, 14.0])), -950.0, "stomach air")
    # One cavity-shaped lung field: its base is the diaphragm (right dome higher), the mediastinum is painted over it.
    lung = Cylinder(O[0], O[1], cx - 2, cy - 2, -1e5, C[2] + b["lung_top_mm"], floor=(dome, 45.0, 0.12), roof=60.0)
    _add(items, lung, hu["lung"], "lungs", waves=[(0.0, 0.04, 0.0, 0.0, 20.0)])
    for hilum, side in ((C + [60, 30, 30], 1.0), (C + [-55, 30, 35], -1.0)):
        for _ in range(24):  # pulmonary vessel trees: random walks out of the hila, tapering
            p, d, r = (
                hilum + vr.normal(0, 8, 3),
                _unit([side, vr.normal(0, 0.7), vr.normal(0, 1.0)]),
                vr.uniform(2.5, 4.5),
            )
            pts, rad = [p], [r]
            for _ in range(7):
                d = _unit(d + vr.normal(0, 0.35, 3))
                p = p + d * vr.uniform(12, 20)
                if ((p[0] - O[0]) / cx) ** 2 + ((p[1] - O[1]) / cy) ** 2 > 0.8 or p[2] < dome - 20:
                    break
                r = max(0.8, r * 0.78)
                pts.append(p)
                rad.append(r)
            if len(pts) > 1:
                value = vr.uniform(0.3, 0.7) * (hu["blood"] + hu["right"])
                _add(items, Tube(np.array(pts), np.array(rad)), value, "lung vessel")
    med_x, med_w = b["mediastinum_x"]
    mediastinum = Ellipsoid(
        np.array([O[0] + med_x * 0.5, O[1], C[2] + 30]), eye, np.array([med_w, cy, 1.3 * b["lung_top_mm"]])
    )
    _add(items, mediastinum, hu["fat"], "mediastinum")


def _heart_items(lay: _Layout, items: list, vr: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Epicardial fat, caval veins, right heart and pulmonary arteries, left atrium and veins, left ventricle.

    Returns:
        (lo, hi) world box of the heart.
    """
    hp, hu = lay.params["heart"], lay.params["hu"]
    root, C, O, (cx, cy) = lay.root, lay.centre, lay.origin, lay.cavity
    (lv_c, axes, lv_r), (rv_c, _, rv_r) = lay.lv, lay.rv
    la_r, ra_r, eye = np.array(hp["la_radii"]), np.array(hp["ra_radii"]), np.eye(3)
    epi_r = lv_r + hp["myo_mm"]
    walls = [Ellipsoid(lv_c, axes, epi_r), Ellipsoid(rv_c, axes, rv_r + 3), Ellipsoid(lay.la, eye, la_r + 2.5),
             Ellipsoid(lay.ra, eye, ra_r + 2)]  # fmt: skip
    boxes = [w.bbox() for w in walls] + [root.bbox()]
    lo, hi = np.min([bx[0] for bx in boxes], 0), np.max([bx[1] for bx in boxes], 0)
    sac_lo, sac_hi = np.maximum(lo, O - [cx - 5, cy - 5, 1e4]), np.minimum(hi, O + [cx - 5, cy - 5, 1e4])
    _add(items, Ellipsoid((sac_lo + sac_hi) / 2, eye, (sac_hi - sac_lo) / 2 * 1.12), hu["fat"], "epicardial fat")

    def swirls(amp):  # slow swirls of unmixed contrast in the right heart
        return [(*(_unit(vr.normal(size=3)) / vr.uniform(6, 12)), vr.uniform(0, 6.3), amp) for _ in range(3)]

    right, ra = hu["right"], lay.ra
    ivc = Tube(np.array([ra + [5, 10, 0], [ra[0] + 8, ra[1] + 15, C[2] - 400]]), np.array([12.0, 12.0]))
    _add(items, ivc, 0.6 * right + 20, "inferior vena cava")
    r = hp["svc_radius"]
    svc = Tube(np.array([[*lay.svc, C[2] + 200], [*lay.svc, ra[2] + ra_r[2] * 0.5]]), np.array([r, r]))
    _add(items, svc, hu["svc"], "superior vena cava", swirls(0.1 * hu["svc"]))
    _add(items, walls[3], hu["myocardium"], "right atrial wall")
    _add(items, Ellipsoid(ra, eye, ra_r), right, "right atrium", swirls(0.12 * right))
    _add(items, walls[1], hu["myocardium"], "right ventricular wall")
    _add(items, Ellipsoid(rv_c, axes, rv_r), right, "right ventricle", swirls(0.08 * right))
    pa_r, br_r = hp["pa_radius"], hp["pa_branch_radius"]
    keep = lay.keep_root + lay.keep_aorta
    q0 = _push_clear(rv_c + [10.0, 0, rv_r[2] * 0.5], pa_r, lay.keep_root)
    q1 = _push_clear(C + [22, -30, 12], pa_r, keep)
    q2 = _push_clear(C + [24, 2, 40], pa_r, keep)  # bifurcation under the arch
    _add(items, Tube(*_spline(np.array([q0, q1, q2]), np.full(3, pa_r))), right, "pulmonary trunk")
    for pts in ([C + [50, 18, 38], C + [75, 28, 30]], [C + [0, 20, 45], C + [-30, 26, 40], C + [-60, 28, 35]]):
        pts = np.array([q2] + [_push_clear(p, br_r, keep) for p in pts])
        _add(items, Tube(*_spline(pts, np.full(len(pts), br_r))), right, "pulmonary artery")
    _add(items, walls[2], hu["myocardium"], "left atrial wall")
    _add(items, Ellipsoid(lay.la, eye, la_r), hu["left_atrium"], "left atrium")
    for sx in (1.0, -1.0):
        for sz in (1.0, -1.0):
            a = lay.la + [sx * la_r[0] * 0.7, 4.0, sz * 8.0]
            vein = Tube(np.array([a, a + [sx * 35, 12, sz * 6 - 4]]), np.array([6.5, 6.0]))
            _add(items, vein, hu["left_atrium"], "pulmonary vein")
    _add(items, walls[0], hu["myocardium"], "left ventricular myocardium")
    _add(items, Ellipsoid(lv_c, axes, lv_r), hu["blood"], "left ventricle")
    E = C - root.normal * root.lvot_length
    _add(items, Capsule(E, lv_c, 0.9 * root.semi_minor, 0.9 * root.semi_minor), hu["blood"], "outflow connector")
    return lo, hi


def _posterior_items(lay: _Layout, items: list, vr: np.random.Generator) -> None:
    """Aorta with arch branches, oesophagus, airways, spine with paraspinal muscles, ribs, sternum."""
    b, hu = lay.params["body"], lay.params["hu"]
    O, C, (cx, cy) = lay.origin, lay.centre, lay.cavity
    aorta, aorta_r = lay.aorta
    top = int(np.argmax(aorta[:, 2]))
    for k, d, r in ((-6, (-0.4, -0.1, 1.0), 6.5), (0, (0.1, 0.0, 1.0), 4.0), (4, (0.4, 0.1, 1.0), 5.0)):
        a = aorta[min(max(top + k, 0), len(aorta) - 1)]
        branch = Tube(np.array([a, a + 40 * _unit(d), a + 90 * _unit(d) + [0, 0, 20]]), np.array([r, r, r * 0.9]))
        _add(items, branch, hu["blood"], "arch branch")
    _add(items, Tube(aorta, aorta_r + lay.root.wall), hu["wall"], "aortic wall")
    _add(items, Tube(aorta, aorta_r), hu["blood"], "aorta")
    sx0, sy0 = lay.spine
    rvx, rvy = b["vertebra_radii"]
    oes_y = sy0 - rvy - 12
    oes = np.array([[O[0] + 6, oes_y, C[2] + 400], [sx0 + 10, oes_y - 4, C[2] - 100]])
    _add(items, Tube(oes, np.array([8.0, 8.0])), hu["soft"], "oesophagus")
    if vr.random() < 0.5:
        _add(items, Tube(oes, np.array([2.5, 2.5])), -950.0, "oesophageal air")
    tr_y = oes_y - 20
    carina = np.array([O[0] + 2, tr_y, C[2] + 55])
    for end, r in (([O[0], tr_y - 10, C[2] + 400], 9.0), ([O[0] + 45, tr_y + 10, C[2] + 25], 6.0),
                   ([O[0] - 40, tr_y + 10, C[2] + 35], 6.5)):  # fmt: skip
        pts = np.array([end, carina] if r == 9.0 else [carina, end], float)
        _add(items, Tube(pts, np.full(2, r + 1.5)), hu["soft"], "airway wall")
        _add(items, Tube(pts, np.full(2, r)), -990.0, "airway")
    for side in (-1, 1):  # erector spinae, inside the body outline behind the ribs
        muscle = Cylinder(sx0 + side * 32, O[1] + b["semi_y"] - b["fat_mm"] - 20, 20, 17, -1e5, 1e5)
        _add(items, muscle, hu["muscle"], "paraspinal muscle")
    pitch, vh = b["vertebra_mm"] + b["disc_mm"], b["vertebra_mm"]
    ribs = 0
    for z0 in np.arange(C[2] - 350 - (C[2] % pitch), C[2] + 300, pitch):
        zc = z0 + vh / 2
        y0 = sy0 + 6 * np.cos((zc - C[2]) / 120)  # thoracic kyphosis
        _add(items, Cylinder(sx0, y0, rvx, rvy, z0, z0 + vh), hu["cortical"], "vertebral body")
        _add(
            items, Cylinder(sx0, y0, rvx - 1.6, rvy - 1.6, z0 + 1.6, z0 + vh - 1.6), hu["cancellous"], "vertebral body"
        )
        _add(items, Cylinder(sx0, y0, rvx, rvy, z0 + vh, z0 + pitch), hu["disc"], "disc")
        yc = y0 + rvy + 9
        _add(items, Cylinder(sx0, yc, 8, 8, z0, z0 + pitch), hu["csf"], "spinal canal")
        ring = np.array([[sx0 + 11 * np.cos(a), yc + 11 * np.sin(a), zc] for a in np.linspace(-0.3, np.pi + 0.3, 9)])
        _add(items, Tube(ring, np.full(len(ring), 3.0)), hu["cortical"], "vertebral arch")
        spinous = Tube(np.array([[sx0, yc + 12, zc], [sx0, yc + 32, zc - 12]]), np.array([4.0, 3.0]))
        _add(items, spinous, hu["cortical"], "spinous process")
        for side in (-1, 1):
            process = Tube(
                np.array([[sx0 + side * 8, yc, zc], [sx0 + side * 28, yc + 6, zc + 2]]), np.array([4.0, 3.5])
            )
            _add(items, process, hu["cortical"], "transverse process")
        if C[2] - 130 < zc < C[2] + 190 and ribs < 12:
            ribs += 1
            _rib_items(lay, items, (sx0, yc, zc))
    y_st = O[1] - cy + 4
    _add(items, Cylinder(O[0], y_st, 15, 6, C[2] - 95, C[2] + 95), hu["cortical"], "sternum")
    _add(items, Cylinder(O[0], y_st, 13.4, 4.4, C[2] - 93, C[2] + 93), hu["cancellous"], "sternum")


def _rib_items(lay: _Layout, items: list, joint: tuple[float, float, float]) -> None:
    """A pair of ribs from the vertebra at ``joint`` (x, y, z) along the chest wall, sloping down anteriorly."""
    b, hu = lay.params["body"], lay.params["hu"]
    O, (cx, cy) = lay.origin, lay.cavity
    sx0, yc, zc = joint
    rx, ry = b["semi_x"] - b["fat_mm"] - 0.5 * b["muscle_mm"], b["semi_y"] - b["fat_mm"] - 0.5 * b["muscle_mm"]
    phi = np.linspace(0.3, 2.6, 14)
    drop = b["rib_drop_mm"] * ((phi - phi[0]) / (phi[-1] - phi[0])) ** 1.3
    for side in (-1, 1):
        pts = np.stack([O[0] + side * rx * np.sin(phi), O[1] + ry * np.cos(phi), zc - drop], 1)
        pts[0] = [sx0 + side * 26, yc + 4, zc + 2]
        _add(items, Tube(pts, np.full(len(pts), 4.5)), hu["cortical"], "rib")
        _add(items, Tube(pts, np.full(len(pts), 2.8)), hu["cancellous"], "rib marrow")
        end = pts[-1]
        if lay.centre[2] - 100 < end[2] < lay.centre[2] + 90:
            sternal = np.array([O[0] + side * 14, O[1] - cy + 4, end[2] + 8])
            _add(items, Tube(np.array([end, sternal]), np.array([4.0, 3.5])), hu["cartilage"], "costal cartilage")


def _root_items(lay: _Layout, items: list) -> dict[str, np.ndarray]:
    """The aortic root, coronary arteries from the right and left sinuses, calcium. Returns the ostia (world LPS)."""
    root, hu, rp = lay.root, lay.params["hu"], lay.params["root"]
    parts = {"muscle": hu["myocardium"], "wall": hu["wall"], "lumen": hu["blood"], "leaflets": hu["leaflets"]}
    items.append(RootPainter(root, parts))
    n, ostia = root.normal, {}
    for name, k, key, rad in (
        ("RCO", 0, "rco", rp["ostia"]["rca_radius_mm"]),
        ("LCO", 1, "lco", rp["ostia"]["lm_radius_mm"]),
    ):
        psi, h = root.angle_of(k, rp["ostia"][key + "_t"]), rp["ostia"][key + "_h"] * root.stj_height
        R = float(root.lumen_radius(psi, h))
        ostia[name] = root.world(R, psi, h)
        radial = root.world(1.0, psi, h) - root.world(0.0, psi, h)
        start = root.world(R - 2.5, psi, h)  # from inside the lumen, through the wall
        if name == "RCO":  # right coronary artery: anterior, then down the right atrioventricular groove
            p1 = ostia[name] + radial * 7 + n * 1.5
            p2 = p1 + 14 * _unit(0.6 * radial + _unit([-1, -1, -0.6]))
            branches = [[start, p1, p2, p2 + 25 * _unit([-0.6, -0.2, -1]), p2 + 45 * _unit([-0.3, 0.2, -1])]]
        else:  # left main, then anterior descending and circumflex
            p1 = ostia[name] + radial * 9 + n * 1.0
            branches = [[start, p1, p1 + 20 * _unit([0.5, -0.8, -0.4]), p1 + 50 * _unit([0.4, -0.5, -0.9])],
                        [p1, p1 + 18 * _unit([0.7, 0.6, -0.3]), p1 + 40 * _unit([0.5, 0.6, -0.8])]]  # fmt: skip
        for pts in branches:
            _add(items, Tube(np.array(pts), np.linspace(rad, 0.7 * rad, len(pts))), hu["blood"], "coronary artery")
    for c in lay.params["calcs"]:
        if c["kind"] == "leaflet":
            p = root.leaflet_point(c["cusp"], c["frac"], c["t"])
        else:
            p = root.world(float(root.lumen_radius(c["psi"], c["h"])) + c["dr"], c["psi"], c["h"])
        _add(items, Ellipsoid(p, np.eye(3), np.full(3, c["radius_mm"])), c["hu"], "calcium")
    return ostia


def _imaging(params: dict, lay: _Layout, items: list) -> dict[str, Any]:
    """Imaging parameters with the streak source (densest calcium or the SVC) and banding slabs in world mm."""
    imaging = dict(params["imaging"])
    C = lay.centre
    st = imaging.get("streaks")
    if st:
        calcs = params["calcs"]
        if st["source_kind"] == "calc" and calcs:
            i = int(np.argmax([c["hu"] * c["radius_mm"] for c in calcs]))
            src = [it for it in items if getattr(it, "name", "") == "calcium"][i].shape.center
        else:
            src = np.array([*lay.svc, C[2] + 40])
        imaging["streaks"] = dict(st, source=[float(v) for v in src])
    if "band_offsets" in imaging:
        edges = C[2] + np.array([-60.0, -30, 0, 30, 60])
        imaging["bands"] = [(float(edges[i]), float(edges[i + 1]), o) for i, o in enumerate(imaging["band_offsets"])]
    return imaging


def _grids(params: dict, root: RootGeometry) -> tuple[Grid, Grid, float]:
    """Output grid (centred near the root, axes possibly flipped), fine root grid, coarse whole-field spacing."""
    g = params["grid"]
    size, spacing = np.array(g["size"]), np.array(g["spacing"], float)
    D = np.diag([-1.0 if f else 1.0 for f in g["flip"]])
    centre = root.center + np.array(g["center_offset_mm"])
    out = Grid(centre - D @ (spacing * (size - 1) / 2), spacing, tuple(int(v) for v in size), D)
    if params["size"] == "full":  # about 7 M coarse voxels whatever the field of view
        coarse, fine = max(float(spacing.max()), float(np.prod(spacing * (size - 1)) / 7e6) ** (1 / 3)), 0.6
    else:
        coarse, fine = float(spacing.max()), 0.9
    r, h_lo, h_hi = root.fine_extent()
    lo = np.array([-r - 4, -r - 4, h_lo - 4])  # + 4 mm for the blend ramp
    n = tuple(int(v) for v in np.ceil(np.array([2 * r + 8, 2 * r + 8, h_hi - h_lo + 8]) / fine) + 1)
    return out, Grid(root.center + root.frame @ lo, np.full(3, fine), n, root.frame.copy()), coarse
