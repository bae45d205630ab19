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


# --- a VIP changed on a running cluster ----------------------------------------------------------


def _facts(addresses=(), live=(), active=True, owed=False):
    from hakube.facts import FileState, HostFacts
    from hakube.roll import pending_marker

    files = {pending_marker("keepalived"): FileState("0" * 64, 0o644, "root:root")} if owed else {}
    return HostFacts(files=files, units={"keepalived.service": ("active" if active else "inactive", "enabled")},
                     addresses=frozenset(addresses), live_vips=tuple(live))


def test_a_running_cluster_whose_live_vip_differs_is_changing():
    peers = {"vm01": _facts(["10.0.0.11", "10.0.0.100"], ["10.0.0.100"]), "vm02": _facts(["10.0.0.12"], ["10.0.0.100"])}
    assert vip.change_of("10.0.0.150", peers) == vip.VipChange("10.0.0.150", ("10.0.0.100",))
    assert vip.change_of("10.0.0.100", peers) is None  # no change
    # a first install (keepalived runs nowhere) is no change: the first-start probe covers it
    idle = {n: _facts(live=["10.0.0.100"], active=False) for n in ("vm01", "vm02")}
    assert vip.change_of("10.0.0.150", idle) is None
    # half-way (one master's config already carries the new VIP): still a change from the other
    half = {"vm01": _facts(live=["10.0.0.150"]), "vm02": _facts(live=["10.0.0.100"])}
    assert vip.change_of("10.0.0.150", half).old == ("10.0.0.100",)


def test_an_address_held_outside_keepalived_is_by_hand_unless_a_reload_is_owed():
    peers = {"vm01": _facts(["10.0.0.11", "10.0.0.100"], ["10.0.0.100"]),
             "vm02": _facts(["10.0.0.12", "10.0.0.151"], ["10.0.0.100"])}
    assert vip.held_by_hand("10.0.0.151", peers) == ["vm02"]
    assert vip.held_by_hand("10.0.0.100", peers) == []  # keepalived's own
    assert not vip.held_by_keepalived("10.0.0.151", peers)
    owed = {**peers, "vm02": _facts(["10.0.0.12", "10.0.0.151"], ["10.0.0.100"], owed=True)}
    assert vip.held_by_hand("10.0.0.151", owed) == [] and vip.held_by_keepalived("10.0.0.151", owed)


def test_a_live_vip_on_an_address_the_cluster_needs_is_harmful():
    assert vip.harmful(["10.0.0.20"], ["10.0.0.11", "10.0.0.12", "10.0.0.20"]) == ["10.0.0.20"]
    assert vip.harmful(["10.0.0.100"], ["10.0.0.11", "10.0.0.20"]) == []


def test_adverts_from_a_master_are_never_foreign_whatever_they_carry():
    """Renumbering: a master that still (or already) carries the other VIP is ours (keepalived 2.3
    names the sender); a stranger's address stays foreign."""
    lines = ["(kube_api) ip address associated with VRID 80 not present in MASTER advert from 10.0.0.12: 10.0.0.150",
             "(kube_api) received an invalid passwd from 10.0.0.11!",
             "(kube_api) ip address associated with VRID 80 not present in MASTER advert from 10.0.0.40: 10.0.0.150"]
    assert vip.foreign_adverts(lines, MASTERS) == ["10.0.0.40"]


def _fake_tools(tmp_path, arping_out: str, held: bool, curl_rc: int = 0):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    tools = {
        "arping": f"printf '%s\\n' '{arping_out}'\nexit 0",
        "curl": f"exit {curl_rc}",
        "ip": "echo '2: eth0    inet 10.0.0.11/24 scope global eth0'" + (
            "\necho '2: eth0    inet 10.0.0.150/24 scope global secondary eth0'" if held else ""),
        "sleep": "exit 0",
    }
    for name, body in tools.items():
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def _switch_ok(env) -> bool:
    script = vip.switch_ready("10.0.0.150", "eth0", 6443, "/ca.pem", "/check.pem", settle=3)
    return subprocess.run(["sh", "-c", script], env=env).returncode == 0


REPLY = "Unicast reply from 10.0.0.150 [02:42:0A:00:00:0C]  0.6ms"
OTHER = "Unicast reply from 10.0.0.150 [02:42:0A:00:00:28]  0.7ms"


def test_the_switch_is_ready_when_the_new_vip_serves_with_one_holder(tmp_path):
    assert _switch_ok(_fake_tools(tmp_path / "a", "Sent 2 probes", held=True))  # here alone
    assert _switch_ok(_fake_tools(tmp_path / "b", REPLY, held=False))  # one other master


def test_the_switch_is_not_ready_with_two_holders_none_or_no_answer(tmp_path):
    assert not _switch_ok(_fake_tools(tmp_path / "a", REPLY, held=True))  # here and elsewhere
    assert not _switch_ok(_fake_tools(tmp_path / "b", f"{REPLY}\n{OTHER}", held=False))  # two others
    assert not _switch_ok(_fake_tools(tmp_path / "c", "Sent 2 probes", held=False))  # nobody
    assert not _switch_ok(_fake_tools(tmp_path / "d", REPLY, held=False, curl_rc=7))  # does not serve


