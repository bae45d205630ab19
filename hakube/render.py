"""Desired state as data: every file the deploy manages on a host, rendered locally.

Each step of the deploy asks for its files (``certs_files``, ``apiserver_files``, ...) and hands
them to one operation (``hakube.ops.managed_file``). Rendering needs no host, so templates are
unit-tested here without pyinfra.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.resources
import json
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import jinja2

from . import flags, pki
from .roll import PENDING_DIR, pending_marker  # noqa: F401 (re-exported)
from .settings import Settings

HERE = Path(__file__).resolve().parent  # the hakube package
ROOT = HERE.parent  # the repository root when hakube runs from a checkout


def _data_dir(name: str) -> Path:
    """``templates/`` or ``files/``: the package data ``hakube.<name>`` of an installed hakube, else
    the checkout's top-level directory (a plain checkout, ``PYTHONPATH=.``, or an editable install).

    Package data counts only when it lies inside this hakube package: an editable install maps
    ``hakube.templates`` onto its own checkout, which is another one when a checkout runs with
    ``PYTHONPATH`` and a different checkout's editable install.
    """
    try:
        packaged = Path(str(importlib.resources.files(f"hakube.{name}"))).resolve()
    except ModuleNotFoundError:  # a plain checkout: hakube/ has no templates/ or files/
        packaged = None
    if packaged is not None and packaged.parent == HERE and packaged.is_dir():
        return packaged
    return ROOT / name


TEMPLATES = _data_dir("templates")
FILES = _data_dir("files")

APISERVER_BINARY = "/usr/local/bin/kube-apiserver"
APISERVER_UNIT = "/etc/systemd/system/kube-apiserver.service"
AGENT_SOCKET = "/etc/systemd/system/kube-apiserver-agent.socket"
AGENT_SERVICE = "/etc/systemd/system/kube-apiserver-agent@.service"
AGENT_STATE = "/run/kube-apiserver-agent"  # "drain" during a deploy's restart; absent = ready
HAPROXY_CFG = "/etc/haproxy/haproxy.cfg"
HAPROXY_PKI = "/etc/haproxy/pki"
KEEPALIVED_CONF = "/etc/keepalived/keepalived.conf"
SYSCTL_CONF = "/etc/sysctl.d/99-kube-apiserver-vip.conf"
KUBECONFIG = "/root/.kube/config"

# Certificates the apiserver itself reads: a change to any of them restarts it.
APISERVER_CERTS = ("apiserver", "apiserver-etcd-client", "apiserver-kubelet-client")


@dataclass(frozen=True)
class DesiredFile:
    path: str
    content: bytes = field(repr=False)  # may be a key: never in a repr, a log line or an exception
    mode: str = "0644"
    secret: bool = False  # never shown in a diff
    validate: str | None = None  # command run on the staged copy ({path}); must pass to go live
    notify: tuple[str, ...] = ()  # handlers to run once this file changed (see hakube.ops.HANDLERS)


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["json"] = lambda v: json.dumps(v, sort_keys=True)
    return env


def render(template: str, **context) -> bytes:
    return _env().get_template(template).render(**context).encode()


@dataclass(frozen=True)
class ClusterPKI:
    """What the certs step produced on the deploy machine (CA keys excluded on purpose)."""

    ca_pem: bytes
    etcd_ca_pem: bytes  # etcd's CA: issued apiserver-etcd-client and etcd's serving certificate
    certs: dict  # name -> pki.IssuedCert
    sa_pub: bytes
    sa_key: bytes = field(repr=False)


def ensure_pki(cfg: Settings) -> ClusterPKI:
    """Create or reuse the cluster PKI on the deploy machine (idempotent, once per process)."""
    c = cfg.cluster
    sans = pki.apiserver_sans(
        c.bind_addresses, c.vip, c.service_cluster_ip_range, c.cluster_domain, c.cert_extra_sans
    )
    ca_import = (c.ca_cert_file, c.ca_key_file) if c.ca_cert_file else None
    etcd_ca_import = (c.etcd_ca_cert_file, c.etcd_ca_key_file) if c.etcd_ca_cert_file else None
    etcd_client = (c.etcd_client_cert_file, c.etcd_client_key_file) if c.etcd_client_cert_file else None
    return _ensure_pki(c.pki_dir, sans, pki.Subject(**c.cert_subject), ca_import, etcd_ca_import, etcd_client,
                       c.sa_key_file)


@lru_cache(maxsize=4)
def _ensure_pki(pki_dir: str, sans: tuple, subject: pki.Subject, ca_import, etcd_ca_import=None,
                etcd_client=None, sa_import=None) -> ClusterPKI:
    cert_imports = {pki.ETCD_CLIENT.name: etcd_client} if etcd_client else None
    # ensure_cluster_pki reports reissues with print(); keep stdout clean for `pyinfra --json`.
    with contextlib.redirect_stdout(sys.stderr):
        cas, certs, (sa_pub, sa_key) = pki.ensure_cluster_pki(
            pki_dir, pki.cluster_cert_specs(sans, subject), ca_import=ca_import, ca_subject=subject,
            etcd_ca_import=etcd_ca_import, cert_imports=cert_imports, sa_import=sa_import,
        )
    return ClusterPKI(ca_pem=cas["cluster"].cert_pem, etcd_ca_pem=cas["etcd"].cert_pem, certs=certs,
                      sa_pub=sa_pub, sa_key=sa_key)


def certs_files(cfg: Settings, p: ClusterPKI) -> list[DesiredFile]:
    """/etc/kubernetes/ssl on a master: both CA certs, the apiserver's certs and keys, SA keypair."""
    ssl = flags.PATHS
    restart = ("kube-apiserver",)
    out = [DesiredFile(ssl.cert("ca"), p.ca_pem, notify=restart),
           DesiredFile(ssl.etcd_ca, p.etcd_ca_pem, notify=restart)]
    for name in APISERVER_CERTS:
        cert = p.certs[name]
        out.append(DesiredFile(ssl.cert(name), cert.cert_pem, notify=restart))
        out.append(DesiredFile(ssl.key(name), cert.key_pem, mode="0600", secret=True, notify=restart))
    out.append(DesiredFile(f"{ssl.ssl_dir}/sa.pub", p.sa_pub, notify=restart))
    out.append(DesiredFile(ssl.key("sa"), p.sa_key, mode="0600", secret=True, notify=restart))
    return out


