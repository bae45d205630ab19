"""The HA promises, shown in the lab (issue 4). Each test asserts on what a client sees through the VIP.

Every test leaves the lab converged: one VIP holder, haproxy/keepalived/apiservers running, the
deploy's data as in inventory.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest

import lab
from hakube import pki
from hakube.paths import PATHS

from .conftest import (
    PYINFRA,
    REPO,
    Prober,
    api_get,
    api_ok,
    assert_converged,
    assert_no_change,
    client_context,
    config_checksums,
    deploy,
    holders,
    masters,
    sh,
    variant_inventory,
    wait_for,
)

pytestmark = pytest.mark.lab

ADVERT_INT = 1  # inventory.py
CHECK_INTERVAL = 1.0  # haproxy_check_interval_ms default, in seconds
CHECK_FALL, CHECK_RISE = 2, 2
SHUTDOWN_DELAY = 5  # shutdown_delay_seconds default


def settle(timeout: float = 20) -> str:
    """Wait until exactly one master holds the VIP and the API answers through it; return the holder."""

    def one_holder_and_ok():
        h = holders()
        return h[0] if len(h) == 1 and api_ok() else None

    return wait_for(one_holder_and_ok, timeout, interval=0.2, what="one VIP holder and /readyz ok")


@pytest.fixture
def healthy(converged):
    """Before and after each test: all services up on every master, one holder, API ok."""
    for m in masters():
        sh(m, "systemctl start haproxy keepalived kube-apiserver")
    settle()
    yield
    for m in masters():
        if lab.container_state(m) == "paused":
            subprocess.run(["docker", "unpause", m], check=False)
        sh(m, "systemctl start haproxy keepalived kube-apiserver")
    settle(30)


def journal_since(name: str, unit: str, since: str) -> str:
    return sh(name, f"journalctl -u {unit} --since '{since}' --no-pager -o short-iso", check=False).stdout


def now_on(name: str) -> str:
    return sh(name, "date '+%Y-%m-%d %H:%M:%S'").stdout.strip()


# 1 -----------------------------------------------------------------------------------------------


def test_haproxy_dies_on_the_holder_and_the_vip_moves(healthy):
    holder = settle()
    started = time.monotonic()
    sh(holder, "systemctl stop haproxy")
    new = wait_for(lambda: (h := holders()) and h[0] != holder and len(h) == 1 and api_ok() and h[0], 30,
                   what="the VIP on another master, answering")
    failover = time.monotonic() - started
    limit = 4 * ADVERT_INT + 2
    print(f"\nfailover after haproxy died on {holder}: {failover:.2f}s (new holder {new}, limit {limit}s)")
    assert failover <= limit
    status, body = api_get()
    assert (status, body.strip()) == (200, "ok")


# 2 -----------------------------------------------------------------------------------------------


def test_the_holder_is_lost_and_comes_back_without_split_brain(healthy):
    holder = settle()
    started = time.monotonic()
    subprocess.run(["docker", "pause", holder], check=True)
    try:
        new = wait_for(lambda: (h := holders()) and h[0] != holder and api_ok() and h[0], 30,
                       what="the VIP on a surviving master")
        print(f"\nfailover after {holder} was lost: {time.monotonic() - started:.2f}s (new holder {new})")
    finally:
        subprocess.run(["docker", "unpause", holder], check=True)
    unpaused = time.monotonic()
    wait_for(lambda: len(holders()) == 1, 3 * ADVERT_INT + 1, what="exactly one holder after unpause")
    settled_after = time.monotonic() - unpaused
    # From then on, never two holders at once.
    seen = []
    for _ in range(20):
        seen.append(holders())
        time.sleep(0.1)
    assert all(len(h) == 1 for h in seen), seen
    print(f"one holder {settled_after:.2f}s after unpause: {seen[-1][0]}")
    settle()
    assert_no_change(deploy())


def test_restarting_keepalived_on_the_former_holder_does_not_take_the_vip_back(healthy):
    former = settle()
    sh(former, "systemctl stop haproxy")
    new = wait_for(lambda: (h := holders()) and h[0] != former and len(h) == 1 and h[0], 30, what="failover")
    sh(former, "systemctl start haproxy")
    time.sleep(CHECK_RISE + 1)  # the former holder's haproxy check is healthy again
    sh(former, "systemctl restart keepalived")
    for _ in range(int((4 * ADVERT_INT + 2) / 0.25)):  # well past keepalived's master-down timer
        assert holders() == [new]
        time.sleep(0.25)
    assert api_ok()


# 3 -----------------------------------------------------------------------------------------------


def test_a_stopped_apiserver_leaves_rotation_within_the_check_window_and_returns(healthy):
    """``systemctl stop`` by hand (no drain): the apiserver serves the API through its shutdown
    delay, then stops listening; haproxy's /livez check marks it DOWN within the check window after
    that, and meanwhile a connection it refuses is redispatched. Reads on a new connection each
    (a namespace: /readyz itself fails on purpose during the delay) fail not once."""
    victim = masters()[-1]
    since = now_on(victim)
    window = SHUTDOWN_DELAY + CHECK_INTERVAL * (CHECK_FALL + 1) + 1
    with Prober(0.1, path="/api/v1/namespaces/default") as probe:
        time.sleep(1)
        sh(victim, "systemctl stop kube-apiserver")
        time.sleep(window + 1)
    print(f"\n{len(probe.samples)} calls, {len(probe.failures)} failed")
    assert probe.failures == [], probe.failures[:10]
    assert len(probe.samples) > 30
    wait_for(lambda: all(f"kube_api/{victim} is DOWN" in journal_since(m, "haproxy", since) for m in masters()),
             5, what="every haproxy marking the apiserver DOWN")

    sh(victim, "systemctl start kube-apiserver")
    wait_for(lambda: all(f"kube_api/{victim} is UP" in journal_since(m, "haproxy", since) for m in masters()),
             60, what="the apiserver back in rotation on every haproxy")


# 4 -----------------------------------------------------------------------------------------------


def _restart_window(name: str) -> tuple[int, int]:
    """(stop began, active again) of kube-apiserver, in the shared kernel's monotonic microseconds."""
    out = sh(name, "systemctl show kube-apiserver -p ActiveExitTimestampMonotonic -p ActiveEnterTimestampMonotonic").stdout
    values = dict(line.split("=", 1) for line in out.split())
    return int(values["ActiveExitTimestampMonotonic"]), int(values["ActiveEnterTimestampMonotonic"])


