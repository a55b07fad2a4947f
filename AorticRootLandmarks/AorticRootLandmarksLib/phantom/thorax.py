"""Chest and heart layout around the aortic root: chambers, great vessels, lungs, spine, ribs and body wall.

All positions are world LPS mm. ``_place`` puts the chambers and vessels around a ``RootGeometry`` (pushed clear of
the root); the ``*_items`` functions append ``paint.Layer`` objects to the paint list in order. Random detail (lung
vessel trees, contrast swirls) comes from the generators passed in: the case's ``lung_vessels`` and ``swirls`` streams.

Keys that only non-classic styles set (``body["arms"]``, ``body["wires"]``, ``hu["svc_mixing"]``) are read with
defaults that reproduce the classic cases; those styles also get the spine and aorta down to 520 mm below the annulus
(chest and abdomen scans) instead of 350-400 mm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .paint import Layer
from .root import RootGeometry
from .shapes import Capsule, Cylinder, Ellipsoid, Table, Tube


def _unit(v) -> np.ndarray:
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def _add(items: list, shape, value: float, name: str, waves=()) -> None:
    items.append(Layer(shape, float(value), tuple(waves), name))


def _z_below(params: dict) -> float:
    """mm below the annulus down to which the spine, aorta and inferior vena cava are drawn."""
    return 400.0 if params.get("style", "classic") == "classic" else 520.0


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
    mid = np.array(b["offset_mm"], float)
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

    spine = (mid[0] + b["spine_x"], mid[1] + b["semi_y"] - b["spine_depth_mm"])
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
    bottom = [desc[0] + 5, desc[1] - 10, C[2] - _z_below(params)]
    ctrl = np.array([S, P1, P2, P3, [*desc, arch_z - 25], [*desc, C[2] + 30], bottom])
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
        params=params, root=root, origin=mid, cavity=(b["semi_x"] - fat_mus, b["semi_y"] - fat_mus),
        lv=(lv_c, axes, lv_r), rv=(rv_c, axes, rv_r), la=la_c, ra=ra_c, spine=spine, aorta=(aorta, aorta_r),
        svc=svc, dome=float((lv_c + u_lv * (lv_r[0] + hp["myo_mm"]))[2]) + b["dome_mm"],
        keep_root=[(C + n * h, rmax + 3.0) for h in np.linspace(-root.lvot_length, H, 6)],
        keep_aorta=[(p, r + root.wall) for p, r in zip(aorta[::2], aorta_r[::2], strict=True)],
    )  # fmt: skip


def _body_items(lay: _Layout, items: list, vessel_rng: np.random.Generator) -> None:
    """Table, body wall, abdomen under the diaphragm, lungs with vessels, mediastinal fat."""
    b, hu = lay.params["body"], lay.params["hu"]
    mid, C, (cx, cy), dome = lay.origin, lay.centre, lay.cavity, lay.dome
    Ax, Ay = b["semi_x"], b["semi_y"]
    if b["table"]:
        _add(items, Table(mid[0], mid[1] + Ay + b["table_gap_mm"], 460.0, b["table_mm"], -0.0008), hu["table"], "table")
    if b.get("arms", "up") == "down":
        _arm_items(lay, items)
    _add(items, Cylinder(mid[0], mid[1], Ax, Ay, -1e5, 1e5), hu["fat"], "subcutaneous fat")
    wall = Cylinder(mid[0], mid[1], Ax - b["fat_mm"], Ay - b["fat_mm"], -1e5, 1e5)
    _add(items, wall, hu["muscle"], "chest wall muscle")
    _add(items, Cylinder(mid[0], mid[1], cx, cy, -1e5, 1e5), hu["soft"], "body cavity")
    eye = np.eye(3)
    _add(
        items,
        Ellipsoid(mid + [-0.35 * cx, 0.05 * cy, dome - 75], eye, np.array([0.6 * cx, 0.85 * cy, 90])),
        hu["liver"],
        "liver",
    )
    _add(
        items,
        Ellipsoid(mid + [0.55 * cx, 0.5 * cy, dome - 55], eye, np.array([25, 45, 50.0])),
        hu["liver"] + 15,
        "spleen",
    )
    _add(items, Ellipsoid(mid + [0.4 * cx, -0.25 * cy, dome - 45], eye, np.array([45, 38, 42.0])), 20.0, "stomach")
    stomach_air = Ellipsoid(mid + [0.4 * cx, -0.45 * cy, dome - 20], eye, np.array([25, 12, 14.0]))
    _add(items, stomach_air, -950.0, "stomach air")
    # One cavity-shaped lung field: its base is the diaphragm (right dome higher), the mediastinum is painted over it.
    lung = Cylinder(mid[0], mid[1], cx - 2, cy - 2, -1e5, C[2] + b["lung_top_mm"], floor=(dome, 45.0, 0.12), roof=60.0)
    _add(items, lung, hu["lung"], "lungs", waves=[(0.0, 0.04, 0.0, 0.0, 20.0)])
    for hilum, side in ((C + [60, 30, 30], 1.0), (C + [-55, 30, 35], -1.0)):
        for _ in range(24):  # pulmonary vessel trees: random walks out of the hila, tapering
            p, d, r = (
                hilum + vessel_rng.normal(0, 8, 3),
                _unit([side, vessel_rng.normal(0, 0.7), vessel_rng.normal(0, 1.0)]),
                vessel_rng.uniform(2.5, 4.5),
            )
            pts, rad = [p], [r]
            for _ in range(7):
                d = _unit(d + vessel_rng.normal(0, 0.35, 3))
                p = p + d * vessel_rng.uniform(12, 20)
                if ((p[0] - mid[0]) / cx) ** 2 + ((p[1] - mid[1]) / cy) ** 2 > 0.8 or p[2] < dome - 20:
                    break
                r = max(0.8, r * 0.78)
                pts.append(p)
                rad.append(r)
            if len(pts) > 1:
                value = vessel_rng.uniform(0.3, 0.7) * (hu["blood"] + hu["right"])
                _add(items, Tube(np.array(pts), np.array(rad)), value, "lung vessel")
    med_x, med_w = b["mediastinum_x"]
    mediastinum = Ellipsoid(
        np.array([mid[0] + med_x * 0.5, mid[1], C[2] + 30]), eye, np.array([med_w, cy, 1.3 * b["lung_top_mm"]])
    )
    _add(items, mediastinum, hu["fat"], "mediastinum")


def _heart_items(lay: _Layout, items: list, swirl_rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Epicardial fat, caval veins, right heart and pulmonary arteries, left atrium and veins, left ventricle.

    Returns:
        (lo, hi) world box of the heart.
    """
    hp, hu = lay.params["heart"], lay.params["hu"]
    root, C, mid, (cx, cy) = lay.root, lay.centre, lay.origin, lay.cavity
    (lv_c, axes, lv_r), (rv_c, _, rv_r) = lay.lv, lay.rv
    la_r, ra_r, eye = np.array(hp["la_radii"]), np.array(hp["ra_radii"]), np.eye(3)
    epi_r = lv_r + hp["myo_mm"]
    walls = [Ellipsoid(lv_c, axes, epi_r), Ellipsoid(rv_c, axes, rv_r + 3), Ellipsoid(lay.la, eye, la_r + 2.5),
             Ellipsoid(lay.ra, eye, ra_r + 2)]  # fmt: skip
    boxes = [w.bbox() for w in walls] + [root.bbox()]
    lo, hi = np.min([bx[0] for bx in boxes], 0), np.max([bx[1] for bx in boxes], 0)
    sac_lo, sac_hi = np.maximum(lo, mid - [cx - 5, cy - 5, 1e4]), np.minimum(hi, mid + [cx - 5, cy - 5, 1e4])
    _add(items, Ellipsoid((sac_lo + sac_hi) / 2, eye, (sac_hi - sac_lo) / 2 * 1.12), hu["fat"], "epicardial fat")

    def swirls(amp):  # slow swirls of unmixed contrast in the right heart
        waves = []
        for _ in range(3):
            k = _unit(swirl_rng.normal(size=3)) / swirl_rng.uniform(6, 12)  # wave vector, 1/mm
            waves.append((*k, swirl_rng.uniform(0, 6.3), amp))
        return waves

    right, ra = hu["right"], lay.ra
    mix = hu.get("svc_mixing", 0.1) / 0.1  # swirl amplitude relative to the classic one
    ivc_end = [ra[0] + 8, ra[1] + 15, C[2] - _z_below(lay.params)]
    ivc = Tube(np.array([ra + [5, 10, 0], ivc_end]), np.array([12.0, 12.0]))
    _add(items, ivc, 0.6 * right + 20, "inferior vena cava")
    r = hp["svc_radius"]
    svc = Tube(np.array([[*lay.svc, C[2] + 200], [*lay.svc, ra[2] + ra_r[2] * 0.5]]), np.array([r, r]))
    _add(items, svc, hu["svc"], "superior vena cava", swirls(0.1 * mix * hu["svc"]))
    _add(items, walls[3], hu["myocardium"], "right atrial wall")
    _add(items, Ellipsoid(ra, eye, ra_r), right, "right atrium", swirls(0.12 * mix * right))
    _add(items, walls[1], hu["myocardium"], "right ventricular wall")
    _add(items, Ellipsoid(rv_c, axes, rv_r), right, "right ventricle", swirls(0.08 * mix * right))
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


