"""``make check``: is the cluster what the deploy left, and does it serve? Read only.

    python -m hakube.check [--json] [INVENTORY]       (make check [INVENTORY=...] [ARGS=--json])

Exit 0 healthy, 1 degraded (a warning: drift, a certificate inside its renewal window, a backend
not UP, an apiserver not active or not ready, a restart owed, ...), 2 broken (an error: no VIP
holder or more than one, the API not answering through the VIP, a certificate expired, no PKI,
invalid inventory data).

This module is the pure part: what the hosts showed (``Observed``: the deploy's own snapshot,
``hakube.facts``, and ``HostStatus``, one more read-only command) plus the desired state
(``tasks.desired_state``) in, findings, a level and the JSON document out. Nothing here touches a
host or a file. ``hakube.check_runner`` connects to the inventory's hosts through pyinfra and runs
the two read-only facts; it never runs an operation.

The JSON document (``--json``; nothing else on stdout)::

    {"status": "healthy|degraded|broken", "exit_code": 0|1|2,
     "vip": {"address": "10.213.0.100", "holders": ["vm01"]},
     "api_via_vip": {"ok": true, "detail": "ok"},
     "masters": {"vm01": {"reachable": true,
                          "apiserver": {"active": true, "version": "v1.20.2", "readyz": "ok"},
                          "haproxy": {"active": true, "backends": {"vm01": "UP", "vm02": "UP"}},
                          "keepalived": {"active": true, "state": "MASTER"},
                          "holds_vip": true,
                          "certificates": {"apiserver": {"days_left": 364, "not_after": "...Z", "path": "..."}},
                          "drift": [{"path": "/etc/haproxy/haproxy.cfg", "differs": ["content"]}],
                          "restarts_owed": ["haproxy"]}},
     "nodes": {"n1": {"reachable": true, "drift": [], "restarts_owed": []}},
     "leaving": {"vm03": {"reachable": true, "left": true, "holds_vip": false, "remains": []}},
     "pki": {"dir": "...", "ok": true, "reissue": {"apiserver": "SANs changed: +10.0.0.5"}},
     "problems": [{"level": "warning", "host": "vm02", "message": "..."}]}

``readyz`` is ``"ok"`` when the apiserver answered 200 ok, else what it said (``"HTTP 500: ..."``,
``"no answer (curl exit 7)"``); ``null`` where it was not asked. ``drift`` is ``null`` when it could
not be computed (no PKI). A master that could not be reached has ``"reachable": false`` and nulls.
"""

from __future__ import annotations

import base64
import datetime as dt
import posixpath
from dataclasses import dataclass, field

from pyinfra.api import FactBase

from . import protocol
from .facts import FileState, HostFacts
from .paths import PATHS
from .pki import PKIError, expiry
from .probes import BACKEND
from .protocol import normal_backend_status  # noqa: F401 - a name of this module before hakube.protocol
from .roll import PENDING_DIR

WARNING, ERROR = "warning", "error"
STATUS = {0: "healthy", 1: "degraded", 2: "broken"}
CA_WARN_DAYS = 365  # a CA is replaced by hand: warn a year ahead
APISERVER_UNIT, HAPROXY_UNIT, KEEPALIVED_UNIT = "kube-apiserver.service", "haproxy.service", "keepalived.service"


# --- what a host showed -------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostStatus:
    """What ``HostStatusFact`` saw on one host (read-only commands only)."""

    version: str | None = None  # `kube-apiserver --version`, e.g. "v1.20.2"; None: no binary
    readyz_exit: int | None = None  # curl's exit code; None: not asked
    readyz_http: int | None = None
    readyz_body: tuple[str, ...] = ()
    stats_ok: bool = False  # haproxy's loopback stats listener answered
    backends: dict = field(default_factory=dict)  # server name -> status ("UP", "DOWN", "DRAIN", "MAINT", ...)
    keepalived_state: str | None = None  # last "Entering <STATE> STATE" in keepalived's journal
    addresses: tuple[str, ...] = ()  # addresses on the VRRP interface (IPv4; IPv6 but loopback and link-local)
    certs: dict = field(default_factory=dict)  # path -> PEM certificate block(s) (never a key)
    owed: tuple[str, ...] = ()  # handlers with a marker in PENDING_DIR
    complete: bool = False  # the command ran to its end


