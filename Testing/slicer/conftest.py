"""Fixtures for the MRML tests: a headless scene (slicer-core) set up like Slicer's, and a small phantom CT."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

slicer = pytest.importorskip("slicer", reason="needs slicer-core (pip install slicer-core)")

MODULE_DIR = Path(__file__).resolve().parents[2] / "AorticRootLandmarks"
for folder in (MODULE_DIR, Path(__file__).resolve().parent):  # the module file is not pip-installed
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import app_stubs  # noqa: E402

from AorticRootLandmarksLib import mrml_views  # noqa: E402

app_stubs.install()  # the Slicer application's modules that slicer-core lacks, before the module file is imported

#: Slice view size in pixels for the headless views (Slicer sets it from the widget).
VIEW_SIZE = (400, 400)


@pytest.fixture
def scene():
    """An empty scene with what Slicer's application adds at startup: colour tables and the three slice nodes."""
    scene = slicer.vtkMRMLScene()
    colors = slicer.vtkMRMLColorLogic()
    colors.SetMRMLScene(scene)  # adds vtkMRMLColorTableNodeGrey, which volume display nodes use
    scene.AddNode(slicer.vtkMRMLSelectionNode())  # markups look up length units through it; place mode uses it
    scene.AddNode(slicer.vtkMRMLInteractionNode())  # the mouse mode (place, view transform) of the views
    for node in mrml_views.get_slice_nodes(scene, create=True).values():
        node.SetDimensions(*VIEW_SIZE, 1)
    yield scene
    scene.Clear(1)


@pytest.fixture(scope="session")
def phantom():
    """Small synthetic contrast CT of the aortic root with its true hinge points (``case.landmarks_lps`` (3, 3))."""
    from AorticRootLandmarksLib.phantom import generate_case

    return generate_case(0, size="small")


@pytest.fixture
def logic(scene):
    """The module's Logic working in ``scene`` (no Qt needed)."""
    import AorticRootLandmarks

    logic = AorticRootLandmarks.AorticRootLandmarksLogic(scene)
    yield logic
    logic.stopLiveUpdate()
