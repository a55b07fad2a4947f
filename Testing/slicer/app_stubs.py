"""Stand-ins for the parts of the 3D Slicer application that the ``slicer-core`` wheel lacks (Qt, the scripted-module
base classes, ``parameterNodeWrapper``, ``slicer.i18n``), so the module file imports headless and its Logic, parameter
node and self-test run here.

They live in the tests, not in the module: inside Slicer the real classes are used. Only what the module file
touches at import time and in its Logic/Test is stood in for; the Widget needs the real application. Where the
application stores something in the scene, the stand-in stores it the same way: the parameter node is the module's
singleton ``vtkMRMLScriptedModuleNode`` (``ScriptedLoadableModuleLogic.getParameterNode``), and the wrapper writes
its fields as Slicer's ``parameterNodeWrapper/serializers.py`` does (text parameters; MRML nodes as node references
next to an empty parameter of the same name), so that saving and loading a scene is tested on the real format.
"""

from __future__ import annotations

import sys
import types
import typing
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
        """The module's singleton parameter node in ``slicer.mrmlScene``, created when missing (as Slicer does)."""
        scene = slicer.mrmlScene
        node = scene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
        if node is None:
            node = slicer.vtkMRMLScriptedModuleNode()
            node.SetSingletonTag(self.moduleName)
            node.SetName(scene.GenerateUniqueName(self.moduleName))
            node.SetAttribute("ModuleName", self.moduleName)
            scene.AddNode(node)
        return node


class ScriptedLoadableModuleTest(unittest.TestCase):
    def delayDisplay(self, message, msec=None):
        print(message)


def _write(node, name: str, type_, value) -> None:
    if isinstance(type_, type) and issubclass(type_, slicer.vtkMRMLNode):
        node.SetParameter(name, "")
        node.SetNodeReferenceID(name, value.GetID() if value is not None else None)
    elif type_ is bool:
        node.SetParameter(name, "True" if value else "False")
    else:
        node.SetParameter(name, str(value))


def _read(node, name: str, type_):
    if isinstance(type_, type) and issubclass(type_, slicer.vtkMRMLNode):
        return node.GetNodeReference(name)
    if type_ is bool:
        return node.GetParameter(name) == "True"
    return type_(node.GetParameter(name))


def parameterNodeWrapper(cls):  # noqa: N802 (Slicer's name)
    """A class whose annotated fields read and write ``self.parameterNode`` in Slicer's storage format."""
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {name: typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
              for name, hint in hints.items()}
    defaults = {name: getattr(cls, name, None) for name in fields}

    def __init__(self, parameterNode):  # noqa: N807
        self.parameterNode = parameterNode
        for name, type_ in fields.items():
            if not parameterNode.HasParameter(name):  # a new node gets the defaults; a loaded one keeps its values
                _write(parameterNode, name, type_, defaults[name])

    def make_property(name, type_):
        return property(lambda self: _read(self.parameterNode, name, type_),
                        lambda self, value: _write(self.parameterNode, name, type_, value))

    attributes = {"__init__": __init__, "__doc__": cls.__doc__, "__module__": cls.__module__}
    attributes.update({name: make_property(name, type_) for name, type_ in fields.items()})
    return type(cls.__name__, (), attributes)


def Choice(choices):  # noqa: N802 (Slicer's name)
    return choices


class VTKObservationMixin:
    pass


def tr(text: str) -> str:
    """``slicer.i18n.tr``: the application translates; here the English text is kept."""
    return text


def translate(context: str, text: str) -> str:
    return text


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
        "slicer.i18n": {"tr": tr, "translate": translate},
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
