"""A typed, validated view of the inventory's data.

``KEYS`` documents every data key with its default (the README's table is this table).
``load_inventory`` turns every host's raw data into one frozen ``Settings`` per host, collecting
*all* problems first; each problem names the host and the key. Nothing else in the deploy reads
``host.data``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from . import flags as flagmod
from . import pki

REQUIRED = object()
AUTH_PASS_ENV = "HAKUBE_VRRP_AUTH_PASS"


@dataclass(frozen=True)
class Key:
    name: str
    default: Any
    doc: str
    per_host: bool = False


KEYS: tuple[Key, ...] = (
    # Per master.
    Key("bind_address", REQUIRED, "This master's address: apiserver bind and advertise address, haproxy backend. Not 0.0.0.0 or 127.0.0.1.", per_host=True),
    Key("vrrp_priority", REQUIRED, "keepalived priority, 1-254, unique among masters; the highest starts as VIP holder.", per_host=True),
    Key("vrrp_interface", REQUIRED, "Interface that carries VRRP and the VIP (e.g. eth0, ens160).", per_host=True),
    # The VIP and VRRP.
    Key("vip", REQUIRED, "Virtual IP that haproxy listens on and clients use."),
    Key("vip_prefix", 24, "Prefix length of the VIP's subnet; every master's bind_address must be inside it."),
    Key("virtual_router_id", 51, "VRRP virtual_router_id, 1-255, unique on the LAN."),
    Key("vrrp_advert_int", 1, "VRRP advert interval in seconds (failover takes about 3 of them)."),
    Key("vrrp_auth_pass_file", None, f"File holding the VRRP password (at most 8 characters). The environment variable {AUTH_PASS_ENV} wins over it. Required one way or the other."),
    Key("keepalived_extra_global_defs", [], "Raw lines added to keepalived's global_defs."),
    # haproxy.
    Key("lb_port", 6443, "Port haproxy listens on at the VIP."),
    Key("haproxy_agent_port", 6444, "Port of each master's haproxy agent (drains an apiserver before the deploy restarts it)."),
    Key("haproxy_check_interval_ms", 1000, "haproxy health-check interval (GET /readyz with a client certificate)."),
    Key("haproxy_check_fall", 2, "Failed checks before a backend leaves rotation."),
    Key("haproxy_check_rise", 2, "Good checks before a backend returns to rotation."),
    Key("haproxy_timeout", "1h", "Client/server/tunnel timeout: long enough for watches, logs -f and exec."),
    Key("haproxy_extra_defaults", [], "Raw lines added to haproxy's defaults section."),
    # kube-apiserver.
    Key("kube_version", flagmod.DEFAULT_KUBE_VERSION, "Kubernetes version; flags are rendered for it. Supported: 1.20 and 1.35-1.37."),
    Key("kube_apiserver_binary", None, "Local path of a kube-apiserver binary to upload (air-gapped installs, the lab's build)."),
    Key("kube_apiserver_url", "https://dl.k8s.io/release/v{version}/bin/linux/amd64/kube-apiserver", "Download URL when no local binary is given ({version} is filled in)."),
    Key("kube_apiserver_sha256", None, "sha256 of the downloaded binary; required when downloading, checked before it replaces the live one."),
    Key("apiserver_port", 6443, "Port each apiserver listens on at its bind_address."),
    Key("etcd_servers", REQUIRED, "List of https:// etcd client URLs."),
    Key("service_cluster_ip_range", "10.254.0.0/16", "Service CIDR; its first address goes into the serving certificate."),
    Key("service_node_port_range", "30000-32767", "NodePort range, LOW-HIGH."),
    Key("cluster_domain", "cluster.local", "Cluster DNS domain (kubernetes.default.svc.<domain> SAN)."),
    Key("admission_plugins", ["NamespaceLifecycle", "NodeRestriction", "LimitRanger", "ServiceAccount", "DefaultStorageClass", "ResourceQuota"], "--enable-admission-plugins (the tutorial's list without the removed Initializers)."),
    Key("authorization_mode", "Node,RBAC", "--authorization-mode."),
    Key("allow_privileged", True, "--allow-privileged."),
    Key("log_level", 0, "--v."),
    Key("event_ttl", "1h", "--event-ttl."),
    Key("shutdown_delay_seconds", 5, "--shutdown-delay-duration: keeps serving after SIGTERM while haproxy drains this master."),
    Key("service_account_issuer", "https://kubernetes.default.svc.cluster.local", "--service-account-issuer."),
    Key("audit_log_path", "/var/log/k8s-audit.log", "--audit-log-path."),
    Key("audit_log_maxage", 30, "--audit-log-maxage (days)."),
    Key("audit_log_maxbackup", 3, "--audit-log-maxbackup."),
    Key("audit_log_maxsize", 100, "--audit-log-maxsize (MB)."),
    Key("audit_policy_rules", [{"level": "Metadata"}], "Rules of the audit policy (audit.k8s.io/v1)."),
    Key("apiserver_extra_flags", {}, "Extra apiserver flags {name: value}; rejected unless the version accepts them."),
    # PKI and kubeconfig.
    Key("cert_subject", {"C": "CN", "ST": "Fuzhou", "L": "Fujian", "O": "k8s", "OU": "System"}, "Subject fields (C, ST, L, O, OU) of the serving certificate."),
    Key("cert_extra_sans", [], "Extra SANs (IPs or DNS names) for the serving certificate."),
    Key("ca_cert_file", None, "Import this CA certificate instead of creating one (with ca_key_file)."),
    Key("ca_key_file", None, "Private key of the imported CA; stays on the deploy machine."),
    # etcd's CA: by default created in pki_dir; import it when etcd already exists.
    Key("etcd_ca_cert_file", None, "The existing etcd's CA certificate (etcd trusts it; it signed etcd's serving certificate). With etcd_ca_key_file, or with etcd_client_cert_file + etcd_client_key_file. Unset: the deploy creates etcd-ca.pem in pki_dir."),
    Key("etcd_ca_key_file", None, "Private key of etcd_ca_cert_file: the deploy issues the apiserver's etcd client certificate from it. Stays on the deploy machine."),
    Key("etcd_client_cert_file", None, "Instead of etcd_ca_key_file: the apiserver's etcd client certificate, issued by etcd_ca_cert_file elsewhere (clientAuth)."),
    Key("etcd_client_key_file", None, "Private key of etcd_client_cert_file."),
    Key("pki_dir", "pki", "Local, git-ignored directory holding the CA and all issued certificates."),
    Key("artifacts_dir", "artifacts", "Local directory for the operator's admin kubeconfig."),
    Key("cluster_name", "kubernetes", "Cluster name in the kubeconfig."),
)
KEY_BY_NAME = {k.name: k for k in KEYS}
CLUSTER_KEYS = tuple(k for k in KEYS if not k.per_host)


class InventoryError(ValueError):
    """All problems of an inventory, one line each naming host and key."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(
            f"invalid inventory data ({len(problems)} problem{'s' if len(problems) != 1 else ''}); "
            "no host was changed:\n  " + "\n  ".join(problems)
        )


