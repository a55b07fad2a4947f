"""Volume nodes <-> SimpleITK: exact geometry and voxels, LPS in the image, RAS in the scene."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import vtk
from slicer.util import arrayFromVTKMatrix

from AorticRootLandmarksLib import frames, mrml
from AorticRootLandmarksLib.errors import InputError

pytestmark = pytest.mark.slicer


def _assert_same_image(a: sitk.Image, b: sitk.Image) -> None:
    # Exact equality: the conversion only changes signs, so no tolerance is needed.
    assert a.GetSize() == b.GetSize()
    assert a.GetOrigin() == b.GetOrigin()
    assert a.GetSpacing() == b.GetSpacing()
    assert a.GetDirection() == b.GetDirection()
    assert a.GetPixelID() == b.GetPixelID()
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))


def _flipped(image: sitk.Image) -> sitk.Image:
    """Same physical volume stored with i and k reversed: direction columns 0 and 2 negated, origin at the far end."""
    array = sitk.GetArrayFromImage(image)[::-1, :, ::-1]
    out = sitk.GetImageFromArray(np.ascontiguousarray(array))
    out.SetSpacing(image.GetSpacing())
    size = np.array(image.GetSize()) - 1
    out.SetOrigin(image.TransformIndexToPhysicalPoint([int(size[0]), 0, int(size[2])]))
    direction = np.array(image.GetDirection()).reshape(3, 3) @ np.diag([-1.0, 1.0, -1.0])
    out.SetDirection(direction.ravel())
    return out


def _oblique(image: sitk.Image, degrees: float = 25.0) -> sitk.Image:
    """Same voxels with the axes rotated about z and then x (a tilted acquisition)."""
    a, b = np.radians(degrees), np.radians(degrees / 2)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    out = sitk.Image(image)
    out.SetDirection((rx @ rz).ravel())
    return out


@pytest.mark.parametrize("variant", ["as_generated", "flipped", "oblique"])
def test_volume_round_trip_is_exact(scene, phantom, variant):
    image = {"as_generated": lambda i: i, "flipped": _flipped, "oblique": _oblique}[variant](phantom.image)
    node = mrml.add_volume_from_sitk(scene, image, "CT")
    _assert_same_image(mrml.volume_node_to_sitk(node), image)


def test_flipped_copy_is_the_same_physical_volume(phantom):
    # Guards the helper above: the voxel at the true RCC must be the same in both storages.
    flipped = _flipped(phantom.image)
    point = [float(v) for v in phantom.landmarks_lps[0]]
    original = phantom.image[phantom.image.TransformPhysicalPointToIndex(point)]
    assert flipped[flipped.TransformPhysicalPointToIndex(point)] == original


def test_ijk_to_ras_matrix_is_lps_geometry_with_x_y_negated(scene):
    # Hand-made geometry: spacing (0.5, 0.6, 2), origin LPS (10, 20, 30), axes i -> -x (LPS), j -> +y, k -> +z.
    image = sitk.Image([4, 5, 6], sitk.sitkInt16)
    image.SetSpacing((0.5, 0.6, 2.0))
    image.SetOrigin((10.0, 20.0, 30.0))
    image.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, 1))
    node = mrml.add_volume_from_sitk(scene, image)
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    # RAS = diag(-1, -1, 1) LPS: column i = (+0.5, 0, 0), column j = (0, -0.6, 0), origin (-10, -20, 30).
    expected = np.array([[0.5, 0, 0, -10], [0, -0.6, 0, -20], [0, 0, 2, 30], [0, 0, 0, 1]])
    np.testing.assert_array_equal(arrayFromVTKMatrix(matrix), expected)


def test_voxel_value_at_a_world_point_agrees(scene, phantom):
    # The voxel that SimpleITK finds at an LPS point is the one MRML finds at the matching RAS point.
    node = mrml.add_volume_from_sitk(scene, _oblique(phantom.image), "CT")
    point_lps = phantom.landmarks_lps[1]
    ras_to_ijk = vtk.vtkMatrix4x4()
    node.GetRASToIJKMatrix(ras_to_ijk)
    ijk = (arrayFromVTKMatrix(ras_to_ijk) @ np.r_[frames.lps_to_ras(point_lps), 1.0])[:3]
    image = mrml.volume_node_to_sitk(node)
    expected = np.array(image.TransformPhysicalPointToContinuousIndex([float(v) for v in point_lps]))
    np.testing.assert_allclose(ijk, expected, atol=1e-9)


def test_lps_ras_conversion():
    # Hand-derived: RAS = (-x, -y, z) of LPS, and the conversion is its own inverse.
    np.testing.assert_array_equal(frames.lps_to_ras([[1.0, 2.0, 3.0]]), [[-1.0, -2.0, 3.0]])
    points = np.random.default_rng(0).normal(size=(5, 3))
    np.testing.assert_array_equal(frames.ras_to_lps(frames.lps_to_ras(points)), points)


def test_bad_volumes_raise_input_error(scene, phantom):
    with pytest.raises(InputError, match="select a scalar volume"):
        mrml.volume_node_to_sitk(None)
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(InputError, match="'empty': has no voxels"):
        mrml.volume_node_to_sitk(empty)
    flat = mrml.add_volume_from_sitk(scene, sitk.Image([8, 8, 1], sitk.sitkInt16), "flat")
    with pytest.raises(InputError, match="'flat': is 2D"):
        mrml.volume_node_to_sitk(flat)
    node = mrml.add_volume_from_sitk(scene, phantom.image, "moved")
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    node.SetAndObserveTransformNodeID(transform.GetID())
    with pytest.raises(InputError, match="harden"):
        mrml.volume_node_to_sitk(node)


def test_display_uses_the_given_window_level(scene, phantom):
    node = mrml.add_volume_from_sitk(scene, phantom.image, "CT", window_level=(700.0, 150.0))
    display = node.GetDisplayNode()
    assert isinstance(display, slicer.vtkMRMLScalarVolumeDisplayNode)
    assert (display.GetWindow(), display.GetLevel()) == (700.0, 150.0)
