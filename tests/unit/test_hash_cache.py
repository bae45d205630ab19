"""The binary's sha256 kept on the host beside its stat (``hakube.facts.cached_hash``): the snapshot's
shell runs here for real, on a fake binary, with a ``sha256sum`` on the PATH that records each call."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from hakube.facts import HostSnapshot, Needs, hash_cache_file
from hakube.paths import PATHS
from hakube.tasks import apiserver


class Host:
    """A fake host in a temp dir: a binary, a config file, the cache dir and a counting sha256sum."""

    def __init__(self, tmp_path: Path):
        self.root = tmp_path
        self.binary = tmp_path / "usr/local/bin/kube-apiserver"
        self.binary.parent.mkdir(parents=True)
        self.binary.write_bytes(b"\x7fELF fake kube-apiserver " * 1000)
        self.conf = tmp_path / "etc/haproxy.cfg"
        self.conf.parent.mkdir(parents=True)
        self.conf.write_text("global\n")
        self.cache_dir = tmp_path / "var/lib/hakube/sha256"
        self.calls = tmp_path / "sha256sum.calls"
        bindir = tmp_path / "fakebin"
        bindir.mkdir()
        real = shutil.which("sha256sum")
        wrapper = bindir / "sha256sum"
        wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {self.calls}\nexec {real} "$@"\n')
        wrapper.chmod(0o755)
        self.path = f"{bindir}{os.pathsep}{os.environ['PATH']}"

    @property
    def cache(self) -> Path:
        return Path(hash_cache_file(str(self.binary), str(self.cache_dir)))

    def snapshot(self):
        fact = HostSnapshot()
        command = fact.command(paths=(str(self.binary), str(self.conf)), units=(), users=(), sysctls=(), commands=(),
                               kube_objects=(), kubeconfig="/nonexistent", hash_cached=(str(self.binary),),
                               hash_cache_dir=str(self.cache_dir))
        self.calls.unlink(missing_ok=True)
        out = subprocess.run(["sh", "-c", f"umask 022; {command}"], capture_output=True, text=True, check=True,
                             env={**os.environ, "PATH": self.path})
        assert out.stderr == ""
        return fact.process(out.stdout.splitlines()), out.stdout.splitlines()

    def hashed(self) -> list[str]:
        """The files sha256sum hashed in the last snapshot."""
        lines = self.calls.read_text().splitlines() if self.calls.exists() else []
        return [word for line in lines for word in line.split() if word != "--"]

    def truth(self) -> str:
        return hashlib.sha256(self.binary.read_bytes()).hexdigest()


@pytest.fixture
def h(tmp_path: Path) -> Host:
    return Host(tmp_path)


def test_first_run_hashes_and_writes_a_root_only_cache_atomically(h: Host) -> None:
    facts, lines = h.snapshot()
    assert facts.files[str(h.binary)].sha256 == h.truth()
    assert str(h.binary) in h.hashed()
    assert stat.S_IMODE(h.cache.stat().st_mode) == 0o600 and stat.S_IMODE(h.cache_dir.stat().st_mode) == 0o700
    # /var/lib/hakube itself, when the snapshot makes it first, stays enterable: the login user's
    # upload directory (hakube.hostfiles.UPLOAD_DIR) lives there
    assert stat.S_IMODE(h.cache_dir.parent.stat().st_mode) == 0o755
    assert h.cache.read_text().endswith(f" {h.binary} {h.truth()}\n")
    assert sorted(p.name for p in h.cache_dir.iterdir()) == [h.cache.name]  # no temp file left behind
    # the output for consumers: H and M lines as before, each file once
    assert f"H {h.truth()}  {h.binary}" in lines
    assert sum(line.startswith("H ") for line in lines) == 2 and sum(line.startswith("M ") for line in lines) == 2


def test_unchanged_stat_runs_no_sha256sum_on_the_binary(h: Host) -> None:
    h.snapshot()
    facts, _ = h.snapshot()
    assert facts.files[str(h.binary)].sha256 == h.truth()
    assert h.hashed() == [str(h.conf)]  # every other file is still hashed each time


def test_a_changed_binary_is_hashed_again(h: Host) -> None:
    h.snapshot()
    h.binary.write_bytes(b"another build")
    facts, _ = h.snapshot()
    assert str(h.binary) in h.hashed() and facts.files[str(h.binary)].sha256 == h.truth()
    h.snapshot()
    assert str(h.binary) not in h.hashed()  # the new hash is cached in turn


def test_same_size_and_preserved_mtime_still_hashed_again(h: Host) -> None:
    """A binary replaced in place with the same size and its mtime put back: the ctime moves."""
    h.snapshot()
    before = h.binary.stat()
    data = bytearray(h.binary.read_bytes())
    data[0] ^= 0xFF
    h.binary.write_bytes(bytes(data))
    os.utime(h.binary, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = h.binary.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)
    facts, _ = h.snapshot()
    assert str(h.binary) in h.hashed() and facts.files[str(h.binary)].sha256 == h.truth()


def test_a_binary_moved_in_is_hashed_again(h: Host) -> None:
    """The deploy installs by rename: a new inode, whatever the size and times say."""
    h.snapshot()
    before = h.binary.stat()
    new = h.binary.with_name("kube-apiserver.new")
    new.write_bytes(b"Y" * before.st_size)
    os.utime(new, ns=(before.st_atime_ns, before.st_mtime_ns))
    new.replace(h.binary)
    facts, _ = h.snapshot()
    assert str(h.binary) in h.hashed() and facts.files[str(h.binary)].sha256 == h.truth()


@pytest.mark.parametrize("cache_text", ["", "garbage\n", "1 2 3 4 /x deadbeef\n", None])
def test_a_missing_or_corrupt_cache_is_recomputed(h: Host, cache_text) -> None:
    h.snapshot()
    if cache_text is None:
        h.cache.unlink()
    else:
        h.cache.write_text(cache_text)
    facts, _ = h.snapshot()
    assert str(h.binary) in h.hashed() and facts.files[str(h.binary)].sha256 == h.truth()
    h.snapshot()
    assert str(h.binary) not in h.hashed()  # and written again


def test_a_cache_with_the_right_stat_but_a_bad_hash_is_recomputed(h: Host) -> None:
    h.snapshot()
    line = h.cache.read_text()
    h.cache.write_text(line[:-65] + "Z" * 64 + "\n")  # not hex
    facts, _ = h.snapshot()
    assert str(h.binary) in h.hashed() and facts.files[str(h.binary)].sha256 == h.truth()
    h.cache.write_text(line[:-65] + "ab" * 16 + "\n")  # too short
    facts, _ = h.snapshot()
    assert str(h.binary) in h.hashed() and facts.files[str(h.binary)].sha256 == h.truth()


def test_an_unwritable_cache_costs_only_the_hash(h: Host) -> None:
    h.cache_dir.parent.mkdir(parents=True)
    h.cache_dir.write_text("a file where the directory should be")
    facts, _ = h.snapshot()  # no error on stderr (asserted in snapshot)
    assert facts.files[str(h.binary)].sha256 == h.truth() and str(h.binary) in h.hashed()


def test_a_missing_binary_is_absent_and_leaves_no_cache(h: Host) -> None:
    h.binary.unlink()
    facts, _ = h.snapshot()
    assert str(h.binary) not in facts.files and str(h.conf) in facts.files
    assert not h.cache_dir.exists()


def test_the_deploy_caches_the_binary_only() -> None:
    assert apiserver.NEEDS.hash_cached == (PATHS.apiserver_binary,)
    assert (Needs(hash_cached=("/a",)) | Needs(paths=("/b",))).hash_cached == ("/a",)
    assert hash_cache_file(PATHS.apiserver_binary) == "/var/lib/hakube/sha256/usr_local_bin_kube-apiserver.sha256"


# --- the same on the deploy machine: the local binary's sha256 beside its stat ----------------------------


@pytest.fixture
def local(tmp_path: Path, monkeypatch):
    """A local binary, its cache dir, and a count of the files ``cached_local_sha256`` really hashed."""
    from hakube import hostfiles

    binary = tmp_path / "build" / "kube-apiserver"
    binary.parent.mkdir()
    binary.write_bytes(b"\x7fELF local build " * 1000)
    hashed: list[str] = []
    real = hostfiles.file_sha256

    def counting(path):
        hashed.append(str(path))
        return real(path)

    monkeypatch.setattr(hostfiles, "file_sha256", counting)
    cache_dir = tmp_path / "cache" / "hakube" / "sha256"
    return binary, cache_dir, hashed


def _truth(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_local_binary_is_hashed_once_then_read_from_its_private_cache(local) -> None:
    from hakube.hostfiles import cached_local_sha256

    binary, cache_dir, hashed = local
    assert cached_local_sha256(str(binary), cache_dir) == _truth(binary)
    assert hashed == [str(binary)]
    cache = Path(hash_cache_file(str(binary), str(cache_dir)))
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600 and stat.S_IMODE(cache_dir.stat().st_mode) == 0o700
    assert cached_local_sha256(str(binary), cache_dir) == _truth(binary)
    assert hashed == [str(binary)]  # the second run read the cache


def test_a_local_binary_rewritten_with_the_same_size_and_mtime_is_hashed_again(local) -> None:
    from hakube.hostfiles import cached_local_sha256

    binary, cache_dir, hashed = local
    cached_local_sha256(str(binary), cache_dir)
    before = binary.stat()
    time.sleep(0.05)  # the file system's clock ticks in milliseconds: the rewrite gets another ctime
    data = bytearray(binary.read_bytes())
    data[-1] ^= 1
    binary.write_bytes(bytes(data))
    os.utime(binary, ns=(before.st_atime_ns, before.st_mtime_ns))  # only the ctime tells
    assert cached_local_sha256(str(binary), cache_dir) == _truth(binary)
    assert len(hashed) == 2


@pytest.mark.parametrize("text", ["", "garbage\n", "1 2 3 4 zz /x\n"])
def test_a_corrupt_local_cache_is_recomputed(local, text) -> None:
    from hakube.hostfiles import cached_local_sha256

    binary, cache_dir, hashed = local
    cached_local_sha256(str(binary), cache_dir)
    cache = Path(hash_cache_file(str(binary), str(cache_dir)))
    line = cache.read_text()
    cache.write_text(text or line.replace(line.split()[4], "f" * 64))  # "": the right stat, a wrong hash...
    if not text:
        # ...is believed: the cache is the deploy machine's own, 0600; what it guards against is a
        # changed file, which a changed stat shows
        assert cached_local_sha256(str(binary), cache_dir) == "f" * 64
        return
    assert cached_local_sha256(str(binary), cache_dir) == _truth(binary)
    assert len(hashed) == 2


def test_an_unwritable_local_cache_costs_only_the_hash(local, tmp_path) -> None:
    from hakube.hostfiles import cached_local_sha256

    binary, _, hashed = local
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    assert cached_local_sha256(str(binary), blocker / "sha256") == _truth(binary)
    assert cached_local_sha256(str(binary), blocker / "sha256") == _truth(binary)
    assert len(hashed) == 2


def test_the_deploy_takes_the_local_binary_hash_through_the_cache(local, monkeypatch) -> None:
    from hakube import hostfiles

    binary, cache_dir, hashed = local
    monkeypatch.setattr(hostfiles, "LOCAL_HASH_CACHE", cache_dir)
    hostfiles._local_sha256.cache_clear()
    assert hostfiles.binary_sha256(str(binary), None) == _truth(binary)
    hostfiles._local_sha256.cache_clear()  # a second run of the deploy: a new process
    assert hostfiles.binary_sha256(str(binary), None) == _truth(binary)
    assert hashed == [str(binary)]
