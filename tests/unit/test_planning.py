"""The whole deploy planned through pyinfra's CLI on the ``@fake`` connector (nothing is executed).

``pyinfra INVENTORY deploy.py --dry --json`` prints the plan as JSON: for each operation in
order, the hosts it would change and the hosts it would change only if its ``_if`` condition
holds at run time. ``-y`` is not passed on purpose: with it pyinfra skips change detection and
every ``hosts_with_change`` list is empty.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import SHA

ROOT = Path(__file__).resolve().parents[2]
PYINFRA = Path(sys.executable).with_name("pyinfra")

FAKE = {
    "fake_delay": 0,
    "fake_delay_jitter": 0,
    "fake_responses": {
        "command -v apt-get": "/usr/bin/apt-get",
        "uname -s": "Linux",
        "command -v useradd": "/usr/sbin/useradd",
        # The host snapshot (hakube.facts): nothing installed yet, an amd64 machine.
        "dpkg --print-architecture": "A amd64",
    },
}

M1, M2, N1 = "@fake/m1", "@fake/m2", "@fake/n1"

# The tutorial's steps, in the order the deploy must run them on a master. The packages install
# in the background while the apiserver's inputs are staged and keepalived's script user is made;
# the roll waits for them.
STEPS = [
    "Packages",
    "Certificates (/etc/kubernetes/ssl)",
    "Audit policy",
    "Secrets encryption at rest",
    "kube-apiserver",
    "keepalived",
    "Packages",
    "Metrics (node exporter, VRRP state, certificates)",
    "kube-apiserver",
    "keepalived",
    "haproxy",
    "The VIP: one master holds it",
    "keepalived's VRRP state for Prometheus",
    "Admin kubeconfig",
    "RBAC: kube-apiserver -> kubelet API",
]


def _snapshot(files: dict[str, str]) -> dict:
    """fake_responses whose host snapshot (``hakube.facts``) reports ``files`` ({path: sha256}), root's, 0644."""
    lines = [f"H {sha}  {path}" for path, sha in files.items()]
    lines += [f"M 644:root:root {path}" for path in files]
    return {"set --; for p in": [*lines, "A amd64"], **FAKE["fake_responses"]}


def _write_inventory(base: Path, m2_priority: int = 110, m1_files: dict[str, str] | None = None, **extra) -> Path:
    """Two masters and a node on @fake. ``m1_files``: files m1's snapshot reports ({path: sha256})."""
    (base / "vrrp_pass").write_text("fAkep4ss\n")
    m1_snapshot = {"fake_responses": _snapshot(m1_files)} if m1_files else {}
    masters = [
        (M1, {"bind_address": "10.9.0.11", "vrrp_priority": 120, "vrrp_interface": "eth0", **m1_snapshot}),
        (M2, {"bind_address": "10.9.0.12", "vrrp_priority": m2_priority, "vrrp_interface": "eth0"}),
    ]
    cluster = {
        "vip": "10.9.0.100",
        "etcd_servers": ["https://10.9.0.20:2379"],
        "kube_version": "1.36.0",
        "kube_apiserver_sha256": SHA,
        "vrrp_auth_pass_file": str(base / "vrrp_pass"),
        "pki_dir": str(base / "pki"),
        "artifacts_dir": str(base / "artifacts"),
        **FAKE,
        **extra,
    }
    inv = base / "inventory.py"
    inv.write_text(
        f"masters = ({masters!r}, {cluster!r})\n"
        f"nodes = ([({N1!r}, {FAKE!r})], {{}})\n"
    )
    return inv


