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


# --- units from one `systemctl show`; kubectl in the background -------------------------------------------


def _fake(bin_dir, name: str, body: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def _run_with(bin_dir, **kw):
    fact = HostSnapshot()
    args = dict(paths=(), units=(), users=(), sysctls=(), commands=(), kube_objects=(), kubeconfig="/nonexistent")
    args.update(kw)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", TMPDIR=str(bin_dir.parent / "tmp"))
    (bin_dir.parent / "tmp").mkdir(exist_ok=True)
    out = subprocess.run(["sh", "-c", fact.command(**args)], capture_output=True, text=True, check=True, env=env).stdout
    return fact.process(out.splitlines())


SYSTEMCTL_SHOW = r"""
echo "$*" >> "$(dirname "$0")/systemctl.calls"
[ "$1" = show ] || exit 1
shift 8  # show -p Id -p ActiveState -p UnitFileState --
first=1
for u in "$@"; do
  [ -n "$first" ] || echo
  first=
  case "$u" in
    haproxy.service) printf 'Id=haproxy.service\nActiveState=active\nUnitFileState=enabled\n' ;;
    kube-apiserver-agent.socket) printf 'ActiveState=failed\nId=kube-apiserver-agent.socket\nUnitFileState=disabled\n' ;;
    keepalived) printf 'Id=keepalived.service\nActiveState=activating\nUnitFileState=static\n' ;;
    sshd.service) printf 'Id=ssh.service\nActiveState=active\nUnitFileState=enabled\n' ;;
    *) printf 'Id=%s\nActiveState=inactive\nUnitFileState=\n' "$u" ;;
  esac
done
"""


def test_unit_states_come_from_one_systemctl_show_in_the_order_asked(tmp_path):
    bin_dir = tmp_path / "bin"
    _fake(bin_dir, "systemctl", SYSTEMCTL_SHOW)
    units = ("haproxy.service", "kube-apiserver-agent.socket", "keepalived", "gone.service", "sshd.service")
    snap = _run_with(bin_dir, units=units)
    assert snap.units == {
        "haproxy.service": ("active", "enabled"),
        "kube-apiserver-agent.socket": ("failed", "disabled"),  # properties in any order within a block
        "keepalived": ("activating", "static"),  # asked without .service
        "gone.service": ("inactive", "unknown"),  # not there: is-enabled would print nothing
    }
    # an alias answers for another unit: not taken as the one asked
    assert snap.unit_state("sshd.service") == ("unknown", "unknown")
    calls = (bin_dir / "systemctl.calls").read_text().splitlines()
    assert len(calls) == 1 and calls[0].startswith("show -p Id -p ActiveState -p UnitFileState -- haproxy.service")
    assert snap.running("haproxy.service") and not snap.running("keepalived")


def test_no_systemctl_means_every_unit_unknown(tmp_path):
    bin_dir = tmp_path / "bin"
    _fake(bin_dir, "systemctl", "exit 1\n")
    snap = _run_with(bin_dir, units=("haproxy.service",))
    assert snap.unit_state("haproxy.service") == ("unknown", "unknown") and not snap.active("haproxy.service")


# kubectl waits until the rest of the command has reached systemctl: it only can when it runs
# beside it (run inline, it would give up after 10 s and systemctl would come after it)
KUBECTL_WAITS_FOR_SYSTEMCTL = r"""
d=$(dirname "$0"); echo kubectl-start >> "$d/order"
i=0; while [ ! -e "$d/systemctl.calls" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
echo kubectl-end >> "$d/order"
case "$*" in *"get clusterrolebinding/there "*) exit 0 ;; *) exit 1 ;; esac
"""


def test_kubectl_runs_beside_the_rest_and_its_lines_come_back(tmp_path):
    bin_dir = tmp_path / "bin"
    kubeconfig = tmp_path / "admin.kubeconfig"
    kubeconfig.write_text("apiVersion: v1\n")
    _fake(bin_dir, "kubectl", KUBECTL_WAITS_FOR_SYSTEMCTL)
    _fake(bin_dir, "systemctl", 'echo systemctl >> "$(dirname "$0")/order"; echo "$*" >> "$(dirname "$0")/systemctl.calls"\n')
    snap = _run_with(bin_dir, units=("haproxy.service",), kubeconfig=str(kubeconfig),
                     kube_objects=("clusterrolebinding/there", "clusterrolebinding/not-there"))
    assert snap.kube_objects == {"clusterrolebinding/there"}
    order = (bin_dir / "order").read_text().split()
    assert order.index("systemctl") < order.index("kubectl-end"), order  # inline, systemctl would come after
    assert list((tmp_path / "tmp").iterdir()) == []  # its temporary file is gone


def test_without_a_temporary_file_kubectl_runs_inline(tmp_path):
    bin_dir = tmp_path / "bin"
    kubeconfig = tmp_path / "admin.kubeconfig"
    kubeconfig.write_text("apiVersion: v1\n")
    _fake(bin_dir, "mktemp", "exit 1\n")
    _fake(bin_dir, "kubectl", 'case "$*" in *"get clusterrolebinding/there "*) exit 0 ;; *) exit 1 ;; esac\n')
    snap = _run_with(bin_dir, kubeconfig=str(kubeconfig), kube_objects=("clusterrolebinding/there", "x/y"))
    assert snap.kube_objects == {"clusterrolebinding/there"}
