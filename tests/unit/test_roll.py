"""hakube.roll: the shell of a roll, run for real in a scratch directory (no systemd needed).

The service name is one no machine has, so the rollback's `systemctl restart` fails harmlessly.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from pathlib import Path

import pytest

from hakube import roll

SERVICE = "hakube-test-no-such-unit"


@pytest.fixture
def box(tmp_path, monkeypatch):
    monkeypatch.setattr(roll, "ROLLBACK_DIR", str(tmp_path / "rollback"))
    monkeypatch.setattr(roll, "PENDING_DIR", str(tmp_path / "pending"))
    (tmp_path / "pending").mkdir()
    (tmp_path / "etc").mkdir()
    live = tmp_path / "etc" / "live.pem"
    live.write_text("old\n")
    live.chmod(0o600)
    return tmp_path


def sh(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def stage(box: Path) -> dict[str, str]:
    """Two staged inputs; returns {path: the sha256 this run wants there}."""
    (box / "etc" / "live.pem.new").write_text("new\n")
    (box / "etc" / "born.conf.new").write_text("born\n")
    (box / "pending" / SERVICE).touch()
    return {str(box / "etc" / "live.pem"): _sha("new\n"), str(box / "etc" / "born.conf"): _sha("born\n")}


def script(paths, ready: str) -> str:
    return roll.rolled_restart(SERVICE, "m1", paths, apply="true", ready=ready, timeout=1,
                               before="echo drained >> $BOX/log", after="echo undrained >> $BOX/log")


def test_nothing_owed_does_nothing(box):
    proc = sh(f"BOX={box}; " + script(stage(box), "true").replace(str(box / "pending" / SERVICE), str(box / "none")))
    assert proc.returncode == 0
    assert (box / "etc" / "live.pem").read_text() == "old\n" and (box / "etc" / "live.pem.new").exists()


def test_ready_switches_the_staged_inputs_and_forgets_the_copies(box):
    paths = stage(box)
    proc = sh(f"BOX={box}; " + script(paths, "true"))
    assert proc.returncode == 0, proc.stderr
    assert (box / "etc" / "live.pem").read_text() == "new\n"
    assert (box / "etc" / "born.conf").read_text() == "born\n"
    assert not list((box / "etc").glob("*.new"))
    assert not (box / "rollback").joinpath(SERVICE).exists() and not (box / "pending" / SERVICE).exists()
    assert (box / "log").read_text() == "drained\nundrained\n"


def test_not_ready_puts_the_previous_inputs_back_byte_identical(box):
    root_mode = stat.S_IMODE(os.stat(box).st_mode)
    paths = stage(box)
    proc = sh(f"BOX={box}; " + script(paths, "false"))
    assert proc.returncode == 1
    assert "m1: hakube-test-no-such-unit did not become ready" in proc.stderr
    assert "rolled back: its previous inputs are live again, but it does not serve" in proc.stderr
    live = box / "etc" / "live.pem"
    assert live.read_text() == "old\n" and stat.S_IMODE(live.stat().st_mode) == 0o600
    assert not (box / "etc" / "born.conf").exists()  # it did not exist before the change
    assert not list((box / "etc").glob("*.new"))
    assert not (box / "rollback" / SERVICE).exists() and not (box / "pending" / SERVICE).exists()
    assert stat.S_IMODE(os.stat(box).st_mode) == root_mode  # the restore touched files, not their directories
    assert (box / "log").read_text() == "drained\ndrained\nundrained\n"  # drained again for the rollback restart


def test_an_interrupted_change_keeps_the_oldest_copy(box):
    paths = stage(box)
    assert sh(roll.switch_staged(SERVICE, paths)).returncode == 0  # the run died after switching
    (box / "etc" / "live.pem.new").write_text("newer\n")  # the next run stages again
    proc = sh(f"BOX={box}; " + script(paths, "false"))
    assert proc.returncode == 1
    assert (box / "etc" / "live.pem").read_text() == "old\n"  # the last inputs that served


def test_stopped_elsewhere_discards_staged_and_restores_kept(box):
    paths = stage(box)
    live = box / "etc" / "live.pem"
    assert sh(roll.backup(SERVICE, [str(live)])).returncode == 0
    live.write_text("went live early\n")
    assert sh(roll.stopped_elsewhere(SERVICE, list(paths))).returncode == 0
    assert live.read_text() == "old\n"
    assert not list((box / "etc").glob("*.new"))
    assert not (box / "pending" / SERVICE).exists()


def test_a_stale_staged_copy_never_goes_live(box):
    """A run died after staging a change on this master; the data went back to what is live. The
    next roll (owed by the marker) must not switch the abandoned change in: it deletes it."""
    stage(box)
    wanted_now = {str(box / "etc" / "live.pem"): _sha("old\n")}  # the data went back
    proc = sh(f"BOX={box}; " + script(wanted_now, "true"))
    assert proc.returncode == 0, proc.stderr
    assert (box / "etc" / "live.pem").read_text() == "old\n"
    assert not (box / "etc" / "live.pem.new").exists()


def test_a_roll_killed_while_waiting_still_runs_its_after_step(box):
    """The deploy machine goes away mid-roll (the remote shell gets SIGTERM/SIGHUP): the master is
    undrained all the same."""
    import signal
    import time

    paths = stage(box)
    proc = subprocess.Popen(["sh", "-c", f"BOX={box}; " + roll.rolled_restart(
        SERVICE, "m1", paths, apply="true", ready="false", timeout=30,
        before="echo drained >> $BOX/log", after="echo undrained >> $BOX/log")])
    deadline = time.monotonic() + 10
    while not (box / "log").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) != 0
    assert (box / "log").read_text().splitlines()[-1] == "undrained"
