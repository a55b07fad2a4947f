"""Stand-ins for the parts of the 3D Slicer application that the ``slicer-core`` wheel lacks (Qt, the scripted-module
base classes, ``parameterNodeWrapper``), so the module file imports headless and its Logic and self-test run here.

They live in the tests, not in the module: inside Slicer the real classes are used. Only what the module file
touches at import time and in its Logic/Test is stood in for; the Widget needs the real application.
"""

from __future__ import annotations

import sys
import types
import unittest

import slicer


class ScriptedLoadableModule:
    def __init__(self, parent):
        self.parent = parent


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None):
        self.parent = parent


class ScriptedLoadableModuleLogic:
    def __init__(self, parent=None):
        self.moduleName = type(self).__name__.removesuffix("Logic")

    def getParameterNode(self):
        raise NotImplementedError("parameter nodes need the Slicer application")


class ScriptedLoadableModuleTest(unittest.TestCase):
    def delayDisplay(self, message, msec=None):
        print(message)


def parameterNodeWrapper(cls):
    return cls


def Choice(choices):  # noqa: N802 (Slicer's name)
    return choices


class VTKObservationMixin:
    pass


def install() -> None:
    """Register the stand-ins in ``sys.modules`` where the application's modules are missing."""
    if "qt" not in sys.modules:
        sys.modules["qt"] = types.ModuleType("qt")
    modules = {
        "slicer.ScriptedLoadableModule": {
            "ScriptedLoadableModule": ScriptedLoadableModule,
            "ScriptedLoadableModuleWidget": ScriptedLoadableModuleWidget,
            "ScriptedLoadableModuleLogic": ScriptedLoadableModuleLogic,
            "ScriptedLoadableModuleTest": ScriptedLoadableModuleTest,
        },
        "slicer.parameterNodeWrapper": {"parameterNodeWrapper": parameterNodeWrapper, "Choice": Choice},
    }
    for name, attributes in modules.items():
        if name in sys.modules:
            continue
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        sys.modules[name] = module
        setattr(slicer, name.rsplit(".", 1)[1], module)
    if not hasattr(slicer.util, "VTKObservationMixin"):
        slicer.util.VTKObservationMixin = VTKObservationMixin
