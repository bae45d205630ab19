"""Certificates renewed in time: lifetimes, the renewal window, the CA's own end, and the roll.

``hakube.pki`` issues a leaf for ``validity`` but never past its CA, reissues it once it expires
within ``renew_before``, and refuses to issue from a CA with less than ``renew_before`` left (a
leaf capped at such a CA would be inside the window again on every run). The deploy-level tests
run ``tasks.certs.ensure_pki`` with the data keys as a lab run would (one process per run: the
cache is cleared between runs) and check that every reissued certificate changes a file the
deploy installs, and which handler that file notifies.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from pyinfra.api.exceptions import PyinfraError

from hakube import pki, tasks
from hakube.facts import FileState, HostFacts
from hakube.metrics import HAKUBE_TEXTFILE
from hakube.rolls import roll_owed
from hakube.pki import PKIError, Subject
from hakube.tasks import certs, haproxy, kubeconfig

from .conftest import make_inventory

DAY = dt.timedelta(days=1)
NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
SPECS = pki.cluster_cert_specs(pki.apiserver_sans(["10.0.0.11"], "10.0.0.10", "10.254.0.0/16", "cluster.local"),
                               Subject(O="hakube"))
LEAVES = [s.name for s in SPECS]


@pytest.fixture(autouse=True)
def small_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Key size is irrelevant to lifetimes; these tests issue many certificates."""
    monkeypatch.setattr(pki, "RSA_KEY_SIZE", 1024)


def _not_after(pem: bytes) -> dt.datetime:
    return x509.load_pem_x509_certificate(pem).not_valid_after_utc


def _run(pki_dir: Path, now: dt.datetime, **kw):
    """One run of the PKI step: (cas, {name: IssuedCert})."""
    cas, issued, _ = pki.ensure_cluster_pki(pki_dir, SPECS, now=now, **kw)
    return cas, issued


def _issued(result: dict) -> set[str]:
    return {name for name, c in result.items() if c.issued}


def _files(pki_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(pki_dir.iterdir())}


# ------------------------------------------------------------------ lifetimes


def test_leaves_and_ca_get_the_configured_lifetimes(tmp_path: Path) -> None:
    cas, issued = _run(tmp_path, NOW, validity=20 * DAY, renew_before=10 * DAY, ca_validity=500 * DAY)
    for ca in cas.values():
        assert ca.cert.not_valid_after_utc == NOW + 500 * DAY
    for c in issued.values():
        assert _not_after(c.cert_pem) == NOW + 20 * DAY
    # Outside the 10-day window until day 10; inside from then on, and reissued once.
    assert not _issued(_run(tmp_path, NOW + 10 * DAY - dt.timedelta(seconds=1), validity=20 * DAY, renew_before=10 * DAY)[1])
    later = NOW + 10 * DAY + dt.timedelta(seconds=1)
    again = _run(tmp_path, later, validity=20 * DAY, renew_before=10 * DAY)[1]
    assert _issued(again) == set(LEAVES)
    assert {c.reason for c in again.values()} == {"expires within 10 days"}
    assert not _issued(_run(tmp_path, later, validity=20 * DAY, renew_before=10 * DAY)[1])


def test_defaults_are_the_old_constants(tmp_path: Path) -> None:
    cas, issued = _run(tmp_path, NOW)
    assert cas["cluster"].cert.not_valid_after_utc == NOW + 3650 * DAY
    assert all(_not_after(c.cert_pem) == NOW + 365 * DAY for c in issued.values())


@pytest.mark.parametrize("validity, renew_before", [(20, 20), (20, 30), (20, 0)])
def test_a_window_that_would_reissue_on_every_run_is_refused(tmp_path: Path, validity: int, renew_before: int) -> None:
    with pytest.raises(PKIError, match="every run reissues every certificate"):
        _run(tmp_path, NOW, validity=validity * DAY, renew_before=renew_before * DAY)
    with pytest.raises(PKIError, match="every run reissues every certificate"):
        pki.ensure_cert(tmp_path, SPECS[0], pki.ensure_ca(tmp_path), validity=validity * DAY,
                        renew_before=renew_before * DAY)


def test_a_ca_validity_shorter_than_the_leaves_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PKIError, match="shorter than the certificates'"):
        _run(tmp_path, NOW, validity=365 * DAY, ca_validity=100 * DAY)
    assert not tmp_path.joinpath("ca.pem").exists()


