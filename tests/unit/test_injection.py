"""Injection attempts: no data value can add an apiserver flag, a config line or a shell command.

systemd splits the unquoted ``$KUBE_*`` variables of /etc/kubernetes/{config,apiserver} on
whitespace into argv, keepalived and haproxy read their configs line by line, and some values end
up in shell commands. Every attempt below (``PAYLOADS``) is appended to a valid value of every data
key that reaches a rendered file, a flag or a command (``SITES``). For each, either

* ``load_inventory`` refuses it with a problem naming that host and key, or
* the value is accepted and the payload appears in no file of the full plan of every host
  (rendered with a real PKI in a tmp pki_dir, as in test_render.py), nor in the shell commands the
  deploy builds from data (download and checksum of the binary, the rolling restart).

Raw passthrough lines (``keepalived_extra_global_defs``, ``haproxy_extra_defaults``) and audit
policy rules are operator data rendered on purpose; for them "accepted" means contained: the
payload stays inside its own line of its own section (keepalived: no brace on that line), or
inside its JSON string, and every other byte of every file is what the same value without the
payload renders.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import pytest

from hakube import hostfiles, flags, pki, render, settings
from hakube.paths import PATHS
from hakube.tasks import desired_state
from hakube.tasks.certs import ensure_pki
from hakube.settings import AUTH_PASS_ENV, KEY_BY_NAME, InventoryError, load_inventory

from hakube.tasks.apiserver import _roll_script

from .conftest import ENV, SHA, VIP, Inv, make_inventory

FLAG = "--anonymous-auth=true"

#: id -> payload appended to a valid value.
PAYLOADS: dict[str, str] = {
    "space-flag": f" {FLAG}",
    "tab-flag": f"\t{FLAG}",
    "newline-flag": f"\n{FLAG}",
    "newline-env-line": f'\nKUBE_EVIL="{FLAG}"',
    "cr-flag": f"\r{FLAG}",
    "crlf-flag": f"\r\n{FLAG}",
    "vertical-tab-flag": f"\v{FLAG}",
    "form-feed-flag": f"\f{FLAG}",
    "nul-flag": f"\x00{FLAG}",
    "escape-sequence": "\x1b[2J",
    "nel-flag": f"\x85{FLAG}",
    "line-separator-flag": f"\u2028{FLAG}",
    "paragraph-separator-flag": f"\u2029{FLAG}",
    "zero-width-space-flag": f"\u200b{FLAG}",
    "backslash-newline-flag": f"\\\n{FLAG}",
    "semicolon": ";reboot",
    "command-substitution": "$(reboot)",
    "variable": "${PATH}",
    "backtick": "`reboot`",
    "single-quotes": f"'{FLAG}'",
    "double-quotes": f'"{FLAG}"',
    "and-and": "&&reboot",
    "pipe": "|reboot",
    "redirect": ">/etc/passwd",
    "process-substitution": "<(reboot)",
    "close-brace": "}evil",
    "keepalived-new-block": "} vrrp_script evil {",
    "keepalived-newline-block": "\n}\nvrrp_script evil {",
    "haproxy-new-section": "\nlisten evil",
}


@dataclass(frozen=True)
class Site:
    """Where a payload goes: ``key`` (reported on ``host``), set to ``make(payload)``."""

    key: str
    make: Callable[[str], object]
    host: str = "m1"
    per_host: bool = False
    env: bool = False  # the value is the VRRP password from the environment
    contained: Callable[[dict, dict, str], str | None] | None = None  # raw data: containment check


def _raw_line(value: str, structural: str = "") -> Callable[[dict, dict, str], str | None]:
    """The payload stays on the one raw line: removing it gives the reference rendering."""

    def check(files: dict, reference: dict, payload: str) -> str | None:
        if not payload.isprintable():  # a newline, CR, NUL, U+2028, ...: no longer one line
            return "accepted a control character or line break in a raw line"
        if any(c in payload for c in structural):
            return f"accepted {structural!r} in a raw line"
        for path, text in files.items():
            if text != reference[path] and text.replace(value + payload, value) != reference[path]:
                return f"{path} changed beyond the raw line"
        return None

    return check


def _audit_rules(make: Callable[[str], list]) -> Callable[[dict, dict, str], str | None]:
    """Rules are rendered as JSON: the file must parse back to exactly the configured rules."""

    def check(files: dict, reference: dict, payload: str) -> str | None:
        rules = make(payload)
        for path, text in files.items():
            if path.endswith(PATHS.audit_policy):
                lines = [line for line in text.splitlines() if line.startswith("- ")]
                if [json.loads(line[2:]) for line in lines] != rules:
                    return f"{path} does not parse back to the configured rules"
            elif text != reference[path]:
                return f"{path} changed"
        return None

    return check


def _sites() -> dict[str, Site]:
    s: dict[str, Site] = {}

    def add(id_: str, key: str, make, **kw) -> None:
        s[id_] = Site(key, make, **kw)

    # Per master.
    add("bind_address", "bind_address", lambda p: "10.9.0.11" + p, per_host=True)
    add("vrrp_priority", "vrrp_priority", lambda p: "120" + p, per_host=True)
    add("vrrp_interface", "vrrp_interface", lambda p: "eth0" + p, per_host=True)
    add("leaving", "leaving", lambda p: "false" + p, per_host=True)
    add("metrics_address", "metrics_address", lambda p: "10.9.0.11" + p, per_host=True)
    # Cluster-wide.
    add("vip", "vip", lambda p: VIP + p)
    add("vip6", "vip6", lambda p: "fd00:9::100" + p)
    add("vip6(scoped)", "vip6", lambda p: "fd00:9::100%eth0" + p)
    for key, default in (
        ("vip_prefix", 24), ("vip6_prefix", 64), ("virtual_router_id", 80), ("vrrp_advert_int", 1), ("lb_port", 6443),
        ("haproxy_agent_port", 6444), ("haproxy_check_interval_ms", 1000), ("haproxy_check_fall", 2),
        ("haproxy_check_rise", 2), ("apiserver_port", 6443), ("log_level", 0), ("shutdown_delay_seconds", 5),
        ("audit_log_maxage", 30), ("audit_log_maxbackup", 3), ("audit_log_maxsize", 100), ("allow_privileged", "true"),
        ("vrrp_unicast", "true"), ("vrrp_version", 2),
        ("haproxy_stats_port", 8404), ("apiserver_ready_timeout", 120),
        ("cert_validity_days", 365), ("cert_renewal_days", 30), ("ca_validity_days", 3650),
        ("metrics", "true"), ("haproxy_metrics_port", 8405), ("node_exporter_port", 9100),
    ):
        add(key, key, lambda p, d=default: f"{d}{p}")
    add("vrrp_auth_pass(env)", "vrrp_auth_pass_file", lambda p: "ab" + p, env=True)
    line = "max_auto_priority 50"
    add("keepalived_extra_global_defs", "keepalived_extra_global_defs", lambda p: [line + p],
        contained=_raw_line(line, structural="{}"))
    add("haproxy_timeout", "haproxy_timeout", lambda p: "1h" + p)
    hline = "option log-health-checks"
    add("haproxy_extra_defaults", "haproxy_extra_defaults", lambda p: [hline + p], contained=_raw_line(hline))
    add("kube_version", "kube_version", lambda p: "1.36.0" + p)
    url = KEY_BY_NAME["kube_apiserver_url"].default
    add("kube_apiserver_url", "kube_apiserver_url", lambda p: url + p)
    add("kube_apiserver_url(host)", "kube_apiserver_url", lambda p: url.replace("dl.k8s.io", "dl.k8s.io" + p))
    add("kube_apiserver_sha256", "kube_apiserver_sha256", lambda p: SHA + p)
    add("replace_ca_sha256", "replace_ca_sha256", lambda p: SHA + p)
    add("replace_sa_sha256", "replace_sa_sha256", lambda p: SHA + p)
    add("etcd_servers", "etcd_servers", lambda p: ["https://10.9.0.20:2379" + p])
    add("etcd_servers(host)", "etcd_servers", lambda p: [f"https://10.9.0.20{p}:2379"])
    add("etcd_servers(ipv6 host)", "etcd_servers", lambda p: [f"https://[fd00::20{p}]:2379"])
    add("service_cluster_ip_range", "service_cluster_ip_range", lambda p: "10.254.0.0/16" + p)
    add("service_node_port_range", "service_node_port_range", lambda p: "30000-32767" + p)
    add("cluster_domain", "cluster_domain", lambda p: "cluster.local" + p)
    add("admission_plugins", "admission_plugins", lambda p: ["NamespaceLifecycle", "NodeRestriction" + p])
    add("authorization_mode", "authorization_mode", lambda p: "Node,RBAC" + p)
    add("event_ttl", "event_ttl", lambda p: "1h" + p)
    issuer = KEY_BY_NAME["service_account_issuer"].default
    add("service_account_issuer", "service_account_issuer", lambda p: issuer + p)
    add("audit_log_path", "audit_log_path", lambda p: "/var/log/k8s-audit.log" + p)
    add("audit_policy_rules(level)", "audit_policy_rules", lambda p: [{"level": "Metadata" + p}])
    users = lambda p: [{"level": "None", "users": ["admin" + p]}, {"level": "Metadata"}]  # noqa: E731
    add("audit_policy_rules(users)", "audit_policy_rules", users, contained=_audit_rules(users))
    add("apiserver_extra_flags(value)", "apiserver_extra_flags", lambda p: {"goaway-chance": "0.01" + p})
    add("apiserver_extra_flags(name)", "apiserver_extra_flags", lambda p: {"goaway-chance" + p: "0.01"})
    add("cert_subject", "cert_subject", lambda p: {"C": "CN", "O": "k8s" + p})
    add("cert_extra_sans(dns)", "cert_extra_sans", lambda p: ["api.example.com" + p])
    add("cert_extra_sans(ip)", "cert_extra_sans", lambda p: ["10.9.0.50" + p])
    add("cluster_name", "cluster_name", lambda p: "kubernetes" + p)
    add("secrets_encryption", "secrets_encryption", lambda p: "true" + p)
    add("secrets_encryption_provider", "secrets_encryption_provider", lambda p: "secretbox" + p)
    add("secrets_encryption_keys", "secrets_encryption_keys", lambda p: ["key1" + p])
    add("secrets_encryption_keys(second)", "secrets_encryption_keys", lambda p: ["key1", "key2" + p])
    return s


SITES = _sites()

#: Keys that reach no rendered file, flag or command: local paths on the deploy machine (their
#: control-character checks are in test_settings.py).
NOT_RENDERED = {"pki_dir", "artifacts_dir", "ca_cert_file", "ca_key_file", "kube_apiserver_binary", "sa_key_file",
                "etcd_ca_cert_file", "etcd_ca_key_file", "etcd_client_cert_file", "etcd_client_key_file",
                "kubelet_certificate_authority_file"}  # its content (checked: CA certificates) goes to a fixed path


def test_every_key_is_attacked_or_declared_local() -> None:
    attacked = {site.key for site in SITES.values()}
    assert attacked | NOT_RENDERED == set(KEY_BY_NAME), set(KEY_BY_NAME) ^ (attacked | NOT_RENDERED)
    assert not attacked & NOT_RENDERED
    assert all(site.per_host == KEY_BY_NAME[site.key].per_host for site in SITES.values())
    assert len(PAYLOADS) >= 20


# ------------------------------------------------------------------ the attempt


def _inventory(base: Path, pki_dir: Path, site: Site, payload: str) -> tuple[Inv, dict]:
    inv = make_inventory(base)
    inv.cluster["pki_dir"] = str(pki_dir)  # one PKI for every attempt: only a changed subject reissues
    env = dict(ENV)
    value = site.make(payload)
    if site.env:
        env[AUTH_PASS_ENV] = value
    elif site.per_host:
        inv.master(site.host)[site.key] = value
    else:
        inv.cluster[site.key] = value
    return inv, env


def _render_all(s: dict) -> dict[str, str]:
    """Every file of every host's full plan, keyed ``host:path``, and each master's commands."""
    p = ensure_pki(s["m1"])
    out = {
        f"{host}:{f.path}": f.content.decode("utf-8", errors="replace")
        for host, cfg in s.items()
        for step in desired_state(cfg, p if cfg.is_master else None).values()
        for f in step.values()
    }
    for host, cfg in s.items():
        if cfg.is_master:
            c = cfg.cluster
            install = hostfiles.binary.__wrapped__(  # the operation's command generator, without pyinfra
                dest=PATHS.apiserver_binary, facts=SimpleNamespace(files={}), url=c.download_url("amd64"), sha256=c.kube_apiserver_sha256
            )
            out[f"{host}:$ install kube-apiserver"] = "\n".join(install)
            out[f"{host}:$ restart kube-apiserver"] = _roll_script(cfg, {PATHS.apiserver_binary: c.kube_apiserver_sha256 or "0" * 64})
    return out


def _leaks(files: dict[str, str], payload: str) -> list[str]:
    # The payload itself, and its printable core (what a lost tab or newline would leave behind).
    core = "".join(c for c in payload if c.isprintable()).strip()
    needles = {payload} | ({core} if len(core) >= 3 else set())
    return [f"{path} holds {needle!r}" for path, text in files.items() for needle in needles if needle in text]


def attempt(site_id: str, payload_id: str, base: Path, pki_dir: Path) -> str | None:
    """None when the attempt was refused naming the key, or accepted without effect; else why not."""
    site, payload = SITES[site_id], PAYLOADS[payload_id]
    inv, env = _inventory(base, pki_dir, site, payload)
    try:
        s = load_inventory(inv.hosts(), env)
    except InventoryError as e:
        prefix = f"{site.host}: {site.key}: "
        if not any(p.startswith(prefix) for p in e.problems):
            return f"refused, but no problem starts with {prefix!r}: {e.problems}"
        if not all(p.isprintable() for p in e.problems):
            return f"a problem line carries a control character: {e.problems}"
        if env.get(AUTH_PASS_ENV) and any(env[AUTH_PASS_ENV] in p for p in e.problems):
            return "a problem line echoes the VRRP password"
        return None
    files = _render_all(s)
    if site.contained is None:
        leaks = _leaks(files, payload)
        return f"accepted and rendered: {leaks}" if leaks else None
    ref_inv, ref_env = _inventory(base, pki_dir, site, "")
    reference = _render_all(load_inventory(ref_inv.hosts(), ref_env))
    why = site.contained(files, reference, payload)
    return f"accepted and not contained: {why}" if why else None


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("inject")
    # Each accepted cert_subject attempt reissues the leaf certificates with fresh keys; their size
    # changes nothing checked here, so this module uses small ones to stay fast.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pki, "RSA_KEY_SIZE", 1024)
        yield base, base / "pki"


@pytest.mark.parametrize("site_id", list(SITES))
def test_injection_refused_or_harmless(dirs, site_id: str) -> None:
    base, pki_dir = dirs
    failures = {pid: why for pid in PAYLOADS if (why := attempt(site_id, pid, base, pki_dir))}
    assert not failures, "\n".join(f"{site_id} + {pid}: {why}" for pid, why in failures.items())


def test_every_payload_is_refused_in_a_flag_value(dirs) -> None:
    """The keys that become apiserver flags refuse every payload outright (nothing is 'harmless')."""
    base, pki_dir = dirs
    for site_id in ("secrets_encryption_keys", "secrets_encryption_provider", "authorization_mode", "audit_log_path", "service_account_issuer", "apiserver_extra_flags(value)",
                    "admission_plugins", "etcd_servers", "event_ttl", "vip", "bind_address"):
        for pid, payload in PAYLOADS.items():
            inv, env = _inventory(base, pki_dir, SITES[site_id], payload)
            with pytest.raises(InventoryError):
                load_inventory(inv.hosts(), env)


# ------------------------------------------------------------------ the check itself can fail


def _old_text(v):
    """settings._text before this check existed: whitespace, tabs and shell syntax passed."""
    if not isinstance(v, str) or not v or "\n" in v or '"' in v:
        raise ValueError(f"{v!r} must be a non-empty single-line string without quotes")
    return v


@pytest.mark.parametrize("site_id", ["kube_apiserver_url", "service_account_issuer"])
def test_attempt_catches_a_url_checked_as_old_text(dirs, monkeypatch: pytest.MonkeyPatch, site_id: str) -> None:
    base, pki_dir = dirs
    monkeypatch.setitem(settings.CHECKS, SITES[site_id].key, _old_text)
    why = attempt(site_id, "command-substitution", base, pki_dir)
    assert why and why.startswith("accepted and rendered"), why


def _old_lines(v):
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) and "\n" not in x for x in v):
        raise ValueError("must be a list of single-line strings")
    return tuple(v)


@pytest.mark.parametrize("payload_id", ["space-flag", "tab-flag", "semicolon", "command-substitution"])
def test_attempt_catches_the_old_text_checker(dirs, monkeypatch: pytest.MonkeyPatch, payload_id: str) -> None:
    base, pki_dir = dirs
    monkeypatch.setitem(settings.CHECKS, "audit_log_path", _old_text)
    why = attempt("audit_log_path", payload_id, base, pki_dir)
    assert why and why.startswith("accepted and rendered") and "/etc/kubernetes/apiserver" in why, why


def test_attempt_catches_a_brace_in_a_keepalived_line(dirs, monkeypatch: pytest.MonkeyPatch) -> None:
    base, pki_dir = dirs
    monkeypatch.setitem(settings.CHECKS, "keepalived_extra_global_defs", _old_lines)
    why = attempt("keepalived_extra_global_defs", "keepalived-new-block", base, pki_dir)
    assert why and "not contained" in why, why
    assert attempt("keepalived_extra_global_defs", "semicolon", base, pki_dir) is None  # stays on its line


def test_attempt_catches_a_new_line_in_a_raw_line(dirs, monkeypatch: pytest.MonkeyPatch) -> None:
    base, pki_dir = dirs
    monkeypatch.setitem(settings.CHECKS, "haproxy_extra_defaults", lambda v: tuple(v))
    why = attempt("haproxy_extra_defaults", "haproxy-new-section", base, pki_dir)
    assert why and "not contained" in why, why


def test_attempt_catches_a_problem_not_naming_the_key(dirs, monkeypatch: pytest.MonkeyPatch) -> None:
    base, pki_dir = dirs
    def refuse(v):
        raise ValueError("refused")

    # cluster_name lets the payload through while another key is refused: not good enough.
    monkeypatch.setitem(settings.CHECKS, "cluster_name", _old_text)
    monkeypatch.setitem(settings.CHECKS, "artifacts_dir", refuse)
    why = attempt("cluster_name", "space-flag", base, pki_dir)
    assert why and "no problem starts with 'm1: cluster_name: '" in why, why
