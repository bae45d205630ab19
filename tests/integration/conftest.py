"""Shared fixtures of the lab tests: the session lock, the real pyinfra CLI, clients through the VIP.

Only the lab's own addresses (10.213.0.0/24) and loopback are ever contacted.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import lab
from lab.clients import CALL_TIMEOUT
from lab.harness import Run, api_get, api_ok, client_context, session_lock, wait_for  # noqa: F401

REPO = lab.REPO
PYINFRA = str(Path(sys.executable).parent / "pyinfra")
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
CONFIG_DIRS = ("/etc/kubernetes", "/etc/haproxy", "/etc/keepalived")
#: the lab every integration test runs on: a real site mid-upgrade (vm01 Debian 12, the rest 13, a node)
LAB_LAYOUT = ("--os", "mixed", "--nodes", "1")


@pytest.fixture(scope="session", autouse=True)
def lab_session_lock():
    """One user of the lab at a time (tests and `make bench` take this lock for their whole run)."""
    if not lab.docker_available():
        message = "Docker daemon not reachable (the lab tests need Docker)"
        if IN_CI:
            pytest.fail(f"{message}; CI=true, so this is a failure, not a skip")
        pytest.skip(message)
    with session_lock():
        yield


# --- the pyinfra CLI ------------------------------------------------------------------------------


def deploy(inventory: str | Path = "inventory.py", *, dry: bool = False, env: dict | None = None,
           timeout: float = 900, cwd: Path = REPO, extra_args=()) -> Run:
    """`pyinfra [-y] INVENTORY deploy.py --json [--dry]` from the repository root (or ``cwd``), no stdin."""
    args = [PYINFRA, *([] if dry else ["-y"]), str(inventory), "deploy.py", "--json", *(["--dry"] if dry else []),
            *extra_args]
    started = time.monotonic()
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    return Run.parse(args, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


def assert_converged(run: Run) -> None:
    assert run.returncode == 0, run.describe()
    assert not run.errors(), run.describe()


def assert_no_change(run: Run) -> None:
    assert_converged(run)
    assert run.changed() == {}, f"expected no change, got {run.changed()}"


def variant_inventory(tmp_path: Path, cluster: dict | None = None, hosts: dict | None = None,
                      name: str = "inventory_variant.py") -> Path:
    """The real inventory.py with overrides: ``cluster`` keys and ``hosts`` {short name: {key: value}}."""
    path = tmp_path / name
    path.write_text(
        "import json\n"
        f"_ns = {{'__file__': {str(REPO / 'inventory.py')!r}}}\n"
        f"exec(compile(open({str(REPO / 'inventory.py')!r}).read(), 'inventory.py', 'exec'), _ns)\n"
        "masters, nodes = _ns['masters'], _ns['nodes']\n"
        f"masters[1].update(json.loads({json.dumps(cluster or {})!r}))\n"
        f"_hosts = json.loads({json.dumps(hosts or {})!r})\n"
        "for _name, _data in masters[0]:\n"
        "    _data.update(_hosts.get(_name.rsplit('/', 1)[-1], {}))\n"
    )
    return path


# --- hosts ----------------------------------------------------------------------------------------


def masters() -> tuple[str, ...]:
    return lab.master_names(lab.masters_count())


def sh(name: str, script: str, check: bool = True) -> subprocess.CompletedProcess:
    return lab.docker_exec(name, "sh", "-c", script, check=check)


def config_checksums(names=None) -> dict[str, str]:
    """sha256, mode and owner of every file under the deploy's config dirs, per master."""
    out = {}
    for name in names or masters():
        listing = sh(name, f"find {' '.join(CONFIG_DIRS)} -type f 2>/dev/null | sort | "
                           "while read f; do echo \"$(sha256sum < \"$f\") $(stat -c %a:%U \"$f\") $f\"; done",
                     check=False).stdout
        out[name] = listing
    return out


def host_snapshot(name: str) -> str:
    """Everything a deploy could touch on a fresh master: files under /etc, /usr/local, /root, packages."""
    script = ("find /etc /usr/local /root -xdev -type f 2>/dev/null | sort | xargs -r sha256sum; "
              "dpkg-query -W -f '${Package} ${Version}\\n'; systemctl list-units --no-legend --plain kube-apiserver.service haproxy.service keepalived.service")
    return hashlib.sha256(sh(name, script, check=False).stdout.encode()).hexdigest()


def holders() -> list[str]:
    return lab.vip_holders()


# --- clients through the VIP ------------------------------------------------------------------------


