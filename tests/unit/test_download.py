"""The checked download of the apiserver binary, its shell run for real against a local server.

``hakube.hostfiles.binary`` with a ``url`` yields the commands the host runs: a temp file next to the
destination, 0600 root before the first byte; ``curl -f`` into it; the sha256 check; only then
mode 0755 and the move to the staged ``<dest>.new`` (the roll switches that in). Here they run in
a scratch directory against ``http.server`` on 127.0.0.1 (nothing else is contacted): the right
sum stages the file, a wrong sum or an HTTP error leaves nothing behind and the live file as it
was. Also: the architecture in the host snapshot and the URL formatted from it per host.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import stat
import subprocess
import threading
from pathlib import Path

import pytest
from pyinfra.api.exceptions import PyinfraError

from hakube import hostfiles, roll
from hakube.facts import HostFacts, HostSnapshot, k8s_arch
from hakube.tasks import apiserver

from .conftest import OWNER_UID, make_inventory
from .test_operations import FakeHost

PAYLOAD = b"#!/bin/sh\necho 'kube-apiserver (test double)'\n" * 100
LIVE = b"the live binary\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """http://127.0.0.1:PORT/ serving ``kube-apiserver`` (PAYLOAD) and ``half`` (a connection cut
    mid-file); anything else is a 404."""
    root = tmp_path_factory.mktemp("www")
    (root / "kube-apiserver").write_bytes(PAYLOAD)
    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            if self.path != "/half":
                return super().do_GET()
            # Promises the whole file, sends half of it, hangs up.
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 2])
            self.wfile.flush()
            self.close_connection = True

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture
def host_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, root_commands) -> Path:
    """A scratch "host": bin/kube-apiserver is the live binary; pending markers under it too.
    Run by a user other than root, the files are that user's, not root's (``root_commands``)."""
    monkeypatch.setattr(hostfiles, "host", FakeHost())
    for module in (hostfiles, roll):
        monkeypatch.setattr(module, "PENDING_DIR", str(tmp_path / "pending"))
    (tmp_path / "bin").mkdir()
    live = tmp_path / "bin" / "kube-apiserver"
    live.write_bytes(LIVE)
    live.chmod(0o755)
    return tmp_path


def _commands(dest: Path, url: str, sha256: str) -> list[str]:
    return list(hostfiles.binary.__wrapped__(dest=str(dest), facts=HostFacts(), url=url, sha256=sha256,
                                       notify=("kube-apiserver",)))


def _run(commands: list[str], after=None) -> subprocess.CompletedProcess:
    """Run the commands in order as pyinfra would: stop at the first that fails. ``after(i)`` is
    called after command ``i`` succeeded."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}  # 127.0.0.1 only, directly
    for i, command in enumerate(commands):
        proc = subprocess.run(["sh", "-c", command], capture_output=True, text=True, env=env, timeout=60)
        if proc.returncode != 0:
            return proc
        if after:
            after(i)
    return proc


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_right_sum_stages_the_download(server: str, host_dir: Path) -> None:
    live = host_dir / "bin" / "kube-apiserver"
    temp, staged = Path(f"{live}.download"), Path(f"{live}.new")
    commands = _commands(live, f"{server}/kube-apiserver", hashlib.sha256(PAYLOAD).hexdigest())
    seen = {}

    def after(i: int) -> None:
        if temp.exists():
            seen[i] = (_mode(temp), temp.stat().st_uid, temp.stat().st_size)

    proc = _run(commands, after)
    assert proc.returncode == 0, proc.stderr
    # Private and root's before the first byte, and still so with every byte in it.
    assert seen[0] == (0o600, OWNER_UID, 0)
    assert seen[1] == (0o600, OWNER_UID, len(PAYLOAD))
    assert staged.read_bytes() == PAYLOAD and _mode(staged) == 0o755
    assert not temp.exists()
    assert live.read_bytes() == LIVE  # the roll switches .new in, not the download
    assert (host_dir / "pending" / "kube-apiserver").exists()


def test_wrong_sum_is_refused_and_leaves_nothing(server: str, host_dir: Path) -> None:
    live = host_dir / "bin" / "kube-apiserver"
    url, wrong = f"{server}/kube-apiserver", "ab" * 32
    proc = _run(_commands(live, url, wrong))
    assert proc.returncode == 1
    actual = hashlib.sha256(PAYLOAD).hexdigest()
    assert url in proc.stderr and wrong in proc.stderr and actual in proc.stderr, proc.stderr
    assert f"{live} left unchanged" in proc.stderr
    assert sorted(p.name for p in (host_dir / "bin").iterdir()) == ["kube-apiserver"]  # no .new, no temp
    assert live.read_bytes() == LIVE and _mode(live) == 0o755
    assert not (host_dir / "pending" / "kube-apiserver").exists()  # no roll owed


