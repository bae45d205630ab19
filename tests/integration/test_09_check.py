"""`make check` on the lab (issue 11, point 1): read only, exit 0 healthy / 1 degraded / 2 broken.

* the converged lab is healthy (`python -m hakube.check` and `make check ARGS=--json`);
* haproxy.cfg hand-edited on vm02: degraded, naming vm02 and /etc/haproxy/haproxy.cfg;
* the VIP added by hand on the master that does not hold it: broken (two holders);
* kube-apiserver stopped on one master: degraded, naming that master.

Every check is bracketed by the sha256, mode and owner of every file the deploy manages on every
master (and of the local pki/): the check changes nothing. Every case puts the lab back.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

import lab

from .conftest import REPO, api_ok, assert_converged, deploy, holders, masters, sh, wait_for

pytestmark = pytest.mark.lab

HAPROXY_CFG = "/etc/haproxy/haproxy.cfg"
# Everything the deploy writes on a master (a superset of its managed files), staged copies,
# pending markers and rollback copies included.
MANAGED = ("/etc/kubernetes /etc/haproxy /etc/keepalived /etc/systemd/system/kube-apiserver.service "
           "/etc/systemd/system/kube-apiserver-agent.socket /etc/systemd/system/kube-apiserver-agent@.service "
           "/etc/sysctl.d/99-kube-apiserver-vip.conf /root/.kube /usr/local/bin /var/lib/hakube")


def managed_checksums() -> dict[str, str]:
    """Per master: sha256, mode and owner of every file under MANAGED; plus the local pki/."""
    out = {}
    for name in masters():
        out[name] = sh(name, f"find {MANAGED} -type f 2>/dev/null | sort | "
                             "while read f; do echo \"$(sha256sum < \"$f\") $(stat -c %a:%U:%G \"$f\") $f\"; done",
                       check=False).stdout
    local = sorted(p for p in lab.PKI_DIR.rglob("*") if p.is_file())
    out["pki/"] = "\n".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()} {oct(p.stat().st_mode)} {p}" for p in local)
    return out


def check(*args: str, json_output: bool = True) -> tuple[subprocess.CompletedProcess, dict | None]:
    """`python -m hakube.check [--json] inventory.py` from the checkout, asserting it changed nothing."""
    before = managed_checksums()
    argv = [sys.executable, "-m", "hakube.check", *(["--json"] if json_output else []), *args, "inventory.py"]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    after = managed_checksums()
    assert after == before, "the check changed a managed file or the local PKI"
    doc = json.loads(proc.stdout) if json_output else None  # one JSON document, nothing else on stdout
    if doc is not None:
        assert doc["exit_code"] == proc.returncode, (doc, proc.stderr)
    return proc, doc


def describe(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-2000:]}"


def problems_of(doc: dict, host: str | None) -> list[str]:
    return [p["message"] for p in doc["problems"] if p["host"] == host]


@pytest.fixture
def steady(converged):
    """A converged lab with one VIP holder and the API answering through it."""
    wait_for(lambda: len(holders()) == 1 and api_ok(), 60, what="one VIP holder and the API through the VIP")
    yield


def test_the_converged_lab_is_healthy(steady):
    proc, doc = check()
    assert proc.returncode == 0, describe(proc)
    assert doc["status"] == "healthy" and doc["problems"] == [], doc["problems"]
    assert doc["vip"]["address"] == lab.VIP and len(doc["vip"]["holders"]) == 1
    assert doc["vip"]["holders"] == [h for h in masters() if h in holders()]
    assert doc["api_via_vip"]["ok"] is True
    assert set(doc["masters"]) == set(masters())
    for name, m in doc["masters"].items():
        assert m["apiserver"] == {"active": True, "version": lab.K8S_VERSION, "readyz": "ok"}, name
        assert m["haproxy"]["backends"] == {n: "UP" for n in masters()}, name
        assert m["keepalived"]["active"] is True
        assert m["keepalived"]["state"] == ("MASTER" if m["holds_vip"] else "BACKUP"), (name, m["keepalived"])
        assert m["drift"] == [] and m["restarts_owed"] == [], name
        assert {"ca", "apiserver", "admin"} <= set(m["certificates"])
        assert all(c["days_left"] > 30 for c in m["certificates"].values())

    proc, _ = check(json_output=False)
    assert proc.returncode == 0 and proc.stdout.splitlines()[-1] == "healthy", describe(proc)

    # The Makefile target: same document (make itself turns a non-zero status into 2, so only 0 is compared).
    before = managed_checksums()
    make = subprocess.run(["make", "-s", "-o", ".venv/.hakube-installed", "check", f"PY={sys.executable}",
                           "ARGS=--json"], cwd=REPO, capture_output=True, text=True, timeout=180,
                          stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert managed_checksums() == before
    assert make.returncode == 0, describe(make)
    assert json.loads(make.stdout)["status"] == "healthy"


def test_a_hand_edited_haproxy_cfg_is_degraded_naming_the_host_and_the_file(steady):
    victim = masters()[1]  # vm02
    sh(victim, f"echo '# edited by hand' >> {HAPROXY_CFG}")  # haproxy keeps running its loaded config
    try:
        proc, doc = check()
        assert proc.returncode == 1, describe(proc)
        assert doc["status"] == "degraded"
        assert doc["masters"][victim]["drift"] == [{"path": HAPROXY_CFG, "differs": ["content"]}]
        assert any(HAPROXY_CFG in m for m in problems_of(doc, victim)), doc["problems"]
        assert all(p["host"] == victim for p in doc["problems"]), doc["problems"]
        proc, _ = check(json_output=False)
        assert proc.returncode == 1 and proc.stdout.splitlines()[-1] == "degraded"
        assert any(victim in line and HAPROXY_CFG in line for line in proc.stdout.splitlines()), describe(proc)
    finally:
        assert_converged(deploy())  # puts the file back (and reloads haproxy)
    wait_for(lambda: len(holders()) == 1 and api_ok(), 60, what="one VIP holder and the API through the VIP")
    proc, _ = check()
    assert proc.returncode == 0, describe(proc)


def test_the_vip_added_by_hand_on_the_backup_is_broken(steady):
    holder = holders()[0]
    backup = next(m for m in masters() if m != holder)
    sh(backup, f"ip addr add {lab.VIP}/{lab.VIP_PREFIX} dev {lab.INTERFACE}")
    try:
        proc, doc = check()
        assert proc.returncode == 2, describe(proc)
        assert doc["status"] == "broken"
        assert sorted(doc["vip"]["holders"]) == sorted([holder, backup])
        assert doc["masters"][backup]["holds_vip"] is True and doc["masters"][holder]["holds_vip"] is True
        errors = [p for p in doc["problems"] if p["level"] == "error"]
        assert any(backup in p["message"] and holder in p["message"] for p in errors), doc["problems"]
    finally:
        sh(backup, f"ip addr del {lab.VIP}/{lab.VIP_PREFIX} dev {lab.INTERFACE}", check=False)
    # Neighbour caches may point at the backup for a while: wait for the real holder to answer again.
    wait_for(lambda: holders() == [holder] and api_ok(), 90, what="the VIP on its holder only, answering")
    proc, _ = check()
    assert proc.returncode == 0, describe(proc)


def test_a_stopped_apiserver_is_degraded_naming_its_master(steady):
    victim = masters()[-1]
    sh(victim, "systemctl stop kube-apiserver")
    try:
        # haproxy takes its check window (fall 2 x 1 s) to mark it DOWN; the check reports either way.
        def settled():
            proc, doc = check()
            seen = all(m["haproxy"]["backends"].get(victim) == "DOWN" for m in doc["masters"].values())
            return (proc, doc) if seen else None

        proc, doc = wait_for(settled, 30, interval=1, what=f"every haproxy reporting {victim} DOWN")
        assert proc.returncode == 1, describe(proc)
        assert doc["status"] == "degraded" and doc["api_via_vip"]["ok"] is True
        assert doc["masters"][victim]["apiserver"]["active"] is False
        assert doc["masters"][victim]["apiserver"]["readyz"] != "ok"
        assert any("kube-apiserver is not active" in m for m in problems_of(doc, victim)), doc["problems"]
        assert not [p for p in doc["problems"] if p["level"] == "error"], doc["problems"]
    finally:
        sh(victim, "systemctl start kube-apiserver")

    def healthy_again():
        proc, doc = check()
        return proc.returncode == 0

    wait_for(healthy_again, 90, interval=2, what=f"{victim} serving and UP in every haproxy")
