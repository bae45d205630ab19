"""Day two (issue 11): certificates renewed inside their window, and Secrets encrypted at rest with a
key rotation — each change rolled out while a client calls /readyz through the VIP every 100 ms.

Every test leaves the lab as inventory.py describes it (one-year certificates, key1).
"""
from __future__ import annotations

import base64
import json
import re
import subprocess
import sys

import pytest

import lab
from hakube import pki

from .conftest import (
    ROLL_TOLERANCE,
    REPO,
    Prober,
    assert_converged,
    assert_no_change,
    deploy,
    masters,
    sh,
    variant_inventory,
)

pytestmark = pytest.mark.lab

#: every certificate the deploy issues and where the masters (or the deploy machine) hold it
CERTS = {
    "apiserver": "/etc/kubernetes/ssl/apiserver.pem",
    "apiserver-etcd-client": "/etc/kubernetes/ssl/apiserver-etcd-client.pem",
    "apiserver-kubelet-client": "/etc/kubernetes/ssl/apiserver-kubelet-client.pem",
    "haproxy-healthcheck": "/etc/haproxy/pki/healthcheck.pem",
}


def days_left_on_masters() -> dict[str, dict[str, int]]:
    out = {}
    for m in masters():
        out[m] = {name: pki.expiry(sh(m, f"cat {path}").stdout.encode())[1] for name, path in CERTS.items()}
        kubeconfig = sh(m, "cat /root/.kube/config").stdout
        out[m]["admin (kubeconfig)"] = _kubeconfig_days(kubeconfig)
    out["deploy machine"] = {"admin (artifacts)": _kubeconfig_days(lab.ADMIN_KUBECONFIG.read_text())}
    return out


def _kubeconfig_days(text: str) -> int:
    data = re.search(r"client-certificate-data:\s*(\S+)", text).group(1)
    return pki.expiry(base64.b64decode(data))[1]


