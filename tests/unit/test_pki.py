"""Unit tests for hakube.pki (real RSA keys, tmp dirs, no external tools)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hakube import pki
from hakube.pki import CertSpec, PKIError, Subject

SUBJECT = Subject(C="DE", ST="Berlin", L="Berlin", O="hakube", OU="platform")
SANS = pki.apiserver_sans(["10.0.0.11", "10.0.0.12"], "10.0.0.10", "10.254.0.0/16", "cluster.local")
SPECS = pki.cluster_cert_specs(SANS, SUBJECT)


def _load(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def _spec(name: str, specs: list[CertSpec] = SPECS) -> CertSpec:
    return next(s for s in specs if s.name == name)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory):
    """A fully populated pki dir built once from scratch, with the call's result.

    Tests must not modify it; mutating tests use the ``pki_dir`` copy.
    """
    path = tmp_path_factory.mktemp("template") / "pki"
    return path, pki.ensure_cluster_pki(path, SPECS, ca_subject=SUBJECT)


@pytest.fixture(scope="session")
def template_pki(built) -> Path:
    return built[0]


@pytest.fixture(scope="session")
def cluster(built):
    """Result of the initial ensure_cluster_pki call (everything freshly issued)."""
    return built[1]


@pytest.fixture(scope="session")
def other_ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dir holding an unrelated CA."""
    path = tmp_path_factory.mktemp("other") / "pki"
    pki.ensure_ca(path)
    return path