def _pyinfra(inventory: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HAKUBE_VRRP_AUTH_PASS"}
    env.update(PYINFRA_FAKE_DELAY="0", PYINFRA_FAKE_DELAY_JITTER="0")
    return subprocess.run(
        [str(PYINFRA), str(inventory), "deploy.py", "--dry", "--json", *extra],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("plan")
    result = _pyinfra(_write_inventory(base))
    assert result.returncode == 0, result.stdout + result.stderr
    # stdout is pure JSON even on a first run that creates the PKI (its report goes to stderr).
    assert "[pki] issued apiserver (new)" in result.stderr
    return base, json.loads(result.stdout)["plan"]


def _ops_for(plan: list[dict], host: str) -> list[dict]:
    return [op for op in plan if host in op["hosts_with_change"] + op["hosts_with_conditional_change"]]


def _step(op: dict) -> str:
    return op["name"].split(" | ", 1)[0]


def test_dry_run_succeeds(run) -> None:
    base, plan = run
    assert plan, "empty plan"
    # The PKI is built on the deploy machine, in the inventory's pki_dir.
    assert (base / "pki" / "ca.pem").is_file() and (base / "pki" / "ca-key.pem").is_file()


@pytest.mark.parametrize("host", [M1, M2])
def test_masters_get_every_step_in_the_tutorials_order(run, host: str) -> None:
    _, plan = run
    steps = [_step(op) for op in _ops_for(plan, host)]
    # Steps appear as contiguous runs, in order.
    runs = [s for i, s in enumerate(steps) if i == 0 or steps[i - 1] != s]
    # RBAC is _run_once: it lands on whichever master pyinfra loads first (parallel loading).
    assert runs in (STEPS, STEPS[:-1]), steps


@pytest.mark.parametrize("host", [M1, M2])
def test_masters_install_every_file(run, host: str) -> None:
    _, plan = run
    names = [op["name"] for op in _ops_for(plan, host)]
    for expected in (
        "Certificates (/etc/kubernetes/ssl) | Install /etc/kubernetes/ssl/ca.pem",
        "Certificates (/etc/kubernetes/ssl) | Install /etc/kubernetes/ssl/apiserver-key.pem",
        "Certificates (/etc/kubernetes/ssl) | Install /etc/kubernetes/ssl/sa-key.pem",
        "Audit policy | Install /etc/kubernetes/audit-policy.yaml",
        "Secrets encryption at rest | Install /etc/kubernetes/encryption-config.yaml",
        "kube-apiserver | Install /etc/kubernetes/config",
        "kube-apiserver | Install kube-apiserver 1.36.0",
        "kube-apiserver | Install /etc/kubernetes/apiserver",
        "kube-apiserver | Install /etc/systemd/system/kube-apiserver.service",
        "keepalived | Install /etc/keepalived/keepalived.conf",
        "haproxy | Install /etc/haproxy/haproxy.cfg",
        "haproxy | Install /etc/haproxy/pki/healthcheck.pem",
        "Admin kubeconfig | Install /root/.kube/config",
    ):
        assert expected in names, expected
    assert not any("ca-key.pem" in n for n in names)


def test_node_gets_only_the_shared_config(run) -> None:
    _, plan = run
    ops = _ops_for(plan, N1)
    assert [op["name"] for op in ops] == ["kube-apiserver | Install /etc/kubernetes/config"]
    assert ops[0]["hosts_with_change"] == [N1]


def test_restart_and_reloads_are_planned_on_a_fresh_host(run) -> None:
    _, plan = run
    by_name = {op["name"]: op for op in plan}
    for name in (
        "kube-apiserver | Restart kube-apiserver, one master at a time, waiting for /readyz",
        "kube-apiserver | systemctl daemon-reload (units changed)",
        "keepalived | Start keepalived (after the running ones reloaded)",  # nothing runs yet
        "haproxy | Reload haproxy (config changed)",
    ):
        op = by_name[name]
        assert sorted(op["hosts_with_change"] + op["hosts_with_conditional_change"]) == [M1, M2], name


def test_apiserver_restart_comes_after_everything_it_reads(run) -> None:
    _, plan = run
    names = [op["name"] for op in _ops_for(plan, M1)]
    restart = names.index("kube-apiserver | Restart kube-apiserver, one master at a time, waiting for /readyz")
    for before in (
        "Certificates (/etc/kubernetes/ssl) | Install /etc/kubernetes/ssl/apiserver.pem",
        "Audit policy | Install /etc/kubernetes/audit-policy.yaml",
        "Secrets encryption at rest | Install /etc/kubernetes/encryption-config.yaml",
        "kube-apiserver | Install kube-apiserver 1.36.0",
        "kube-apiserver | Install /etc/kubernetes/apiserver",
    ):
        assert names.index(before) < restart, before


def test_the_download_waits_for_the_packages(run) -> None:
    """curl comes with the packages step: the binary is downloaded only after their install is
    waited for (a local binary is uploaded early instead, see below)."""
    _, plan = run
    names = [op["name"] for op in _ops_for(plan, M1)]
    wait = next(i for i, n in enumerate(names) if n.startswith("Packages | Wait for"))
    assert "curl" in names[wait]
    assert wait < names.index("kube-apiserver | Install kube-apiserver 1.36.0")


def test_a_local_binary_is_uploaded_while_the_packages_install(tmp_path: Path) -> None:
    binary = tmp_path / "kube-apiserver"
    binary.write_bytes(b"#!/bin/sh\n")
    result = _pyinfra(_write_inventory(tmp_path, kube_apiserver_binary=str(binary)))
    assert result.returncode == 0, result.stdout + result.stderr
    names = [op["name"] for op in _ops_for(json.loads(result.stdout)["plan"], M1)]
    wait = next(i for i, n in enumerate(names) if n.startswith("Packages | Wait for"))
    assert names.index("kube-apiserver | Install kube-apiserver 1.36.0") < wait


def test_rbac_runs_once(run) -> None:
    _, plan = run
    (op,) = [op for op in plan if _step(op) == STEPS[-1]]
    hosts = op["hosts_with_change"] + op["hosts_with_conditional_change"]
    assert len(hosts) == 1 and hosts[0] in (M1, M2), hosts


def test_bad_inventory_stops_before_any_operation(tmp_path: Path) -> None:
    result = _pyinfra(_write_inventory(tmp_path, m2_priority=120))
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert f"{M2}: vrrp_priority: 120 is also {M1}'s" in out
    assert "no host was changed" in out
    assert '"plan"' not in result.stdout
    assert "Ready: deploy.py" not in out
    assert not (tmp_path / "pki").exists()


CA_PEM = "/etc/kubernetes/ssl/ca.pem"


def _checkout_ca(base: Path) -> str:
    """This checkout's cluster CA, made in the inventory's pki_dir: its sha256."""
    import hashlib

    from hakube import pki

    return hashlib.sha256(pki.ensure_ca(base / "pki").cert_pem).hexdigest()


@pytest.mark.parametrize("replace", [None, "c" * 64], ids=["no-replace", "replace-names-another-hash"])
def test_a_master_with_another_ca_refuses_the_run_before_any_host_is_touched(tmp_path: Path, replace) -> None:
    """m1 holds another CA's ca.pem than this checkout's, and replace_ca_sha256 does not name it:
    the run stops while planning (no plan, so no operation anywhere: not on m1, not on m2, not
    on the node), naming m1 and both hashes, and issues nothing locally."""
    mine, theirs = _checkout_ca(tmp_path), "a" * 64
    extra = {"replace_ca_sha256": replace} if replace else {}
    result = _pyinfra(_write_inventory(tmp_path, m1_files={CA_PEM: theirs}, **extra))
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "refusing to run: the masters' trust anchors are not this checkout's; no host was changed" in out
    assert f"{M1}: {CA_PEM} (CA certificate) sha256 {theirs}; this checkout's is {mine}" in out
    assert f"{M2}: /etc" not in out  # m2 has no CA yet: nothing to refuse there
    assert f"[{M1}] Ready" not in out and f"[{M2}] Ready" not in out  # neither master's plan was made
    assert '"plan"' not in result.stdout
    assert not (tmp_path / "pki" / "apiserver.pem").exists()


def test_limit_plans_only_the_limited_master_and_still_reads_the_others(tmp_path: Path) -> None:
    """``--limit m2``: only m2 gets a plan (nothing for m1 or the node), and m1 outside the limit is
    still read (read-only): its foreign CA refuses the run as without --limit."""
    _checkout_ca(tmp_path)
    ok = _pyinfra(_write_inventory(tmp_path), "--limit", M2)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    plan = json.loads(ok.stdout)["plan"]
    assert _ops_for(plan, M2) and not _ops_for(plan, M1) and not _ops_for(plan, N1)
    theirs = "a" * 64
    refused = _pyinfra(_write_inventory(tmp_path, m1_files={CA_PEM: theirs}), "--limit", M2)
    out = refused.stdout + refused.stderr
    assert refused.returncode != 0, out
    assert f"{M1}: {CA_PEM} (CA certificate) sha256 {theirs}" in out


def test_a_vip_change_under_limit_is_refused_while_planning(tmp_path: Path) -> None:
    """Both masters run keepalived with 10.9.0.50 as their VIP; the inventory says 10.9.0.100:
    switching one master alone would leave it carrying another VIP than the holder."""
    running = {"set --; for p in": ["U keepalived.service active enabled", "L 10.9.0.50", "A amd64"],
               **FAKE["fake_responses"]}
    inv = _write_inventory(tmp_path)
    text = inv.read_text().replace("'vrrp_interface': 'eth0'}", f"'vrrp_interface': 'eth0', 'fake_responses': {running!r}}}")
    inv.write_text(text)
    result = _pyinfra(inv, "--limit", M2)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "changing the VIP needs every master, but --limit leaves out @fake/m1" in out


def test_replace_ca_sha256_naming_the_masters_ca_lets_the_run_replace_it(tmp_path: Path) -> None:
    """The deliberate change: the same cluster, replace_ca_sha256 set to m1's hash; the run plans
    this checkout's CA onto m1."""
    _checkout_ca(tmp_path)
    theirs = "a" * 64
    result = _pyinfra(_write_inventory(tmp_path, m1_files={CA_PEM: theirs}, replace_ca_sha256=theirs))
    assert result.returncode == 0, result.stdout + result.stderr
    names = [op["name"] for op in _ops_for(json.loads(result.stdout)["plan"], M1)]
    assert f"Certificates (/etc/kubernetes/ssl) | Install {CA_PEM}" in names


def test_diff_prints_each_hosts_file_as_one_block(tmp_path) -> None:
    """--dry --diff with two masters whose haproxy.cfg differs: every host's diff of every file is
    one block headed by host and path, never interleaved with the other host's lines. (Hosts are
    planned concurrently and reading the current file yields: with a delay on every fake command,
    a header printed before that read would be followed by the other host's header.)"""
    inv = _write_inventory(tmp_path)
    text = inv.read_text()
    snapshot = {"set --; for p in": ["H " + "0" * 64 + "  /etc/haproxy/haproxy.cfg",
                                     "M 644:root:root /etc/haproxy/haproxy.cfg", "A amd64"],
                "cat /etc/haproxy/haproxy.cfg": ["global", "    maxconn 1"]}
    inv.write_text(text.replace("'fake_responses': {", f"'fake_responses': {{**{snapshot!r}, ", 1)
                   .replace("'fake_delay': 0,", "'fake_delay': 0.05,", 1))
    env = {k: v for k, v in os.environ.items() if k != "HAKUBE_VRRP_AUTH_PASS"}
    proc = subprocess.run([str(PYINFRA), str(inv), "deploy.py", "--dry", "--diff"],
                          cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = (proc.stdout + proc.stderr).splitlines()
    heads = [i for i, line in enumerate(lines) if "Will modify /etc/haproxy/haproxy.cfg" in line]
    assert len(heads) == 2, heads
    for i in heads:
        block = lines[i + 1:lines.index("", i)]
        assert any("maxconn 1" in line for line in block), block  # the old line, removed
        assert any("bind 10.9.0.100:6443" in line for line in block), block  # a new line
        assert not any(M1 in line or M2 in line for line in block), block  # one block, one host
    secret = [i for i, line in enumerate(lines) if "Will create /etc/keepalived/keepalived.conf" in line]
    assert len(secret) == 2 and all("secret content: diff not shown" in lines[i + 1] for i in secret)
    assert "fAkep4ss" not in proc.stdout + proc.stderr  # the VRRP password never
    key = (tmp_path / "pki" / "encryption" / "key1.key").read_text().strip()
    assert key not in proc.stdout + proc.stderr  # nor the Secrets encryption key
