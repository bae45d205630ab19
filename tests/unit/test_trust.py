"""hakube.trust: the masters' CA, etcd CA and service-account key are compared with this checkout's."""

from __future__ import annotations

import hashlib

import pytest

from hakube import pki, trust
from hakube.facts import FileState

from .conftest import Inv

A, B = "a" * 64, "b" * 64


def test_same_anchors_everywhere_is_fine() -> None:
    hosts = {"m1": {"ca": A, "sa": B}, "m2": {"ca": A, "sa": B}}
    assert trust.problems({"ca": A, "sa": B}, hosts, {}, "pki") == []


def test_a_master_without_anchors_is_fine_first_install_or_a_new_master() -> None:
    assert trust.problems({"ca": A, "sa": B}, {"m1": {"ca": None, "sa": None}}, {}, "pki") == []
    assert trust.problems({"ca": None, "sa": None}, {"m1": {"ca": None, "sa": None}}, {}, "pki") == []


def test_a_checkout_without_pki_is_refused_when_masters_have_one() -> None:
    lines = trust.problems({"ca": None, "sa": None}, {"m1": {"ca": A, "sa": B}, "m2": {"ca": A, "sa": B}}, {}, "pki")
    assert len(lines) == 4
    assert lines[0] == f"m1: /etc/kubernetes/ssl/ca.pem (CA certificate) sha256 {A}; this checkout has none (pki holds no CA certificate)"
    assert any(line.startswith("m2: /etc/kubernetes/ssl/sa.pub (service-account public key)") for line in lines)


def test_another_checkouts_ca_is_refused_naming_both_hashes() -> None:
    lines = trust.problems({"ca": B}, {"m1": {"ca": A}}, {}, "pki")
    assert lines == [f"m1: /etc/kubernetes/ssl/ca.pem (CA certificate) sha256 {A}; this checkout's is {B}"]


def test_masters_that_disagree_are_refused() -> None:
    lines = trust.problems({"ca": A}, {"m1": {"ca": A}, "m2": {"ca": B}}, {}, "pki")
    assert lines == [f"m2: /etc/kubernetes/ssl/ca.pem (CA certificate) sha256 {B}; this checkout's is {A}"]


def test_replacing_is_allowed_only_for_the_named_anchor() -> None:
    assert trust.problems({"ca": B}, {"m1": {"ca": A}}, {"ca": A}, "pki") == []
    assert trust.problems({"ca": B}, {"m1": {"ca": A}}, {"ca": "c" * 64}, "pki") != []
    assert trust.problems({"ca": B, "sa": B}, {"m1": {"ca": A, "sa": A}}, {"ca": A}, "pki") != []  # sa not allowed


def test_refusal_says_how_to_proceed() -> None:
    text = trust.refusal(["m1: x"], "/srv/pki")
    assert "no host was changed" in text and "/srv/pki" in text
    for key in ("ca_cert_file", "ca_key_file", "sa_key_file", "replace_ca_sha256"):
        assert key in text


def test_host_anchors_from_a_snapshot() -> None:
    files = {"/etc/kubernetes/ssl/ca.pem": FileState(A, 0o644, "root:root")}
    assert trust.host_anchors(files) == {"ca": A, "sa": None, "etcd-ca": None}


def test_local_anchors_read_the_pki_dir_and_imports_and_create_nothing(inv: Inv, tmp_path) -> None:
    c = inv.load()["m1"].cluster
    assert trust.local_anchors(c) == {"ca": None, "sa": None, "etcd-ca": None}
    assert not (tmp_path / "pki" / "ca.pem").exists()
    ca = pki.ensure_ca(c.pki_dir)
    _, sa_key = pki.ensure_sa_keypair(c.pki_dir)
    got = trust.local_anchors(c)
    assert got["ca"] == hashlib.sha256(ca.cert_pem).hexdigest()
    assert got["sa"] == hashlib.sha256(pki.public_pem(sa_key)).hexdigest()


def test_sa_key_import_is_copied_once_and_a_different_one_refused(tmp_path) -> None:
    other = tmp_path / "other"
    _, key = pki.ensure_sa_keypair(other)
    imported = other / "sa-key.pem"
    pub, got = pki.ensure_sa_keypair(tmp_path / "pki", imported)
    assert got == key and pub == pki.public_pem(key)
    _, third = pki.ensure_sa_keypair(tmp_path / "third")
    with pytest.raises(pki.PKIError, match="different service-account key"):
        pki.ensure_sa_keypair(tmp_path / "pki", tmp_path / "third" / "sa-key.pem")
