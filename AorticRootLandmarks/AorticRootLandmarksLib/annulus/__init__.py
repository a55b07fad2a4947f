"""The annulus measured on the CT: oblique reconstruction on the hinge plane, lumen contour, perimeter and diameters.

The circumcircle of the three hinge points (:func:`geometry.annulus_measurements`) underestimates the annulus,
because the hinges are cusp nadirs, not points of a circle through the ring's widest parts. This module traces the
contrast-filled lumen on the plane of the hinge points instead, as TAVI planning tools do:

1. :func:`reconstruct_plane` resamples the original CT (linear, SimpleITK, world space, so any spacing and direction
   cosines) onto an oblique image of the plane (0.25 mm pixels), averaged over a 1 mm slab across it against noise.
2. :func:`trace_lumen` smooths it (Gaussian, 0.5 mm) and casts 360 rays from the plane centre, sampled every
   0.1 mm. The lumen HU (median inside the first contour) and the tissue HU (the lowest point of the median edge
   profile just outside it: the wall) give a global half maximum, as vessel lumen contouring does; then each ray's
   threshold is the half maximum of its 40 deg neighbourhood, so streaks, calcium glare or a partly enhanced outflow
   tract do not move the contour. On each ray the lumen ends at the threshold crossing after which the profile stays
   below it for 3 mm (a thin dark line inside the lumen, a leaflet, does not stop the ray), refined to the steepest
   fall within 0.5 mm (sub-sample, parabolic): the steepest point of a blurred step does not depend on the HU
   estimates. Rays whose edge lies at calcium (far brighter than the lumen, grown by 1.5 mm for its blur) are
   dropped; the contour is a robust, smooth Fourier fit of the edge radius over the angle (outliers dropped), which
   bridges calcium and leaflet gaps along the ring and keeps noise out of the perimeter. The ray origin is moved to
   the contour's centroid and the rays cast again, so the plane centre need not be the ring centre.
3. :func:`contour_measurements`: perimeter (closed polygon), area (shoelace formula), minimum and maximum diameter
   (calipers: the smallest width and the largest length, the minor and major axes of an ellipse), perimeter- and
   area-derived diameters, and eccentricity ``1 - min/max`` (the TAVI eccentricity index).

No lumen, no number: :func:`measure_annulus` returns ``ok=False`` with a reason when the plane centre is not
contrast-filled, the contrast is too low, the boundary is found on too little of the ring or scatters like noise;
and ``ok=True`` with ``warnings`` when a hinge point lies off the contour or much of the ring is interpolated.

Calcium is not lumen: it is bridged by the smooth ring, not added to the area (commercial tools measure the lumen).

Frames (see docs/ARCHITECTURE.md): **world LPS mm** for every 3D point; **plane (u, v) mm**, in-plane coordinates
from the plane image's centre along its unit axes ``u_lps`` and ``v_lps``; **pixel (col, row)**, continuous index
into :attr:`PlaneImage.pixels`, whose rows run along ``v`` and columns along ``u``.

The package: plane.py (step 1), trace.py (step 2, with the thresholds that refuse a lumen) and ring.py (its smooth
ring), contour.py (step 3), lumen.py (the measurement: steps 1-3 on a CT, and its warnings).
Numpy and SimpleITK only: it runs inside 3D Slicer's Python.
"""

from .contour import caliper_diameters, contour_measurements, polygon_area, polygon_centroid, polygon_perimeter
from .lumen import (
    WARN_GAP_DEG,
    WARN_HINGE_OFFSET_MM,
    WARN_INLIER_FRACTION,
    WARN_SCATTER_MM,
    LumenMeasurement,
    measure_annulus,
)
from .plane import PlaneImage, annulus_plane_image, reconstruct_plane, sample_bilinear
from .ring import fit_ellipse, ring_fit
from .trace import (
    MAX_GAP_DEG,
    MAX_SCATTER_MM,
    MIN_CONTRAST_HU,
    MIN_INLIER_FRACTION,
    MIN_LUMEN_HU,
    LumenNotFound,
    TraceOptions,
    trace_lumen,
)

__all__ = [
    "MAX_GAP_DEG", "MAX_SCATTER_MM", "MIN_CONTRAST_HU", "MIN_INLIER_FRACTION", "MIN_LUMEN_HU", "WARN_GAP_DEG",
    "WARN_HINGE_OFFSET_MM", "WARN_INLIER_FRACTION", "WARN_SCATTER_MM", "LumenMeasurement", "LumenNotFound",
    "PlaneImage", "TraceOptions", "annulus_plane_image", "caliper_diameters", "contour_measurements",
    "fit_ellipse", "measure_annulus", "polygon_area", "polygon_centroid", "polygon_perimeter", "reconstruct_plane",
    "ring_fit", "sample_bilinear", "trace_lumen",
]  # fmt: skip