def audit_files(cfg: Settings) -> list[DesiredFile]:
    rules = list(cfg.cluster.audit_policy_rules)
    return [DesiredFile(flags.PATHS.audit_policy, render("audit-policy.yaml.j2", rules=rules), notify=("kube-apiserver",))]


def config_file(cfg: Settings) -> DesiredFile:
    """/etc/kubernetes/config: every host, masters and nodes."""
    notify = ("kube-apiserver",) if cfg.is_master else ()
    return DesiredFile("/etc/kubernetes/config", render("config.j2", env=flags.config_env(cfg)), notify=notify)


def apiserver_files(cfg: Settings) -> list[DesiredFile]:
    """Per master: the apiserver's environment file and its systemd unit."""
    return [
        DesiredFile("/etc/kubernetes/apiserver", render("apiserver.j2", cfg=cfg, env=flags.apiserver_env(cfg)),
                    notify=("kube-apiserver",)),
        # The roll runs daemon-reload before it restarts the apiserver.
        DesiredFile(APISERVER_UNIT, render("kube-apiserver.service.j2", binary=APISERVER_BINARY),
                    notify=("kube-apiserver",)),
    ]


def agent_files(cfg: Settings) -> list[DesiredFile]:
    """Per master: the haproxy agent-check responder (a systemd socket, no daemon of its own)."""
    return [
        DesiredFile(AGENT_SOCKET, render("kube-apiserver-agent.socket.j2", cfg=cfg, c=cfg.cluster),
                    notify=("daemon-reload", "kube-apiserver-agent")),
        DesiredFile(AGENT_SERVICE, render("kube-apiserver-agent@.service.j2", state_file=AGENT_STATE),
                    notify=("daemon-reload",)),
    ]


