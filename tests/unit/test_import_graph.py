"""The package's import graph: no cycle, and every path a YAML names imports.

Modules split along their seams keep the old import paths (re-exports)
for the YAMLs and the modules that name them; these tests catch a cycle
at module top or a path that stopped resolving.
"""

import ast
import importlib
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
LOBES = os.path.join(REPO, "lobes")
YAML_PATH = re.compile(r"!(?:new|name|apply):(lobes\.[A-Za-z0-9_.]+)")


def lobes_modules():
    """``{dotted name: file}`` of every module of ``lobes``."""
    modules = {}
    for folder, _, files in os.walk(LOBES):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            dotted = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
            modules[dotted.removesuffix(".__init__")] = path
    return modules


def top_level_imports(path, modules):
    """The ``lobes`` modules a file imports at its top level."""
    with open(path, encoding="utf-8") as fin:
        tree = ast.parse(fin.read())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module] + [
                f"{node.module}.{alias.name}" for alias in node.names
            ]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def find_cycle(graph):
    """One import cycle as a list of modules, or ``None``."""
    state, path = {}, []

    def visit(node):
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_lobes():
    modules = lobes_modules()
    graph = {
        name: top_level_imports(path, modules) - {name}
        for name, path in modules.items()
    }
    assert find_cycle(graph) is None


def yaml_paths():
    """Every ``lobes`` path a YAML of hparams/ or recipes/ names."""
    paths = set()
    for top in ("hparams", "recipes"):
        for folder, _, files in os.walk(os.path.join(REPO, top)):
            for name in files:
                if name.endswith(".yaml"):
                    with open(os.path.join(folder, name)) as fin:
                        paths.update(YAML_PATH.findall(fin.read()))
    return sorted(paths)


@pytest.mark.parametrize("dotted", yaml_paths())
def test_yaml_paths_import(dotted):
    module, _, attribute = dotted.rpartition(".")
    assert hasattr(importlib.import_module(module), attribute), dotted