def test_the_planning_probe_reports_what_answers_and_never_fails(tmp_path):
    env = _fake_arping(tmp_path, 1, "Unicast reply from 10.0.0.150 [02:42:0A:00:00:28]  0.6ms")
    proc = subprocess.run(["sh", "-c", vip.dad_probe("10.0.0.150", "eth0", report=True)], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "02:42:0A:00:00:28" in proc.stdout
    free = _fake_arping(tmp_path / "f", 0, "Sent 2 probes") if (tmp_path / "f").mkdir() is None else None
    proc = subprocess.run(["sh", "-c", vip.dad_probe("10.0.0.150", "eth0", report=True)], env=free,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == ""


def test_the_snapshot_reads_the_live_vip_out_of_keepalived_conf(tmp_path):
    """``L`` lines: the addresses of the virtual_ipaddress block, as the rendered config writes them."""
    from hakube.facts import AWK_VIPS, HostSnapshot

    conf = tmp_path / "keepalived.conf"
    conf.write_text("vrrp_instance kube_api {\n    virtual_router_id 80\n    virtual_ipaddress {\n"
                    "        10.0.0.100/24 dev eth0 scope global\n    }\n    track_script {\n        chk_haproxy\n    }\n}\n")
    out = subprocess.run(["awk", AWK_VIPS, str(conf)], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[0] == "L 10.0.0.100"
    assert HostSnapshot().process(out.splitlines()).live_vips == ("10.0.0.100",)


def test_a_switch_between_multicast_and_unicast_is_seen_from_the_live_configs(tmp_path):
    from dataclasses import replace

    from hakube.facts import AWK_VIPS, HostSnapshot

    conf = tmp_path / "keepalived.conf"
    conf.write_text("vrrp_instance kube_api {\n    unicast_src_ip 10.0.0.11\n    virtual_ipaddress {\n"
                    "        10.0.0.100/24 dev eth0 scope global\n    }\n}\n")
    out = subprocess.run(["awk", AWK_VIPS, str(conf)], capture_output=True, text=True, check=True).stdout
    assert HostSnapshot().process(out.splitlines()).live_vrrp_mode == "unicast"
    multicast = {n: replace(_facts(live=["10.0.0.100"]), live_vrrp_mode="multicast") for n in ("vm01", "vm02")}
    assert vip.mode_switch(True, multicast) and not vip.mode_switch(False, multicast)
    idle = {n: replace(f, units={}) for n, f in multicast.items()}
    assert not vip.mode_switch(True, idle)  # keepalived runs nowhere: a first start, nothing to switch


def _recording_tools(tmp_path, held: bool, active: bool = True):
    """``ip`` answering as a master that holds 10.0.0.150 (or not) and recording every other call;
    ``setsid``, ``systemctl`` and ``sleep`` recording their arguments instead of acting."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir(parents=True)
    show = "echo '2: eth0    inet 10.0.0.11/24 scope global eth0'" + (
        "; echo '2: eth0    inet 10.0.0.150/24 scope global secondary eth0'" if held else "")
    tools = {"ip": f'if [ "$2" = "-4" ]; then {show}; else echo "ip $*" >> {log}; fi',
             **{tool: f'echo "{tool} $*" >> {log}' for tool in ("setsid", "sleep")},
             "systemctl": f'echo "systemctl $*" >> {log}; [ "$1" != is-active ] || exit {0 if active else 3}'}
    for name, body in tools.items():
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}, log


def test_through_a_mode_switch_the_holder_keeps_the_vip_local_and_reloads_alone(tmp_path):
    before, after = vip.switch_in_place("10.0.0.150", "eth0", "keepalived.service", 1, 40)
    env, log = _recording_tools(tmp_path / "holder", held=True)
    assert subprocess.run(["sh", "-c", before], env=env).returncode == 0
    calls = log.read_text().splitlines()
    assert calls[0] == "ip addr add 10.0.0.150/32 dev lo"
    # the copy goes away on its own even if the run dies: a detached timer
    assert calls[1].startswith("setsid -f sh -c sleep 40; ip addr del 10.0.0.150/32 dev lo"), calls
    assert calls[2] == "sleep 1"  # the others stop first
    assert not any(c.startswith("systemctl") for c in calls)  # the holder only reloads (in the roll)
    assert subprocess.run(["sh", "-c", after], env=env).returncode == 0
    assert log.read_text().splitlines()[-2:] == ["ip addr del 10.0.0.150/32 dev lo",
                                                 "systemctl is-active -q keepalived.service"]  # running: left alone


def test_through_a_mode_switch_the_others_stop_until_the_holder_is_master_again(tmp_path):
    before, after = vip.switch_in_place("10.0.0.150", "eth0", "keepalived.service", 1, 40)
    env, log = _recording_tools(tmp_path / "other", held=False, active=False)
    assert subprocess.run(["sh", "-c", before], env=env).returncode == 0
    # stopped (no priority-0 advert to take over, no VIP), then wait past the holder's master-down
    # timer (3 intervals and skew) before the roll starts it on the new config
    assert log.read_text().splitlines() == ["systemctl stop keepalived.service", "sleep 6"]
    # a run cut short here: on exit the stopped keepalived is started again
    assert subprocess.run(["sh", "-c", after], env=env).returncode == 0
    assert log.read_text().splitlines()[-1] == "systemctl start keepalived.service"
