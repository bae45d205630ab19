"""hakube.cis: kube-bench's section 1.2 checks as data, evaluated on an apiserver command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from hakube import apiserver_args, cis
from hakube.cis import Check, Item, compare, evaluate, flag_values, parse_cmdline

from hakube.settings import KEY_BY_NAME

from .conftest import make_inventory

BIN = "/usr/local/bin/kube-apiserver"


# ------------------------------------------------------------------ /proc/<pid>/cmdline


def test_cmdline_is_split_at_nul():
    raw = b"/usr/local/bin/kube-apiserver\0--profiling=false\0--v=0\0"
    assert parse_cmdline(raw) == [BIN, "--profiling=false", "--v=0"]
    assert parse_cmdline(raw.decode()) == [BIN, "--profiling=false", "--v=0"]


def test_cmdline_keeps_empty_and_spaced_arguments():
    assert parse_cmdline(b"x\0--a=\0--b=c d\0") == ["x", "--a=", "--b=c d"]
    assert parse_cmdline(b"") == []


def test_flag_values_as_pflag_reads_them():
    argv = [BIN, "--a=1", "--b", "2", "--c", "--d=x=y", "-e=3", "--a=last", "--f="]
    assert flag_values(argv) == {"--a": "last", "--b": "2", "--c": "true", "--d": "x=y", "--e": "3", "--f": ""}


def test_flag_values_skip_the_binary():
    assert flag_values(["--profiling=true"]) == {}


# ------------------------------------------------------------------ each compare op


@pytest.mark.parametrize("op, have, want, ok", [
    ("eq", "false", "false", True), ("eq", "False", "false", True), ("eq", "true", "false", False),
    ("eq", "0", "0", True), ("eq", "00", "0", False),
    ("noteq", "true", "false", True), ("noteq", "FALSE", "false", False),
    ("gt", "6443", "0", True), ("gt", "0", "0", False), ("gt", "x", "0", False),
    ("gte", "10", "10", True), ("gte", "9", "10", False), ("gte", "", "10", False),
    ("lt", "1", "2", True), ("lte", "2", "2", True), ("lte", "3", "2", False),
    ("has", "Node,RBAC", "Node", True), ("has", "RBAC", "Node", False),
    ("nothave", "Node,RBAC", "AlwaysAllow", True), ("nothave", "AlwaysAllow", "AlwaysAllow", False),
    ("valid_elements", "a,b", "a,b,c", True), ("valid_elements", "a,d", "a,b,c", False),
    ("valid_elements", "", "a", False),
])
def test_compare_ops(op, have, want, ok):
    assert compare(op, have, want) is ok


def test_an_unknown_op_is_an_error():
    with pytest.raises(ValueError):
        compare("bitmask", "644", "644")


def _one(check: Check, *args: str) -> cis.Result:
    cis.BENCHMARKS["test"] = (check,)
    try:
        return evaluate([BIN, *args], "test")[0]
    finally:
        del cis.BENCHMARKS["test"]


A = " (Automated)"


def test_present_absent_and_compare_items():
    present = Check("1", "set" + A, (Item("--x"),))
    absent = Check("2", "unset" + A, (Item("--x", set=False),))
    eq = Check("3", "eq" + A, (Item("--x", op="eq", value="false"),))
    assert _one(present, "--x=1").passed and not _one(present).passed
    assert _one(absent).passed and not _one(absent, "--x=1").passed
    assert _one(eq, "--x=false").passed
    assert not _one(eq).passed, "a compare on an absent flag fails, as in kube-bench"
    result = _one(eq, "--x=true")
    assert result.status == "fail" and result.reason == "wants --x eq false; has --x=true"


def test_bin_op_and_or():
    both = Check("1", "and" + A, (Item("--a"), Item("--b")))
    either = Check("2", "or" + A, (Item("--a", op="gt", value="0"), Item("--a", set=False)), "or")
    assert _one(both, "--a=1", "--b=1").passed and not _one(both, "--a=1").passed
    assert _one(either).passed and _one(either, "--a=5").passed and not _one(either, "--a=0").passed


def test_manual_and_file_checks_are_skipped_with_why():
    manual = Check("1", "m (Manual)", (Item("--x"),))
    on_file = Check("2", "f" + A, not_on_command_line="reads a file")
    assert (_one(manual).status, _one(manual).reason) == ("skip", "Manual check: not evaluated")
    assert (_one(on_file).status, _one(on_file).reason) == ("skip", "reads a file")


# ------------------------------------------------------------------ the benchmarks as data


def test_the_benchmarks_as_kube_bench_numbers_them():
    for name, count, automated in (("cis-1.6", 35, 30), ("cis-1.12", 30, 22)):
        checks = cis.BENCHMARKS[name]
        assert [c.id for c in checks] == [f"1.2.{i}" for i in range(1, count + 1)]
        assert sum(c.automated for c in checks) == automated, name
        for c in checks:
            assert c.title.endswith(("(Automated)", "(Manual)")), c.id
            assert c.bin_op in ("and", "or")
            assert c.tests or c.not_on_command_line or not c.automated, c.id
            assert all(t.flag.startswith("--") for t in c.tests)



def test_exceptions_name_automated_checks_and_data_keys():
    for name, exceptions in cis.EXCEPTIONS.items():
        by_id = {c.id: c for c in cis.BENCHMARKS[name]}
        for check_id, why in exceptions.items():
            assert by_id[check_id].automated and not by_id[check_id].not_on_command_line
            assert why.key in KEY_BY_NAME, why.key


# ------------------------------------------------------------------ the default rendering
UNIT = (Path(__file__).resolve().parents[2] / "templates" / "kube-apiserver.service.j2").read_text()
#: Each benchmark against the versions it is for (cis-1.12 against 1.20.2 too: it passes there as well).
VERSIONS = {"cis-1.6": ("1.20.2",), "cis-1.12": ("1.20.2", "1.35.0", "1.36.0", "1.37.1")}
CASES = [(b, v) for b, versions in VERSIONS.items() for v in versions]


def rendered_argv(tmp_path: Path, version: str, **cluster) -> list[str]:
    """The argv systemd starts the apiserver with: the unit's $VARs from the two rendered env files."""
    inv = make_inventory(tmp_path, kube_version=version)
    inv.cluster.update(cluster)
    s = inv.load()["m1"]
    env = {**apiserver_args.config_env(s), **apiserver_args.apiserver_env(s)}
    return cis.argv_from_env(BIN, UNIT, env)


