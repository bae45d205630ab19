"""Never make it worse (issue 8), shown in the lab with a client calling /readyz through the VIP.

* a checkout that does not hold the masters' CA is refused by --dry and by apply, nothing changes;
* a change the apiserver cannot run (a broken binary, a flag value only the binary rejects) is
  rolled back on the first master and the run stops: zero failed calls, every other master
  untouched, nothing of the failed change left on any master, and a re-run with good data
  converges;
* a mode-only repair restarts nothing;
* no secret in the output of a --debug --diff run that changes keepalived.conf and a key.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import time
from pathlib import Path

import pytest

import lab

from .conftest import (
    ROLL_TOLERANCE,
    PYINFRA,  # noqa: F401
    REPO,
    Prober,
    api_get,
    api_ok,
    assert_converged,
    assert_no_change,
    client_context,
    config_checksums,
    deploy,
    masters,
    sh,
    variant_inventory,
    wait_for,
)

pytestmark = pytest.mark.lab

RESTART = "kube-apiserver | Restart kube-apiserver, one master at a time, waiting for /readyz"
INPUT_DIRS = "/etc/kubernetes /etc/systemd/system/kube-apiserver.service /usr/local/bin"


def apiserver_inputs(name: str) -> str:
    """sha256, mode and owner of every apiserver input on a master (staged copies included)."""
    return sh(name, f"find {INPUT_DIRS} -type f 2>/dev/null | sort | "
                    "while read f; do echo \"$(sha256sum < \"$f\") $(stat -c %a:%U \"$f\") $f\"; done").stdout


def apiserver_pid(name: str) -> str:
    return sh(name, "systemctl show -p MainPID --value kube-apiserver").stdout.strip()


def serves(name: str) -> bool:
    status, body = api_get(host=lab.MASTERS[name], ctx=client_context(), timeout=2)
    return status == 200 and body.strip() == "ok"


@pytest.fixture
def steady(converged):
    wait_for(api_ok, 30, what="the API through the VIP")
    yield
    assert_converged(deploy())  # inventory.py's data again
    wait_for(api_ok, 30, what="the API through the VIP")


# 0 -- the hosts' CA is the truth ------------------------------------------------------------------


def test_a_fresh_clone_is_refused_and_changes_nothing(steady, tmp_path):
    clone = tmp_path / "clone"
    shutil.copytree(REPO, clone, ignore=shutil.ignore_patterns(".git", ".venv", ".lab", "pki", "artifacts",
                                                               "__pycache__", "*.egg-info"))
    host_ca = hashlib.sha256((lab.PKI_DIR / "ca.pem").read_bytes()).hexdigest()  # what the masters hold
    env = {"HAKUBE_VRRP_AUTH_PASS": lab.vrrp_auth_pass()}
    before = config_checksums()
    with Prober(0.1, real=True, tolerated=ROLL_TOLERANCE) as probe:
        runs = [deploy(clone / "inventory.py", dry=True, env=env, cwd=clone),
                deploy(clone / "inventory.py", env=env, cwd=clone)]
    for run in runs:
        assert run.returncode != 0, run.describe()
        assert "refusing to run: the masters' trust anchors are not this checkout's" in run.output, run.describe()
        for m in masters():
            assert f"@docker/{m}: /etc/kubernetes/ssl/ca.pem (CA certificate) sha256 {host_ca}" in run.output
        assert "Starting operation" not in run.output
    assert config_checksums() == before
    assert not (clone / "pki" / "ca.pem").exists(), "the refused run created a CA of its own"
    print(f"\nfresh clone refused ({runs[0].seconds:.1f}s dry, {runs[1].seconds:.1f}s apply); "
          f"{len(probe.samples)} calls through the VIP, {len(probe.failures)} failed")
    assert len(probe.samples) > 10 and probe.failures == []


# 1 -- a roll that stops and rolls back ---------------------------------------------------------


def _broken_binary(tmp_path: Path) -> dict:
    path = tmp_path / "kube-apiserver-broken"
    path.write_text("#!/bin/sh\necho 'broken build: exits at once' >&2\nexit 1\n")
    path.chmod(0o755)
    return {"kube_apiserver_binary": str(path)}


CASES = {
    "broken-binary": (_broken_binary, "broken build: exits at once"),
    # Passes validation (a word), but only the binary knows --profiling takes a bool.
    "flag-value-only-the-binary-rejects": (lambda _: {"apiserver_extra_flags": {"profiling": "maybe"}},
                                           'invalid argument "maybe"'),
}


def roll_back_and_stop(tmp_path, data: dict, journal_says: str) -> dict:
    names = masters()
    inputs = {m: apiserver_inputs(m) for m in names}
    pids = {m: apiserver_pid(m) for m in names}
    with Prober(0.1, real=True, tolerated=ROLL_TOLERANCE) as probe:
        run = deploy(variant_inventory(tmp_path, cluster=data))
        time.sleep(1)
    out = run.output
    assert run.returncode != 0, run.describe()
    rolled = re.findall(r"(vm\d+): kube-apiserver rolled back: its previous inputs are live again and it serves", out)
    assert len(rolled) == 1, out[-4000:]
    first = rolled[0]
    assert journal_says in out, out[-4000:]  # the apiserver's own last words are shown
    for m in names:
        if m != first:
            assert f"[@docker/{m}] kube-apiserver not touched here: the roll stopped at @docker/{first}" in out
        # Nothing of the failed change is live (or staged) anywhere; the others kept their process.
        assert apiserver_inputs(m) == inputs[m], f"{m}'s apiserver inputs changed"
        assert sh(m, f"find {INPUT_DIRS} -name '*.new'", check=False).stdout.strip() == ""
    for m in names:
        if m != first:
            assert apiserver_pid(m) == pids[m], f"{m}'s apiserver was restarted"
    assert apiserver_pid(first) != pids[first]  # it was restarted twice: into the change, and back
    assert serves(first)
    print(f"\nrolled back on {first} in a {run.seconds:.1f}s run; {len(probe.samples)} calls through the VIP, "
          f"{len(probe.failures)} failed")
    assert len(probe.samples) > 50
    assert probe.failures == [], probe.failures[:5]
    return {"first": first, "run": run}


@pytest.mark.parametrize("case", sorted(CASES), ids=sorted(CASES))
def test_a_change_the_apiserver_cannot_run_is_rolled_back_and_the_run_stops(steady, tmp_path, case):
    make_data, journal_says = CASES[case]
    roll_back_and_stop(tmp_path, make_data(tmp_path), journal_says)
    assert_no_change(deploy())  # good data: nothing left over to converge


def test_a_mode_only_repair_restarts_nothing(steady):
    m = masters()[0]
    pid = apiserver_pid(m)
    sh(m, "chmod 0640 /etc/kubernetes/apiserver")
    plan = deploy(dry=True)
    assert plan.returncode == 0, plan.describe()
    assert plan.planned_changes() == {"kube-apiserver | Install /etc/kubernetes/apiserver": [f"@docker/{m}"]}
    run = deploy()
    assert_converged(run)
    assert run.changed() == {"kube-apiserver | Install /etc/kubernetes/apiserver": [f"@docker/{m}"]}
    assert sh(m, "stat -c %a /etc/kubernetes/apiserver").stdout.strip() == "644"
    assert apiserver_pid(m) == pid


# 3 -- secrets have no window, and never reach the output ----------------------------------------


def test_no_secret_in_debug_diff_output(steady, tmp_path):
    m = masters()[0]
    # keepalived.conf (holds the VRRP password) and a private key both change in this run.
    sh(m, "rm -f /etc/kubernetes/ssl/apiserver-kubelet-client-key.pem")
    inv = variant_inventory(tmp_path, cluster={"keepalived_extra_global_defs": ["vrrp_garp_master_repeat 2"]})
    proc = deploy(inv, extra_args=["--debug", "--diff"])
    assert_converged(proc)
    out = proc.output
    assert "Install /etc/keepalived/keepalived.conf" in out and "apiserver-kubelet-client-key.pem" in out
    password = lab.vrrp_auth_pass()
    assert password not in out
    for name in ("apiserver-kubelet-client-key.pem", "sa-key.pem", "admin-key.pem", "ca-key.pem"):
        body = [ln for ln in (lab.PKI_DIR / name).read_text().splitlines() if not ln.startswith("-----")]
        for line in body[1:-1:5]:
            assert line not in out, f"key material of {name} in the output"
    assert_converged(deploy())
    modes = sh(m, "stat -c '%a %U %n' /etc/kubernetes/ssl/*-key.pem /etc/keepalived/keepalived.conf "
                  "/root/.kube/config /etc/haproxy/pki/healthcheck.pem").stdout.split("\n")
    assert all(line.startswith("600 root ") for line in modes if line), modes
