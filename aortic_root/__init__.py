"""The ``aortic-root`` command: the application shell over the core library and the training pipeline.

Layers: ``aortic_root`` (apps) -> ``training`` -> ``AorticRootLandmarksLib`` (core); never the other way.
"""

from AorticRootLandmarksLib import __version__

__all__ = ["__version__"]
