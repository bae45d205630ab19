"""Cluster PKI for the HA kube-apiserver deploy, built with ``cryptography``.

Everything here runs on the deploy machine. The CA key stays in ``pki_dir``
and is never uploaded. All functions are idempotent: existing material is
reused while it still matches the request, and leaf certificates are
reissued (with a printed reason) when it does not.

Layout of ``pki_dir`` (mode 0700)::

    ca.pem / ca-key.pem              cluster CA (created once or imported)
    etcd-ca.pem / etcd-ca-key.pem    etcd's CA (created once or imported; the key is absent when
                                     only the CA certificate and a client certificate were imported)
    <name>.pem / <name>-key.pem      leaf certificates (see cluster_cert_specs)
    sa.pub / sa-key.pem              service-account token signing keypair
    encryption/<name>.key            Secrets-at-rest keys (``hakube.encryption``; 0600, dir 0700)

Two CAs, because etcd trusts every certificate its CA issued: only the apiserver's etcd client
certificate comes from the etcd CA, so no other certificate the deploy hands out (admin, haproxy's
health check, ...) can read etcd. Which CA issues a leaf is a column of the certificate table
(``CertSpec.ca``).

Private keys are written as unencrypted PKCS#8 (``BEGIN PRIVATE KEY``) with
mode 0600, certificates and public keys with mode 0644. Every write is
atomic (``hakube.private``: a temporary file in the same directory, then ``os.replace``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import NamedTuple, Union

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    PrivateKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .private import KEY_MODE, private_dir, write_private

__all__ = [
    "CA",
    "CA_KINDS",
    "CAKind",
    "CertSpec",
    "ETCD_CLIENT",
    "Expiry",
    "IssuedCert",
    "PKIError",
    "PKIFileError",
    "adopt_cert",
    "check_ca_life",
    "Subject",
    "apiserver_sans",
    "check_imported_cert",
    "cluster_cert_specs",
    "combined_pem",
    "ensure_ca",
    "ensure_cert",
    "ensure_cluster_pki",
    "ensure_sa_keypair",
    "expiry",
    "first_service_ip",
    "load_ca",
]

StrPath = Union[str, "os.PathLike[str]"]

RSA_KEY_SIZE = 2048
CA_COMMON_NAME = "kubernetes-ca"
ETCD_CA_COMMON_NAME = "etcd-ca"
# Defaults of the data keys ca_validity_days, cert_validity_days and cert_renewal_days.
CA_VALIDITY = dt.timedelta(days=3650)  # a CA the deploy creates
LEAF_VALIDITY = dt.timedelta(days=365)  # the longest a leaf lives (never past its CA)
RENEW_BEFORE = dt.timedelta(days=30)  # a leaf that expires within this is reissued
# A leaf valid for longer than the configured validity (plus this, for clock skew between runs)
# was issued under a longer validity: it is reissued, so lowering cert_validity_days takes effect.
VALIDITY_SLACK = dt.timedelta(days=1)
BACKDATE = dt.timedelta(minutes=5)  # tolerate small clock skew between hosts

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
ETCD_CA_CERT_FILE = "etcd-ca.pem"
ETCD_CA_KEY_FILE = "etcd-ca-key.pem"
SA_PUB_FILE = "sa.pub"
SA_KEY_FILE = "sa-key.pem"

CERT_MODE = 0o644


class PKIError(Exception):
    """Raised when PKI material is invalid or would have to be replaced unsafely."""


class PKIFileError(PKIError):
    """A :class:`PKIError` caused by one input file (``path``): unreadable, malformed or not matching."""

    def __init__(self, path: StrPath, message: str):
        super().__init__(message)
        self.path = str(path)


# --------------------------------------------------------------------------
# Data types
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    """Distinguished-name fields besides CN; ``None`` means omitted."""

    C: str | None = None
    ST: str | None = None
    L: str | None = None
    O: str | None = None  # noqa: E741 - X.509 attribute name
    OU: str | None = None


@dataclass(frozen=True)
class CertSpec:
    """Desired state of one leaf certificate.

    ``organizations``, when non-empty, replaces ``subject.O`` (one O
    attribute per entry, e.g. Kubernetes groups). ``sans`` mixes IP
    addresses and DNS names; IPs are detected with :mod:`ipaddress`.
    ``ca`` names the CA that issues it (a key of :data:`CA_KINDS`).
    """

    name: str
    common_name: str
    organizations: tuple[str, ...] = ()
    subject: Subject = Subject()
    server: bool = False
    client: bool = False
    sans: tuple[str, ...] = ()
    ca: str = "cluster"


@dataclass(frozen=True)
class CAKind:
    """Where one of the deploy's CAs lives in ``pki_dir`` and the CN it is created with."""

    cert_file: str
    key_file: str
    common_name: str


#: The deploy's CAs, by the name ``CertSpec.ca`` uses.
CA_KINDS: dict[str, CAKind] = {
    "cluster": CAKind(CA_CERT_FILE, CA_KEY_FILE, CA_COMMON_NAME),
    "etcd": CAKind(ETCD_CA_CERT_FILE, ETCD_CA_KEY_FILE, ETCD_CA_COMMON_NAME),
}


