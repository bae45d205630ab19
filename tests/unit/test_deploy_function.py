"""``hakube.deploy_ha_apiserver``: the whole deploy as a pyinfra ``@deploy``, called from a user's own
deploy file between the user's own operations.

Planned through pyinfra's CLI on the ``@fake`` connector (``--dry --json``, nothing executed), from a
directory outside the checkout: the user's operation, every hakube step, the user's operation, in
that order; hakube's operations are exactly those of the repository's ``deploy.py``, named under the
deploy's name. Its ``data_defaults`` come from the settings table and change nothing the validation
decides: a missing required key is still refused, naming host and key, before any operation.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hakube.deploy import DATA_DEFAULTS, deploy_ha_apiserver
from hakube.settings import KEYS, REQUIRED, InventoryError, load_inventory

from .conftest import ENV, SHA, make_inventory

ROOT = Path(__file__).resolve().parents[2]
PYINFRA = [str(Path(sys.executable).with_name("pyinfra"))]
PREFIX = "HA kube-apiserver | "
BEFORE, AFTER = "Mine: before hakube", "Mine: after hakube"
M1, M2, N1 = "@fake/m1", "@fake/m2", "@fake/n1"

USER_DEPLOY = f"""\
from pyinfra.operations import server

from hakube import deploy_ha_apiserver

