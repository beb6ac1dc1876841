"""The code's shape, as docs/DEVELOPING.md states it, checked on every change: each module says what
it owns, no import cycles (module-level or inside functions), ctypes and ioctl only in syscalls.py,
processes started only by process.py, and no module or function grown past what one person reads.
"""

import ast
import os
import re

import pytest

pytestmark = pytest.mark.root  # a static check: the short root pass
ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "rootless")
MAX_FILE_LINES = 560  # "no file over ~500 lines"
MAX_FUNCTION_LINES = 90  # "no function over ~80"
# known exceptions, each with its reason; the list only shrinks
BIG_FILES: dict[str, str] = {}
# known import cycles, each with its reason; the list only shrinks
KNOWN_CYCLES: dict[frozenset, str] = {}


def _modules() -> dict[str, tuple[str, ast.Module]]:
    mods = {}
    for dirpath, _, files in os.walk(ROOT):
        for f in sorted(files):
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                name = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace("/", ".")
                name = name.removesuffix(".__init__")
                with open(path) as fh:
                    mods[name] = (path, ast.parse(fh.read(), path))
    return mods


MODULES = _modules()


def _rel(path: str) -> str:
    return os.path.relpath(path, ROOT)


def _imported(tree: ast.Module):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rootless"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                yield full if full in MODULES else node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("rootless"))


def _graph() -> dict[str, set[str]]:
    graph = {}
    for name, (_, tree) in MODULES.items():
        deps = set()
        for target in _imported(tree):
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                deps.add(target)
        graph[name] = deps
    return graph


def test_no_import_cycles():
    graph = _graph()
    cycles, seen = [], set()
    for start in graph:  # a depth-first search from each module for a path back to it
        stack = [(start, [start])]
        visited = set()
        while stack:
            node, path = stack.pop()
            for dep in graph[node]:
                if dep == start:
                    cycle = frozenset(path)
                    if cycle not in seen and cycle not in KNOWN_CYCLES:
                        seen.add(cycle)
                        cycles.append(" -> ".join([*path, start]))
                elif dep not in visited:
                    visited.add(dep)
                    stack.append((dep, [*path, dep]))
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_every_module_says_what_it_owns():
    missing = [_rel(p) for p, tree in MODULES.values() if not ast.get_docstring(tree)]
    missing = [m for m in missing if not m.endswith("__init__.py")]
    assert not missing, f"modules without a docstring: {missing}"


def _calls(tree: ast.Module):
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            yield node.lineno, f"{node.value.id}.{node.attr}"
        elif isinstance(node, ast.Import):
            yield from ((node.lineno, f"import {a.name}") for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield node.lineno, f"from {node.module} import"


UNSAFE = re.compile(r"^(import ctypes|from ctypes import|fcntl\.ioctl|ctypes\.)")
SPAWN = re.compile(
    r"^(import subprocess$|from subprocess import|subprocess\.|import multiprocessing$|pty\.fork$"
    r"|os\.(fork|forkpty|posix_spawnp?|system|popen|spawn\w*)$)"
)


@pytest.mark.parametrize(
    "pattern,home", [(UNSAFE, "syscalls.py"), (SPAWN, "process.py")], ids=["unsafe", "spawn"]
)
def test_one_home(pattern, home):
    found = [
        f"{_rel(path)}:{line}: {what}"
        for path, tree in MODULES.values()
        if _rel(path) != home
        for line, what in _calls(tree)
        if pattern.match(what)
    ]
    assert not found, f"only {home} may do this:\n" + "\n".join(found)


def test_sizes():
    too_big = []
    for path, tree in MODULES.values():
        rel = _rel(path)
        with open(path) as fh:
            lines = sum(1 for _ in fh)
        if lines > MAX_FILE_LINES and rel not in BIG_FILES:
            too_big.append(f"{rel}: {lines} lines")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    too_big.append(f"{rel}:{node.lineno}: {node.name}() is {n} lines")
    assert not too_big, "split these:\n" + "\n".join(too_big)
