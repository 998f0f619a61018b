"""The stubs name what the native module has, and the package's public
names are all there and documented."""

import ast
import inspect
import pathlib

import rigwire
from rigwire import _rigwire

STUB = pathlib.Path(rigwire.__file__).with_name("_rigwire.pyi")


def public(names):
    return {n for n in names if not n.startswith("_")}


def test_the_native_stub_matches_the_module():
    tree = ast.parse(STUB.read_text())
    stubbed = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            stubbed[node.name] = {f.name for f in node.body if isinstance(f, ast.FunctionDef)}
        elif isinstance(node, ast.FunctionDef):
            stubbed[node.name] = None
    assert set(stubbed) == public(dir(_rigwire)) - {"rigwire"}
    for name, methods in stubbed.items():
        if methods is not None:
            assert methods == public(dir(getattr(_rigwire, name))), name


def test_every_public_name_is_exported_and_documented():
    for name in rigwire.__all__:
        obj = getattr(rigwire, name)
        assert inspect.getdoc(obj), f"{name} has no docstring"
    assert (pathlib.Path(rigwire.__file__).with_name("py.typed")).exists()
