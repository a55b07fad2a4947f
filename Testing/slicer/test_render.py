"""Render the reoriented Red view headless and check it shows what an analyst expects: the contrast-filled annulus
cross-section with the three hinge points on its rim.

Set ``AORTIC_ROOT_DOCS_IMAGES=1`` to also write the README pictures: docs/images/annulus_view.png (the Red view on the
phantom's true hinge points) and docs/images/annulus_layout.png (the annulus review layout after a detection with the
bundled model).
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from slice_render import render_annulus_layout, render_slice_view

from AorticRootLandmarksLib import geometry, mrml, mrml_views

pytestmark = pytest.mark.slicer

DOCS_IMAGE = Path(__file__).resolve().parents[2] / "docs" / "images" / "annulus_view.png"
DOCS_LAYOUT = DOCS_IMAGE.with_name("annulus_layout.png")
#: Window/level used for display (HU): grey = 255 * (HU - (200 - 400)) / 800, so contrast blood at ~300-450 HU is
#: bright (>= 159) and myocardium/fat (< 100 HU) dark (< 96).
WINDOW_LEVEL = (800.0, 200.0)


def _grey(rgba: np.ndarray) -> np.ndarray:
    return rgba[..., :3].astype(float).mean(axis=-1)


def test_red_view_shows_the_annulus_with_its_hinge_points(scene, logic, phantom, tmp_path):
    volume = mrml.add_volume_from_sitk(scene, phantom.image, "Phantom CT", window_level=WINDOW_LEVEL)
    result = logic.showLandmarks(geometry.HINGE_NAMES, phantom.landmarks_lps, [0.93, 0.88, 0.41])
    red = mrml_views.get_slice_nodes(scene)["Red"]
    width, height, _ = red.GetDimensions()
    png = tmp_path / "annulus_view.png"
    diameter = result.measurements["circumcircle_diameter_mm"]
    title = f"Red: annulus plane  |  circumcircle {diameter:.1f} mm"
    render = render_slice_view(scene, "Red", volume, result.fiducialNode, png, title=title)
    if os.environ.get("AORTIC_ROOT_DOCS_IMAGES"):
        render_slice_view(scene, "Red", volume, result.fiducialNode, DOCS_IMAGE, title=title)

    assert png.stat().st_size > 10_000
    assert render.rgba.shape[:2] == (height, width)
    # The three hinge points are in the slice (0 mm off) and on a circle around the view centre.
    xy = render.points_xy
    np.testing.assert_allclose(xy[:, 2], 0.0, atol=1e-6)
    mm_per_pixel = red.GetFieldOfView()[0] / width
    radii = np.linalg.norm(xy[:, :2] - [width / 2, height / 2], axis=1) * mm_per_pixel
    assert np.all(radii > 0.25 * diameter) and np.all(radii < 0.75 * diameter)
    # RCC straight up; LCC (patient's left) on the screen's right, as in Slicer's axial view.
    assert abs(xy[0, 0] - width / 2) < 1 and xy[0, 1] > height / 2
    assert xy[1, 0] > width / 2 > xy[2, 0]

    # Bright contrast lumen at the centre (hinge centroid lies in the outflow tract), darker tissue further out.
    grey = _grey(render.rgba)
    cy, cx = height // 2, width // 2
    lumen = grey[cy - 8 : cy + 9, cx - 8 : cx + 9]
    assert np.median(lumen) > 150, np.median(lumen)
    ring = np.hypot(*np.meshgrid(np.arange(width) - cx, np.arange(height) - cy)) * mm_per_pixel
    outside = grey[(ring > diameter) & (ring < 1.6 * diameter)]
    assert np.median(outside) < np.median(lumen) - 40

    # Markers drawn in the display node's colour at the projected pixels.
    colour = np.array(result.fiducialNode.GetDisplayNode().GetSelectedColor()) * 255
    for x, y, _ in xy:
        assert np.abs(render.pixel(x, y)[:3] - colour).max() < 30, (x, y, render.pixel(x, y))


def test_long_axis_views_contain_the_root_axis(scene, logic, phantom, tmp_path):
    volume = mrml.add_volume_from_sitk(scene, phantom.image, "Phantom CT", window_level=WINDOW_LEVEL)
    result = logic.showLandmarks(geometry.HINGE_NAMES, phantom.landmarks_lps)
    for view in ("Yellow", "Green"):
        render = render_slice_view(scene, view, volume, result.fiducialNode, tmp_path / f"{view}.png")
        height, width = render.rgba.shape[:2]
        # The annulus plane is horizontal through the centre in these views: hinge points project on y = centre.
        np.testing.assert_allclose(render.points_xy[:, 1], height / 2, atol=0.5)
        # Above the annulus (aorta, along the root axis) the view is bright contrast.
        column = _grey(render.rgba)[: height // 2 - 10, width // 2 - 3 : width // 2 + 4]
        assert np.median(column[-40:]) > 150, view


def test_the_annulus_review_layout_renders(scene, logic, phantom, tmp_path):
    nodes = mrml_views.get_slice_nodes(scene)
    nodes["Red"].SetDimensions(640, 640, 1)  # Red large, the long-axis views beside it (as in the layout)
    for view in ("Yellow", "Green"):
        nodes[view].SetDimensions(320, 320, 1)
    volume = mrml.add_volume_from_sitk(scene, phantom.image, "Phantom CT", window_level=WINDOW_LEVEL)
    if os.environ.get("AORTIC_ROOT_DOCS_IMAGES"):  # the README picture shows a real detection
        pytest.importorskip("torch")
        result = logic.process(volume, device="cpu")
        title = ("Annulus review layout after detection with the bundled model on a synthetic phantom CT "
                 "(rendered headless from slicer-core; no 3D view)")
        path = DOCS_LAYOUT
    else:
        result = logic.showLandmarks(geometry.HINGE_NAMES, phantom.landmarks_lps, volumeNode=volume)
        title, path = "Annulus review layout (phantom truth)", tmp_path / "layout.png"
    assert result.lumen is not None and result.lumen.ok, result.lumen
    render_annulus_layout(scene, volume, result, path, title=title)
    image = plt.imread(str(path))
    assert image.shape[:2] == (1000, 1200) and path.stat().st_size > 100_000