@pytest.fixture
def pki_dir(template_pki: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "pki"
    shutil.copytree(template_pki, dest)
    return dest




# ---------------------------------------------------------------- SANs / CIDR


def test_first_service_ip() -> None:
    assert pki.first_service_ip("10.254.0.0/16") == "10.254.0.1"
    assert pki.first_service_ip("10.96.0.0/12") == "10.96.0.1"
    assert pki.first_service_ip("fd00:10::/108") == "fd00:10::1"


def test_first_service_ip_invalid() -> None:
    with pytest.raises(PKIError):
        pki.first_service_ip("not-a-cidr")


def test_apiserver_sans_order() -> None:
    assert SANS == (
        "127.0.0.1",
        "10.0.0.11",
        "10.0.0.12",
        "10.0.0.10",
        "10.254.0.1",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster",
        "kubernetes.default.svc.cluster.local",
    )


def test_apiserver_sans_dedup_and_extra() -> None:
    sans = pki.apiserver_sans(
        ["127.0.0.1", "10.0.0.11", "10.0.0.11"],
        "10.0.0.11",
        "10.254.0.0/16",
        "cluster",
        extra=("api.example.com", "kubernetes", "10.254.0.1", "api.example.com"),
    )
    assert sans == (
        "127.0.0.1",
        "10.0.0.11",
        "10.254.0.1",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster",
        "api.example.com",
    )


# ---------------------------------------------------------------- table


def test_cert_table_names() -> None:
    assert [s.name for s in SPECS] == [
        "apiserver",
        "apiserver-kubelet-client",
        "apiserver-etcd-client",
        "admin",
        "haproxy-healthcheck",
    ]


@pytest.mark.parametrize(
    ("name", "cn", "ekus", "orgs"),
    [
        ("apiserver", "kubernetes", {ExtendedKeyUsageOID.SERVER_AUTH}, ["hakube"]),
        ("apiserver-kubelet-client", "kubernetes", {ExtendedKeyUsageOID.CLIENT_AUTH}, ["hakube"]),
        ("apiserver-etcd-client", "kube-apiserver-etcd-client", {ExtendedKeyUsageOID.CLIENT_AUTH}, []),
        ("admin", "admin", {ExtendedKeyUsageOID.CLIENT_AUTH}, ["system:masters"]),
        ("haproxy-healthcheck", "haproxy-healthcheck", {ExtendedKeyUsageOID.CLIENT_AUTH}, []),
    ],
)
def test_table_entry_eku_and_subject(cluster, name: str, cn: str, ekus: set, orgs: list[str]) -> None:
    _, certs, _ = cluster
    cert = _load(certs[name].cert_pem)
    assert set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == ekus
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == [cn]
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == orgs


def test_apiserver_cert_sans(cluster) -> None:
    _, certs, _ = cluster
    san = _load(certs["apiserver"].cert_pem).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    dns = set(san.get_values_for_type(x509.DNSName))
    assert ips == {"127.0.0.1", "10.0.0.11", "10.0.0.12", "10.0.0.10", "10.254.0.1"}
    assert "kubernetes.default.svc.cluster.local" in dns and len(dns) == 5
    assert all(isinstance(ipaddress.ip_address(i), ipaddress.IPv4Address) for i in ips)


# ---------------------------------------------------------------- chain


def test_chain_verifies(cluster) -> None:
    ca, certs, _ = cluster
    ca_cert = _load(ca.cert_pem)
    assert len(certs) == len(SPECS)
    for issued in certs.values():
        _load(issued.cert_pem).verify_directly_issued_by(ca_cert)


def test_ca_properties(cluster) -> None:
    ca, _, _ = cluster
    cert = _load(ca.cert_pem)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "kubernetes-ca"
    assert cert.not_valid_after_utc - cert.not_valid_before_utc > dt.timedelta(days=3600)


def test_leaf_key_matches_cert(cluster) -> None:
    _, certs, _ = cluster
    issued = certs["admin"]
    key = serialization.load_pem_private_key(issued.key_pem, password=None)
    assert key.public_key() == _load(issued.cert_pem).public_key()


# ---------------------------------------------------------------- reuse / reissue


def test_fresh_dir_issues_everything(cluster) -> None:
    _, certs, _ = cluster
    assert all(c.issued and c.reason == "new" for c in certs.values())


def test_issue_prints_one_line_per_cert(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pki.ensure_cluster_pki(tmp_path / "pki", SPECS[-1:])
    assert capsys.readouterr().out == "[pki] issued haproxy-healthcheck (new)\n"


def test_reuse_is_idempotent(pki_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ca1, certs1, sa1 = pki.ensure_cluster_pki(pki_dir, SPECS, ca_subject=SUBJECT)
    ca2, certs2, sa2 = pki.ensure_cluster_pki(pki_dir, SPECS, ca_subject=SUBJECT)
    assert capsys.readouterr().out == ""
    assert ca1 == ca2 and sa1 == sa2
    for name in certs1:
        assert not certs1[name].issued and not certs2[name].issued
        assert certs2[name].reason is None
        assert certs1[name].cert_pem == certs2[name].cert_pem
        assert certs1[name].key_pem == certs2[name].key_pem
        assert (pki_dir / f"{name}.pem").read_bytes() == certs2[name].cert_pem


def test_reissue_on_san_change(pki_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sans = pki.apiserver_sans(
        ["10.0.0.11", "10.0.0.12"], "10.0.0.10", "10.254.0.0/16", "cluster.local", extra=["10.0.0.5"]
    )
    specs = pki.cluster_cert_specs(sans, SUBJECT)
    _, certs, _ = pki.ensure_cluster_pki(pki_dir, specs, ca_subject=SUBJECT)
    assert certs["apiserver"].issued
    assert "SANs" in certs["apiserver"].reason and "+10.0.0.5" in certs["apiserver"].reason
    assert [n for n, c in certs.items() if c.issued] == ["apiserver"]
    assert "[pki] issued apiserver (SANs changed: +10.0.0.5)" in capsys.readouterr().out


def test_san_order_is_irrelevant(pki_dir: Path) -> None:
    spec = CertSpec("apiserver", "kubernetes", subject=SUBJECT, server=True, sans=tuple(reversed(SANS)))
    ca = pki.ensure_ca(pki_dir)
    assert not pki.ensure_cert(pki_dir, spec, ca).issued


def test_reissue_on_subject_change(pki_dir: Path) -> None:
    specs = pki.cluster_cert_specs(SANS, Subject(C="DE", O="other-org"))
    _, certs, _ = pki.ensure_cluster_pki(pki_dir, specs, ca_subject=SUBJECT)
    assert certs["apiserver"].issued and certs["apiserver"].reason == "subject changed"
    assert certs["apiserver-kubelet-client"].issued
    assert not certs["admin"].issued


def test_reissue_on_eku_change(pki_dir: Path) -> None:
    ca = pki.ensure_ca(pki_dir)
    spec = CertSpec("admin", "admin", organizations=("system:masters",), client=True, server=True)
    result = pki.ensure_cert(pki_dir, spec, ca)
    assert result.issued and "key usage" in result.reason


def test_reissue_on_expiry(pki_dir: Path) -> None:
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=340)
    _, certs, _ = pki.ensure_cluster_pki(pki_dir, SPECS, ca_subject=SUBJECT, now=later)
    for issued in certs.values():
        assert issued.issued and issued.reason == "expires within 30 days"
        assert _load(issued.cert_pem).not_valid_after_utc > later + dt.timedelta(days=300)
    _, again, _ = pki.ensure_cluster_pki(pki_dir, SPECS, ca_subject=SUBJECT, now=later)
    assert not any(c.issued for c in again.values())


def test_not_reissued_before_renewal_window(pki_dir: Path) -> None:
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=300)
    _, certs, _ = pki.ensure_cluster_pki(pki_dir, SPECS, ca_subject=SUBJECT, now=later)
    assert not any(c.issued for c in certs.values())


def test_reissue_on_ca_change(pki_dir: Path, other_ca_dir: Path, tmp_path: Path) -> None:
    new_dir = tmp_path / "new"
    shutil.copytree(other_ca_dir, new_dir)
    for spec in SPECS:
        for suffix in (".pem", "-key.pem"):
            shutil.copy(pki_dir / f"{spec.name}{suffix}", new_dir / f"{spec.name}{suffix}")
    ca, certs, _ = pki.ensure_cluster_pki(new_dir, SPECS, ca_subject=SUBJECT)
    for issued in certs.values():
        assert issued.issued and issued.reason == "issuer changed"
        _load(issued.cert_pem).verify_directly_issued_by(_load(ca.cert_pem))


def test_reissue_on_corrupt_leaf(pki_dir: Path) -> None:
    (pki_dir / "admin.pem").write_bytes(b"garbage")
    _, certs, _ = pki.ensure_cluster_pki(pki_dir, SPECS, ca_subject=SUBJECT)
    assert certs["admin"].issued and "unreadable" in certs["admin"].reason


def test_reissue_on_key_mismatch(pki_dir: Path) -> None:
    shutil.copy(pki_dir / "admin-key.pem", pki_dir / "haproxy-healthcheck-key.pem")
    _, certs, _ = pki.ensure_cluster_pki(pki_dir, SPECS, ca_subject=SUBJECT)
    assert certs["haproxy-healthcheck"].issued and "key" in certs["haproxy-healthcheck"].reason


# ---------------------------------------------------------------- CA handling


def test_ca_corrupt_raises(pki_dir: Path) -> None:
    (pki_dir / "ca.pem").write_bytes(b"garbage")
    with pytest.raises(PKIError, match="ca.pem"):
        pki.ensure_ca(pki_dir)


def test_ca_key_mismatch_raises(pki_dir: Path, other_ca_dir: Path) -> None:
    shutil.copy(other_ca_dir / "ca-key.pem", pki_dir / "ca-key.pem")
    with pytest.raises(PKIError, match="does not match"):
        pki.ensure_ca(pki_dir)


def test_import_different_ca_refused(pki_dir: Path, other_ca_dir: Path) -> None:
    before = (pki_dir / "ca.pem").read_bytes()
    with pytest.raises(PKIError, match="different CA"):
        pki.ensure_ca(pki_dir, str(other_ca_dir / "ca.pem"), str(other_ca_dir / "ca-key.pem"))
    assert (pki_dir / "ca.pem").read_bytes() == before


def test_import_missing_file_names_path(tmp_path: Path, other_ca_dir: Path) -> None:
    missing = tmp_path / "nope" / "ca.pem"
    with pytest.raises(PKIError, match=str(missing)):
        pki.ensure_ca(tmp_path / "pki", str(missing), str(other_ca_dir / "ca-key.pem"))


def test_import_non_ca_cert_refused(pki_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(PKIError, match="not a CA"):
        pki.ensure_ca(tmp_path / "pki", str(pki_dir / "admin.pem"), str(pki_dir / "admin-key.pem"))


def test_import_mismatched_pair_refused(pki_dir: Path, other_ca_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(PKIError, match="does not match"):
        pki.ensure_ca(tmp_path / "pki", str(pki_dir / "ca.pem"), str(other_ca_dir / "ca-key.pem"))


def test_import_into_empty_dir(other_ca_dir: Path, tmp_path: Path) -> None:
    ca = pki.ensure_ca(tmp_path / "pki", str(other_ca_dir / "ca.pem"), str(other_ca_dir / "ca-key.pem"))
    assert ca.cert_pem == (other_ca_dir / "ca.pem").read_bytes()
    assert (tmp_path / "pki" / "ca-key.pem").read_bytes() == (other_ca_dir / "ca-key.pem").read_bytes()


def test_import_same_ca_ok(pki_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(pki_dir, src)
    ca, certs, _ = pki.ensure_cluster_pki(
        pki_dir, SPECS, ca_import=(str(src / "ca.pem"), str(src / "ca-key.pem")), ca_subject=SUBJECT
    )
    assert ca.cert_pem == (src / "ca.pem").read_bytes()
    assert not any(c.issued for c in certs.values())


# ---------------------------------------------------------------- files, SA, combined


def test_file_modes(template_pki: Path) -> None:
    path = template_pki
    assert _mode(path) == 0o700
    keys = sorted(path.glob("*-key.pem"))
    assert {p.name for p in keys} >= {"ca-key.pem", "sa-key.pem", "admin-key.pem", "apiserver-key.pem"}
    for key in keys:
        assert _mode(key) == 0o600, key
    assert _mode(path / "ca.pem") == 0o644
    assert _mode(path / "apiserver.pem") == 0o644
    assert not [p for p in path.iterdir() if p.name.endswith(".tmp")]


def test_sa_keypair_stable_and_not_ca(pki_dir: Path) -> None:
    pub1, key1 = pki.ensure_sa_keypair(pki_dir)
    pub2, key2 = pki.ensure_sa_keypair(pki_dir)
    assert (pub1, key1) == (pub2, key2)
    assert pub1.startswith(b"-----BEGIN PUBLIC KEY-----")
    assert (pki_dir / "sa.pub").read_bytes() == pub1
    ca = pki.ensure_ca(pki_dir)
    assert key1 != ca.key_pem
    sa_key = serialization.load_pem_private_key(key1, password=None)
    assert sa_key.public_key() != _load(ca.cert_pem).public_key()
    assert serialization.load_pem_public_key(pub1) == sa_key.public_key()


def test_combined_pem(cluster) -> None:
    _, certs, _ = cluster
    issued = certs["apiserver"]
    combined = pki.combined_pem(issued)
    assert issued.cert_pem in combined and issued.key_pem in combined
    assert combined.index(b"BEGIN CERTIFICATE") < combined.index(b"PRIVATE KEY")


def test_duplicate_spec_names_rejected(tmp_path: Path) -> None:
    with pytest.raises(PKIError, match="duplicate"):
        pki.ensure_cluster_pki(tmp_path / "pki", [SPECS[0], SPECS[0]])
