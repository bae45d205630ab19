"""Real sites (issue 10): multicast dropped and unicast VRRP, a VIP or a VRID that someone else
already uses, and the kube-apiserver binary downloaded and checked.

Runs on the converged mixed lab (vm01 Debian 12 with keepalived 2.2.7 / haproxy 2.6, vm02 Debian
13 with keepalived 2.3 / haproxy 3.0). Every test leaves the lab converged with the data of
inventory.py: multicast VRRP, the local binary, one VIP holder.
"""
from __future__ import annotations

import hashlib
import subprocess
import time

import pytest

import lab
from hakube.paths import PATHS

from .conftest import (
    ROLL_TOLERANCE,
    Prober,
    api_ok,
    assert_converged,
    assert_no_change,
    deploy,
    holders,
    masters,
    sh,
    variant_inventory,
    wait_for,
)
from .test_03_ha import settle  # one VIP holder, the API answering through it

pytestmark = pytest.mark.lab

ADVERT_INT = 1  # inventory.py
FOREIGN, FOREIGN_IP = "foreign", "10.213.0.40"  # a VRRP router that is not ours
SQUATTER = "squatter"  # a machine that owns the VIP's address
VIP_JOURNAL_WINDOW = 30  # hakube.vip.JOURNAL_WINDOW: foreign adverts older than this are forgotten


def extra_container(name: str, address: str, command: tuple[str, ...], image: str | None = None) -> None:
    """A machine of the lab network that is not part of the cluster (removed by `lab down` too)."""
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    image = image or lab.read_state()["images"]["etcd"]
    subprocess.run(["docker", "run", "-d", "--name", name, "--hostname", name, "--label", f"{lab.LABEL}=1",
                    "--network", lab.NETWORK, "--ip", address, "--cgroupns", "private", "--tmpfs", "/run",
                    "--tmpfs", "/run/lock", "--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW",
                    "--cap-add", "SYS_ADMIN", image, *command], check=True, capture_output=True)


# --- multicast dropped: split brain, then unicast VRRP ------------------------------------------------


def drop_multicast(on: bool) -> None:
    """nftables inside each master (installed from the deploy's apt lists): drop VRRP's 224.0.0.18."""
    for m in masters():
        if on:
            sh(m, "command -v nft >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                  "--no-install-recommends nftables >/dev/null; nft delete table inet labdrop 2>/dev/null; "
                  "nft add table inet labdrop && "
                  "nft add chain inet labdrop out '{ type filter hook output priority 0; }' && "
                  "nft add rule inet labdrop out ip daddr 224.0.0.18 drop && "
                  "nft add chain inet labdrop in '{ type filter hook input priority 0; }' && "
                  "nft add rule inet labdrop in ip daddr 224.0.0.18 drop")
        else:
            sh(m, "nft delete table inet labdrop 2>/dev/null || true")


@pytest.fixture(scope="class")
def multicast_dropped(converged):
    settle()
    drop_multicast(True)
    try:
        yield
    finally:
        drop_multicast(False)
        assert_converged(deploy())  # back to inventory.py: multicast VRRP
        settle()


class TestMulticastDropped:
    """Multicast VRRP dropped between the masters, as clouds and many switches do; restored after."""

    def test_without_unicast_the_run_fails_and_says_what_to_set(self, multicast_dropped):
        # Both masters stop hearing each other: each takes the VIP.
        wait_for(lambda: len(holders()) == 2, 10 * ADVERT_INT, what="both masters holding the VIP")
        run = deploy()
        assert run.returncode != 0, run.describe()
        assert "all hold the VIP 10.213.0.100 (virtual_router_id 80): a split brain" in run.output, run.describe()
        assert "set `vrrp_unicast: True`" in run.output

    def test_unicast_vrrp_one_holder_and_the_vip_moves(self, multicast_dropped, tmp_path):
        unicast_vrrp_one_holder_and_the_vip_moves(tmp_path)


