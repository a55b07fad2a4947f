"""The Slicer module's files agree with each other and with what a Slicer extension needs: .ui widgets vs the Widget
code, translatable text, CMake lists vs the file system, the extension's metadata, licence and catalog entry."""

from __future__ import annotations

import ast
import fnmatch
import json
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
        "refineCheckBox": "QCheckBox",
        "modelWarningLabel": "QLabel",
        "detectButton": "QPushButton",
        "cancelButton": "QPushButton",
        "progressBar": "QProgressBar",
        "statusLabel": "QLabel",
        "resultsTable": "QTableWidget",
        "measurementsTableView": "qMRMLTableView",
        "jumpButton": "QPushButton",
        "placeButton": "QPushButton",
        "restorePointButton": "QPushButton",
        "undoButton": "QPushButton",
        "restoreButton": "QPushButton",
        "layoutButton": "QPushButton",
        "saveButton": "QPushButton",
        "savePlanButton": "QPushButton",
        "exportButton": "QPushButton",
        "outputFiducialSelector": "qMRMLNodeComboBox",
        "outputPlaneSelector": "qMRMLNodeComboBox",
    }
    assert {name: widgets[name].get("class") for name in expected if name in widgets} == expected
    headers = [c.findtext("property/string") for c in widgets["resultsTable"].findall("column")]
    assert headers == ["Landmark", "R", "A", "S", "Confidence", "Verdict"]
    devices = [i.findtext("property/string") for i in widgets["deviceComboBox"].findall("item")]
    assert devices == ["auto", "cpu", "cuda"]
    assert widgets["modelPathLineEdit"].find("property[@name='currentPath']/string").text == "bundled"


def test_values_the_code_reads_are_not_translated():
    # Slicer's translation guide: node types and values bound to the parameter node must not be translated, or a
    # translated Slicer would store "automatique" instead of "auto".
    root = ET.parse(UI_FILE).getroot()
    for widget in root.iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") in ("SlicerParameterName", "nodeTypes", "currentPath"):
                assert (prop.find("string") if prop.find("string") is not None else prop.find("stringlist")).get(
                    "notr") == "true", (widget.get("name"), prop.get("name"))
    for item in root.find(".//widget[@name='deviceComboBox']").findall("item"):
        assert item.find("property/string").get("notr") == "true"


def _module_calls(tree: ast.AST, names: set[str]) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", getattr(n.func, "id", ""))
            in names]


def _is_text(node: ast.AST) -> bool:
    """A literal or f-string a user would read (not passed through the translation function)."""
    return (isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.strip() != ""
            ) or isinstance(node, ast.JoinedStr)


def test_user_visible_text_goes_through_the_translation_function():
    # As the current extension template: _() (slicer.i18n.tr) around titles, help, messages and status text.
    tree = ast.parse(MODULE_PY.read_text(encoding="utf-8"))
    message_argument = {"tryWithErrorDisplay": 0, "errorDisplay": 0, "warningDisplay": 0, "getExistingDirectory": 1,
                        "getSaveFileName": 1}  # which argument the user reads (not a default file name)
    messages = _module_calls(tree, set(message_argument))
    assert len(messages) >= 8
    for call in messages:
        name = getattr(call.func, "attr", getattr(call.func, "id", ""))
        assert not _is_text(call.args[message_argument[name]]), ast.unparse(call)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "attr", "") in ("text", "toolTip", "title", "helpText")
                                                for t in node.targets):
            assert not _is_text(node.value), ast.unparse(node)
    text = MODULE_PY.read_text(encoding="utf-8")
    assert "from slicer.i18n import tr as _" in text
    assert 'self.parent.title = _("Aortic Root Landmarks")' in text
    assert 'translate("qSlicerAbstractCoreModule", "Cardiac")' in text


def test_help_links_the_documentation():
    import AorticRootLandmarks

    # In a source checkout (here) the link is the README next to the module; installed, the extension's homepage.
    assert AorticRootLandmarks.documentationUrl() == (ROOT / "README.md").as_uri()
    assert f'href="{(ROOT / "README.md").as_uri()}"' in AorticRootLandmarks.documentationLink()


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
    assert 'set(EXTENSION_CONTRIBUTORS "AorticRootLandmarks developers")' in text
    for variable in ("EXTENSION_HOMEPAGE", "EXTENSION_DESCRIPTION", "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        assert f"set({variable} " in text
    assert "OWNER" not in text and "example.com" not in text  # no placeholder organisation
    assert "add_subdirectory(AorticRootLandmarks)" in text
    # the screenshot it points to exists in the repository
    screenshot = re.search(r"\$\{_raw\}/(docs/images/[\w.]+)", text).group(1)
    assert (ROOT / screenshot).is_file()
    for icon in (ROOT / "Resources/Icons/AorticRootLandmarks.png", MODULE / "Resources/Icons/AorticRootLandmarks.png"):
        assert icon.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = int.from_bytes(icon.read_bytes()[16:20], "big"), int.from_bytes(icon.read_bytes()[20:24], "big")
        assert (width, height) == (128, 128)


def test_the_licence_is_apache_2():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


#: The Extensions Index's catalog entry schema (Slicer/Slicer:
#: Schemas/slicer-extension-catalog-entry-schema-v1.0.1.json): required keys, the type of each allowed key (no
#: others), and the allowed values of the enumerations.
CATALOG_SCHEMA = "https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/slicer-extension-catalog-entry-schema-v1.0.1.json#"
CATALOG_REQUIRED = {"$schema", "category", "scm_url"}
CATALOG_TYPES = {"$schema": str, "category": str, "scm_url": str, "scm_revision": str, "scm_type": str,
                 "build_dependencies": list, "build_subdirectory": str, "enabled": bool, "tier": int}
CATALOG_ENUMS = {"scm_type": {"git", "local"}, "tier": {1, 3, 5}}


def test_the_extensions_index_catalog_entry_is_valid():
    # CMake writes it with the repository's URL (configure_file, @VARIABLE@); here with a stand-in URL.
    template = (ROOT / "Resources/ExtensionsIndex/AorticRootLandmarks.json.in").read_text(encoding="utf-8")
    assert set(re.findall(r"@(\w+)@", template)) == {"AorticRootLandmarks_REPOSITORY_URL"}
    cmake = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "configure_file(Resources/ExtensionsIndex/AorticRootLandmarks.json.in" in cmake
    entry = json.loads(template.replace("@AorticRootLandmarks_REPOSITORY_URL@", "https://github.com/someone/repo"))
    assert entry["$schema"] == CATALOG_SCHEMA
    assert CATALOG_REQUIRED <= set(entry) <= set(CATALOG_TYPES)
    for key, value in entry.items():
        assert isinstance(value, CATALOG_TYPES[key]), key
        assert key not in CATALOG_ENUMS or value in CATALOG_ENUMS[key], key
    assert all(isinstance(d, str) for d in entry["build_dependencies"])
    # it agrees with the extension's CMake
    assert entry["category"] == "Cardiac" and entry["build_dependencies"] == ["PyTorch"]
    assert entry["scm_url"] == "https://github.com/someone/repo"
