"""Driving the lab from the tests and the bench: one user at a time, the real pyinfra CLI's JSON,
clients that call the API through the VIP. Only the lab's addresses are ever contacted."""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import ssl
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import CACHE_DIR, PKI_DIR, VIP

LOCK_FILE = CACHE_DIR / "lab-session.lock"


class HarnessError(RuntimeError):
    pass


@contextlib.contextmanager
def session_lock(log=lambda msg: print(msg, file=sys.stderr, flush=True)):
    """Exclusive flock for a whole test session or bench: they pause, stop and redeploy the lab."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOCK_FILE, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"the lab is in use (lock {LOCK_FILE}); waiting for it")
            started = time.monotonic()
            fcntl.flock(lock, fcntl.LOCK_EX)
            log(f"got the lab-session lock after {time.monotonic() - started:.0f}s")
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass
class Run:
    """One pyinfra CLI run with ``--json``: what it changed, failed or (with ``--dry``) planned."""

    args: list
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    data: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, args, returncode: int, stdout: str, stderr: str, seconds: float) -> "Run":
        run = cls(list(args), returncode, stdout, stderr, seconds)
        with contextlib.suppress(ValueError):
            run.data = json.loads(stdout) if stdout.strip() else {}
        return run

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def _ops(self) -> list[dict]:
        return (self.data.get("results") or {}).get("operations", [])

    def changed(self) -> dict[str, list[str]]:
        """Executed run: operation name -> hosts where it changed something."""
        return {op["name"]: op["success"] for op in self._ops() if op["success"]}

    def errors(self) -> dict[str, list[str]]:
        return {op["name"]: op["error"] for op in self._ops() if op["error"]}

    def planned_changes(self) -> dict[str, list[str]]:
        """--dry run: operation name -> hosts it would (or might) change."""
        return {
            op["name"]: sorted(set(op["hosts_with_change"]) | set(op["hosts_with_conditional_change"]))
            for op in self.data.get("plan", [])
            if op["hosts_with_change"] or op["hosts_with_conditional_change"]
        }

    def describe(self) -> str:
        return (f"exit {self.returncode} after {self.seconds:.1f}s: {' '.join(map(str, self.args))}\n"
                f"{self.stderr[-6000:]}")

    def check(self, what: str) -> "Run":
        if self.returncode != 0 or self.errors():
            raise HarnessError(f"{what} failed (errors {self.errors()}); {self.describe()}")
        return self


def client_context(cert: str = "admin", ca: Path | None = None) -> ssl.SSLContext:
    """TLS context trusting the cluster CA, presenting ``PKI_DIR/<cert>.pem`` (none if ``cert`` is '')."""
    ctx = ssl.create_default_context(cafile=str(ca or PKI_DIR / "ca.pem"))
    ctx.check_hostname = False  # the VIP is an IP SAN; the chain is still verified
    if cert:
        ctx.load_cert_chain(str(PKI_DIR / f"{cert}.pem"), str(PKI_DIR / f"{cert}-key.pem"))
    return ctx


def api_get(path: str = "/readyz", *, ctx: ssl.SSLContext | None = None, host: str = VIP, port: int = 6443,
            timeout: float = 1.0) -> tuple[int, str]:
    """One GET on a fresh connection; (status, body), or (0, error) when the connection failed."""
    conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx or client_context())
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    except (OSError, http.client.HTTPException) as e:
        return 0, f"{type(e).__name__}: {e}"
    finally:
        conn.close()


def api_ok(ctx: ssl.SSLContext | None = None, timeout: float = 1.0) -> bool:
    status, body = api_get(ctx=ctx, timeout=timeout)
    return status == 200 and body.strip() == "ok"


def wait_for(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll ``predicate`` until it returns something true; HarnessError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise HarnessError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
