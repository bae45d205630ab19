"""`make bench`: wall times of the deploy on the Docker lab, its floor, and VIP failover.

    python -m bench            # BENCH_RUNS=5 (default): every figure is a median of 5 runs

What it measures (each a median of BENCH_RUNS runs, min and max shown):

* first apply on a fresh lab: ``python -m lab down``, ``up --masters 2`` (timed apart, not
  counted), then ``pyinfra -y inventory.py deploy.py``;
* no-op re-apply on the converged lab, ``--dry`` on the converged lab, and the **floor**: a deploy
  with one operation running ``true`` once per host (``bench/floor.py``) against the same
  containers; no-op, dry and floor runs are interleaved round by round so drift hits all three;
* remote commands per host of one more (untimed) no-op run: a ``docker`` shim first in PATH logs
  every ``docker exec``/``docker cp`` (the ground truth count, per container, with its duration),
  and ``bench/pyinfra_traced.py`` (pyinfra's own CLI plus a logging hook) says which operation and
  which fact issued each command; the two logs are joined per host in order;
* VIP failover: ``systemctl stop haproxy`` on the VIP holder -> first HTTP 200 "ok" from GET
  /readyz through the VIP with the admin client certificate; probes start every 50 ms on fresh
  connections; the clock starts when the stop command is issued;
* planning that scales (``bench/plan_scale.py``, also alone: ``python -m bench plan_scale``):
  ``--dry`` on pyinfra's @fake connector for 3 masters with 0, 50 and 500 nodes, wall seconds,
  CPU seconds and peak RSS of the pyinfra process, and the cost per node's growth from 50 to 500.

The deploy benched is a snapshot of HEAD (``git archive``; ``pki/``, ``.lab/``, ``artifacts/``
linked back into the repository), so edits others make in the working tree during the ~10 min run
can't change the deploy between runs; ``BENCH_WORKTREE=1`` benches the working tree as it is.

* host loss (``failover_host_loss``): ``docker pause`` of the VIP holder -> first 200 ok on /readyz
  through the VIP (the same probes), then unpause and wait for exactly one holder again; the same
  with the VRRPv3 variant (``failover_host_loss_fast``: ``vrrp_version 3``, advert 0.2 s, unicast,
  no password), deployed for it and followed by a deploy of inventory.py again;
* false failovers (``false_failovers_fast``): with the VRRPv3 variant, BENCH_SOAK_SECONDS (600) with
  one CPU burner per CPU in every master, the VIP's holders polled every 0.5 s, moves counted;
* the first apply's parts (``first_apply_parts``): the deploy's package install alone on fresh
  masters (slowest master) and ``systemctl start kube-apiserver`` -> its /readyz ok, and the ratio
  first apply / (packages + apiserver start).

Alone, merged into results.json (every other key kept): ``python -m bench noop | failover | soak | parts``.

Targets: no-op re-apply and --dry <= 2 x floor (and the older <= 3 x); first apply on a fresh
two-master lab <= 30 s and <= 40 s, and <= 1.3 x its parts; failover median <= 3 x vrrp_advert_int
+ 1 s; host loss with VRRPv3 <= 1.0 s (median); no VIP move in the soak.
Writes bench/results.json (git-ignored) and prints a table. Holds the lab-session lock
(~/.cache/hakube/lab-session.lock) for the whole run, like the lab tests. Only the lab's
addresses (10.213.0.0/24) and loopback are contacted. Leaves the lab converged (2 masters).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as _dt
import json
import os
import platform
import runpy
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import lab
import lab.util
from bench import plan_scale
from lab.harness import HarnessError, Run, api_get, api_ok, client_context, session_lock, wait_for

REPO = lab.REPO
BENCH_DIR = REPO / "bench"
RESULTS_FILE = BENCH_DIR / "results.json"
FLOOR_DEPLOY = "bench/floor.py"
TRACED_PYINFRA = BENCH_DIR / "pyinfra_traced.py"
PYINFRA = str(Path(sys.executable).parent / "pyinfra")
BENCH_MASTERS = 2
DEFAULT_RUNS = 5
NOOP_FLOOR_FACTOR = 3.0
WATCH_AFTER_S = 90  # a pyinfra run this long gets the lab checked every 10 s
_T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[bench {time.monotonic() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


# --- statistics -----------------------------------------------------------------------------------


def figure(samples: list[float], unit: str, description: str, **extra) -> dict:
    """A figure of results.json: median, min, max of the samples, with its unit."""
    values = [s for s in samples if s is not None]
    out = {
        "description": description,
        "unit": unit,
        "runs": len(values),
        "median": round(statistics.median(values), 3) if values else None,
        "min": round(min(values), 3) if values else None,
        "max": round(max(values), 3) if values else None,
        "samples": [round(s, 3) if s is not None else None for s in samples],
    }
    out.update(extra)
    return out


# --- pyinfra --------------------------------------------------------------------------------------


def _clean_env(extra: dict | None = None, unset: tuple[str, ...] = ()) -> dict:
    """This process's environment for pyinfra and the lab CLI, without PYINFRA_* and ``unset``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYINFRA_") and k not in unset}
    env["LAB_MASTERS"] = str(BENCH_MASTERS)  # the bench lab has 2 masters, whatever the caller exported
    if SOURCE.root != REPO:  # the snapshot's hakube/ and tasks/ (its hakube/tasks), not the editable install's
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(SOURCE.root), env.get("PYTHONPATH"))))
    env.update(extra or {})
    return env


def pyinfra(deploy_file: str = "deploy.py", *, dry: bool = False, env: dict | None = None,
            traced: Path | None = None, timeout: float = 900, inventory: str = "inventory.py",
            unset: tuple[str, ...] = ()) -> Run:
    """``pyinfra [-y] INVENTORY DEPLOY --json [--dry]`` from the repository root, timed; ``unset``:
    environment variables pyinfra must not see (e.g. the VRRP password for a VRRPv3 inventory)."""
    args = [*([] if dry else ["-y"]), inventory, deploy_file, "--json", *(["--dry"] if dry else [])]
    cmd = [sys.executable, str(TRACED_PYINFRA), str(traced), *args] if traced else [PYINFRA, *args]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=SOURCE.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, env=_clean_env(env, unset), start_new_session=True)
    # The lab is only looked at once a run takes longer than any sane one (no noise in normal runs):
    # a paused or stopped container makes `docker exec` hang forever.
    patience = WATCH_AFTER_S
    while True:
        try:
            stdout, stderr = proc.communicate(timeout=patience)
            break
        except subprocess.TimeoutExpired:
            patience = 10
            elapsed = time.monotonic() - started
            trouble = lab_trouble()
            if trouble or elapsed > timeout:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # pyinfra and its docker children (ours)
                stdout, stderr = proc.communicate()
                why = trouble or f"no result after {timeout:.0f}s"
                raise HarnessError(f"`{' '.join(cmd)}` stopped after {elapsed:.0f}s: {why}\n{stderr[-3000:]}")
    return Run.parse(cmd, proc.returncode, stdout, stderr, time.monotonic() - started)


def check_seconds() -> float:
    """One read-only `make check` run on the converged lab (its Python entry point, as make runs it)."""
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "hakube.check", "--json", "inventory.py"], cwd=SOURCE.root,
                          capture_output=True, text=True, timeout=300, env=_clean_env(), stdin=subprocess.DEVNULL)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise HarnessError(f"make check on the converged lab exited {proc.returncode}: {proc.stdout[-2000:]}"
                           f"{proc.stderr[-2000:]}")
    return seconds


def lab_trouble() -> str:
    """'' when every bench container runs; else what is wrong (someone else is using the lab)."""
    problems = []
    for name in (*lab.master_names(BENCH_MASTERS), lab.ETCD_NAME):
        state = lab.container_state(name)
        if state != "running":
            problems.append(f"{name} is {state}")
    if not problems:
        return ""
    return ("; ".join(problems) + " -- the bench holds the lab-session lock, so something is using the "
            "lab without it")


