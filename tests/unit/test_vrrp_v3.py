"""VRRPv3 with a fractional advert interval (opt-in): the keys, their validation, the rendering, and
the times derived from the interval. The default (VRRPv2, 1 s, a password) renders as before."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from hakube import vip
from hakube.facts import AWK_VIPS, HostFacts, HostSnapshot
from hakube.settings import AUTH_PASS_ENV, V3_PROTECTION
from hakube.tasks import keepalived, leave

from .conftest import ENV, Inv, make_inventory, problem_for

#: m1's keepalived.conf of the default data, byte for byte as before VRRPv3 existed.
DEFAULT_M1 = '''# Managed by hakube (pyinfra) for m1.
global_defs {
    router_id m1
    # Health scripts run as an unprivileged user, never as root.
    enable_script_security
    script_user keepalived_script
    # The VRRP process ahead of the host's ordinary load (nice -10): on busy CPUs a late advert
    # moves the VIP for nothing. Measured with 0.2 s adverts and every CPU busy for 10 minutes:
    # 17 moves at nice 0 with a 1 s script timeout, 3 at nice -10, 0 with the timeout below too.
    vrrp_priority -10
}

# haproxy gone means this master must not hold the VIP: no weight, so a failure puts the
# instance in FAULT and the peer takes over. (The tutorial's "weight 20" with priorities 120/60
# never moved the VIP.)
vrrp_script chk_haproxy {
    script "/usr/bin/pgrep -x haproxy"
    interval 1
    # keepalived starts the script at nice 0 whatever its own priority: on busy CPUs a pgrep can
    # take over a second, and a timeout counts as a failure. A haproxy that is gone still fails at
    # once (pgrep exits 1); only a pgrep still running after 3 s counts as one.
    timeout 3
    fall 1
    rise 2
}

vrrp_instance kube_api {
    state BACKUP
    nopreempt
    interface eth0
    virtual_router_id 80
    priority 120
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass s3cret
    }
    virtual_ipaddress {
        10.9.0.100/24 dev eth0 scope global
    }
    track_script {
        chk_haproxy
    }
}
'''


def _conf(inv: Inv, host: str = "m1", env=ENV) -> str:
    return keepalived.desired_files(inv.load(env=env)[host], None)["conf"].content.decode()


def _v3(inv: Inv, advert=0.2) -> Inv:
    inv.cluster.update(vrrp_version=3, vrrp_advert_int=advert, vrrp_unicast=True)
    return inv


#: ... and with metrics on (the default), keepalived's notify for the VRRP state metric (test_metrics.py)
NOTIFY = ("    # Every VRRP state change, for Prometheus (metrics): the script writes node exporter's textfile\n"
          "    # directory and nothing else. Root's, in a path only root may write (script security); run as root.\n"
          '    notify "/etc/keepalived/hakube-vrrp-notify" root\n')
DEFAULT_M1_METRICS = DEFAULT_M1.replace("    virtual_ipaddress {\n", NOTIFY + "    virtual_ipaddress {\n")


def test_default_is_vrrp2_and_renders_byte_for_byte_as_before(inv: Inv) -> None:
    c = inv.load()["m1"].cluster
    assert (c.vrrp_version, c.vrrp_advert_int) == (2, 1)
    assert _conf(inv) == DEFAULT_M1_METRICS
    inv.cluster.update(vrrp_version=2, vrrp_advert_int=1.0)  # written out: the same file
    assert _conf(inv) == DEFAULT_M1_METRICS
    inv.cluster.update(metrics=False)  # without metrics: the file before them
    assert _conf(inv) == DEFAULT_M1
    assert inv.load()["m1"].cluster.vrrp_advert_int == 1 and isinstance(inv.load()["m1"].cluster.vrrp_advert_int, int)


@pytest.mark.parametrize("host, src, peer", [("m1", "10.9.0.11", "10.9.0.12"), ("m2", "10.9.0.12", "10.9.0.11")])
def test_vrrp3_renders_version_interval_unicast_check_and_no_authentication(inv: Inv, host, src, peer) -> None:
    text = _conf(_v3(inv), host, env={})
    lines = [line.strip() for line in text.splitlines()]
    globals_ = text.split("global_defs {", 1)[1].split("}", 1)[0]
    assert "vrrp_version 3" in [line.strip() for line in globals_.splitlines()]
    assert "advert_int 0.2" in lines
    assert f"unicast_src_ip {src}" in lines and peer in lines and "check_unicast_src" in lines
    assert "authentication {" not in lines and not any("auth_" in line for line in lines)
    assert inv.load(env={})[host].cluster.vrrp_auth_pass is None


@pytest.mark.parametrize("advert, shown", [(0.2, "0.2"), (0.05, "0.05"), (1, "1"), (0.1 + 0.2, "0.3"), (2.5, "2.5")])
def test_vrrp3_advert_int_is_rendered_in_centiseconds_as_given(inv: Inv, advert, shown) -> None:
    assert f"    advert_int {shown}\n" in _conf(_v3(inv, advert), env={})


@pytest.mark.parametrize("advert, why", [(0.5, "not a whole number of seconds"), (1.5, "VRRPv2 advertises at most once"),
                                         (0, "outside 0.01-255"), (256, "outside 0.01-255"), ("1", "not a number"),
                                         (True, "not a number")])
def test_vrrp2_needs_whole_seconds(inv: Inv, advert, why) -> None:
    inv.cluster["vrrp_advert_int"] = advert
    assert why in problem_for(inv.problems(), "m1", "vrrp_advert_int")


@pytest.mark.parametrize("advert, why", [(0.005, "outside 0.01-255"), (0.123, "whole number of centiseconds"),
                                         (41, "outside 0.01-40.95"), (40.96, "outside 0.01-40.95"),
                                         (-0.2, "outside 0.01-255")])
def test_vrrp3_advert_int_range(inv: Inv, advert, why) -> None:
    assert why in problem_for(_v3(inv, advert).problems(env={}), "m1", "vrrp_advert_int")


@pytest.mark.parametrize("advert", [0.01, 40.95, 3])
def test_vrrp3_advert_int_bounds_accepted(inv: Inv, advert) -> None:
    assert _v3(inv, advert).load(env={})["m1"].cluster.vrrp_advert_int == advert


@pytest.mark.parametrize("version", [1, 4, "3", True, 2.5])
def test_vrrp_version_is_2_or_3(inv: Inv, version) -> None:
    inv.cluster["vrrp_version"] = version
    assert "is not one of 2, 3" in problem_for(inv.problems(), "m1", "vrrp_version")


def test_vrrp3_refuses_a_password_file_and_says_what_protects_it(inv: Inv, tmp_path: Path) -> None:
    secret = tmp_path / "pass"
    secret.write_text("abc\n")
    _v3(inv).cluster["vrrp_auth_pass_file"] = str(secret)
    msg = problem_for(inv.problems(env={}), "m1", "vrrp_auth_pass_file")
    assert "VRRPv3 has no authentication" in msg and "vrrp_unicast" in msg and "protocol 112" in msg


def test_vrrp3_refuses_the_password_variable(inv: Inv) -> None:
    msg = problem_for(_v3(inv).problems(env=ENV), "m1", "vrrp_version")
    assert AUTH_PASS_ENV in msg and V3_PROTECTION in msg
    assert "s3cret" not in msg  # never the secret


def test_vrrp3_needs_unicast_peers(inv: Inv) -> None:
    _v3(inv).cluster["vrrp_unicast"] = False
    msg = problem_for(inv.problems(env={}), "m1", "vrrp_unicast")
    assert "must be true with vrrp_version 3" in msg and "check_unicast_src" in msg


def test_a_raw_vrrp_version_line_is_refused(inv: Inv) -> None:
    inv.cluster["keepalived_extra_global_defs"] = ["vrrp_garp_master_refresh 60", "vrrp_version 3"]
    assert "set the vrrp_version key instead" in problem_for(inv.problems(), "m1", "keepalived_extra_global_defs")


def test_vrrp2_still_needs_a_password(inv: Inv) -> None:
    assert "no VRRP password" in problem_for(inv.problems(env={}), "m1", "vrrp_auth_pass_file")


def test_the_leave_waits_whole_seconds_from_the_interval(tmp_path: Path) -> None:
    assert leave.vip_timeout(make_inventory(tmp_path).load()["m1"].cluster) == 14  # the default, as before
    c = _v3(make_inventory(tmp_path), 0.2).load(env={})["m1"].cluster
    assert leave.vip_timeout(c) == 11
    assert "end=$(( $(date +%s) + 11 ))" in leave.script(_v3(make_inventory(tmp_path), 0.2).load(env={})["m1"])[0]


def test_the_waits_for_one_holder_follow_the_interval(tmp_path: Path) -> None:
    c = make_inventory(tmp_path).load()["m1"].cluster
    assert (keepalived.settle_seconds(c), keepalived.holder_deadline(c)) == (3.0, 21.0)  # the default, as before
    c = _v3(make_inventory(tmp_path), 0.2).load(env={})["m1"].cluster
    assert keepalived.settle_seconds(c) == pytest.approx(0.6) and keepalived.holder_deadline(c) == pytest.approx(16.2)
    assert "sleep 0.6 " in vip.switch_ready("10.9.0.100", "eth0", 6443, "/ca", "/cert", settle=keepalived.settle_seconds(c))


def _live(tmp_path: Path, text: str) -> HostFacts:
    conf = tmp_path / "keepalived.conf"
    conf.write_text(text)
    out = subprocess.run(["awk", AWK_VIPS, str(conf)], capture_output=True, text=True, check=True).stdout
    return HostSnapshot().process(out.splitlines())


def test_the_live_vrrp_version_is_read_and_a_switch_seen(tmp_path: Path, inv: Inv) -> None:
    assert _live(tmp_path, _conf(inv)).live_vrrp_version == 2
    v3 = _live(tmp_path, _conf(_v3(make_inventory(tmp_path)), env={}))
    assert (v3.live_vrrp_version, v3.live_vrrp_mode) == (3, "unicast")
    running = replace(v3, units={"keepalived.service": ("active", "enabled")})
    peers = {"m1": running, "m2": running}
    assert vip.version_switch(2, peers) and not vip.version_switch(3, peers)
    assert not vip.version_switch(2, {n: replace(f, units={}) for n, f in peers.items()})  # nothing runs yet
    assert not vip.version_switch(3, {"m1": HostFacts(units=running.units)})  # no live config: nothing to switch
