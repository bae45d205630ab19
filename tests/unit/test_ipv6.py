"""IPv6 and dual stack (issue 21): IPv6 masters, VIP, etcd URLs and Service CIDR; a dual-stack
front (an IPv4 ``vip`` and an IPv6 ``vip6`` on one master); the family rules, each refusal naming
host and key; what the rendered files and the VIP's shell say for an IPv6 address."""

from __future__ import annotations

import ipaddress
import os
import pwd
import re
import shlex
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from hakube import apiserver_args, vip
from hakube.facts import AWK_VIPS, HostFacts, HostSnapshot
from hakube.paths import PATHS
from hakube.probes import host_port, readyz_ok, readyz_url
from hakube.settings import load_inventory
from hakube.tasks import apiserver, haproxy, keepalived, kubeconfig, packages
from hakube.tasks.certs import ensure_pki

from .conftest import ENV, IS_ROOT, Inv, make_inventory, needed, problem_for
from .test_render import _tool, _vrrp_interface_here, plan

V6 = {"m1": "fd00:9::11", "m2": "fd00:9::12", "m3": "fd00:9::13"}
VIP6 = "fd00:9::100"


def ipv6_inventory(base: Path, masters: int = 2) -> Inv:
    """The conftest inventory, every address IPv6: masters, VIP, etcd, Service CIDR; VRRPv3 with
    unicast (VRRPv2 has no IPv6) and so no password."""
    inv = make_inventory(base, masters=masters)
    for name, data in inv.masters:
        data["bind_address"] = V6[name]
    inv.cluster.update(vip=VIP6, vip_prefix=64, etcd_servers=["https://[fd00:9::20]:2379", "https://[FD00:9:0::21]:2379/"],
                       service_cluster_ip_range="fd00:254::/108", vrrp_version=3, vrrp_unicast=True)
    return inv


def dual_inventory(base: Path, masters: int = 2) -> Inv:
    inv = make_inventory(base, masters=masters)
    inv.cluster.update(vip6=VIP6)
    return inv


@pytest.fixture
def v6(tmp_path: Path) -> Inv:
    return ipv6_inventory(tmp_path)


@pytest.fixture
def dual(tmp_path: Path) -> Inv:
    return dual_inventory(tmp_path)


# ------------------------------------------------------------------ an IPv6 cluster


def test_an_ipv6_cluster_loads_with_brackets_where_urls_need_them(v6: Inv) -> None:
    s = v6.load(env={})
    c = s["m1"].cluster
    assert c.family == 6 and c.vips == (VIP6,) and c.vip6 is None
    assert c.bind_addresses == ("fd00:9::11", "fd00:9::12")
    assert c.server_url == "https://[fd00:9::100]:6443"
    # canonical text: the address checks and the SANs compare the same strings
    assert c.etcd_servers == ("https://[fd00:9::20]:2379", "https://[fd00:9::21]:2379")
    assert readyz_url(VIP6, 6443) == "https://[fd00:9::100]:6443/readyz"
    assert host_port("10.9.0.1", 6443) == "10.9.0.1:6443" and host_port(VIP6, 1) == "[fd00:9::100]:1"
    assert " -gsf " in f" {readyz_ok(readyz_url(VIP6, 6443), '/ca', '/c')} "  # curl: brackets are no glob


def test_ipv6_addresses_are_canonical(v6: Inv) -> None:
    v6.cluster["vip"] = "FD00:9:0:0::100"
    v6.master("m1")["bind_address"] = "fd00:0009::0011"
    c = v6.load(env={})["m1"].cluster
    assert c.vip == VIP6 and c.masters[0].bind_address == "fd00:9::11"


@pytest.fixture
def v6_plans(tmp_path: Path):
    s = ipv6_inventory(tmp_path).load(env={})
    p = ensure_pki(s["m1"])
    return s, p, {name: plan(cfg, p if cfg.is_master else None) for name, cfg in s.items()}


def _text(pl, path: str) -> str:
    hits = [f for f in pl.files if f.path == path]
    assert len(hits) == 1, path
    return hits[0].content.decode()