# The rolling apply under real clients (and its restart windows) is test_13_real_clients.py.


# 5 -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, live_file, service, validator_says",
    [
        ({"haproxy_extra_defaults": ["option no-such-option"]}, "/etc/haproxy/haproxy.cfg", "haproxy",
         "unknown option 'no-such-option'"),
        ({"keepalived_extra_global_defs": ["no_such_keyword 1"]}, "/etc/keepalived/keepalived.conf", "keepalived",
         "Unknown keyword 'no_such_keyword'"),
    ],
    ids=["haproxy", "keepalived"],
)
def test_a_broken_config_never_goes_live(healthy, tmp_path, data, live_file, service, validator_says):
    before = {m: sh(m, f"sha256sum {live_file}; systemctl show -p MainPID --value {service}").stdout for m in masters()}
    run = deploy(variant_inventory(tmp_path, cluster=data))
    assert run.returncode != 0
    assert validator_says in run.output, run.describe()
    for m in masters():
        assert f"[@docker/{m}] validation failed: {live_file} left unchanged" in run.output, run.describe()
    after = {m: sh(m, f"sha256sum {live_file}; systemctl show -p MainPID --value {service}").stdout for m in masters()}
    assert after == before, "the live file or the running daemon changed"
    assert api_ok()
    assert_converged(deploy())  # valid data: converges
    assert api_ok()


# 6 -----------------------------------------------------------------------------------------------


def _being_restarted() -> str | None:
    """The master whose apiserver the deploy is restarting right now (it is drained meanwhile)."""
    for m in masters():
        if sh(m, f"test -e {PATHS.agent_state}", check=False).returncode == 0:
            return m
    return None


