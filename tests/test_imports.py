"""Every `from rootless.X import Y` in the product names something X has, including the imports
inside functions (which only fail when that code path runs, e.g. after a rename in a merge)."""

import ast
import importlib
import os

import pytest

pytestmark = pytest.mark.root  # a static check: it needs no user namespace, so the short root pass
ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "rootless")


def _imports():
    for dirpath, _, files in os.walk(ROOT):
        for f in sorted(files):
            if not f.endswith(".py"):
                continue
            path = os.path.join(dirpath, f)
            with open(path) as fh:
                tree = ast.parse(fh.read(), path)
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rootless"):
                    for alias in node.names:
                        yield os.path.relpath(path, ROOT), node.lineno, node.module, alias.name


@pytest.mark.parametrize("where,line,module,name", list(_imports()), ids=lambda v: str(v))
def test_imported_name_exists(where, line, module, name):
    mod = importlib.import_module(module)
    if hasattr(mod, name):
        return
    importlib.import_module(f"{module}.{name}")  # a submodule of a package
