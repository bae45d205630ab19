"""The one-command host snapshot: its shell really runs (here, locally) and parses back."""

import hashlib
import os
import subprocess

from hakube.facts import FileState, HostFacts, HostSnapshot, Needs
from hakube.roll import pending_marker


def _run(tmp_path, **kw):
    fact = HostSnapshot()
    args = dict(paths=(), units=(), users=(), sysctls=(), commands=(), kube_objects=(), kubeconfig="/nonexistent")
    args.update(kw)
    out = subprocess.run(["sh", "-c", fact.command(**args)], capture_output=True, text=True, check=True).stdout
    return fact.process(out.splitlines())


def test_files_hashed_with_mode_and_owner_and_missing_ones_absent(tmp_path):
    a, b = tmp_path / "a b.conf", tmp_path / "key.pem"
    a.write_bytes(b"hello\n")
    b.write_bytes(b"secret")
    os.chmod(b, 0o600)
    snap = _run(tmp_path, paths=(str(a), str(b), str(tmp_path / "missing")))
    assert snap.files[str(a)].sha256 == hashlib.sha256(b"hello\n").hexdigest()
    assert snap.files[str(b)].mode == 0o600
    assert str(tmp_path / "missing") not in snap.files
    assert isinstance(snap.files[str(a)], FileState) and snap.files[str(a)].owner.count(":") == 1


def test_users_and_commands(tmp_path):
    snap = _run(tmp_path, users=("root", "no-such-user-xyz"), commands=("sh", "no-such-command-xyz"))
    assert snap.users == {"root"}
    assert snap.commands == {"sh"}
    assert snap.kube_objects == frozenset()


def test_a_handler_is_owed_while_its_marker_file_exists():
    s = HostFacts({pending_marker("haproxy"): FileState("x", 0o644, "root:root")})
    assert s.owed("haproxy") and not s.owed("keepalived")


def test_no_paths_at_all_is_fine(tmp_path):
    snap = _run(tmp_path)
    assert snap.files == {} and snap.users == frozenset()


def test_addresses_are_the_hosts_addresses_when_ip_is_there(tmp_path):
    snap = _run(tmp_path)
    has_ip = subprocess.run(["sh", "-c", "command -v ip"], capture_output=True).returncode == 0
    if has_ip:
        assert "127.0.0.1" in snap.addresses  # as `ip -o -4` showed it before
        assert not any(a == "::1" or a.startswith("fe80:") for a in snap.addresses)
    else:
        assert snap.addresses == frozenset()
    parsed = HostSnapshot().process(["I 2: eth0    inet 10.213.0.100/24 scope global secondary eth0",
                                     "I 2: eth0    inet 10.213.0.11/24 brd 10.213.0.255 scope global eth0"])
    assert parsed.addresses == {"10.213.0.100", "10.213.0.11"}


def test_journal_lines_come_back_by_unit():
    parsed = HostSnapshot().process(["J keepalived.service (kube_api) received an invalid passwd!",
                                     "J keepalived.service (kube_api) received an invalid passwd from 10.0.0.9!"])
    assert parsed.journal == {"keepalived.service": ("(kube_api) received an invalid passwd!",
                                                     "(kube_api) received an invalid passwd from 10.0.0.9!")}
    command = HostSnapshot().command((), (), (), (), (), (), "/x", journals=(("keepalived.service", "a|b"),))
    assert "journalctl -u keepalived.service" in command and "grep -E 'a|b'" in command