server.shell(name={BEFORE!r}, commands=["echo mine"])
deploy_ha_apiserver()
server.shell(name={AFTER!r}, commands=["echo mine again"])
"""

from .test_planning import FAKE  # the @fake answers of a fresh amd64 host (one place)


def write_inventory(base: Path, drop: tuple[str, ...] = ()) -> Path:
    """Two @fake masters and a @fake node; ``drop``: keys ("key" cluster-wide, "m2.key" m2's) left out."""
    (base / "vrrp_pass").write_text("fAkep4ss\n")
    m1 = {"bind_address": "10.9.0.11", "vrrp_priority": 120, "vrrp_interface": "eth0"}
    m2 = {"bind_address": "10.9.0.12", "vrrp_priority": 110, "vrrp_interface": "eth0"}
    cluster = {"vip": "10.9.0.100", "etcd_servers": ["https://10.9.0.20:2379"], "kube_version": "1.36.0",
               "kube_apiserver_sha256": SHA, "vrrp_auth_pass_file": str(base / "vrrp_pass"),
               "pki_dir": str(base / "pki"), "artifacts_dir": str(base / "artifacts"), **FAKE}
    for key in drop:
        (m2 if key.startswith("m2.") else cluster).pop(key.removeprefix("m2."))
    path = base / "inventory.py"
    path.write_text(f"masters = ([({M1!r}, {m1!r}), ({M2!r}, {m2!r})], {cluster!r})\n"
                    f"nodes = ([({N1!r}, {FAKE!r})], {{}})\n")
    return path


def plan(pyinfra: list[str], inventory: Path, deploy_file: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """``pyinfra INVENTORY DEPLOY --dry --json`` from ``cwd`` (no -y: with it no change is detected)."""
    env = env or {k: v for k, v in os.environ.items() if k not in ("HAKUBE_VRRP_AUTH_PASS", "PYTHONPATH")}
    env.update(PYINFRA_FAKE_DELAY="0", PYINFRA_FAKE_DELAY_JITTER="0")
    return subprocess.run([*pyinfra, str(inventory), deploy_file, "--dry", "--json"], cwd=cwd, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180)


def plan_user_deploy(pyinfra: list[str], base: Path, env: dict | None = None, drop: tuple[str, ...] = ()):
    """The user's deploy file (``USER_DEPLOY``) planned from ``base/site``, outside the checkout."""
    site = base / "site"
    site.mkdir()
    (site / "deploy.py").write_text(USER_DEPLOY)
    return plan(pyinfra, write_inventory(base, drop), "deploy.py", site, env)


def steps(ops: list[dict]) -> list[tuple[str, list[str]]]:
    """(name, hosts it changes or may change) of each operation, RBAC's host left out (it is
    ``_run_once``: on whichever master pyinfra plans first)."""
    return [(op["name"], [] if "RBAC" in op["name"] else sorted(op["hosts_with_change"] + op["hosts_with_conditional_change"]))
            for op in ops]


def assert_user_hakube_user(plan_ops: list[dict], alone: list[dict]) -> None:
    """The user's operation first and last on every host, hakube's operations in between: those of
    the repository's deploy.py (``alone``), in its order, named under the deploy's name."""
    names = [op["name"] for op in plan_ops]
    assert names[0] == BEFORE and names[-1] == AFTER, names
    for op in (plan_ops[0], plan_ops[-1]):
        assert op["hosts_with_change"] == [M1, M2, N1], op
    middle = plan_ops[1:-1]
    assert middle and all(op["name"].startswith(PREFIX) for op in middle), names
    unprefixed = [{**op, "name": op["name"].removeprefix(PREFIX)} for op in middle]
    assert steps(unprefixed) == steps(alone)


@pytest.fixture(scope="module")
def alone(tmp_path_factory) -> list[dict]:
    """The repository's deploy.py planned from the checkout, as the lab runs it: no deploy name."""
    base = tmp_path_factory.mktemp("alone")
    proc = plan(PYINFRA, write_inventory(base), "deploy.py", ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ops = json.loads(proc.stdout)["plan"]
    assert not any(op["name"].startswith(PREFIX) for op in ops)
    assert "kube-apiserver | Install /etc/kubernetes/config" in [op["name"] for op in ops]
    return ops


def test_a_users_deploy_runs_hakube_between_its_own_operations(tmp_path: Path, alone) -> None:
    proc = plan_user_deploy(PYINFRA, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert_user_hakube_user(json.loads(proc.stdout)["plan"], alone)
    assert (tmp_path / "pki" / "ca.pem").is_file()  # the inventory's pki_dir, not the user's directory
    assert not (tmp_path / "site" / "pki").exists()


def test_the_node_gets_only_the_shared_config_from_the_users_deploy(tmp_path: Path) -> None:
    proc = plan_user_deploy(PYINFRA, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    mine = [op["name"] for op in json.loads(proc.stdout)["plan"]
            if N1 in op["hosts_with_change"] + op["hosts_with_conditional_change"]]
    assert mine == [BEFORE, f"{PREFIX}kube-apiserver | Install /etc/kubernetes/config", AFTER]


def test_missing_required_keys_stop_the_users_deploy_before_any_operation(tmp_path: Path) -> None:
    """data_defaults holds no required key: the inventory's missing ones are refused as without it."""
    proc = plan_user_deploy(PYINFRA, tmp_path, drop=("vip", "etcd_servers", "m2.bind_address"))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    for line in (f"{M1}: vip: missing (required)", f"{M1}: etcd_servers: missing (required)",
                 f"{M2}: bind_address: missing (required)", "no host was changed"):
        assert line in out, line
    assert '"plan"' not in proc.stdout
    assert not (tmp_path / "pki").exists()


def test_the_deploy_is_a_pyinfra_deploy_with_the_settings_defaults() -> None:
    assert deploy_ha_apiserver.deploy_name == "HA kube-apiserver"
    assert deploy_ha_apiserver._inner.deploy_data is DATA_DEFAULTS  # what pyinfra's @deploy hands to host.deploy
    assert DATA_DEFAULTS == {k.name: k.default for k in KEYS if k.default is not REQUIRED}
    required = {k.name for k in KEYS if k.default is REQUIRED}
    assert required == {"bind_address", "vrrp_priority", "vrrp_interface", "etcd_servers", "vip"}
    assert not required & set(DATA_DEFAULTS)
    # copies: nothing done to the deploy data can change the settings table
    mutable = [k for k in KEYS if isinstance(k.default, (list, dict))]
    assert mutable and all(DATA_DEFAULTS[k.name] is not k.default for k in mutable)


def _with_defaults(hosts, only: str | None = None):
    """Each host's data as pyinfra's HostData gives it while that host runs the deploy: the
    inventory's data over DATA_DEFAULTS (``only``: that one host, the others outside the deploy)."""
    return [(n, {**DATA_DEFAULTS, **d} if only in (None, n) else d, g) for n, d, g in hosts]


def _outcome(hosts):
    try:
        return load_inventory(hosts, ENV)
    except InventoryError as e:
        return e.problems


@pytest.mark.parametrize("case", ["valid", "missing-required", "node-leaving", "cluster-key-differs", "bad-value"])
def test_the_deploy_data_changes_nothing_the_validation_decides(tmp_path: Path, case: str) -> None:
    """pyinfra adds data_defaults to the data of a host only while that host is in the deploy, and
    hosts are planned concurrently: whichever hosts are in it when the inventory is validated, the
    outcome is the same (the same settings, or the same problems)."""
    inv = make_inventory(tmp_path, masters=3, nodes=1)
    if case == "missing-required":
        del inv.cluster["vip"]
        del inv.master("m2")["vrrp_interface"]
    elif case == "node-leaving":
        inv.nodes[0][1]["leaving"] = True
    elif case == "cluster-key-differs":
        inv.master("m3")["lb_port"] = 7443
    elif case == "bad-value":
        inv.cluster["cert_renewal_days"] = 400
    hosts = inv.hosts()
    expected = _outcome(hosts)
    assert isinstance(expected, dict) == (case == "valid"), expected
    for only in (None, "m1", "m2", "n1"):
        assert _outcome(_with_defaults(hosts, only)) == expected, only


def test_the_repositorys_deploy_file_calls_the_packages_table_of_contents() -> None:
    """deploy.py is two statements; the steps are listed once, in hakube/deploy.py."""
    body = [node for node in ast.parse((ROOT / "deploy.py").read_text()).body
            if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]  # the docstring
    assert [ast.unparse(node) for node in body] == ["from hakube.deploy import ha_apiserver", "ha_apiserver()"]
    toc = (ROOT / "hakube" / "deploy.py").read_text()
    for call in ("certs.apply(", "keepalived.apply(", "haproxy.apply(", "rbac.apply(", "leave.apply("):
        assert toc.count(call) == 1, call
