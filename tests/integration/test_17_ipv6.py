"""IPv6 and dual stack (issue 21) on a lab of its own: `up --family dual` (an IPv6 ULA subnet beside
the IPv4 one, every machine an address in each). One extra lab bring-up; the default ipv4 lab is put
back (and deployed) at the end when another test follows (not in `make test`, where this module is last).

(a) an IPv6-only inventory (`LAB_FAMILY=ipv6`: the masters' IPv6 bind addresses, the IPv6 VIP,
    etcd's IPv6 URL, an IPv6 Service CIDR, VRRPv3 with unicast) converges, /readyz answers through
    the IPv6 VIP, a second run changes nothing;
(b) the masters are then stopped and their keepalived config removed (a change of the masters'
    family on a running cluster is not a supported path: README, IPv6 and dual stack), and the
    dual-stack inventory (`LAB_FAMILY=dual`: IPv4 masters and etcd, `vip` and `vip6`) converges:
    both VIPs answer, one master holds both; haproxy killed on the holder moves both together
    (timed); a roll of both apiservers fails no call of the real clients through either VIP.

Only the lab's own addresses (10.213.0.0/24, fd00:213::/64) and loopback are ever contacted.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

import lab

from .conftest import (LAB_LAYOUT, REPO, ROLL_TOLERANCE, api_get, api_ok, assert_clients_unhurt, assert_converged,
                       assert_no_change, deploy, masters, real_clients, sh, variant_inventory, wait_for)

pytestmark = pytest.mark.lab

ADVERT_INT = 1  # inventory.py, every family
#: no VRRP password with VRRPv3 (ipv6): an ambient one would be refused, so it is emptied there
IPV6_ENV = {"LAB_FAMILY": "ipv6", "HAKUBE_VRRP_AUTH_PASS": ""}
DUAL_ENV = {"LAB_FAMILY": "dual"}
#: phase (a) keeps its objects under its own etcd prefix: the dual-stack cluster of phase (b)
#: starts from an empty registry (its kubernetes Service is IPv4, phase (a)'s was IPv6)
IPV6_PREFIX = {"apiserver_extra_flags": {"etcd-prefix": "/registry-ipv6-lab"}}


def lab_up(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "lab", "up", *args], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def holders_of(address: str) -> list[str]:
    return lab.vip_holders(vip=address)


def both_held_by_one() -> str | None:
    v4, v6 = holders_of(lab.VIP), holders_of(lab.VIP6)
    return v4[0] if len(v4) == 1 and v4 == v6 else None


def ok_through(address: str) -> bool:
    status, body = api_get(host=address, timeout=2.0)
    return status == 200 and body.strip() == "ok"


def lab_tests_follow(request) -> bool:
    """Does any test of this session come after this module's? (pytest runs them in collection order.)"""
    items = request.session.items
    last = max(i for i, item in enumerate(items) if item.module is request.module)
    return last < len(items) - 1


@pytest.fixture(scope="module")
def dual_lab(converged, tmp_path_factory, request):
    tmp = tmp_path_factory.mktemp("ipv6")
    lab_up("--family", "dual", *LAB_LAYOUT)
    assert lab.status()["vip6"] == lab.VIP6
    v6_inventory = variant_inventory(tmp, cluster=IPV6_PREFIX, name="inventory_ipv6.py")
    runs = {"ipv6-first": deploy(v6_inventory, env=IPV6_ENV)}
    runs["ipv6-second"] = deploy(v6_inventory, env=IPV6_ENV)
    runs["ipv6-readyz"] = wait_for(lambda: ok_through(lab.VIP6), 30, what="the API through the IPv6 VIP")
    runs["ipv6-holders"] = holders_of(lab.VIP6)
    yield {"runs": runs, "tmp": tmp, "v6_inventory": v6_inventory}
    if not lab_tests_follow(request):
        # The last module of `make test` (hence its number): nothing after it needs the ipv4 lab, so
        # the containers are not recreated for nobody; `make lab` (or `lab up`) puts the ipv4 lab back.
        return
    lab_up("--family", "ipv4", *LAB_LAYOUT)
    assert_converged(deploy())
    wait_for(api_ok, 60, what="the API through the VIP of the ipv4 lab again")


# (a) IPv6 only ---------------------------------------------------------------------------------------


