"""One case's anatomy: the aortic root, the thorax around it, coronaries, calcium, imaging parameters and grids.

``build_anatomy(sample_params(...))`` assembles ``root`` (the analytic aortic root) and ``thorax`` (chest and heart
layout) into an ``Anatomy`` ready for ``scanner.form_image``. Grids are ``grid.VoxelGrid`` (world LPS mm).

Classic cases (``params["style"]`` absent or ``"classic"``) keep their version-2 grids; the other styles get an
anisotropic coarse grid of bounded size and a fine root grid aligned with the world axes (so the slice profile
blurs along world z on both).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..grid import VoxelGrid
from .params import case_streams
from .root import RootGeometry, RootPainter, root_from_params
from .shapes import Ellipsoid, Tube
from .style_params import direction_matrix
from .thorax import _add, _body_items, _heart_items, _Layout, _place, _posterior_items, _ring_centre, _unit


@dataclass
class Anatomy:
    """One case's analytic anatomy in world LPS mm, ready to render.

    Attributes:
        root: the aortic root geometry (hinge points, ring).
        items: paint order (``paint.Layer`` or ``root.RootPainter``) from the table to the calcium nodules.
        ostia: {"RCO": (3,), "LCO": (3,)} coronary ostia on the lumen boundary.
        heart_box: (lo, hi) world box of the heart (motion artefacts).
        imaging: the sampled imaging parameters with streak source / bands resolved to world positions.
        out_grid: the output image grid; root_grid: fine grid around the root; coarse_spacing: mm (a float for
            classic cases, (3,) along x, y, z for the other styles).
        fine_from: index of the first item repainted on the fine root grid (the heart onwards).
    """

    root: RootGeometry
    items: list
    ostia: dict[str, np.ndarray]
    heart_box: tuple[np.ndarray, np.ndarray]
    imaging: dict[str, Any]
    out_grid: VoxelGrid
    root_grid: VoxelGrid
    coarse_spacing: Any
    fine_from: int


def build_anatomy(params: dict[str, Any]) -> Anatomy:
    """Place every structure of the case in world LPS mm from ``sample_params`` output."""
    root = root_from_params(params["root"], _ring_centre(params["body"]))
    lay = _place(params, root)
    streams = case_streams(params["seed"], params["index"], params.get("style", "classic"))
    items: list = []
    _body_items(lay, items, streams("lung_vessels"))
    fine_from = len(items)
    heart_box = _heart_items(lay, items, streams("swirls"))
    _posterior_items(lay, items)
    ostia = _root_items(lay, items)
    out_grid, root_grid, coarse = _grids(params, root)
    imaging = _imaging(params, lay, items, out_grid)
    return Anatomy(root, items, ostia, heart_box, imaging, out_grid, root_grid, coarse, fine_from)


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


def _imaging(params: dict, lay: _Layout, items: list, out: VoxelGrid) -> dict[str, Any]:
    """Imaging parameters with the streak source (densest calcium, a sternal wire or the SVC), banding slabs in
    world mm and the slice thickness (non-classic styles)."""
    imaging = dict(params["imaging"])
    C = lay.centre
    st = imaging.get("streaks")
    if st:
        calcs = params["calcs"]
        wires = [it.shape.points.mean(0) for it in items if it.name == "sternal wire"]
        if st["source_kind"] == "calc" and calcs:
            i = int(np.argmax([c["hu"] * c["radius_mm"] for c in calcs]))
            src = [it for it in items if it.name == "calcium"][i].shape.center
        elif st["source_kind"] == "wire" and wires:
            src = min(wires, key=lambda w: abs(w[2] - C[2]))  # the wire nearest the annulus level
        else:
            src = np.array([*lay.svc, C[2] + 40])
        imaging["streaks"] = dict(st, source=[float(v) for v in src])
    if "band_offsets" in imaging:
        edges = C[2] + np.array([-60.0, -30, 0, 30, 60])
        imaging["bands"] = [(float(edges[i]), float(edges[i + 1]), o) for i, o in enumerate(imaging["band_offsets"])]
    step = imaging.get("stairstep")
    if step:  # slabs from the bottom of the image upwards
        z0 = float(out.corners()[:, 2].min()) - step["phase_mm"]
        slab = step["slab_mm"]
        imaging["bands"] = [(z0 + k * slab, z0 + (k + 1) * slab, o) for k, o in enumerate(step["offsets"])]
    if "slice_fwhm_mm" in params["grid"]:
        imaging["slice_fwhm_mm"] = params["grid"]["slice_fwhm_mm"]
    return imaging


def coarse_spacing_for(out: VoxelGrid, budget: float = 7e6) -> np.ndarray:
    """(3,) mm along x, y, z of an axis-aligned whole-field grid of at most ~``budget`` voxels over ``out``.

    Never finer than the output along an axis; the axes where the output is finer share one spacing ``s``, the
    smallest that keeps the voxel count within the budget (bisection).
    """
    extent = np.abs(out.direction) @ (out.spacing * np.array(out.size))  # world x, y, z extent of the box
    finest = np.abs(out.direction) @ out.spacing  # the output spacing along each world axis (small rotations)
    lo, hi = float(finest.min()), float(extent.max())
    for _ in range(40):
        s = 0.5 * (lo + hi)
        lo, hi = (lo, s) if np.prod(extent / np.maximum(finest, s)) <= budget else (s, hi)
    return np.maximum(finest, hi)


def _grids(params: dict, root: RootGeometry) -> tuple[VoxelGrid, VoxelGrid, Any]:
    """Output grid (centred near the root, axes possibly flipped or oblique), fine root grid, coarse spacing."""
    g = params["grid"]
    size, spacing = np.array(g["size"]), np.array(g["spacing"], float)
    D = direction_matrix(g)
    centre = root.center + np.array(g["center_offset_mm"])
    out = VoxelGrid(centre - D @ (spacing * (size - 1) / 2), spacing, tuple(int(v) for v in size), D)
    if params.get("style", "classic") != "classic":
        return out, _world_root_grid(root, 0.6 if params["size"] == "full" else 0.9), coarse_spacing_for(out)
    if params["size"] == "full":  # about 7 M coarse voxels whatever the field of view
        coarse, fine = max(float(spacing.max()), float(np.prod(spacing * (size - 1)) / 7e6) ** (1 / 3)), 0.6
    else:
        coarse, fine = float(spacing.max()), 0.9
    r, h_lo, h_hi = root.fine_extent()
    lo = np.array([-r - 4, -r - 4, h_lo - 4])  # + 4 mm for the blend ramp
    n = tuple(int(v) for v in np.ceil(np.array([2 * r + 8, 2 * r + 8, h_hi - h_lo + 8]) / fine) + 1)
    return out, VoxelGrid(root.center + root.frame @ lo, np.full(3, fine), n, root.frame.copy()), coarse


def _world_root_grid(root: RootGeometry, spacing: float) -> VoxelGrid:
    """Fine grid aligned with the world axes over the root's fine extent (+ 4 mm for the blend ramp)."""
    r, h_lo, h_hi = root.fine_extent()
    r, h_lo, h_hi = r + 4, h_lo - 4, h_hi + 4
    local = np.array([[x, y, h] for x in (-r, r) for y in (-r, r) for h in (h_lo, h_hi)])
    corners = root.center + local @ root.frame.T
    lo, hi = corners.min(0), corners.max(0)
    n = tuple(int(v) for v in np.ceil((hi - lo) / spacing) + 1)
    return VoxelGrid(lo, np.full(3, spacing), n, np.eye(3))
