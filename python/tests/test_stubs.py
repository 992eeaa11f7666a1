"""The type stubs cover the module: every public name of kakunin._kakunin, and every public
member of each of its classes, is declared in _kakunin.pyi."""

import ast
import inspect
import pathlib

import kakunin._kakunin as module

STUB = pathlib.Path(__file__).resolve().parents[1] / "kakunin" / "_kakunin.pyi"


def declared():
    tree = ast.parse(STUB.read_text())
    names, members = set(), {}
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names.add(node.name)
        if isinstance(node, ast.AnnAssign):
            names.add(node.target.id)
        if isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets)
        if isinstance(node, ast.ClassDef):
            m = set()
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    m.add(item.name)
                elif isinstance(item, ast.AnnAssign):
                    m.add(item.target.id)
            members[node.name] = m
    return names, members


def test_every_public_name_and_member_is_in_the_stubs():
    names, members = declared()
    public = {n for n in dir(module) if not n.startswith("_")} | {"__version__"}
    assert public - names == set()
    for name in public:
        cls = getattr(module, name)
        if not inspect.isclass(cls) or issubclass(cls, BaseException):
            continue
        own = {m for m in vars(cls) if not m.startswith("_")}
        if hasattr(cls, "__members__"):  # enums: name and value come from enum.Enum
            own -= {"name", "value"}
        assert own - members[name] == set(), name