@dataclass(frozen=True)
class Observed:
    """One host as the check saw it: ``error`` says why it could not be checked."""

    facts: HostFacts | None = None
    status: HostStatus | None = None
    error: str | None = None


class HostStatusFact(FactBase):
    """Read-only state of a master: version, /readyz, haproxy's view, keepalived, the VIP, certificates.

    Certificates are sent as their ``BEGIN CERTIFICATE`` blocks only (a combined cert+key file
    gives its certificate, never its key); the admin kubeconfig gives its client-certificate-data.
    """

    def command(self, binary: str, readyz_url: str | None, ca: str, cert: str, key: str, stats_url: str | None,
                interface: str | None, cert_paths: tuple[str, ...], kubeconfig: str) -> str:
        parts = ""
        if readyz_url:  # a master
            parts += (protocol.version(binary) + protocol.readyz(readyz_url, ca, cert, key)
                      + protocol.haproxy_stats(stats_url) + protocol.keepalived_state()
                      + protocol.addresses(interface) + protocol.certificates(cert_paths)
                      + protocol.kubeconfig_cert(kubeconfig))
        return parts + protocol.pending() + protocol.end()

    @staticmethod
    def default():
        return None

    def process(self, output: list[str]) -> HostStatus:
        return parse_status(output)


def parse_status(lines: list[str]) -> HostStatus:
    """``HostStatusFact``'s output as a ``HostStatus`` (``hakube.protocol.parse``)."""
    got = protocol.parse(lines)
    last = lambda name: got[name][-1] if got[name] else None  # noqa: E731
    readyz = last("readyz") or protocol.Readyz(None, None)
    pem: dict[str, list] = {}
    for c in got["cert_line"]:
        pem.setdefault(c.path, []).append(c.text)
    certs = {path: ("\n".join(chunks) + "\n").encode() for path, chunks in pem.items()}
    if got["kubeconfig_cert"]:
        try:
            certs[PATHS.kubeconfig] = base64.b64decode(got["kubeconfig_cert"][-1], validate=True)
        except (ValueError, TypeError):
            certs[PATHS.kubeconfig] = b""
    return HostStatus(
        version=last("version"),
        readyz_exit=readyz.exit,
        readyz_http=readyz.http,
        readyz_body=tuple(got["readyz_body"]),
        stats_ok=bool(got["stats_ok"]),
        backends={b.name: b.status for b in got["backend"]},
        keepalived_state=last("keepalived_state"),
        addresses=tuple(a.address for a in got["address"]),
        certs=certs,
        owed=tuple(sorted(set(got["pending"]))),
        complete=bool(got["end"]),
    )


# --- judging one host ------------------------------------------------------------------------------


def readyz_text(s: HostStatus) -> str | None:
    """"ok", or what the apiserver (or curl) said instead; None when it was not asked."""
    if s.readyz_exit is None:
        return None
    if s.readyz_http is None:
        return "curl is missing" if s.readyz_exit == 127 else f"no answer (curl exit {s.readyz_exit})"
    if s.readyz_http == 200 and [b.strip() for b in s.readyz_body if b.strip()] == ["ok"]:
        return "ok"
    failed = [b.strip() for b in s.readyz_body if b.startswith("[-]")]
    detail = "; ".join(failed or [b.strip() for b in s.readyz_body if b.strip()][:1])
    return f"HTTP {s.readyz_http}" + (f": {detail}" if detail else "")


