"""Unit tests for hakube.pki (real RSA keys, tmp dirs, no external tools)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import shutil
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
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


def _chains_to(cert_pem: bytes, ca: pki.CA) -> bool:
    cert = _load(cert_pem)
    try:
        cert.verify_directly_issued_by(_load(ca.cert_pem))
    except (ValueError, InvalidSignature):
        return False
    return True


def test_chain_verifies(cluster) -> None:
    cas, certs, _ = cluster
    assert set(cas) == {"cluster", "etcd"}
    assert len(certs) == len(SPECS)
    for spec in SPECS:
        assert _chains_to(certs[spec.name].cert_pem, cas[spec.ca]), spec.name


def test_only_the_etcd_client_comes_from_the_etcd_ca() -> None:
    assert {s.name: s.ca for s in SPECS} == {
        "apiserver": "cluster",
        "apiserver-kubelet-client": "cluster",
        "apiserver-etcd-client": "etcd",
        "admin": "cluster",
        "haproxy-healthcheck": "cluster",
    }
    assert pki.ETCD_CLIENT in SPECS


def test_etcd_client_chains_to_the_etcd_ca_and_not_the_cluster_ca(cluster) -> None:
    cas, certs, _ = cluster
    etcd_client = certs["apiserver-etcd-client"].cert_pem
    assert _chains_to(etcd_client, cas["etcd"])
    assert not _chains_to(etcd_client, cas["cluster"])
    assert _load(etcd_client).issuer == _load(cas["etcd"].cert_pem).subject


@pytest.mark.parametrize("name", ["admin", "haproxy-healthcheck", "apiserver", "apiserver-kubelet-client"])
def test_other_leaves_chain_to_the_cluster_ca_and_not_the_etcd_ca(cluster, name: str) -> None:
    cas, certs, _ = cluster
    assert _chains_to(certs[name].cert_pem, cas["cluster"])
    assert not _chains_to(certs[name].cert_pem, cas["etcd"])


def test_ca_properties(cluster) -> None:
    cas, _, _ = cluster
    for kind, cn in (("cluster", "kubernetes-ca"), ("etcd", "etcd-ca")):
        cert = _load(cas[kind].cert_pem)
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        assert ku.key_cert_sign and ku.crl_sign
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == cn
        assert cert.not_valid_after_utc - cert.not_valid_before_utc > dt.timedelta(days=3600)
    assert cas["cluster"].key_pem != cas["etcd"].key_pem
    assert _load(cas["cluster"].cert_pem).public_key() != _load(cas["etcd"].cert_pem).public_key()


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
    for name in ("etcd-ca.pem", "etcd-ca-key.pem"):
        shutil.copy(pki_dir / name, new_dir / name)
    cas, certs, _ = pki.ensure_cluster_pki(new_dir, SPECS, ca_subject=SUBJECT)
    for spec in SPECS:
        issued = certs[spec.name]
        _load(issued.cert_pem).verify_directly_issued_by(_load(cas[spec.ca].cert_pem))
        if spec.ca == "cluster":
            assert issued.issued and issued.reason == "issuer changed"
        else:  # the etcd CA did not change: neither does the apiserver's etcd client
            assert not issued.issued


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
    cas, certs, _ = pki.ensure_cluster_pki(
        pki_dir, SPECS, ca_import=(str(src / "ca.pem"), str(src / "ca-key.pem")), ca_subject=SUBJECT
    )
    assert cas["cluster"].cert_pem == (src / "ca.pem").read_bytes()
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


# ---------------------------------------------------------------- etcd CA


@pytest.fixture(scope="session")
def site_etcd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An existing site's etcd PKI: its CA and certificates it issued (outside any deploy pki_dir)."""
    path = tmp_path_factory.mktemp("site-etcd")
    ca = pki.ensure_ca(path, kind="etcd")
    pki.ensure_cert(path, pki.ETCD_CLIENT, ca)
    pki.ensure_cert(path, CertSpec("etcd-server-only", "etcd", server=True, sans=("127.0.0.1",)), ca)
    return path


