"""ipa_core's import graph has no cycles (issue 12): the core's layers go one way.

Engines and codecs sit below messages, messages below procedures, and a module split
off for size (es10_admin from es10, esipa_push and esipa_compact from esipa) sits below
the module it was split from: that module may import it (on first use, so a board never
loads it), it never imports that module back. Shared helpers go down into the lowest
module that needs them.

Every import counts, at module level or inside a function (a lazy import is still an
edge: on MicroPython and CPython alike it runs the other module's top level), and so
does an import by name (`__import__` of a "ipa_core.<module>..." string the module
holds). The source is read with `ast`, nothing is imported.
"""

import ast
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORE = os.path.join(ROOT, "ipa_core")

# Imports by name left on purpose, each with the reason; never a plain import statement.
# at_http picks a modem's HTTP stack by name (STACKS: open_network imports only the stack
# asked for, so a board freezes one) and each stack module subclasses at_http.AtHttp: a
# plugin table, not a module split for size. Undoing it means moving the factory
# (open_network, pick, STACKS) or the base class out of at_http, whose names board code
# (boards/common/at_modem.py) imports.
BY_NAME_LEFT = {
    "at_http": {"at_http_quectel", "at_http_sim7080", "at_http_simcom"},
}

_BY_NAME = re.compile(r"ipa_core\.(\w+)(\.\w+)*$")


def core_modules():
    return sorted(f[:-3] for f in os.listdir(CORE) if f.endswith(".py"))


def _source(name):
    with open(os.path.join(CORE, name + ".py")) as f:
        return f.read()


def _imports_by_name(tree):
    """True when the module imports something by a computed name."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id == "__import__":
                return True
            if isinstance(f, ast.Attribute) and f.attr == "import_module":
                return True
    return False


def imports(name, modules):
    """{module: (line, how)} of the ipa_core modules `name` imports, anywhere in its source.

    how is "import" for an import statement, "by name" for a string an __import__ takes.
    """
    tree = ast.parse(_source(name), name + ".py")
    out = {}

    def add(target, line, how="import"):
        if target != name and target not in out:
            out[target] = (line, how)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "ipa_core":
                    add(parts[1] if len(parts) > 1 else "__init__", node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: ipa_core is a flat package
                base = "ipa_core" + ("." + base if base else "")
            parts = base.split(".")
            if parts[0] != "ipa_core":
                continue
            if len(parts) > 1:
                add(parts[1], node.lineno)
            else:  # from ipa_core import tlv, es10
                for a in node.names:
                    add(a.name if a.name in modules else "__init__", node.lineno)
    if _imports_by_name(tree):
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                m = _BY_NAME.match(node.value)
                if m and m.group(1) in modules:
                    add(m.group(1), node.lineno, "by name")
    if out and name != "__init__":
        # Importing any ipa_core module runs the package's __init__ first.
        out.setdefault("__init__", (0, "package"))
    return out


def import_graph():
    """{module: {imported module: (line, how)}} over ipa_core, by-name edges of
    BY_NAME_LEFT taken out."""
    modules = core_modules()
    g = {}
    for m in modules:
        edges = imports(m, modules)
        for t in BY_NAME_LEFT.get(m, ()):
            if edges.get(t, (0, ""))[1] == "by name":
                del edges[t]
        g[m] = edges
    return g


def cycles(g):
    """One cycle (a list of modules, first == last) per strongly connected component."""
    index, low, stack, on, comps = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(comp)

    for v in sorted(g):
        if v not in index:
            visit(v)
    out = []
    for comp in comps:
        start = min(comp)
        # Shortest way back to start inside the component (breadth first).
        prev, todo = {start: None}, [start]
        path = None
        while todo and path is None:
            v = todo.pop(0)
            for w in sorted(g[v]):
                if w not in comp:
                    continue
                if w == start:
                    path = [start]
                    while v is not None:  # v, its predecessor, ..., start
                        path.insert(0, v)
                        v = prev[v]
                    break
                if w not in prev:
                    prev[w] = v
                    todo.append(w)
        out.append((path, sorted(comp)))
    return out


def describe(g, path):
    """es10 -> es10_admin -> es10 (es10.py:266 imports es10_admin, es10_admin.py:13 ...)."""
    steps = []
    for a, b in zip(path, path[1:]):
        line, how = g[a][b]
        steps.append("%s.py:%d %s %s" % (a, line, "imports" if how == "import" else
                                         "imports (%s)" % how, b))
    return "%s (%s)" % (" -> ".join(path), "; ".join(steps))


def test_ipa_core_imports_go_one_way():
    g = import_graph()
    found = cycles(g)
    assert not found, (
        "import cycles in ipa_core (a module imports one that imports it back):\n"
        + "\n".join("  %s; the modules caught up in it: %s" % (describe(g, p), ", ".join(c))
                     for p, c in found))


def test_the_scan_sees_every_kind_of_import():
    # The graph is only worth something if the scan sees lazy and by-name imports.
    modules = core_modules()
    es10 = imports("es10", modules)
    assert es10["es10_admin"][1] == "import"  # inside __getattr__: on first use
    assert es10["tlv"][1] == "import" and es10["es10_decode"][1] == "import"
    assert imports("errors", modules) == {}  # the bottom: everything may import it
    at_http = imports("at_http", modules)
    for stack, how in ((s, at_http[s][1]) for s in BY_NAME_LEFT["at_http"]):
        assert how == "by name", (stack, how)  # the exception is still needed, as written


def test_cycles_are_named():
    g = {"a": {"b": (3, "import")}, "b": {"c": (7, "import")}, "c": {"a": (9, "by name")},
         "d": {"a": (1, "import")}}
    (path, comp), = cycles(g)
    assert path == ["a", "b", "c", "a"] and comp == ["a", "b", "c"]
    assert describe(g, path) == ("a -> b -> c -> a (a.py:3 imports b; b.py:7 imports c; "
                                 "c.py:9 imports (by name) a)")
    assert cycles({"a": {"b": (1, "import")}, "b": {}}) == []