def file_drift(path: str, mode: str, sha256: str | None, state: FileState | None) -> list[str]:
    """What differs between a file on the host and what the deploy writes (``hakube.hostfiles.differs``):
    ``["missing"]`` or any of ``"content"``, ``"mode"``, ``"owner"`` (root:root)."""
    if state is None:
        return ["missing"]
    out = []
    if sha256 is not None and state.sha256 != sha256:
        out.append("content")
    if state.mode != int(mode, 8):
        out.append("mode")
    if state.owner != "root:root":
        out.append("owner")
    return out


def drift(want: dict, files: dict, binary: tuple[str, str | None] | None = None) -> list[dict]:
    """Every managed file (``want``: ``tasks.desired_state``) that differs on the host, by path.

    The LIVE file is compared: a staged ``<path>.new`` waiting for the apiserver's roll is not the
    file in use (the restart it waits for shows as owed). ``binary`` is ``(path, sha256)`` of the
    apiserver binary (sha256 None: unknown here, mode and owner still compared).
    """
    wanted = {f.path: f for step in want.values() for f in step.values()}
    out = []
    for path in sorted(wanted):
        f = wanted[path]
        differs = file_drift(path, f.mode, f.sha256, files.get(path))
        if differs:
            out.append({"path": path, "differs": differs})
    if binary is not None:
        path, sha = binary
        differs = file_drift(path, "0755", sha, files.get(path))
        if differs:
            out.append({"path": path, "differs": differs})
    return sorted(out, key=lambda d: d["path"])


def cert_name(path: str) -> str:
    """/etc/kubernetes/ssl/apiserver.pem -> apiserver; /etc/haproxy/pki/healthcheck.pem ->
    haproxy-healthcheck; the admin kubeconfig -> admin."""
    if path == PATHS.kubeconfig:
        return "admin"
    base = posixpath.basename(path).removesuffix(".pem")
    if posixpath.dirname(path) == PATHS.ssl_dir:
        return base
    parts = [p for p in path.split("/") if p]
    return f"{parts[1]}-{base}" if len(parts) > 2 else base


def cert_paths(want: dict) -> tuple[str, ...]:
    """Managed files that hold certificates (the PEMs the status fact reads; never a ``-key.pem``)."""
    paths = {f.path for step in want.values() for f in step.values()}
    return tuple(sorted(p for p in paths if p.endswith(".pem") and not p.endswith("-key.pem")))


def _utc(now: dt.datetime | None) -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc) if now is None else now.astimezone(dt.timezone.utc)


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Findings:
    """Problems in the order found; each {"level", "host", "message"}."""

    def __init__(self):
        self.items: list[dict] = []

    def warn(self, host: str | None, message: str) -> None:
        self.items.append({"level": WARNING, "host": host, "message": message})

    def error(self, host: str | None, message: str) -> None:
        self.items.append({"level": ERROR, "host": host, "message": message})


def certificates(name: str, status: HostStatus, now: dt.datetime, renewal_days: int, out: Findings) -> dict:
    """{cert name: {days_left, not_after, path}} of one host; warnings inside the windows."""
    result = {}
    for path in sorted(status.certs):
        label = cert_name(path)
        try:
            days = expiry(status.certs[path], now)
        except PKIError:
            out.warn(name, f"{path}: no readable certificate")
            continue
        result[label] = {"days_left": days.days_left, "not_after": _iso(days.not_after), "path": path}
        window = CA_WARN_DAYS if days.is_ca else renewal_days
        what = "CA certificate" if days.is_ca else "certificate"
        if days.not_after <= now:
            out.error(name, f"{what} {label} ({path}) expired on {_iso(days.not_after)}")
        elif days.days_left < window:
            out.warn(name, f"{what} {label} ({path}) expires in {days.days_left} days ({_iso(days.not_after)}); "
                           f"{'replace it' if days.is_ca else 'the deploy renews it'} within {window} days")
    return dict(sorted(result.items()))


def _unit(facts: HostFacts, unit: str) -> str:
    return facts.unit_state(unit)[0]


def _owed(facts: HostFacts | None, status: HostStatus | None) -> list[str]:
    owed = set(status.owed if status else ())
    if facts is not None:
        owed |= facts.pending | {posixpath.basename(p) for p in facts.files if posixpath.dirname(p) == PENDING_DIR}
    return sorted(owed)


