"""hakube.cis: kube-bench's section 1.2 checks as data, evaluated on an apiserver command line."""

from __future__ import annotations

import pytest

from hakube import cis
from hakube.cis import Check, Item, compare, evaluate, flag_values, parse_cmdline

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