def keepalived_files(cfg: Settings) -> list[DesiredFile]:
    content = render("keepalived.conf.j2", cfg=cfg, c=cfg.cluster)
    return [DesiredFile(KEEPALIVED_CONF, content, mode="0600", secret=True, validate="keepalived -t -f {path}",
                        notify=("keepalived",))]


def haproxy_files(cfg: Settings, p: ClusterPKI) -> list[DesiredFile]:
    hc = p.certs["haproxy-healthcheck"]
    pki_paths = {"ca": f"{HAPROXY_PKI}/ca.pem", "crt": f"{HAPROXY_PKI}/healthcheck.pem"}
    content = render("haproxy.cfg.j2", cfg=cfg, c=cfg.cluster, pki=pki_paths)
    return [
        DesiredFile(pki_paths["ca"], p.ca_pem, notify=("haproxy",)),
        DesiredFile(pki_paths["crt"], pki.combined_pem(hc), mode="0600", secret=True, notify=("haproxy",)),
        DesiredFile(HAPROXY_CFG, content, validate="haproxy -c -f {path}", notify=("haproxy",)),
    ]


def sysctl_file() -> DesiredFile:
    return DesiredFile(SYSCTL_CONF, (FILES / "99-kube-apiserver-vip.conf").read_bytes())


def admin_kubeconfig(cfg: Settings, p: ClusterPKI) -> bytes:
    admin = p.certs["admin"]
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return render(
        "kubeconfig.j2", c=cfg.cluster, ca_b64=b64(p.ca_pem), cert_b64=b64(admin.cert_pem), key_b64=b64(admin.key_pem)
    )


def kubeconfig_files(cfg: Settings, p: ClusterPKI) -> list[DesiredFile]:
    return [DesiredFile(KUBECONFIG, admin_kubeconfig(cfg, p), mode="0600", secret=True)]


@dataclass(frozen=True)
class Plan:
    """Every file the deploy manages on one host, by step."""

    certs: list
    audit: list
    config: DesiredFile
    apiserver: list
    agent: list
    keepalived: list
    haproxy: list
    kubeconfig: list

    @property
    def files(self) -> list[DesiredFile]:
        return [self.config, *self.certs, *self.audit, *self.apiserver, *self.agent, *self.keepalived,
                *self.haproxy, *self.kubeconfig]

    @property
    def paths(self) -> tuple[str, ...]:
        """Every managed path (the binary too), checked on the host with one command."""
        binary = {APISERVER_BINARY} if self.certs else set()
        markers = {pending_marker(h) for f in self.files for h in f.notify}
        return tuple(sorted({f.path for f in self.files} | binary | markers))


def managed_paths(cfg: Settings) -> tuple[str, ...]:
    """Every path ``plan`` manages on ``cfg.host``, known before any PKI exists (contents are blank)."""
    blank = pki.IssuedCert("", b"", b"", issued=False, reason=None)
    names = [spec.name for spec in pki.cluster_cert_specs((), pki.Subject())]
    placeholder = ClusterPKI(ca_pem=b"", etcd_ca_pem=b"", certs={n: blank for n in names}, sa_pub=b"", sa_key=b"")
    return plan(cfg, placeholder if cfg.is_master else None).paths


def plan(cfg: Settings, p: ClusterPKI | None) -> Plan:
    """All desired files of ``cfg.host`` (nodes get only /etc/kubernetes/config)."""
    if not cfg.is_master:
        return Plan([], [], config_file(cfg), [], [], [], [], [])
    return Plan(
        certs=certs_files(cfg, p),
        audit=audit_files(cfg),
        config=config_file(cfg),
        apiserver=apiserver_files(cfg),
        agent=agent_files(cfg),
        keepalived=keepalived_files(cfg),
        haproxy=[sysctl_file(), *haproxy_files(cfg, p)],
        kubeconfig=kubeconfig_files(cfg, p),
    )