def judge_master(cfg, want: dict | None, seen: Observed, *, now: dt.datetime, renewal_days: int,
                 binary_sha: str | None, out: Findings) -> dict:
    """One master's entry of the document; its problems go to ``out``."""
    name, c = cfg.short_name, cfg.cluster
    entry = {
        "reachable": False,
        "apiserver": {"active": None, "version": None, "readyz": None},
        "haproxy": {"active": None, "backends": {}},
        "keepalived": {"active": None, "state": None},
        "holds_vip": None,
        "certificates": {},
        "drift": None,
        "restarts_owed": [],
    }
    facts, status = seen.facts, seen.status
    if seen.error or facts is None or status is None or not status.complete:
        out.warn(name, f"not checked: {seen.error or 'its status could not be read'}")
        return entry
    entry["reachable"] = True

    # kube-apiserver: active, version, /readyz on this master
    state = _unit(facts, APISERVER_UNIT)
    readyz = readyz_text(status)
    entry["apiserver"] = {"active": state == "active", "version": status.version, "readyz": readyz}
    if state != "active":
        out.warn(name, f"kube-apiserver is not active ({state})")
    elif readyz != "ok":
        out.warn(name, f"kube-apiserver is active but /readyz is not ok: {readyz}")
    want_version = f"v{c.kube_version}"
    if status.version is None:
        out.warn(name, f"{PATHS.apiserver_binary} does not report a version")
    elif status.version.split("+")[0].split("-")[0] != want_version:
        out.warn(name, f"kube-apiserver is {status.version}, kube_version is {c.kube_version}")

    # haproxy's view of every apiserver
    state = _unit(facts, HAPROXY_UNIT)
    entry["haproxy"] = {"active": state == "active", "backends": dict(sorted(status.backends.items()))}
    if state != "active":
        out.warn(name, f"haproxy is not active ({state})")
    elif not status.stats_ok:
        out.warn(name, f"haproxy's stats listener (127.0.0.1:{c.haproxy_stats_port}) does not answer")
    else:
        for m in c.masters:
            st = status.backends.get(m.short_name)
            if st is None:
                out.warn(name, f"haproxy has no backend {m.short_name} in {BACKEND}")
            elif st != "UP":
                out.warn(name, f"haproxy sees backend {m.short_name} {st}")
        for extra in sorted(set(status.backends) - {m.short_name for m in c.masters}):
            out.warn(name, f"haproxy has a backend {extra} that is not a master of the inventory")

    # keepalived
    state = _unit(facts, KEEPALIVED_UNIT)
    active = state == "active"
    entry["keepalived"] = {"active": active, "state": status.keepalived_state if active else None}
    if not active:
        out.warn(name, f"keepalived is not active ({state})")
    elif status.keepalived_state == "FAULT":
        out.warn(name, "keepalived is in FAULT state (haproxy not running?): this master cannot take the VIP")
    held = [v for v in c.vips if v in status.addresses]  # a dual-stack front: both VIPs on one master
    entry["holds_vip"] = bool(held)
    if held and len(held) < len(c.vips):
        out.error(name, f"holds {', '.join(held)} but not {', '.join(v for v in c.vips if v not in held)}: the VIPs "
                        "of the front are apart")

    entry["certificates"] = certificates(name, status, now, renewal_days, out)

    if want is not None:
        entry["drift"] = drift(want, facts.files, (PATHS.apiserver_binary, binary_sha))
        for d in entry["drift"]:
            out.warn(name, f"{d['path']} differs from what the deploy writes ({', '.join(d['differs'])})")
    entry["restarts_owed"] = _owed(facts, status)
    for handler in entry["restarts_owed"]:
        out.warn(name, f"a restart/reload of {handler} is owed (marker {PENDING_DIR}/{handler})")
    return entry