@dataclass(frozen=True)
class CA:
    """A loaded certificate authority (PEM bytes plus parsed objects).

    ``key_pem`` is ``None`` for a CA whose key is kept elsewhere: it verifies, but cannot issue.
    """

    cert_pem: bytes
    key_pem: bytes | None = field(repr=False)

    @cached_property
    def cert(self) -> x509.Certificate:
        """The parsed CA certificate."""
        return x509.load_pem_x509_certificate(self.cert_pem)

    @cached_property
    def key(self) -> CertificateIssuerPrivateKeyTypes:
        """The parsed CA private key (:class:`PKIError` when it is not on this machine)."""
        if self.key_pem is None:
            raise PKIError(f"the key of CA {self.subject.rfc4514_string()} is not on this machine")
        return _as_issuer_key(_load_key(self.key_pem))

    @property
    def subject(self) -> x509.Name:
        """The CA's subject name (the issuer of every leaf it signs)."""
        return self.cert.subject


@dataclass(frozen=True)
class IssuedCert:
    """Result of :func:`ensure_cert`: the PEMs on disk and whether they are new."""

    name: str
    cert_pem: bytes
    key_pem: bytes = field(repr=False)
    issued: bool
    reason: str | None


# --------------------------------------------------------------------------
# SANs and the certificate table
# --------------------------------------------------------------------------


def first_service_ip(service_cidr: str) -> str:
    """Return the first host address of the service CIDR (the ``kubernetes`` service IP).

    >>> first_service_ip("10.254.0.0/16")
    '10.254.0.1'
    """
    try:
        net = ipaddress.ip_network(service_cidr.strip(), strict=True)
    except ValueError as exc:
        raise PKIError(f"invalid service CIDR {service_cidr!r}: {exc}") from exc
    if net.num_addresses < 2:
        raise PKIError(f"service CIDR {service_cidr!r} is too small")
    return str(net.network_address + 1)


def _normalize_san(value: str) -> str:
    """Canonical form of a SAN: compressed IP text, or lower-cased DNS name."""
    value = value.strip()
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return value.rstrip(".").lower()


def _dedup(values: Iterable[str]) -> tuple[str, ...]:
    """Normalize and de-duplicate SANs, keeping first-seen order and dropping empties."""
    seen: dict[str, None] = {}
    for value in values:
        norm = _normalize_san(value)
        if norm:
            seen.setdefault(norm, None)
    return tuple(seen)


def apiserver_sans(
    bind_addresses: Iterable[str],
    vip: str | Iterable[str],
    service_cidr: str,
    cluster_domain: str,
    extra: Iterable[str] = (),
) -> tuple[str, ...]:
    """SANs of the apiserver serving certificate, ordered and de-duplicated.

    Order: 127.0.0.1, each bind address, the VIP (or each VIP: a dual-stack front's two), the first service IP,
    ``kubernetes``, ``kubernetes.default``, ``kubernetes.default.svc``,
    ``kubernetes.default.svc.cluster``, ``kubernetes.default.svc.<cluster_domain>``,
    then ``extra``.
    """
    domain = cluster_domain.strip().strip(".")
    return _dedup(
        [
            "127.0.0.1",
            *bind_addresses,
            *((vip,) if isinstance(vip, str) else vip),
            first_service_ip(service_cidr),
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster",
            f"kubernetes.default.svc.{domain}",
            *extra,
        ]
    )


#: The apiserver's etcd client certificate: the only leaf of the etcd CA.
ETCD_CLIENT = CertSpec("apiserver-etcd-client", "kube-apiserver-etcd-client", client=True, ca="etcd")


def cluster_cert_specs(sans: Sequence[str], subject: Subject) -> list[CertSpec]:
    """The deploy's leaf certificates (kubeadm-style naming) and the CA that issues each.

    * ``apiserver`` - serving cert of kube-apiserver (behind haproxy/VIP).
    * ``apiserver-kubelet-client`` - apiserver -> kubelet (RBAC user ``kubernetes``).
    * ``apiserver-etcd-client`` - apiserver -> etcd; from the **etcd CA**, which etcd trusts.
    * ``admin`` - cluster admin, group ``system:masters``.
    * ``haproxy-healthcheck`` - haproxy's ``GET /readyz`` check (no groups).

    Every other certificate comes from the cluster CA, which etcd does not trust.
    """
    return [
        CertSpec("apiserver", "kubernetes", subject=subject, server=True, sans=tuple(sans)),
        CertSpec("apiserver-kubelet-client", "kubernetes", subject=subject, client=True),
        ETCD_CLIENT,
        CertSpec("admin", "admin", organizations=("system:masters",), client=True),
        CertSpec("haproxy-healthcheck", "haproxy-healthcheck", client=True),
    ]


# --------------------------------------------------------------------------
# Low-level helpers
# --------------------------------------------------------------------------


def _utcnow(now: dt.datetime | None) -> dt.datetime:
    """``now`` as an aware UTC datetime (naive values are taken as UTC)."""
    if now is None:
        return dt.datetime.now(dt.timezone.utc)
    if now.tzinfo is None:
        return now.replace(tzinfo=dt.timezone.utc)
    return now.astimezone(dt.timezone.utc)


