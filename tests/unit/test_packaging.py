"""The installed distribution is the product only: hakube with its steps (``hakube.tasks``) and its
templates and files as package data.

The Docker lab (``lab/``) and the bench (``bench/``) are test tooling run from the checkout; the
product never imports them. The wheel is built here (offline, this environment's setuptools) and
installed into a fresh venv outside the checkout: it imports, plans a user's deploy and runs
``hakube check`` with nothing of the checkout on disk.
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
from .test_check import _write_fake_inventory, fake_cluster  # noqa: F401 - a fixture
from .test_deploy_function import alone, assert_user_hakube_user, plan_user_deploy  # noqa: F401 - a fixture

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


# --- the wheel, installed in a venv outside the checkout -------------------------------------------


def _builds_wheels_offline() -> bool:
    """setuptools >= 70.1 builds a wheel by itself; an older one needs the ``wheel`` package."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.version import Version

    try:
        return Version(version("setuptools")) >= Version("70.1") or importlib.util.find_spec("wheel") is not None
    except PackageNotFoundError:
        return False


def _not_the_source(directory: str, names: list[str]) -> set[str]:
    """What a copy of the checkout leaves out: local state, builds, caches."""
    top = {".venv", ".git", "pki", "artifacts", ".lab", "build", "dist"} if Path(directory) == ROOT else set()
    return {n for n in names if n in top or n == "__pycache__" or n.endswith(".egg-info")}


