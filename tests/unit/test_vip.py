"""hakube.vip: the verdicts on who holds the VIP, foreign VRRP routers, and the ARP probe's shell."""

from __future__ import annotations

import os
import stat
import subprocess

from hakube import vip

MASTERS = ("10.0.0.11", "10.0.0.12")


def test_exactly_one_holder_is_fine():
    assert vip.holders_verdict({"vm01": True, "vm02": False}, "10.0.0.100", 80, False) is None


def test_two_holders_is_a_split_brain_and_names_the_fix():
    msg = vip.holders_verdict({"vm01": True, "vm02": True}, "10.0.0.100", 80, False)
    assert "vm01, vm02 all hold the VIP 10.0.0.100" in msg and "virtual_router_id 80" in msg
    assert "vrrp_unicast: True" in msg
    unicast = vip.holders_verdict({"vm01": True, "vm02": True}, "10.0.0.100", 80, True)
    assert "vrrp_unicast" not in unicast and "protocol 112" in unicast


def test_no_holder_says_so():
    msg = vip.holders_verdict({"vm01": False, "vm02": False}, "10.0.0.100", 80, False)
    assert msg.startswith("no master holds the VIP 10.0.0.100")


def test_holds_reads_ip_addr_output():
    out = "2: eth0    inet 10.0.0.11/24 brd 10.0.0.255 scope global eth0\n2: eth0    inet 10.0.0.100/24 scope global secondary eth0"
    assert vip.holds(out, "10.0.0.100") and not vip.holds(out, "10.0.0.10")


def test_foreign_adverts_in_keepalived_2_2_and_2_3_words():
    lines = [
        "(kube_api) received an invalid passwd!",  # 2.2.7: no sender
        "(kube_api) received an invalid passwd from 10.0.0.40!",  # 2.3.3
        "(kube_api) ip address associated with VRID 80 not present in MASTER advert: 10.0.0.100",
        "(kube_api) Master received advert from 10.0.0.41 with higher priority 200, ours 110",
        "(kube_api) Master received advert from 10.0.0.12 with higher priority 120, ours 110",  # a master
        "(kube_api) Entering BACKUP STATE",
    ]
    assert vip.foreign_adverts(lines, MASTERS) == ["an unnamed router", "10.0.0.40", "10.0.0.41"]
    assert vip.foreign_adverts(lines[4:], MASTERS) == []


def test_foreign_verdict_names_the_vrid_and_who_heard_it():
    msg = vip.foreign_verdict({"vm01": ["10.0.0.40"], "vm02": []}, 80, "10.0.0.100")
    assert "virtual_router_id 80" in msg and "10.0.0.40" in msg and "heard by vm01" in msg
    assert vip.foreign_verdict({"vm01": [], "vm02": []}, 80, "10.0.0.100") is None


def _fake_arping(tmp_path, rc: int, output: str):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "arping"
    script.write_text(f"#!/bin/sh\necho '{output}'\nexit {rc}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def test_dad_probe_refuses_an_address_that_answers(tmp_path):
    env = _fake_arping(tmp_path, 1, "Unicast reply from 10.0.0.100 [02:42:0A:00:00:64]  0.6ms")
    proc = subprocess.run(["sh", "-c", vip.dad_probe("10.0.0.100", "eth0")], env=env, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "refusing to start keepalived: the VIP 10.0.0.100 already answers on eth0" in proc.stderr
    assert "02:42:0A:00:00:64" in proc.stderr


def test_dad_probe_passes_a_free_address_and_fails_a_broken_probe(tmp_path):
    env = _fake_arping(tmp_path, 0, "Sent 2 probes (2 broadcast(s))")
    assert subprocess.run(["sh", "-c", vip.dad_probe("10.0.0.100", "eth0")], env=env).returncode == 0
    env2 = _fake_arping(tmp_path / "b", 2, "arping: unknown iface eth9") if (tmp_path / "b").mkdir() is None else None
    proc = subprocess.run(["sh", "-c", vip.dad_probe("10.0.0.100", "eth9")], env=env2, capture_output=True, text=True)
    assert proc.returncode == 1 and "could not probe" in proc.stderr
