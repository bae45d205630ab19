"""A VIP changed on a live cluster (issue 17): checked before it goes live, renumbering supported
both ways, and the last good inventory repairs whatever a bad VIP left behind.

Clients call /readyz through the old and the new VIP during every change; through a refused change
the real client stacks (``lab.clients``: kept HTTP/2 and HTTP/1.1 connections, writes, a watch)
keep calling the old VIP and none of their calls may fail. Runs on the converged
mixed lab (vm01 keepalived 2.2.7, vm02 keepalived 2.3); every test leaves it converged with
inventory.py's data.
"""
from __future__ import annotations

import subprocess

import pytest

import lab

from .conftest import (
    Prober,
    api_get,
    assert_clients_unhurt,
    assert_converged,
    assert_no_change,
    config_checksums,
    deploy,
    holders,
    masters,
    real_clients,
    sh,
    variant_inventory,
    wait_for,
)
from .test_03_ha import settle  # one VIP holder, the API answering through it
from .test_08_real_sites import extra_container

pytestmark = pytest.mark.lab

NEW_VIP = "10.213.0.150"  # free on the lab network
SQUATTER = "squatter"
MIN_CALLS = 30  # a prober that made fewer calls measured nothing


def answers(host: str) -> bool:
    status, body = api_get(host=host, timeout=2.0)
    return status == 200 and body.strip() == "ok"


def holders_of(address: str) -> list[str]:
    return [m for m in masters()
            if address in sh(m, "ip -o -4 addr show dev eth0", check=False).stdout.replace("/", " ").split()]


def first_ok(prober: Prober) -> float | None:
    return next((t for t, ok, _ in prober.samples if ok), None)


def assert_handover(old: Prober, new: Prober, what: str) -> None:
    """The old VIP answered until the new one did: no failed call through the old VIP before the new
    one's first good answer, and none through the new VIP after it."""
    start = first_ok(new)
    assert start is not None, f"{what}: the new VIP never answered"
    before = [s for s in old.samples if s[0] < start]
    after_new = [s for s in new.samples if s[0] >= start]
    assert len(before) >= MIN_CALLS and len(after_new) >= 5, (len(before), len(after_new))
    failed_old = [s for s in before if not s[1]]
    failed_new = [s for s in after_new if not s[1]]
    print(f"{what}: old VIP {len(before)} calls before the switch, {len(failed_old)} failed; "
          f"new VIP {len(after_new)} calls after, {len(failed_new)} failed")
    assert not failed_old, f"{what}: the old VIP failed before the new one answered: {failed_old[:5]}"
    assert not failed_new, f"{what}: the new VIP failed after it first answered: {failed_new[:5]}"


def test_renumbering_the_vip_and_back(converged, tmp_path):
    settle()
    moved = variant_inventory(tmp_path, cluster={"vip": NEW_VIP})
    for inventory, old_vip, new_vip in ((moved, lab.VIP, NEW_VIP), ("inventory.py", NEW_VIP, lab.VIP)):
        # short timeouts: the new VIP is there to answer from a moment on, the old one is gone after it
        with Prober(host=old_vip, timeout=2.0) as old, Prober(host=new_vip, timeout=2.0) as new:
            run = deploy(inventory)
            wait_for(lambda: answers(new_vip), 10, what=f"the API through {new_vip}")
        assert_converged(run)
        assert "another VRRP router" not in run.output, run.describe()
        assert holders_of(new_vip) and len(holders_of(new_vip)) == 1, holders_of(new_vip)
        assert holders_of(old_vip) == []
        assert_handover(old, new, f"{old_vip} -> {new_vip}")
        print(f"{old_vip} -> {new_vip}: {run.seconds:.1f}s")
        assert_no_change(deploy(inventory))  # the run after changes nothing (no false foreign router either)
    settle()


def test_a_new_vip_that_another_machine_owns_is_refused_before_anything_changes(converged, tmp_path):
    settle()
    before = config_checksums()
    extra_container(SQUATTER, NEW_VIP, ("busybox", "sleep", "3600"))
    try:
        with Prober() as old, real_clients() as clients:
            run = deploy(variant_inventory(tmp_path, cluster={"vip": NEW_VIP}))
        assert_clients_unhurt(clients, 10, "a new VIP another machine owns, refused")
        assert run.returncode != 0, run.describe()
        assert f"refusing to change the VIP: the new VIP {NEW_VIP} already answers on eth0" in run.output, \
            run.describe()
        assert len(old.samples) >= 10 and not old.failures, old.failures[:5]  # refused within seconds
        print(f"foreign owner: refused after {run.seconds:.1f}s; {len(old.samples)} calls through the old VIP, "
              f"{len(old.failures)} failed")
        assert config_checksums() == before  # nothing changed on any master
        assert holders() and holders_of(NEW_VIP) == []
    finally:
        subprocess.run(["docker", "rm", "-f", SQUATTER], capture_output=True)
    assert_no_change(deploy())  # the good inventory: nothing to repair


def test_a_new_vip_that_a_master_holds_by_hand_is_refused_while_planning(converged, tmp_path):
    settle()
    before = config_checksums()
    hand = "10.213.0.151"
    sh("vm02", f"ip addr add {hand}/24 dev eth0")
    try:
        with Prober() as old, real_clients() as clients:
            run = deploy(variant_inventory(tmp_path, cluster={"vip": hand}))
        assert_clients_unhurt(clients, 10, "a new VIP a master holds by hand, refused")
        assert run.returncode != 0, run.describe()
        assert f"the new VIP {hand} is already an address of vm02 (not from keepalived)" in run.output, run.describe()
        assert len(old.samples) >= 10 and not old.failures, old.failures[:5]
        assert config_checksums() == before
    finally:
        sh("vm02", f"ip addr del {hand}/24 dev eth0", check=False)
    assert_no_change(deploy())


def test_the_last_good_inventory_repairs_a_vip_on_etcds_address(converged):
    """What an earlier, unchecked run could leave: keepalived carrying etcd's address as the VIP (the
    holder then answers for etcd itself, its apiserver cannot reach etcd) and an apiserver restart
    still owed. The good inventory gives that address up before its roll waits on that apiserver."""
    settle()
    holder = holders()[0]
    for m in masters():
        sh(m, f"sed -i 's#{lab.VIP}/24#{lab.ETCD_ADDRESS}/24#' /etc/keepalived/keepalived.conf && "
              "systemctl reload keepalived && mkdir -p /var/lib/hakube/pending && "
              "touch /var/lib/hakube/pending/kube-apiserver")
    wait_for(lambda: holders_of(lab.ETCD_ADDRESS) == [holder], 15, what=f"{holder} taking etcd's address")
    wait_for(lambda: not answers(lab.VIP), 15, what="the VIP gone")
    run = deploy()
    assert_converged(run)
    assert any("give up 10.213.0.20" in name for name in run.changed()), run.changed()
    wait_for(lambda: answers(lab.VIP), 15, what="the API through the VIP")
    assert holders_of(lab.ETCD_ADDRESS) == []
    settle()
    assert_no_change(deploy())