def unicast_vrrp_one_holder_and_the_vip_moves(tmp_path):
    inventory = variant_inventory(tmp_path, cluster={"vrrp_unicast": True})
    assert_converged(deploy(inventory))
    holder = settle()
    for m in masters():
        conf = sh(m, "cat /etc/keepalived/keepalived.conf").stdout
        others = [lab.ADDRESSES[o] for o in masters() if o != m]
        assert f"unicast_src_ip {lab.ADDRESSES[m]}" in conf and all(a in conf for a in others), m
    assert_no_change(deploy(inventory))

    # haproxy dies on the holder: the VIP moves with unicast adverts only
    started = time.monotonic()
    sh(holder, "systemctl stop haproxy")
    new = wait_for(lambda: (h := holders()) and len(h) == 1 and h[0] != holder and api_ok() and h[0], 30,
                   what="the VIP on the other master (unicast)")
    haproxy_failover = time.monotonic() - started
    sh(holder, "systemctl start haproxy")
    time.sleep(3)
    assert holders() == [new]

    # the holder is lost (paused): the VIP moves; back, it does not take it (nopreempt), one holder
    started = time.monotonic()
    subprocess.run(["docker", "pause", new], check=True)
    try:
        survivor = wait_for(lambda: (h := holders()) and h[0] != new and api_ok() and h[0], 30,
                            what="the VIP on the surviving master (unicast)")
        lost_failover = time.monotonic() - started
    finally:
        subprocess.run(["docker", "unpause", new], check=True)
    # back, the paused master still thinks it is MASTER: by VRRP's rules the higher priority keeps
    # the VIP (either may); what matters is that there is exactly one holder again, at once
    wait_for(lambda: len(holders()) == 1, 3 * ADVERT_INT + 2, what="one holder after unpause")
    assert survivor in masters() and len(holders()) == 1
    print(f"\nunicast VRRP, multicast dropped: failover after haproxy died {haproxy_failover:.2f}s, "
          f"after the holder was lost {lost_failover:.2f}s")
    assert haproxy_failover <= 4 * ADVERT_INT + 2 and lost_failover <= 4 * ADVERT_INT + 2
    assert_no_change(deploy(inventory))


# --- another VRRP router with our virtual_router_id -------------------------------------------------


def test_a_foreign_vrrp_router_with_our_vrid_is_reported(converged):
    settle()
    image = lab.read_state()["images"]["base"]["trixie"]
    extra_container(FOREIGN, FOREIGN_IP, ("/sbin/init",), image=image)
    stopped = None
    try:
        wait_for(lambda: lab.docker_exec(FOREIGN, "systemctl", "is-system-running", check=False).stdout.strip()
                 in ("running", "degraded"), 60, what="the foreign router booted")
        conf = ("vrrp_instance other {\\n state BACKUP\\n interface eth0\\n virtual_router_id 80\\n priority 50\\n"
                " advert_int 1\\n authentication {\\n auth_type PASS\\n auth_pass other123\\n }\\n"
                " virtual_ipaddress {\\n 10.213.0.101/24\\n }\\n}\\n")
        lab.docker_exec(FOREIGN, "sh", "-c",
                        "apt-get -qq update && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                        "--no-install-recommends keepalived >/dev/null && "
                        f"printf '{conf}' > /etc/keepalived/keepalived.conf && systemctl restart keepalived",
                        timeout=300)
        time.sleep(4 * ADVERT_INT)  # it hears no valid adverts, becomes MASTER of VRID 80 and sends its own
        run = deploy()
        assert run.returncode != 0, run.describe()
        assert "another VRRP router uses virtual_router_id 80" in run.output, run.describe()
        assert FOREIGN_IP in run.output  # keepalived 2.3 (vm02) names the sender; 2.2.7 (vm01) does not
        assert len(holders()) == 1 and api_ok()  # reported, nothing broken
    finally:
        subprocess.run(["docker", "rm", "-f", FOREIGN], capture_output=True)
        stopped = time.monotonic()
    time.sleep(max(0.0, VIP_JOURNAL_WINDOW + 1 - (time.monotonic() - stopped)))
    assert_no_change(deploy())