def test_ipv6_files(v6_plans) -> None:
    s, p, plans = v6_plans
    m1 = plans["m1"]
    cfg = _text(m1, haproxy.CFG)
    assert "    bind [fd00:9::100]:6443\n" in cfg
    assert "    server m1 [fd00:9::11]:6443\n" in cfg and "    server m2 [fd00:9::12]:6443\n" in cfg
    conf = keepalived.desired_files(s["m1"], None)["conf"].content.decode()
    assert "fd00:9::100/64 dev eth0 scope global" in conf and "virtual_ipaddress_excluded" not in conf
    assert "unicast_src_ip fd00:9::11\n" in conf and "        fd00:9::12\n" in conf
    assert "vrrp_version 3" in conf and "auth_pass" not in conf
    assert "ListenStream=[fd00:9::11]:6444\n" in _text(m1, "/etc/systemd/system/kube-apiserver-agent.socket")
    assert "server: https://[fd00:9::100]:6443\n" in _text(m1, PATHS.kubeconfig)
    assert _text(m1, haproxy.SYSCTL_CONF).splitlines()[-2:] == ["net.ipv4.ip_nonlocal_bind = 1",
                                                              "net.ipv6.ip_nonlocal_bind = 1"]
    flags = apiserver_args.apiserver_flags(s["m2"])
    joined = {k: v for group in flags.values() for k, v in group.items()}
    assert joined["advertise-address"] == "fd00:9::12" and joined["bind-address"] == "fd00:9::12"
    assert joined["etcd-servers"] == "https://[fd00:9::20]:2379,https://[fd00:9::21]:2379"
    assert joined["service-cluster-ip-range"] == "fd00:254::/108"
    assert apiserver_args.config_env(s["m1"])["KUBE_MASTER_SECURE"] == "--master=https://[fd00:9::100]:6443"
    # the serving certificate: every master, the VIP and the first service IP, as IP SANs
    cert = x509.load_pem_x509_certificate(p.certs["apiserver"].cert_pem)
    ips = set(map(str, cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                  .get_values_for_type(x509.IPAddress)))
    assert {"fd00:9::11", "fd00:9::12", VIP6, "fd00:254::1"} <= ips
    assert "ndisc6" in packages.wanted(s["m1"])[0] and "ndisc6" in packages.wanted(s["m1"])[1]