def test_etcd_ca_files_and_modes(template_pki: Path, cluster) -> None:
    cas, _, _ = cluster
    assert (template_pki / "etcd-ca.pem").read_bytes() == cas["etcd"].cert_pem
    assert (template_pki / "etcd-ca-key.pem").read_bytes() == cas["etcd"].key_pem
    assert _mode(template_pki / "etcd-ca.pem") == 0o644
    assert _mode(template_pki / "etcd-ca-key.pem") == 0o600


def test_etcd_ca_created_once_and_reused(pki_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = {n: (pki_dir / n).read_bytes() for n in ("etcd-ca.pem", "etcd-ca-key.pem")}
    cas, certs, _ = pki.ensure_cluster_pki(pki_dir, SPECS, ca_subject=SUBJECT)
    assert capsys.readouterr().out == ""
    assert not certs["apiserver-etcd-client"].issued
    assert {n: (pki_dir / n).read_bytes() for n in before} == before
    assert pki.ensure_ca(pki_dir, kind="etcd") == cas["etcd"]
    assert pki.ensure_ca(pki_dir) == cas["cluster"] != cas["etcd"]


def test_etcd_ca_created_in_a_dir_that_only_has_the_cluster_ca(other_ca_dir: Path, tmp_path: Path) -> None:
    # An upgrade: pki_dir from before the etcd CA existed.
    shutil.copytree(other_ca_dir, tmp_path / "pki")
    cas, certs, _ = pki.ensure_cluster_pki(tmp_path / "pki", SPECS)
    assert cas["cluster"].cert_pem == (other_ca_dir / "ca.pem").read_bytes()
    assert (tmp_path / "pki" / "etcd-ca-key.pem").exists()
    assert _chains_to(certs["apiserver-etcd-client"].cert_pem, cas["etcd"])


def test_etcd_ca_corrupt_raises(pki_dir: Path) -> None:
    (pki_dir / "etcd-ca.pem").write_bytes(b"garbage")
    with pytest.raises(PKIError, match="etcd-ca.pem"):
        pki.ensure_cluster_pki(pki_dir, SPECS, ca_subject=SUBJECT)


def test_etcd_ca_import_different_refused(pki_dir: Path, site_etcd: Path) -> None:
    before = (pki_dir / "etcd-ca.pem").read_bytes()
    with pytest.raises(PKIError, match="different CA"):
        pki.ensure_cluster_pki(
            pki_dir, SPECS, etcd_ca_import=(str(site_etcd / "etcd-ca.pem"), str(site_etcd / "etcd-ca-key.pem"))
        )
    with pytest.raises(PKIError, match="different CA"):  # a client-cert import may not replace it either
        pki.ensure_cluster_pki(
            pki_dir, SPECS, etcd_ca_import=(str(site_etcd / "etcd-ca.pem"), None),
            cert_imports={"apiserver-etcd-client": (str(site_etcd / "apiserver-etcd-client.pem"),
                                                    str(site_etcd / "apiserver-etcd-client-key.pem"))},
        )
    assert (pki_dir / "etcd-ca.pem").read_bytes() == before


def test_etcd_ca_key_import_issues_the_etcd_client_from_it(site_etcd: Path, tmp_path: Path) -> None:
    site_ca = pki.load_ca(site_etcd / "etcd-ca.pem", site_etcd / "etcd-ca-key.pem")
    cas, certs, _ = pki.ensure_cluster_pki(
        tmp_path / "pki", SPECS, etcd_ca_import=(str(site_etcd / "etcd-ca.pem"), str(site_etcd / "etcd-ca-key.pem"))
    )
    assert cas["etcd"] == site_ca
    assert (tmp_path / "pki" / "etcd-ca-key.pem").read_bytes() == site_ca.key_pem
    assert certs["apiserver-etcd-client"].issued  # issued here, not the site's own client cert
    assert certs["apiserver-etcd-client"].cert_pem != (site_etcd / "apiserver-etcd-client.pem").read_bytes()
    assert _chains_to(certs["apiserver-etcd-client"].cert_pem, site_ca)
    assert not _chains_to(certs["admin"].cert_pem, site_ca)
    _, again, _ = pki.ensure_cluster_pki(
        tmp_path / "pki", SPECS, etcd_ca_import=(str(site_etcd / "etcd-ca.pem"), str(site_etcd / "etcd-ca-key.pem"))
    )
    assert not any(c.issued for c in again.values())


def _client_import(site: Path, cert: str = "apiserver-etcd-client", key: str | None = None) -> dict:
    return {"apiserver-etcd-client": (str(site / f"{cert}.pem"), str(site / f"{key or cert}-key.pem"))}


def test_etcd_client_cert_import(site_etcd: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "pki"
    imports = {"etcd_ca_import": (str(site_etcd / "etcd-ca.pem"), None), "cert_imports": _client_import(site_etcd)}
    cas, certs, _ = pki.ensure_cluster_pki(dest, SPECS, **imports)
    client = certs["apiserver-etcd-client"]
    assert client.cert_pem == (site_etcd / "apiserver-etcd-client.pem").read_bytes()
    assert client.key_pem == (site_etcd / "apiserver-etcd-client-key.pem").read_bytes()
    assert client.issued and "imported from" in client.reason
    assert "[pki] apiserver-etcd-client imported from" in capsys.readouterr().out
    # pki_dir holds what the masters get: the CA certificate (no key) and a copy of the pair.
    assert cas["etcd"].cert_pem == (dest / "etcd-ca.pem").read_bytes() and cas["etcd"].key_pem is None
    assert not (dest / "etcd-ca-key.pem").exists()
    assert (dest / "apiserver-etcd-client.pem").read_bytes() == client.cert_pem
    assert _mode(dest / "apiserver-etcd-client-key.pem") == 0o600
    # The other leaves still come from the cluster CA.
    assert _chains_to(certs["admin"].cert_pem, cas["cluster"])
    _, again, _ = pki.ensure_cluster_pki(dest, SPECS, **imports)
    assert not any(c.issued for c in again.values())
    assert capsys.readouterr().out == ""


def test_recorded_etcd_ca_without_key_is_never_replaced(site_etcd: Path, tmp_path: Path) -> None:
    dest = tmp_path / "pki"
    pki.ensure_cluster_pki(dest, SPECS, etcd_ca_import=(str(site_etcd / "etcd-ca.pem"), None),
                           cert_imports=_client_import(site_etcd))
    with pytest.raises(PKIError, match="its key .* is not"):  # dropping the import does not create a new CA
        pki.ensure_cluster_pki(dest, SPECS)
    # ...and an import of the same CA with its key completes it.
    cas, certs, _ = pki.ensure_cluster_pki(
        dest, SPECS, etcd_ca_import=(str(site_etcd / "etcd-ca.pem"), str(site_etcd / "etcd-ca-key.pem"))
    )
    assert (dest / "etcd-ca-key.pem").read_bytes() == (site_etcd / "etcd-ca-key.pem").read_bytes()
    assert _mode(dest / "etcd-ca-key.pem") == 0o600
    assert _chains_to(certs["apiserver-etcd-client"].cert_pem, cas["etcd"])


def test_etcd_ca_cert_without_key_or_client_cannot_issue(site_etcd: Path, tmp_path: Path) -> None:
    with pytest.raises(PKIError, match="cannot issue apiserver-etcd-client"):
        pki.ensure_cluster_pki(tmp_path / "pki", SPECS, etcd_ca_import=(str(site_etcd / "etcd-ca.pem"), None))


def test_cluster_ca_import_needs_its_key(other_ca_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(PKIError, match="needs both"):
        pki.ensure_ca(tmp_path / "pki", str(other_ca_dir / "ca.pem"))


@pytest.mark.parametrize(
    ("cert", "key", "at_fault", "reason"),
    [
        # Issued by the cluster CA (pki_dir), not by the site's etcd CA.
        ("pki:apiserver-etcd-client", "pki:apiserver-etcd-client", "cert", "is not signed by the CA"),
        ("site:apiserver-etcd-client", "site:etcd-server-only", "key", "does not match"),
        ("site:etcd-server-only", "site:etcd-server-only", "cert", "lacks the extended key usage clientAuth"),
        ("site:etcd-ca", "site:etcd-ca", "cert", "is a CA certificate"),
    ],
    ids=["unsigned", "key-mismatch", "no-clientAuth", "the-ca-itself"],
)
def test_imported_client_refused(pki_dir: Path, site_etcd: Path, cert: str, key: str, at_fault: str, reason: str) -> None:
    dirs = {"pki": pki_dir, "site": site_etcd}
    cert_path = dirs[cert.split(":")[0]] / f"{cert.split(':')[1]}.pem"
    key_path = dirs[key.split(":")[0]] / f"{key.split(':')[1]}-key.pem"
    site_ca = pki.load_ca(site_etcd / "etcd-ca.pem")
    with pytest.raises(pki.PKIFileError, match=reason) as exc:
        pki.check_imported_cert(pki.ETCD_CLIENT, site_ca, cert_path, key_path)
    assert exc.value.path == str(cert_path if at_fault == "cert" else key_path)


def test_imported_client_expired_or_unreadable(site_etcd: Path, tmp_path: Path) -> None:
    site_ca = pki.load_ca(site_etcd / "etcd-ca.pem")
    cert, key = site_etcd / "apiserver-etcd-client.pem", site_etcd / "apiserver-etcd-client-key.pem"
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=400)
    with pytest.raises(pki.PKIFileError, match="expired") as exc:
        pki.check_imported_cert(pki.ETCD_CLIENT, site_ca, cert, key, now=later)
    assert exc.value.path == str(cert)
    (tmp_path / "junk.pem").write_text("junk")
    with pytest.raises(pki.PKIFileError, match="not a valid unencrypted PEM private key") as exc:
        pki.check_imported_cert(pki.ETCD_CLIENT, site_ca, cert, tmp_path / "junk.pem")
    assert exc.value.path == str(tmp_path / "junk.pem")


def test_load_ca_names_the_file_at_fault(pki_dir: Path, other_ca_dir: Path) -> None:
    with pytest.raises(pki.PKIFileError) as exc:
        pki.load_ca(pki_dir / "etcd-ca.pem", other_ca_dir / "ca-key.pem")
    assert exc.value.path == str(other_ca_dir / "ca-key.pem")
    with pytest.raises(pki.PKIFileError, match="not a CA") as exc:
        pki.load_ca(pki_dir / "admin.pem")
    assert exc.value.path == str(pki_dir / "admin.pem")


def test_reserved_and_unknown_names(tmp_path: Path) -> None:
    with pytest.raises(PKIError, match="reserved certificate names: etcd-ca"):
        pki.ensure_cluster_pki(tmp_path / "pki", [CertSpec("etcd-ca", "x", client=True)])
    with pytest.raises(PKIError, match="unknown CA 'front-proxy'"):
        pki.ensure_cluster_pki(tmp_path / "pki", [CertSpec("x", "x", client=True, ca="front-proxy")])
    with pytest.raises(PKIError, match="not in the table: nope"):
        pki.ensure_cluster_pki(tmp_path / "pki", SPECS, cert_imports={"nope": ("a", "b")})


def test_etcd_client_from_before_the_etcd_ca_is_not_switched_silently(pki_dir: Path) -> None:
    # A deployment from before the etcd CA: its etcd trusts the cluster CA.
    (pki_dir / "etcd-ca.pem").unlink()
    (pki_dir / "etcd-ca-key.pem").unlink()
    old_cluster_client = pki.ensure_cert(pki_dir, dataclasses.replace(pki.ETCD_CLIENT, ca="cluster"),
                                         pki.ensure_ca(pki_dir))
    with pytest.raises(PKIError, match="predate the etcd CA"):
        pki.ensure_cluster_pki(pki_dir, SPECS, ca_subject=SUBJECT)
    assert not (pki_dir / "etcd-ca.pem").exists()
    # Importing the CA etcd trusts today keeps everything as it is.
    imported = (str(pki_dir / "ca.pem"), str(pki_dir / "ca-key.pem"))
    cas, certs, _ = pki.ensure_cluster_pki(pki_dir, SPECS, ca_subject=SUBJECT, etcd_ca_import=imported)
    assert cas["etcd"] == cas["cluster"]
    assert not certs["apiserver-etcd-client"].issued
    assert certs["apiserver-etcd-client"].cert_pem == old_cluster_client.cert_pem