def lab_cli(*args: str, timeout: float = 900) -> float:
    """``python -m lab ARGS``; returns its wall time."""
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "lab", *args], cwd=SOURCE.root, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=_clean_env())
    if proc.returncode != 0:
        raise HarnessError(f"`python -m lab {' '.join(args)}` failed:\n{proc.stderr[-4000:]}")
    return time.monotonic() - started


# --- failover -------------------------------------------------------------------------------------


def _sh(name: str, script: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return lab.docker_exec(name, "sh", "-c", script, check=False, timeout=timeout)


def keepalived_state(name: str) -> str:
    """MASTER | BACKUP | FAULT from keepalived's last state transition in the journal ('' if none)."""
    out = _sh(name, "systemctl is-active -q keepalived && journalctl -u keepalived -o cat --no-pager -n 300 "
                    "| grep -Eio 'entering (MASTER|BACKUP|FAULT) state' | tail -n 1").stdout
    words = out.split()
    return words[1].upper() if len(words) == 3 else ""


def _active(name: str, unit: str) -> bool:
    return _sh(name, f"systemctl is-active -q {unit}").returncode == 0


def wait_failover_ready(ctx, masters: tuple[str, ...], timeout: float = 90) -> str:
    """Exactly one master holds the VIP, the API answers through it, and every other master runs
    haproxy with keepalived in BACKUP (so the next failover has somewhere to go). Returns the holder."""

    def ready():
        holders = lab.vip_holders(masters)
        if len(holders) != 1 or not api_ok(ctx):
            return None
        for other in masters:
            if other == holders[0]:
                continue
            if not _active(other, "haproxy") or keepalived_state(other) != "BACKUP":
                return None
        return holders[0]

    holder = wait_for(ready, timeout, interval=0.3, what="one VIP holder, the API, and BACKUP peers")
    # the new backup's haproxy needs `rise` good checks before its backends count as up
    time.sleep(1.0)
    return wait_for(ready, timeout, interval=0.3, what="a stable VIP holder") or holder


def first_good_answer(ctx, deadline: float, interval: float = 0.05, timeout: float = 1.0,
                      host: str = lab.VIP) -> float | None:
    """Start a /readyz probe through the VIP (or ``host``) every ``interval`` s (fresh connection
    each) until one answers 200 "ok"; the monotonic time that first good answer arrived, or None at
    ``deadline``."""
    done = threading.Event()
    lock = threading.Lock()
    good: list[float] = []

    def probe():
        status, body = api_get(ctx=ctx, timeout=timeout, host=host)
        arrived = time.monotonic()
        if status == 200 and body.strip() == "ok":
            with lock:
                good.append(arrived)
            done.set()

    threads: list[threading.Thread] = []
    while not done.is_set() and time.monotonic() < deadline:
        t = threading.Thread(target=probe, daemon=True)
        t.start()
        threads = [th for th in threads if th.is_alive()] + [t]
        done.wait(interval)
    for t in threads:
        t.join(timeout + 1)
    return min(good) if good else None


def failover_sample(ctx, masters: tuple[str, ...], timeout: float = 30) -> dict:
    holder = wait_failover_ready(ctx, masters)
    t0 = time.monotonic()
    stop = lab.docker_exec(holder, "systemctl", "stop", "haproxy", check=False, timeout=30)
    stopped = time.monotonic()
    try:
        if stop.returncode != 0:
            raise HarnessError(f"`systemctl stop haproxy` on {holder} failed: {stop.stderr.strip()}")
        answered = first_good_answer(ctx, deadline=t0 + timeout)
        new_holders = lab.vip_holders(masters)
    finally:
        lab.docker_exec(holder, "systemctl", "start", "haproxy", check=False, timeout=60)
    sample = {
        "seconds": round(answered - t0, 3) if answered else None,
        "stop_command_s": round(stopped - t0, 3),
        "from": holder,
        "to": new_holders,
    }
    wait_failover_ready(ctx, masters)  # haproxy back, one holder, API answers, peer in BACKUP
    return sample


def advert_int() -> float:
    """vrrp_advert_int of the inventory the bench deploys (inventory.py)."""
    ns = runpy.run_path(str(SOURCE.root / "inventory.py"))
    return float(ns["masters"][1]["vrrp_advert_int"])


# --- host loss: the VIP holder paused --------------------------------------------------------------

#: the opt-in fast mode (README: Fast failover): VRRPv3, 5 adverts a second, unicast peers, no
#: password (v3 has none: vrrp_auth_pass_file None here, HAKUBE_VRRP_AUTH_PASS unset for its runs)
FAST_VARIANT = {"vrrp_version": 3, "vrrp_advert_int": 0.2, "vrrp_unicast": True, "vrrp_auth_pass_file": None}
FAST_UNSET_ENV = ("HAKUBE_VRRP_AUTH_PASS",)  # hakube.settings.AUTH_PASS_ENV
FAST_HOST_LOSS_LIMIT_S = 1.0


def variant_inventory_text(inventory: Path, cluster: dict | None = None, hosts: dict | None = None) -> str:
    """An inventory file's text: ``inventory`` (run as itself, so its paths stay its own) with
    ``cluster`` keys set in the masters' group data (None values too: a key set to None is unset)
    and ``hosts`` {short name: {key: value}} -- as tests/integration/conftest.py variant_inventory."""
    return (
        "import json\n"
        f"_ns = {{'__file__': {str(inventory)!r}}}\n"
        f"exec(compile(open({str(inventory)!r}).read(), 'inventory.py', 'exec'), _ns)\n"
        "masters, nodes = _ns['masters'], _ns['nodes']\n"
        f"masters[1].update(json.loads({json.dumps(cluster or {})!r}))\n"
        f"_hosts = json.loads({json.dumps(hosts or {})!r})\n"
        "for _name, _data in masters[0]:\n"
        "    _data.update(_hosts.get(_name.rsplit('/', 1)[-1], {}))\n"
    )


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return lab.util.docker(*args, check=False, timeout=timeout)


def unpause_all(masters: tuple[str, ...]) -> None:
    """Never leave a master paused (a paused container makes every `docker exec` hang)."""
    for m in masters:
        if lab.container_state(m) == "paused":
            _docker("unpause", m)


def host_loss_sample(ctx, masters: tuple[str, ...], timeout: float = 30) -> dict:
    """`docker pause` the VIP holder -> first 200 ok on /readyz through the VIP; then unpause it and
    wait for exactly one holder, the API, and BACKUP peers again."""
    holder = wait_failover_ready(ctx, masters)
    t0 = time.monotonic()
    pause = _docker("pause", holder, timeout=30)
    paused = time.monotonic()
    try:
        if pause.returncode != 0:
            raise HarnessError(f"`docker pause {holder}` failed: {pause.stderr.strip()}")
        answered = first_good_answer(ctx, deadline=t0 + timeout)
        new_holders = lab.vip_holders(masters)  # the paused one is skipped
    finally:
        _docker("unpause", holder)
    back = time.monotonic()
    after = wait_failover_ready(ctx, masters)
    return {
        "seconds": round(answered - t0, 3) if answered else None,
        "pause_command_s": round(paused - t0, 3),
        "from": holder,
        "to": new_holders,
        "holder_after_unpause": after,
        "one_holder_again_s": round(time.monotonic() - back, 3),
    }


def host_loss_figure(ctx, masters: tuple[str, ...], runs: int, what: str) -> dict:
    samples = []
    try:
        for i in range(runs):
            s = host_loss_sample(ctx, masters)
            samples.append(s)
            log(f"host loss ({what}) {i + 1}/{runs}: {s['from']} paused -> {','.join(s['to']) or 'nobody'}: "
                f"{s['seconds'] if s['seconds'] is not None else 'no answer'}s; one holder again after "
                f"{s['one_holder_again_s']}s")
    finally:
        unpause_all(masters)
    return figure([s["seconds"] for s in samples], "s",
                  f"docker pause of the VIP holder ({what}) -> first 200 ok on GET /readyz through the VIP",
                  details=samples, failed=sum(1 for s in samples if s["seconds"] is None))


@contextlib.contextmanager
def fast_variant():
    """The lab deployed with FAST_VARIANT for the block; inventory.py deployed again afterwards (also
    on an error), so the lab is left as it was."""
    with tempfile.TemporaryDirectory(prefix="hakube-bench-v3-") as tmp:
        inventory = Path(tmp) / "inventory_fast.py"
        inventory.write_text(variant_inventory_text(SOURCE.root / "inventory.py", FAST_VARIANT))
        log(f"deploying the VRRPv3 variant ({json.dumps(FAST_VARIANT)})")
        try:
            run = pyinfra(inventory=str(inventory), unset=FAST_UNSET_ENV, timeout=600).check("deploy of the VRRPv3 variant")
            log(f"  VRRPv3 variant deployed in {run.seconds:.1f}s")
            yield inventory
        finally:
            unpause_all(lab.master_names(BENCH_MASTERS))
            log("deploying inventory.py again (VRRPv2, as the lab was)")
            pyinfra(timeout=600).check("deploy of inventory.py after the VRRPv3 variant")


# --- false failovers: a soak under CPU load ---------------------------------------------------------

BURN_PIDFILE = "/run/hakube-bench-burn.{i}.pid"


def vip_moves(observations: list[tuple[float, list[str] | None]]) -> list[dict]:
    """The VIP's moves in a series of (seconds, holders) polls: each change of the holder set
    (order ignored), with when and from/to; a poll that got no answer (None) is skipped."""
    moves, prev = [], None
    for t, holders in observations:
        if holders is None:
            continue
        cur = sorted(holders)
        if prev is not None and cur != prev:
            moves.append({"t": round(t, 2), "from": prev, "to": cur})
        prev = cur
    return moves


def load_command(i: int, seconds: float, stress_ng: bool) -> str:
    """The shell of CPU burner ``i`` in a master (its pid in a file, a timeout as a safety net)."""
    limit = int(seconds) + 120
    burn = ("stress-ng --cpu 1 --quiet" if stress_ng else "sh -c 'while :; do :; done'")
    return f"echo $$ > {BURN_PIDFILE.format(i=i)}; exec timeout {limit} {burn}"


def load_start(masters: tuple[str, ...], seconds: float) -> dict:
    """One CPU burner per CPU in every master (`docker exec -d`); stress-ng if the image has it."""
    cpus = os.cpu_count() or 1
    started = {}
    for m in masters:
        stress_ng = _sh(m, "command -v stress-ng >/dev/null").returncode == 0
        for i in range(cpus):
            proc = _docker("exec", "-d", m, "sh", "-c", load_command(i, seconds, stress_ng))
            if proc.returncode != 0:
                raise HarnessError(f"starting a CPU burner in {m} failed: {proc.stderr.strip()}")
        started[m] = {"burners": cpus, "tool": "stress-ng" if stress_ng else "sh busy loop"}
    return started


def load_stop(masters: tuple[str, ...], cpus: int) -> None:
    """Kill the burners by the pids they wrote (timeout forwards the TERM to its child)."""
    files = " ".join(BURN_PIDFILE.format(i=i) for i in range(cpus))
    for m in masters:
        _sh(m, f"for f in {files}; do [ -f $f ] && kill $(cat $f) 2>/dev/null; rm -f $f; done; true")


def poll_holders(masters: tuple[str, ...]) -> list[str] | None:
    """The VIP's holders, or None when a `docker exec` timed out (a loaded machine): unknown, not a move."""
    try:
        return lab.vip_holders(masters)
    except lab.LabError:
        return None


def soak(masters: tuple[str, ...], seconds: float, interval: float = 0.5, poll=None, clock=time.monotonic,
         sleep=time.sleep) -> dict:
    """Poll the VIP's holders every ``interval`` s for ``seconds``; the moves seen (pure but for ``poll``)."""
    poll = poll or (lambda: poll_holders(masters))
    observations: list[tuple[float, list[str]]] = []
    t0 = clock()
    n = 0
    while clock() - t0 < seconds:
        observations.append((clock() - t0, poll()))
        n += 1
        sleep(max(0.0, t0 + n * interval - clock()))
    moves = vip_moves(observations)
    return {
        "description": f"VIP moves (holder set changes, polled every {interval:g} s) over the soak",
        "count": len(moves), "seconds": round(clock() - t0, 1), "unit": "moves", "polls": len(observations),
        "interval_s": interval, "moves": moves,
        "not_one_holder_polls": sum(1 for _, h in observations if h is not None and len(h) != 1),
        "unanswered_polls": sum(1 for _, h in observations if h is None),
        "first_holders": next((h for _, h in observations if h is not None), []),
    }


def false_failovers(ctx, masters: tuple[str, ...], seconds: float) -> dict:
    """The soak with both CPUs busy in every master, on the lab as deployed (the fast variant)."""
    wait_failover_ready(ctx, masters)
    cpus = os.cpu_count() or 1
    try:
        load = load_start(masters, seconds)
        log(f"soak: {seconds:.0f}s, {cpus} CPU burner(s) per master ({load[masters[0]]['tool']}), "
            "polling the VIP's holders every 0.5 s")
        result = soak(masters, seconds)
    finally:
        load_stop(masters, cpus)
    result["load"] = load
    log(f"  soak: {result['count']} VIP move(s) in {result['seconds']}s")
    wait_failover_ready(ctx, masters)
    return result


def soak_seconds() -> float:
    return float(os.environ.get("BENCH_SOAK_SECONDS") or 600)


def fast_mode(ctx, masters: tuple[str, ...], runs: int, host_loss: bool = True, soak_s: float | None = None) -> dict:
    """With the VRRPv3 variant deployed: its host-loss time and/or the soak; inventory.py after."""
    out = {}
    with fast_variant():
        if host_loss:
            out["failover_host_loss_fast"] = host_loss_figure(
                ctx, masters, runs, f"VRRPv3, advert {FAST_VARIANT['vrrp_advert_int']} s, unicast")
            out["failover_host_loss_fast"]["advert_int_s"] = FAST_VARIANT["vrrp_advert_int"]
        if soak_s:
            out["false_failovers_fast"] = false_failovers(ctx, masters, soak_s)
    wait_failover_ready(ctx, masters)
    return out


# --- first apply at the cost of its parts -------------------------------------------------------------

FIRST_APPLY_PARTS_FACTOR = 1.3
FIRST_APPLY_LIMIT_S = 40.0


def package_install_command() -> str:
    """The deploy's own install command (tasks/packages.py's list for the lab's data: IPv4, metrics on;
    hakube/packages.py's shell), run in the foreground."""
    from hakube.packages import _install_command
    from hakube.tasks.packages import METRICS_PACKAGES, PACKAGES, RPM_NAMES

    return _install_command(PACKAGES + METRICS_PACKAGES, RPM_NAMES)


def packages_sample(masters: tuple[str, ...]) -> dict:
    """On a fresh lab: the deploy's package install alone on every master at once (as the deploy
    runs it); seconds per master and the slowest."""
    script = package_install_command()

    def one(m):
        started = time.monotonic()
        proc = lab.docker_exec(m, "sh", "-c", script, check=False, timeout=900)
        if proc.returncode != 0:
            raise HarnessError(f"the package install on {m} failed:\n{proc.stderr[-2000:]}")
        return m, round(time.monotonic() - started, 3)

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(masters)) as pool:
        per_master = dict(pool.map(one, masters))
    return {"per_master": per_master, "slowest": max(per_master.values())}


