"""etcd trusts only its clients: the apiserver's etcd client certificate, nothing else the deploy issues.

etcd trusts the etcd CA (``pki/etcd-ca.pem``) alone. Each certificate is copied from the deploy
machine's pki dir into the etcd container and tried with etcdctl against etcd's TLS endpoint,
reading ``/registry`` (where the apiserver keeps every object, Secrets included): the apiserver's
etcd client certificate is accepted; ``admin``, ``haproxy-healthcheck`` and a fresh clientAuth
certificate from the cluster CA are refused.

Run alone: ``python -m pytest tests/integration/test_05_etcd_trust.py -v`` (brings the lab up and
deploys through the ``converged`` fixture when needed).
"""

from __future__ import annotations

import pytest

import lab
from hakube import pki

from .conftest import api_get, masters, sh

pytestmark = pytest.mark.lab

TMP = "/tmp/hakube-etcd-trust"  # in the etcd container, removed again at the end
SSL = "/etc/kubernetes/ssl"

# Failures on our side (a file that did not arrive, an unreadable key) would make a "refused"
# result meaningless: etcd must be the one saying no.
LOCAL_PROBLEMS = ("no such file", "permission denied", "failed to find", "private key does not match", "unknown flag")


@pytest.fixture(scope="module")
def pair_in_etcd(converged):
    """Copies a certificate and key into the etcd container: ``copy(name, cert_pem, key_pem)``."""
    lab.docker_exec(lab.ETCD_NAME, "sh", "-c", f"rm -rf {TMP} && umask 077 && mkdir -p {TMP}")

    def copy(name: str, cert_pem: bytes, key_pem: bytes) -> tuple[str, str]:
        paths = (f"{TMP}/{name}.pem", f"{TMP}/{name}-key.pem")
        for path, data in zip(paths, (cert_pem, key_pem)):
            lab.docker_exec(lab.ETCD_NAME, "sh", "-c", f"umask 077; cat > {path}", input=data.decode())
            copied = lab.docker_exec(lab.ETCD_NAME, "cat", path).stdout
            assert copied.strip() == data.decode().strip(), f"{path} was not copied intact"
        return paths

    yield copy
    lab.docker_exec(lab.ETCD_NAME, "rm", "-rf", TMP, check=False)
    assert lab.docker_exec(lab.ETCD_NAME, "test", "-e", TMP, check=False).returncode != 0


def from_pki(name: str) -> tuple[bytes, bytes]:
    """``<name>.pem`` and ``<name>-key.pem`` from the deploy machine's pki dir."""
    return (lab.PKI_DIR / f"{name}.pem").read_bytes(), (lab.PKI_DIR / f"{name}-key.pem").read_bytes()


@pytest.fixture(scope="module")
def cluster_ca_client(tmp_path_factory) -> tuple[bytes, bytes]:
    """A fresh clientAuth certificate from the cluster CA (CN root), outside the deploy's pki dir."""
    ca = pki.load_ca(lab.PKI_DIR / "ca.pem", lab.PKI_DIR / "ca-key.pem")
    issued = pki.ensure_cert(tmp_path_factory.mktemp("cluster-ca-client"),
                             pki.CertSpec("cluster-ca-client", "root", client=True), ca)
    return issued.cert_pem, issued.key_pem


def read_registry(cert: str, key: str):
    """etcdctl in the etcd container: the first key under /registry, presenting ``cert``/``key``."""
    return lab.etcdctl("--cert", cert, "--key", key, "get", "/registry", "--prefix", "--keys-only",
                       "--limit", "1", client_cert=False, check=False)


# --- the trust as configured ----------------------------------------------------------------------


def test_etcd_trusts_the_deploys_etcd_ca_and_not_the_cluster_ca(converged):
    env = lab.docker_exec(lab.ETCD_NAME, "cat", "/etc/default/etcd").stdout.splitlines()
    assert f"ETCD_TRUSTED_CA_FILE={lab.ETCD_CA_FILE}" in env
    assert "ETCD_CLIENT_CERT_AUTH=true" in env
    trusted = lab.docker_exec(lab.ETCD_NAME, "cat", lab.ETCD_CA_FILE).stdout
    assert trusted.strip() == lab.ETCD_CA_PEM.read_text().strip()
    assert trusted.strip() != lab.CA_PEM.read_text().strip()
    assert lab.docker_exec(lab.ETCD_NAME, "test", "-e", f"{lab.ETCD_PKI}/ca.pem", check=False).returncode != 0


def test_masters_verify_etcd_with_the_etcd_ca(converged):
    etcd_ca = lab.ETCD_CA_PEM.read_text().strip()
    client_cert = (lab.PKI_DIR / "apiserver-etcd-client.pem").read_text().strip()
    for m in masters():
        assert sh(m, f"stat -c '%a %U' {SSL}/etcd-ca.pem").stdout.split() == ["644", "root"]
        assert sh(m, f"cat {SSL}/etcd-ca.pem").stdout.strip() == etcd_ca
        assert sh(m, f"cat {SSL}/apiserver-etcd-client.pem").stdout.strip() == client_cert
        # The running apiserver (not just its env file) has the flags.
        args = sh(m, "tr '\\0' ' ' < /proc/$(systemctl show -p MainPID --value kube-apiserver.service)/cmdline").stdout
        assert f"--etcd-cafile={SSL}/etcd-ca.pem" in args.split(), args
        assert f"--etcd-certfile={SSL}/apiserver-etcd-client.pem" in args.split(), args
        assert f"--etcd-keyfile={SSL}/apiserver-etcd-client-key.pem" in args.split(), args
    # ...and so reaches etcd: the API answers through the VIP.
    status, body = api_get()
    assert (status, body.strip()) == (200, "ok")


def test_etcd_ca_key_is_on_no_host(converged):
    body = [ln for ln in (lab.PKI_DIR / "etcd-ca-key.pem").read_text().splitlines() if not ln.startswith("-----")]
    needle = body[len(body) // 2]
    for name in (*masters(), lab.ETCD_NAME):
        found = sh(name, f"grep -rlF -- '{needle}' /etc /root /var /tmp /usr/local /opt /home 2>/dev/null", check=False)
        assert found.stdout.strip() == "", f"etcd CA key material on {name}: {found.stdout}"


# --- who may read etcd ----------------------------------------------------------------------------


def test_apiserver_etcd_client_cert_is_accepted(pair_in_etcd):
    cert, key = pair_in_etcd("apiserver-etcd-client", *from_pki("apiserver-etcd-client"))
    proc = read_registry(cert, key)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("/registry/"), proc.stdout + proc.stderr


@pytest.mark.parametrize("name", ["admin", "haproxy-healthcheck", "cluster-ca-client"])
def test_cluster_ca_certs_are_refused(pair_in_etcd, cluster_ca_client, name):
    cert_pem, key_pem = cluster_ca_client if name == "cluster-ca-client" else from_pki(name)
    cert, key = pair_in_etcd(name, cert_pem, key_pem)
    proc = read_registry(cert, key)
    assert proc.returncode != 0, f"etcd accepted {name}: {proc.stdout}"
    assert "/registry/" not in proc.stdout, proc.stdout
    assert not any(p in proc.stderr.lower() for p in LOCAL_PROBLEMS), proc.stderr
    # The same etcd still serves its own client at the same moment.
    assert lab.etcd_healthy()