def _posterior_items(lay: _Layout, items: list) -> None:
    """Aorta with arch branches, oesophagus, airways, spine with paraspinal muscles, ribs, sternum."""
    b, hu = lay.params["body"], lay.params["hu"]
    mid, C, cy = lay.origin, lay.centre, lay.cavity[1]
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
    oes = np.array([[mid[0] + 6, oes_y, C[2] + 400], [sx0 + 10, oes_y - 4, C[2] - 100]])
    _add(items, Tube(oes, np.array([8.0, 8.0])), hu["soft"], "oesophagus")
    if b["oesophageal_air"]:
        _add(items, Tube(oes, np.array([2.5, 2.5])), -950.0, "oesophageal air")
    tr_y = oes_y - 20
    carina = np.array([mid[0] + 2, tr_y, C[2] + 55])
    for end, r in (([mid[0], tr_y - 10, C[2] + 400], 9.0), ([mid[0] + 45, tr_y + 10, C[2] + 25], 6.0),
                   ([mid[0] - 40, tr_y + 10, C[2] + 35], 6.5)):  # fmt: skip
        pts = np.array([end, carina] if r == 9.0 else [carina, end], float)
        _add(items, Tube(pts, np.full(2, r + 1.5)), hu["soft"], "airway wall")
        _add(items, Tube(pts, np.full(2, r)), -990.0, "airway")
    for side in (-1, 1):  # erector spinae, inside the body outline behind the ribs
        muscle = Cylinder(sx0 + side * 32, mid[1] + b["semi_y"] - b["fat_mm"] - 20, 20, 17, -1e5, 1e5)
        _add(items, muscle, hu["muscle"], "paraspinal muscle")
    pitch, vh = b["vertebra_mm"] + b["disc_mm"], b["vertebra_mm"]
    ribs = 0
    for z0 in np.arange(C[2] - (_z_below(lay.params) - 50) - (C[2] % pitch), C[2] + 300, pitch):
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
    y_st = mid[1] - cy + 4
    _add(items, Cylinder(mid[0], y_st, 15, 6, C[2] - 95, C[2] + 95), hu["cortical"], "sternum")
    _add(items, Cylinder(mid[0], y_st, 13.4, 4.4, C[2] - 93, C[2] + 93), hu["cancellous"], "sternum")
    if b.get("wires", False):
        for z in C[2] + np.linspace(-70, 60, 5):  # sternotomy wires: loops around the sternum, steel
            ring = [[mid[0] + 18 * np.cos(a), y_st + 8 * np.sin(a), z] for a in np.linspace(0, 2 * np.pi, 13)]
            _add(items, Tube(np.array(ring), np.full(13, 0.7)), 3000.0, "sternal wire")


