"""AorticRootLandmarksLib: the numerical core shared by the Slicer module, the ``aortic-root`` command and training.

Pipeline: `read_image` -> `make_grid` / `resample_to_grid` -> `load_ensemble` / `detect` -> `annulus_plane` and
`annulus_measurements`. Importing this package does not import torch (Slicer installs it on first use).
"""

from .detection import Detection, detect
from .errors import InputError
from .geometry import Plane, annulus_measurements, annulus_plane, implant_views
from .grid import GridSpec, NetworkGrid, make_grid, resample_to_grid
from .inference import Ensemble, bundled_model_dir, decode_peaks, load_ensemble
from .io import Case, read_image, read_manifest, read_markups, write_manifest, write_markups

__version__ = "0.1.0"

__all__ = [
    "Case",
    "Detection",
    "Ensemble",
    "GridSpec",
    "InputError",
    "NetworkGrid",
    "Plane",
    "annulus_measurements",
    "annulus_plane",
    "bundled_model_dir",
    "decode_peaks",
    "detect",
    "implant_views",
    "load_ensemble",
    "make_grid",
    "read_image",
    "read_manifest",
    "read_markups",
    "resample_to_grid",
    "write_manifest",
    "write_markups",
]
