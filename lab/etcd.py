"""The lab's external etcd: TLS with client-certificate auth; it trusts only the etcd CA.

etcd's serving certificate and the lab's etcdctl client certificate come from the etcd CA in the
deploy's pki dir (``pki/etcd-ca.pem``, hakube.pki), the same CA the deploy issues the apiserver's
etcd client certificate from. Certificates of the cluster CA (admin, haproxy-healthcheck, ...)
are refused.
"""
from __future__ import annotations

import time

from .config import (ADDRESSES6, DEFAULT_FAMILY, ETCD_ADDRESS, ETCD_CLIENT_CERT, ETCD_ENDPOINT, ETCD_ENDPOINT6,
                     ETCD_NAME, ETCD_PKI, ETCD_SERVER_CERT, PKI_DIR, has_ipv6)
from .util import LabError, docker_exec, log

DATA_DIR = "/var/lib/etcd/default"
CA_FILE = f"{ETCD_PKI}/etcd-ca.pem"  # the etcd CA: ETCD_TRUSTED_CA_FILE, and etcdctl's --cacert
# Left behind by earlier labs: the cluster CA, which etcd trusted then. Removed so nobody mistakes it.
STALE_FILES = (f"{ETCD_PKI}/ca.pem",)
SERVER_CERT_FILE = f"{ETCD_PKI}/{ETCD_SERVER_CERT}.pem"
SERVER_KEY_FILE = f"{ETCD_PKI}/{ETCD_SERVER_CERT}-key.pem"
CLIENT_CERT_FILE = f"{ETCD_PKI}/{ETCD_CLIENT_CERT}.pem"
CLIENT_KEY_FILE = f"{ETCD_PKI}/{ETCD_CLIENT_CERT}-key.pem"

ENV_FILE = "/etc/default/etcd"


def env_text(family: str = DEFAULT_FAMILY) -> str:
    """/etc/default/etcd for the lab's ``family``: with IPv6 (ipv6, dual) etcd also listens on its
    IPv6 address (its serving certificate names both addresses whatever the family)."""
    listen = [f"https://{ETCD_ADDRESS}:2379", *([ETCD_ENDPOINT6] if has_ipv6(family) else []), "https://127.0.0.1:2379"]
    advertise = [ETCD_ENDPOINT, *([ETCD_ENDPOINT6] if has_ipv6(family) else [])]
    return ENV_TEXT.replace("@LISTEN@", ",".join(listen)).replace("@ADVERTISE@", ",".join(advertise))


ENV_TEXT = f"""\
# Written by `python -m lab up`; changes are overwritten.
ETCD_NAME=etcd
ETCD_DATA_DIR={DATA_DIR}
ETCD_LISTEN_CLIENT_URLS=@LISTEN@
ETCD_ADVERTISE_CLIENT_URLS=@ADVERTISE@
ETCD_CERT_FILE={SERVER_CERT_FILE}
ETCD_KEY_FILE={SERVER_KEY_FILE}
ETCD_TRUSTED_CA_FILE={CA_FILE}
ETCD_CLIENT_CERT_AUTH=true
ETCD_LISTEN_PEER_URLS=http://127.0.0.1:2380
ETCD_INITIAL_ADVERTISE_PEER_URLS=http://127.0.0.1:2380
ETCD_INITIAL_CLUSTER=etcd=http://127.0.0.1:2380
ETCD_INITIAL_CLUSTER_STATE=new
ETCD_INITIAL_CLUSTER_TOKEN=hakube-lab
"""


def etcdctl(*args: str, client_cert: bool = True, check: bool = True, endpoint: str = ETCD_ENDPOINT,
            timeout: float = 60):
    """Run `etcdctl` (API v3) in the etcd container against ENDPOINT over TLS.

    With client_cert=False only the CA is passed, so the server must refuse the client.
    """
    cmd = ["env", "ETCDCTL_API=3", "etcdctl", "--endpoints", endpoint, "--cacert", CA_FILE,
           "--dial-timeout", "3s", "--command-timeout", "5s"]
    if client_cert:
        cmd += ["--cert", CLIENT_CERT_FILE, "--key", CLIENT_KEY_FILE]
    return docker_exec(ETCD_NAME, *cmd, *args, check=check, timeout=timeout)


def etcd_healthy() -> bool:
    proc = etcdctl("endpoint", "health", check=False, timeout=30)
    return proc.returncode == 0 and "is healthy" in (proc.stdout + proc.stderr)