def _read(path: Path) -> bytes | None:
    """File contents, or ``None`` if it does not exist."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _load_key(pem: bytes) -> PrivateKeyTypes:
    """A PEM private key from the PKI directory. RSA's full consistency check (~50 ms a key) is
    skipped: every run reads every key, and whether a key matches its certificate is still checked."""
    return serialization.load_pem_private_key(pem, password=None, unsafe_skip_rsa_key_validation=True)


def _new_rsa_key() -> rsa.RSAPrivateKey:
    """A fresh RSA 2048 private key."""
    return rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_SIZE)


def _key_pem(key: PrivateKeyTypes) -> bytes:
    """Unencrypted PKCS#8 PEM of a private key."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pub_pem(key: PrivateKeyTypes) -> bytes:
    """SubjectPublicKeyInfo PEM of a private key's public half."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _spki(obj: x509.Certificate | PrivateKeyTypes) -> bytes:
    """DER SubjectPublicKeyInfo of a certificate or private key (for matching)."""
    pub = obj.public_key()
    return pub.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _as_issuer_key(key: PrivateKeyTypes) -> CertificateIssuerPrivateKeyTypes:
    """Check that a loaded key can sign certificates."""
    if isinstance(key, CertificateIssuerPrivateKeyTypes.__args__):  # type: ignore[attr-defined]
        return key
    raise PKIError(f"unsupported CA key type {type(key).__name__}")


def _sign_hash(key: CertificateIssuerPrivateKeyTypes) -> hashes.HashAlgorithm | None:
    """Digest to sign with: SHA-256, or ``None`` for EdDSA keys."""
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        return None
    return hashes.SHA256()


def _build_name(common_name: str, subject: Subject, organizations: tuple[str, ...] = ()) -> x509.Name:
    """Subject DN in C, ST, L, O, OU, CN order; ``organizations`` replaces ``subject.O``."""
    attrs: list[x509.NameAttribute] = []
    if subject.C:
        attrs.append(x509.NameAttribute(NameOID.COUNTRY_NAME, subject.C))
    if subject.ST:
        attrs.append(x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, subject.ST))
    if subject.L:
        attrs.append(x509.NameAttribute(NameOID.LOCALITY_NAME, subject.L))
    orgs = organizations or ((subject.O,) if subject.O else ())
    attrs.extend(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs)
    if subject.OU:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, subject.OU))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _general_names(sans: Iterable[str]) -> list[x509.GeneralName]:
    """SAN strings -> IPAddress / DNSName general names (de-duplicated, ordered)."""
    names: list[x509.GeneralName] = []
    for value in _dedup(sans):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(value)))
        except ValueError:
            names.append(x509.DNSName(value))
    return names


def _cert_sans(cert: x509.Certificate) -> set[str]:
    """Normalized SAN strings present in a certificate."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    values = [str(ip) for ip in ext.get_values_for_type(x509.IPAddress)]
    values += ext.get_values_for_type(x509.DNSName)
    return set(_dedup(values))


def _wanted_ekus(spec: CertSpec) -> list[x509.ObjectIdentifier]:
    """ExtendedKeyUsage OIDs requested by a spec."""
    ekus: list[x509.ObjectIdentifier] = []
    if spec.server:
        ekus.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if spec.client:
        ekus.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    return ekus


def _cert_ekus(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    """ExtendedKeyUsage OIDs present in a certificate."""
    try:
        return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return set()


def _is_ca(cert: x509.Certificate) -> bool:
    """True when the certificate has BasicConstraints CA:TRUE."""
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _signed_by(cert: x509.Certificate, ca: CA) -> bool:
    """True when ``cert`` names the CA as issuer and its signature verifies."""
    if cert.issuer != ca.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca.cert)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


# --------------------------------------------------------------------------
# CA
# --------------------------------------------------------------------------


def _ca_kind(kind: str) -> CAKind:
    """The :data:`CA_KINDS` entry ``kind``; :class:`PKIError` for an unknown one."""
    try:
        return CA_KINDS[kind]
    except KeyError:
        raise PKIError(f"unknown CA {kind!r} (known: {', '.join(CA_KINDS)})") from None


def _load_ca_files(cert_path: Path, key_path: Path | None) -> CA:
    """Load and validate a CA (with its key unless ``key_path`` is None).

    Any problem raises :class:`PKIFileError` naming the file at fault.
    """
    try:
        cert_pem = cert_path.read_bytes()
    except OSError as exc:
        raise PKIFileError(cert_path, f"cannot read CA certificate {cert_path}: {exc}") from exc
    key_pem = None
    if key_path is not None:
        try:
            key_pem = key_path.read_bytes()
        except OSError as exc:
            raise PKIFileError(key_path, f"cannot read CA key {key_path}: {exc}") from exc
    ca = CA(cert_pem=cert_pem, key_pem=key_pem)
    try:
        cert = ca.cert
    except ValueError as exc:
        raise PKIFileError(cert_path, f"{cert_path} is not a valid PEM certificate: {exc}") from exc
    if key_path is not None:
        try:
            key = ca.key
        except (ValueError, TypeError, PKIError) as exc:
            raise PKIFileError(key_path, f"{key_path} is not a valid unencrypted PEM private key: {exc}") from exc
        if _spki(cert) != _spki(key):
            raise PKIFileError(key_path, f"CA key {key_path} does not match CA certificate {cert_path}")
    if not _is_ca(cert):
        raise PKIFileError(cert_path, f"{cert_path} is not a CA certificate (BasicConstraints CA:TRUE missing)")
    return ca


