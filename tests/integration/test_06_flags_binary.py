"""The flag table (hakube/flags.py) meets the lab's real kube-apiserver v1.20.2 binary, both ways.

Only the local binary (``lab.APISERVER_BIN``) is run, and only with ``--help``: plain
``--help``, ``--NAME=VALUE --help`` for the table's flags that ``--help`` does not show (pflag hides
deprecated flags; using one prints "Flag --NAME has been deprecated", an unknown one "unknown flag"),
and the deploy's rendered 1.20 command line followed by ``--help``. With ``--help`` the binary parses
its flags, prints and exits: it starts nothing and contacts nothing.

No container is involved, so this module does not wait for the lab-session lock conftest.py takes
for the Docker tests (``lab_session_lock`` is overridden below) and does not need Docker. When the
binary is missing it is built the way ``make lab`` builds it (``ensure_apiserver``); under CI=true
failing to get it is a failure, elsewhere a skip.
"""
from __future__ import annotations

import os
import re
import runpy
import subprocess
from pathlib import Path

import pytest

import lab
from hakube import apiserver_args, flags
from hakube.flags import FLAGS
from lab import tools
from lab.config import APISERVER_VERSION_LINE
from hakube.settings import AUTH_PASS_ENV, load_inventory

pytestmark = pytest.mark.lab

IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
V1_20 = (1, 20)
# Values tried in --NAME=VALUE until one parses (int/bool/duration/string, then IP, then free text).
PROBE_VALUES = ("0", "127.0.0.1", "x")


@pytest.fixture(scope="session")
def lab_session_lock():
    """Overrides conftest.py's autouse lock: nothing here touches the lab's containers."""
    yield


@pytest.fixture(scope="module")
def binary() -> Path:
    if tools.apiserver_ok():
        return lab.APISERVER_BIN
    try:
        return tools.ensure_apiserver(lab.detect_mirror())
    except lab.LabError as e:
        message = f"no kube-apiserver {lab.K8S_VERSION} at {lab.APISERVER_BIN}: {e}"
        if IN_CI:
            pytest.fail(f"{message}; CI=true, so this is a failure, not a skip")
        pytest.skip(message)