def _issue_certs(family: str = DEFAULT_FAMILY) -> dict[str, tuple[str, str, str]]:
    """{path in container: (content, owner, mode)} for the etcd PKI files."""
    from hakube.pki import CertSpec, PKIError, ensure_ca, ensure_cert
    try:
        ensure_ca(PKI_DIR)  # the cluster CA is not etcd's: created here only so `status` can report it
        ca = ensure_ca(PKI_DIR, kind="etcd")
        server = ensure_cert(PKI_DIR, CertSpec(
            name=ETCD_SERVER_CERT, common_name="etcd", server=True, client=True,
            sans=("etcd", "127.0.0.1", ETCD_ADDRESS, ADDRESSES6[ETCD_NAME]), ca="etcd"), ca)
        client = ensure_cert(PKI_DIR, CertSpec(
            name=ETCD_CLIENT_CERT, common_name=ETCD_CLIENT_CERT, client=True, ca="etcd"), ca)
    except PKIError as exc:
        raise LabError(f"PKI problem: {exc}", f"fix or move away {PKI_DIR}") from exc
    for cert in (server, client):
        if cert.issued:
            log(f"issued {cert.name} certificate ({cert.reason})")
    text = lambda b: b.decode() if isinstance(b, bytes) else b  # noqa: E731
    return {
        CA_FILE: (text(ca.cert_pem), "root:root", "0644"),
        SERVER_CERT_FILE: (text(server.cert_pem), "root:root", "0644"),
        SERVER_KEY_FILE: (text(server.key_pem), "etcd:etcd", "0600"),
        CLIENT_CERT_FILE: (text(client.cert_pem), "root:root", "0644"),
        CLIENT_KEY_FILE: (text(client.key_pem), "root:root", "0600"),
        ENV_FILE: (env_text(family), "root:root", "0644"),
    }


def _put(path: str, content: str, owner: str, mode: str) -> bool:
    """Write a file into the etcd container when content/owner/mode differ; True if changed."""
    probe = docker_exec(ETCD_NAME, "sh", "-c", f'stat -c "%U:%G %a" {path} && cat {path}', check=False)
    if probe.returncode == 0:
        meta, _, current = probe.stdout.partition("\n")
        if current == content and meta.strip() == f"{owner} {mode.lstrip('0')}":
            return False
    tmp = f"{path}.hakube-tmp"
    docker_exec(ETCD_NAME, "sh", "-c",
                f"umask 077; cat > {tmp} && chown {owner} {tmp} && chmod {mode} {tmp} && mv -f {tmp} {path}",
                input=content)
    return True


def _remove(path: str) -> bool:
    """Delete a file in the etcd container; True if it was there."""
    return docker_exec(ETCD_NAME, "sh", "-c", f"test -e {path} && rm -f {path}", check=False).returncode == 0


def ensure_etcd(family: str = DEFAULT_FAMILY) -> None:
    """Install certificates and config into the etcd container; (re)start etcd only on change."""
    files = _issue_certs(family)
    docker_exec(ETCD_NAME, "sh", "-c", f"install -d -o root -g etcd -m 0750 {ETCD_PKI}")
    changed = [path for path, (content, owner, mode) in files.items() if _put(path, content, owner, mode)]
    for path in STALE_FILES:
        if _remove(path):
            log(f"removed {path} (etcd no longer trusts the cluster CA)")
    active = docker_exec(ETCD_NAME, "systemctl", "is-active", "etcd.service", check=False).stdout.strip()
    enabled = docker_exec(ETCD_NAME, "systemctl", "is-enabled", "etcd.service", check=False).stdout.strip()
    if enabled != "enabled":
        docker_exec(ETCD_NAME, "systemctl", "enable", "etcd.service")
    if changed or active != "active":
        why = f"changed: {', '.join(p.rsplit('/', 1)[1] for p in changed)}" if changed else f"was {active}"
        log(f"(re)starting etcd ({why})")
        proc = docker_exec(ETCD_NAME, "systemctl", "restart", "etcd.service", check=False, timeout=120)
        if proc.returncode != 0:
            journal = docker_exec(ETCD_NAME, "journalctl", "-u", "etcd.service", "-n", "20", "--no-pager",
                                  check=False).stdout
            raise LabError(f"etcd failed to start:\n{journal.strip()}\n",
                           "fix the configuration, then rerun `python -m lab up`")
    deadline = time.monotonic() + 60
    while not etcd_healthy():
        if time.monotonic() > deadline:
            detail = etcdctl("endpoint", "health", check=False).stderr.strip()
            raise LabError(f"etcd at {ETCD_ENDPOINT} is not healthy: {detail}",
                           "see `docker exec etcd journalctl -u etcd`")
        time.sleep(1)
