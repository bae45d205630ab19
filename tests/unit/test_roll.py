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


# --- the rollback restarts, the apiserver's roll drains: with stand-ins for systemctl, curl, sleep, journalctl

# The unit "runs" the inputs it was last (re)started or reloaded on ($LIVE's content then); it is
# active, and its /readyz answers, only while those are the ones in $BOX/serves. Each start is
# logged with the haproxy agent's answer at that moment ($AGENT: "drain", or none).
SYSTEMCTL = r"""#!/bin/sh
verb=""; for a in "$@"; do case $a in -*) ;; *) [ -n "$verb" ] || verb=$a;; esac; done
case $verb in
  restart|reload-or-restart|start)
    cp "$LIVE" "$BOX/running"
    echo "$verb live=$(cat "$LIVE") agent=$(cat "$AGENT" 2>/dev/null || echo none)" >> "$BOX/log";;
  is-active) [ "$(cat "$BOX/running" 2>/dev/null)" = "$(cat "$BOX/serves")" ];;
  *) echo "systemctl $verb" >> "$BOX/log";;
esac
"""
# /readyz: as the unit; haproxy's stats: this master (m1) UP in the kube_api backend.
CURL = r"""#!/bin/sh
case "$*" in
  *stats*) echo "# pxname,svname"; echo "kube_api,m1,,,,,,,,,,,,,,,,UP";;
  *readyz*) [ "$(cat "$BOX/running" 2>/dev/null)" = "$(cat "$BOX/serves")" ];;
  *) exit 2;;
esac
"""
SLEEP = '#!/bin/sh\necho "sleep $1" >> "$BOX/log"\nexec {sleep} 0.02\n'
JOURNALCTL = "#!/bin/sh\necho \"Main process exited, code=exited, status=1/FAILURE\"\n"


