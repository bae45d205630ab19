"""The lab's etcd trusts only the etcd CA (the files it would install; no Docker needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from hakube import pki
from lab import etcd as lab_etcd


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setattr(lab_etcd, "PKI_DIR", tmp_path)
    monkeypatch.setattr(lab_etcd, "log", lambda msg: None)
    return lab_etcd._issue_certs()


def _cert(pem: str | bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
        return True
    except (ValueError, InvalidSignature):  # issuer name differs, or the signature does not verify
        return False


def test_etcd_trusts_the_etcd_ca_file(files: dict, tmp_path: Path) -> None:
    env = dict(line.split("=", 1) for line in lab_etcd.ENV_TEXT.splitlines() if "=" in line and not line.startswith("#"))
    assert env["ETCD_TRUSTED_CA_FILE"] == lab_etcd.CA_FILE == "/etc/etcd/pki/etcd-ca.pem"
    assert env["ETCD_CLIENT_CERT_AUTH"] == "true"
    assert files[lab_etcd.CA_FILE][0].encode() == (tmp_path / "etcd-ca.pem").read_bytes()
    assert files[lab_etcd.CA_FILE][0].encode() != (tmp_path / "ca.pem").read_bytes()
    assert lab_etcd.STALE_FILES == ("/etc/etcd/pki/ca.pem",)


def test_etcd_server_and_lab_client_come_from_the_etcd_ca(files: dict, tmp_path: Path) -> None:
    etcd_ca = _cert((tmp_path / "etcd-ca.pem").read_bytes())
    cluster_ca = _cert((tmp_path / "ca.pem").read_bytes())
    for path in (lab_etcd.SERVER_CERT_FILE, lab_etcd.CLIENT_CERT_FILE):
        cert = _cert(files[path][0])
        assert _issued_by(cert, etcd_ca), path
        assert not _issued_by(cert, cluster_ca), path
    assert files[lab_etcd.SERVER_KEY_FILE][1:] == ("etcd:etcd", "0600")
    assert files[lab_etcd.CLIENT_KEY_FILE][1:] == ("root:root", "0600")


def test_lab_and_deploy_share_the_etcd_ca(files: dict, tmp_path: Path) -> None:
    # The deploy run on the same pki dir issues its etcd client from the CA etcd trusts.
    cas, certs, _ = pki.ensure_cluster_pki(tmp_path, pki.cluster_cert_specs(["10.0.0.1"], pki.Subject()))
    assert cas["etcd"].cert_pem.decode() == files[lab_etcd.CA_FILE][0]
    trusted = _cert(files[lab_etcd.CA_FILE][0])
    assert _issued_by(_cert(certs["apiserver-etcd-client"].cert_pem), trusted)
    for name in ("admin", "haproxy-healthcheck", "apiserver"):
        assert not _issued_by(_cert(certs[name].cert_pem), trusted), name