def load_ca(cert_path: StrPath, key_path: StrPath | None = None) -> CA:
    """Load and validate a CA certificate (and its key, when given) from anywhere.

    :class:`PKIFileError` names the file at fault: unreadable, not PEM, not a CA, key mismatch.
    """
    return _load_ca_files(Path(cert_path), None if key_path is None else Path(key_path))


def _create_ca(
    subject: Subject, now: dt.datetime, common_name: str = CA_COMMON_NAME, validity: dt.timedelta = CA_VALIDITY
) -> CA:
    """Generate a self-signed RSA 2048 CA valid for ``validity`` (default 10 years)."""
    key = _new_rsa_key()
    name = _build_name(common_name, subject)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return CA(cert_pem=cert.public_bytes(serialization.Encoding.PEM), key_pem=_key_pem(key))


def _write_ca(pki: Path, ca: CA, files: CAKind) -> None:
    """Persist a CA (key first, so a crash never leaves a cert without its key)."""
    if ca.key_pem is not None:
        write_private(pki / files.key_file, ca.key_pem, KEY_MODE)
    write_private(pki / files.cert_file, ca.cert_pem, CERT_MODE)


def _fingerprint(ca: CA) -> bytes:
    return ca.cert.fingerprint(hashes.SHA256())


def ensure_ca(
    pki_dir: StrPath,
    import_cert: str | None = None,
    import_key: str | None = None,
    subject: Subject = Subject(),
    *,
    kind: str = "cluster",
    cert_only: bool = False,
    validity: dt.timedelta = CA_VALIDITY,
    now: dt.datetime | None = None,
) -> CA:
    """Return one of the deploy's CAs in ``pki_dir``, creating or importing it once.

    ``kind`` picks the CA from :data:`CA_KINDS`: ``"cluster"`` (``ca.pem``, CN ``kubernetes-ca``)
    or ``"etcd"`` (``etcd-ca.pem``, CN ``etcd-ca``). The rules are the same for both:

    * No CA in ``pki_dir`` and no import: create one (RSA 2048, the kind's CN plus
      ``subject``, valid for ``validity`` from ``now``: default 10 years).
    * No CA in ``pki_dir`` and an import: validate and copy the files in.
    * CA present: load and validate it. An import of the same certificate is
      accepted; a different one raises :class:`PKIError` - a CA is never
      replaced silently.

    ``cert_only`` allows ``import_cert`` without ``import_key``: only the certificate is
    recorded (a site's etcd CA whose key stays elsewhere). The returned CA verifies but cannot
    issue. A later import of the same certificate with its key completes it; using it with no
    import at all raises :class:`PKIError` rather than creating a new CA.
    """
    files = _ca_kind(kind)
    if import_key is not None and import_cert is None or (
        import_cert is not None and import_key is None and not cert_only
    ):
        raise PKIError("CA import needs both a certificate and a key path")
    pki = private_dir(pki_dir)
    cert_path, key_path = pki / files.cert_file, pki / files.key_file
    imported = None
    if import_cert is not None:
        imported = _load_ca_files(Path(import_cert), None if import_key is None else Path(import_key))

    if cert_path.exists() or key_path.exists():
        recorded_only = cert_path.exists() and not key_path.exists()
        existing = _load_ca_files(cert_path, None if recorded_only else key_path)
        if imported is not None and _fingerprint(imported) != _fingerprint(existing):
            raise PKIError(
                f"{pki} already holds a different CA ({existing.subject.rfc4514_string()}) than the "
                f"one to import from {import_cert} ({imported.subject.rfc4514_string()}); refusing to "
                f"replace it. Move {cert_path} and {key_path} away explicitly if replacing the CA "
                "(and reissuing every certificate) is really intended."
            )
        if existing.key_pem is None:
            if imported is None:
                raise PKIError(
                    f"{cert_path} is there but its key {key_path} is not (a CA imported without its "
                    "key): import the same CA again, with its key or with a client certificate it "
                    f"issued, or move {cert_path} away if a new CA is really intended."
                )
            if imported.key_pem is not None:
                write_private(key_path, imported.key_pem, KEY_MODE)
                return imported
        return existing

    ca = imported if imported is not None else _create_ca(subject, _utcnow(now), files.common_name, validity)
    _write_ca(pki, ca, files)
    return ca


# --------------------------------------------------------------------------
# Leaf certificates
# --------------------------------------------------------------------------


def _serial() -> int:
    """A random positive 159-bit serial number."""
    return secrets.randbits(159) | 1


def _issue(spec: CertSpec, ca: CA, now: dt.datetime, validity: dt.timedelta = LEAF_VALIDITY) -> tuple[bytes, bytes]:
    """Sign a fresh leaf for ``spec``, valid for ``validity`` but never past the CA's own expiry;
    returns ``(cert_pem, key_pem)``."""
    key = _new_rsa_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_build_name(spec.common_name, spec.subject, spec.organizations))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + validity, ca.cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    ekus = _wanted_ekus(spec)
    if ekus:
        builder = builder.add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
    sans = _general_names(spec.sans)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca.key, _sign_hash(ca.key))
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _san_diff(wanted: set[str], have: set[str]) -> str:
    """Human-readable SAN difference, e.g. ``+10.0.0.5, -old.example``."""
    added = [f"+{v}" for v in sorted(wanted - have)]
    removed = [f"-{v}" for v in sorted(have - wanted)]
    return ", ".join(added + removed)