# --- the VIP already answers elsewhere on a first install -----------------------------------------


def test_a_vip_that_answers_elsewhere_is_refused_before_keepalived_starts(converged):
    settle()
    for m in masters():  # as before a first install: keepalived runs on no master, nobody holds the VIP
        sh(m, "systemctl stop keepalived")
    wait_for(lambda: holders() == [], 10, what="the VIP released")
    extra_container(SQUATTER, lab.VIP, ("busybox", "sleep", "3600"))
    try:
        run = deploy()
        assert run.returncode != 0, run.describe()
        assert "refusing to start keepalived: the VIP 10.213.0.100 already answers on eth0" in run.output, \
            run.describe()
        for m in masters():
            assert sh(m, "systemctl is-active keepalived", check=False).stdout.strip() == "inactive", m
        assert holders() == []
    finally:
        subprocess.run(["docker", "rm", "-f", SQUATTER], capture_output=True)
    run = deploy()  # the address is free again: keepalived starts, exactly one master holds the VIP
    assert_converged(run)
    assert any(name.endswith("Exactly one master holds the VIP 10.213.0.100, no other router uses VRID 80")
               for name in run.changed()), run.changed()
    settle()
    assert_no_change(deploy())


# --- the checked download -------------------------------------------------------------------------


def live_binary(m: str) -> tuple[str, str]:
    """(sha256 of the live binary, PID of the running apiserver) on master ``m``."""
    sha = sh(m, f"sha256sum {PATHS.apiserver_binary} 2>/dev/null | cut -d' ' -f1", check=False).stdout.strip()
    pid = sh(m, "systemctl show -p MainPID --value kube-apiserver").stdout.strip()
    return sha, pid


def leftovers(m: str) -> str:
    return sh(m, f"ls {PATHS.apiserver_binary}.new {PATHS.apiserver_binary}.download 2>/dev/null; true").stdout.strip()


def test_the_binary_is_downloaded_checked_and_rolled_and_a_wrong_sum_is_refused(converged, tmp_path):
    settle()
    url = lab.http_up()
    want = hashlib.sha256(lab.APISERVER_BIN.read_bytes()).hexdigest()
    try:
        good = variant_inventory(tmp_path, cluster={"kube_apiserver_binary": None, "kube_apiserver_url": url,
                                                    "kube_apiserver_sha256": want}, name="inv_download.py")
        before = {m: live_binary(m) for m in masters()}
        assert all(sha == want for sha, _ in before.values())
        for m in masters():  # as on a master that runs another version: the live binary is not this one
            sh(m, f"rm -f {PATHS.apiserver_binary}")
        with Prober(real=True, tolerated=ROLL_TOLERANCE) as probe:
            run = deploy(good)
        assert_converged(run)
        print(f"\ndownload + roll: {len(probe.samples)} calls through the VIP, {len(probe.failures)} failed")
        assert probe.failures == []
        after = {m: live_binary(m) for m in masters()}
        for m in masters():
            assert after[m][0] == want and after[m][1] != before[m][1], m  # downloaded, checked, restarted
            assert leftovers(m) == "", m
        assert_no_change(deploy(good))

        wrong = "0" * 64
        bad = variant_inventory(tmp_path, cluster={"kube_apiserver_binary": None, "kube_apiserver_url": url,
                                                   "kube_apiserver_sha256": wrong}, name="inv_wrong.py")
        with Prober(real=True, tolerated=ROLL_TOLERANCE) as probe:
            run = deploy(bad)
        assert run.returncode != 0, run.describe()
        assert wrong in run.output and want in run.output, run.describe()  # expected and actual
        assert "left unchanged" in run.output
        assert probe.failures == []
        for m in masters():
            assert live_binary(m) == after[m], m  # the live binary and the running apiserver untouched
            assert leftovers(m) == "", m
    finally:
        lab.http_down()
    assert_no_change(deploy())  # the lab's own data: the local binary, the same bytes