def apiserver_start_sample(ctx, master: str, timeout: float = 120) -> float:
    """On a converged master: `systemctl stop kube-apiserver` (untimed: the stop waits out the
    shutdown delay), then `systemctl start kube-apiserver` -> first 200 ok on its own /readyz."""
    stop = lab.docker_exec(master, "systemctl", "stop", "kube-apiserver", check=False, timeout=120)
    if stop.returncode != 0:
        raise HarnessError(f"`systemctl stop kube-apiserver` on {master} failed: {stop.stderr.strip()}")
    t0 = time.monotonic()
    start = lab.docker_exec(master, "systemctl", "start", "kube-apiserver", check=False, timeout=120)
    if start.returncode != 0:
        raise HarnessError(f"`systemctl start kube-apiserver` on {master} failed: {start.stderr.strip()}")
    answered = first_good_answer(ctx, deadline=t0 + timeout, host=lab.ADDRESSES[master])
    if answered is None:
        raise HarnessError(f"kube-apiserver on {master} did not answer /readyz ok within {timeout:.0f}s of its start")
    return answered - t0


def parts_summary(first_apply_median: float | None, packages_median: float | None,
                  start_median: float | None) -> tuple[float | None, dict]:
    """(first apply / (packages + apiserver start), the two targets): the first apply costs at most
    1.3 x its irreducible parts, and at most 40 s."""
    parts = (packages_median or 0) + (start_median or 0)
    ok = None not in (first_apply_median, packages_median, start_median) and parts > 0
    ratio = round(first_apply_median / parts, 3) if ok else None
    return ratio, {
        "first_apply_le_1_3x_parts": {
            "description": "first apply <= 1.3 x (slowest package install + apiserver start) (medians)",
            "value": first_apply_median, "limit": round(FIRST_APPLY_PARTS_FACTOR * parts, 3) if ok else None,
            "unit": "s", "ratio": ratio, "pass": ok and ratio <= FIRST_APPLY_PARTS_FACTOR,
        },
        "first_apply_le_40s": {
            "description": "first apply on a fresh two-master lab <= 40 s (median)",
            "value": first_apply_median, "limit": FIRST_APPLY_LIMIT_S, "unit": "s",
            "pass": first_apply_median is not None and first_apply_median <= FIRST_APPLY_LIMIT_S,
        },
    }


