"""The layers of the code base: apps (aortic_root) -> training -> core (AorticRootLandmarksLib), never back.

The core ships inside the Slicer extension, where neither ``training/`` nor the command-line app exists; an import of
either from the core would break the module there. Checked twice: statically on every import statement, and by
importing every core module in a fresh interpreter.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "AorticRootLandmarks" / "AorticRootLandmarksLib"
LAYERS = {  # package folder -> top-level packages it must never import
    CORE: {"training", "aortic_root", "AorticRootLandmarks"},
    ROOT / "training": {"aortic_root", "AorticRootLandmarks"},
}


def _imported_packages(path: Path) -> set[str]:
    """Top-level names of the absolute imports of a Python file (relative imports stay inside their package)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("folder", list(LAYERS), ids=lambda p: p.name)
def test_no_import_goes_up_a_layer(folder):
    files = sorted(folder.rglob("*.py"))
    assert files, f"no Python files under {folder}"
    offending = {
        str(path.relative_to(ROOT)): sorted(_imported_packages(path) & LAYERS[folder])
        for path in files
        if _imported_packages(path) & LAYERS[folder]
    }
    assert not offending, f"imports against the layering: {offending}"


def test_the_static_check_sees_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from training.train import train\n", encoding="utf-8")
    assert "training" in _imported_packages(bad)


def _import_in_fresh_interpreter(modules: list[str]) -> list[str]:
    """Import `modules` in a new Python; returns the top-level packages loaded (sorted)."""
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def _core_modules(leave_out: tuple[str, ...] = ()) -> list[str]:
    names = []
    for path in sorted(CORE.rglob("*.py")):
        parts = path.relative_to(CORE).with_suffix("").parts
        if path.stem.startswith(("mrml", "logic")) or path.stem in leave_out:  # they need slicer: Testing/slicer
            continue
        names.append(".".join(("AorticRootLandmarksLib", *parts)).removesuffix(".__init__"))
    return names


def test_importing_the_whole_core_loads_neither_training_nor_the_app():
    loaded = _import_in_fresh_interpreter(_core_modules())
    assert "AorticRootLandmarksLib" in loaded and "torch" in loaded  # network.py was really imported
    assert not {"training", "aortic_root"} & set(loaded)


def test_the_core_imports_torch_only_for_the_network():
    # Slicer installs torch on first use (PyTorch extension): everything else must import without it.
    loaded = _import_in_fresh_interpreter(_core_modules(leave_out=("network",)))
    assert "SimpleITK" in loaded and "torch" not in loaded
