"""The installed distribution is the product only: hakube with its templates and files as package data.

The Docker lab (``lab/``) and the bench (``bench/``) are test tooling run from the checkout; the
product never imports them.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from hakube import render

from .conftest import ENV, make_inventory, needed

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
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = project["tool"]["setuptools"]
    assert setuptools["packages"] == ["hakube", "hakube.tasks", "hakube.templates", "hakube.files"]
    assert setuptools["package-dir"] == {"hakube": "hakube", "hakube.tasks": "tasks", "hakube.templates": "templates",
                                         "hakube.files": "files"}
    assert project["project"]["scripts"] == {"hakube": "hakube.cli:main"}
    assert not (PRODUCT / "lab").exists() and not (PRODUCT / "bench.py").exists()
    assert not (PRODUCT / "tasks").exists()  # tasks/ stays at the top; the mapping installs it



def test_make_check_the_hakube_command_and_python_m_run_the_same_code(monkeypatch) -> None:
    from hakube import check, cli

    recipe = re.search(r"^check:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert recipe.strip() == "@.venv/bin/hakube check $(ARGS) $(INVENTORY)"
    seen = []
    monkeypatch.setattr(check, "run", lambda args: seen.append(vars(args)) or 0)
    assert cli.main(["check", "--json", "site.py"]) == 0 and check.main(["--json", "site.py"]) == 0
    assert cli.main(["check"]) == 0 and check.main([]) == 0
    assert seen == [{"command": "check", "json": True, "inventory": "site.py"}, {"json": True, "inventory": "site.py"},
                    {"command": "check", "json": False, "inventory": "inventory.py"},
                    {"json": False, "inventory": "inventory.py"}]

def _python_sources() -> list[Path]:
    """Every Python file of the repository: the product, the steps, the lab, the bench, the tests."""
    skip = {".venv", ".git", "build", "dist", "pki", "artifacts", ".lab"}
    return sorted(p for p in ROOT.rglob("*.py") if not skip & set(p.relative_to(ROOT).parts))


def test_nothing_imports_the_top_level_tasks_package() -> None:
    """The steps are ``hakube.tasks``, installed or not; importing them as ``tasks`` too would make
    a second copy of every step module (its own module state) from the checkout."""
    sources = _python_sources()
    assert ROOT / "deploy.py" in sources and ROOT / "tasks" / "certs.py" in sources
    offenders = [str(p.relative_to(ROOT)) for p in sources if "tasks" in _imported(ast.parse(p.read_text(), str(p)))]
    assert not offenders


def _import_path_changes(tree: ast.AST) -> set[str]:
    """What a module does to where imports come from: sys.path, sys.meta_path, sys.path_hooks, a
    package's __path__, site.addsitedir."""
    found = set()
    for node in ast.walk(tree):
        text = ast.unparse(node) if isinstance(node, (ast.Attribute, ast.Name)) else ""
        if text in ("sys.path", "sys.meta_path", "sys.path_hooks", "__path__", "site.addsitedir", "addsitedir"):
            found.add(text)
    return found


def test_the_product_changes_no_import_path() -> None:
    assert _import_path_changes(ast.parse("import sys\nsys.path.append('.')\n__path__ = []\n")) == \
        {"sys.path", "__path__"}
    for path in [*PRODUCT.rglob("*.py"), *(ROOT / "tasks").rglob("*.py"), ROOT / "deploy.py"]:
        assert not _import_path_changes(ast.parse(path.read_text(), str(path))), str(path.relative_to(ROOT))


def test_render_finds_every_template_and_file_it_names() -> None:
    source = "".join(p.read_text() for p in [*PRODUCT.glob("*.py"), *(ROOT / "tasks").glob("*.py")])
    templates = set(re.findall(r'"([\w.@-]+\.j2)"', source))
    files = set(re.findall(r'static\("([^"]+)"\)', source))
    assert templates and files
    for name in sorted(templates):
        assert render._env().get_template(name), name
    for name in sorted(files):
        assert (render.FILES / name).is_file(), name
    # what the package data holds (pyproject.toml) is what render asks for
    assert {p.name for p in render.TEMPLATES.glob("*.j2")} == templates
    assert {p.name for p in render.FILES.iterdir() if p.is_file() and p.suffix != ".py"} == files