def first_apply_parts(ctx_factory, masters: tuple[str, ...], runs: int, first_apply_median: float | None) -> dict:
    """The parts, on the lab the first applies ran on: per run a fresh lab (down, up: not counted)
    and the package install alone; then one deploy to converge, and the apiserver start alone,
    ``runs`` times, on the first master. Leaves the lab converged."""
    packages = []
    for i in range(runs):
        lab_cli("down")
        lab_cli("up", "--masters", str(BENCH_MASTERS))
        sample = packages_sample(masters)
        packages.append(sample)
        log(f"packages alone {i + 1}/{runs}: slowest {sample['slowest']:.1f}s ({sample['per_master']})")
    log("converging the lab again (pyinfra -y inventory.py deploy.py, not counted)")
    pyinfra().check("deploy after the package samples")
    ctx = ctx_factory()
    wait_for(lambda: api_ok(ctx), 60, what="the API through the VIP")
    starts = []
    for i in range(runs):
        wait_failover_ready(ctx, masters)
        starts.append(apiserver_start_sample(ctx, masters[0]))
        log(f"apiserver start alone {i + 1}/{runs}: {starts[-1]:.1f}s")
    wait_failover_ready(ctx, masters)
    pk = figure([p["slowest"] for p in packages], "s",
                "the deploy's package install alone on fresh masters, all at once: the slowest master",
                details=packages)
    st = figure(starts, "s", f"systemctl start kube-apiserver on {masters[0]} -> 200 ok on its own /readyz "
                             "(after an untimed stop)")
    ratio, _ = parts_summary(first_apply_median, pk["median"], st["median"])
    return {"description": "first apply median / (packages median + apiserver start median)",
            "packages": pk, "apiserver_start": st, "ratio": ratio, "first_apply_median": first_apply_median}


# --- results.json -----------------------------------------------------------------------------------


def merge_results(old: dict, new: dict) -> dict:
    """``old`` with ``new``'s keys set; ``targets`` merged key by key (no key of ``old`` dropped)."""
    out = {**old, **new}
    if "targets" in old or "targets" in new:
        out["targets"] = {**old.get("targets", {}), **new.get("targets", {})}
    return out


def new_targets(results: dict) -> dict:
    """The targets of the no-op, host-loss, soak and parts figures present in ``results``."""
    targets = {}
    floor = (results.get("floor") or {}).get("median")
    if floor:
        # (key, figure, factor): 3x was the first round's target, 2x the structure issue's, 1.5x the speed issue's
        for key, name, factor in (("noop_le_3x_floor", "noop_reapply", NOOP_FLOOR_FACTOR),
                                  ("noop_le_2x_floor", "noop_reapply", 2), ("dry_le_2x_floor", "dry_run", 2),
                                  ("noop_le_1_5x_floor", "noop_reapply", 1.5), ("dry_le_1_5x_floor", "dry_run", 1.5)):
            value = results[name]["median"]
            what = "no-op re-apply" if name == "noop_reapply" else "--dry on the converged lab"
            targets[key] = {"description": f"{what} <= {factor:g} x floor (medians)", "value": value,
                            "limit": round(factor * floor, 3), "unit": "s", "pass": value <= factor * floor}
    fast = results.get("failover_host_loss_fast")
    if fast:
        targets["failover_host_loss_fast_le_1s"] = {
            "description": "VIP holder paused, VRRPv3 advert 0.2 s: /readyz ok via the VIP <= 1.0 s (median)",
            "value": fast["median"], "limit": FAST_HOST_LOSS_LIMIT_S, "unit": "s",
            "pass": fast["median"] is not None and not fast.get("failed") and fast["median"] <= FAST_HOST_LOSS_LIMIT_S,
        }
    soaked = results.get("false_failovers_fast")
    if soaked:
        targets["false_failovers_fast_eq_0"] = {
            "description": f"no VIP move in a {soaked['seconds']:g} s soak, VRRPv3 0.2 s, CPUs busy",
            "value": soaked["count"], "limit": 0, "unit": "moves", "pass": soaked["count"] == 0,
        }
    parts = results.get("first_apply_parts")
    if parts:
        _, t = parts_summary((results.get("first_apply") or {}).get("median"), parts["packages"]["median"],
                             parts["apiserver_start"]["median"])
        targets.update(t)
    return targets


def write_results(results: dict) -> None:
    BENCH_DIR.mkdir(exist_ok=True)
    tmp = RESULTS_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(RESULTS_FILE)


# --- remote command counting ----------------------------------------------------------------------

SHIM = """#!{python}
# hakube bench: log every docker invocation (argv, start time, duration, exit code), then run it.
import json, os, subprocess, sys, time
started = time.time()
rc = subprocess.call([{real!r}, *sys.argv[1:]])
line = json.dumps({{"t": started, "d": round(time.time() - started, 4), "rc": rc, "argv": sys.argv[1:]}})
fd = os.open({log!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
os.write(fd, (line + "\\n").encode())
os.close(fd)
sys.exit(rc)
"""

_EXEC_VALUE_FLAGS = {"-e", "--env", "--env-file", "-u", "--user", "-w", "--workdir", "--detach-keys"}


