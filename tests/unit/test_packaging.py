"""The installed distribution is the product only.

The Docker lab (``lab/``) and the bench (``bench/``) are test tooling run from the checkout; the
product never imports them.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ROOT / "hakube"
TOOLING = {"lab", "bench"}


def _imported(tree: ast.AST) -> set[str]:
    """Top-level names of the absolute imports in a module (static and importlib/__import__ ones)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ast.unparse(node.func) in ("importlib.import_module", "import_module", "__import__")):
            names.add(node.args[0].value.split(".")[0])
    return names


def test_the_product_never_imports_the_lab_or_the_bench() -> None:
    modules = sorted(PRODUCT.rglob("*.py"))
    assert len(modules) > 5, modules
    offenders = {str(m.relative_to(ROOT)): sorted(_imported(ast.parse(m.read_text(), str(m))) & TOOLING)
                 for m in modules}
    assert not {m: names for m, names in offenders.items() if names}


def test_the_import_check_sees_every_kind_of_import() -> None:
    source = ("import lab\nimport bench.run as b\nfrom lab.harness import Run\nimport importlib\n"
              "importlib.import_module('bench')\nfrom . import render\nfrom .lab import x\n")
    assert _imported(ast.parse(source)) == {"lab", "bench", "importlib"}


def test_only_the_product_is_installed() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["packages"] == ["hakube"]
    assert not (PRODUCT / "lab").exists() and not (PRODUCT / "bench.py").exists()