def test_lowering_the_validity_reissues_longer_lived_leaves_once(tmp_path: Path) -> None:
    _run(tmp_path, NOW)
    # A day of slack: the same validity a little later, or one day less, is no reason.
    assert not _issued(_run(tmp_path, NOW + dt.timedelta(hours=5))[1])
    assert not _issued(_run(tmp_path, NOW, validity=364 * DAY)[1])
    shorter = _run(tmp_path, NOW, validity=20 * DAY, renew_before=10 * DAY)[1]
    assert _issued(shorter) == set(LEAVES)
    assert all("longer than the validity of 20 days" in c.reason for c in shorter.values())
    assert all(_not_after(c.cert_pem) == NOW + 20 * DAY for c in shorter.values())
    assert not _issued(_run(tmp_path, NOW + DAY, validity=20 * DAY, renew_before=10 * DAY)[1])


# ------------------------------------------------------------------ never past the CA


def test_a_leaf_never_outlives_its_ca_and_is_not_reissued_for_that_cap(tmp_path: Path) -> None:
    """CA with 100 days, leaves asked for 365: capped at the CA's end. Runs every 5 days until the
    CA enters the window never reissue them (the cap is 70+ days away, outside the 30-day window);
    then the run refuses, leaving every file as it was."""
    cas, issued = _run(tmp_path, NOW, ca_validity=100 * DAY, validity=50 * DAY)  # the CA: created here
    ends = cas["cluster"].cert.not_valid_after_utc
    assert ends == NOW + 100 * DAY
    # Leaves of 50 days fit; now ask for a year: everything issued from here on is capped.
    first = _run(tmp_path, NOW + 21 * DAY, validity=365 * DAY)[1]
    assert _issued(first) == set(LEAVES)  # 29 days left on the 50-day leaves: inside the window
    assert {_not_after(c.cert_pem) for c in first.values()} == {ends}
    for day in range(22, 71, 5):
        assert not _issued(_run(tmp_path, NOW + day * DAY, validity=365 * DAY)[1]), day
    # Exactly renew_before left on the CA: still fine, and the capped leaves are not reissued.
    assert not _issued(_run(tmp_path, ends - 30 * DAY, validity=365 * DAY)[1])
    before = _files(tmp_path)
    with pytest.raises(PKIError) as exc:
        _run(tmp_path, ends - 30 * DAY + dt.timedelta(seconds=1), validity=365 * DAY)
    message = str(exc.value)
    for needed in (str(tmp_path / "ca.pem"), f"{ends:%Y-%m-%d}", "29 days left", "cert_renewal_days",
                   "replace_ca_sha256", "ca_cert_file + ca_key_file"):
        assert needed in message, message
    assert _files(tmp_path) == before, "a refused run changed the PKI"


def test_an_expired_ca_is_named_as_expired(tmp_path: Path) -> None:
    cas, _ = _run(tmp_path, NOW, ca_validity=400 * DAY)
    with pytest.raises(PKIError, match=r"ca\.pem \(.*\) expires on .* \(expired\)"):
        _run(tmp_path, NOW + 401 * DAY)


def test_the_etcd_ca_is_checked_too(tmp_path: Path) -> None:
    _run(tmp_path, NOW)
    _run(tmp_path / "short", NOW, ca_validity=40 * DAY, validity=35 * DAY, renew_before=5 * DAY)
    for name in ("etcd-ca.pem", "etcd-ca-key.pem"):  # a short-lived etcd CA next to a long cluster CA
        (tmp_path / name).write_bytes((tmp_path / "short" / name).read_bytes())
    with pytest.raises(PKIError) as exc:
        _run(tmp_path, NOW + 20 * DAY)
    assert str(tmp_path / "etcd-ca.pem") in str(exc.value) and "etcd_ca_cert_file" in str(exc.value)


