"""The ring model of the lumen contour: the radius over the angle from a centre, as an ellipse plus a smooth Fourier
series of the deviations from it, fitted to the edges found on the rays (trace.py), gaps bridged along the ring.

Frame: plane (u, v) mm, as the package docstring says; angles in radians from +u towards +v. Numpy only.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

ArrayLike = npt.ArrayLike


def fourier_basis(angles: np.ndarray, harmonics: int) -> np.ndarray:
    """(n, 1 + 2 H) columns 1, cos(h a), sin(h a) for h = 1..H."""
    h = np.arange(1, harmonics + 1)
    return np.concatenate([np.ones((angles.size, 1)), np.cos(np.outer(angles, h)), np.sin(np.outer(angles, h))], 1)


def smooth_fit(angles: np.ndarray, radii: np.ndarray, use: np.ndarray, harmonics: int, stiffness: float) -> np.ndarray:
    """Least-squares Fourier series of ``radii[use]`` over ``angles[use]`` with a smoothness penalty
    ``stiffness * n_used * sum_{h > 2} (h - 2)^4 (a_h^2 + b_h^2)``: it bridges gaps left by calcium or leaflets
    smoothly and damps wiggles that would lengthen the perimeter, while the mean radius and harmonics 1 and 2 (an
    ellipse, to first order, off centre or not) are free, so an elliptic ring is not made rounder. Returns the
    fitted radius at every angle."""
    basis = fourier_basis(angles, harmonics)
    h = np.arange(1, harmonics + 1, dtype=np.float64)
    w = np.maximum(h - 2.0, 0.0) ** 2  # harmonics 1 and 2 (an off-centre ellipse, to first order) go free
    penalty = np.sqrt(stiffness * use.sum()) * np.concatenate([[0.0], w, w])
    design = np.concatenate([basis[use], np.diag(penalty)[1:]], axis=0)
    target = np.concatenate([radii[use], np.zeros(2 * harmonics)])
    return basis @ np.linalg.lstsq(design, target, rcond=None)[0]


def fit_ellipse(points: ArrayLike) -> np.ndarray | None:
    """Direct least-squares ellipse fit (Fitzgibbon et al. 1999, in the stable form of Halir & Flusser 1998).

    Args:
        points: (M, 2) points, M >= 5.

    Returns:
        (6,) conic ``(A, B, C, D, E, F)`` of ``A x^2 + B x y + C y^2 + D x + E y + F = 0`` with ``4AC - B^2 > 0``
        (an ellipse), in the points' frame; None if the points fix no ellipse.
    """
    p = np.asarray(points, dtype=np.float64)
    centre, scale = p.mean(axis=0), float(np.std(p)) or 1.0
    x, y = ((p - centre) / scale).T  # centred and scaled: a well-conditioned scatter matrix
    d1 = np.stack([x * x, x * y, y * y], axis=1)
    d2 = np.stack([x, y, np.ones_like(x)], axis=1)
    s1, s2, s3 = d1.T @ d1, d1.T @ d2, d2.T @ d2
    try:
        t = -np.linalg.solve(s3, s2.T)
        m = s1 + s2 @ t
        m = np.stack([m[2] / 2, -m[1], m[0] / 2])  # C1^-1 M: the ellipse constraint 4AC - B^2 = 1
        _, vectors = np.linalg.eig(m)
    except np.linalg.LinAlgError:
        return None
    vectors = np.real(vectors)
    good = 4 * vectors[0] * vectors[2] - vectors[1] ** 2 > 0
    if not good.any():
        return None
    a1 = vectors[:, int(np.argmax(good))]
    a, b, c, d, e, f = np.concatenate([a1, t @ a1])
    # Back to the original frame: x' = (x - cx) / s.
    cx, cy = centre
    k = 1.0 / scale
    A, B, C = a * k * k, b * k * k, c * k * k
    D = -2 * A * cx - B * cy + d * k
    E = -2 * C * cy - B * cx + e * k
    F = A * cx * cx + B * cx * cy + C * cy * cy - d * k * cx - e * k * cy + f
    return np.array([A, B, C, D, E, F])


def ellipse_radius(conic: np.ndarray, origin: np.ndarray, angles: np.ndarray) -> np.ndarray | None:
    """Distance from ``origin`` (inside the ellipse) to the conic along each ray; None if a ray misses it."""
    A, B, C, D, E, F = conic
    c, s = np.cos(angles), np.sin(angles)
    ox, oy = origin
    qa = A * c * c + B * c * s + C * s * s
    qb = 2 * A * ox * c + B * (ox * s + oy * c) + 2 * C * oy * s + D * c + E * s
    qc = A * ox * ox + B * ox * oy + C * oy * oy + D * ox + E * oy + F
    disc = qb * qb - 4 * qa * qc
    if np.any(disc < 0) or np.any(np.abs(qa) < 1e-15):
        return None
    t = np.maximum((-qb + np.sqrt(disc)) / (2 * qa), (-qb - np.sqrt(disc)) / (2 * qa))
    return t if np.all(t > 0) and np.all(np.isfinite(t)) else None


def ring_fit(angles: np.ndarray, r: np.ndarray, use: np.ndarray, harmonics: int, stiffness: float) -> np.ndarray:
    """The contour radius over the angle: an ellipse fitted to the edges plus a smooth Fourier series of the edges'
    deviations from it (:func:`smooth_fit`), so the smoothness penalty never makes an elliptic ring rounder and a
    gap is bridged along the ellipse."""
    points = r[use, None] * np.stack([np.cos(angles[use]), np.sin(angles[use])], axis=1)
    conic = fit_ellipse(points) if use.sum() >= 10 and harmonics > 2 else None
    base = None if conic is None else ellipse_radius(conic, np.zeros(2), angles)
    if base is None:
        base = np.zeros_like(angles)
    return base + smooth_fit(angles, r - base, use, harmonics, stiffness)