#: failed calls per real client tolerated through apiserver rolls: none, but for the Python client's
#: kept HTTP/1.1 connection one, 1.20.2's idle-close race (README: What a client sees): Go's
#: http.Server.Shutdown closes an idle keep-alive connection while the next request may be on its
#: way; 1.23+ answers it with `Connection: close` instead (--shutdown-send-retry-after).
ROLL_TOLERANCE = {"python_client": 1}


class Prober:
    """Calls /readyz through the VIP every ``interval`` seconds in a thread; records (t, ok, detail).

    ``real=True``: the real client stacks (``real_clients``: kept HTTP/2 and HTTP/1.1 connections,
    writes, a watch) run alongside; their problems (a failed call, a missed object, a relist, a
    client that made fewer than ``min_real_calls`` calls) count as failures too, and their figures
    are printed. ``tolerated``: failed calls per client (or {kind: figure}) that are a known limit
    (``ROLL_TOLERANCE``); 0 is the promise.

    A call fails when it errs or outlasts ``timeout``: by default ``CALL_TIMEOUT``, the real clients'
    (client-go gives a TLS handshake 10 s); a slower call that succeeds is a stall, not a failure,
    and the slowest calls are printed. A prober that waits for an address to start answering passes
    a short ``timeout`` so that it sees the first answer promptly."""

    def __init__(self, interval: float = 0.1, path: str = "/readyz", host: str = lab.VIP, real: bool = False,
                 min_real_calls: int = 10, tolerated: dict | int = 0, timeout: float | None = None):
        self.interval, self.path, self.host = interval, path, host
        self.timeout = CALL_TIMEOUT if timeout is None else timeout
        self.samples: list[tuple[float, bool, str]] = []
        self.seconds: list[float] = []  # each call's duration, in the order of ``samples``
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ctx = client_context()
        self._clients = real_clients(host) if real else None
        self.min_real_calls, self.tolerated = min_real_calls, tolerated
        self.real_report: dict | None = None

    def _run(self):
        while not self._stop.is_set():
            started = time.monotonic()
            status, body = api_get(self.path, ctx=self._ctx, timeout=self.timeout, host=self.host)
            self.seconds.append(time.monotonic() - started)
            self.samples.append((started, status == 200, f"{status} {body[:80]}"))
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def __enter__(self):
        if self._clients is not None:
            self._clients.__enter__()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=self.timeout + 10)
        if self.samples:
            t0 = self.samples[0][0]
            slow = sorted(zip(self.seconds, self.samples), reverse=True)[:3]
            print(f"\nprobe through {self.host}: {len(self.samples)} calls, slowest "
                  + ", ".join(f"{d:.2f}s at +{s[0] - t0:.1f}s ({s[2][:40]})" for d, s in slow))
        if self._clients is not None:
            from lab.clients import format_report

            self._clients.__exit__(*exc)
            self.real_report = self._clients.report()
            print(f"\nreal clients through {self.host}:\n{format_report(self.real_report)}")

    @property
    def failures(self) -> list[tuple[float, bool, str]]:
        mine = [s for s in self.samples if not s[1]]
        if self.real_report is None:
            return mine
        from lab.clients import problems

        return mine + [(0.0, False, f"real client: {p}")
                       for p in problems(self.real_report, self.min_real_calls, self.tolerated)]


def real_clients(host: str = lab.VIP, port: int = 6443, **options):
    """The real client stacks (``lab.clients``: a new connection per call, Go's kept HTTP/2, the
    official Python client, a reflector-style watch, two naive clients) through ``host``."""
    from lab.clients import ClientHarness
    from lab.config import PKI_DIR

    return ClientHarness(host, port, PKI_DIR / "ca.pem", PKI_DIR / "admin.pem", PKI_DIR / "admin-key.pem", **options)


def assert_clients_unhurt(harness, min_calls: int, what: str, tolerated: dict | int = 0) -> dict:
    """No call of a real client failed, no object was missed by the watch, every client made at
    least ``min_calls`` calls; the figures are printed either way."""
    from lab.clients import assert_no_failures, format_report

    report = harness.report()
    print(f"{what}:\n{format_report(report)}")
    assert_no_failures(report, min_calls=min_calls, allowed_failures=tolerated)
    return report


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def converged():
    """The 2-master lab with the deploy applied (idempotent: a converged lab is just re-checked)."""
    proc = subprocess.run([sys.executable, "-m", "lab", "up", *LAB_LAYOUT], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    run = deploy()
    assert_converged(run)
    wait_for(api_ok, 30, what="the API through the VIP")
    return run
