"""hakube as a real pyinfra package (issue "A real pyinfra package"), on the converged lab.

The wheel of this checkout is installed with its dependencies (from PyPI) into a fresh venv in a
temporary directory; a user's own deploy file there runs an operation of its own, then
``deploy_ha_apiserver()``, then another of its own, with that venv's pyinfra against the lab's
``inventory.py`` (which finds ``.lab/`` and ``pki/`` by its own path). The run converges, in that
order; the next one changes nothing (the user's operations are idempotent: a directory and a
line); that venv's ``hakube check`` says healthy. Every host is put back (the user's directory
removed).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lab

from .conftest import REPO, Run, assert_converged, assert_no_change, masters, sh

pytestmark = pytest.mark.lab

SITE_DIR = "/var/lib/hakube-test-user-site"  # the user's own, on every host
BEFORE, AFTER = "Mine: before hakube", "Mine: after hakube"
PREFIX = "HA kube-apiserver | "  # deploy_ha_apiserver's operations

USER_DEPLOY = f"""\
from pyinfra.operations import files

from hakube import deploy_ha_apiserver

files.directory(name={BEFORE!r}, path={SITE_DIR!r}, mode="0755")
deploy_ha_apiserver()
files.line(name={AFTER!r}, path={SITE_DIR + "/notes"!r}, line="hakube ran here")
"""


def _env() -> dict:
    """This environment without anything that would import the checkout or change pip's index."""
    return {k: v for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith(("PIP_", "PYINFRA_"))}


def _run(argv: list, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def _not_the_source(directory: str, names: list[str]) -> set[str]:
    top = {".venv", ".git", "pki", "artifacts", ".lab", "build", "dist"} if Path(directory) == REPO else set()
    return {n for n in names if n in top or n == "__pycache__" or n.endswith(".egg-info")}


@pytest.fixture(scope="module")
def user_site(tmp_path_factory) -> dict:
    """The wheel installed with its dependencies into a venv outside the checkout, and the user's
    directory with their deploy.py: {"venv", "site"}."""
    base = tmp_path_factory.mktemp("package")
    src, dist, venv, site = base / "src", base / "dist", base / "venv", base / "site"
    shutil.copytree(REPO, src, ignore=_not_the_source)
    build = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                  "--disable-pip-version-check", "-w", dist, src], base)
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = dist.glob("hakube-*.whl")
    made = _run([sys.executable, "-m", "venv", venv], base)
    assert made.returncode == 0, made.stderr
    install = _run([venv / "bin" / "pip", "install", "--disable-pip-version-check", wheel], base)
    assert install.returncode == 0, install.stdout + install.stderr
    site.mkdir()
    (site / "deploy.py").write_text(USER_DEPLOY)
    where = _run([venv / "bin" / "python", "-c", "import hakube, hakube.tasks, importlib.util; "
                  "print(hakube.__file__); print(hakube.tasks.__file__); print(importlib.util.find_spec('tasks'))"], site)
    assert where.returncode == 0, where.stderr
    assert [line.startswith(str(venv)) for line in where.stdout.splitlines()] == [True, True, False], where.stdout
    assert where.stdout.splitlines()[2] == "None"  # no top-level tasks anywhere
    return {"venv": venv, "site": site}


def _hosts() -> tuple[str, ...]:
    """Every host of inventory.py: the masters and the node (LAB_LAYOUT: --nodes 1)."""
    return (*masters(), *lab.NODE_NAMES)


def _short(names) -> list[str]:
    return sorted(name.rsplit("/", 1)[-1] for name in names)  # @docker/vm01 (or vm01 over SSH) -> vm01


def _remove_user_dirs() -> None:
    for name in _hosts():
        sh(name, f"rm -rf {SITE_DIR}", check=False)


def user_deploy(site: dict) -> Run:
    """``pyinfra -y <checkout>/inventory.py deploy.py --json`` with the venv's pyinfra, from the user's directory."""
    args = [site["venv"] / "bin" / "pyinfra", "-y", REPO / "inventory.py", "deploy.py", "--json"]
    started = time.monotonic()
    proc = _run(args, site["site"])
    return Run.parse([str(a) for a in args], proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


def test_a_users_deploy_with_the_installed_package_converges_and_stays_converged(converged, user_site) -> None:
    _remove_user_dirs()
    try:
        first = user_deploy(user_site)
        assert_converged(first)
        names = [op["name"] for op in first.data["results"]["operations"]]
        assert names[0] == BEFORE and names[-1] == AFTER, names
        # the lab is converged: hakube's steps plan no operation here (its order between the user's
        # own operations is proven on @fake hosts, tests/unit/test_deploy_function.py)
        assert all(n.startswith(PREFIX) for n in names[1:-1]), names
        # the lab was converged by the checkout's deploy.py: only the user's operations change anything
        changed = {name: _short(hosts) for name, hosts in first.changed().items()}
        assert changed == {BEFORE: sorted(_hosts()), AFTER: sorted(_hosts())}, changed
        for name in _hosts():
            assert sh(name, f"cat {SITE_DIR}/notes").stdout == "hakube ran here\n", name

        second = user_deploy(user_site)
        assert_no_change(second)

        check = _run([user_site["venv"] / "bin" / "hakube", "check", "--json", REPO / "inventory.py"],
                     user_site["site"], timeout=300)
        assert check.returncode == 0, check.stdout + check.stderr
        doc = json.loads(check.stdout)
        assert doc["status"] == "healthy", doc["problems"]
        assert len(doc["vip"]["holders"]) == 1
    finally:
        _remove_user_dirs()