@pytest.fixture
def stand_ins(box):
    """Environment for a roll script in ``box``: the stand-ins first on PATH, the unit runs etc/live.pem."""
    import shutil

    bin_dir = box / "bin"
    bin_dir.mkdir()
    for name, text in (("systemctl", SYSTEMCTL), ("curl", CURL), ("journalctl", JOURNALCTL),
                       ("sleep", SLEEP.replace("{sleep}", shutil.which("sleep")))):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (box / "running").write_text("old\n")  # the unit serves on the inputs live before the change
    return {**os.environ, "BOX": str(box), "LIVE": str(box / "etc" / "live.pem"), "AGENT": str(box / "run" / "agent"),
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', os.defpath)}"}


def run(script: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60, env=env)


def starts(box: Path) -> list[str]:
    return [line for line in (box / "log").read_text().splitlines() if line.split()[0] in
            ("restart", "reload-or-restart", "start")]


def test_a_rollback_restarts_the_service_on_its_previous_inputs(box, stand_ins):
    """The new inputs do not serve: the kept ones go back AND the service is restarted on them (a
    restored file alone changes nothing in a running daemon); then it serves again."""
    paths = stage(box)
    (box / "serves").write_text("old\n")
    proc = run(roll.rolled_restart(SERVICE, "m1", paths, apply=f"systemctl restart {SERVICE}",
                                   ready=f"systemctl is-active -q {SERVICE}", timeout=1), stand_ins)
    assert proc.returncode == 1, proc.stderr
    assert (box / "etc" / "live.pem").read_text() == "old\n"
    assert starts(box) == ["restart live=new agent=none", "restart live=old agent=none"]
    assert f"m1: {SERVICE} rolled back: its previous inputs are live again and it serves" in proc.stderr


def test_a_reload_that_leaves_the_daemon_stopped_restarts_it_on_the_previous_config(box, stand_ins, monkeypatch):
    """haproxy/keepalived (``rolls.reload_roll``): their validated config went live before the roll
    (the previous one kept); a reload after which the daemon is not running puts the previous
    config back and restarts the daemon on it (``reload-or-restart``: a stopped daemon starts, a running
    keepalived keeps its VRRP state and swaps its addresses in place)."""
    from hakube import rolls
    from hakube.facts import FileState, HostFacts

    live = box / "etc" / "live.pem"
    assert run(roll.backup(SERVICE, [str(live)]), stand_ins).returncode == 0  # what managed_file does,
    live.write_text("new\n")  # ... then the new config goes live
    (box / "pending" / SERVICE).touch()
    (box / "serves").write_text("old\n")  # the daemon dies on the new config
    planned = {}
    monkeypatch.setattr(rolls, "roll", lambda **kwargs: planned.update(kwargs))
    facts = HostFacts(files={roll.pending_marker(SERVICE): FileState("0" * 64, 0o644, "root:root")})
    rolls.reload_roll(SERVICE, [], facts, "m1", timeout=1)
    proc = run(planned["script"], stand_ins)
    assert proc.returncode == 1, proc.stderr
    assert live.read_text() == "old\n"
    assert starts(box) == ["reload-or-restart live=new agent=none", "reload-or-restart live=old agent=none"]
    assert f"m1: {SERVICE} rolled back: its previous inputs are live again and it serves" in proc.stderr


def _apiserver_roll(box: Path, monkeypatch, paths: dict) -> tuple[str, float]:
    """m1's apiserver roll in a serving cluster (drain first), with this box's agent file and a 1 s
    readiness timeout; and the agent-inter (s) of m1's rendered haproxy.cfg."""
    import dataclasses

    from hakube import render
    from hakube.paths import PATHS
    from hakube.tasks import apiserver

    from .conftest import make_inventory

    monkeypatch.setattr(apiserver, "PATHS", dataclasses.replace(PATHS, agent_state=str(box / "run" / "agent")))
    cfg = make_inventory(box / "inv").load()["m1"]
    cfg = dataclasses.replace(cfg, cluster=dataclasses.replace(cfg.cluster, apiserver_ready_timeout=1))
    haproxy_cfg = render.render("haproxy.cfg.j2", cfg=cfg, c=cfg.cluster, pki={"ca": "/ca", "crt": "/crt"}).decode()
    words = next(line for line in haproxy_cfg.splitlines() if line.strip().startswith("default-server")).split()
    agent_inter = int(words[words.index("agent-inter") + 1]) / 1000
    return apiserver._roll_script(cfg, paths, drain=True), agent_inter


def test_the_apiserver_roll_drains_the_master_through_its_agent_before_restarting_it(box, stand_ins, monkeypatch):
    """Every haproxy asks the master's agent every agent-inter: the roll says "drain" there and
    waits for them all to have heard it before the restart; once the master serves again it is
    undrained."""
    (box / "run").mkdir()
    paths = stage(box)
    (box / "pending" / "kube-apiserver").touch()  # the roll is owed
    (box / "serves").write_text("new\n")
    script, agent_inter = _apiserver_roll(box, monkeypatch, paths)
    proc = run(script, stand_ins)
    assert proc.returncode == 0, proc.stderr
    assert starts(box) == ["restart live=new agent=drain"]
    log = (box / "log").read_text().splitlines()
    before_restart = log[:log.index("restart live=new agent=drain")]
    waited = sum(float(line.split()[1]) for line in before_restart if line.startswith("sleep "))
    assert waited >= 2 * agent_inter, before_restart
    assert not (box / "run" / "agent").exists()  # undrained


def test_an_apiserver_that_fails_after_its_restart_is_restarted_drained_on_its_previous_inputs(box, stand_ins,
                                                                                                monkeypatch):
    (box / "run").mkdir()
    paths = stage(box)
    (box / "pending" / "kube-apiserver").touch()  # the roll is owed
    (box / "serves").write_text("old\n")  # the new inputs never become ready
    script, _ = _apiserver_roll(box, monkeypatch, paths)
    proc = run(script, stand_ins)
    assert proc.returncode == 1, proc.stderr
    assert (box / "etc" / "live.pem").read_text() == "old\n" and not (box / "etc" / "born.conf").exists()
    assert starts(box) == ["restart live=new agent=drain", "restart live=old agent=drain"]
    assert "m1: kube-apiserver rolled back: its previous inputs are live again and it serves" in proc.stderr
    assert not (box / "run" / "agent").exists()  # undrained after the rollback too