def check(inventory: str = "inventory.py") -> tuple[int, dict]:
    proc = subprocess.run([sys.executable, "-m", "hakube.check", "--json", inventory], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, json.loads(proc.stdout)


def rolled(run, probe) -> None:
    assert_converged(run)
    print(f"\n{len(probe.samples)} calls through the VIP, {len(probe.failures)} failed")
    assert probe.failures == [], probe.failures[:5]


def test_certificates_inside_the_window_are_renewed_without_a_failed_call(converged, tmp_path):
    short = variant_inventory(tmp_path, cluster={"cert_validity_days": 20, "cert_renewal_days": 10},
                              name="inv_short.py")
    with Prober(real=True, tolerated=ROLL_TOLERANCE) as probe:
        run = deploy(short)
    rolled(run, probe)
    days = days_left_on_masters()
    assert all(19 <= d <= 20 for host in days.values() for d in host.values()), days
    assert_no_change(deploy(short))

    # inventory.py's window (30 days) now holds every one of them: make check warns, naming them
    code, report = check()
    assert code == 1 and report["status"] == "degraded", report["problems"]
    warned = " ".join(p["message"] for p in report["problems"])
    assert "apiserver" in warned and "haproxy-healthcheck" in warned, warned

    # ...and the next run with inventory.py's data renews every one, rolling the apiservers
    with Prober(real=True, tolerated=ROLL_TOLERANCE) as probe:
        run = deploy()
    rolled(run, probe)
    days = days_left_on_masters()
    assert all(d >= 363 for host in days.values() for d in host.values()), days
    assert_no_change(deploy())
    assert check()[0] == 0


# --- Secrets encrypted at rest ------------------------------------------------------------------------


def stored_prefix(name: str) -> str:
    """The first bytes of the Secret as etcd stores it (read with etcdctl, the etcd CA's client cert)."""
    script = ("ETCDCTL_API=3 etcdctl --endpoints " + lab.ETCD_ENDPOINT + f" --cacert {lab.ETCD_CA_FILE} "
              f"--cert {lab.ETCD_CLIENT_CERT_FILE} --key {lab.ETCD_CLIENT_KEY_FILE} "
              f"get /registry/secrets/default/{name} --print-value-only | head -c 40 | tr -c '[:print:]' '?'")
    return lab.docker_exec(lab.ETCD_NAME, "sh", "-c", script).stdout


def secret_value(name: str) -> str:
    out = lab.kubectl("get", "secret", name, "-n", "default", "-o", "jsonpath={.data.k}").stdout
    return base64.b64decode(out).decode()


def rewrite_every_secret() -> None:
    """README, Day two, step (c): every Secret read and written back (so with the first key)."""
    kubectl = [str(lab.kubectl_path()), "--kubeconfig", str(lab.ADMIN_KUBECONFIG)]
    got = subprocess.run([*kubectl, "get", "secrets", "-A", "-o", "json"], capture_output=True, text=True,
                         check=True, env=lab.kubectl_env())
    subprocess.run([*kubectl, "replace", "-f", "-"], input=got.stdout, capture_output=True, text=True,
                   check=True, env=lab.kubectl_env())


def with_keys(tmp_path, *keys: str):
    return variant_inventory(tmp_path, cluster={"secrets_encryption_keys": list(keys)},
                             name=f"inv_{'_'.join(keys)}.py")


def test_secrets_are_encrypted_in_etcd_and_the_key_rotates_without_a_failed_call(converged, tmp_path):
    for m in masters():
        assert sh(m, "stat -c '%a %U' /etc/kubernetes/encryption-config.yaml").stdout.split() == ["600", "root"]
        assert "--encryption-provider-config=/etc/kubernetes/encryption-config.yaml" in \
            sh(m, "cat /etc/kubernetes/apiserver").stdout
    lab.kubectl("delete", "secret", "enc-one", "enc-two", "-n", "default", "--ignore-not-found")
    lab.kubectl("create", "secret", "generic", "enc-one", "-n", "default", "--from-literal=k=first-value")
    assert stored_prefix("enc-one").startswith("k8s:enc:secretbox:v1:key1:")
    assert "first-value" not in stored_prefix("enc-one")

    steps = []
    # (a) the new key second: every apiserver can read it, writes still use key1
    with Prober(real=True, tolerated=ROLL_TOLERANCE) as probe:
        run = deploy(with_keys(tmp_path, "key1", "key2"))
    rolled(run, probe)
    steps.append(len(probe.samples))
    # (b) the new key first: new writes use key2
    with Prober(real=True, tolerated=ROLL_TOLERANCE) as probe:
        run = deploy(with_keys(tmp_path, "key2", "key1"))
    rolled(run, probe)
    steps.append(len(probe.samples))
    lab.kubectl("create", "secret", "generic", "enc-two", "-n", "default", "--from-literal=k=second-value")
    assert stored_prefix("enc-two").startswith("k8s:enc:secretbox:v1:key2:")
    assert stored_prefix("enc-one").startswith("k8s:enc:secretbox:v1:key1:")
    # (c) every Secret rewritten: all with key2
    rewrite_every_secret()
    assert stored_prefix("enc-one").startswith("k8s:enc:secretbox:v1:key2:")
    # (d) the old key removed: everything still readable
    with Prober(real=True, tolerated=ROLL_TOLERANCE) as probe:
        run = deploy(with_keys(tmp_path, "key2"))
    rolled(run, probe)
    steps.append(len(probe.samples))
    assert (secret_value("enc-one"), secret_value("enc-two")) == ("first-value", "second-value")
    assert_no_change(deploy(with_keys(tmp_path, "key2")))

    # back to inventory.py's key1, the same way round: (a) (b) (c) (d)
    for keys in (("key2", "key1"), ("key1", "key2")):
        with Prober(real=True, tolerated=ROLL_TOLERANCE) as probe:
            run = deploy(with_keys(tmp_path, *keys))
        rolled(run, probe)
        steps.append(len(probe.samples))
    rewrite_every_secret()
    with Prober(real=True, tolerated=ROLL_TOLERANCE) as probe:
        run = deploy()
    rolled(run, probe)
    steps.append(len(probe.samples))
    assert stored_prefix("enc-two").startswith("k8s:enc:secretbox:v1:key1:")
    assert (secret_value("enc-one"), secret_value("enc-two")) == ("first-value", "second-value")
    print(f"\nkey rotation: {len(steps)} rolls, {sum(steps)} calls through the VIP, 0 failed")
    assert_no_change(deploy())
    lab.kubectl("delete", "secret", "enc-one", "enc-two", "-n", "default")