def judge_leaver(cfg, seen: Observed, out: Findings) -> dict:
    """A master with ``leaving: true`` (``tasks.leave``): it has left once none of its units is
    active or enabled, it holds no VIP and none of the keys and certificates the leave removes is
    there (its snapshot asked for exactly those units and files)."""
    name = cfg.short_name
    entry = {"reachable": False, "left": None, "holds_vip": None, "remains": []}
    if seen.error or seen.facts is None:
        out.warn(name, f"not checked: {seen.error or 'its files could not be read'}")
        return entry
    facts = seen.facts
    remains = [f"{unit} {a}/{e}" for unit, (a, e) in sorted(facts.units.items()) if a == "active" or e == "enabled"]
    remains += sorted(facts.files)
    holds = seen.status is not None and any(v in seen.status.addresses for v in cfg.cluster.vips)
    entry.update(reachable=True, left=not remains and not holds, holds_vip=holds, remains=remains)
    if holds:
        remains = [f"the VIP {cfg.cluster.vip}", *remains]
    if remains:
        out.warn(name, f"leaving (leaving: true) but has not left yet: {', '.join(remains)}; run the deploy")
    return entry


def judge_node(cfg, want: dict | None, seen: Observed, out: Findings) -> dict:
    """A host outside the masters group: only /etc/kubernetes/config is managed there."""
    name = cfg.short_name
    if seen.error or seen.facts is None:
        out.warn(name, f"not checked: {seen.error or 'its files could not be read'}")
        return {"reachable": False, "drift": None, "restarts_owed": []}
    entry = {"reachable": True, "drift": None, "restarts_owed": _owed(seen.facts, seen.status)}
    if want is not None:
        entry["drift"] = drift(want, seen.facts.files)
        for d in entry["drift"]:
            out.warn(name, f"{d['path']} differs from what the deploy writes ({', '.join(d['differs'])})")
    for handler in entry["restarts_owed"]:
        out.warn(name, f"a restart/reload of {handler} is owed (marker {PENDING_DIR}/{handler})")
    return entry


# --- the whole cluster --------------------------------------------------------------------------


@dataclass(frozen=True)
class PKIView:
    """The local PKI as ``tasks.certs.load_pki`` read it (``error`` when it is missing or unreadable)."""

    dir: str
    error: str | None = None
    reissue: dict = field(default_factory=dict)  # name -> why the next deploy reissues it


def evaluate(settings: dict, observed: dict, wants: dict, *, pki: PKIView, api: tuple[bool, str],
             binary_sha: str | None = None, now: dt.datetime | None = None) -> dict:
    """The check's JSON document.

    ``settings``: {host name: Settings} (``hakube.settings.load_inventory``); ``observed``: {host
    name: Observed}; ``wants``: {host name: ``tasks.desired_state`` or None when the PKI is
    missing}; ``api``: (ok, detail) of GET /readyz through the VIP; ``binary_sha``: the sha256 the
    apiserver binary must have (None: unknown on this machine).
    """
    now = _utc(now)
    out = Findings()
    cluster = next(iter(settings.values())).cluster
    renewal_days = cluster.cert_renewal_days

    if pki.error:
        out.error(None, f"PKI: {pki.error}")
    for cert, reason in sorted(pki.reissue.items()):
        out.warn(None, f"{pki.dir}/{cert}.pem: the next deploy reissues it ({reason})")

    masters, nodes, leaving = {}, {}, {}
    for host_name, cfg in settings.items():
        seen = observed.get(host_name) or Observed(error="not connected")
        if cfg.leaving:
            leaving[cfg.short_name] = judge_leaver(cfg, seen, out)
        elif cfg.is_master:
            masters[cfg.short_name] = judge_master(cfg, wants.get(host_name), seen, now=now,
                                                   renewal_days=renewal_days, binary_sha=binary_sha, out=out)
        else:
            nodes[cfg.short_name] = judge_node(cfg, wants.get(host_name), seen, out)

    holders = sorted(n for n, e in (*masters.items(), *leaving.items()) if e["holds_vip"])
    if not holders:
        out.error(None, f"no master holds the VIP {cluster.vip}")
    elif len(holders) > 1:
        out.error(None, f"the VIP {cluster.vip} is held by {len(holders)} masters at once: {', '.join(holders)}")
    ok, detail = api
    if not ok:
        out.error(None, f"the API does not answer through the VIP ({cluster.server_url}/readyz): {detail}")

    code = 2 if any(p["level"] == ERROR for p in out.items) else 1 if out.items else 0
    return {
        "status": STATUS[code],
        "exit_code": code,
        "vip": {"address": cluster.vip, "holders": holders},
        "api_via_vip": {"ok": ok, "detail": detail},
        "masters": masters,
        "nodes": nodes,
        "leaving": leaving,
        "pki": {"dir": pki.dir, "ok": pki.error is None, "reissue": dict(sorted(pki.reissue.items()))},
        "problems": out.items,
    }


