"""Static check (issue 16): the core, the board glue and the MicroPython-run tests use nothing
that MicroPython 1.13 without weak links (QuecPython's firmware) lacks.

There only `utime`, `ujson`, `ubinascii`, `uos`... exist: a module imports a short name
(`time`, `json`...) only in a `try:` whose ImportError handler imports the `u` name
(ipa_core/compat.py does it once for all). Also refused: `bytes.hex()`, `bytes.fromhex()`
(1.13 has neither), `json.dumps(separators=...)` (1.17), str.startswith/endswith with a
tuple, and `.find` on a name the module binds to a bytearray (1.20). The version matrix,
tools/mp_versions.py, runs the code on the real builds; this is its cheap guard in
`make test`.
"""

import ast
import glob
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Modules MicroPython before 1.21 names u<name> (the short name is a weak link).
WEAK = {"array", "binascii", "collections", "errno", "hashlib", "heapq", "io", "json", "os",
        "random", "re", "select", "socket", "ssl", "struct", "time", "zlib", "asyncio"}
PORTABLE = ["ipa_core/*.py", "boards/common/*.py", "boards/*/*.py", "tests/core/*.py",
            "tests/boards/*.py"]
CPYTHON_ONLY = {"tests/boards/conftest.py", "tests/core/conftest.py"}


def _imported(node):
    if isinstance(node, ast.Import):
        return [a.name.split(".")[0] for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and not node.level:
        return [node.module.split(".")[0]]
    return []


def _handled(try_node, name):
    """A try whose ImportError (or bare) handler imports u<name>."""
    for h in try_node.handlers:
        t = h.type
        names = [] if t is None else [e.id for e in (t.elts if isinstance(t, ast.Tuple) else [t])
                                      if isinstance(e, ast.Name)]
        if t is not None and "ImportError" not in names:
            continue
        for n in ast.walk(ast.Module(body=h.body, type_ignores=[])):
            if "u" + name in _imported(n):
                return True
    return False


def _own(scope):
    """The nodes of a module or function, not those of the functions inside it."""
    todo = list(ast.iter_child_nodes(scope))
    while todo:
        node = todo.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.Lambda)):
            todo.extend(ast.iter_child_nodes(node))


def problems(source, path="<source>"):
    """['path:line: what'] for everything 1.13 without weak links lacks."""
    tree = ast.parse(source, path)
    out = []
    guarded = {}  # id(import node) -> the try it sits in
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            for stmt in node.body:
                for n in ast.walk(stmt):
                    guarded[id(n)] = node
    finds = set()  # .find calls on a name its function (or the module) binds to a bytearray
    for scope in ast.walk(tree):
        if not isinstance(scope, (ast.Module, ast.FunctionDef)):
            continue
        arrays = set()
        for node in _own(scope):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and \
                    isinstance(node.value.func, ast.Name) and node.value.func.id == "bytearray":
                arrays.update(ast.unparse(t) for t in node.targets)
        for node in _own(scope):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr == "find" and ast.unparse(node.func.value) in arrays:
                finds.add(id(node))
    for node in ast.walk(tree):
        for name in _imported(node):
            if name in WEAK and not (id(node) in guarded and _handled(guarded[id(node)], name)):
                out.append("%s:%d: import of %r, which MicroPython 1.13 without weak links "
                           "names u%s (use ipa_core.compat)" % (path, node.lineno, name, name))
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Attribute):
            if f.attr == "hex" and not node.args:
                out.append("%s:%d: bytes.hex() (not in 1.13: hexlify)" % (path, node.lineno))
            elif f.attr == "fromhex":
                out.append("%s:%d: bytes.fromhex() (not in 1.13: unhexlify)" % (path, node.lineno))
            elif f.attr in ("startswith", "endswith") and node.args and \
                    isinstance(node.args[0], ast.Tuple):
                out.append("%s:%d: %s with a tuple (not in 1.13)" % (path, node.lineno, f.attr))
            elif id(node) in finds:
                out.append("%s:%d: bytearray.find (needs 1.20: ipa_core.compat.find)"
                           % (path, node.lineno))
        if any(k.arg == "separators" for k in node.keywords):
            out.append("%s:%d: json.dumps(separators=...) (needs 1.17: ipa_core.compat.dumps)"
                       % (path, node.lineno))
    return out


def portable_files():
    files = sorted(set(p for pat in PORTABLE for p in glob.glob(os.path.join(ROOT, pat))))
    return [p for p in files if os.path.relpath(p, ROOT) not in CPYTHON_ONLY]


def test_core_glue_and_mp_tests_use_only_what_micropython_1_13_has():
    files = portable_files()
    assert len(files) > 60  # the globs found the tree
    found = []
    for p in files:
        with open(p, encoding="utf-8") as f:
            found += problems(f.read(), os.path.relpath(p, ROOT))
    assert not found, "\n".join(found)


def test_the_check_finds_each_kind_of_problem():
    src = ("import json\n"
           "from time import ticks_ms\n"
           "try:\n    import os\nexcept ImportError:\n    pass\n"
           "x = b'a'.hex()\n"
           "y = bytes.fromhex('00')\n"
           "z = json.dumps({}, separators=(',', ':'))\n"
           "ok = 'a'.startswith(('a', 'b'))\n"
           "buf = bytearray()\n"
           "i = buf.find(b'x')\n"
           "def f(s):\n    return s.find('x')\n")
    got = problems(src)
    assert [int(p.split(":")[1]) for p in got] == [1, 2, 4, 7, 8, 9, 10, 12], got
    assert "'json'" in got[0] and "ujson" in got[0]


def test_guarded_imports_pass():
    src = ("try:\n    import os\nexcept ImportError:\n    import uos as os\n"
           "try:\n    import socket\n    import ssl\n"
           "except ImportError:\n    import usocket as socket\n    import ussl as ssl\n"
           "from ipa_core.compat import json\n"
           "b = bytes(3)\ni = b.find(b'x')\n")
    assert problems(src) == []