def run(binary: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=60, cwd=cwd,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("flags-binary")


@pytest.fixture(scope="module")
def help_flags(binary: Path, workdir: Path) -> dict[str, bool]:
    """``{flag: deprecated}`` as ``kube-apiserver --help`` shows them."""
    proc = run(binary, "--help", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    return flags.parse_help(proc.stdout)


def probe(binary: Path, name: str, cwd: Path) -> str:
    """unknown / deprecated / accepted for a flag --help does not show (see flags.classify_probe)."""
    for value in PROBE_VALUES:
        proc = run(binary, f"--{name}={value}", "--help", cwd=cwd)
        status = flags.classify_probe(name, proc.stdout + proc.stderr)
        if status != "bad-value":
            return status
    return "bad-value"


@pytest.fixture(scope="module")
def binary_flags(binary: Path, workdir: Path, help_flags: dict[str, bool]) -> dict[str, str]:
    """What 1.20.2 says of every flag --help shows or the table knows: accepted/deprecated/unknown."""
    out = {name: "deprecated" if deprecated else "accepted" for name, deprecated in help_flags.items()}
    for name in sorted(set(FLAGS) - set(out)):
        out[name] = probe(binary, name, workdir)
    return out


def rendered_1_20() -> dict[str, str]:
    """``{flag: value}`` of the apiserver command line the deploy renders for the lab (1.20.2).

    The flags are the env variables the unit's ExecStart names, from /etc/kubernetes/config and
    /etc/kubernetes/apiserver as rendered for the lab's inventory.py.
    """
    ns = runpy.run_path(str(lab.REPO / "inventory.py"))
    hosts_data, cluster = ns["masters"]
    assert cluster["kube_version"] == lab.K8S_VERSION.lstrip("v")
    hosts = [(name, {**cluster, **data}, ["masters"]) for name, data in hosts_data]
    settings = load_inventory(hosts, env={AUTH_PASS_ENV: "flagtest"})[hosts[0][0]]
    env = {**apiserver_args.config_env(settings), **apiserver_args.apiserver_env(settings)}
    unit = (lab.REPO / "templates" / "kube-apiserver.service.j2").read_text()
    used = re.findall(r"\$(KUBE_[A-Z_]+)", unit)
    assert used and set(used) <= set(env), (used, sorted(env))
    out: dict[str, str] = {}
    for var in used:
        for word in env[var].split(" "):
            name, _, value = word.removeprefix("--").partition("=")
            assert word.startswith("--") and name not in out, word
            out[name] = value
    return out


# ------------------------------------------------------------------ the binary


def test_it_is_the_labs_1_20_2(binary: Path, workdir: Path) -> None:
    proc = run(binary, "--version", cwd=workdir)
    assert (proc.stdout + proc.stderr).strip() == APISERVER_VERSION_LINE


def test_help_is_parsed(help_flags: dict[str, bool]) -> None:
    assert len(help_flags) > 100
    for name in ("bind-address", "etcd-servers", "secure-port", "logtostderr", "log-dir", "v", "vmodule"):
        assert help_flags.get(name) is False, name  # klog flags are still there, not yet deprecated
    assert help_flags.get("admission-control") is True  # "(DEPRECATED: ...)" in its description


# ------------------------------------------------------------------ the table, both ways


def test_the_table_accepts_exactly_what_the_binary_accepts(binary_flags: dict[str, str]) -> None:
    table_only = sorted(n for n, f in FLAGS.items() if f.accepted_by(V1_20) and binary_flags[n] == "unknown")
    binary_only = sorted(n for n, f in FLAGS.items() if not f.accepted_by(V1_20) and binary_flags[n] != "unknown")
    assert table_only == [], f"the table accepts for 1.20 but v1.20.2 says 'unknown flag': {table_only}"
    assert binary_only == [], f"v1.20.2 accepts but the table rejects for 1.20: {binary_only}"
    assert "bad-value" not in {binary_flags[n] for n in FLAGS}, "no probe value parsed for some flag"


def test_the_table_marks_deprecated_exactly_what_the_binary_does(binary_flags: dict[str, str]) -> None:
    known = {n: f for n, f in FLAGS.items() if binary_flags[n] != "unknown"}
    unmarked = sorted(n for n, f in known.items() if binary_flags[n] == "deprecated" and not f.deprecated_in(V1_20))
    overmarked = sorted(n for n, f in known.items() if binary_flags[n] != "deprecated" and f.deprecated_in(V1_20))
    assert unmarked == [], f"v1.20.2 reports these deprecated, the table does not: {unmarked}"
    assert overmarked == [], f"the table marks these deprecated in 1.20, v1.20.2 does not: {overmarked}"


def test_flags_the_table_does_not_know(binary_flags: dict[str, str], capsys) -> None:
    """The table need not hold every flag: list the rest (informational)."""
    unknown_to_table = sorted(n for n, s in binary_flags.items() if n not in FLAGS and s != "unknown")
    with capsys.disabled():
        print(f"\nv1.20.2 --help shows {len(unknown_to_table)} flags the table does not know "
              "(an extra flag among them is refused as unknown):")
        for name in unknown_to_table:
            print(f"  --{name}{' (deprecated)' if binary_flags[name] == 'deprecated' else ''}")
    assert "help" in unknown_to_table and "version" in unknown_to_table


# ------------------------------------------------------------------ what the deploy renders


def test_every_rendered_flag_is_shown_and_not_deprecated(help_flags: dict[str, bool]) -> None:
    rendered = rendered_1_20()
    assert {"etcd-servers", "service-account-issuer", "logtostderr", "v"} <= set(rendered)
    missing = sorted(n for n in rendered if n not in help_flags)
    deprecated = sorted(n for n in rendered if help_flags.get(n))
    assert missing == [], f"rendered for 1.20 but not in v1.20.2 --help: {missing}"
    assert deprecated == [], f"rendered for 1.20 and deprecated in v1.20.2: {deprecated}"
    assert [n for n in rendered if flags.deprecation_warning(n, V1_20)] == []


def test_the_binary_parses_the_rendered_command_line(binary: Path, workdir: Path) -> None:
    """The whole rendered 1.20 command line (values included) parses; --help stops it there."""
    args = [f"--{name}={value}" for name, value in rendered_1_20().items()]
    proc = run(binary, *args, "--help", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert "has been deprecated" not in proc.stderr, proc.stderr
    assert proc.stdout.startswith("The Kubernetes API server"), proc.stdout[:200]
