"""The Docker lab itself: systemd containers, TLS etcd, net sysctls, multicast, SSH, CLI contract.

The test lab looks like a real site mid-upgrade: vm01 on Debian 12, the other machines on 13, a
node (vm04), a minimal image (systemd, sshd, sudo: no network tools; those the tests need run
from busybox in a machine's network namespace, ``lab.netshell``).

Needs a Docker daemon (and root for the first image build). Without Docker these tests skip,
except under CI=true, where they fail. The lab is brought up once per session (keeping the current
number of masters) and is left UP at the end; the `down` test runs last and restores it.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time

import pytest

import lab
from lab.images import BASE_REPO, ETCD_REPO

pytestmark = pytest.mark.lab

IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
from .conftest import LAB_LAYOUT  # noqa: E402  the lab every integration test runs on


def run_lab(*args: str, timeout: float = 3600, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m lab ARGS` from the repository root."""
    return subprocess.run([sys.executable, "-m", "lab", *args], cwd=lab.REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr


def labelled(kind: str) -> list[str]:
    args = ["ps", "-aq"] if kind == "container" else ["network", "ls", "-q"]
    out = subprocess.run(["docker", *args, "--filter", "label=hakube.lab=1"],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def started_at(name: str) -> tuple[str, str]:
    info = json.loads(subprocess.run(["docker", "inspect", name], capture_output=True, text=True,
                                     check=True).stdout)[0]
    return info["Id"], info["State"]["StartedAt"]


@pytest.fixture(scope="session")
def lab_up() -> dict:
    """Run `up` once for the session; returns {"masters": n, "names": (...), "seconds": t}."""
    if not lab.docker_available():
        message = "Docker daemon not reachable (the lab tests need Docker)"
        if IN_CI:
            pytest.fail(f"{message}; CI=true, so this is a failure, not a skip")
        pytest.skip(message)
    masters = lab.masters_count()
    started = time.monotonic()
    proc = run_lab("up", "--masters", str(masters), *LAB_LAYOUT)
    assert_ok(proc)
    names = (*lab.master_names(masters), *lab.node_names(), lab.ETCD_NAME)
    return {"masters": masters, "names": names, "seconds": time.monotonic() - started}


def system_state(name: str) -> tuple[str, list[str]]:
    state = lab.docker_exec(name, "systemctl", "is-system-running", "--wait", check=False).stdout.strip()
    failed = lab.docker_exec(name, "systemctl", "list-units", "--state=failed", "--plain", "--no-legend",
                             check=False).stdout.split("\n")
    return state, [line.split()[0] for line in failed if line.strip()]


# --- containers ---------------------------------------------------------------------------------


def test_systemd_running_in_every_container(lab_up):
    for name in lab_up["names"]:
        state, failed = system_state(name)
        assert state in ("running", "degraded"), f"{name}: systemd {state}"
        ours = [u for u in failed if u.startswith("hakube") or (name == lab.ETCD_NAME and u.startswith("etcd"))]
        assert not ours, f"{name}: lab units failed: {ours}"


def test_containers_are_labelled_and_addressed(lab_up):
    for name in lab_up["names"]:
        info = json.loads(subprocess.run(["docker", "inspect", name], capture_output=True, text=True,
                                         check=True).stdout)[0]
        assert info["Config"]["Labels"].get("hakube.lab") == "1"
        assert info["Config"]["Hostname"] == name
        net = info["NetworkSettings"]["Networks"][lab.NETWORK]
        assert net["IPAddress"] == lab.ADDRESSES[name]
        assert lab.docker_exec(name, "hostname", "-I").stdout.split()[0] == lab.ADDRESSES[name]
    network = json.loads(subprocess.run(["docker", "network", "inspect", lab.NETWORK], capture_output=True,
                                        text=True, check=True).stdout)[0]
    assert network["Labels"].get("hakube.lab") == "1"
    assert [c["Subnet"] for c in network["IPAM"]["Config"]] == [lab.SUBNET]
    assert network["IPAM"]["Config"][0]["Gateway"] == lab.GATEWAY


def test_master_image_is_minimal_and_leaves_every_command_to_the_deploy(lab_up):
    images = json.loads(lab.STATE_FILE.read_text())["images"]["base"]
    assert set(images) == {"bookworm", "trixie"}
    for suite, image in images.items():
        proc = subprocess.run(["docker", "run", "--rm", "--network", "none", image,
                               "dpkg-query", "-W", "haproxy", "keepalived", "kubernetes-client"],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0 and "no packages found" in proc.stderr.lower(), proc.stdout + proc.stderr
        tools = subprocess.run(["docker", "run", "--rm", "--network", "none", image, "sh", "-c",
                                "for c in curl ip arping openssl ping sshd sudo systemctl; do "
                                "command -v $c; done; . /etc/os-release; echo $VERSION_CODENAME"],
                               capture_output=True, text=True, timeout=120).stdout.split()
        # (procps' pgrep and sysctl come along with systemd; the deploy installs procps all the same)
        assert tools == ["/usr/sbin/sshd", "/usr/bin/sudo", "/usr/bin/systemctl", suite], (suite, tools)


def test_each_machine_runs_the_debian_it_was_given(lab_up):
    assert lab.status()["os"] == {"vm01": "bookworm", **{n: "trixie" for n in lab_up["names"]
                                                         if n not in ("vm01", lab.ETCD_NAME)}}
    for name, suite in lab.status()["os"].items():
        release = lab.docker_exec(name, "sh", "-c", ". /etc/os-release; echo $VERSION_CODENAME").stdout.strip()
        assert release == suite, name


def test_ssh_as_the_admin_with_sudo_and_checked_host_keys(lab_up):
    import paramiko

    status = lab.status()["ssh"]
    assert status == {"user": lab.SSH_USER, "key": str(lab.SSH_KEY)} and lab.SSH_USER != "root"
    assert stat.S_IMODE(os.stat(lab.SSH_KEY).st_mode) == 0o600
    for name in lab_up["names"]:
        if name == lab.ETCD_NAME:
            continue
        client = paramiko.SSHClient()
        client.load_host_keys(str(lab.KNOWN_HOSTS))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())  # an unknown host key is refused
        client.connect(lab.ADDRESSES[name], username=lab.SSH_USER, key_filename=str(lab.SSH_KEY),
                       look_for_keys=False, allow_agent=False, timeout=10)
        try:
            _, out, _ = client.exec_command("id -un; sudo -n id -u")
            assert out.read().decode().split() == [lab.SSH_USER, "0"], name
        finally:
            client.close()


# --- etcd -----------------------------------------------------------------------------------------


def test_etcd_healthy_over_tls_with_client_cert(lab_up):
    proc = lab.etcdctl("endpoint", "health", check=False)
    assert proc.returncode == 0, proc.stderr
    assert f"{lab.ETCD_ENDPOINT} is healthy" in proc.stdout + proc.stderr


def test_etcd_rejects_client_without_cert(lab_up):
    proc = lab.etcdctl("endpoint", "health", client_cert=False, check=False)
    assert proc.returncode != 0, proc.stdout
    assert "is healthy" not in proc.stdout.replace("is unhealthy", "")
    # ...and plain HTTP is not served at all
    plain = lab.netshell("vm01", "wget", "-q", "-O-", "-T", "5", f"http://{lab.ETCD_ADDRESS}:2379/health")
    assert '"health":"true"' not in plain.stdout


def test_etcd_key_is_private(lab_up):
    out = lab.docker_exec(lab.ETCD_NAME, "stat", "-c", "%a %U", f"{lab.ETCD_PKI}/etcd-server-key.pem").stdout
    assert out.split() == ["600", "etcd"]


# --- kernel knobs and networking -----------------------------------------------------------------


def test_net_sysctls_writable_but_not_vm(lab_up):
    name = lab.master_names(lab_up["masters"])[0]
    knob, vm = "/proc/sys/net/ipv4/ip_nonlocal_bind", "/proc/sys/vm/swappiness"
    # writing the current value back proves writability without changing the deploy's state
    ok = lab.docker_exec(name, "sh", "-c", f"v=$(cat {knob}); echo $v > {knob}",
                         check=False)
    assert ok.returncode == 0, ok.stderr
    denied = lab.docker_exec(name, "sh", "-c", f"v=$(cat {vm}); echo $v > {vm}", check=False)
    assert denied.returncode != 0, "vm.* sysctls must stay read-only in the lab"


def test_masters_reach_each_other_unicast_and_multicast(lab_up):
    a, b = lab.master_names(lab_up["masters"])[:2]
    assert "010000E0" in lab.docker_exec(a, "cat", "/proc/net/igmp").stdout  # 224.0.0.1 joined
    ping = lab.netshell(a, "ping", "-c", "2", "-W", "2", lab.ADDRESSES[b])
    assert ping.returncode == 0, ping.stdout + ping.stderr
    # VRRP is link-local multicast (224.0.0.18). Prove that link-local multicast crosses the
    # bridge: b answers an echo to the all-hosts group once it stops ignoring broadcast echoes.
    knob = "/proc/sys/net/ipv4/icmp_echo_ignore_broadcasts"
    before = lab.docker_exec(b, "cat", knob).stdout.strip()
    try:
        lab.docker_exec(b, "sh", "-c", f"echo 0 > {knob}")
        mping = lab.netshell(a, "ping", "-c", "3", "-W", "2", "-I", lab.INTERFACE, "224.0.0.1")
        assert f"from {lab.ADDRESSES[b]}" in mping.stdout, mping.stdout + mping.stderr
    finally:
        lab.docker_exec(b, "sh", "-c", f"echo {before} > {knob}", check=False)


# --- CLI contract -------------------------------------------------------------------------------


def test_status_prints_only_json(lab_up):
    proc = run_lab("status", timeout=120)
    assert_ok(proc)
    data = json.loads(proc.stdout)  # nothing but JSON on stdout
    assert {"containers", "vip", "vip_holder", "kubeconfig", "ca", "os", "ssh", "nodes"} <= set(data)
    assert data["ssh"] == {"user": lab.SSH_USER, "key": str(lab.SSH_KEY)}
    assert data["os"]["vm01"] == "bookworm" and data["nodes"] == 1
    assert data["vip"] == lab.VIP
    assert data["vip_holder"] in (None, *lab.master_names(lab_up["masters"]))
    assert set(data["containers"]) == set(lab_up["names"])
    for name, entry in data["containers"].items():
        assert entry == {"address": lab.ADDRESSES[name], "state": "running"}
    assert data["ca"] == str(lab.CA_PEM) and os.path.exists(data["ca"])
    assert data["kubeconfig"] in (None, str(lab.ADMIN_KUBECONFIG))


def test_make_lab_status_prints_only_json(lab_up):
    if shutil.which("make") is None or not os.access(lab.REPO / ".venv/bin/python", os.X_OK):
        pytest.skip("make or .venv missing")
    # from the repo root, as documented (GNU make 4.3 prints "Entering directory" for -C itself)
    proc = subprocess.run(["make", "lab-status"], cwd=lab.REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["vip"] == lab.VIP


def test_vrrp_password_file(lab_up):
    mode = stat.S_IMODE(os.stat(lab.VRRP_PASS_FILE).st_mode)
    assert mode == 0o600
    assert re.fullmatch(r"[A-Za-z0-9]{8}", lab.vrrp_auth_pass())
    state = json.loads(lab.STATE_FILE.read_text())
    assert state["masters"] == lab_up["masters"]


def test_status_and_up_handle_a_paused_master(lab_up):
    name = lab.master_names(lab_up["masters"])[-1]
    subprocess.run(["docker", "pause", name], check=True, capture_output=True)
    try:
        data = lab.status()
        assert data["containers"][name]["state"] == "paused"
        assert data["vip_holder"] != name
        assert_ok(run_lab("up", "--masters", str(lab_up["masters"])))
        assert lab.container_state(name) == "running"
    finally:
        if lab.container_state(name) == "paused":
            subprocess.run(["docker", "unpause", name], capture_output=True)


def test_second_up_is_fast_and_restarts_nothing(lab_up):
    before = {n: started_at(n) for n in lab_up["names"]}
    started = time.monotonic()
    proc = run_lab("up", "--masters", str(lab_up["masters"]), timeout=300)
    seconds = time.monotonic() - started
    assert_ok(proc)
    assert seconds < 60, f"second up took {seconds:.1f}s"
    assert {n: started_at(n) for n in lab_up["names"]} == before
    assert "(re)starting etcd" not in proc.stderr  # unchanged files: etcd keeps running


def test_foreign_container_name_is_a_clear_error(lab_up):
    if lab_up["masters"] == 3:
        pytest.skip("vm03 is in use")
    image = json.loads(lab.STATE_FILE.read_text())["images"]["base"]["trixie"]
    subprocess.run(["docker", "create", "--name", "vm03", "--network", "none", image, "true"],
                   check=True, capture_output=True)
    try:
        proc = run_lab("up", "--masters", "2", timeout=300)
        assert proc.returncode == 1
        assert "Traceback" not in proc.stderr
        assert re.search(r"^lab: error: a container named vm03 exists but was not created by the lab",
                         proc.stderr, re.M), proc.stderr
    finally:
        subprocess.run(["docker", "rm", "-f", "vm03"], capture_output=True)


def test_unreachable_docker_is_a_clear_error(lab_up, tmp_path):
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-such-docker.sock"}
    proc = run_lab("status", env=env, timeout=120)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith("lab: error: Docker daemon not reachable"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_health_without_or_with_kubeconfig(lab_up):
    proc = run_lab("health", timeout=120)
    assert "Traceback" not in proc.stderr
    if not lab.ADMIN_KUBECONFIG.exists():
        assert proc.returncode == 1
        assert proc.stderr.startswith("lab: error: no admin kubeconfig"), proc.stderr
    else:
        assert proc.returncode in (0, 1)
        if proc.returncode == 0:
            assert proc.stdout.strip() == "ok"


def test_mirror_is_read_from_apt_sources(tmp_path, monkeypatch):
    from lab.tools import detect_mirror

    monkeypatch.delenv("HAKUBE_MIRROR", raising=False)
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n"
        "Components: main\n\n"
        "Types: deb deb-src\n# a comment\nURIs: http://mirror.example/debian/\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n")
    assert detect_mirror(str(tmp_path)) == "http://mirror.example/debian"
    (tmp_path / "sources.list.d" / "debian.sources").unlink()
    (tmp_path / "sources.list").write_text(
        "deb http://security.example/debian-security bookworm-security main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://other.example/debian bookworm main\n")
    assert detect_mirror(str(tmp_path)) == "http://other.example/debian"


# --- keep last: down removes only the lab, then the lab is restored ----------------------------


def test_down_removes_lab_then_up_restores_it(lab_up):
    images_before = subprocess.run(["docker", "images", "-q"], capture_output=True, text=True,
                                   check=True).stdout.split()
    try:
        assert_ok(run_lab("down", timeout=300))
        assert labelled("container") == []
        assert labelled("network") == []
        assert_ok(run_lab("down", timeout=300))  # idempotent
        images_after = subprocess.run(["docker", "images", "--format", "{{.Repository}}"],
                                      capture_output=True, text=True, check=True).stdout.split()
        assert BASE_REPO in images_after and ETCD_REPO in images_after
        assert set(images_before) <= set(subprocess.run(["docker", "images", "-q"], capture_output=True,
                                                        text=True, check=True).stdout.split())
        assert lab.kubectl_path().exists() and lab.apiserver_path().exists()
    finally:
        # bring the lab back so others can keep using it
        assert_ok(run_lab("up", "--masters", str(lab_up["masters"])))
    for name in lab_up["names"]:
        assert system_state(name)[0] in ("running", "degraded")
    assert lab.etcd_healthy()
