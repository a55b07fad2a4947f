"""One case's anatomy: the aortic root, the thorax around it, coronaries, calcium, imaging parameters and grids.

``build_anatomy(sample_params(...))`` assembles ``root`` (the analytic aortic root) and ``thorax`` (chest and heart
layout) into an ``Anatomy`` ready for ``render.form_image``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .render import Ellipsoid, Grid, Tube
from .root import RootGeometry, RootPainter, root_from_params
from .thorax import _add, _body_items, _heart_items, _Layout, _place, _posterior_items, _ring_centre, _unit

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