def _shim_entry(argv: list[str]) -> tuple[str, str, str]:
    """(kind, container, command text) of one logged docker invocation."""
    if not argv:
        return "other", "", ""
    if argv[0] == "exec":
        i = 1
        while i < len(argv) and argv[i].startswith("-"):
            i += 2 if argv[i] in _EXEC_VALUE_FLAGS else 1
        container = argv[i] if i < len(argv) else ""
        rest = argv[i + 1:]
        text = " ".join(rest)
        # pyinfra: docker exec -i C sh -c "sh -c '<command>'" -> <command>
        for _ in range(3):
            if len(rest) >= 3 and rest[0] == "sh" and rest[1] == "-c":
                text = rest[2]
                try:
                    rest = shlex.split(text)
                except ValueError:
                    break
            else:
                break
        return "exec", container, text
    if argv[0] == "cp":
        for arg in argv[1:]:
            if ":" in arg and not arg.startswith("/"):
                return "cp", arg.split(":", 1)[0], f"docker cp -> {arg.split(':', 1)[1]}"
        return "cp", "", " ".join(argv)
    if argv[:2] == ["container", "inspect"] and len(argv) > 2:
        return "inspect", argv[2], "docker container inspect"
    return "other", "", " ".join(argv)


_FACT_COMMANDS = (  # fallback labels when the trace is unavailable
    ("command -v apt-get", "server.Which"), ("command -v dnf", "server.Which"),
    ("systemctl show --all --property Id --property SubState", "systemd.SystemdStatus"),
    ("systemctl show --all --property Id --property UnitFileState", "systemd.SystemdEnabled"),
    ("date +", "server.Date"), ("dpkg -l", "deb.DebPackages"),
    ("for i in `cat /etc/passwd", "server.Users"), ("cat /etc/group", "server.Groups"),
    ("uname -s", "server.Os"), ("sysctl ", "server.Sysctl"), ("! (test -e ", "files.File"),
)


def text_label(text: str) -> str:
    body = text.strip()
    if body.startswith("if command -v ") and "; then ( " in body:  # pyinfra's requires_command guard
        body = body.split("; then ( ", 1)[1]
    for prefix, name in _FACT_COMMANDS:
        if body.startswith(prefix) or text.strip().startswith(prefix):
            return name
    return " ".join(body.split()[:4])[:60]


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            rows.append(json.loads(line))
    return rows


def counted_run(kind: str, workdir: Path) -> dict:
    """One untimed run (noop | dry | floor) with the docker shim in PATH and the pyinfra trace hook;
    remote commands per host, broken down by operation and by fact."""
    real_docker = shutil.which("docker")
    if not real_docker:
        raise HarnessError("docker CLI not found")
    shim_dir = workdir / f"shim-{kind}"
    shim_dir.mkdir()
    shim_log, trace_log = workdir / f"docker-{kind}.jsonl", workdir / f"trace-{kind}.jsonl"
    shim = shim_dir / "docker"
    shim.write_text(SHIM.format(python=sys.executable, real=real_docker, log=str(shim_log)))
    shim.chmod(0o755)
    env = {"PATH": f"{shim_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    deploy_file = FLOOR_DEPLOY if kind == "floor" else "deploy.py"
    run = pyinfra(deploy_file, dry=(kind == "dry"), env=env, traced=trace_log,
                  timeout=300).check(f"counted {kind} run")
    if kind == "noop" and run.changed():
        log(f"warning: the counted no-op run changed something: {run.changed()}")

    shim_rows = sorted(_read_jsonl(shim_log), key=lambda r: r["t"])
    trace_rows = _read_jsonl(trace_log)
    hosts = sorted({r["host"] for r in trace_rows} | {f"@docker/{m}" for m in lab.master_names(BENCH_MASTERS)})
    per_host = {}
    for host in hosts:
        container = host.split("/", 1)[-1]
        entries = [(_shim_entry(r["argv"]), r) for r in shim_rows]
        remote = [(e, r) for e, r in entries if e[1] == container and e[0] in ("exec", "cp")]
        connect = [r for e, r in entries if e[1] == container and e[0] == "inspect"]
        traced = [t for t in trace_rows if t["host"] == host]
        joined = len(traced) == len(remote)
        items = []
        for i, ((_, _, text), r) in enumerate(remote):
            t = traced[i] if joined else {}
            label = t.get("fact") or (text_label(text) if not t else f"op command: {text_label(text)}")
            if t.get("kind") == "upload":
                label = "upload (docker cp)"
            where = t.get("op") or (f"(deploy code: {t['deploy']})" if t.get("deploy") else
                                    ("(outside any deploy)" if t else "?"))
            step = (t["op"].split(" | ", 1)[0] if " | " in t["op"] else t["op"]) if t.get("op") else \
                (t.get("deploy") or ("(outside any deploy)" if t else "?"))
            items.append({"seconds": r["d"], "what": label, "operation": where, "step": step,
                          "stage": t.get("stage", "?"), "kind": t.get("kind", "?")})
        by_op: dict[str, dict] = {}
        for it in items:
            slot = by_op.setdefault(it["operation"], {"operation": it["operation"], "commands": 0,
                                                      "seconds": 0.0, "what": collections.Counter()})
            slot["commands"] += 1
            slot["seconds"] += it["seconds"]
            slot["what"][it["what"]] += 1
        by_what: dict[str, dict] = {}
        for it in items:
            slot = by_what.setdefault(it["what"], {"what": it["what"], "commands": 0, "seconds": 0.0,
                                                   "operations": set(), "stages": collections.Counter()})
            slot["commands"] += 1
            slot["seconds"] += it["seconds"]
            slot["operations"].add(it["operation"])
            slot["stages"][it["stage"]] += 1
        by_step: dict[str, dict] = {}
        for it in items:
            slot = by_step.setdefault(it["step"], {"step": it["step"], "commands": 0, "seconds": 0.0,
                                                   "operations": set(), "what": collections.Counter()})
            slot["commands"] += 1
            slot["seconds"] += it["seconds"]
            slot["operations"].add(it["operation"])
            slot["what"][it["what"]] += 1
        stages = collections.Counter((it["stage"], it["kind"]) for it in items)
        per_host[host] = {
            "container": container,
            "remote_commands": len(remote),
            "remote_seconds": round(sum(it["seconds"] for it in items), 3),
            "fact_commands": sum(1 for it in items if it["kind"] == "fact"),
            "operation_commands": sum(1 for it in items if it["kind"] in ("command", "upload", "download")),
            "by_stage": {f"{s}/{k}": n for (s, k), n in sorted(stages.items())},
            "local_connect_commands": len(connect),
            "trace_joined": joined,
            "traced_commands": len(traced),
            "by_step": sorted(
                ({"step": v["step"], "commands": v["commands"], "seconds": round(v["seconds"], 3),
                  "operations": len(v["operations"]), "what": dict(v["what"].most_common())}
                 for v in by_step.values()),
                key=lambda v: (-v["seconds"], -v["commands"], v["step"])),
            "by_operation": sorted(
                ({"operation": v["operation"], "commands": v["commands"], "seconds": round(v["seconds"], 3),
                  "what": dict(v["what"].most_common())} for v in by_op.values()),
                key=lambda v: (-v["seconds"], -v["commands"], v["operation"])),
            "by_fact_or_command": sorted(
                ({"what": v["what"], "commands": v["commands"], "seconds": round(v["seconds"], 3),
                  "operations": len(v["operations"]), "stages": dict(v["stages"])} for v in by_what.values()),
                key=lambda v: (-v["seconds"], -v["commands"], v["what"])),
        }
        if not joined:
            log(f"note: {host}: {len(remote)} docker commands vs {len(traced)} traced; labels from command text")
    return {
        "kind": kind,
        "wall_s_with_shim": round(run.seconds, 3),
        "changed": run.changed(),
        "hosts": per_host,
        "other_docker_invocations": sum(1 for r in shim_rows if _shim_entry(r["argv"])[0] == "other"),
    }


# --- machine info ---------------------------------------------------------------------------------


def machine_info() -> dict:
    from importlib.metadata import version

    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    docker_version = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                                    capture_output=True, text=True).stdout.strip()
    return {
        "nproc": int(nproc) if nproc.isdigit() else os.cpu_count(),
        "cpu_model": cpu or platform.processor(),
        "mem_total_gib": mem_gib,
        "pyinfra_version": version("pyinfra"),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "docker_server": docker_version,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()


@dataclass
class Source:
    """The code the bench deploys: a snapshot of HEAD (default) or the working tree itself."""
    root: Path = REPO
    commit: str = ""
    mode: str = "worktree"


SOURCE = Source()
# Where the snapshot points back into the repository: the PKI (the lab's etcd trusts its etcd CA),
# the lab state and VRRP password, and the operator's kubeconfig.
SHARED_DIRS = ("pki", ".lab", "artifacts")


@contextlib.contextmanager
def source_tree(worktree: bool):
    """Deploy a frozen copy of HEAD (``git archive``), so edits others make to the working tree
    while the bench runs can't change the deploy between runs; BENCH_WORKTREE=1 uses the tree as is."""
    global SOURCE
    commit = git("rev-parse", "HEAD")
    if worktree:
        SOURCE = Source(REPO, commit, "worktree")
        yield SOURCE
        return
    with tempfile.TemporaryDirectory(prefix="hakube-bench-src-") as tmp:
        root = Path(tmp) / "src"
        root.mkdir()
        tar = subprocess.run(["git", "archive", "--format=tar", commit], cwd=REPO, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(root)], input=tar.stdout, check=True, capture_output=True)
        for name in SHARED_DIRS:
            target = REPO / name
            target.mkdir(mode=0o700, exist_ok=True)
            (root / name).symlink_to(target, target_is_directory=True)
        # hakube.tasks is the top-level tasks/ (pyproject's package-dir): the snapshot's own, not the
        # one the editable install maps it to (the working tree's)
        (root / "hakube" / "tasks").symlink_to("../tasks", target_is_directory=True)
        # byte-compiled once, as `pip install` does for the package: with PYTHONDONTWRITEBYTECODE set
        # (this machine's environment) every run would compile hakube from source again (~50 ms)
        # while the floor imports only pyinfra, which pip compiled when it installed it
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(root / "hakube"), str(root / "tasks"),
                        str(root / "deploy.py")], check=True, capture_output=True)
        SOURCE = Source(root, commit, "HEAD snapshot (git archive, byte-compiled)")
        try:
            yield SOURCE
        finally:
            SOURCE = Source()