def test_http_error_fails_and_leaves_nothing(server: str, host_dir: Path) -> None:
    live = host_dir / "bin" / "kube-apiserver"
    url = f"{server}/no-such-file"
    proc = _run(_commands(live, url, hashlib.sha256(PAYLOAD).hexdigest()))
    assert proc.returncode == 1
    assert f"download of {url} failed: {live} left unchanged" in proc.stderr, proc.stderr
    assert "404" in proc.stderr  # curl -f names the HTTP error
    assert sorted(p.name for p in (host_dir / "bin").iterdir()) == ["kube-apiserver"]
    assert live.read_bytes() == LIVE


def test_a_connection_cut_mid_file_fails_and_leaves_nothing(server: str, host_dir: Path) -> None:
    """Half the bytes: curl fails (the checksum would too); no half file goes on, none stays."""
    live = host_dir / "bin" / "kube-apiserver"
    url = f"{server}/half"
    proc = _run(_commands(live, url, hashlib.sha256(PAYLOAD).hexdigest()))
    assert proc.returncode == 1
    assert f"download of {url} failed: {live} left unchanged" in proc.stderr, proc.stderr
    assert sorted(p.name for p in (host_dir / "bin").iterdir()) == ["kube-apiserver"]
    assert live.read_bytes() == LIVE


def test_a_stale_staged_copy_is_replaced_only_by_checked_bytes(server: str, host_dir: Path) -> None:
    """A .new left by an earlier run stays until a checked download replaces it (the roll checks
    its sha256 anyway); a wrong download never touches it."""
    live = host_dir / "bin" / "kube-apiserver"
    staged = Path(f"{live}.new")
    staged.write_bytes(b"older staged copy\n")
    assert _run(_commands(live, f"{server}/kube-apiserver", "cd" * 32)).returncode == 1
    assert staged.read_bytes() == b"older staged copy\n"
    assert _run(_commands(live, f"{server}/kube-apiserver", hashlib.sha256(PAYLOAD).hexdigest())).returncode == 0
    assert staged.read_bytes() == PAYLOAD


# ------------------------------------------------------------------ the architecture and the URL


@pytest.mark.parametrize("raw, arch", [
    ("x86_64", "amd64"), ("amd64", "amd64"), ("aarch64", "arm64"), ("arm64", "arm64"), ("armv7l", "arm"),
    ("armhf", "arm"), ("ppc64el", "ppc64le"), ("ppc64le", "ppc64le"), ("s390x", "s390x"), ("riscv64", "riscv64"),
    ("i386", "i386"),  # no such download: curl -f then names the URL
    ("", ""), ("x86_64 ; reboot", ""), ("$(reboot)", ""), ("amd64/../..", ""), ("AMD64", ""),
])
def test_arch_mapping(raw: str, arch: str) -> None:
    assert k8s_arch(raw) == arch


def test_snapshot_reports_this_machines_arch(tmp_path: Path) -> None:
    fact = HostSnapshot()
    command = fact.command(paths=(), units=(), users=(), sysctls=(), commands=(), kube_objects=(),
                           kubeconfig="/nonexistent")
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True).stdout
    expected = k8s_arch(os.uname().machine)
    assert fact.process(out.splitlines()).arch == expected and expected


@pytest.mark.parametrize("line, arch", [("A aarch64", "arm64"), ("A x86_64", "amd64"), ("A ", ""), ("A a b", "")])
def test_snapshot_parses_the_arch_line(line: str, arch: str) -> None:
    assert HostSnapshot().process(["C curl", line]).arch == arch


def test_url_formatted_per_host_from_its_arch(tmp_path: Path) -> None:
    cfg = make_inventory(tmp_path).load()["m1"]
    assert apiserver.download_url(cfg, HostFacts(arch="arm64")) == \
        "https://dl.k8s.io/release/v1.36.0/bin/linux/arm64/kube-apiserver"
    assert apiserver.download_url(cfg, HostFacts(arch="amd64")) == \
        "https://dl.k8s.io/release/v1.36.0/bin/linux/amd64/kube-apiserver"


def test_unknown_arch_is_refused_naming_host_and_key(tmp_path: Path) -> None:
    cfg = make_inventory(tmp_path).load()["m1"]
    with pytest.raises(PyinfraError, match=r"^m1: kube_apiserver_url: cannot fill in \{arch\}"):
        apiserver.download_url(cfg, HostFacts(arch=""))


def test_a_url_without_arch_needs_no_arch(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path)
    inv.cluster["kube_apiserver_url"] = "http://10.0.0.5/k8s/v{version}/kube-apiserver"
    assert apiserver.download_url(inv.load()["m1"], HostFacts(arch="")) == "http://10.0.0.5/k8s/v1.36.0/kube-apiserver"
