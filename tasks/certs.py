"""Step 1 — Kubernetes certificates and keys (tutorial: 创建kubernetes证书和密钥).

The PKI lives on the deploy machine (``ensure_pki``: the certificate table of ``hakube.pki``,
created once, reissued when SANs, subject, CA or expiry ask for it: within cert_renewal_days of
its end, issued for cert_validity_days, never past its CA); this step uploads both CA
certificates, the apiserver's certificates and keys and the service-account keypair to
/etc/kubernetes/ssl. Keys are 0600. No CA key ever leaves the deploy machine. Every file here is
an input of the apiserver: it is staged, and goes live in the apiserver's roll.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
from collections import defaultdict
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from pyinfra.api import deploy
from pyinfra.api.exceptions import PyinfraError

from hakube import encryption, pki
from hakube.facts import Needs
from hakube.hostfiles import install
from hakube.paths import PATHS
from hakube.render import DesiredFile

NAME = "Certificates (/etc/kubernetes/ssl)"
KEY = "certs"  # this step's files in ``want`` (stable: NAME is only what pyinfra prints)
NEEDS = Needs()
APISERVER_CERTS = ("apiserver", "apiserver-etcd-client", "apiserver-kubelet-client")  # the apiserver reads them


@dataclass(frozen=True)
class ClusterPKI:
    """What this step produced on the deploy machine (CA keys excluded on purpose)."""

    ca_pem: bytes
    etcd_ca_pem: bytes  # etcd's CA: issued apiserver-etcd-client and etcd's serving certificate
    certs: dict  # name -> pki.IssuedCert
    sa_pub: bytes
    sa_key: bytes = field(repr=False)
    #: Secrets-at-rest keys (``hakube.encryption``): name -> 32 raw bytes, those the data names.
    encryption_keys: dict = field(default_factory=dict, repr=False)


def ensure_pki(cfg) -> ClusterPKI:
    """Create or reuse the cluster PKI on the deploy machine (idempotent, once per process).

    A PKI that cannot be made right (a CA near its end, an import that does not fit) stops the run
    before any host is touched, as a refusal naming the host, not a traceback."""
    c = cfg.cluster
    sans = pki.apiserver_sans(c.bind_addresses, c.vips, c.service_cluster_ip_range, c.cluster_domain, c.cert_extra_sans)
    ca_import = (c.ca_cert_file, c.ca_key_file) if c.ca_cert_file else None
    etcd_ca_import = (c.etcd_ca_cert_file, c.etcd_ca_key_file) if c.etcd_ca_cert_file else None
    etcd_client = (c.etcd_client_cert_file, c.etcd_client_key_file) if c.etcd_client_cert_file else None
    lifetimes = (c.cert_validity_days, c.cert_renewal_days, c.ca_validity_days)
    try:
        p = _ensure_pki(c.pki_dir, sans, pki.Subject(**c.cert_subject), ca_import, etcd_ca_import, etcd_client,
                        c.sa_key_file, lifetimes)
        if not c.secrets_encryption:
            return p
        try:
            keys = encryption.ensure_keys(c.pki_dir, c.secrets_encryption_keys)  # once per process, like the PKI
        except encryption.EncryptionKeyError as e:
            raise pki.PKIError(str(e)) from None
        return replace(p, encryption_keys=dict(keys))
    except pki.PKIError as e:
        raise PyinfraError(f"refusing to run: {cfg.host}: {e}") from None


DEFAULT_LIFETIMES = (pki.LEAF_VALIDITY.days, pki.RENEW_BEFORE.days, pki.CA_VALIDITY.days)


@lru_cache(maxsize=4)
def _ensure_pki(pki_dir: str, sans: tuple, subject: pki.Subject, ca_import, etcd_ca_import=None,
                etcd_client=None, sa_import=None, lifetimes: tuple = DEFAULT_LIFETIMES) -> ClusterPKI:
    """``lifetimes``: (cert_validity_days, cert_renewal_days, ca_validity_days)."""
    validity, renewal, ca_validity = (dt.timedelta(days=d) for d in lifetimes)
    cert_imports = {pki.ETCD_CLIENT.name: etcd_client} if etcd_client else None
    # ensure_cluster_pki reports reissues with print(); keep stdout clean for `pyinfra --json`.
    with contextlib.redirect_stdout(sys.stderr):
        cas, certs, (sa_pub, sa_key) = pki.ensure_cluster_pki(
            pki_dir, pki.cluster_cert_specs(sans, subject), ca_import=ca_import, ca_subject=subject,
            etcd_ca_import=etcd_ca_import, cert_imports=cert_imports, sa_import=sa_import,
            validity=validity, renew_before=renewal, ca_validity=ca_validity,
        )
    return ClusterPKI(ca_pem=cas["cluster"].cert_pem, etcd_ca_pem=cas["etcd"].cert_pem, certs=certs,
                      sa_pub=sa_pub, sa_key=sa_key)


def placeholder() -> ClusterPKI:
    """A PKI with blank contents: which paths the steps manage is known before any PKI exists."""
    blank = pki.IssuedCert("", b"", b"", issued=False, reason=None)
    names = [spec.name for spec in pki.cluster_cert_specs((), pki.Subject())]
    return ClusterPKI(ca_pem=b"", etcd_ca_pem=b"", certs={n: blank for n in names}, sa_pub=b"", sa_key=b"",
                      encryption_keys=defaultdict(bytes))  # any key name: blank


@dataclass(frozen=True)
class ReadPKI:
    """The PKI as it is in pki_dir (``load_pki``): what the deploy would upload, and what it would reissue."""

    pki: ClusterPKI
    reissue: dict  # name -> why the next deploy reissues it


def load_pki(cfg, now=None) -> ReadPKI:
    """Read-only counterpart of ``ensure_pki`` (``make check``): the PKI already in pki_dir, nothing
    created or rewritten, no CA key read. ``pki.PKIMissing`` names what is not there."""
    c = cfg.cluster
    sans = pki.apiserver_sans(c.bind_addresses, c.vips, c.service_cluster_ip_range, c.cluster_domain, c.cert_extra_sans)
    specs = pki.cluster_cert_specs(sans, pki.Subject(**c.cert_subject))
    cas, certs, (sa_pub, sa_key) = pki.read_cluster_pki(c.pki_dir, specs)
    imported = [pki.ETCD_CLIENT.name] if c.etcd_client_cert_file else []
    reissue = pki.reissue_reasons(cas, certs, specs, now=now, skip=imported,
                                  validity=dt.timedelta(days=c.cert_validity_days),
                                  renew_before=dt.timedelta(days=c.cert_renewal_days))
    keys = {}
    if c.secrets_encryption:
        keys = dict(encryption.read_keys(c.pki_dir, c.secrets_encryption_keys))
        missing = [f"encryption/{n}.key" for n in c.secrets_encryption_keys if n not in keys]
        if missing:
            raise pki.PKIMissing(c.pki_dir, missing)
    return ReadPKI(ClusterPKI(ca_pem=cas["cluster"].cert_pem, etcd_ca_pem=cas["etcd"].cert_pem, certs=certs,
                              sa_pub=sa_pub, sa_key=sa_key, encryption_keys=keys), reissue)


def desired_files(cfg, p: ClusterPKI | None) -> dict[str, DesiredFile]:
    """/etc/kubernetes/ssl on a master: both CA certs, the apiserver's certs and keys, SA keypair."""
    if not cfg.is_master:
        return {}
    restart = ("kube-apiserver",)
    out = {"ca": DesiredFile(PATHS.cert("ca"), p.ca_pem, notify=restart),
           "etcd-ca": DesiredFile(PATHS.etcd_ca, p.etcd_ca_pem, notify=restart)}
    for name in APISERVER_CERTS:
        cert = p.certs[name]
        out[name] = DesiredFile(PATHS.cert(name), cert.cert_pem, notify=restart)
        out[f"{name}-key"] = DesiredFile(PATHS.key(name), cert.key_pem, mode="0600", secret=True, notify=restart)
    out["sa.pub"] = DesiredFile(PATHS.sa_pub, p.sa_pub, notify=restart)
    if cfg.cluster.kubelet_certificate_authority_file:  # --kubelet-certificate-authority (CIS 1.2.6 / 1.2.5)
        ca = Path(cfg.cluster.kubelet_certificate_authority_file).read_bytes()
        out["kubelet-ca"] = DesiredFile(PATHS.cert("kubelet-ca"), ca, notify=restart)
    out["sa-key"] = DesiredFile(PATHS.key("sa"), p.sa_key, mode="0600", secret=True, notify=restart)
    return out


@deploy(NAME)
def apply(cfg, want, facts):
    return install(want[KEY].values(), facts)
