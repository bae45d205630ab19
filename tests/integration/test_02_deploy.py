"""The deploy on the real lab (issue 3): converge, idempotence, dry runs, certificates, RBAC.

As on a real site, every deploy here reaches the machines over SSH as the lab's non-root admin,
root through sudo (``LAB_CONNECT=ssh``): vm01 on Debian 12, vm02 and the node vm04 on Debian 13.

Runs after test_01_lab, whose last test leaves a freshly created lab: the first tests here see
masters that have never been deployed to.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from cryptography import x509

import lab
from hakube.tasks import packages

from .conftest import (
    REPO,
    api_get,
    assert_converged,
    assert_no_change,
    client_context,
    config_checksums,
    deploy,
    host_snapshot,
    masters,
    sh,
)

pytestmark = pytest.mark.lab

SSH = {"LAB_CONNECT": "ssh"}
LAYOUT = ("--masters", "2", "--os", "mixed", "--nodes", "1")


@pytest.fixture(scope="module")
def fresh_lab():
    """A lab nobody deployed to yet (recreated when a previous run left one behind)."""
    subprocess.run([sys.executable, "-m", "lab", "up", *LAYOUT], cwd=REPO, check=True, capture_output=True)
    if any(sh(m, "test -e /etc/kubernetes", check=False).returncode == 0 for m in (*lab.master_names(2), "vm04")):
        for cmd in (["down"], ["up", *LAYOUT]):
            proc = subprocess.run([sys.executable, "-m", "lab", *cmd], cwd=REPO, capture_output=True, text=True)
            assert proc.returncode == 0, proc.stderr
    return lab.master_names(2)


@pytest.fixture(scope="module")
def first_apply(fresh_lab):
    before = {m: host_snapshot(m) for m in fresh_lab}
    dry = deploy(dry=True, env=SSH)
    after = {m: host_snapshot(m) for m in fresh_lab}
    apply = deploy(env=SSH)
    return {"dry": dry, "before": before, "after_dry": after, "apply": apply}


def test_dry_run_on_a_fresh_lab_lists_operations_and_touches_nothing(first_apply):
    dry = first_apply["dry"]
    assert dry.returncode == 0, dry.describe()
    planned = dry.planned_changes()
    for op in ("Install /etc/kubernetes/ssl/apiserver.pem", "Install /etc/haproxy/haproxy.cfg",
               "Install /etc/keepalived/keepalived.conf", f"Install {', '.join(packages.PACKAGES + packages.METRICS_PACKAGES)}"):
        hosts = next((h for name, h in planned.items() if name.endswith(op)), None)
        assert hosts == ["vm01", "vm02"], f"{op}: {hosts}\n{sorted(planned)}"
    assert first_apply["before"] == first_apply["after_dry"], "--dry changed something on a host"


def test_first_apply_converges_and_the_api_answers_through_the_vip(first_apply):
    run = first_apply["apply"]
    assert_converged(run)
    changed = run.changed()
    assert changed, "the first apply changed nothing"
    readyz = lab.kubectl("get", "--raw", "/readyz", check=False)
    assert readyz.returncode == 0 and readyz.stdout.strip() == "ok", readyz.stderr
    server = lab.kubectl("config", "view", "-o", "jsonpath={.clusters[0].cluster.server}").stdout
    assert server == f"https://{lab.VIP}:6443"


def test_rbac_binding_exists(first_apply):
    out = lab.kubectl("get", "clusterrolebinding", "kube-apiserver:kubelet-apis",
                      "-o", "jsonpath={.roleRef.name} {.subjects[0].kind}/{.subjects[0].name}").stdout
    assert out == "system:kubelet-api-admin User/kubernetes"


def test_second_apply_changes_nothing(first_apply):
    assert_no_change(deploy(env=SSH))


def test_the_same_lab_through_docker_exec_is_converged_too(first_apply):
    """The files do not depend on how the deploy reaches a host (SSH + sudo or docker exec)."""
    assert_no_change(deploy())


def test_the_node_gets_etc_kubernetes_config_and_nothing_else(first_apply):
    listing = sh("vm04", "find /etc/kubernetes /etc/haproxy /etc/keepalived /root/.kube /usr/local/bin "
                         "-type f 2>/dev/null; systemctl list-unit-files --no-legend 'kube*' 'haproxy*' 'keepalived*'; "
                         "command -v haproxy keepalived kubectl; true").stdout.split()
    assert listing == ["/etc/kubernetes/config"], listing
    config = sh("vm04", "cat /etc/kubernetes/config").stdout
    assert f'KUBE_MASTER_SECURE="--master=https://{lab.VIP}:6443"' in config, config


def test_over_sudo_the_uploads_pass_through_a_private_directory(first_apply):
    for m in (*masters(), "vm04"):
        assert sh(m, "stat -c '%a %U' /var/lib/hakube/upload").stdout.split() == ["700", lab.SSH_USER], m
        assert sh(m, "ls /var/lib/hakube/upload /tmp | grep -c pyinfra- || true").stdout.strip() == "0", m


def test_dry_run_on_the_converged_lab_reports_nothing(first_apply):
    before = config_checksums()
    dry = deploy(dry=True, env=SSH)
    assert dry.returncode == 0, dry.describe()
    assert dry.planned_changes() == {}
    assert config_checksums() == before


def test_served_certificate_verifies_and_holds_the_vip_and_masters(first_apply, tmp_path):
    served = tmp_path / "served.pem"
    proc = subprocess.run(
        f"openssl s_client -connect {lab.VIP}:6443 -servername kubernetes </dev/null 2>/dev/null "
        f"| openssl x509 > {served}", shell=True)
    assert proc.returncode == 0
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(lab.PKI_DIR / "ca.pem"), str(served)],
                            capture_output=True, text=True)
    assert verify.returncode == 0 and ": OK" in verify.stdout, verify.stdout + verify.stderr
    cert = x509.load_pem_x509_certificate(served.read_bytes())  # the one openssl just verified
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    assert {lab.VIP, *(lab.MASTERS[m] for m in masters()), "127.0.0.1", "10.254.0.1"} <= ips
    assert "kubernetes.default.svc.cluster.local" in sans.get_values_for_type(x509.DNSName)


def test_every_key_on_the_masters_is_0600_and_root_owned(first_apply):
    for m in masters():
        listing = sh(m, "find /etc/kubernetes /etc/haproxy /etc/keepalived /root/.kube -type f "
                        r"\( -name '*key*' -o -name 'healthcheck.pem' -o -name config -path '*/.kube/*' \) "
                        "-exec stat -c '%a %U %n' {} +").stdout.split("\n")
        keys = [line for line in listing if line]
        assert len(keys) >= 5, listing
        assert all(line.startswith("600 root ") for line in keys), keys


def test_anonymous_request_is_refused(first_apply):
    status, _ = api_get(ctx=client_context(cert=""))
    assert status == 401