def git_info() -> dict:
    return {"commit": SOURCE.commit or git("rev-parse", "HEAD"), "source": SOURCE.mode,
            "source_dir": str(SOURCE.root),
            "worktree_changes_not_benched": git("status", "--porcelain", "--untracked-files=no").splitlines()
            if SOURCE.root != REPO else [],
            "dirty": git("status", "--porcelain", "--untracked-files=no").splitlines() if SOURCE.root == REPO else []}


# --- the bench ------------------------------------------------------------------------------------


def fresh_first_apply(ctx_factory) -> dict:
    down = lab_cli("down")
    up = lab_cli("up", "--masters", str(BENCH_MASTERS))
    run = pyinfra().check("first apply")
    if not run.changed():
        raise HarnessError("the first apply on a fresh lab changed nothing")
    wait_for(lambda: api_ok(ctx_factory()), 60, what="the API through the VIP after the first apply")
    return {"apply": run.seconds, "down": down, "up": up}


def first_applies(runs: int) -> dict:
    """``first_apply`` and ``lab_recreate``: ``runs`` first applies, each on a fresh lab."""
    applies, downs, ups = [], [], []
    for i in range(runs):
        log(f"first apply {i + 1}/{runs}: lab down + up --masters {BENCH_MASTERS}, then pyinfra -y inventory.py deploy.py")
        sample = fresh_first_apply(client_context)
        applies.append(sample["apply"])
        downs.append(sample["down"])
        ups.append(sample["up"])
        log(f"  first apply {sample['apply']:.1f}s (lab down {sample['down']:.1f}s, up {sample['up']:.1f}s)")
    return {
        "first_apply": figure(applies, "s", "pyinfra -y inventory.py deploy.py on a fresh lab (down, up --masters 2)"),
        "lab_recreate": figure([d + u for d, u in zip(downs, ups)], "s",
                               "python -m lab down + up --masters 2 before each first apply (not counted)",
                               down=figure(downs, "s", "lab down"), up=figure(ups, "s", "lab up --masters 2")),
    }


def noop_rounds(runs: int) -> dict:
    """``noop_reapply``, ``dry_run``, ``floor``, ``check`` and their ratio, interleaved ``runs`` times on the
    converged lab; then ``remote_commands`` from one more untimed run of each."""
    results: dict = {}
    noops, drys, floors, checks = [], [], [], []
    for i in range(runs):
        noop = pyinfra(timeout=300).check("no-op re-apply")
        if noop.changed():
            raise HarnessError(f"the no-op re-apply changed something: {noop.changed()}")
        dry = pyinfra(dry=True, timeout=300).check("--dry")
        if dry.planned_changes():
            raise HarnessError(f"--dry on the converged lab plans changes: {dry.planned_changes()}")
        floor = pyinfra(FLOOR_DEPLOY, timeout=300).check("floor deploy")
        checks.append(check_seconds())
        noops.append(noop.seconds)
        drys.append(dry.seconds)
        floors.append(floor.seconds)
        log(f"round {i + 1}/{runs}: no-op {noop.seconds:.1f}s, --dry {dry.seconds:.1f}s, floor {floor.seconds:.1f}s")
    results["noop_reapply"] = figure(noops, "s", "pyinfra -y inventory.py deploy.py on the converged lab (nothing changes)")
    results["dry_run"] = figure(drys, "s", "pyinfra inventory.py deploy.py --dry on the converged lab")
    results["floor"] = figure(floors, "s", f"pyinfra -y inventory.py {FLOOR_DEPLOY}: one operation, one `true` per host")
    results["check"] = figure(checks, "s", "make check (python -m hakube.check --json inventory.py) on the converged lab")
    ratio = results["noop_reapply"]["median"] / results["floor"]["median"]
    per_round = figure([n / f for n, f in zip(noops, floors)], "ratio", "no-op / floor, per round")
    results["ratio_noop_to_floor"] = {
        "description": "median no-op re-apply / median floor",
        "unit": "ratio",
        "value": round(ratio, 2),
        "median": round(ratio, 2),
        "min": round(per_round["min"], 2),
        "max": round(per_round["max"], 2),
        "per_round": per_round["samples"],
    }
    # remote commands per host (one extra, untimed run each, docker shim + pyinfra trace)
    with tempfile.TemporaryDirectory(prefix="hakube-bench-") as tmp:
        counts = {}
        for kind in ("noop", "dry", "floor"):
            log(f"counting remote commands: {kind} run with the docker shim and the pyinfra trace")
            counts[kind] = counted_run(kind, Path(tmp))
    results["remote_commands"] = counts
    results["noop_remote_commands_per_host"] = {
        "description": "remote commands (docker exec + docker cp) per host in one no-op re-apply",
        "unit": "commands",
        "per_host": {h: v["remote_commands"] for h, v in counts["noop"]["hosts"].items()},
        "floor_per_host": {h: v["remote_commands"] for h, v in counts["floor"]["hosts"].items()},
        "dry_per_host": {h: v["remote_commands"] for h, v in counts["dry"]["hosts"].items()},
    }
    return results