def test_an_ipv6_cluster_converges_and_answers_through_the_ipv6_vip(dual_lab):
    runs = dual_lab["runs"]
    assert_converged(runs["ipv6-first"])
    assert runs["ipv6-readyz"]
    assert len(runs["ipv6-holders"]) == 1, runs["ipv6-holders"]
    for m in masters():
        cfg = sh(m, "cat /etc/haproxy/haproxy.cfg").stdout
        assert f"bind [{lab.VIP6}]:6443" in cfg and f"server vm01 [{lab.ADDRESSES6['vm01']}]:6443" in cfg
        env = sh(m, "cat /etc/kubernetes/apiserver").stdout
        assert f"--advertise-address={lab.ADDRESSES6[m]}" in env and lab.ETCD_ENDPOINT6 in env
    assert f"server: https://[{lab.VIP6}]:6443" in lab.ADMIN_KUBECONFIG.read_text()


def test_an_ipv6_cluster_second_run_changes_nothing(dual_lab):
    assert_no_change(dual_lab["runs"]["ipv6-second"])


# (b) dual stack ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dual_stack(dual_lab):
    """The IPv6-only cluster stopped (keepalived's config removed, so keepalived runs nowhere and the
    next run is a first start), then the dual-stack inventory applied twice."""
    for m in masters():
        sh(m, "systemctl stop keepalived haproxy kube-apiserver; rm -f /etc/keepalived/keepalived.conf")
    first = deploy(env=DUAL_ENV)
    second = deploy(env=DUAL_ENV)
    return {"first": first, "second": second}


def test_a_dual_stack_front_converges_and_answers_through_both_vips(dual_stack):
    assert_converged(dual_stack["first"])
    wait_for(lambda: ok_through(lab.VIP) and ok_through(lab.VIP6), 30, what="the API through both VIPs")
    holder = wait_for(both_held_by_one, 20, what="one master holding both VIPs")
    conf = sh(holder, "cat /etc/keepalived/keepalived.conf").stdout
    assert f"{lab.VIP6}/64 dev eth0 scope global" in conf.split("virtual_ipaddress_excluded", 1)[1]
    assert f"server: https://{lab.VIP}:6443" in lab.ADMIN_KUBECONFIG.read_text()  # the primary vip


def test_a_dual_stack_front_second_run_changes_nothing(dual_stack):
    assert_no_change(dual_stack["second"])


def test_haproxy_dies_on_the_holder_and_both_vips_move_together(dual_stack):
    holder = wait_for(lambda: both_held_by_one() if ok_through(lab.VIP) else None, 20, what="one holder")
    started = time.monotonic()
    sh(holder, "systemctl stop haproxy")
    try:
        new = wait_for(lambda: (h := both_held_by_one()) and h != holder and ok_through(lab.VIP)
                       and ok_through(lab.VIP6) and h, 30, what="both VIPs on another master, answering")
        failover = time.monotonic() - started
        print(f"\ndual stack: failover after haproxy died on {holder}: {failover:.2f}s (new holder {new})")
        assert failover <= 4 * ADVERT_INT + 2
        # never apart: sampled for a few adverts after the move
        for _ in range(int(3 * ADVERT_INT / 0.25)):
            assert holders_of(lab.VIP) == holders_of(lab.VIP6) == [new]
            time.sleep(0.25)
    finally:
        sh(holder, "systemctl start haproxy")


def test_a_roll_fails_no_call_through_either_vip(dual_stack, dual_lab):
    """A changed flag rolls both apiservers (one roll: the rolls both ways are test_13's); the real
    clients call through each VIP."""
    tmp = dual_lab["tmp"]
    changed = variant_inventory(tmp, cluster={"apiserver_extra_flags": {"max-requests-inflight": 401}},
                                name="inventory_dual_roll.py")
    with real_clients(lab.VIP, namespace="hakube-probe-v4") as v4, \
            real_clients(lab.VIP6, namespace="hakube-probe-v6") as v6:
        assert_converged(deploy(changed, env=DUAL_ENV))
    assert_clients_unhurt(v4, 50, "a roll, clients through the IPv4 VIP", tolerated=ROLL_TOLERANCE)
    assert_clients_unhurt(v6, 50, "a roll, clients through the IPv6 VIP", tolerated=ROLL_TOLERANCE)
