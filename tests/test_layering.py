"""The package's imports point one way (DESIGN.md's layers): no module imports, even
inside a function, a module that imports it back, and the lower layers never reach up.

The graph is read from the sources with ``ast`` (every ``import digitcore.x`` and
``from digitcore[.x] import ...``, at any depth), so a lazy import that would hide a cycle
counts like a top-level one.
"""

import ast
from pathlib import Path

import digitcore

PACKAGE = Path(digitcore.__file__).parent

# module -> modules of the package it must never import (DESIGN.md: cli/serve -> trainer
# -> network -> ops -> C; modelio -> network)
FORBIDDEN = {
    "network": {"trainer", "estimator", "cli", "serve", "modelio", "checkpoint", "datasets"},
    "committee": {"trainer", "estimator", "cli", "serve", "modelio", "checkpoint", "datasets"},
    "ops": {"network", "trainer", "estimator", "cli", "serve", "modelio"},
    "ops_ref": {"ops", "network", "trainer", "estimator", "cli", "serve", "modelio"},
    "_modelfile": {"network", "modelio", "trainer"},
    "onnxio": {"network", "modelio", "trainer"},
    "trainer": {"cli", "serve", "estimator"},
    "optim": {"network", "trainer"},
    "pretrained": {"cli", "serve", "estimator"},
    # preprocess_image runs the shape check's forward pass itself (DESIGN: below network)
    "imaging": {"network", "committee", "modelio", "trainer", "estimator", "cli", "serve"},
    # the PNG decoder serve and imaging share: NumPy and zlib only
    "png": {"imaging", "network", "committee", "modelio", "trainer", "estimator", "cli",
            "serve", "ops"},
}


def import_graph():
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    graph = {}
    for path in PACKAGE.glob("*.py"):
        edges = graph.setdefault(path.stem, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                    node.module.split(".")[0] == "digitcore":
                parts = node.module.split(".")
                if len(parts) > 1:
                    edges.add(parts[1])
                else:  # from digitcore import ops
                    edges.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    parts = alias.name.split(".")
                    if parts[0] == "digitcore" and len(parts) > 1:
                        edges.add(parts[1])
        edges.discard(path.stem)
    return graph


def cycles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read():
    graph = import_graph()
    # a few edges that exist by design, so an empty graph cannot pass
    assert "network" in graph["modelio"]
    assert "_modelfile" in graph["network"]
    assert "optim" in graph["trainer"]


def test_cycles_are_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_lower_layers_do_not_import_higher_ones():
    graph = import_graph()
    bad = {m: sorted(graph.get(m, set()) & above) for m, above in FORBIDDEN.items()}
    assert {m: b for m, b in bad.items() if b} == {}


def private_imports(sources):
    """(module, imported) for every ``from digitcore.x import _name`` of a module `x` whose
    own name is public: a private name used across modules, which belongs in a private
    module (``_checks``, ``_atomic``, ...) or in its module's documented API."""
    found = []
    for module, text in sources.items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                    node.module.startswith("digitcore."):
                target = node.module.split(".")[1]
                if not target.startswith("_") and target != module:
                    found += [(module, f"{target}.{a.name}") for a in node.names
                              if a.name.startswith("_")]
    return found


def test_private_imports_are_found():
    assert private_imports({"plots": "def f():\n    from digitcore.metrics import _x, y\n",
                            "a": "from digitcore._checks import labels_in\n"
                                 "from digitcore.idx import read_idx\n"}) == \
        [("plots", "metrics._x")]


def test_no_module_imports_another_modules_private_names():
    sources = {p.stem: p.read_text(encoding="utf-8") for p in PACKAGE.rglob("*.py")}
    assert private_imports(sources) == []