def bench(runs: int) -> dict:
    started_wall = time.time()
    started = time.monotonic()
    results: dict = {
        "bench": "hakube make bench",
        "started": _dt.datetime.fromtimestamp(started_wall, _dt.timezone.utc).isoformat(timespec="seconds"),
        "runs": runs,
        "masters": BENCH_MASTERS,
    }

    def save():
        results["duration_s"] = round(time.monotonic() - started, 1)
        BENCH_DIR.mkdir(exist_ok=True)
        tmp = RESULTS_FILE.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=2) + "\n")
        tmp.replace(RESULTS_FILE)

    results["machine"] = machine_info()
    results["git"] = git_info()
    results["machine"]["masters"] = BENCH_MASTERS
    masters = lab.master_names(BENCH_MASTERS)

    # 1. first apply on a fresh lab
    results.update(first_applies(runs))
    save()
    # 1b. the first apply's parts, same run: the package install alone on fresh masters, the
    # apiserver's start alone on a converged one
    results["first_apply_parts"] = first_apply_parts(client_context, masters, runs, results["first_apply"]["median"])
    save()
    ctx = client_context()

    # 2. no-op, --dry, `make check` and floor, interleaved; 3. remote commands per host
    results.update(noop_rounds(runs))
    save()

    # 4. VIP failover
    samples = []
    try:
        for i in range(runs):
            s = failover_sample(ctx, masters)
            samples.append(s)
            log(f"failover {i + 1}/{runs}: {s['from']} -> {','.join(s['to']) or 'nobody'}: "
                f"{s['seconds'] if s['seconds'] is not None else 'no answer'}s")
    finally:
        for m in masters:  # never leave haproxy stopped
            lab.docker_exec(m, "systemctl", "start", "haproxy", check=False, timeout=60)
    adv = advert_int()
    results["failover"] = figure([s["seconds"] for s in samples], "s",
                                 "systemctl stop haproxy on the VIP holder -> first 200 ok on GET /readyz through the VIP",
                                 details=samples, advert_int_s=adv)
    save()

    # 4b. host loss: the VIP holder paused, the default inventory (VRRPv2, advert 1 s)
    results["failover_host_loss"] = host_loss_figure(ctx, masters, runs, f"VRRPv2, advert {adv:g} s")
    results["failover_host_loss"]["advert_int_s"] = adv
    save()

    # 4c. the fast mode (VRRPv3 variant deployed): its host loss, then the soak under CPU load;
    # inventory.py deployed again afterwards
    results.update(fast_mode(ctx, masters, runs, soak_s=soak_seconds()))
    save()

    # 5. planning that scales (pyinfra's @fake connector: no lab, no remote command)
    log(f"plan_scale: pyinfra --dry on @fake, 3 masters + {', '.join(map(str, plan_scale.SIZES))} nodes")
    results["plan_scale"] = plan_scale.measure(runs, root=SOURCE.root, env=_clean_env(), log=log)
    save()

    # 6. targets
    fo_limit = 3 * adv + 1
    fo_median = results["failover"]["median"]
    failed_samples = sum(1 for s in samples if s["seconds"] is None)
    results["targets"] = {
        "failover_le_3x_advert_int_plus_1s": {
            "description": f"failover median <= 3 x advert_int ({adv:g} s) + 1 s",
            "value": fo_median, "limit": fo_limit, "unit": "s",
            "pass": fo_median is not None and failed_samples == 0 and fo_median <= fo_limit,
        },
        "first_apply_le_30s": {
            "description": "first apply on a fresh two-master lab <= 30 s (median)",
            "value": results["first_apply"]["median"], "limit": 30.0, "unit": "s",
            "pass": results["first_apply"]["median"] <= 30.0,
        },
        "plan_scale_per_node_growth_le_1_2": results["plan_scale"]["target"],
    }
    results["targets"].update(new_targets(results))

    # 7. leave the lab converged
    holder = wait_failover_ready(ctx, masters)
    results["lab_left"] = {"masters": list(masters), "vip_holder": holder, "api_ok": api_ok(ctx)}
    results["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    save()
    return results


# --- the table ------------------------------------------------------------------------------------


def _fmt(v) -> str:
    return "-" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))


def render(results: dict, top: int = 8) -> str:
    m = results["machine"]
    lines = [
        f"hakube bench: {results['runs']} runs per figure (median, min, max); {results['masters']} masters; "
        f"pyinfra {m['pyinfra_version']}; {m['nproc']} CPU ({m['cpu_model']}); "
        f"total {results.get('duration_s', 0) / 60:.1f} min",
        "",
        f"{'figure':<58} {'median':>8} {'min':>8} {'max':>8}  unit",
        "-" * 92,
    ]

    def row(label, fig, unit=None):
        lines.append(f"{label:<58} {_fmt(fig.get('median')):>8} {_fmt(fig.get('min')):>8} "
                     f"{_fmt(fig.get('max')):>8}  {unit or fig['unit']}")

    row("first apply, fresh lab", results["first_apply"])
    row("  (lab down + up before it, not counted)", results["lab_recreate"])
    lines += noop_rows(results)
    row("VIP failover: stop haproxy on holder -> /readyz ok via VIP", results["failover"])
    lines += extra_rows(results)
    rc = results["noop_remote_commands_per_host"]
    lines.append(f"{'remote commands per host, no-op re-apply':<58} "
                 + ", ".join(f"{h.split('/')[-1]} {n}" for h, n in rc["per_host"].items())
                 + "  (floor: " + ", ".join(f"{h.split('/')[-1]} {n}" for h, n in rc["floor_per_host"].items())
                 + "; --dry: " + ", ".join(f"{h.split('/')[-1]} {n}" for h, n in rc["dry_per_host"].items()) + ")")
    lines += ["", "targets"]
    for t in results["targets"].values():
        lines.append(f"  {'PASS' if t['pass'] else 'FAIL'}  {t['description']:<50} "
                     f"{_fmt(t['value'])} {t['unit']} (limit {_fmt(t['limit'])} {t['unit']})")

    noop = results["remote_commands"]["noop"]["hosts"]
    for host, h in noop.items():
        lines += ["", f"no-op re-apply on {host}: {h['remote_commands']} remote commands, "
                      f"{h['remote_seconds']:.1f} s spent in them ({h['fact_commands']} fact commands, "
                      f"{h['operation_commands']} operation commands; by stage {h['by_stage']}; "
                      f"+{h['local_connect_commands']} local `docker container inspect` to connect)"]
        lines.append(f"  {'cmds':>4} {'sec':>6}  by fact / command (ops using it, stage split)")
        for v in h["by_fact_or_command"][:top]:
            stages = ", ".join(f"{k} {n}" for k, n in v["stages"].items())
            lines.append(f"  {v['commands']:>4} {v['seconds']:>6.2f}  {v['what']} ({v['operations']} ops; {stages})")
        lines.append(f"  {'cmds':>4} {'sec':>6}  by deploy step (operations; what)")
        for v in h["by_step"]:
            what = ", ".join(f"{k} x{n}" for k, n in v["what"].items())
            lines.append(f"  {v['commands']:>4} {v['seconds']:>6.2f}  {v['step'][:40]} ({v['operations']} ops; {what})")
        lines.append(f"  {'cmds':>4} {'sec':>6}  by operation (top {top} by time)")
        for v in h["by_operation"][:top]:
            what = ", ".join(f"{k} x{n}" for k, n in v["what"].items())
            lines.append(f"  {v['commands']:>4} {v['seconds']:>6.2f}  {v['operation'][:80]}  [{what}]")
        if len(h["by_operation"]) > top:
            rest = h["by_operation"][top:]
            lines.append(f"  {sum(v['commands'] for v in rest):>4} {sum(v['seconds'] for v in rest):>6.2f}  "
                         f"... {len(rest)} more operations")
    if "plan_scale" in results:
        lines += ["", plan_scale.render(results["plan_scale"])]
    lines += ["", f"results: {RESULTS_FILE.relative_to(REPO)}; lab left: {results.get('lab_left')}"]
    return "\n".join(lines)


NOOP_FIGURES = (
    ("noop_reapply", "no-op re-apply, converged lab"),
    ("dry_run", "--dry, converged lab"),
    ("floor", "floor: 1 op, `true` once per host"),
    ("check", "make check (read-only health and drift), converged lab"),
    ("ratio_noop_to_floor", "ratio no-op / floor (median/median; min-max per round)"),
)


