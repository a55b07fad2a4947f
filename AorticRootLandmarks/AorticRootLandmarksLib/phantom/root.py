"""The analytic aortic root: basal ring, sinuses, leaflets, hinge points and annulus truth.

Root frame (all world LPS mm): ``center`` is the centre of the elliptical virtual basal ring, ``n`` its unit normal
from the left ventricle into the aorta, ``e1`` the anterior direction projected on the ring plane (towards the right
coronary cusp) and ``e2 = n x e1``. Cylindrical root coordinates are ``r`` (mm from the axis), ``psi`` (rad from
``e1`` towards ``e2``, counter-clockwise seen from the aorta) and ``h`` (mm along ``n`` above the ring).
The cusp nadirs (hinge points) sit at ``h = 0`` on the ring at increasing ``psi`` in the order RCC, LCC, NCC
(``constants.HINGE_NAMES``), so
``(LCC - RCC) x (NCC - RCC)`` points along ``+n``. The leaflets attach along a crown whose lowest points are the
nadirs and highest points the commissures; each sinus of Valsalva bulges out of the wall starting at that line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .paint import Canvas, blend, occupancy
from .shapes import F32


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
        # cos(pi/2) is -4e-8 in float32: clamp, or a point exactly at a commissure (|t| = 1) gives NaN.
        bulge = depth * np.maximum(np.cos(F32(np.pi / 2) * np.clip(t, -1, 1)), F32(0)) ** F32(1.5) * s
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
    """Paint item (see ``paint.render_region``): the root's parts in order (myocardium, wall, lumen, leaflets), with
    one evaluation of its geometry.

    Attributes:
        root: the geometry.
        hu: HU of each part, keys ``muscle``, ``wall``, ``lumen``, ``leaflets``.
        name: the item's name in the paint list.
    """

    root: RootGeometry
    hu: dict[str, float]
    name: str = "aortic root"

    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        return self.root.bbox()

    def paint(self, canvas: Canvas) -> None:
        """Blend the parts over ``canvas.hu`` where the root's box covers it (partial volume at every surface)."""
        block = canvas.block(*self.bbox())
        if block is None:
            return
        d = self.root.distances(*canvas.coords(block))
        hu = canvas.hu[block]
        for part in ("muscle", "wall", "lumen", "leaflets"):
            blend(hu, occupancy(d[part], canvas.ramp), F32(self.hu[part]))


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