def _reissue_reason(
    spec: CertSpec,
    ca: CA,
    cert_pem: bytes | None,
    key_pem: bytes | None,
    now: dt.datetime,
    validity: dt.timedelta = LEAF_VALIDITY,
    renew_before: dt.timedelta = RENEW_BEFORE,
) -> str | None:
    """Why the on-disk leaf cannot be reused, or ``None`` if it can.

    A leaf this module issues is never reissued for its lifetime alone on the next run: it ends at
    ``now + validity`` (more than ``renew_before`` away, see :func:`_check_renewal_args`) or at its
    CA's expiry, which :func:`ensure_cert` refuses to issue under when that is less than
    ``renew_before`` away.
    """
    if cert_pem is None:
        return "new"
    if key_pem is None:
        return "key missing"
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        return "certificate unreadable"
    try:
        key = _load_key(key_pem)
    except (ValueError, TypeError):
        return "key unreadable"
    if not _signed_by(cert, ca):
        return "issuer changed"
    if _spki(cert) != _spki(key):
        return "key does not match certificate"
    if cert.subject != _build_name(spec.common_name, spec.subject, spec.organizations):
        return "subject changed"
    wanted_sans, have_sans = set(_dedup(spec.sans)), _cert_sans(cert)
    if wanted_sans != have_sans:
        return f"SANs changed: {_san_diff(wanted_sans, have_sans)}"
    if set(_wanted_ekus(spec)) != _cert_ekus(cert):
        return "extended key usages changed"
    not_after = cert.not_valid_after_utc
    if not_after > ca.cert.not_valid_after_utc:
        return f"outlives its CA (expires {not_after:%Y-%m-%d}, the CA {ca.cert.not_valid_after_utc:%Y-%m-%d})"
    if not_after - now < renew_before:
        return f"expires within {_days(renew_before)} days"
    if not_after - now > validity + VALIDITY_SLACK:
        return f"valid until {not_after:%Y-%m-%d}, longer than the validity of {_days(validity)} days"
    return None


def _days(delta: dt.timedelta) -> str:
    """``30`` for 30 days, ``0.5`` for 12 hours: a window or validity in days, for messages."""
    return f"{delta / dt.timedelta(days=1):g}"


def _check_renewal_args(validity: dt.timedelta, renew_before: dt.timedelta) -> None:
    """A fresh leaf must lie outside the renewal window, or every run would reissue it."""
    if renew_before <= dt.timedelta(0) or validity <= renew_before:
        raise PKIError(
            f"the renewal window ({_days(renew_before)} days) must be positive and shorter than the "
            f"validity ({_days(validity)} days): otherwise every run reissues every certificate"
        )


def check_ca_life(ca: CA, ca_path: StrPath, renew_before: dt.timedelta = RENEW_BEFORE,
                  now: dt.datetime | None = None) -> None:
    """Refuse to issue from a CA with less than ``renew_before`` left (:class:`PKIError`).

    Every leaf it signs would end with it, inside the renewal window: each run would reissue
    every certificate and roll every apiserver, and within ``renew_before`` the cluster stops
    working anyway. The only fix is a new CA.
    """
    when = _utcnow(now)
    ends = ca.cert.not_valid_after_utc
    if ends - when >= renew_before:
        return
    left = "expired" if ends <= when else f"{(ends - when) // dt.timedelta(days=1)} days left"
    raise PKIError(
        f"the CA {ca_path} ({ca.subject.rfc4514_string()}) expires on {ends:%Y-%m-%d %H:%M} UTC ({left}), "
        f"within the renewal window of {_days(renew_before)} days (cert_renewal_days): no certificate it "
        "issues can be renewed past that, so every run would reissue them all. Replace the CA: import a "
        "new one (ca_cert_file + ca_key_file; for the etcd CA etcd_ca_cert_file + etcd_ca_key_file, which "
        f"etcd must trust first) or move {ca_path} and its key out of the PKI directory to have one "
        "created, and set replace_ca_sha256 to the masters' current sha256 (the refusal prints it); every "
        "certificate is then reissued and rolled out."
    )


def ensure_cert(
    pki_dir: StrPath,
    spec: CertSpec,
    ca: CA,
    now: dt.datetime | None = None,
    *,
    validity: dt.timedelta = LEAF_VALIDITY,
    renew_before: dt.timedelta = RENEW_BEFORE,
) -> IssuedCert:
    """Return ``<name>.pem`` / ``<name>-key.pem`` from ``pki_dir``, (re)issuing when needed.

    The existing pair is reused when it is signed by ``ca``, the key matches,
    subject, SAN set and EKUs equal the spec, it does not outlive the CA, does not
    expire within ``renew_before`` (default 30 days) of ``now`` (default: current UTC time)
    and is not valid for longer than ``validity`` (plus a day). Otherwise a fresh key and a
    certificate valid for ``validity`` (default 1 year; never past the CA's expiry) are written
    atomically. A CA with less than ``renew_before`` left raises :class:`PKIError`
    (see :func:`check_ca_life`).
    """
    _check_renewal_args(validity, renew_before)
    when = _utcnow(now)
    check_ca_life(ca, Path(pki_dir) / _ca_kind(spec.ca).cert_file, renew_before, when)
    pki = private_dir(pki_dir)
    cert_path, key_path = pki / f"{spec.name}.pem", pki / f"{spec.name}-key.pem"
    cert_pem, key_pem = _read(cert_path), _read(key_path)
    reason = _reissue_reason(spec, ca, cert_pem, key_pem, when, validity, renew_before)
    if reason is None and cert_pem is not None and key_pem is not None:
        return IssuedCert(spec.name, cert_pem, key_pem, issued=False, reason=None)
    cert_pem, key_pem = _issue(spec, ca, when, validity)
    write_private(key_path, key_pem, KEY_MODE)
    write_private(cert_path, cert_pem, CERT_MODE)
    return IssuedCert(spec.name, cert_pem, key_pem, issued=True, reason=reason)