def test_ipv6_haproxy_cfg_passes_haproxy_check(v6_plans, tmp_path: Path) -> None:
    haproxy_bin = _tool("haproxy")
    _, _, plans = v6_plans
    text = _text(plans["m1"], haproxy.CFG)
    for name in ("ca.pem", "healthcheck.pem"):
        (tmp_path / name).write_text(_text(plans["m1"], f"/etc/haproxy/pki/{name}"))
        text = text.replace(f"/etc/haproxy/pki/{name}", str(tmp_path / name))
    text = re.sub(r"^\s*(chroot|stats socket|user|group) .*$", "", text, flags=re.M)
    (tmp_path / "haproxy.cfg").write_text(text)
    r = subprocess.run([haproxy_bin, "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("family", ["ipv6", "dual"])
def test_keepalived_conf_passes_keepalived_check(tmp_path: Path, family: str) -> None:
    """An IPv6 instance (VRRPv3, unicast) and a dual-stack one (IPv4 VRRPv2 with the IPv6 VIP
    excluded) through the deploy's validator (`keepalived -t`)."""
    keepalived_bin = _tool("keepalived")
    iface = needed(_vrrp_interface_here(), "no non-loopback network interface here for keepalived -t")
    inv = ipv6_inventory(tmp_path) if family == "ipv6" else dual_inventory(tmp_path)
    inv.master("m1")["vrrp_interface"] = iface
    text = keepalived.desired_files(inv.load(env={} if family == "ipv6" else ENV)["m1"], None)["conf"].content.decode()
    user = "nobody" if IS_ROOT else pwd.getpwuid(os.geteuid()).pw_name
    text = text.replace(f"script_user {keepalived.SCRIPT_USER}\n", f"script_user {user}\n")
    path = tmp_path / "keepalived.conf"
    path.write_text(text)
    env = {**os.environ, "PATH": f"{Path(keepalived_bin).parent}{os.pathsep}{os.environ.get('PATH', os.defpath)}"}
    r = subprocess.run(["sh", "-c", keepalived.VALIDATE.format(path=shlex.quote(str(path)))], capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


# ------------------------------------------------------------------ a dual-stack front


def test_a_dual_stack_front(dual: Inv, tmp_path: Path) -> None:
    s = dual.load()
    c = s["m1"].cluster
    assert c.vips == ("10.9.0.100", VIP6) and c.vip6_prefix == 64 and c.family == 4
    assert c.server_url == "https://10.9.0.100:6443"  # the kubeconfig keeps the primary vip
    p = ensure_pki(s["m1"])
    pl = plan(s["m1"], p)
    cfg = _text(pl, haproxy.CFG)
    assert "    bind 10.9.0.100:6443\n    bind [fd00:9::100]:6443\n" in cfg
    assert "    server m1 10.9.0.11:6443\n" in cfg
    conf = keepalived.desired_files(s["m1"], None)["conf"].content.decode()
    body = conf.split("virtual_ipaddress_excluded {", 1)[1].split("}", 1)[0]
    assert body.strip() == "fd00:9::100/64 dev eth0 scope global"
    assert "10.9.0.100/24 dev eth0 scope global" in conf.split("virtual_ipaddress_excluded", 1)[0]
    cert = x509.load_pem_x509_certificate(p.certs["apiserver"].cert_pem)
    ips = set(map(str, cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                  .get_values_for_type(x509.IPAddress)))
    assert {"10.9.0.100", VIP6} <= ips
    assert "net.ipv6.ip_nonlocal_bind = 1" in _text(pl, haproxy.SYSCTL_CONF)
    # the snapshot reads both VIPs out of the live config
    (tmp_path / "k.conf").write_text(conf)
    out = subprocess.run(["awk", AWK_VIPS, str(tmp_path / "k.conf")], capture_output=True, text=True, check=True).stdout
    assert HostSnapshot().process(out.splitlines()).live_vips == ("10.9.0.100", VIP6)


def test_an_ipv4_only_cluster_renders_as_before(tmp_path: Path) -> None:
    s = make_inventory(tmp_path).load()
    pl = plan(s["m1"], ensure_pki(s["m1"]))
    assert _text(pl, haproxy.SYSCTL_CONF) == Path(__file__).resolve().parents[2].joinpath(
        "files/99-kube-apiserver-vip.conf").read_text()
    assert "virtual_ipaddress_excluded" not in keepalived.desired_files(s["m1"], None)["conf"].content.decode()
    names, provides = packages.wanted(s["m1"])
    assert names[:len(packages.PACKAGES)] == packages.PACKAGES and "ndisc6" not in names + provides


def _facts(addresses=(), live=(), active=True) -> HostFacts:
    return HostFacts(units={"keepalived.service": ("active" if active else "inactive", "enabled")},
                     addresses=frozenset(addresses), live_vips=tuple(live))


def test_both_vips_are_the_front_not_a_change() -> None:
    peers = {"vm01": _facts(live=["10.0.0.100", VIP6]), "vm02": _facts(live=["10.0.0.100", VIP6])}
    assert vip.change_of(("10.0.0.100", VIP6), peers) is None
    # vip6 added to a running IPv4 cluster: nothing old to give up (a reload adds it)
    assert vip.change_of(("10.0.0.100", VIP6), {"vm01": _facts(live=["10.0.0.100"])}) is None
    # vip6 renumbered or dropped: the old one is given up
    assert vip.change_of(("10.0.0.100", "fd00:9::150"), peers).old == (VIP6,)
    assert vip.change_of("10.0.0.100", peers).old == (VIP6,)


def test_one_holder_means_one_master_holds_both_vips() -> None:
    vips = ("10.0.0.100", VIP6)
    assert vip.vips_verdict({"vm01": vips, "vm02": ()}, vips, 80, False) is None
    apart = vip.vips_verdict({"vm01": ("10.0.0.100",), "vm02": ()}, vips, 80, False)
    assert "vm01 holds 10.0.0.100 but not fd00:9::100" in apart
    split = vip.vips_verdict({"vm01": ("10.0.0.100",), "vm02": (VIP6,)}, vips, 80, False)
    assert "vm01, vm02 all hold the VIP 10.0.0.100 and fd00:9::100" in split
    assert "no master holds" in vip.vips_verdict({"vm01": (), "vm02": ()}, vips, 80, False)
    assert vip.holds("2: eth0    inet6 fd00:9::100/64 scope global \\       valid_lft forever", VIP6)


def test_ipv6_senders_of_foreign_adverts() -> None:
    lines = ["(kube_api) Master received advert from fd00:9::40 with higher priority 200, ours 110",
             "(kube_api) Master received advert from fd00:9:0::12 with higher priority 200, ours 110"]
    assert vip.foreign_adverts(lines, ["fd00:9::11", "fd00:9::12"]) == ["fd00:9::40"]
    assert re.search(vip.FOREIGN_ADVERT, lines[0])


# ------------------------------------------------------------------ the VIP's shell for IPv6


def _fake(tmp_path: Path, tools: dict) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    for name, body in tools.items():
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def _run(script: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True)


def test_an_ipv6_vip_is_probed_with_a_neighbour_solicitation(tmp_path: Path) -> None:
    log = tmp_path / "calls"
    answered = _fake(tmp_path / "a", {"ndisc6": f'echo "$*" >> {log}; echo 02:42:0a:00:00:28', "arping": "exit 99"})
    r = _run(vip.dad_probe(VIP6, "eth0"), answered)
    assert r.returncode == 1 and "already answers on eth0 (reply from 02:42:0a:00:00:28)" in r.stderr
    assert log.read_text().split() == ["-q", "-m", "-n", "-r", "2", "-w", "1000", VIP6, "eth0"]
    free = _fake(tmp_path / "f", {"ndisc6": "exit 2"})
    assert _run(vip.dad_probe(VIP6, "eth0"), free).returncode == 0
    r = _run(vip.dad_probe(VIP6, "eth0", report=True), answered)
    assert r.returncode == 0 and r.stdout.strip() == "reply from 02:42:0a:00:00:28"
    assert _run(vip.dad_probe(VIP6, "eth0", report=True), free).stdout.strip() == ""
    # no ndisc6: the probe cannot run, and says so (it refuses rather than assume the VIP is free)
    none = {**os.environ, "PATH": str(tmp_path / "empty")}
    r = _run(vip.dad_probe(VIP6, "eth0"), {**none, "PATH": f"{tmp_path / 'empty'}:/usr/bin:/bin"})
    if not any(Path(d, "ndisc6").exists() for d in ("/usr/bin", "/bin")):
        assert r.returncode == 1 and "ndisc6 is not installed" in r.stderr


def test_the_switch_is_ready_for_an_ipv6_vip_with_one_holder(tmp_path: Path) -> None:
    def env(where: str, answers: str, held: bool) -> dict:
        show = "echo '2: eth0    inet6 fd00:9::11/64 scope global'" + (
            f"; echo '2: eth0    inet6 {VIP6}/64 scope global'" if held else "")
        return _fake(tmp_path / where, {"ndisc6": f"printf '%s' '{answers}'", "curl": "exit 0", "sleep": "exit 0",
                                        "ip": f'[ "$2" = "-6" ] && {{ {show}; }}'})

    script = vip.switch_ready(VIP6, "eth0", 6443, "/ca", "/cert", settle=1)
    assert "https://[fd00:9::100]:6443/readyz" in script and "ip -o -6 addr show dev eth0" in script
    assert _run(script, env("here", "", held=True)).returncode == 0
    assert _run(script, env("there", "02:42:0a:00:00:0c\n", held=False)).returncode == 0
    assert _run(script, env("two", "02:42:0a:00:00:0c\n", held=True)).returncode != 0
    assert _run(script, env("none", "", held=False)).returncode != 0


def test_through_a_mode_switch_the_holder_keeps_both_vips_on_lo(tmp_path: Path) -> None:
    log = tmp_path / "calls"
    show = "echo '2: eth0    inet 10.0.0.100/24 scope global eth0'"
    env = _fake(tmp_path, {"ip": f'if [ "$2" = "-4" ]; then {show}; else echo "ip $*" >> {log}; fi',
                           "setsid": f'echo "setsid $*" >> {log}', "sleep": f'echo "sleep $*" >> {log}',
                           "systemctl": f'echo "systemctl $*" >> {log}'})
    before, after = vip.switch_in_place(("10.0.0.100", VIP6), "eth0", "keepalived.service", 1, 40)
    assert _run(before, env).returncode == 0
    calls = log.read_text().splitlines()
    assert calls[:2] == ["ip addr add 10.0.0.100/32 dev lo", f"ip addr add {VIP6}/128 dev lo"]
    assert calls[2].endswith(f"ip addr del 10.0.0.100/32 dev lo; ip addr del {VIP6}/128 dev lo"), calls
    assert _run(after, env).returncode == 0
    assert f"ip addr del {VIP6}/128 dev lo" in log.read_text().splitlines()


def test_the_leave_looks_for_an_ipv6_vip_with_ip_6(v6: Inv) -> None:
    from hakube.tasks import leave

    s = v6.load(env={})
    text = " ".join(leave.script(s["m1"]))
    assert "ip -o -6 addr show dev" in text and "https://[fd00:9::100]:6443/readyz" in text


# ------------------------------------------------------------------ refusals, each naming host and key


def _ipv6(**changes):
    def mutate(inv: Inv) -> None:
        for key, value in changes.items():
            if key in V6:
                inv.master(key)["bind_address"] = value
            else:
                inv.cluster[key] = value
    return mutate


#: id -> (base: "v4", "v6" or "dual", change, [(host, key)], what the first line says)
REFUSED = {
    "vip-ipv4-masters-ipv6": ("v6", _ipv6(vip="10.9.0.100", vip_prefix=24), [("m1", "vip")],
                              "10.9.0.100 is IPv4, the masters' bind_address are IPv6"),
    "vip-ipv6-masters-ipv4": ("v4", _ipv6(vip=VIP6, vip_prefix=64), [("m1", "vip")],
                              "fd00:9::100 is IPv6, the masters' bind_address are IPv4"),
    "one-master-ipv6": ("v4", _ipv6(m2="fd00:9::12"), [("m2", "bind_address")],
                        "fd00:9::12 is IPv6, the other masters' are IPv4: every master's bind_address must be of one family"),
    "one-of-three-masters-ipv4": ("v6-3", _ipv6(m1="10.9.0.11"), [("m1", "bind_address")],
                                  "10.9.0.11 is IPv4, the other masters' are IPv6"),
    "vip6-not-ipv6": ("dual", _ipv6(vip6="10.9.0.101"), [("m1", "vip6")], "10.9.0.101 is not an IPv6 address"),
    "vip6-beside-an-ipv6-vip": ("v6", _ipv6(vip6="fd00:9::101"), [("m1", "vip6")],
                                "vip6 is the IPv6 VIP of a dual-stack front whose vip is IPv4"),
    "vip6-link-local": ("dual", _ipv6(vip6="fe80::100"), [("m1", "vip6")], "a link-local address"),
    "vip6-multicast": ("dual", _ipv6(vip6="ff02::12"), [("m1", "vip6")], "a multicast address"),
    "vip6-is-a-hosts-address": ("dual-node", _ipv6(vip6="fd00:9::14"), [("m1", "vip6")],
                                "fd00:9::14 is the address of host n1"),
    "vip6-prefix-0": ("dual", _ipv6(vip6_prefix=0), [("m1", "vip6_prefix")], "outside 1-128"),
    "vip6-prefix-129": ("dual", _ipv6(vip6_prefix=129), [("m1", "vip6_prefix")], "outside 1-128"),
    "vip-prefix-ipv4-over-32": ("v4", _ipv6(vip_prefix=33), [("m1", "vip_prefix")],
                                "33 is outside 1-32, the prefix lengths of an IPv4 vip"),
    "vip-prefix-ipv6-over-128": ("v6", _ipv6(vip_prefix=129), [("m1", "vip_prefix")], "outside 1-128"),
    "vip-ipv6-subnet-misses-a-master": ("v6", _ipv6(vip="fd00:8::100"), [("m1", "vip"), ("m2", "vip")],
                                        "is not in the subnet of bind_address fd00:9::11"),
    "vip-equals-an-ipv6-master": ("v6", _ipv6(vip="fd00:9::12"), [("m2", "bind_address")], "equals the VIP"),
    "vip-ipv6-subnet-router-anycast": ("v6", _ipv6(vip="fd00:9::"), [("m1", "vip")],
                                       "subnet-router anycast (network) address of fd00:9::/64"),
    "vip-ipv6-vrrp-v2": ("v6-pass", _ipv6(vrrp_version=2, vrrp_unicast=False), [("m1", "vrrp_version")],
                         "VRRPv2 has no IPv6"),
    "service-cidr-ipv4-masters-ipv6": ("v6", _ipv6(service_cluster_ip_range="10.254.0.0/16"),
                                       [("m1", "service_cluster_ip_range")], "10.254.0.0/16 is IPv4, the masters' bind_address are IPv6"),
    "service-cidr-ipv6-too-large": ("v6", _ipv6(service_cluster_ip_range="fd00:254::/64"),
                                    [("m1", "service_cluster_ip_range")], "too large"),
    "service-cidr-holds-the-ipv6-vip": ("v6", _ipv6(service_cluster_ip_range="fd00:9::100/120"),
                                        [("m1", "service_cluster_ip_range")], "contains the VIP fd00:9::100"),
    "bind-ipv6-link-local": ("v6", _ipv6(m1="fe80::11"), [("m1", "bind_address")], "link-local"),
    "bind-ipv6-loopback": ("v6", _ipv6(m1="::1"), [("m1", "bind_address")], "cannot be used"),
    "bind-ipv6-scoped": ("v6", _ipv6(m1="fd00:9::11%eth0"), [("m1", "bind_address")], "scoped IPv6 address"),
    "bind-ipv4-mapped": ("v6", _ipv6(m1="::ffff:10.9.0.11"), [("m1", "bind_address")], "IPv4-mapped"),
    "etcd-ipv6-without-brackets": ("v6", _ipv6(etcd_servers=["https://fd00:9::20:2379"]), [("m1", "etcd_servers")],
                                   "in brackets: https://[fd00::20]:2379"),
    "etcd-ipv4-in-brackets": ("v6", _ipv6(etcd_servers=["https://[10.9.0.20]:2379"]), [("m1", "etcd_servers")],
                              "not an IPv6 address in brackets"),
    "etcd-ipv6-on-the-vip": ("v6", _ipv6(etcd_servers=[f"https://[{VIP6}]:2379"]), [("m1", "vip")],
                             "is the etcd server of"),
}


@pytest.mark.parametrize("base, mutate, expected, reason", list(REFUSED.values()), ids=list(REFUSED))
def test_refused(tmp_path: Path, base: str, mutate, expected, reason) -> None:
    if base.startswith("v6"):
        inv, env = ipv6_inventory(tmp_path, masters=3 if base == "v6-3" else 2), ENV if base == "v6-pass" else {}
    elif base.startswith("dual"):
        inv, env = dual_inventory(tmp_path), ENV
        if base == "dual-node":
            inv.nodes = [("n1", {"ssh_hostname": "fd00:9::14"})]
    else:
        inv, env = make_inventory(tmp_path), ENV
    mutate(inv)
    problems = inv.problems(env=env)
    lines = [problem_for(problems, host, key) for host, key in expected]
    assert reason in lines[0], problems
    assert len(problems) == len(expected), problems  # only the broken thing, once


def test_mixed_family_mistakes_are_reported_together(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, masters=3)
    inv.master("m3")["bind_address"] = "fd00:9::13"
    inv.cluster.update(vip6="10.9.0.101", vip_prefix=40)
    problems = inv.problems()
    assert [p.split(": ")[:2] for p in problems] == [["m1", "vip6"], ["m3", "bind_address"], ["m1", "vip_prefix"]], problems


def test_the_whole_inventory_is_refused_before_any_host(tmp_path: Path) -> None:
    """The refusals come from load_inventory, which the deploy runs before any host is touched."""
    inv = ipv6_inventory(tmp_path)
    inv.cluster["vrrp_version"] = 2
    with pytest.raises(Exception) as exc:
        load_inventory(inv.hosts(), {})
    assert "no host was changed" in str(exc.value)
