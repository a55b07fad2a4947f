"""Find the aortic root anywhere in a scan: a coarse first pass that says where to put the network grid.

The stage-1 grid (1.6 mm, 205 x 205 x 128 mm) covers only part of a whole-chest scan. A localizer model (an ordinary
exported ensemble with one landmark, ``ROOT`` = the centroid of the hinge points, trained by the same pipeline with
``--stage localizer``) looks at the whole image on a coarse grid (default 5.2 mm, 96^3 voxels = 499 mm a side,
centred on the image) and returns the root centre in world LPS mm. The detection then centres its grid there.

Frames: the coarse grid is LPS-aligned like every network grid (``grid.NetworkGrid``); positions are world LPS mm.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import SimpleITK as sitk

from .grid import GridSpec, image_center_lps, make_grid, resample_to_grid
from .inference import Ensemble, combine_folds, fold_spread, predict_maps
from .typing import PointsLPS

#: The landmark a localizer learns: the centroid of the hinge points (the annulus centre).
ROOT_NAME = "ROOT"
#: Grid of a localizer unless its training says otherwise: 5.2 mm voxels, 96^3 = 499 mm a side.
LOCALIZER_SPEC = GridSpec(spacing=5.2, size=(96, 96, 96), window=GridSpec.window)
#: Fold estimates of the root further apart than this (RMS, mm) mean the localizer is lost.
MAX_FOLD_SPREAD_MM = 15.0

#: How the stage-1 grid centre was chosen, as written in the detection JSON.
CENTRE_METHODS = ("seed point", "localizer", "image centre")


@dataclass(frozen=True)
class RootLocation:
    """Where the stage-1 grid goes.

    Attributes:
        center_lps: (3,) world LPS mm.
        method: one of :data:`CENTRE_METHODS`.
        found: False when a localizer ran and could not find the root (then ``center_lps`` is its best guess).
        spread_mm: RMS distance of the localizer's fold estimates from their mean (0 for one fold or no localizer).
        score: the localizer's map value at its peak (NaN without a localizer).
        reason: why the root was not found, else "".
    """

    center_lps: np.ndarray
    method: str
    found: bool = True
    spread_mm: float = 0.0
    score: float = float("nan")
    reason: str = ""

    def to_dict(self) -> dict:
        record = asdict(self)
        record["center_lps"] = [round(float(v), 3) for v in self.center_lps]
        record["score"] = None if not np.isfinite(self.score) else float(self.score)
        return record


def root_from_landmarks(names, points_lps: PointsLPS) -> np.ndarray:
    """(3,) world LPS mm: the localizer's training target, the centroid of the hinge points among `names`."""
    from .geometry import select_points

    return select_points(names, points_lps).mean(axis=0)


def locate_root(image: sitk.Image, localizer: Ensemble) -> RootLocation:
    """Run a localizer over the whole image and return the root centre.

    Args:
        image: 3D CT in HU with its LPS geometry.
        localizer: an ensemble with the single landmark :data:`ROOT_NAME`.

    Returns:
        The location; ``found`` is False when the peak lies outside the image or the folds disagree by more than
        :data:`MAX_FOLD_SPREAD_MM`.
    """
    spec = localizer.grid_spec
    grid = make_grid(image, spec, image_center_lps(image))
    maps = predict_maps(localizer, resample_to_grid(image, grid, spec.window))
    index, score, fold_peaks = combine_folds(maps, localizer.decoding, localizer.ensembling)
    center = grid.index_to_world(index[0])
    spread = float(fold_spread(index, fold_peaks)[0]) * spec.spacing  # the grid is isotropic: voxels -> mm
    reason = ""
    if not _inside(image, center):
        reason = "the localizer's peak lies outside the image"
    elif spread > MAX_FOLD_SPREAD_MM:
        reason = f"the localizer's folds disagree by {spread:.0f} mm"
    return RootLocation(center, "localizer", not reason, spread, float(score[0]), reason)


def _inside(image: sitk.Image, point_lps: np.ndarray) -> bool:
    index = np.asarray(image.TransformPhysicalPointToContinuousIndex([float(v) for v in point_lps]))
    return bool(np.all(index >= -0.5) and np.all(index <= np.asarray(image.GetSize()) - 0.5))