_EKU_NAMES = {ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth", ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth"}


def check_imported_cert(
    spec: CertSpec, ca: CA, cert_path: StrPath, key_path: StrPath, now: dt.datetime | None = None
) -> tuple[bytes, bytes]:
    """Validate a certificate and key issued elsewhere that stand in for ``spec``.

    The certificate must be signed by ``ca``, carry the extended key usages the spec asks for
    (clientAuth for a client) and not have expired; the key must match it. Returns
    ``(cert_pem, key_pem)``; any problem raises :class:`PKIFileError` naming the file at fault.
    Subject and SANs are the issuer's business and are not compared.
    """
    cert_path, key_path = Path(cert_path), Path(key_path)
    try:
        cert_pem = cert_path.read_bytes()
        cert = x509.load_pem_x509_certificate(cert_pem)
    except OSError as exc:
        raise PKIFileError(cert_path, f"cannot read certificate {cert_path}: {exc}") from exc
    except ValueError as exc:
        raise PKIFileError(cert_path, f"{cert_path} is not a valid PEM certificate: {exc}") from exc
    try:
        key_pem = key_path.read_bytes()
        key = _load_key(key_pem)
    except OSError as exc:
        raise PKIFileError(key_path, f"cannot read key {key_path}: {exc}") from exc
    except (ValueError, TypeError) as exc:
        raise PKIFileError(key_path, f"{key_path} is not a valid unencrypted PEM private key: {exc}") from exc
    if _is_ca(cert):
        raise PKIFileError(cert_path, f"{cert_path} is a CA certificate, not one issued for {spec.name}")
    if not _signed_by(cert, ca):
        raise PKIFileError(
            cert_path,
            f"{cert_path} is not signed by the CA {ca.subject.rfc4514_string()} "
            f"(its issuer is {cert.issuer.rfc4514_string()})",
        )
    if _spki(cert) != _spki(key):
        raise PKIFileError(key_path, f"{key_path} does not match the certificate {cert_path}")
    missing = [_EKU_NAMES[oid] for oid in _wanted_ekus(spec) if oid not in _cert_ekus(cert)]
    if missing:
        raise PKIFileError(
            cert_path, f"{cert_path} lacks the extended key usage {', '.join(missing)} that {spec.name} needs"
        )
    if cert.not_valid_after_utc <= _utcnow(now):
        raise PKIFileError(cert_path, f"{cert_path} expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    return cert_pem, key_pem


def adopt_cert(
    pki_dir: StrPath, spec: CertSpec, ca: CA, cert_path: StrPath, key_path: StrPath, now: dt.datetime | None = None
) -> IssuedCert:
    """Use a pair issued elsewhere for ``spec`` (see :func:`check_imported_cert`).

    It is copied to ``<name>.pem`` / ``<name>-key.pem`` in ``pki_dir`` so that the directory
    always holds what the masters get; ``issued`` says whether that copy changed.
    """
    cert_pem, key_pem = check_imported_cert(spec, ca, cert_path, key_path, now)
    pki = private_dir(pki_dir)
    dest_cert, dest_key = pki / f"{spec.name}.pem", pki / f"{spec.name}-key.pem"
    changed = _read(dest_cert) != cert_pem or _read(dest_key) != key_pem
    if changed:
        write_private(dest_key, key_pem, KEY_MODE)
        write_private(dest_cert, cert_pem, CERT_MODE)
    return IssuedCert(spec.name, cert_pem, key_pem, issued=changed, reason=f"imported from {cert_path}" if changed else None)


# --------------------------------------------------------------------------
# Service-account keypair, orchestration, helpers
# --------------------------------------------------------------------------


def public_pem(key_pem: bytes) -> bytes:
    """SubjectPublicKeyInfo PEM of a PEM private key (how ``sa.pub`` is derived from ``sa-key.pem``)."""
    return _pub_pem(_load_key(key_pem))


def ensure_sa_keypair(pki_dir: StrPath, import_key: StrPath | None = None) -> tuple[bytes, bytes]:
    """Return ``(public_pem, private_key_pem)`` of the service-account signing keypair.

    ``sa-key.pem`` (RSA 2048) is created once (or copied from ``import_key``) and reused; ``sa.pub``
    is (re)derived from it when missing or stale. This is deliberately not the
    CA key. A corrupt ``sa-key.pem`` raises :class:`PKIError` rather than
    being replaced, since that would invalidate every issued token; so does an import that
    differs from the key already there.
    """
    pki = private_dir(pki_dir)
    key_path, pub_path = pki / SA_KEY_FILE, pki / SA_PUB_FILE
    key_pem = _read(key_path)
    if import_key is not None:
        try:
            imported = Path(import_key).read_bytes()
            serialization.load_pem_private_key(imported, password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise PKIError(f"cannot import service-account key {import_key}: {exc}") from exc
        if key_pem is None:
            key_pem = imported
            write_private(key_path, key_pem, KEY_MODE)
        elif public_pem(key_pem) != public_pem(imported):
            raise PKIError(
                f"{key_path} already holds a different service-account key than {import_key}; refusing "
                "to replace it (that would invalidate every service-account token)"
            )
    if key_pem is None:
        key: PrivateKeyTypes = _new_rsa_key()
        key_pem = _key_pem(key)
        write_private(key_path, key_pem, KEY_MODE)
    else:
        try:
            key = _load_key(key_pem)
        except (ValueError, TypeError) as exc:
            raise PKIError(f"service-account key {key_path} is unreadable: {exc}") from exc
    pub_pem = _pub_pem(key)
    if _read(pub_path) != pub_pem:
        write_private(pub_path, pub_pem, CERT_MODE)
    return pub_pem, key_pem


def ensure_cluster_pki(
    pki_dir: StrPath,
    specs: Iterable[CertSpec],
    *,
    ca_import: tuple[str, str] | None = None,
    ca_subject: Subject = Subject(),
    etcd_ca_import: tuple[str, str | None] | None = None,
    cert_imports: Mapping[str, tuple[str, str]] | None = None,
    sa_import: StrPath | None = None,
    now: dt.datetime | None = None,
    validity: dt.timedelta = LEAF_VALIDITY,
    renew_before: dt.timedelta = RENEW_BEFORE,
    ca_validity: dt.timedelta = CA_VALIDITY,
) -> tuple[dict[str, CA], dict[str, IssuedCert], tuple[bytes, bytes]]:
    """Ensure both CAs, every leaf in ``specs`` and the SA keypair; report reissues on stdout.

    ``ca_import`` is ``(cert_path, key_path)`` of the cluster CA. ``etcd_ca_import`` is
    ``(cert_path, key_path)`` of etcd's CA, where ``key_path`` may be ``None`` when
    ``cert_imports`` brings that CA's leaves: ``{spec name: (cert_path, key_path)}`` of pairs
    issued elsewhere (checked and adopted, see :func:`adopt_cert`). Each spec is issued by the CA
    its ``ca`` field names. Returns ``(cas_by_kind, certs_by_name, (sa_public_pem,
    sa_private_key_pem))``. Idempotent: a repeated call with the same input issues nothing and
    returns byte-identical PEMs.

    Lifetimes (the data keys cert_validity_days, cert_renewal_days, ca_validity_days): a leaf is
    issued for ``validity`` but never past its CA, and reissued once it expires within
    ``renew_before``; a CA created here lives ``ca_validity``. A CA that must issue a leaf and has
    less than ``renew_before`` left raises :class:`PKIError` (see :func:`check_ca_life`).
    """
    _check_renewal_args(validity, renew_before)
    if ca_validity < validity:
        raise PKIError(f"the CA validity ({_days(ca_validity)} days) is shorter than the certificates' "
                       f"({_days(validity)} days)")
    when = _utcnow(now)
    specs = list(specs)
    cert_imports = dict(cert_imports or {})
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise PKIError(f"duplicate certificate names: {', '.join(dupes)}")
    reserved = ({"sa"} | {k.cert_file.removesuffix(".pem") for k in CA_KINDS.values()}) & set(names)
    if reserved:
        raise PKIError(f"reserved certificate names: {', '.join(sorted(reserved))}")
    unknown = sorted(set(cert_imports) - set(names))
    if unknown:
        raise PKIError(f"imported certificates not in the table: {', '.join(unknown)}")
    for spec in specs:
        _ca_kind(spec.ca)
    import_cert, import_key = ca_import if ca_import is not None else (None, None)
    etcd_cert, etcd_key = etcd_ca_import if etcd_ca_import is not None else (None, None)
    pki = Path(pki_dir)
    older = [pki / f"{s.name}.pem" for s in specs if s.ca == "etcd" and (pki / f"{s.name}.pem").exists()]
    if etcd_ca_import is None and older and not (pki / ETCD_CA_CERT_FILE).exists():
        # Issued before the deploy had an etcd CA: the running etcd trusts whatever issued them.
        raise PKIError(
            f"{', '.join(map(str, older))} predate the etcd CA: the running etcd most likely trusts the "
            "cluster CA, and a new etcd CA would cut the apiservers off from it. Import the CA etcd "
            "trusts (etcd_ca_cert_file + etcd_ca_key_file; the cluster CA's files keep today's trust), "
            f"or give etcd certificates from a new CA first and then move {', '.join(map(str, older))} away."
        )
    cas = {
        "cluster": ensure_ca(pki_dir, import_cert, import_key, subject=ca_subject, validity=ca_validity, now=when),
        "etcd": ensure_ca(pki_dir, etcd_cert, etcd_key, subject=ca_subject, kind="etcd", cert_only=True,
                          validity=ca_validity, now=when),
    }
    # Before any leaf is written: a CA near its end stops the run with every leaf as it was.
    for kind in sorted({s.ca for s in specs if s.name not in cert_imports}):
        if cas[kind].key_pem is not None:
            check_ca_life(cas[kind], pki / CA_KINDS[kind].cert_file, renew_before, when)
    certs: dict[str, IssuedCert] = {}
    for spec in specs:
        ca = cas[spec.ca]
        if spec.name in cert_imports:
            result = adopt_cert(pki_dir, spec, ca, *cert_imports[spec.name], now=when)
            if result.issued:
                print(f"[pki] {spec.name} {result.reason}")
        else:
            if ca.key_pem is None:
                raise PKIError(
                    f"cannot issue {spec.name}: the key of its CA ({spec.ca}) is not on this machine; "
                    "import that CA's key or a certificate it issued"
                )
            result = ensure_cert(pki_dir, spec, ca, now=when, validity=validity, renew_before=renew_before)
            if result.issued:
                print(f"[pki] issued {spec.name} ({result.reason})")
        certs[spec.name] = result
    return cas, certs, ensure_sa_keypair(pki_dir, sa_import)


def combined_pem(cert: IssuedCert) -> bytes:
    """Certificate followed by its private key, as haproxy's ``crt`` expects."""
    cert_pem = cert.cert_pem if cert.cert_pem.endswith(b"\n") else cert.cert_pem + b"\n"
    return cert_pem + cert.key_pem


# --------------------------------------------------------------------------
# Expiry, read-only (``make check``): nothing is created or written
# --------------------------------------------------------------------------


class Expiry(NamedTuple):
    """How long one certificate has left: ``days_left`` in whole days, rounded down (negative once
    expired); ``is_ca`` picks the warning window (a CA is replaced by hand)."""

    not_after: dt.datetime
    days_left: int
    is_ca: bool


def expiry(cert_pem: bytes, now: dt.datetime | None = None) -> Expiry:
    """The :class:`Expiry` of the first certificate in ``cert_pem``. A PEM holding a key as well
    (haproxy's combined file) works. :class:`PKIError` when there is no readable certificate."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise PKIError(f"not a PEM certificate: {exc}") from exc
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    not_after = cert.not_valid_after_utc
    return Expiry(not_after, (not_after - _utcnow(now)) // dt.timedelta(days=1), is_ca)


# --------------------------------------------------------------------------
# Read-only view (``make check``): never creates, writes or chmods anything
# --------------------------------------------------------------------------


class PKIMissing(PKIError):
    """``pki_dir`` lacks files a deploy has put there: ``missing`` names them."""

    def __init__(self, pki_dir: StrPath, missing: Sequence[str]):
        self.pki_dir, self.missing = str(pki_dir), tuple(missing)
        super().__init__(
            f"the PKI in {pki_dir} is missing {', '.join(self.missing)}: bring the PKI directory over from "
            "the checkout that made it (or run the deploy from here to create it)"
        )


def read_cluster_pki(
    pki_dir: StrPath, specs: Iterable[CertSpec]
) -> tuple[dict[str, CA], dict[str, IssuedCert], tuple[bytes, bytes]]:
    """What :func:`ensure_cluster_pki` would return, read from ``pki_dir`` as it is.

    Nothing is created, issued, rewritten or re-moded, and no CA key is read: the CAs come back
    with ``key_pem=None``. ``sa.pub`` is derived in memory from ``sa-key.pem`` (as the deploy
    derives it). Any file missing raises :class:`PKIMissing` naming every one of them.
    """
    pki = Path(pki_dir)
    specs = list(specs)
    wanted = [k.cert_file for k in CA_KINDS.values()]
    wanted += [f for s in specs for f in (f"{s.name}.pem", f"{s.name}-key.pem")]
    wanted.append(SA_KEY_FILE)
    data = {name: _read(pki / name) for name in wanted}
    missing = [name for name, content in data.items() if content is None]
    if missing:
        raise PKIMissing(pki, missing)
    cas = {kind: CA(cert_pem=data[k.cert_file], key_pem=None) for kind, k in CA_KINDS.items()}
    certs = {s.name: IssuedCert(s.name, data[f"{s.name}.pem"], data[f"{s.name}-key.pem"], issued=False, reason=None)
             for s in specs}
    sa_key = data[SA_KEY_FILE]
    try:
        sa_pub = public_pem(sa_key)
    except (ValueError, TypeError) as exc:
        raise PKIError(f"service-account key {pki / SA_KEY_FILE} is unreadable: {exc}") from exc
    return cas, certs, (sa_pub, sa_key)


def reissue_reasons(
    cas: Mapping[str, CA], certs: Mapping[str, IssuedCert], specs: Iterable[CertSpec],
    now: dt.datetime | None = None, skip: Iterable[str] = (),
    validity: dt.timedelta = LEAF_VALIDITY, renew_before: dt.timedelta = RENEW_BEFORE,
) -> dict[str, str]:
    """``{name: reason}`` of every leaf the next deploy would reissue (SANs, subject, issuer, key,
    expiry), judged read-only like :func:`ensure_cert` does. ``skip`` names imported leaves (their
    subject and SANs are their issuer's business)."""
    when, skip = _utcnow(now), set(skip)
    out = {}
    for spec in specs:
        if spec.name in skip or spec.name not in certs:
            continue
        cert = certs[spec.name]
        reason = _reissue_reason(spec, cas[spec.ca], cert.cert_pem, cert.key_pem, when, validity, renew_before)
        if reason is not None:
            out[spec.name] = reason
    return out
