"""Dev check of lab/clients.py without Docker: the real kube-apiserver on loopback (not in `make test`).

    python -m lab.local_apiserver [--seconds 30] [--restart-at 10] [--port 16443]

Starts Debian's etcd (``apt-get install etcd-server``; plain http on 127.0.0.1, a temp data dir)
and the lab's kube-apiserver (``~/.cache/hakube/kube-apiserver``) on 127.0.0.1 with a throwaway CA
and certificates made by hakube.pki in a temp dir; runs :class:`lab.clients.ClientHarness` against
it for ``--seconds``, and with ``--restart-at S`` restarts the apiserver once (SIGTERM,
``--shutdown-delay-duration=0``, then start again) S seconds in. With a single apiserver a restart
must show failed calls: that is the proof the harness can fail. Prints the table and the report
as JSON; stops both processes and removes the temp dir. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import resource
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from hakube import pki

from .clients import KINDS, ClientHarness, format_report, problems
from .config import APISERVER_BIN

LOOPBACK = "127.0.0.1"


T0 = time.monotonic()


def _log(msg: str) -> None:
    print(f"local-apiserver +{time.monotonic() - T0:.1f}s: {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def make_pki(d: Path) -> None:
    """ca.pem, apiserver.pem, admin.pem (O=system:masters), sa.pub/sa.key under ``d``."""
    ca = pki.ensure_ca(d)
    pki.ensure_cert(d, pki.CertSpec("apiserver", "kube-apiserver", server=True, sans=(LOOPBACK, "localhost")), ca)
    pki.ensure_cert(d, pki.CertSpec("admin", "admin", organizations=("system:masters",), client=True), ca)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (d / "sa.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
    (d / "sa.pub").write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                             serialization.PublicFormat.SubjectPublicKeyInfo))


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.25)


class Local:
    def __init__(self, work: Path, port: int):
        self.work, self.port = work, port
        self.pki = work / "pki"
        self.etcd_port, self.peer_port = free_port(), free_port()
        self.etcd: subprocess.Popen | None = None
        self.apiserver: subprocess.Popen | None = None
        self.starts = 0

    def start_etcd(self) -> None:
        etcd = shutil.which("etcd")
        if not etcd:
            raise SystemExit("etcd is missing: apt-get install etcd-server")
        client_url, peer_url = f"http://{LOOPBACK}:{self.etcd_port}", f"http://{LOOPBACK}:{self.peer_port}"
        self.etcd = subprocess.Popen(
            [etcd, "--name", "local", "--data-dir", str(self.work / "etcd"), "--listen-client-urls", client_url,
             "--advertise-client-urls", client_url, "--listen-peer-urls", peer_url,
             "--initial-advertise-peer-urls", peer_url, "--initial-cluster", f"local={peer_url}",
             "--listen-metrics-urls", f"http://{LOOPBACK}:{free_port()}"],
            stdout=open(self.work / "etcd.log", "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def healthy() -> bool:
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection(LOOPBACK, self.etcd_port, timeout=1)
                conn.request("GET", "/health")
                return b'"true"' in conn.getresponse().read()
            return False

        wait_until(healthy, 30, "etcd")
        _log(f"etcd on {client_url}")

    def start_apiserver(self) -> None:
        self.starts += 1
        p = self.pki
        args = [str(APISERVER_BIN), f"--etcd-servers=http://{LOOPBACK}:{self.etcd_port}",
                f"--bind-address={LOOPBACK}", f"--advertise-address={LOOPBACK}", f"--secure-port={self.port}",
                "--insecure-port=0", "--endpoint-reconciler-type=none",
                f"--tls-cert-file={p / 'apiserver.pem'}", f"--tls-private-key-file={p / 'apiserver-key.pem'}",
                f"--client-ca-file={p / 'ca.pem'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={p / 'sa.pub'}", f"--service-account-signing-key-file={p / 'sa.key'}",
                "--authorization-mode=Node,RBAC", "--anonymous-auth=false", "--service-cluster-ip-range=10.32.0.0/24",
                "--shutdown-delay-duration=0s", "--profiling=false"]
        log = open(self.work / f"apiserver-{self.starts}.log", "w")
        self.apiserver = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        started = time.monotonic()
        wait_until(self.ready, 90, "kube-apiserver /readyz")
        _log(f"kube-apiserver (start {self.starts}) ready on {LOOPBACK}:{self.port} "
             f"after {time.monotonic() - started:.1f}s")

    def ready(self) -> bool:
        if self.apiserver and self.apiserver.poll() is not None:
            raise RuntimeError(f"kube-apiserver exited {self.apiserver.returncode}; see {self.work}")
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.pem"))
        ctx.load_cert_chain(str(self.pki / "admin.pem"), str(self.pki / "admin-key.pem"))
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPSConnection(LOOPBACK, self.port, timeout=2, context=ctx)
            conn.request("GET", "/readyz")
            resp = conn.getresponse()
            return resp.status == 200 and resp.read().strip() == b"ok"
        return False

    def stop_apiserver(self) -> float:
        """SIGTERM and wait; the seconds it took to exit."""
        started = time.monotonic()
        if self.apiserver and self.apiserver.poll() is None:
            self.apiserver.terminate()
            try:
                self.apiserver.wait(90)
            except subprocess.TimeoutExpired:
                self.apiserver.kill()
                self.apiserver.wait(10)
        return time.monotonic() - started

    def stop_all(self) -> None:
        self.stop_apiserver()
        if self.etcd and self.etcd.poll() is None:
            self.etcd.terminate()
            try:
                self.etcd.wait(30)
            except subprocess.TimeoutExpired:
                self.etcd.kill()
                self.etcd.wait(10)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--restart-at", type=float, default=None, help="restart the apiserver once, S seconds in")
    parser.add_argument("--after", type=float, default=10, help="seconds to go on after the restarted apiserver is ready")
    parser.add_argument("--port", type=int, default=0, help="secure port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="client kinds, comma-separated (default: all)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs) afterwards")
    args = parser.parse_args(argv)
    if not APISERVER_BIN.exists():
        raise SystemExit(f"{APISERVER_BIN} is missing (built by lab/build-apiserver.sh)")

    work = Path(tempfile.mkdtemp(prefix="hakube-local-apiserver-"))
    local = Local(work, args.port or free_port())
    try:
        make_pki(local.pki)
        local.start_etcd()
        local.start_apiserver()
        events = {}
        p = local.pki
        usage = resource.getrusage(resource.RUSAGE_SELF)
        with ClientHarness(LOOPBACK, local.port, p / "ca.pem", p / "admin.pem", p / "admin-key.pem",
                           kinds=args.kinds.split(",")) as h:
            started = time.monotonic()
            end = started + args.seconds
            if args.restart_at is not None:
                time.sleep(min(args.restart_at, args.seconds))
                _log("restarting kube-apiserver (SIGTERM)")
                events["sigterm_at_s"] = round(time.monotonic() - started, 1)
                events["stop_s"] = round(local.stop_apiserver(), 1)
                _log(f"kube-apiserver exited {events['stop_s']}s after SIGTERM")
                local.start_apiserver()
                events["ready_again_at_s"] = round(time.monotonic() - started, 1)
                end = max(end, time.monotonic() + args.after)
            time.sleep(max(0.0, end - time.monotonic()))
        report = h.report()
        # CPU of this process while the harness ran: the Python clients (each one's: report[kind]["cpu_s"])
        events["python_cpu_s"] = round(sum(getattr(resource.getrusage(resource.RUSAGE_SELF), f) - getattr(usage, f)
                                           for f in ("ru_utime", "ru_stime")), 1)
        print(format_report(report))
        print(json.dumps({"meta": {**h.meta, **events}, "report": report}, indent=1))
        found = problems(report, 1)
        print("problems:" if found else "problems: none", *found, sep="\n  ")
        return 0
    finally:
        local.stop_all()
        if args.keep:
            _log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