def test_partial_failure_names_the_host_and_the_rest_converges(healthy, tmp_path):
    """A master is paused while the apply runs: during the other master's turn of the serial
    apiserver restart, when pyinfra has no command in flight on it. (pyinfra's serial order is not
    fixed, so the test looks which master is being restarted. An exec caught mid-start by
    `docker pause` wedges this Docker engine, so the pause is timed, not random.)"""
    changed_inv = variant_inventory(tmp_path, cluster={"apiserver_extra_flags": {"max-requests-inflight": 402}})
    proc = subprocess.Popen([PYINFRA, "-y", str(changed_inv), "deploy.py"], cwd=REPO, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    output, first, victim = [], None, None
    try:
        for line in proc.stdout:
            output.append(line)
            if victim is None and "operation: kube-apiserver | Restart kube-apiserver" in line:  # serial op
                first = wait_for(_being_restarted, 20, interval=0.1, what="the first master's restart")
                victim = next(m for m in masters() if m != first)
                subprocess.run(["docker", "pause", victim], check=True)
        proc.wait(timeout=300)
    finally:
        if victim:
            subprocess.run(["docker", "unpause", victim], check=True, timeout=60)
    text = "".join(output)
    assert victim, text[-3000:]
    assert proc.returncode != 0, text[-3000:]
    assert re.search(rf"\[@docker/{victim}\] .*(paused|Error)", text), text[-3000:]
    # The other master went on: the new flag is in its file and in its running apiserver.
    running = "tr '\\0' ' ' < /proc/$(systemctl show -p MainPID --value kube-apiserver)/cmdline"
    assert "--max-requests-inflight=402" in sh(first, "cat /etc/kubernetes/apiserver").stdout
    assert "--max-requests-inflight=402" in sh(first, running).stdout
    settle(30)
    run = deploy(changed_inv)
    assert_converged(run)
    assert "--max-requests-inflight=402" in sh(victim, running).stdout  # the restart it was owed
    assert_no_change(deploy(changed_inv))
    assert_converged(deploy())  # back to inventory.py's data


# 7 -----------------------------------------------------------------------------------------------

BAD = {
    "bind-0.0.0.0": ({}, {"vm01": {"bind_address": "0.0.0.0"}}, "vm01: bind_address"),
    "bind-loopback": ({}, {"vm02": {"bind_address": "127.0.0.1"}}, "vm02: bind_address"),
    "bind-not-an-ip": ({}, {"vm01": {"bind_address": "10.213.0.300"}}, "vm01: bind_address"),
    "vip-invalid": ({"vip": "10.213.0"}, {}, "vm01: vip"),
    "vip-outside-subnet": ({"vip": "10.99.0.100"}, {}, "vm01: vip"),
    "priority-duplicate": ({}, {"vm02": {"vrrp_priority": 120}}, "vm02: vrrp_priority"),
    "priority-out-of-range": ({}, {"vm01": {"vrrp_priority": 300}}, "vm01: vrrp_priority"),
    "vrid-zero": ({"virtual_router_id": 0}, {}, "vm01: virtual_router_id"),
    "vrid-256": ({"virtual_router_id": 256}, {}, "vm01: virtual_router_id"),
    "auth-pass-too-long": ({}, {}, "vm01: vrrp_auth_pass_file"),
    "auth-pass-missing": ({"vrrp_auth_pass_file": "/nonexistent/pass"}, {}, "vm01: vrrp_auth_pass_file"),
    "service-cidr-invalid": ({"service_cluster_ip_range": "10.254.0.0/33"}, {}, "vm01: service_cluster_ip_range"),
    "node-port-range-reversed": ({"service_node_port_range": "32767-30000"}, {}, "vm01: service_node_port_range"),
    "etcd-http": ({"etcd_servers": ["http://10.213.0.20:2379"]}, {}, "vm01: etcd_servers"),
    "kube-version-unsupported": ({"kube_version": "1.25.0"}, {}, "vm01: kube_version"),
    "extra-flag-unknown": ({"apiserver_extra_flags": {"no-such-flag": "1"}}, {}, "vm01: apiserver_extra_flags"),
    "extra-flag-removed": ({"apiserver_extra_flags": {"kubelet-https": "true"}, "kube_version": "1.36.0",
                            "kube_apiserver_binary": None, "kube_apiserver_sha256": "0" * 64}, {},
                           "vm01: apiserver_extra_flags"),
    "ca-import-missing": ({"ca_cert_file": "/nonexistent/ca.pem", "ca_key_file": "/nonexistent/ca-key.pem"}, {},
                          "vm01: ca_cert_file"),
    "interface-missing": ({}, {"vm02": {"vrrp_interface": None}}, "vm02: vrrp_interface"),
}


# The VRRP password comes from the environment first: this case sets a 21-character one.
ENV = {"auth-pass-too-long": {"HAKUBE_VRRP_AUTH_PASS": "way-too-long-password"}}


@pytest.mark.parametrize("case", sorted(BAD), ids=sorted(BAD))
def test_bad_inventory_is_refused_before_any_host_is_touched(converged, tmp_path, case):
    cluster, hosts, expected = BAD[case]
    env = ENV.get(case, {"HAKUBE_VRRP_AUTH_PASS": ""})
    before = config_checksums()
    run = deploy(variant_inventory(tmp_path, cluster=cluster, hosts=hosts), env=env, timeout=120)
    assert run.returncode != 0
    line = next((ln for ln in run.output.splitlines() if f"@docker/{expected}" in ln), None)
    assert line, f"no line naming @docker/{expected}:\n{run.output[-3000:]}"
    assert "no host was changed" in run.output
    assert "Starting operation" not in run.output
    assert config_checksums() == before


# 8 -----------------------------------------------------------------------------------------------


def test_anonymous_and_foreign_ca_clients_are_refused(converged, tmp_path):
    status, _ = api_get(ctx=client_context(cert=""))
    assert status == 401
    other = pki.ensure_ca(tmp_path / "other")
    cert = pki.ensure_cert(tmp_path / "other", pki.CertSpec(name="intruder", common_name="admin",
                                                            organizations=("system:masters",), client=True), other)
    ctx = client_context(cert="")
    ctx.load_cert_chain(str(tmp_path / "other" / "intruder.pem"), str(tmp_path / "other" / "intruder-key.pem"))
    status, detail = api_get(ctx=ctx)
    assert status in (0, 401), (status, detail)  # TLS handshake refused, or not authenticated
    assert cert.issued
    status, body = api_get()
    assert (status, body.strip()) == (200, "ok")  # the real admin certificate still works


def test_private_keys_are_0600_root_and_the_ca_key_is_on_no_host(converged):
    ca_key_body = [ln for ln in (lab.PKI_DIR / "ca-key.pem").read_text().splitlines() if not ln.startswith("-----")]
    needle = ca_key_body[len(ca_key_body) // 2]
    for m in masters():
        keys = sh(m, "find / -xdev -type f \\( -name '*key*.pem' -o -name healthcheck.pem \\) "
                     "-not -path '/proc/*' -exec stat -c '%a %U %n' {} +", check=False).stdout.split("\n")
        keys = [k for k in keys if k]
        assert keys and all(k.startswith("600 root ") for k in keys), keys
        found = sh(m, f"grep -rlF -- '{needle}' /etc /root /var /tmp /usr/local /opt /home 2>/dev/null", check=False)
        assert found.stdout.strip() == "", f"CA key material on {m}: {found.stdout}"


def test_no_file_in_the_repository_contains_the_vrrp_password(converged):
    password = lab.vrrp_auth_pass()
    assert password and len(password) <= 8
    tracked = subprocess.run(["git", "grep", "-l", "-F", "-e", password], cwd=REPO, capture_output=True, text=True)
    assert tracked.stdout.strip() == "", f"tracked files contain the VRRP password: {tracked.stdout}"
    ignored = subprocess.run(["git", "check-ignore", str(lab.VRRP_PASS_FILE)], cwd=REPO, capture_output=True, text=True)
    assert ignored.returncode == 0
    for m in masters():
        assert sh(m, "stat -c %a /etc/keepalived/keepalived.conf").stdout.strip() == "600"