def _clean_env(**extra: str) -> dict:
    drop = ("PYTHONPATH", "HAKUBE_VRRP_AUTH_PASS", "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("PIP_")}
    return {**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1", **extra}


def _run(argv: list, cwd: Path, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=_clean_env(**extra), capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)


class Installed:
    """A wheel of this checkout, installed with ``pip install --no-deps`` into a fresh venv in a
    temporary directory. Its dependencies are this environment's site-packages, appended to the
    venv's own through a ``.pth`` line (the ``.pth`` files in there, such as an editable hakube's
    finder, are not read: only a venv's own site-packages are). No index is ever asked."""

    def __init__(self, base: Path):
        import sysconfig

        src, dist, self.venv, self.outside = base / "src", base / "dist", base / "venv", base / "outside"
        shutil.copytree(ROOT, src, ignore=_not_the_source)
        self.outside.mkdir()
        build = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                      "-w", dist, src], base)
        assert build.returncode == 0, build.stdout + build.stderr
        (self.wheel,) = dist.glob("hakube-*.whl")
        made = _run([sys.executable, "-m", "venv", "--without-pip", self.venv], base)
        assert made.returncode == 0, made.stderr
        self.python = self.venv / "bin" / "python"
        where = _run([self.python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], base)
        self.site = Path(where.stdout.strip())
        ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
        (self.site / "_hakube_test_deps.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))
        install = _run([sys.executable, "-m", "pip", "--python", self.python, "install", "--no-deps", "--no-index",
                        self.wheel], base)
        assert install.returncode == 0, install.stdout + install.stderr

    def run(self, *argv, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
        """A command of the venv (``python``, ``hakube``) from a directory outside the checkout."""
        return _run([self.venv / "bin" / argv[0], *argv[1:]], cwd or self.outside, **env)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    needed(_builds_wheels_offline(), "building the wheel offline needs setuptools>=70.1 here (pip install -e '.[test]')")
    return Installed(tmp_path_factory.mktemp("wheel"))


def test_the_wheel_holds_the_product_and_its_steps_only(installed: Installed) -> None:
    import zipfile

    names = zipfile.ZipFile(installed.wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"hakube", "hakube-0.1.0.dist-info"}  # no lab, bench, deploy.py
    for source, installed_as in ((ROOT / "tasks", "hakube/tasks"), (PRODUCT, "hakube")):
        assert {f"{installed_as}/{p.name}" for p in source.glob("*.py")} <= set(names), installed_as
    assert {n for n in names if n.startswith("hakube/templates/")} == \
        {f"hakube/templates/{p.name}" for p in (ROOT / "templates").glob("*") if p.is_file()}
    assert "hakube/files/99-kube-apiserver-vip.conf" in names
    entry_points = zipfile.ZipFile(installed.wheel).read("hakube-0.1.0.dist-info/entry_points.txt").decode()
    assert "[console_scripts]\nhakube = hakube.cli:main" in entry_points


IMPORT_EVERYTHING = """
import importlib, importlib.util, json, pkgutil, sys
from hakube import deploy_ha_apiserver
import hakube, hakube.tasks
modules = {}
for info in pkgutil.walk_packages(hakube.__path__, "hakube."):
    if not info.name.endswith("__main__"):
        modules[info.name] = importlib.import_module(info.name).__file__
print(json.dumps({
    "deploy_name": deploy_ha_apiserver.deploy_name,
    "modules": modules,
    "top_level": {name: importlib.util.find_spec(name) is not None for name in ("tasks", "lab", "bench", "inventory")},
    "tasks_imported": "tasks" in sys.modules,
    "finders": [getattr(f, "__name__", type(f).__name__) for f in sys.meta_path],
}))
"""


def test_the_installed_package_imports_from_anywhere_without_the_checkout(installed: Installed) -> None:
    run = installed.run("python", "-c", IMPORT_EVERYTHING)
    assert run.returncode == 0, run.stdout + run.stderr
    out = json.loads(run.stdout)
    assert out["deploy_name"] == "HA kube-apiserver"
    modules = out["modules"]
    assert {f"hakube.tasks.{p.stem}" for p in (ROOT / "tasks").glob("*.py") if p.stem != "__init__"} <= set(modules)
    assert {"hakube.deploy", "hakube.cli", "hakube.check", "hakube.check_runner"} <= set(modules)
    outside = [name for name, path in modules.items() if not Path(path).is_relative_to(installed.site / "hakube")]
    assert not outside, outside  # every module from the installed wheel
    assert out["top_level"] == {"tasks": False, "lab": False, "bench": False, "inventory": False}
    assert not out["tasks_imported"]
    assert not [f for f in out["finders"] if "editable" in f.lower()]


def test_no_installed_module_imports_the_top_level_tasks_lab_or_bench(installed: Installed) -> None:
    modules = sorted((installed.site / "hakube").rglob("*.py"))
    assert installed.site / "hakube" / "tasks" / "certs.py" in modules
    offenders = {str(m.relative_to(installed.site)): sorted(_imported(ast.parse(m.read_text(), str(m))) & {"tasks", *TOOLING})
                 for m in modules}
    assert not {m: names for m, names in offenders.items() if names}


def test_the_installed_hakube_command(installed: Installed) -> None:
    for argv, usage in ((("hakube", "check", "--help"), "usage: hakube check [-h] [--json] [inventory]"),
                        (("python", "-m", "hakube.check", "--help"), "usage: python -m hakube.check [-h] [--json] [inventory]"),
                        (("hakube", "--version"), "hakube 0.1.0")):
        run = installed.run(*argv)
        assert run.returncode == 0 and run.stdout.startswith(usage), (argv, run.stdout + run.stderr)
    run = installed.run("hakube")
    assert run.returncode == 2 and "check" in run.stderr  # a command is required


def test_the_installed_check_against_fake_hosts(installed: Installed, fake_cluster) -> None:
    """``hakube check --json`` of the wheel, from a directory outside the checkout: the same
    document ``python -m hakube.check`` gives from the checkout (test_check.py)."""
    base, inv, settings = fake_cluster
    run = installed.run("hakube", "check", "--json", _write_fake_inventory(base, inv, settings),
                        PYINFRA_FAKE_DELAY="0", PYINFRA_FAKE_DELAY_JITTER="0")
    assert run.returncode == 0, run.stdout + run.stderr
    doc = json.loads(run.stdout)
    assert doc["status"] == "healthy" and doc["vip"]["holders"] == ["m1"], doc["problems"]


def test_a_users_deploy_plans_with_the_installed_package(installed: Installed, tmp_path: Path, alone) -> None:
    """The user's own deploy file, planned by pyinfra with nothing but the wheel and its
    dependencies: their operation, every hakube step (those of the repository's deploy.py), theirs."""
    proc = plan_user_deploy([str(installed.python), "-m", "pyinfra"], tmp_path, env=_clean_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert_user_hakube_user(json.loads(proc.stdout)["plan"], alone)
