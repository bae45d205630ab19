"""The one line protocol of the host facts (``hakube.protocol``): unique tags, typed parsers, and
the shell of both facts really run here (``sh``, against temporary files and stand-in commands)
and read back."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from hakube import protocol
from hakube.encryption import LiveKey
from hakube.facts import FileState, HostFacts, HostSnapshot
from hakube.health import HostStatus, HostStatusFact, parse_status
from hakube.paths import PATHS
from hakube.protocol import (Address, Backend, CertLine, FileHash, FileMeta, JournalLine, KeyDigest, Readyz,
                             Sysctl, UnitState)


def _snapshot_command(**kw) -> str:
    args = dict(paths=(), units=(), users=(), sysctls=(), commands=(), kube_objects=(), kubeconfig="/nonexistent")
    args.update(kw)
    return HostSnapshot().command(**args)


def _status_command(**kw) -> str:
    args = dict(binary="/nonexistent", readyz_url="https://127.0.0.1:9/readyz", ca="/ca", cert="/c", key="/k",
                stats_url="http://127.0.0.1:9/stats;csv", interface="lo", cert_paths=(), kubeconfig="/nonexistent")
    args.update(kw)
    return HostStatusFact().command(**args)


def _sh(command: str, env: dict | None = None) -> list[str]:
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=60,
                         env={**os.environ, **(env or {})})
    return out.stdout.splitlines()


# --- the table ------------------------------------------------------------------------------------------


def test_no_tag_means_two_things():
    tags = [k.tag for k in protocol.KINDS]
    assert len(tags) == len(set(tags)), sorted(t for t in tags if tags.count(t) > 1)
    names = [k.name for k in protocol.KINDS]
    assert len(names) == len(set(names))
    for t in tags:  # a tag is one word: the parser splits a line at its first space
        assert re.fullmatch(r"[A-Z]{1,3}", t), t


def _printed_tags(command: str) -> set[str]:
    """The tags a command's shell prints: ``echo "T ...``, ``echo T``, ``sed 's/^/T /'``, awk ``print "T"``,
    ``stat -c 'T ...'``."""
    found = re.findall(r'echo "?([A-Z]+)(?=[ ";]|$)', command)
    found += re.findall(r"s[/|]\^[/|]([A-Z]+) ", command)
    found += re.findall(r'print \\?"([A-Z]+)[ \\"]', command)
    found += re.findall(r"stat -c '([A-Z]+) ", command)
    return set(found)


def test_both_commands_print_only_tags_of_the_table_and_every_kind_is_printed_by_one_of_them():
    snap = _snapshot_command(paths=("/a",), units=("u",), users=("root",), sysctls=("k",), commands=("sh",),
                             kube_objects=("x/y",), secret_digests=("/e",), journals=(("u", "r"),),
                             vip_configs=("/k",), hash_cached=("/a",))
    status = _status_command(cert_paths=("/p",))
    printed = _printed_tags(snap) | _printed_tags(status)
    assert printed <= set(protocol.BY_TAG), printed - set(protocol.BY_TAG)
    assert printed == set(protocol.BY_TAG)
    # the shared kinds are printed by the same function in both
    assert {"I", "O"} <= _printed_tags(snap) & _printed_tags(status)
    assert protocol.pending() in snap and protocol.pending() in status
    assert protocol.addresses() in snap and protocol.addresses("lo") in status


def test_each_kind_is_printed_by_its_own_shell_function():
    samples = {
        protocol.file_hashes: (("/a", "/b"), ("/b",)), protocol.file_metas: (("/a",),),
        protocol.unit_states: (("u",),), protocol.users: (("u",),), protocol.sysctls: (("k",),),
        protocol.commands: (("c",),), protocol.arch: (), protocol.secret_digests: (("/e",),),
        protocol.kube_objects: (("x/y",), "/kc"), protocol.journals: ((("u", "r"),),),
        protocol.vip_configs: (("/k",),), protocol.addresses: (), protocol.pending: (),
        protocol.version: ("/b",), protocol.readyz: ("https://x/readyz", "/ca", "/c", "/k"),
        protocol.haproxy_stats: ("http://s",), protocol.keepalived_state: (), protocol.certificates: (("/p",),),
        protocol.kubeconfig_cert: ("/kc",), protocol.end: (),
    }
    for kind in protocol.KINDS:
        assert kind.tag in _printed_tags(kind.emit(*samples[kind.emit])), kind.name


# --- each kind to its typed value -----------------------------------------------------------------------

SHA = "ab" * 32
CASES = [
    (f"H {SHA}  /etc/a b.conf", "file_hash", FileHash("/etc/a b.conf", SHA)),
    ("M 600:root:ssl-cert /etc/key.pem", "file_meta", FileMeta("/etc/key.pem", 0o600, "root:ssl-cert")),
    ("U haproxy.service active enabled", "unit", UnitState("haproxy.service", "active", "enabled")),
    ("U haproxy.service  ", "unit", UnitState("haproxy.service", "unknown", "unknown")),
    ("P keepalived_script", "user", "keepalived_script"),
    ("S net.ipv4.ip_nonlocal_bind 1", "sysctl", Sysctl("net.ipv4.ip_nonlocal_bind", "1")),
    ("C curl", "command", "curl"),
    ("A aarch64", "arch", "arm64"),
    ("EF /etc/kubernetes/enc.yaml", "secret_file", "/etc/kubernetes/enc.yaml"),
    (f"EK {SHA} secretbox key1 /etc/k/enc.yaml", "key_digest",
     KeyDigest("/etc/k/enc.yaml", LiveKey("key1", SHA, "secretbox"))),
    ("KO clusterrolebinding/kube-apiserver:kubelet-apis", "kube_object", "clusterrolebinding/kube-apiserver:kubelet-apis"),
    ("J keepalived.service (kube_api) received an invalid passwd!", "journal",
     JournalLine("keepalived.service", "(kube_api) received an invalid passwd!")),
    ("L 10.0.0.100", "live_vip", "10.0.0.100"),
    ("LM unicast", "vrrp_mode", "unicast"),
    ("LV 3", "vrrp_version", 3),
    ("LV 7", "vrrp_version", 0),
    ("I 2: eth0    inet 10.213.0.11/24 brd 10.213.0.255 scope global eth0\\       valid_lft forever",
     "address", Address(4, "10.213.0.11")),
    ("I 1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever", "address", Address(4, "127.0.0.1")),
    ("I 2: eth0    inet6 fd00:0:0::2/64 scope global nodad \\       valid_lft forever", "address",
     Address(6, "fd00::2")),
    ("I 2: eth0    inet6 2001:db8::100/128 scope global \\       valid_lft forever", "address",
     Address(6, "2001:db8::100")),
    ("O haproxy", "pending", "haproxy"),
    ("V Kubernetes v1.20.2", "version", "v1.20.2"),
    ("R 0 200", "readyz", Readyz(0, 200)),
    ("R 7 000", "readyz", Readyz(7, None)),
    ("RB [-]etcd failed: reason withheld", "readyz_body", "[-]etcd failed: reason withheld"),
    ("SO", "stats_ok", True),
    ("B vm02 DOWN 1/2", "backend", Backend("vm02", "DOWN")),
    ("KS Entering BACKUP STATE", "keepalived_state", "BACKUP"),
    ("CP /etc/haproxy/pki/ca.pem -----BEGIN CERTIFICATE-----", "cert_line",
     CertLine("/etc/haproxy/pki/ca.pem", "-----BEGIN CERTIFICATE-----")),
    ("KC TUlJQg==", "kubeconfig_cert", "TUlJQg=="),
    ("END", "end", True),
]


@pytest.mark.parametrize("text,name,value", CASES)
def test_each_kind_is_parsed_to_its_typed_value(text, name, value):
    got = protocol.parse([text])
    assert got[name] == [value]
    assert type(got[name][0]) is type(value)
    assert all(not v for n, v in got.items() if n != name)


def test_every_kind_has_a_case():
    assert {name for _, name, _ in CASES} == set(protocol.BY_NAME)


@pytest.mark.parametrize("text", [
    "I 1: lo    inet6 ::1/128 scope host \\       valid_lft forever",
    "I 2: eth0    inet6 fe80::fc:ff:fe00:1/64 scope link \\       valid_lft forever",
    "I not an ip line",
    "H no-double-space /x",
    "M 644 /x",
    "EK short line",
    "KS something else",
])
def test_lines_that_carry_nothing_are_left_out(text):
    assert not any(protocol.parse([text]).values())


def test_ipv4_addresses_are_what_ip_dash_4_gave():
    """Every IPv4 address as before (127.0.0.1 and 169.254/16 too); IPv6 ones beside them."""
    lines = ["I 1: lo    inet 127.0.0.1/8 scope host lo",
             "I 2: eth0    inet 10.0.0.11/24 brd 10.0.0.255 scope global eth0",
             "I 2: eth0    inet 10.0.0.100/24 scope global secondary eth0",
             "I 3: eth1    inet 169.254.3.4/16 brd 169.254.255.255 scope link eth1",
             "I 4: tun0    inet 10.8.0.1 peer 10.8.0.2/32 scope global tun0",
             "I 1: lo    inet6 ::1/128 scope host",
             "I 2: eth0    inet6 2001:db8::11/64 scope global",
             "I 2: eth0    inet6 fe80::1/64 scope link"]
    facts = HostSnapshot().process(lines)
    assert facts.addresses == {"127.0.0.1", "10.0.0.11", "10.0.0.100", "169.254.3.4", "10.8.0.1", "2001:db8::11"}
    assert parse_status(lines).addresses == ("127.0.0.1", "10.0.0.11", "10.0.0.100", "169.254.3.4", "10.8.0.1",
                                             "2001:db8::11")


# --- the clashes of the two old protocols ------------------------------------------------------------------


def test_a_kube_object_line_is_never_keepalived_state_and_back():
    assert parse_status(["KO clusterrolebinding/x", "END"]).keepalived_state is None
    assert HostSnapshot().process(["KS Entering MASTER STATE"]).kube_objects == frozenset()
    assert parse_status(["KS Entering MASTER STATE"]).keepalived_state == "MASTER"
    assert HostSnapshot().process(["KO clusterrolebinding/x"]).kube_objects == {"clusterrolebinding/x"}


def test_a_certificate_line_is_never_a_secret_file_and_back():
    assert HostSnapshot().process(["CP /etc/enc.yaml -----BEGIN CERTIFICATE-----"]).secret_digests == {}
    assert parse_status(["EF /etc/enc.yaml"]).certs == {}


def test_the_old_clashing_tags_and_unknown_tags_are_ignored_alike_by_both():
    junk = ["K clusterrolebinding/x", "K Entering MASTER STATE", "X /etc/enc.yaml", "X /p -----BEGIN CERTIFICATE-----",
            "ZZ whatever", "", "sh: 1: ip: not found", "E " + SHA + " secretbox key1 /e"]
    assert HostSnapshot().process(junk) == HostFacts()
    assert parse_status(junk) == HostStatus()


def test_the_address_and_pending_lines_read_the_same_in_both():
    lines = ["I 2: eth0    inet 10.0.0.100/24 scope global secondary eth0", "I 2: eth0    inet6 2001:db8::64/64 scope global",
             "O keepalived", "O haproxy"]
    facts, status = HostSnapshot().process(lines), parse_status(lines)
    assert facts.addresses == set(status.addresses) == {"10.0.0.100", "2001:db8::64"}
    assert facts.pending == set(status.owed) == {"keepalived", "haproxy"}
    assert facts.owed("keepalived") and not facts.owed("kube-apiserver")


# --- round trips: the shell runs here and its lines read back -----------------------------------------------


def test_the_snapshot_shell_round_trips(tmp_path, monkeypatch):
    a, key = tmp_path / "a b.conf", tmp_path / "key.pem"
    a.write_bytes(b"hello\n")
    key.write_bytes(b"secret")
    key.chmod(0o600)
    conf = tmp_path / "keepalived.conf"
    conf.write_text("vrrp_instance kube_api {\n    unicast_src_ip 10.0.0.11\n    vrrp_version 3\n"
                    "    virtual_ipaddress {\n        10.0.0.100/24 dev eth0\n    }\n}\n")
    pending = tmp_path / "pending"
    pending.mkdir()
    (pending / "haproxy").touch()
    monkeypatch.setattr(protocol, "PENDING_DIR", str(pending))
    out = _sh(_snapshot_command(paths=(str(a), str(key), str(tmp_path / "missing")), users=("root", "no-such-user-xyz"),
                                commands=("sh", "no-such-command-xyz"), vip_configs=(str(conf),),
                                hash_cached=(str(key),), hash_cache_dir=str(tmp_path / "cache")))
    assert {line.split(" ", 1)[0] for line in out} <= set(protocol.BY_TAG), out
    facts = HostSnapshot().process(out)
    assert facts.files[str(a)].sha256 == hashlib.sha256(b"hello\n").hexdigest()
    assert facts.files[str(key)] == FileState(hashlib.sha256(b"secret").hexdigest(), 0o600, facts.files[str(key)].owner)
    assert str(tmp_path / "missing") not in facts.files
    assert facts.users == {"root"} and facts.commands == {"sh"}
    assert facts.live_vips == ("10.0.0.100",) and facts.live_vrrp_mode == "unicast" and facts.live_vrrp_version == 3
    assert facts.pending == {"haproxy"} and facts.owed("haproxy")
    assert facts.arch


def test_the_addresses_of_this_machine_round_trip():
    if not shutil.which("ip"):
        pytest.skip("no ip here")
    raw = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout.splitlines()
    v4 = {m.group(1) for m in (re.search(r"\binet (\S+?)(/\d+)?\s", r) for r in raw) if m}
    v6 = {m.group(1) for m in (re.search(r"\binet6 (\S+?)/\d+ scope global", r) for r in raw) if m}
    facts = HostSnapshot().process(_sh(protocol.addresses()))
    assert v4 <= facts.addresses and "127.0.0.1" in facts.addresses
    assert {a for a in facts.addresses if ":" in a} == {str(ipaddress.ip_address(a)) for a in v6}
    status = parse_status(_sh(protocol.addresses("lo")))
    assert status.addresses == ("127.0.0.1",)


def test_the_address_shell_asks_for_both_families(tmp_path):
    """An ``ip`` stand-in that shows IPv6 only when no family is asked, per device when one is."""
    (tmp_path / "ip").write_text(
        "#!/bin/sh\n"
        'all="1: lo    inet 127.0.0.1/8 scope host lo\n1: lo    inet6 ::1/128 scope host\n'
        '2: eth0    inet 10.0.0.11/24 scope global eth0\n2: eth0    inet6 2001:db8::11/64 scope global\n'
        '2: eth0    inet6 fe80::1/64 scope link"\n'
        'case "$*" in *-4*) all=$(printf "%b" "$all" | grep -w inet);; esac\n'
        'case "$*" in *"dev eth0"*) all=$(printf "%b" "$all" | grep eth0);; esac\n'
        'printf "%b\\n" "$all"\n')
    (tmp_path / "ip").chmod(0o755)
    env = {"PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    facts = HostSnapshot().process(_sh(protocol.addresses(), env))
    assert facts.addresses == {"127.0.0.1", "10.0.0.11", "2001:db8::11"}
    assert parse_status(_sh(protocol.addresses("eth0"), env)).addresses == ("10.0.0.11", "2001:db8::11")


def _stand_ins(tmp_path: Path) -> str:
    """curl, journalctl and kube-apiserver stand-ins: a master that is ready, MASTER, with two backends."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    scripts = {
        "curl": '#!/bin/sh\ncase "$*" in\n*stats*) printf "# pxname,svname\\nkube_api,FRONTEND\\n'
                'kube_api,vm01,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,UP\\nkube_api,vm02,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,DOWN 1/2\\n'
                'kube_api,BACKEND\\n";;\n*) printf "ok\\n200";;\nesac\n',
        "journalctl": "#!/bin/sh\nprintf 'Entering MASTER STATE\\nEntering BACKUP STATE\\n'\n",
        "kube-apiserver": "#!/bin/sh\necho Kubernetes v1.20.2\n",
    }
    for name, text in scripts.items():
        (bindir / name).write_text(text)
        (bindir / name).chmod(0o755)
    return str(bindir)


