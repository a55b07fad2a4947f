"""Small synthetic data shared by the tests (imported as ``from helpers import ...``)."""

from __future__ import annotations

import SimpleITK as sitk


def make_image(size=(40, 36, 30), spacing=(1.0, 1.2, 1.5), origin=(10.0, -20.0, 30.0), direction=None, value=0):
    """A 3D int16 image with the given geometry (direction: 9 numbers, row-major, default identity)."""
    image = sitk.Image([int(s) for s in size], sitk.sitkInt16)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    if value:
        image += value
    return image
