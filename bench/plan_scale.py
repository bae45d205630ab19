"""Planning that scales: ``pyinfra INVENTORY deploy.py --dry --json`` on pyinfra's ``@fake``
connector (nothing runs anywhere, no lab, no Docker) for 3 masters with 0, 50 and 500 nodes.

    python -m bench plan_scale [--runs N]      # alone; `make bench` runs it too

Each size: one untimed warm-up run (it creates the PKI in a temporary pki_dir, shared by all
sizes), then ``--runs`` timed runs, each a fresh pyinfra process: its wall seconds and its peak
RSS and CPU seconds (user + system: ``ru_maxrss``, ``ru_utime``, ``ru_stime`` of that child, from
``os.wait4``). The masters' snapshot says "nothing
installed yet" (a first apply's plan, the biggest one); the nodes answer nothing (``@fake``'s
default), as in tests/unit/test_planning.py.

The cost per node at N nodes is what N nodes add to the run with none, divided by N:
``(median(N) - median(0)) / N``. ``per_node_growth`` is that cost at 500 over the cost at 50:
1.0 when planning is linear in the nodes, more when a node costs more the more there are
(target <= 1.2). It is taken from the CPU seconds of the pyinfra process (planning on @fake with
no delay is all CPU, and CPU time is not inflated by whatever else this machine runs, e.g. a
lab); the same ratio from wall seconds is ``per_node_growth_wall``, from peak RSS
``per_node_growth_rss``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYINFRA = str(Path(sys.executable).parent / "pyinfra")
SIZES = (0, 50, 500)
GROWTH_TARGET = 1.2
SHA = "0123456789abcdef" * 4

FAKE = {"fake_delay": 0, "fake_delay_jitter": 0}
#: the masters' answers: the host snapshot (``hakube.facts``) of an empty amd64 machine
MASTER_FAKE = {**FAKE, "fake_responses": {
    "command -v apt-get": "/usr/bin/apt-get",
    "uname -s": "Linux",
    "command -v useradd": "/usr/sbin/useradd",
    "dpkg --print-architecture": "A amd64",
}}


def write_inventory(base: Path, nodes: int, pki_dir: Path) -> Path:
    """3 masters and ``nodes`` nodes on ``@fake``; the cluster's data as the lab's, with a password file."""
    (base / "vrrp_pass").write_text("fAkep4ss\n")
    masters = [(f"@fake/m{i}", {"bind_address": f"10.9.0.{10 + i}", "vrrp_priority": 130 - 10 * i,
                                "vrrp_interface": "eth0", **MASTER_FAKE}) for i in (1, 2, 3)]
    cluster = {
        "vip": "10.9.0.100",
        "etcd_servers": ["https://10.9.0.20:2379"],
        "kube_version": "1.36.0",
        "kube_apiserver_sha256": SHA,
        "vrrp_auth_pass_file": str(base / "vrrp_pass"),
        "pki_dir": str(pki_dir),
        "artifacts_dir": str(base / "artifacts"),
    }
    node_list = [(f"@fake/n{i:04d}", dict(FAKE)) for i in range(1, nodes + 1)]
    path = base / f"inventory_{nodes}.py"
    path.write_text(f"masters = ({masters!r}, {cluster!r})\nnodes = ({node_list!r}, {{}})\n")
    return path


def _env(base: dict | None = None) -> dict:
    base = os.environ if base is None else base
    env = {k: v for k, v in base.items() if not k.startswith("PYINFRA_") and k != "HAKUBE_VRRP_AUTH_PASS"}
    env.update(PYINFRA_FAKE_DELAY="0", PYINFRA_FAKE_DELAY_JITTER="0")
    return env


def plan_once(inventory: Path, workdir: Path, root: Path = REPO, env: dict | None = None) -> tuple[float, float, float]:
    """One ``pyinfra INVENTORY deploy.py --dry --json`` from the repository root: (wall seconds,
    peak RSS in MiB, CPU seconds of that process). Output goes to files (a 500-node plan is big)."""
    out, err = workdir / "stdout.json", workdir / "stderr.txt"
    with out.open("wb") as o, err.open("wb") as e:
        started = time.monotonic()
        proc = subprocess.Popen([PYINFRA, str(inventory), "deploy.py", "--dry", "--json"], cwd=root, env=_env(env),
                                stdin=subprocess.DEVNULL, stdout=o, stderr=e)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    if proc.returncode != 0:
        raise RuntimeError(f"plan_scale: {inventory.name} failed (rc {proc.returncode}):\n"
                           + err.read_text(errors="replace")[-3000:])
    return seconds, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime  # ru_maxrss: KiB on Linux


def _figure(samples: list[float], unit: str, description: str) -> dict:
    return {"description": description, "unit": unit, "runs": len(samples),
            "median": round(statistics.median(samples), 3), "min": round(min(samples), 3),
            "max": round(max(samples), 3), "samples": [round(s, 3) for s in samples]}


def _growth(med: dict[int, float]) -> float | None:
    small, big = ((med[n] - med[0]) / n for n in (50, 500))
    return round(big / small, 3) if small > 0 else None


def measure(runs: int = 3, root: Path = REPO, env: dict | None = None,
            log=lambda msg: print(msg, file=sys.stderr, flush=True)) -> dict:
    """``plan_scale`` of results.json: the deploy in ``root`` (the repository, or the bench's HEAD
    snapshot), pyinfra run with ``env`` (default: this process's)."""
    out: dict = {"description": "pyinfra INVENTORY deploy.py --dry --json on @fake: 3 masters (a first apply's "
                                "plan) and N nodes; each size a fresh process per run, after one warm-up",
                 "masters": 3, "runs": runs}
    with tempfile.TemporaryDirectory(prefix="hakube-plan-scale-") as tmp:
        base = Path(tmp)
        pki = base / "pki"
        for nodes in SIZES:
            inventory = write_inventory(base, nodes, pki)
            plan_once(inventory, base, root, env)  # warm-up: the PKI (first size), the page cache
            seconds, rss, cpu = [], [], []
            for _ in range(runs):
                s, r, c = plan_once(inventory, base, root, env)
                seconds.append(s)
                rss.append(r)
                cpu.append(c)
            out[str(nodes)] = {
                "hosts": 3 + nodes,
                "seconds": _figure(seconds, "s", f"wall time of the pyinfra process, 3 masters + {nodes} nodes"),
                "peak_rss_mib": _figure(rss, "MiB", f"peak RSS of the pyinfra process, 3 masters + {nodes} nodes"),
                "cpu_seconds": _figure(cpu, "s", f"user + system CPU of the pyinfra process, 3 masters + {nodes} nodes"),
            }
            row = out[str(nodes)]
            log(f"plan_scale: {nodes:>3} nodes: {row['seconds']['median']:.2f} s wall, {row['cpu_seconds']['median']:.2f} s "
                f"CPU, {row['peak_rss_mib']['median']:.0f} MiB (median of {runs})")
    med = {key: {n: out[str(n)][key]["median"] for n in SIZES} for key in ("seconds", "cpu_seconds", "peak_rss_mib")}
    out["per_node"] = {str(n): {key: {"value": round((m[n] - m[0]) / n, 5), "unit": "MiB" if key == "peak_rss_mib" else "s"}
                                for key, m in med.items()} for n in SIZES[1:]}
    growth = _growth(med["cpu_seconds"])
    out["per_node_growth"] = growth
    out["per_node_growth_unit"] = "ratio"
    out["per_node_growth_wall"] = _growth(med["seconds"])
    out["per_node_growth_rss"] = _growth(med["peak_rss_mib"])
    out["target"] = {"description": f"CPU seconds per node at 500 nodes <= {GROWTH_TARGET} x at 50 (over the 0-node run)",
                     "value": growth, "limit": GROWTH_TARGET, "unit": "ratio",
                     "pass": growth is not None and growth <= GROWTH_TARGET}
    return out


def render(ps: dict) -> str:
    lines = [f"plan_scale: pyinfra --dry on @fake, 3 masters + N nodes ({ps['runs']} runs each; median, min, max)"]
    for n in SIZES:
        row = ps.get(str(n))
        if not row:
            continue
        s, c, r = row["seconds"], row["cpu_seconds"], row["peak_rss_mib"]
        lines.append(f"  {n:>4} nodes  wall {s['median']:6.2f} s ({s['min']:.2f}-{s['max']:.2f})  "
                     f"CPU {c['median']:6.2f} s ({c['min']:.2f}-{c['max']:.2f})  "
                     f"peak RSS {r['median']:6.1f} MiB ({r['min']:.1f}-{r['max']:.1f})")
    t = ps["target"]
    lines.append(f"  {'PASS' if t['pass'] else 'FAIL'}  {t['description']}: {t['value']} "
                 f"(from wall seconds: {ps.get('per_node_growth_wall')}; peak RSS: {ps.get('per_node_growth_rss')})")
    return "\n".join(lines)
