"""CIS 1.2 on the running apiserver (issue 21, part 3): kube-bench's API-server checks, evaluated by
``hakube.cis`` against ``/proc/<pid>/cmdline`` of kube-apiserver on every master of the converged lab.

The lab runs 1.20.2 with the default data (inventory.py sets none of the keys the hardening table
names), so every Automated command-line check of cis-1.6 (kube-bench's benchmark for 1.20) passes
except exactly the documented ``hakube.cis.EXCEPTIONS``; cis-1.12 (the current benchmark) is
evaluated too, for the same reason. Read only: one ``cat`` of /proc per master; seconds.
"""

from __future__ import annotations

import base64

import pytest

from hakube import cis

from .conftest import masters, sh

pytestmark = pytest.mark.lab

PID = "$(systemctl show -p MainPID --value kube-apiserver)"


def running_argv(name: str) -> list[str]:
    """kube-apiserver's argv on ``name``, as the kernel holds it (NUL-separated, base64 to carry it)."""
    proc = sh(name, f'pid={PID}; test "$pid" -gt 0 && base64 -w0 /proc/$pid/cmdline')
    return cis.parse_cmdline(base64.b64decode(proc.stdout.strip()))


@pytest.fixture(scope="module")
def argvs(converged) -> dict[str, list[str]]:
    out = {name: running_argv(name) for name in masters()}
    for name, argv in out.items():
        assert argv and argv[0].endswith("kube-apiserver"), (name, argv[:3])
        assert "--etcd-servers" in cis.flag_values(argv), (name, argv)
    return out


@pytest.mark.parametrize("benchmark", ["cis-1.6", "cis-1.12"])
def test_every_automated_check_passes_but_the_documented_ones(argvs, benchmark: str) -> None:
    expected = set(cis.EXCEPTIONS[benchmark])
    for name, argv in argvs.items():
        results = cis.evaluate(argv, benchmark)
        failed = {r.id: r.reason for r in results if r.status == "fail"}
        assert set(failed) == expected, f"{name}: {benchmark} failures {failed}, documented {sorted(expected)}"
        automated = [r for r in results if r.status != "skip"]
        assert len(automated) == {"cis-1.6": 29, "cis-1.12": 22}[benchmark]


def test_the_cis_defaults_are_what_the_apiserver_runs_with(argvs) -> None:
    for name, argv in argvs.items():
        flags = cis.flag_values(argv)
        assert flags.get("--profiling") == "false", name
        assert flags.get("--service-account-extend-token-expiration") == "false", name
        assert int(flags.get("--audit-log-maxbackup", "0")) >= 10, name