def noop_rows(results: dict) -> list[str]:
    """Table rows of the no-op, --dry, floor and check figures (``python -m bench noop``)."""
    return [f"{label:<58} {_fmt(results[key].get('median')):>8} {_fmt(results[key].get('min')):>8} "
            f"{_fmt(results[key].get('max')):>8}  {'x' if results[key]['unit'] == 'ratio' else results[key]['unit']}"
            for key, label in NOOP_FIGURES if key in results]


EXTRA_FIGURES = (
    ("failover_host_loss", "host loss: VIP holder paused -> /readyz ok via VIP"),
    ("failover_host_loss_fast", "  the same, VRRPv3 advert 0.2 s (fast variant)"),
)


def extra_rows(results: dict) -> list[str]:
    """Table rows of the host-loss, soak and first-apply-parts figures present in ``results``."""
    lines = []

    def row(label, fig):
        lines.append(f"{label:<58} {_fmt(fig.get('median')):>8} {_fmt(fig.get('min')):>8} "
                     f"{_fmt(fig.get('max')):>8}  {fig['unit']}")

    for key, label in EXTRA_FIGURES:
        if key in results:
            row(label, results[key])
    soaked = results.get("false_failovers_fast")
    if soaked:
        lines.append(f"{'false failovers, VRRPv3 0.2 s, CPUs busy':<58} {soaked['count']:>8} "
                     f"{'':>8} {'':>8}  moves in {soaked['seconds']:g} s")
    parts = results.get("first_apply_parts")
    if parts:
        fa = (results.get("first_apply") or {}).get("median", parts.get("first_apply_median"))
        row("first apply's parts: packages alone (slowest master)", parts["packages"])
        row("  apiserver start alone (start -> /readyz ok)", parts["apiserver_start"])
        lines.append(f"{'  first apply / (packages + apiserver start)':<58} {_fmt(parts['ratio']):>8} "
                     f"{'':>8} {'':>8}  x (first apply {_fmt(fa)} s)")
    return lines


def measure_part(part: str, runs: int) -> dict:
    """``python -m bench noop|failover|soak|parts``: that part's keys of results.json, measured now.
    failover and soak need the converged lab; parts recreates it (and leaves it converged)."""
    masters = lab.master_names(BENCH_MASTERS)
    new: dict = {}
    if part == "parts":
        new.update(first_applies(runs))
        new["first_apply_parts"] = first_apply_parts(client_context, masters, runs, new["first_apply"]["median"])
        return new
    ctx = client_context()
    wait_failover_ready(ctx, masters)
    if part == "noop":
        new.update(noop_rounds(runs))
    elif part == "failover":
        adv = advert_int()
        new["failover_host_loss"] = host_loss_figure(ctx, masters, runs, f"VRRPv2, advert {adv:g} s")
        new["failover_host_loss"]["advert_int_s"] = adv
        new.update(fast_mode(ctx, masters, runs))
    elif part == "soak":
        new.update(fast_mode(ctx, masters, runs, host_loss=False, soak_s=soak_seconds()))
    else:
        raise ValueError(part)
    return new


def merged_with_targets(old: dict, new: dict) -> dict:
    """results.json after a part ran alone: ``old`` keeps every key, ``new`` wins, targets recomputed."""
    results = merge_results(old, new)
    results["targets"] = {**results.get("targets", {}), **new_targets(results)}
    return results


def part_alone(part: str, runs: int, worktree: bool) -> int:
    """One lab part alone, under the lab-session lock, merged into bench/results.json."""
    if not lab.docker_available():
        print("bench: Docker daemon not reachable (the bench runs on the Docker lab)", file=sys.stderr)
        return 1
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    try:
        with session_lock(log), source_tree(worktree) as source:
            log(f"lab-session lock held; {part} alone, {runs} runs; deploying {source.mode} {source.commit[:10]}")
            new = measure_part(part, runs)
            new[f"{part}_alone"] = {"started": started, "runs": runs, "git": git_info()}
    except (HarnessError, lab.LabError) as e:
        print(f"bench: error: {e}", file=sys.stderr)
        return 1
    old = json.loads(RESULTS_FILE.read_text()) if RESULTS_FILE.exists() else {}
    results = merged_with_targets(old, new)
    write_results(results)
    print("\n".join([*(noop_rows(results) if part == "noop" else []), *extra_rows(results)]))
    for key in sorted(new_targets(new)):
        t = results["targets"][key]
        print(f"  {'PASS' if t['pass'] else 'FAIL'}  {t['description']:<50} {_fmt(t['value'])} {t['unit']} "
              f"(limit {_fmt(t['limit'])} {t['unit']})")
    return 0


def plan_scale_alone(runs: int) -> int:
    """``python -m bench plan_scale``: only the planning measurement (no lab, no Docker, no lock), of
    the working tree; merged into bench/results.json, whose other keys stay as they are."""
    results = json.loads(RESULTS_FILE.read_text()) if RESULTS_FILE.exists() else {}
    try:
        results["plan_scale"] = plan_scale.measure(runs, log=log)
    except RuntimeError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        return 1
    results.setdefault("targets", {})["plan_scale_per_node_growth_le_1_2"] = results["plan_scale"]["target"]
    BENCH_DIR.mkdir(exist_ok=True)
    tmp = RESULTS_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(RESULTS_FILE)
    print(plan_scale.render(results["plan_scale"]))
    return 0


LAB_PARTS = ("noop", "failover", "soak", "parts")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS") or DEFAULT_RUNS),
                        help="runs per figure (env BENCH_RUNS, default 5)")
    parser.add_argument("--show", action="store_true", help="print the table of the last bench/results.json")
    parser.add_argument("--worktree", action="store_true",
                        default=os.environ.get("BENCH_WORKTREE", "").strip().lower() in ("1", "true", "yes"),
                        help="deploy the working tree as is (env BENCH_WORKTREE=1), not a snapshot of HEAD")
    parser.add_argument("only", nargs="?", choices=["plan_scale", *LAB_PARTS],
                        help="plan_scale: only pyinfra --dry on @fake for 3 masters + 0/50/500 nodes (no lab); "
                             "failover: host loss, VRRPv2 and the VRRPv3 variant (converged lab); soak: the "
                             "VRRPv3 variant's false failovers under CPU load, BENCH_SOAK_SECONDS (default 600); "
                             "parts: first apply and its parts (recreates the lab)")
    args = parser.parse_args(argv)
    if args.only == "plan_scale":
        return plan_scale_alone(args.runs)
    if args.only in LAB_PARTS:
        if args.runs < 1:
            parser.error("--runs must be >= 1")
        return part_alone(args.only, args.runs, args.worktree)
    if args.show:
        shown = json.loads(RESULTS_FILE.read_text())
        # only parts ran alone so far: there is no full lab table yet
        if "machine" in shown:
            print(render(shown))
        else:
            print("\n".join([*extra_rows(shown), *([plan_scale.render(shown["plan_scale"])]
                                                   if "plan_scale" in shown else [])]))
        return 0
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    if args.runs < DEFAULT_RUNS:
        log(f"note: {args.runs} runs per figure; the issue asks for at least {DEFAULT_RUNS}")
    if not lab.docker_available():
        print("bench: Docker daemon not reachable (the bench runs on the Docker lab)", file=sys.stderr)
        return 1
    try:
        with session_lock(log), source_tree(args.worktree) as source:
            log(f"lab-session lock held; {args.runs} runs per figure; deploying {source.mode} "
                f"{source.commit[:10]} from {source.root}")
            results = bench(args.runs)
    except (HarnessError, lab.LabError) as e:
        print(f"bench: error: {e}", file=sys.stderr)
        return 1
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
