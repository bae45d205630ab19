"""Real client stacks calling the API through one address while a change runs (test tooling).

The promise measured: no change the deploy makes fails an API call through the VIP, for real
clients that keep their connections. :class:`ClientHarness` runs, around a change::

    with ClientHarness(VIP, 6443, PKI / "ca.pem", PKI / "admin.pem", PKI / "admin-key.pem") as h:
        ...  # the change
    report = h.report(); print(format_report(report)); assert_no_failures(report, min_calls=...)

one client of each kind, all through ``host:port`` with the given client certificate, the server's
chain verified against the CA:

``new_conn``        a new TLS connection per call (http.client), GET /readyz, like the lab's Prober;
``go_h2``           ``lab/h2client`` (Go standard library only): one kept HTTP/2 connection through
                    net/http's Transport, the transport client-go uses; reads and writes ConfigMaps;
``python_client``   the official Kubernetes Python client (urllib3, kept HTTP/1.1 connections, its
                    default settings); reads and writes ConfigMaps;
``watch``           a reflector-style watch on the ConfigMaps of this run (list, watch from the list's
                    resourceVersion, re-watch from the last one seen whenever the stream ends, relist
                    on 410 Gone); at the end, every ConfigMap the writers created must have been seen;
``naive_keepalive`` one raw http.client connection reused for every call without checking whether the
                    server closed it (a figure, never a failure); reads the ConfigMaps as the real
                    clients do (not /readyz: a kept connection stays on a draining apiserver, whose
                    /readyz fails on purpose while it still serves the API);
``httpx_h2``        httpx with HTTP/2, one client, the same read (a figure, never a failure).

A failed call is an exception or a status outside 2xx (a 5xx, a 429, or anything else: a 4xx here
means the harness itself is wrong). Every loop is bounded in time and in count and stops by itself.
The ConfigMaps carry the label ``hakube-probe-run=<run id>``; they are deleted at the end (best
effort, bounded). Only ``host`` is ever contacted.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import random
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .config import CACHE_DIR

#: the client kinds, in the order they are reported
KINDS = ("new_conn", "go_h2", "python_client", "watch", "naive_keepalive", "httpx_h2")
#: measured and reported, but a failure of theirs never fails :func:`assert_no_failures`
NAIVE = frozenset({"naive_keepalive", "httpx_h2"})
#: kinds that create ConfigMaps
WRITERS = ("go_h2", "python_client")
MAX_ERRORS = 5
#: a call that has no answer after this long has failed: client-go's TLS handshake timeout, the
#: shortest a real client applies (the official Python client sets none)
CALL_TIMEOUT = 10.0
LABEL_KEY = "hakube-probe-run"
GO_SOURCE = Path(__file__).resolve().parent / "h2client" / "main.go"
#: part of the Go binary's cache key besides the source: change it when the build changes
GO_BUILD_FLAGS = ("-trimpath",)

#: a failed write whose error says the request never reached the server (nothing was created)
_NOT_SENT = re.compile(r"dial tcp|connection refused|NewConnectionError|Failed to establish a new connection"
                       r"|HTTP 4\d\d", re.IGNORECASE)


class HarnessError(RuntimeError):
    pass


def _log(msg: str) -> None:
    print(f"clients: {msg}", file=sys.stderr, flush=True)


# --- the pure parts: one client's figures, the watch's comparison, the report ----------------------


class ClientStats:
    """The figures of one client: calls, failures, the first errors and the longest stall.

    A stall is the time between two successes (``mark_ok``/``record(True)``), and from the last
    success to the end of the measurement (``finish``): a client that stops succeeding shows it.
    Only one thread writes to it; the harness reads it after that thread ended.
    """

    def __init__(self, kind: str, naive: bool = False, clock=time.monotonic):
        self.kind, self.naive, self.clock = kind, naive, clock
        self.started = clock()
        self.ended: float | None = None
        self.calls = self.failed = self.ok = 0
        self.errors: list[str] = []
        self.longest_stall = 0.0
        self.last_ok: float | None = None
        self.died: str | None = None
        self.extra: dict = {}

    def mark_ok(self, t: float | None = None) -> None:
        """A success that is not a call of its own (the watch's events)."""
        t = self.clock() if t is None else t
        if self.last_ok is not None:
            self.longest_stall = max(self.longest_stall, t - self.last_ok)
        self.last_ok = t if self.last_ok is None else max(self.last_ok, t)

    def record(self, ok: bool, error: str | None = None, t: float | None = None) -> None:
        t = self.clock() if t is None else t
        self.calls += 1
        if ok:
            self.ok += 1
            self.mark_ok(t)
            return
        self.failed += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(f"+{t - self.started:.1f}s {error or 'failed'}"[:240])

    def finish(self, end: float | None = None) -> None:
        """The end of the measurement: the time since the last success counts as a stall."""
        end = self.clock() if end is None else end
        self.ended = end
        if self.last_ok is not None and end > self.last_ok:
            self.longest_stall = max(self.longest_stall, end - self.last_ok)

    def as_dict(self) -> dict:
        end = self.ended if self.ended is not None else self.clock()
        entry = {"naive": self.naive, "calls": self.calls, "failed": self.failed,
                 "longest_stall_s": round(self.longest_stall, 3), "seconds": round(end - self.started, 1),
                 "errors": list(self.errors)}
        if self.died:
            entry["died"] = self.died
        entry.update(self.extra)
        return entry


def ambiguous_write(error: str) -> bool:
    """Whether a failed create may still have created its object (the request may have been sent)."""
    return not _NOT_SENT.search(error or "")


def expected_names(succeeded: set[str], ambiguous: set[str], existing: set[str] | None) -> set[str]:
    """The ConfigMaps the writers created: every success, and every ambiguous failure that exists
    afterwards (``existing``: a list of them after the writers stopped; ``None`` when that list
    failed, then every ambiguous failure is counted as created)."""
    return set(succeeded) | (set(ambiguous) if existing is None else set(ambiguous) & set(existing))


def parse_go_line(line: str) -> dict | None:
    """One JSON line of ``lab/h2client``: a call record, ``{"summary": ...}``, or None (not JSON)."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def problems(report: dict, min_calls: dict | int = 1, allowed_failures: dict | int = 0) -> list[str]:
    """Why ``report`` breaks the promise; empty when it keeps it.

    Any non-naive client with a failed call; a watch that missed an object or relisted; any client
    (naive ones too) that made fewer than its minimum of calls (the watch: of events) or died.
    ``min_calls``: one minimum for every kind, or {kind: minimum} (kinds not named: 1; a kind
    named but absent from the report is a problem). ``allowed_failures``: failed calls per client
    that are tolerated (a known, measured limit; 0 is the promise): one figure for every kind, or
    {kind: figure} (kinds not named: 0).
    """
    found = []
    minimums = ({kind: min_calls for kind in report} if isinstance(min_calls, int)
                else {**{kind: 1 for kind in report}, **min_calls})
    for kind, minimum in minimums.items():
        entry = report.get(kind)
        if entry is None:
            found.append(f"{kind}: not in the report")
            continue
        done = entry.get("events", 0) if kind == "watch" else entry.get("calls", 0)
        unit = "events" if kind == "watch" else "calls"
        if done < minimum:
            found.append(f"{kind}: {done} {unit}, fewer than the minimum {minimum} (did it run?)")
        if entry.get("died"):
            found.append(f"{kind}: died: {entry['died']}")
        if entry.get("naive"):
            continue
        allowed = allowed_failures if isinstance(allowed_failures, int) else allowed_failures.get(kind, 0)
        if entry.get("failed", 0) > allowed:
            found.append(f"{kind}: {entry['failed']} of {entry.get('calls', 0)} calls failed"
                         + (f" (more than the {allowed} tolerated)" if allowed else ""))
        if entry.get("missed"):
            found.append(f"{kind}: missed {entry['missed']} created objects "
                         f"(e.g. {', '.join(entry.get('missed_names', [])[:3])})")
        if entry.get("relists"):
            found.append(f"{kind}: relisted {entry['relists']} times (410 Gone)")
    return found


def format_report(report: dict) -> str:
    """A compact table: one line per client, then each client's first errors."""
    head = f"{'client':<16} {'calls':>6} {'failed':>6} {'stall_s':>8}  notes"
    lines = [head, "-" * len(head)]
    for kind, entry in report.items():
        notes = []
        if kind == "watch":
            notes.append(f"events {entry.get('events', 0)}, missed {entry.get('missed', 0)} of "
                         f"{entry.get('expected', 0)}, relists {entry.get('relists', 0)}, "
                         f"reconnects {entry.get('reconnects', 0)}")
        if "writes" in entry:
            notes.append(f"writes {entry['writes']} ({entry.get('writes_failed', 0)} failed)")
        if entry.get("proto"):
            notes.append("/".join(entry["proto"]) if isinstance(entry["proto"], list) else str(entry["proto"]))
        if "conns" in entry:
            notes.append(f"{entry['conns']} conns")
        if entry.get("naive"):
            notes.append("naive: a figure, not a failure")
        if entry.get("died"):
            notes.append(f"DIED: {entry['died'][:80]}")
        lines.append(f"{kind:<16} {entry.get('calls', 0):>6} {entry.get('failed', 0):>6} "
                     f"{entry.get('longest_stall_s', 0):>8.2f}  {'; '.join(notes)}")
    for kind, entry in report.items():
        for error in entry.get("errors", [])[:3]:
            lines.append(f"  {kind}: {error}")
        if entry.get("missed_names"):
            lines.append(f"  {kind}: missed {', '.join(entry['missed_names'][:5])}")
    return "\n".join(lines)


def assert_no_failures(report: dict, min_calls: dict | int = 1, allowed_failures: dict | int = 0) -> None:
    """AssertionError with the table when :func:`problems` finds any."""
    found = problems(report, min_calls, allowed_failures)
    if found:
        raise AssertionError("clients through the API address broke the promise:\n  "
                             + "\n  ".join(found) + "\n" + format_report(report))


# --- the Go client's binary -----------------------------------------------------------------------


def go_binary(source: Path = GO_SOURCE, cache_dir: Path = CACHE_DIR, log=_log) -> Path:
    """``lab/h2client`` built with ``go build`` (standard library only, nothing fetched), cached in
    ``cache_dir`` under the hash of its source; built once, under a lock."""
    code = source.read_bytes()
    digest = hashlib.sha256(code + "\0".join(GO_BUILD_FLAGS).encode()).hexdigest()[:16]
    binary = cache_dir / f"h2client-{digest}"
    if binary.exists():
        return binary
    go = shutil.which("go")
    if not go:
        raise HarnessError("the Go toolchain is missing (`make host-deps` installs golang-go)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / "h2client.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.exists():
            return binary
        env = {**os.environ, "GO111MODULE": "off", "GOPATH": str(cache_dir / "go"),
               "GOCACHE": str(cache_dir / "go-build"), "GOFLAGS": "", "CGO_ENABLED": "0",
               "GOPROXY": "off", "GOTOOLCHAIN": "local"}
        tmp = cache_dir / f".h2client-{digest}.{os.getpid()}"
        started = time.monotonic()
        with tempfile.TemporaryDirectory() as work:
            # a copy outside the checkout: `go build` of one file, no module, nothing to fetch
            (Path(work) / "main.go").write_bytes(code)
            proc = subprocess.run([go, "build", *GO_BUILD_FLAGS, "-o", str(tmp), "main.go"], cwd=work, env=env,
                                  capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise HarnessError(f"go build of {source} failed:\n{proc.stdout}{proc.stderr}")
        os.replace(tmp, binary)
        for old in cache_dir.glob("h2client-*"):
            if old != binary:
                old.unlink(missing_ok=True)
        log(f"built {binary.name} in {time.monotonic() - started:.1f}s")
    return binary


# --- the clients ----------------------------------------------------------------------------------


def _error_text(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    if status and type(exc).__name__ == "ApiException":
        body = (getattr(exc, "body", None) or getattr(exc, "reason", "") or "")
        if isinstance(body, bytes):
            body = body.decode(errors="replace")
        return f"HTTP {status}: {str(body).strip()[:160]}"
    reason = getattr(exc, "reason", None)  # urllib3's MaxRetryError: the cause is what matters
    if isinstance(reason, Exception):
        return f"{type(exc).__name__}: {type(reason).__name__}: {reason}"[:240]
    return f"{type(exc).__name__}: {exc}"[:240]


class _Client:
    """One client in a thread: ``call()`` every step, until stopped, ``max_seconds`` or ``max_calls``."""

    kind = ""

    def __init__(self, harness: "ClientHarness"):
        self.h = harness
        self.stats = ClientStats(self.kind, self.kind in NAIVE)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._main, name=f"client-{self.kind}", daemon=True)

    # lifecycle
    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)
        if self.thread.is_alive() and not self.stats.died:
            self.stats.died = f"still running {timeout:.0f}s after it was told to stop"

    @property
    def ready(self) -> bool:
        return self.stats.ok > 0

    def _main(self) -> None:
        try:
            self.setup()
            self.loop()
        except BaseException as e:  # a harness bug, not a failed call: reported as "died"
            self.stats.died = _error_text(e)
        finally:
            with contextlib.suppress(Exception):
                self.teardown()
            self.stats.extra["cpu_s"] = round(time.thread_time(), 2)  # this thread's own CPU time

    def setup(self) -> None:
        pass

    def teardown(self) -> None:
        pass

    def steps(self, step: float):
        """Yield 1, 2, ... every ``step`` seconds (no burst after a slow call), bounded."""
        deadline = time.monotonic() + self.h.max_seconds
        next_at = time.monotonic()
        for i in range(1, self.h.max_calls + 1):
            if self.stop_event.is_set() or time.monotonic() >= deadline:
                return
            yield i
            next_at = max(next_at + step, time.monotonic())
            self.stop_event.wait(next_at - time.monotonic())

    def loop(self) -> None:
        for i in self.steps(self.h.interval):
            self.call(i)

    def call(self, i: int) -> None:
        raise NotImplementedError

    def _readyz(self, conn: http.client.HTTPSConnection, path: str = "/readyz") -> None:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read().decode(errors="replace").strip()
        if resp.status == 200:
            self.stats.record(True)
        else:
            self.stats.record(False, f"HTTP {resp.status}: {body[:160]}")


class NewConnClient(_Client):
    kind = "new_conn"

    def setup(self) -> None:
        self.ctx = self.h.ssl_context()

    def call(self, i: int) -> None:
        conn = http.client.HTTPSConnection(self.h.host, self.h.port, timeout=self.h.call_timeout, context=self.ctx)
        try:
            self._readyz(conn)
        except (OSError, http.client.HTTPException) as e:
            self.stats.record(False, _error_text(e))
        finally:
            conn.close()


class NaiveKeepaliveClient(_Client):
    """One HTTPSConnection reused blindly; after an error it is closed, and reconnects on the next call."""

    kind = "naive_keepalive"

    def setup(self) -> None:
        self.conn = http.client.HTTPSConnection(self.h.host, self.h.port, timeout=self.h.call_timeout,
                                                context=self.h.ssl_context())

    def teardown(self) -> None:
        self.conn.close()

    def call(self, i: int) -> None:
        try:
            self._readyz(self.conn, self.h.read_path)
        except (OSError, http.client.HTTPException) as e:
            self.stats.record(False, _error_text(e))
            self.conn.close()


class HttpxH2Client(_Client):
    kind = "httpx_h2"

    def setup(self) -> None:
        import httpx

        self.protos: set[str] = set()
        self.client = httpx.Client(http2=True, verify=self.h.ssl_context(), timeout=self.h.call_timeout,
                                   trust_env=False, base_url=self.h.base_url)

    def teardown(self) -> None:
        self.client.close()
        self.stats.extra["proto"] = sorted(self.protos)

    def call(self, i: int) -> None:
        import httpx

        try:
            resp = self.client.get(self.h.read_path)
        except httpx.HTTPError as e:
            self.stats.record(False, _error_text(e))
            return
        self.protos.add(resp.http_version)
        if resp.status_code == 200:
            self.stats.record(True)
        else:
            self.stats.record(False, f"HTTP {resp.status_code}: {resp.text.strip()[:160]}")


class _Writer:
    """Bookkeeping of a client that creates ConfigMaps: which succeeded, which failed ambiguously."""

    def init_writes(self) -> None:
        self.succeeded: set[str] = set()
        self.ambiguous: set[str] = set()
        self.writes = self.writes_failed = 0

    def wrote(self, name: str, ok: bool, error: str | None) -> None:
        self.writes += 1
        if ok:
            self.succeeded.add(name)
        else:
            self.writes_failed += 1
            if ambiguous_write(error or ""):
                self.ambiguous.add(name)

    def write_figures(self) -> dict:
        return {"writes": self.writes, "writes_failed": self.writes_failed}


class PythonClient(_Client, _Writer):
    """The official client (kubernetes.client) with its defaults: urllib3's kept HTTP/1.1 connections."""

    kind = "python_client"

    def setup(self) -> None:
        from kubernetes import client

        self.init_writes()
        self.client = client
        self.api_client = self.h.api_client()
        self.api = client.CoreV1Api(self.api_client)

    def teardown(self) -> None:
        self.stats.extra.update(self.write_figures())
        self.api_client.close()

    def call(self, i: int) -> None:
        write = self.h.write_every and i % self.h.write_every == 0
        name = f"hkp-py-{self.h.run}-{i}"
        try:
            if write:
                body = self.client.V1ConfigMap(
                    metadata=self.client.V1ObjectMeta(name=name, labels={LABEL_KEY: self.h.run}), data={"n": str(i)})
                self.api.create_namespaced_config_map(self.h.namespace, body, _request_timeout=self.h.call_timeout)
            else:
                self.api.list_namespaced_config_map(self.h.namespace, limit=1, _request_timeout=self.h.call_timeout)
        except Exception as e:  # ApiException (a status) or urllib3's errors
            error = _error_text(e)
            self.stats.record(False, f"{'write' if write else 'read'} {error}")
            if write:
                self.wrote(name, False, error)
            return
        self.stats.record(True)
        if write:
            self.wrote(name, True, None)


class GoH2Client(_Client, _Writer):
    """``lab/h2client`` as a subprocess; its JSON lines are read as they come."""

    kind = "go_h2"

    def __init__(self, harness: "ClientHarness", binary: Path):
        super().__init__(harness)
        self.binary = binary
        self.init_writes()
        self.protos: set[str] = set()
        self.summary: dict = {}
        self.proc: subprocess.Popen | None = None
        self.stderr = tempfile.TemporaryFile()

    def start(self) -> None:
        h = self.h
        args = [str(self.binary), "-server", h.base_url, "-ca", str(h.ca_file), "-cert", str(h.cert_file),
                "-key", str(h.key_file), "-namespace", h.namespace, "-prefix", f"hkp-go-{h.run}",
                "-label", f"{LABEL_KEY}={h.run}", "-interval", f"{int(h.interval * 1000)}ms",
                "-write-every", str(h.write_every), "-duration", f"{int(h.max_seconds)}s",
                "-max-calls", str(h.max_calls), "-timeout", f"{int(h.call_timeout * 1000)}ms",
                f"-verify-hostname={'true' if h.check_hostname else 'false'}"]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
                                     text=True, bufsize=1)
        super().start()

    def stop(self) -> None:
        super().stop()
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.send_signal(signal.SIGTERM)

    def join(self, timeout: float) -> None:
        if self.proc:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                self.stats.died = f"did not exit {timeout:.0f}s after SIGTERM; killed"
        super().join(timeout)

    def loop(self) -> None:
        assert self.proc and self.proc.stdout
        for line in self.proc.stdout:  # ends when the process exits (it stops by itself, bounded)
            rec = parse_go_line(line)
            if rec is None:
                continue
            if "summary" in rec:
                self.summary = rec["summary"]
                continue
            ok, error = bool(rec.get("ok")), rec.get("err") or ""
            self.stats.record(ok, None if ok else f"{rec.get('op')} {error}")
            if rec.get("proto"):
                self.protos.add(rec["proto"])
            if rec.get("op") == "write" and rec.get("name"):
                self.wrote(rec["name"], ok, error)
        code = self.proc.wait(10)
        if code != 0:
            self.stderr.seek(0)
            tail = self.stderr.read().decode(errors="replace").strip()[-300:]
            self.stats.died = f"exit {code}: {tail}"
        elif not self.stop_event.is_set() and self.summary.get("reason") not in ("duration", "max-calls"):
            self.stats.died = f"exited by itself: {self.summary}"

    def teardown(self) -> None:
        self.stats.extra.update(self.write_figures())
        self.stats.extra["proto"] = sorted(self.protos)
        if "conns" in self.summary:
            self.stats.extra["conns"] = self.summary["conns"]
        if "cpu_s" in self.summary:  # the Go process's CPU time (this reader thread's is negligible)
            self.stats.extra["go_cpu_s"] = round(self.summary["cpu_s"], 2)
        if self.proc and self.proc.stdin:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        self.stderr.close()


class WatchClient(_Client):
    """A reflector on this run's ConfigMaps, through the official client's urllib3 pool.

    List; watch from the list's resourceVersion; when the stream ends (the server's timeout, a
    closed connection, a read timeout), watch again from the last resourceVersion seen; relist on
    410 Gone. ``calls`` are its list and watch requests, ``events`` what the streams delivered.
    """

    kind = "watch"
    READ_TIMEOUT = 30.0  # a stream with nothing for this long is re-opened
    BACKOFF = 0.2

    def __init__(self, harness: "ClientHarness"):
        super().__init__(harness)
        self.seen: set[str] = set()
        self.events = self.relists = self.reconnects = self.stream_errors = 0
        self.response = None
        self.rv: str | None = None
        self.lock = threading.Lock()

    def setup(self) -> None:
        from kubernetes import client

        self.api_client = self.h.api_client()
        self.api = client.CoreV1Api(self.api_client)

    def teardown(self) -> None:
        self.api_client.close()
        self.stats.extra.update({"events": self.events, "relists": self.relists, "reconnects": self.reconnects,
                                 "stream_errors": self.stream_errors})

    def stop(self) -> None:
        super().stop()
        with self.lock:
            response = self.response
        if response is not None:  # unblock a read waiting on the stream
            with contextlib.suppress(Exception):
                (getattr(response, "shutdown", None) or response.close)()

    @property
    def ready(self) -> bool:
        return self.stats.ok >= 2  # the list and a watch accepted

    def _list(self) -> bool:
        try:
            resp = self.api.list_namespaced_config_map(
                self.h.namespace, label_selector=self.h.selector, _preload_content=False,
                _request_timeout=self.h.call_timeout)
            doc = json.loads(resp.data)
        except Exception as e:
            self.stats.record(False, f"list {_error_text(e)}")
            return False
        self.stats.record(True)
        self.seen.update(item["metadata"]["name"] for item in doc.get("items", []))
        self.rv = doc["metadata"]["resourceVersion"]
        return True

    def loop(self) -> None:
        deadline = time.monotonic() + self.h.max_seconds
        watches = 0
        need_list = True
        while not self.stop_event.is_set() and time.monotonic() < deadline and watches < self.h.max_calls:
            if need_list:
                if not self._list():
                    self.stop_event.wait(self.BACKOFF)
                    continue
                need_list = False
            if watches:
                self.reconnects += 1
            watches += 1
            outcome = self._watch_once()
            if outcome == "gone":
                self.relists += 1
                need_list = True
            elif outcome == "failed":
                self.stop_event.wait(self.BACKOFF)

    def _watch_once(self) -> str:
        """One watch request and its stream: 'ended', 'gone' (410) or 'failed' (the request failed)."""
        try:
            response = self.api.list_namespaced_config_map(
                self.h.namespace, label_selector=self.h.selector, watch=True, resource_version=self.rv,
                allow_watch_bookmarks=True, timeout_seconds=random.randint(60, 120), _preload_content=False,
                _request_timeout=(self.h.call_timeout, self.READ_TIMEOUT))
        except Exception as e:
            if getattr(e, "status", None) == 410:
                self.stats.record(True)
                return "gone"
            self.stats.record(False, f"watch {_error_text(e)}")
            return "failed"
        self.stats.record(True)
        with self.lock:
            self.response = response
        if self.stop_event.is_set():
            response.close()
            return "ended"
        try:
            return self._read_stream(response)
        except Exception as e:  # the stream broke: re-watch from the last resourceVersion
            if not self.stop_event.is_set():
                self.stream_errors += 1
                self.stats.extra.setdefault("stream_error_texts", [])
                if len(self.stats.extra["stream_error_texts"]) < MAX_ERRORS:
                    self.stats.extra["stream_error_texts"].append(
                        f"+{time.monotonic() - self.stats.started:.1f}s {_error_text(e)}"[:240])
            return "ended"
        finally:
            with self.lock:
                self.response = None
            with contextlib.suppress(Exception):
                response.close()

    def _read_stream(self, response) -> str:
        pending = b""
        for chunk in response.stream(amt=None, decode_content=False):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip() and self._event(json.loads(line)) == "gone":
                    return "gone"
            if self.stop_event.is_set():
                break
        return "ended"

    def _event(self, event: dict) -> str | None:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                return "gone"
            self.stats.record(False, f"watch ERROR event {obj.get('code')}: {obj.get('message', '')[:160]}")
            return None
        meta = obj.get("metadata") or {}
        if meta.get("resourceVersion"):
            self.rv = meta["resourceVersion"]
        if kind in ("ADDED", "MODIFIED"):
            self.seen.add(meta.get("name", ""))
        if kind != "BOOKMARK":
            self.events += 1
            self.stats.mark_ok()
        return None


# --- the harness ----------------------------------------------------------------------------------


class ClientHarness:
    """Every client kind through ``host:port`` around a change; see the module's docstring.

    ``__enter__`` returns once every client made one successful call (``ready_timeout``), in a few
    seconds once the Go binary is cached. ``__exit__`` stops the clients (writers first, then the
    watch once it saw what they created, or after ``drain_timeout``), deletes this run's ConfigMaps
    and keeps the report (:meth:`report`).
    """

    def __init__(self, host: str, port: int, ca_file, cert_file, key_file, namespace: str = "hakube-probe",
                 interval: float = 0.05, *, write_every: int = 3, kinds=KINDS, check_hostname: bool = True,
                 call_timeout: float = CALL_TIMEOUT, max_seconds: float = 1800.0, ready_timeout: float = 30.0,
                 drain_timeout: float = 10.0, log=_log):
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown client kinds {sorted(unknown)}; known: {KINDS}")
        self.host, self.port = host, int(port)
        self.ca_file, self.cert_file, self.key_file = Path(ca_file), Path(cert_file), Path(key_file)
        self.namespace, self.interval, self.write_every = namespace, float(interval), int(write_every)
        self.kinds = tuple(k for k in KINDS if k in kinds)
        self.check_hostname, self.call_timeout = check_hostname, float(call_timeout)
        self.max_seconds, self.ready_timeout, self.drain_timeout = float(max_seconds), ready_timeout, drain_timeout
        self.max_calls = int(self.max_seconds / max(self.interval, 0.001)) + 100
        self.log = log
        self.run = f"{time.strftime('%H%M%S')}-{secrets.token_hex(3)}"
        self.selector = f"{LABEL_KEY}={self.run}"
        self.clients: dict[str, _Client] = {}
        self.meta: dict = {"run": self.run, "namespace": namespace, "address": f"{host}:{port}"}
        self._report: dict | None = None

    # connections
    @property
    def read_path(self) -> str:
        """The naive clients' read: one ConfigMap of the probe namespace, as the real clients read."""
        return f"/api/v1/namespaces/{self.namespace}/configmaps?limit=1"

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        ctx.check_hostname = self.check_hostname  # when off, the chain is still verified
        ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        return ctx

    def api_client(self):
        """A kubernetes.client.ApiClient of its own (its own urllib3 pool), from the three files."""
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.base_url
        cfg.ssl_ca_cert, cfg.cert_file, cfg.key_file = str(self.ca_file), str(self.cert_file), str(self.key_file)
        cfg.verify_ssl = True
        if not self.check_hostname:
            cfg.assert_hostname = False
        return client.ApiClient(cfg)

    # lifecycle
    def __enter__(self) -> "ClientHarness":
        self.start()
        return self

    def __exit__(self, *exc) -> bool:
        self.stop()
        return False

    def start(self) -> None:
        started = time.monotonic()
        binary = go_binary(log=self.log) if "go_h2" in self.kinds else None
        self._ensure_namespace()
        makers = {"new_conn": NewConnClient, "go_h2": lambda h: GoH2Client(h, binary), "python_client": PythonClient,
                  "watch": WatchClient, "naive_keepalive": NaiveKeepaliveClient, "httpx_h2": HttpxH2Client}
        try:
            for kind in self.kinds:
                self.clients[kind] = makers[kind](self)
                self.clients[kind].start()
            deadline = time.monotonic() + self.ready_timeout
            while True:
                waiting = [k for k, c in self.clients.items() if not c.ready]
                dead = [k for k, c in self.clients.items() if c.stats.died or not c.thread.is_alive()]
                if not waiting:
                    break
                if dead or time.monotonic() >= deadline:
                    detail = {k: self.clients[k].stats.as_dict() for k in waiting}
                    raise HarnessError(f"clients not ready after {time.monotonic() - started:.1f}s: {waiting} "
                                       f"(dead: {dead}): {json.dumps(detail)[:2000]}")
                time.sleep(0.05)
        except BaseException:
            self.stop(cleanup=True)
            raise
        self.meta["ready_s"] = round(time.monotonic() - started, 2)
        self.log(f"{len(self.clients)} clients calling {self.base_url} (run {self.run}), "
                 f"ready after {self.meta['ready_s']}s")

    def _ensure_namespace(self) -> None:
        from kubernetes import client

        with contextlib.closing(self.api_client()) as api_client:
            api = client.CoreV1Api(api_client)
            deadline = time.monotonic() + self.ready_timeout
            while True:
                try:
                    api.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=self.namespace)),
                                         _request_timeout=self.call_timeout)
                    return
                except client.ApiException as e:
                    if e.status == 409:
                        return
                    error = e
                except Exception as e:
                    error = e
                if time.monotonic() >= deadline:
                    raise HarnessError(f"could not create namespace {self.namespace}: {_error_text(error)}")
                time.sleep(0.5)

    def stop(self, cleanup: bool = True) -> None:
        if self._report is not None or not self.clients:
            return
        end = time.monotonic()
        self.meta["stopped_at"] = time.time()
        others = [c for k, c in self.clients.items() if k != "watch"]
        for c in others:
            c.stop()
        for c in others:
            c.join(self.call_timeout + 5)
            c.stats.finish(end)
        writers = [c for c in others if isinstance(c, _Writer)]
        succeeded = set().union(*(w.succeeded for w in writers))
        ambiguous = set().union(*(w.ambiguous for w in writers))
        watch = self.clients.get("watch")
        if watch is not None:
            existing = self._existing_names() if ambiguous else set()
            expected = expected_names(succeeded, ambiguous, existing)
            deadline = time.monotonic() + self.drain_timeout
            while (watch.thread.is_alive() and time.monotonic() < deadline
                   and not expected <= watch.seen):
                time.sleep(0.05)
            watch.stop()
            watch.join(self.call_timeout + 5)
            watch.stats.finish(end)
            missed = sorted(expected - watch.seen)
            watch.stats.extra.update({"expected": len(expected), "missed": len(missed), "missed_names": missed[:10],
                                      "ambiguous_writes": len(ambiguous), "ambiguous_checked": existing is not None})
        self._report = {kind: c.stats.as_dict() for kind, c in self.clients.items()}
        self.meta["seconds"] = round(end - min(c.stats.started for c in self.clients.values()), 1)
        if cleanup:
            self.meta["cleanup"] = self._cleanup()

    def _existing_names(self) -> set[str] | None:
        """This run's ConfigMaps as the API lists them now (None when the list fails twice)."""
        from kubernetes import client

        with contextlib.closing(self.api_client()) as api_client:
            for _ in range(2):
                try:
                    resp = client.CoreV1Api(api_client).list_namespaced_config_map(
                        self.namespace, label_selector=self.selector, _preload_content=False,
                        _request_timeout=self.call_timeout)
                    return {item["metadata"]["name"] for item in json.loads(resp.data).get("items", [])}
                except Exception:
                    time.sleep(0.5)
        return None

    def _cleanup(self) -> str:
        """Delete this run's ConfigMaps (one deletecollection, bounded; best effort)."""
        from kubernetes import client

        try:
            with contextlib.closing(self.api_client()) as api_client:
                client.CoreV1Api(api_client).delete_collection_namespaced_config_map(
                    self.namespace, label_selector=self.selector, _request_timeout=30)
            return "deleted"
        except Exception as e:
            self.log(f"cleanup of {self.selector} in {self.namespace} failed: {_error_text(e)}")
            return f"failed: {_error_text(e)}"

    def writes_so_far(self) -> int:
        """Writes the writer clients made until now (while they run: to decide how long to go on)."""
        return sum(getattr(c, "writes", 0) for c in self.clients.values() if isinstance(c, _Writer))

    def report(self) -> dict:
        """{kind: figures} (JSON-able); stops the clients first if they still run."""
        self.stop()
        return json.loads(json.dumps(self._report or {}))