def short_name(host_name: str) -> str:
    """``@docker/vm01`` -> ``vm01``: a name haproxy and keepalived accept."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", host_name.rsplit("/", 1)[-1])


@dataclass(frozen=True)
class Master:
    name: str
    bind_address: str
    vrrp_priority: int
    vrrp_interface: str

    @property
    def short_name(self) -> str:
        return short_name(self.name)


@dataclass(frozen=True)
class Cluster:
    masters: tuple[Master, ...]
    vip: str
    vip_prefix: int
    virtual_router_id: int
    vrrp_advert_int: int
    vrrp_auth_pass: str
    keepalived_extra_global_defs: tuple[str, ...]
    lb_port: int
    haproxy_agent_port: int
    haproxy_check_interval_ms: int
    haproxy_check_fall: int
    haproxy_check_rise: int
    haproxy_timeout: str
    haproxy_extra_defaults: tuple[str, ...]
    kube_version: str
    kube_apiserver_binary: str | None
    kube_apiserver_url: str
    kube_apiserver_sha256: str | None
    apiserver_port: int
    etcd_servers: tuple[str, ...]
    service_cluster_ip_range: str
    service_node_port_range: str
    cluster_domain: str
    admission_plugins: tuple[str, ...]
    authorization_mode: str
    allow_privileged: bool
    log_level: int
    event_ttl: str
    shutdown_delay_seconds: int
    service_account_issuer: str
    audit_log_path: str
    audit_log_maxage: int
    audit_log_maxbackup: int
    audit_log_maxsize: int
    audit_policy_rules: tuple[dict, ...]
    apiserver_extra_flags: dict = field(hash=False)
    cert_subject: dict = field(hash=False)
    cert_extra_sans: tuple[str, ...] = ()
    ca_cert_file: str | None = None
    ca_key_file: str | None = None
    etcd_ca_cert_file: str | None = None
    etcd_ca_key_file: str | None = None
    etcd_client_cert_file: str | None = None
    etcd_client_key_file: str | None = None
    pki_dir: str = "pki"
    artifacts_dir: str = "artifacts"
    cluster_name: str = "kubernetes"

    @property
    def bind_addresses(self) -> tuple[str, ...]:
        return tuple(m.bind_address for m in self.masters)

    @property
    def server_url(self) -> str:
        return f"https://{self.vip}:{self.lb_port}"

    @property
    def download_url(self) -> str:
        return self.kube_apiserver_url.format(version=self.kube_version)


@dataclass(frozen=True)
class Settings:
    host: str
    is_master: bool
    cluster: Cluster
    bind_address: str | None = None
    vrrp_priority: int | None = None
    vrrp_interface: str | None = None

    @property
    def short_name(self) -> str:
        return short_name(self.host)


# --- field checkers: each returns the clean value or raises ValueError with a short reason ---------


def _ip(v: Any) -> str:
    return str(ipaddress.ip_address(str(v)))


def _bind_ip(v: Any) -> str:
    addr = ipaddress.ip_address(str(v))
    if addr.is_unspecified or addr.is_loopback:
        raise ValueError(
            f"{v} cannot be used: the apiserver must listen on this master's own address "
            "(127.0.0.1 is unreachable from the other masters, 0.0.0.0 clashes with kube-proxy's ipvs ports)"
        )
    return str(addr)


def _cidr(v: Any) -> str:
    return str(ipaddress.ip_network(str(v), strict=True))


def _int_in(lo: int, hi: int) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"{v!r} is not an integer")
        if not lo <= v <= hi:
            raise ValueError(f"{v} is outside {lo}-{hi}")
        return v

    return check


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"{v!r} is not true or false")
    return v


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,31}$")


def _word(v: Any) -> str:
    if not isinstance(v, str) or not _NAME_RE.match(v):
        raise ValueError(f"{v!r} is not a plain name")
    return v


def _text(v: Any) -> str:
    if not isinstance(v, str) or not v or "\n" in v or '"' in v:
        raise ValueError(f"{v!r} must be a non-empty single-line string without quotes")
    return v


def _lines(v: Any) -> tuple[str, ...]:
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) and "\n" not in x for x in v):
        raise ValueError("must be a list of single-line strings")
    return tuple(v)


def _words(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        v = v.split(",")
    if not isinstance(v, (list, tuple)) or not v:
        raise ValueError("must be a non-empty list")
    return tuple(_word(x) for x in v)


def _port_range(v: Any) -> str:
    m = re.fullmatch(r"(\d+)-(\d+)", str(v))
    if not m:
        raise ValueError(f"{v!r} is not LOW-HIGH")
    lo, hi = int(m.group(1)), int(m.group(2))
    if not (1 <= lo < hi <= 65535):
        raise ValueError(f"{v!r} must satisfy 1 <= LOW < HIGH <= 65535")
    return f"{lo}-{hi}"


def _etcd_urls(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, (list, tuple)) or not v:
        raise ValueError("must be a non-empty list of https:// URLs")
    out = []
    for url in v:
        m = re.fullmatch(r"https://([^/:\s]+|\[[0-9a-fA-F:]+\]):(\d+)/?", str(url))
        if not m:
            raise ValueError(f"{url!r} is not https://HOST:PORT (etcd must be reached over TLS)")
        if not 1 <= int(m.group(2)) <= 65535:
            raise ValueError(f"{url!r} has an invalid port")
        out.append(str(url).rstrip("/"))
    return tuple(out)


def _version(v: Any) -> str:
    text = str(v).lstrip("v")
    flagmod.parse_version(text)
    if not flagmod.is_supported(text):
        supported = ", ".join(f"{a}.{b}" for a, b in flagmod.SUPPORTED_MINORS)
        raise ValueError(f"{text} is not supported (supported minor versions: {supported})")
    return text


def _sha256(v: Any) -> str | None:
    if v is None:
        return None
    if not isinstance(v, str) or not re.fullmatch(r"[0-9a-f]{64}", v):
        raise ValueError("must be 64 lowercase hex characters")
    return v


def _opt_path(v: Any) -> str | None:
    if v is None:
        return None
    if not isinstance(v, (str, os.PathLike)) or not Path(v).is_file():
        raise ValueError(f"{v} does not exist on the deploy machine")
    return str(v)


def _duration(v: Any) -> str:
    if not isinstance(v, str) or not re.fullmatch(r"\d+(ms|s|m|h|d)", v):
        raise ValueError(f"{v!r} is not a duration like 30s, 1h")
    return v


def _subject(v: Any) -> dict:
    if not isinstance(v, Mapping):
        raise ValueError("must be a mapping of C, ST, L, O, OU")
    unknown = set(v) - {"C", "ST", "L", "O", "OU"}
    if unknown:
        raise ValueError(f"unknown subject fields {sorted(unknown)}")
    if "C" in v and (not isinstance(v["C"], str) or len(v["C"]) != 2):
        raise ValueError("C must be a two-letter country code")
    return {k: _text(x) for k, x in v.items()}


def _sans(v: Any) -> tuple[str, ...]:
    if not isinstance(v, (list, tuple)):
        raise ValueError("must be a list")
    out = []
    for x in v:
        try:
            out.append(str(ipaddress.ip_address(str(x))))
        except ValueError:
            if not isinstance(x, str) or not re.fullmatch(r"(?=.{1,253}$)[A-Za-z0-9*]([A-Za-z0-9.-]*[A-Za-z0-9])?", x):
                raise ValueError(f"{x!r} is neither an IP address nor a DNS name") from None
            out.append(x)
    return tuple(out)


def _rules(v: Any) -> tuple[dict, ...]:
    if not isinstance(v, (list, tuple)) or not v or not all(isinstance(r, Mapping) and "level" in r for r in v):
        raise ValueError("must be a non-empty list of rules, each with a level")
    levels = {"None", "Metadata", "Request", "RequestResponse"}
    bad = [r["level"] for r in v if r["level"] not in levels]
    if bad:
        raise ValueError(f"unknown audit level(s) {bad}")
    return tuple(dict(r) for r in v)


def _flag_map(v: Any) -> dict:
    if not isinstance(v, Mapping):
        raise ValueError("must be a mapping {flag-name: value}")
    out = {}
    for k, x in v.items():
        name = str(k).lstrip("-")
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
            raise ValueError(f"{k!r} is not a flag name")
        if isinstance(x, bool):
            x = str(x).lower()
        if isinstance(x, str) and ("\n" in x or '"' in x or " " in x):
            raise ValueError(f"value of {k} must be one word")
        out[name] = x
    return out


CHECKS: dict[str, Callable[[Any], Any]] = {
    "bind_address": _bind_ip,
    "vrrp_priority": _int_in(1, 254),
    "vrrp_interface": _word,
    "vip": _ip,
    "vip_prefix": _int_in(1, 32),
    "virtual_router_id": _int_in(1, 255),
    "vrrp_advert_int": _int_in(1, 255),
    "vrrp_auth_pass_file": lambda v: None if v is None else str(v),
    "keepalived_extra_global_defs": _lines,
    "lb_port": _int_in(1, 65535),
    "haproxy_agent_port": _int_in(1, 65535),
    "haproxy_check_interval_ms": _int_in(100, 60000),
    "haproxy_check_fall": _int_in(1, 100),
    "haproxy_check_rise": _int_in(1, 100),
    "haproxy_timeout": _duration,
    "haproxy_extra_defaults": _lines,
    "kube_version": _version,
    "kube_apiserver_binary": _opt_path,
    "kube_apiserver_url": _text,
    "kube_apiserver_sha256": _sha256,
    "apiserver_port": _int_in(1, 65535),
    "etcd_servers": _etcd_urls,
    "service_cluster_ip_range": _cidr,
    "service_node_port_range": _port_range,
    "cluster_domain": _word,
    "admission_plugins": _words,
    "authorization_mode": _text,
    "allow_privileged": _bool,
    "log_level": _int_in(0, 10),
    "event_ttl": _duration,
    "shutdown_delay_seconds": _int_in(0, 600),
    "service_account_issuer": _text,
    "audit_log_path": _text,
    "audit_log_maxage": _int_in(0, 3650),
    "audit_log_maxbackup": _int_in(0, 1000),
    "audit_log_maxsize": _int_in(1, 100000),
    "audit_policy_rules": _rules,
    "apiserver_extra_flags": _flag_map,
    "cert_subject": _subject,
    "cert_extra_sans": _sans,
    "ca_cert_file": _opt_path,
    "ca_key_file": _opt_path,
    "etcd_ca_cert_file": _opt_path,
    "etcd_ca_key_file": _opt_path,
    "etcd_client_cert_file": _opt_path,
    "etcd_client_key_file": _opt_path,
    "pki_dir": _text,
    "artifacts_dir": _text,
    "cluster_name": _word,
}
assert set(CHECKS) == set(KEY_BY_NAME), set(CHECKS) ^ set(KEY_BY_NAME)


@dataclass
class _Collector:
    problems: list[str] = field(default_factory=list)

    def add(self, host: str, key: str, why: str) -> None:
        self.problems.append(f"{host}: {key}: {why}")

    def value(self, host: str, data: Mapping[str, Any], key: str) -> Any:
        spec = KEY_BY_NAME[key]
        raw = data.get(key, spec.default)
        if raw is REQUIRED or raw is None and spec.default is REQUIRED:
            self.add(host, key, "missing (required)")
            return None
        try:
            return CHECKS[key](raw)
        except (ValueError, TypeError) as e:
            self.add(host, key, str(e))
            return None


def _auth_pass(col: _Collector, host: str, path: str | None, env: Mapping[str, str]) -> str | None:
    key = "vrrp_auth_pass_file"
    if env.get(AUTH_PASS_ENV):
        secret, source = env[AUTH_PASS_ENV], AUTH_PASS_ENV
    elif path:
        try:
            secret, source = Path(path).read_text().strip(), path
        except OSError as e:
            col.add(host, key, f"cannot read {path}: {e.strerror}")
            return None
    else:
        col.add(host, key, f"no VRRP password: set {AUTH_PASS_ENV} or point vrrp_auth_pass_file at a file")
        return None
    if not secret:
        col.add(host, key, f"VRRP password from {source} is empty")
    elif len(secret) > 8:
        col.add(host, key, f"VRRP password from {source} is {len(secret)} characters; keepalived uses at most 8")
    elif not re.fullmatch(r"[!-~]+", secret):
        col.add(host, key, f"VRRP password from {source} must be printable ASCII without spaces")
    else:
        return secret
    return None


_ETCD_IMPORT_KEYS = ("etcd_ca_cert_file", "etcd_ca_key_file", "etcd_client_cert_file", "etcd_client_key_file")


def _etcd_import(col: _Collector, host: str, data: Mapping[str, Any], values: Mapping[str, Any]) -> None:
    """etcd_ca_cert_file with EITHER etcd_ca_key_file OR etcd_client_cert_file + etcd_client_key_file.

    The files themselves are checked here too (a CA, the key matches, the client certificate is
    signed by that CA and has clientAuth), so a bad import stops the run before any host is touched.
    """
    given = [k for k in _ETCD_IMPORT_KEYS if data.get(k) is not None]
    if not given or any(values[k] is None for k in given):  # nothing to import, or a path already reported
        return
    ca_cert, ca_key, cert, key = (values[k] for k in _ETCD_IMPORT_KEYS)
    if ca_cert is None:
        col.add(host, "etcd_ca_cert_file", f"required with {', '.join(given)}: the CA etcd trusts")
    elif ca_key is not None and (cert is not None or key is not None):
        col.add(host, "etcd_ca_key_file", "give etcd_ca_key_file or etcd_client_cert_file + etcd_client_key_file, not both")
    elif ca_key is None and (cert is None or key is None):
        missing = "etcd_client_key_file" if cert else "etcd_client_cert_file" if key else "etcd_ca_cert_file"
        col.add(host, missing, "importing etcd's CA needs etcd_ca_key_file, or etcd_client_cert_file and etcd_client_key_file")
    else:
        by_path = {str(Path(values[k])): k for k in reversed(_ETCD_IMPORT_KEYS) if values[k] is not None}
        try:
            ca = pki.load_ca(ca_cert, ca_key)
            if cert is not None:
                pki.check_imported_cert(pki.ETCD_CLIENT, ca, cert, key)
        except pki.PKIFileError as e:
            col.add(host, by_path.get(e.path, "etcd_ca_cert_file"), str(e))


def load_inventory(
    hosts: Iterable[tuple[str, Mapping[str, Any], Iterable[str]]],
    env: Mapping[str, str] | None = None,
) -> dict[str, Settings]:
    """Validate every host's data and return ``{host name: Settings}``.

    ``hosts`` is ``(name, data, group names)`` per host. Masters are the hosts in the ``masters``
    group. Raises ``InventoryError`` listing every problem when anything is wrong.
    """
    env = os.environ if env is None else env
    hosts = [(name, dict(data), set(groups)) for name, data, groups in hosts]
    col = _Collector()
    masters_raw = [(n, d) for n, d, g in hosts if "masters" in g]
    if not masters_raw:
        col.add("inventory", "masters", "no host in the masters group")
        raise InventoryError(col.problems)

    # Cluster-wide keys: read from the first master; every other master must agree (the other
    # nodes only receive /etc/kubernetes/config, rendered from these values).
    first, first_data = masters_raw[0]
    values = {k.name: col.value(first, first_data, k.name) for k in CLUSTER_KEYS}
    for name, data in masters_raw[1:]:
        for k in CLUSTER_KEYS:
            if data.get(k.name, k.default) != first_data.get(k.name, k.default):
                col.add(name, k.name, f"differs from {first}'s value: cluster-wide keys must be equal on every host")

    masters = []
    for name, data in masters_raw:
        per_host = {k: col.value(name, data, k) for k in ("bind_address", "vrrp_priority", "vrrp_interface")}
        if None not in per_host.values():
            masters.append(Master(name=name, **per_host))

    # Relations between values.
    seen_addr: dict[str, str] = {}
    seen_prio: dict[int, str] = {}
    for m in masters:
        if m.bind_address in seen_addr:
            col.add(m.name, "bind_address", f"{m.bind_address} is also {seen_addr[m.bind_address]}'s")
        seen_addr.setdefault(m.bind_address, m.name)
        if m.vrrp_priority in seen_prio:
            col.add(m.name, "vrrp_priority", f"{m.vrrp_priority} is also {seen_prio[m.vrrp_priority]}'s: priorities must be unique")
        seen_prio.setdefault(m.vrrp_priority, m.name)
    vip, prefix = values["vip"], values["vip_prefix"]
    if vip and prefix:
        net = ipaddress.ip_network(f"{vip}/{prefix}", strict=False)
        for m in masters:
            if ipaddress.ip_address(m.bind_address) not in net:
                col.add(m.name, "vip", f"VIP {vip}/{prefix} is not in the subnet of bind_address {m.bind_address}")
            if m.bind_address == vip:
                col.add(m.name, "bind_address", "equals the VIP")
    version = values["kube_version"]
    if version and values["apiserver_extra_flags"] is not None:
        for name in values["apiserver_extra_flags"]:
            problem = flagmod.extra_flag_problem(name, flagmod.minor_of(version))
            if problem:
                col.add(first, "apiserver_extra_flags", f"{problem} (kube_version {version})")
    if (values["ca_cert_file"] is None) != (values["ca_key_file"] is None) and not any(
        p.startswith(f"{first}: ca_") for p in col.problems
    ):
        col.add(first, "ca_cert_file", "importing a CA needs both ca_cert_file and ca_key_file")
    _etcd_import(col, first, first_data, values)  # etcd's CA: imported with its key or with a client cert
    # Raw values: an explicit `kube_apiserver_binary: None` still downloads, and a bad binary path
    # or malformed sha256 is already reported under its own key.
    if first_data.get("kube_apiserver_binary") is None and first_data.get("kube_apiserver_sha256") is None:
        col.add(first, "kube_apiserver_sha256", "required when the binary is downloaded (no kube_apiserver_binary given)")
    if values["haproxy_check_interval_ms"] and values["shutdown_delay_seconds"] is not None:
        drain_ms = values["haproxy_check_interval_ms"] * ((values["haproxy_check_fall"] or 2) + 1)
        if values["shutdown_delay_seconds"] * 1000 < drain_ms:
            col.add(first, "shutdown_delay_seconds", f"must be at least {drain_ms / 1000:g}s (haproxy check interval x (fall + 1)) so a restart drops no request")
    auth = _auth_pass(col, first, values["vrrp_auth_pass_file"], env)

    if col.problems:
        raise InventoryError(col.problems)

    values.pop("vrrp_auth_pass_file")
    cluster = Cluster(masters=tuple(masters), vrrp_auth_pass=auth, **values)
    by_name = {m.name: m for m in masters}
    out = {}
    for name, _, _ in hosts:
        m = by_name.get(name)
        out[name] = Settings(
            host=name,
            is_master=m is not None,
            cluster=cluster,
            bind_address=m.bind_address if m else None,
            vrrp_priority=m.vrrp_priority if m else None,
            vrrp_interface=m.vrrp_interface if m else None,
        )
    return out


def keys_markdown() -> str:
    """The README's table of data keys (`python -m hakube.settings` prints it)."""
    import json

    rows = ["| key | default | meaning |", "|---|---|---|"]
    for k in KEYS:
        default = "**required**" if k.default is REQUIRED else "—" if k.default is None else f"`{json.dumps(k.default)}`"
        rows.append(f"| `{k.name}`{' *(per master)*' if k.per_host else ''} | {default} | {k.doc} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(keys_markdown())