def _resign_ca(pki_dir: Path, not_after: dt.datetime) -> None:
    """The same CA (subject, key) with another end date: its leaves still verify against it."""
    old = x509.load_pem_x509_certificate((pki_dir / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((pki_dir / "ca-key.pem").read_bytes(), password=None)
    builder = (x509.CertificateBuilder().subject_name(old.subject).issuer_name(old.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(old.not_valid_before_utc).not_valid_after(not_after))
    for ext in old.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    (pki_dir / "ca.pem").write_bytes(builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))


def test_a_leaf_that_outlives_its_ca_is_reissued_capped(tmp_path: Path) -> None:
    _run(tmp_path, NOW)
    _resign_ca(tmp_path, NOW + 200 * DAY)
    again = _run(tmp_path, NOW)[1]
    cluster_leaves = {s.name for s in SPECS if s.ca == "cluster"}
    assert _issued(again) == cluster_leaves
    assert all(again[n].reason.startswith("outlives its CA") for n in cluster_leaves)
    assert {_not_after(again[n].cert_pem) for n in cluster_leaves} == {NOW + 200 * DAY}
    assert not _issued(_run(tmp_path, NOW + DAY)[1])


def test_an_imported_ca_without_its_key_is_not_checked(tmp_path: Path, etcd_site: dict) -> None:
    """The etcd CA imported with a client certificate: the deploy issues nothing from it."""
    cert_imports = {pki.ETCD_CLIENT.name: (etcd_site["client"], etcd_site["client_key"])}
    _, issued, _ = pki.ensure_cluster_pki(tmp_path, SPECS, etcd_ca_import=(etcd_site["ca"], None),
                                          cert_imports=cert_imports)
    assert issued[pki.ETCD_CLIENT.name].reason.startswith("imported")


# ------------------------------------------------------------------ read-only expiry, for health checks


@pytest.fixture(scope="module")
def issued_once(tmp_path_factory: pytest.TempPathFactory):
    return _run(tmp_path_factory.mktemp("expiry"), NOW)


def test_expiry_of_a_pem(issued_once) -> None:
    cas, issued = issued_once
    pem = issued["haproxy-healthcheck"].cert_pem
    assert pki.expiry(pem, NOW) == (NOW + 365 * DAY, 365, False)
    assert pki.expiry(pem, NOW + dt.timedelta(hours=1)) == (NOW + 365 * DAY, 364, False)  # whole days, rounded down
    assert pki.expiry(pem, NOW + 366 * DAY)[1] == -1  # expired
    assert pki.expiry(pki.combined_pem(issued["haproxy-healthcheck"]), NOW)[1] == 365  # haproxy's cert + key
    assert pki.expiry(cas["cluster"].cert_pem, NOW)[1:] == (3650, True)
    with pytest.raises(PKIError):
        pki.expiry(b"not a certificate", NOW)


# ------------------------------------------------------------------ the deploy: every certificate rolls


def _pki_run(inv, **data):
    """One deploy run's PKI step with this data: (settings of m1, ClusterPKI)."""
    inv.cluster.update(data)
    cfg = inv.load()["m1"]
    certs._ensure_pki.cache_clear()  # each pyinfra run is a new process
    return cfg, certs.ensure_pki(cfg)


def _pems(p) -> dict:
    """Every PEM a ClusterPKI carries (whether it was issued in this run is not compared)."""
    return {"ca": p.ca_pem, "etcd-ca": p.etcd_ca_pem, "sa": (p.sa_pub, p.sa_key),
            **{n: (c.cert_pem, c.key_pem) for n, c in p.certs.items()}}


def _desired(cfg, p) -> dict[str, object]:
    return {f.path: f for step in tasks.desired_state(cfg, p).values() for f in step.values()}


#: Where each leaf reaches a master, and the handler its change notifies.
ROUTES = {
    "apiserver": ("/etc/kubernetes/ssl/apiserver.pem", ("kube-apiserver",)),
    "apiserver-etcd-client": ("/etc/kubernetes/ssl/apiserver-etcd-client.pem", ("kube-apiserver",)),
    "apiserver-kubelet-client": ("/etc/kubernetes/ssl/apiserver-kubelet-client.pem", ("kube-apiserver",)),
    "haproxy-healthcheck": (haproxy.CHECK_CERT, ("haproxy",)),
    "admin": ("/root/.kube/config", ()),  # a plain file: nothing reads it at start
}


def test_every_leaf_reaches_a_master_through_a_file_with_a_handler() -> None:
    assert set(ROUTES) == set(LEAVES)


def test_lab_sequence_reissues_every_certificate_once_and_rolls(tmp_path: Path, capsys) -> None:
    """The lab's renewal test, planned: certificates of 20 days (outside a 10-day window), then
    cert_renewal_days 25 with the default validity: every certificate is inside the window, is
    reissued for 365 days, every file that carries one changes (apiserver inputs roll through the
    drain, haproxy reloads, the kubeconfigs are rewritten); the next run changes nothing."""
    inv = make_inventory(tmp_path)
    cfg, short = _pki_run(inv, cert_validity_days=20, cert_renewal_days=10)
    assert all(_not_after(c.cert_pem) - dt.datetime.now(dt.timezone.utc) <= 20 * DAY for c in short.certs.values())
    cfg, same = _pki_run(inv)
    assert not _issued(same.certs) and _pems(same) == _pems(short)
    want_short = _desired(cfg, short)
    local_short = kubeconfig.write_local(cfg, short).read_bytes()
    capsys.readouterr()

    cfg, renewed = _pki_run(inv, cert_renewal_days=25, cert_validity_days=365)
    assert _issued(renewed.certs) == set(LEAVES)
    err = capsys.readouterr().err
    assert all(f"[pki] issued {n} (expires within 25 days)" in err for n in LEAVES), err
    assert all(_not_after(c.cert_pem) - dt.datetime.now(dt.timezone.utc) > 364 * DAY for c in renewed.certs.values())
    assert (renewed.ca_pem, renewed.etcd_ca_pem, renewed.sa_pub) == (short.ca_pem, short.etcd_ca_pem, short.sa_pub)

    want = _desired(cfg, renewed)
    changed = {path for path, f in want.items() if f.content != want_short[path].content}
    for name, (path, notify) in ROUTES.items():
        assert path in changed, name
        assert want[path].notify == notify, name
    # The apiserver's keys change with their certificates, and the certificates' metrics (their ends);
    # the CA files and nothing else do.
    assert changed == {p for p, _ in ROUTES.values()} | {f"/etc/kubernetes/ssl/{n}-key.pem" for n in certs.APISERVER_CERTS} \
        | {HAKUBE_TEXTFILE}
    # On a master that has the short-lived files, the roll and the reload are owed.
    facts = HostFacts(files={path: FileState(f.sha256, int(f.mode, 8), "root:root") for path, f in want_short.items()})
    apiserver_inputs = [f for f in want.values() if "kube-apiserver" in f.notify]
    haproxy_files = [f for f in want.values() if "haproxy" in f.notify]
    assert roll_owed("kube-apiserver", apiserver_inputs, facts) and roll_owed("haproxy", haproxy_files, facts)
    assert not roll_owed("keepalived", [f for f in want.values() if "keepalived" in f.notify], facts)
    # The operator's copy is rewritten.
    assert kubeconfig.write_local(cfg, renewed).read_bytes() != local_short

    cfg, after = _pki_run(inv)
    assert not _issued(after.certs) and _pems(after) == _pems(renewed)
    settled = HostFacts(files={path: FileState(f.sha256, int(f.mode, 8), "root:root") for path, f in want.items()})
    assert _desired(cfg, after) == want
    assert not roll_owed("kube-apiserver", apiserver_inputs, settled) and not roll_owed("haproxy", haproxy_files, settled)


def test_a_ca_near_its_end_stops_the_deploy_naming_host_and_ca(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path)
    # A PKI whose CA was made 20 days ago for 40 days: 20 days left, inside the default window.
    pki.ensure_cluster_pki(tmp_path / "pki", SPECS, now=dt.datetime.now(dt.timezone.utc) - 20 * DAY,
                           ca_validity=40 * DAY, validity=35 * DAY, renew_before=5 * DAY)
    before = _files(tmp_path / "pki")
    with pytest.raises(PyinfraError) as exc:
        _pki_run(inv)
    message = str(exc.value)
    assert message.startswith(f"refusing to run: m1: the CA {tmp_path / 'pki' / 'ca.pem'} (CN=kubernetes-ca) expires on ")
    assert "(19 days left), within the renewal window of 30 days (cert_renewal_days)" in message
    assert _files(tmp_path / "pki") == before
    # A narrower window lets the run go on; what it issues ends with the CA.
    _, p = _pki_run(inv, cert_renewal_days=10)
    ca_end = _not_after(p.ca_pem)
    assert _issued(p.certs) and all(_not_after(p.certs[n].cert_pem) == ca_end for n in _issued(p.certs))


def test_shortening_the_validity_on_a_converged_pki_reissues_it(tmp_path: Path) -> None:
    """The lab's first step on a lab already deployed with one-year certificates."""
    inv = make_inventory(tmp_path)
    _, year = _pki_run(inv)
    _, short = _pki_run(inv, cert_validity_days=20, cert_renewal_days=10)
    assert _issued(short.certs) == set(LEAVES)
    assert all("longer than the validity of 20 days" in c.reason for c in short.certs.values())
    _, again = _pki_run(inv)
    assert not _issued(again.certs) and _pems(again) == _pems(short)
