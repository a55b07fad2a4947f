"""Small synthetic data shared by the tests (imported as ``from helpers import ...``)."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

#: RCC anterior (-y), LCC left-posterior (+x, +y), NCC right-posterior (-x, +y): a circle of radius 10 at z = 0;
#: normal (LCC - RCC) x (NCC - RCC) = +z (superior: from the ventricle into the aorta).
ANATOMICAL = np.array([[0.0, -10.0, 0.0], [5 * np.sqrt(3.0), 5.0, 0.0], [-5 * np.sqrt(3.0), 5.0, 0.0]])


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


def rotation(axis, angle_deg):
    """Rodrigues rotation matrix about ``axis`` (right-handed)."""
    k = np.asarray(axis, float) / np.linalg.norm(axis)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    a = np.radians(angle_deg)
    return np.eye(3) + np.sin(a) * kx + (1 - np.cos(a)) * kx @ kx


def tilted_hinges():
    """(3, 3) hinge points, (3,) unit normal: ANATOMICAL with its normal turned to a realistic LV->aorta axis
    (superior, right, anterior) and the cusps turned 15 degrees in their plane, so nothing lines up with an axis."""
    target = np.array([-0.4, -0.3, 0.87])
    target /= np.linalg.norm(target)
    z = np.array([0.0, 0.0, 1.0])
    tilt = rotation(np.cross(z, target), np.degrees(np.arccos(z @ target)))
    points = ANATOMICAL @ (tilt @ rotation(z, 15.0)).T + np.array([12.0, -30.0, 140.0])
    return points, target


def tiny_cases(folder, n, step=50, qualities=None):
    """``n`` constant 24^3 CTs (1.5 mm, values 100, 100 + step, ...) written as ``folder/c<i>.nii.gz``, each with
    three landmarks 2 mm from its centre along x, y and z: the cases of the tiny training runs (io.Case list)."""
    from AorticRootLandmarksLib.io import Case, write_image

    cases = []
    for i in range(n):
        image = make_image(size=(24, 24, 24), spacing=(1.5, 1.5, 1.5), value=100 + step * i)
        write_image(image, folder / f"c{i}.nii.gz")
        centre = np.array(image.TransformContinuousIndexToPhysicalPoint((11.5, 11.5, 11.5)))
        quality = None if qualities is None else qualities[i]
        cases.append(Case(f"c{i}", folder / f"c{i}.nii.gz", centre + 2.0 * np.eye(3), quality))
    return cases