def _arm_items(lay: _Layout, items: list) -> None:
    """Arms down beside the chest: fat, muscle and the humerus (cortex and marrow), along z."""
    b, hu = lay.params["body"], lay.params["hu"]
    mid = lay.origin
    for side in (-1, 1):
        r = 38.0 + 0.5 * b["fat_mm"]
        cx, cy = mid[0] + side * (b["semi_x"] + 8.0 + r), mid[1] + 0.15 * b["semi_y"]
        _add(items, Cylinder(cx, cy, r, r * 1.1, -1e5, 1e5), hu["fat"], "arm")
        _add(items, Cylinder(cx, cy, r - 0.5 * b["fat_mm"] - 3, (r - 0.5 * b["fat_mm"] - 3) * 1.1, -1e5, 1e5),
             hu["muscle"], "arm muscle")  # fmt: skip
        _add(items, Cylinder(cx - side * 4, cy, 11.0, 11.0, -1e5, 1e5), hu["cortical"], "humerus")
        _add(items, Cylinder(cx - side * 4, cy, 7.5, 7.5, -1e5, 1e5), hu["cancellous"] - 100, "humerus marrow")


def _rib_items(lay: _Layout, items: list, joint: tuple[float, float, float]) -> None:
    """A pair of ribs from the vertebra at ``joint`` (x, y, z) along the chest wall, sloping down anteriorly."""
    b, hu = lay.params["body"], lay.params["hu"]
    mid, cy = lay.origin, lay.cavity[1]
    sx0, yc, zc = joint
    rx, ry = b["semi_x"] - b["fat_mm"] - 0.5 * b["muscle_mm"], b["semi_y"] - b["fat_mm"] - 0.5 * b["muscle_mm"]
    phi = np.linspace(0.3, 2.6, 14)
    drop = b["rib_drop_mm"] * ((phi - phi[0]) / (phi[-1] - phi[0])) ** 1.3
    for side in (-1, 1):
        pts = np.stack([mid[0] + side * rx * np.sin(phi), mid[1] + ry * np.cos(phi), zc - drop], 1)
        pts[0] = [sx0 + side * 26, yc + 4, zc + 2]
        _add(items, Tube(pts, np.full(len(pts), 4.5)), hu["cortical"], "rib")
        _add(items, Tube(pts, np.full(len(pts), 2.8)), hu["cancellous"], "rib marrow")
        end = pts[-1]
        if lay.centre[2] - 100 < end[2] < lay.centre[2] + 90:
            sternal = np.array([mid[0] + side * 14, mid[1] - cy + 4, end[2] + 8])
            _add(items, Tube(np.array([end, sternal]), np.array([4.0, 3.5])), hu["cartilage"], "costal cartilage")
