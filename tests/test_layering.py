"""Imports run one way (README "How the code is laid out"): no circle, and no layer imports one above it.

Every import counts, at module level or inside a function: a lazy import still makes
one module depend on the other.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import cnnkit

PACKAGE = Path(cnnkit.__file__).parent
BOTTOM = {"cnnkit.errors", "cnnkit.fileio", "cnnkit.safeload", "cnnkit.limits", "cnnkit.reporting", "cnnkit.sizes",
          "cnnkit.version"}
# A layer may import itself, what is below it, and the bottom modules.
BELOW = {
    "cnnkit.cli": ("cnnkit.engine", "cnnkit.models", "cnnkit.data", "cnnkit.hub", "cnnkit.viz"),
    "cnnkit.engine": ("cnnkit.models", "cnnkit.data", "cnnkit.hub", "cnnkit.viz"),
    "cnnkit.hub": ("cnnkit.models", "cnnkit.data"),
    "cnnkit.models": (),
    "cnnkit.data": (),
    "cnnkit.viz": ("cnnkit.data", "cnnkit.models"),  # figures of datasets and models
}


def module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("cnnkit", *path.relative_to(PACKAGE).with_suffix("").parts)
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                submodules = [f"{node.module}.{alias.name}" for alias in node.names]
                # `from cnnkit.cli import train_options` imports the submodule, not the package's code.
                targets = submodules if all(s in modules for s in submodules) else [node.module, *submodules]
            else:
                continue
            graph[name] |= {target for target in targets if target in modules and target != name}
    return graph


def layer(name: str) -> str | None:
    return next((top for top in (*BELOW, *BOTTOM) if name == top or name.startswith(top + ".")), None)


def test_there_is_no_import_circle():
    graph = import_graph()
    graph.pop("cnnkit")  # the package's public API imports lazily from every layer, by design
    graph = {name: deps - {"cnnkit"} for name, deps in graph.items()}
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the circle


def test_no_layer_imports_one_above_it():
    wrong = []
    for name, deps in import_graph().items():
        own = layer(name)
        if own is None:
            continue
        allowed = (own, *BOTTOM, *BELOW.get(own, ()))
        wrong += [f"{name} -> {dep}" for dep in deps if dep != "cnnkit" and layer(dep) not in allowed]
    assert wrong == []


def test_the_checks_see_a_planted_circle(tmp_path, monkeypatch):
    """The graph is read from real source: a circle written into two files is found."""
    root = tmp_path / "cnnkit"
    (root / "data").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "data" / "__init__.py").write_text("")
    (root / "data" / "a.py").write_text("from cnnkit.data.b import x\n")
    (root / "data" / "b.py").write_text("def f():\n    from cnnkit.data import a\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", root)
    graph = import_graph()
    assert graph["cnnkit.data.a"] == {"cnnkit.data.b"} and graph["cnnkit.data.b"] == {"cnnkit.data.a"}
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError:
        return
    raise AssertionError("the circle was not found")
