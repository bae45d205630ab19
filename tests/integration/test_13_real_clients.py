"""Real clients through every change (issue 18): the client stacks controllers use, writes, a watch,
and the operator's ``--limit``.

Around each change the real client stacks (``lab.clients``) call the API through the VIP with the
admin certificate: a new TLS connection per call, Go's net/http with one kept HTTP/2 connection
(client-go's transport) reading and writing ConfigMaps, the official Python client (urllib3, kept
HTTP/1.1 connections) reading and writing, a reflector-style watch, and two naive clients whose
figures are printed, not judged. Any failed call of a real client, a missed object or a relist
fails the test, and every client must have made its minimum number of calls.

Runs on the converged mixed lab; every test leaves it converged with inventory.py's data.
"""
from __future__ import annotations

import pytest

import lab

from .conftest import (
    ROLL_TOLERANCE,
    assert_clients_unhurt,
    assert_converged,
    assert_no_change,
    config_checksums,
    deploy,
    masters,
    real_clients,
    sh,
    variant_inventory,
)
from .test_03_ha import _restart_window, settle

pytestmark = pytest.mark.lab

ROLL = "kube-apiserver | Restart kube-apiserver, one master at a time, waiting for /readyz"
WRITERS = ("go_h2", "python_client")
MIN_WRITES = 2000  # the rare lost write needs volume to show
SSH = {"LAB_CONNECT": "ssh"}


def writes(report: dict) -> int:
    return sum(report[kind].get("writes", 0) for kind in WRITERS)


def apiserver_pid(m: str) -> str:
    return sh(m, "systemctl show -p MainPID --value kube-apiserver").stdout.strip()


def test_rolls_of_both_apiservers_fail_no_call_read_or_write(converged, tmp_path):
    """Flag changes back and forth, each a roll of both apiservers, until the writers made at least
    MIN_WRITES writes: zero failed calls, nothing missed by the watch."""
    settle()
    values = iter((401, 402, 403))
    runs = []
    with real_clients(write_every=2) as clients:  # every other call a write: 2000 writes in two rolls
        while clients.writes_so_far() < MIN_WRITES and len(runs) < 6:
            # a changed flag, then inventory.py's again: every roll measured, the lab left as it was
            for inventory in (variant_inventory(tmp_path, name=f"inv{len(runs)}.py",
                                                cluster={"apiserver_extra_flags": {"max-requests-inflight": next(values)}}),
                              "inventory.py"):
                run = deploy(inventory)
                assert_converged(run)
                assert sorted(run.changed().get(ROLL, [])) == sorted(f"@docker/{m}" for m in masters()), run.changed()
                windows = sorted(_restart_window(m) for m in masters())  # one master at a time
                for (_, up_a), (stop_b, _) in zip(windows, windows[1:]):
                    assert up_a < stop_b, f"restarts overlapped: {windows}"
                runs.append(run)
    report = assert_clients_unhurt(clients, 500, f"{len(runs)} rolls of both apiservers", tolerated=ROLL_TOLERANCE)
    print(f"{len(runs)} rolls, {writes(report)} writes, {sum(r.seconds for r in runs):.0f}s of deploys")
    assert writes(report) >= MIN_WRITES


@pytest.mark.parametrize("data, service", [
    ({"haproxy_timeout": "2h"}, "haproxy"),
    ({"keepalived_extra_global_defs": ["vrrp_garp_master_refresh 60"]}, "keepalived"),
], ids=["haproxy", "keepalived"])
def test_reloads_fail_no_call(converged, tmp_path, data, service):
    settle()
    with real_clients() as clients:
        run = deploy(variant_inventory(tmp_path, cluster=data))
        assert_converged(run)
        back = deploy()
        assert_converged(back)
    reloaded = [name for name in run.changed() if name.startswith(f"{service} | Reload")]
    assert reloaded, run.changed()
    assert_clients_unhurt(clients, 100, f"{service} reloaded on both masters, and back")


def test_limit_changes_only_the_limited_master_over_ssh(converged, tmp_path):
    """``--limit vm02`` over SSH with a changed flag: only vm02 changes (one roll, drained), vm01 keeps
    its files and its apiserver's PID; the same --limit again changes nothing; the full run then
    rolls only vm01."""
    settle()
    assert_no_change(deploy(env=SSH))  # converged over SSH too
    flagged = variant_inventory(tmp_path, cluster={"apiserver_extra_flags": {"max-requests-inflight": 411}})
    dry = deploy(flagged, dry=True, env=SSH, extra_args=("--limit", "vm02"))
    assert_converged(dry)
    planned = {h for hosts in dry.planned_changes().values() for h in hosts}
    assert planned == {"vm02"}, dry.planned_changes()
    before_vm01 = (config_checksums(["vm01"]), apiserver_pid("vm01"))
    before_vm02 = apiserver_pid("vm02")
    with real_clients() as clients:
        run = deploy(flagged, env=SSH, extra_args=("--limit", "vm02"))
    assert_converged(run)
    assert run.changed().get(ROLL) == ["vm02"], run.changed()
    assert (config_checksums(["vm01"]), apiserver_pid("vm01")) == before_vm01
    assert apiserver_pid("vm02") != before_vm02
    assert "--max-requests-inflight=411" in sh("vm02", "cat /etc/kubernetes/apiserver").stdout
    assert_clients_unhurt(clients, 100, "--limit vm02: vm02's apiserver rolled", tolerated=ROLL_TOLERANCE)
    assert_no_change(deploy(flagged, env=SSH, extra_args=("--limit", "vm02")))
    rest = deploy(flagged, env=SSH)
    assert_converged(rest)
    assert rest.changed().get(ROLL) == ["vm01"], rest.changed()
    assert_converged(deploy())  # back to inventory.py's flags
    settle()
    assert lab.vip_holders() and len(lab.vip_holders()) == 1


def test_switching_vrrp_to_unicast_and_back(converged, tmp_path):
    """keepalived re-inits its VRRP instance when a reload changes between multicast and unicast;
    the other masters stop while the holder reloads alone, keeping the VIP as a local address on lo
    (``hakube.vip.switch_in_place``): zero failed calls, the same holder, no copy left on lo."""
    settle()
    holder = lab.vip_holder()
    with real_clients() as clients:
        on = deploy(variant_inventory(tmp_path, cluster={"vrrp_unicast": True}))
        assert_converged(on)
        settle(30)
        off = deploy()
        assert_converged(off)
        settle(30)
    for run, mode in ((on, "unicast"), (off, "multicast")):
        assert any(f"Switch VRRP to {mode} on every master at once" in name for name in run.changed()), run.changed()
    assert_clients_unhurt(clients, 100, "vrrp_unicast switched on, then off")
    assert lab.vip_holders() == [holder]  # the holder kept the VIP both times
    for m in masters():
        assert lab.VIP not in sh(m, "ip -o -4 addr show dev lo").stdout, m