def test_a_checkout_uses_its_own_templates_and_files() -> None:
    # From a checkout (plain or editable) the top-level directories are used; never another
    # checkout's, which an editable install of that checkout would map hakube.templates onto.
    assert (render.TEMPLATES, render.FILES) == (ROOT / "templates", ROOT / "files")


RENDER_INSTALLED = """
import json, sys
from pathlib import Path
import hakube
from hakube import render
from hakube.settings import load_inventory
from hakube.tasks import desired_state
from hakube.tasks.certs import ensure_pki

hosts, env = json.loads(sys.argv[1])
settings = load_inventory([(name, data, groups) for name, data, groups in hosts], env)
want = desired_state(settings["m1"], ensure_pki(settings["m1"]))
print(json.dumps({"hakube": hakube.__file__, "templates": str(render.TEMPLATES), "files": str(render.FILES),
                  "paths": [f.path for step in want.values() for f in step.values()], "sys_path": sys.path}))
"""


def test_an_installed_hakube_finds_its_templates_as_package_data(tmp_path: Path) -> None:
    """What a wheel holds (setuptools' build_py output, offline), imported from outside the checkout."""
    needed(importlib.util.find_spec("setuptools"), "setuptools is not installed in this environment")
    src, lib, outside = tmp_path / "src", tmp_path / "lib", tmp_path / "outside"
    for name in ("hakube", "tasks", "templates", "files"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", src)
    build = subprocess.run(
        [sys.executable, "-c", "from setuptools import setup; setup()", "-q", "build_py", "--build-lib", str(lib)],
        cwd=src, capture_output=True, text=True, timeout=120,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    assert sorted(p.name for p in lib.iterdir()) == ["hakube"]  # no lab, no bench, no top-level templates
    assert {p.name for p in (lib / "hakube" / "templates").glob("*.j2")} == \
        {p.name for p in (ROOT / "templates").glob("*.j2")}
    assert (lib / "hakube" / "files" / "99-kube-apiserver-vip.conf").is_file()
    assert {p.name for p in (lib / "hakube" / "tasks").glob("*.py")} == {p.name for p in (ROOT / "tasks").glob("*.py")}

    outside.mkdir()
    inv = make_inventory(outside)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(lib)
    run = subprocess.run([sys.executable, "-c", RENDER_INSTALLED, json.dumps([inv.hosts(), ENV])],
                         cwd=outside, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    out = json.loads(run.stdout)
    assert Path(out["hakube"]).parent == lib / "hakube"
    assert (out["templates"], out["files"]) == (str(lib / "hakube" / "templates"), str(lib / "hakube" / "files"))
    assert not [p for p in out["sys_path"] if p and Path(p).resolve() == ROOT]  # the deploy runs from a copy
    for path in ("/etc/kubernetes/apiserver", "/etc/systemd/system/kube-apiserver.service",
                 "/etc/keepalived/keepalived.conf", "/etc/haproxy/haproxy.cfg", "/root/.kube/config",
                 "/etc/sysctl.d/99-kube-apiserver-vip.conf", "/etc/kubernetes/audit-policy.yaml"):
        assert path in out["paths"], path


def test_every_dependency_is_bounded_above_and_the_installed_versions_fit() -> None:
    """pyproject.toml: each requirement (runtime, test, build) has an upper bound, pyinfra is the
    3.10 series, and what this environment runs satisfies them (the build's setuptools lives in
    pip's isolated build environment, not here)."""
    from importlib.metadata import version

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    runtime = [Requirement(r) for r in project["project"]["dependencies"]]
    test = [Requirement(r) for r in project["project"]["optional-dependencies"]["test"]]
    build = [Requirement(r) for r in project["build-system"]["requires"]]
    for req in runtime + test + build:
        assert any(s.operator in ("<", "<=", "==", "~=") for s in req.specifier), f"{req} has no upper bound"
    assert str(next(r for r in runtime if r.name == "pyinfra").specifier) == "==3.10.*"
    for req in runtime + test:
        assert req.specifier.contains(version(req.name), prereleases=True), f"{req.name} {version(req.name)}: not {req}"