def failure(message: str) -> dict:
    """The document when nothing could be checked (invalid inventory data, no hosts): broken."""
    return {
        "status": STATUS[2], "exit_code": 2, "vip": {"address": None, "holders": []},
        "api_via_vip": {"ok": False, "detail": "not checked"}, "masters": {}, "nodes": {},
        "pki": {"dir": None, "ok": False, "reissue": {}},
        "problems": [{"level": ERROR, "host": None, "message": message}],
    }


# --- the human view --------------------------------------------------------------------------------


def _master_line(name: str, e: dict) -> str:
    if not e["reachable"]:
        return f"{name}: not reachable"
    a, h, k = e["apiserver"], e["haproxy"], e["keepalived"]
    parts = [
        f"kube-apiserver {'active' if a['active'] else 'NOT active'} {a['version'] or '?'}, /readyz {a['readyz']}",
        "haproxy " + (", ".join(f"{n} {s}" for n, s in h["backends"].items()) if h["active"] else "NOT active"),
        f"keepalived {k['state'] or '?'}" if k["active"] else "keepalived NOT active",
        "holds the VIP" if e["holds_vip"] else "no VIP",
    ]
    if e["certificates"]:
        label, c = min(e["certificates"].items(), key=lambda kv: kv[1]["days_left"])
        parts.append(f"certificates: fewest days left {c['days_left']} ({label})")
    parts.append("drift not checked" if e["drift"] is None else f"{len(e['drift'])} file(s) drifted" if e["drift"]
                 else "no drift")
    parts.append(f"owed: {', '.join(e['restarts_owed'])}" if e["restarts_owed"] else "nothing owed")
    return f"{name}: " + "; ".join(parts)


def render_text(doc: dict) -> str:
    """One line per host, then one line per finding under it; the cluster's; the summary word last."""
    lines = []
    by_host: dict = {}
    for p in doc["problems"]:
        by_host.setdefault(p["host"], []).append(p)

    def findings(host):
        return [f"  {p['level']}: {p['host'] or 'cluster'}: {p['message']}" for p in by_host.get(host, [])]

    for name, e in doc["masters"].items():
        lines += [_master_line(name, e), *findings(name)]
    for name, e in doc.get("nodes", {}).items():
        state = "not reachable" if not e["reachable"] else "drift not checked" if e["drift"] is None else (
            f"{len(e['drift'])} file(s) drifted" if e["drift"] else "no drift")
        lines += [f"{name}: {state}", *findings(name)]
    for name, e in doc.get("leaving", {}).items():
        state = "not reachable" if not e["reachable"] else "left" if e["left"] else "leaving, not left yet"
        lines += [f"{name}: {state}", *findings(name)]
    vip, api = doc["vip"], doc["api_via_vip"]
    if vip["address"]:
        lines.append(f"cluster: VIP {vip['address']} held by {', '.join(vip['holders']) or 'nobody'}; "
                     f"API through the VIP: {'ok' if api['ok'] else api['detail']}")
    else:
        lines.append("cluster: not checked")
    lines += findings(None)
    lines.append(doc["status"])
    return "\n".join(lines) + "\n"