def test_the_status_shell_round_trips(tmp_path, monkeypatch):
    bindir = _stand_ins(tmp_path)
    monkeypatch.setattr(protocol, "PENDING_DIR", str(tmp_path / "pending"))
    (tmp_path / "pending").mkdir()
    (tmp_path / "pending" / "kube-apiserver").touch()
    cert = tmp_path / "c.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nTUlJQg==\n-----END CERTIFICATE-----\n"
                    "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n")
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text("users:\n- user:\n    client-certificate-data: aGVsbG8=\n    client-key-data: c2VjcmV0\n")
    out = _sh(_status_command(binary=f"{bindir}/kube-apiserver", cert_paths=(str(cert),), kubeconfig=str(kubeconfig)),
              env={"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"})
    assert {line.split(" ", 1)[0] for line in out} <= set(protocol.BY_TAG), out
    assert "c2VjcmV0" not in "\n".join(out)
    s = parse_status(out)
    assert s.complete and s.version == "v1.20.2" and (s.readyz_exit, s.readyz_http, s.readyz_body) == (0, 200, ("ok",))
    assert s.stats_ok and s.backends == {"vm01": "UP", "vm02": "DOWN"}
    assert s.keepalived_state == "MASTER"
    assert s.certs == {str(cert): b"-----BEGIN CERTIFICATE-----\nTUlJQg==\n-----END CERTIFICATE-----\n",
                       PATHS.kubeconfig: b"hello"}
    assert s.owed == ("kube-apiserver",)
    if shutil.which("ip"):
        assert "127.0.0.1" in s.addresses
