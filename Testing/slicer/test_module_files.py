"""The Slicer module's files agree with each other: .ui widgets vs the Widget code, CMake lists vs the file system."""

from __future__ import annotations

import ast
import fnmatch
import re
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "AorticRootLandmarks"
MODULE_PY = MODULE / "AorticRootLandmarks.py"
UI_FILE = MODULE / "Resources" / "UI" / "AorticRootLandmarks.ui"


def _ui_widgets() -> dict[str, ET.Element]:
    return {w.get("name"): w for w in ET.parse(UI_FILE).getroot().iter("widget")}


def _parameter_names(widget: ET.Element) -> list[str]:
    return [p.findtext("string") for p in widget.findall("property") if p.get("name") == "SlicerParameterName"]


def test_ui_names_every_widget_the_widget_class_uses():
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE_PY.read_text(encoding="utf-8")))
    assert {"detectButton", "restoreButton", "progressBar", "statusLabel", "resultsTable"} <= used
    missing = used - set(_ui_widgets())
    assert not missing, f"used in AorticRootLandmarks.py but not in the .ui: {sorted(missing)}"


def test_ui_has_the_widgets_the_workflow_needs():
    widgets = _ui_widgets()
    expected = {
        "inputVolumeSelector": "qMRMLNodeComboBox",
        "modelPathLineEdit": "ctkPathLineEdit",
        "deviceComboBox": "QComboBox",
        "detectButton": "QPushButton",
        "progressBar": "QProgressBar",
        "statusLabel": "QLabel",
        "resultsTable": "QTableWidget",
        "measurementsTable": "QTableWidget",
        "restoreButton": "QPushButton",
        "outputFiducialSelector": "qMRMLNodeComboBox",
        "outputPlaneSelector": "qMRMLNodeComboBox",
    }
    assert {name: widgets[name].get("class") for name in expected if name in widgets} == expected
    headers = [c.findtext("property/string") for c in widgets["resultsTable"].findall("column")]
    assert headers == ["Landmark", "R", "A", "S", "Confidence"]
    devices = [i.findtext("property/string") for i in widgets["deviceComboBox"].findall("item")]
    assert devices == ["auto", "cpu", "cuda"]
    assert widgets["modelPathLineEdit"].find("property[@name='currentPath']/string").text == "bundled"


def test_parameter_names_in_ui_match_the_parameter_node():
    tree = ast.parse(MODULE_PY.read_text(encoding="utf-8"))
    node_class = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name.endswith("ParameterNode"))
    fields = {s.target.id for s in node_class.body if isinstance(s, ast.AnnAssign)}
    bound = {name for widget in _ui_widgets().values() for name in _parameter_names(widget)}
    assert bound and bound <= fields, f"SlicerParameterName without a parameter: {sorted(bound - fields)}"
    # Every MRML-scene selector is bound, so the choice is saved with the scene.
    for name, widget in _ui_widgets().items():
        if widget.get("class") == "qMRMLNodeComboBox":
            assert _parameter_names(widget), name
            assert any(c.findtext("receiver") == name for c in ET.parse(UI_FILE).getroot().iter("connection")), (
                f"{name}: not connected to mrmlSceneChanged")


def _cmake_list(text: str, variable: str, command: str = "set(") -> list[str]:
    """Items of ``set(VARIABLE ...)`` (or ``file(GLOB VARIABLE ...)``), one path or pattern each."""
    match = re.search(re.escape(command + variable) + r"\b(.*?)\)", text, re.S)
    assert match, f"{command}{variable} ...) not found"
    items = [line.split("#")[0].strip() for line in match.group(1).splitlines()]
    items = [i for i in " ".join(items).split() if i and i != "RELATIVE" and not i.startswith("${CMAKE")]
    return [i.replace("${MODULE_NAME}", "AorticRootLandmarks") for i in items]


def test_cmake_lists_every_python_file_and_resource():
    text = (MODULE / "CMakeLists.txt").read_text(encoding="utf-8")
    scripts = _cmake_list(text, "MODULE_PYTHON_SCRIPTS")
    on_disk = sorted(
        str(p.relative_to(MODULE))
        for p in [MODULE_PY, *(MODULE / "AorticRootLandmarksLib").rglob("*.py")]
        if "__pycache__" not in p.parts
    )
    assert sorted(scripts) == on_disk

    globs = _cmake_list(text, "MODULE_MODEL_FILES", command="file(GLOB ")
    resources = [r for r in _cmake_list(text, "MODULE_PYTHON_RESOURCES") if r != "${MODULE_MODEL_FILES}"]
    for resource in resources:
        assert (MODULE / resource).is_file(), resource
    installed = set(resources) | {
        str(p.relative_to(MODULE)) for p in (MODULE / "Resources").rglob("*")
        if p.is_file() and any(fnmatch.fnmatch(str(p.relative_to(MODULE)), g) for g in globs)
    }
    every_resource = {str(p.relative_to(MODULE)) for p in (MODULE / "Resources").rglob("*") if p.is_file()}
    assert every_resource <= installed, f"not installed by CMake: {sorted(every_resource - installed)}"
    assert "Resources/Models/phantom-glip/model.json" in globs
    assert "Resources/Models/phantom-glip/fold*.pt" in globs
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text


def test_extension_cmake_declares_the_extension():
    text = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    assert 'set(EXTENSION_CATEGORY "Cardiac")' in text
    assert 'set(EXTENSION_DEPENDS "PyTorch")' in text
    for variable in ("EXTENSION_HOMEPAGE", "EXTENSION_DESCRIPTION", "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        assert f"set({variable} " in text
    assert "add_subdirectory(AorticRootLandmarks)" in text
    for icon in (ROOT / "Resources/Icons/AorticRootLandmarks.png", MODULE / "Resources/Icons/AorticRootLandmarks.png"):
        assert icon.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = int.from_bytes(icon.read_bytes()[16:20], "big"), int.from_bytes(icon.read_bytes()[20:24], "big")
        assert (width, height) == (128, 128)