def test_argv_from_env_follows_the_unit(tmp_path: Path):
    argv = rendered_argv(tmp_path, "1.20.2")
    assert argv[:4] == [BIN, "--logtostderr=true", "--v=0", "--etcd-servers=https://10.9.0.20:2379,https://10.9.0.21:2379"]
    assert "--profiling=false" in argv and not any(" " in a for a in argv)


@pytest.mark.parametrize("benchmark, version", CASES)
def test_the_default_rendering_fails_only_the_documented_checks(tmp_path: Path, benchmark: str, version: str):
    """Pins every Automated check: any flag that stops passing (or an exception that starts to) fails here."""
    results = evaluate(rendered_argv(tmp_path, version), benchmark)
    failed = {r.id: r.reason for r in results if r.status == "fail"}
    assert set(failed) == set(cis.EXCEPTIONS[benchmark]), failed
    assert {r.status for r in results} <= {"pass", "fail", "skip"}


def test_the_counts_the_readme_gives(tmp_path: Path):
    def count(benchmark, version):
        results = [r for r in evaluate(rendered_argv(tmp_path, version), benchmark) if r.status != "skip"]
        return sum(r.passed for r in results), len(results)

    assert count("cis-1.6", "1.20.2") == (26, 29)
    assert count("cis-1.12", "1.36.0") == (21, 22)


@pytest.mark.parametrize("flag, benchmark, check_id", [
    ("--profiling=false", "cis-1.6", "1.2.21"),
    ("--profiling=false", "cis-1.12", "1.2.15"),
    ("--audit-log-maxbackup=10", "cis-1.12", "1.2.18"),
    ("--service-account-extend-token-expiration=false", "cis-1.12", "1.2.30"),
    ("--enable-admission-plugins=NamespaceLifecycle,NodeRestriction,LimitRanger,ServiceAccount,DefaultStorageClass,ResourceQuota", "cis-1.12", "1.2.14"),
])
def test_dropping_one_rendered_flag_fails_its_check(tmp_path: Path, flag: str, benchmark: str, check_id: str):
    argv = rendered_argv(tmp_path, "1.36.0")
    assert flag in argv
    argv.remove(flag)
    assert check_id in cis.failures(argv, benchmark)


def test_extra_flags_override_the_cis_defaults(tmp_path: Path):
    argv = rendered_argv(tmp_path, "1.36.0", apiserver_extra_flags={"profiling": True})
    assert set(cis.failures(argv, "cis-1.12")) == {"1.2.5", "1.2.15"}


def test_the_documented_keys_turn_the_exceptions_off(tmp_path: Path):
    ca_file = _make_ca(tmp_path / "kubelet-ca.pem")
    v120 = rendered_argv(tmp_path, "1.20.2", kubelet_certificate_authority_file=str(ca_file),
                         apiserver_extra_flags={"insecure-port": 0},
                         admission_plugins=["NamespaceLifecycle", "NodeRestriction", "ServiceAccount", "PodSecurityPolicy"])
    assert "--kubelet-certificate-authority=/etc/kubernetes/ssl/kubelet-ca.pem" in v120
    assert cis.failures(v120, "cis-1.6") == {}
    v136 = rendered_argv(tmp_path, "1.36.0", kubelet_certificate_authority_file=str(ca_file))
    assert cis.failures(v136, "cis-1.12") == {}


def _make_ca(path: Path) -> Path:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubelet-ca")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_the_kubelet_ca_key_takes_only_a_ca_certificate(tmp_path: Path):
    inv = make_inventory(tmp_path)
    bad = tmp_path / "not-a-cert.pem"
    bad.write_text("hello\n")
    inv.cluster["kubelet_certificate_authority_file"] = str(bad)
    assert any("kubelet_certificate_authority_file" in p and "not a PEM certificate" in p for p in inv.problems())
