"""A typed, validated view of the inventory's data.

``KEYS`` holds one row per data key: its default, its check and its doc (the README's table is
this table); ``Cluster`` has a field per cluster key and no default of its own.
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

from . import encryption
from . import flags as flagmod
from . import pki
from .probes import host_port, short_name

REQUIRED = object()
AUTH_PASS_ENV = "HAKUBE_VRRP_AUTH_PASS"
#: keepalived reads {, } as block tokens, # and ! as comments, quotes and $ specially.
AUTH_PASS_FORBIDDEN = "{}#!\"'$\\`"


@dataclass(frozen=True)
class Key:
    """One data key, one row: its default, the README's words, and the check that turns the raw
    value into the clean one (or raises ValueError with a short reason)."""

    name: str
    default: Any
    doc: str
    per_host: bool = False
    check: Callable[[Any], Any] = field(default=None, repr=False, compare=False)




class InventoryError(ValueError):
    """All problems of an inventory, one line each naming host and key."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(
            f"invalid inventory data ({len(problems)} problem{'s' if len(problems) != 1 else ''}); "
            "no host was changed:\n  " + "\n  ".join(problems)
        )


@dataclass(frozen=True)
class Master:
    name: str
    bind_address: str
    vrrp_priority: int
    vrrp_interface: str
    leaving: bool = False
    metrics_address: str | None = None  # as given; ``metrics_bind`` is the address used

    @property
    def short_name(self) -> str:
        return short_name(self.name)

    @property
    def metrics_bind(self) -> str:
        """Where this master's exporters listen: metrics_address, else its bind_address."""
        return self.metrics_address or self.bind_address


@dataclass(frozen=True)
class Cluster:
    """The cluster-wide values, each clean and checked: one field per cluster key of ``KEYS`` (their
    defaults live there), besides the masters and the VRRP password read from its file."""

    masters: tuple[Master, ...]
    vip: str
    vip_prefix: int
    vip6: str | None
    vip6_prefix: int
    virtual_router_id: int
    vrrp_version: int
    vrrp_advert_int: int | float  # a float only with vrrp_version 3
    vrrp_unicast: bool
    vrrp_auth_pass: str | None = field(repr=False)  # a secret: never in a repr or a message; None with VRRPv3
    keepalived_extra_global_defs: tuple[str, ...]
    lb_port: int
    haproxy_agent_port: int
    haproxy_check_interval_ms: int
    haproxy_check_fall: int
    haproxy_check_rise: int
    haproxy_timeout: str
    haproxy_extra_defaults: tuple[str, ...]
    haproxy_stats_port: int
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
    apiserver_ready_timeout: int
    shutdown_delay_seconds: int
    service_account_issuer: str
    audit_log_path: str
    audit_log_maxage: int
    audit_log_maxbackup: int
    audit_log_maxsize: int
    audit_policy_rules: tuple[dict, ...]
    secrets_encryption: bool
    secrets_encryption_provider: str
    secrets_encryption_keys: tuple[str, ...]
    apiserver_extra_flags: dict
    cert_subject: dict
    cert_extra_sans: tuple[str, ...]
    cert_validity_days: int
    cert_renewal_days: int
    ca_validity_days: int
    ca_cert_file: str | None
    ca_key_file: str | None
    sa_key_file: str | None
    replace_ca_sha256: str | None
    replace_sa_sha256: str | None
    etcd_ca_cert_file: str | None
    etcd_ca_key_file: str | None
    etcd_client_cert_file: str | None
    etcd_client_key_file: str | None
    kubelet_certificate_authority_file: str | None
    pki_dir: str
    artifacts_dir: str
    cluster_name: str
    metrics: bool
    haproxy_metrics_port: int
    node_exporter_port: int
    #: Masters with ``leaving: true``: still in the inventory, no longer members. ``masters`` holds
    #: the members only, so the SANs, haproxy backends and VRRP peers follow it.
    leaving: tuple[Master, ...] = ()

    @property
    def bind_addresses(self) -> tuple[str, ...]:
        return tuple(m.bind_address for m in self.masters)

    @property
    def vips(self) -> tuple[str, ...]:
        """Every VIP: ``vip``, then ``vip6`` on a dual-stack front. One master holds all of them."""
        return (self.vip, self.vip6) if self.vip6 else (self.vip,)

    @property
    def family(self) -> int:
        """4 or 6: the masters' family (their bind_address, the VRRP instance, ``vip``)."""
        return ipaddress.ip_address(self.vip).version

    @property
    def server_url(self) -> str:
        return f"https://{host_port(self.vip, self.lb_port)}"

    def download_url(self, arch: str) -> str:
        """kube_apiserver_url for a host of architecture ``arch`` (Kubernetes' name: amd64, arm64, ...)."""
        return self.kube_apiserver_url.format(version=self.kube_version, arch=arch)


@dataclass(frozen=True)
class Settings:
    host: str
    is_master: bool
    cluster: Cluster
    bind_address: str | None = None
    vrrp_priority: int | None = None
    vrrp_interface: str | None = None
    leaving: bool = False  # a master that leaves the cluster in this run (is_master stays true)
    metrics_address: str | None = None  # a master's exporters listen here (metrics_address, else bind_address)

    @property
    def is_member(self) -> bool:
        """A master that serves and stays: every step runs on it (a leaving master gets only ``tasks.leave``)."""
        return self.is_master and not self.leaving

    @property
    def short_name(self) -> str:
        return short_name(self.host)


# --- field checkers: each returns the clean value or raises ValueError with a short reason ---------
#
# Every value that reaches a flag, a config line or a shell command is checked by its type, with an
# allow-list where the type has one. Reasons show values with repr(), so a control character in
# the data can never break a problem line.

#: the smallest prefix of an IPv6 Service CIDR: the apiserver refuses a range of more than 2^20
#: addresses ("specified --service-cluster-ip-range is too large"), so /108 at most
SERVICE_CIDR_MIN_PREFIX6 = 108


def _ip(v: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An IPv4 or IPv6 address, in its canonical text (RFC 5952 for IPv6); never scoped (``%eth0``)
    or IPv4-mapped."""
    addr = ipaddress.ip_address(str(v))  # ValueError names the value with repr()
    if addr.version == 6 and addr.scope_id:
        raise ValueError(f"{str(v)!r} is a scoped IPv6 address: give a global or unique local address")
    if addr.version == 6 and addr.ipv4_mapped:
        raise ValueError(f"{str(v)!r} is an IPv4-mapped IPv6 address: write the IPv4 address")
    return addr


def _bind_ip(v: Any) -> str:
    addr = _ip(v)
    if addr.is_unspecified or addr.is_loopback:
        raise ValueError(
            f"{v} cannot be used: the apiserver must listen on this master's own address "
            "(127.0.0.1 or ::1 is unreachable from the other masters, 0.0.0.0 or :: clashes with kube-proxy's ipvs ports)"
        )
    if addr.version == 6 and (addr.is_link_local or addr.is_multicast):
        raise ValueError(f"{addr} is a {'link-local' if addr.is_link_local else 'multicast'} IPv6 address: the "
                         "apiserver needs a global or unique local (fd00::/8) address")
    return str(addr)


def _vip(v: Any) -> str:
    """An address one host can own on a LAN: not unspecified, multicast, link-local, reserved or the
    limited broadcast. (A loopback VIP cannot hold the masters' addresses in its subnet: refused there.)"""
    addr = _ip(v)
    for bad, what in ((addr.is_unspecified, "the unspecified address"),
                      (addr.is_multicast, "a multicast address"), (addr.is_link_local, "a link-local address"),
                      (addr == ipaddress.IPv4Address("255.255.255.255"), "the limited broadcast address"),
                      (addr.is_loopback and addr.version == 6, "the loopback address"),
                      (addr.is_reserved, "a reserved address")):
        if bad:
            raise ValueError(f"{addr} is {what}: a VIP must be a unicast address of the masters' subnet")
    return str(addr)


def _opt_vip6(v: Any) -> str | None:
    """The IPv6 VIP of a dual-stack front (``vip`` is then IPv4), or None."""
    if v is None:
        return None
    address = _vip(v)
    if ipaddress.ip_address(address).version != 6:
        raise ValueError(f"{address} is not an IPv6 address: vip6 is the IPv6 VIP beside an IPv4 vip "
                         "(an IPv4 address belongs in vip)")
    return address


def _metrics_ip(v: Any) -> str | None:
    """One address of this master for its exporters (None: its bind_address). Never 0.0.0.0: the
    metrics would be offered on every interface; loopback is fine (a Prometheus agent on the master)."""
    if v is None:
        return None
    addr = ipaddress.ip_address(str(v).strip())  # its ValueError: "... does not appear to be an IPv4 or IPv6 address"
    if addr.is_unspecified or addr.is_multicast or addr == ipaddress.IPv4Address("255.255.255.255"):
        raise ValueError(f"{v} cannot be used: the exporters listen on one address of this master "
                         "(its bind_address by default), never on every interface")
    return str(addr)


def _cidr(v: Any) -> str:
    net = ipaddress.ip_network(str(v), strict=True)
    if net.version == 6 and net.prefixlen < SERVICE_CIDR_MIN_PREFIX6:
        raise ValueError(f"{net} is too large: the apiserver takes an IPv6 Service CIDR of at most 2^20 addresses "
                         f"(a prefix of /{SERVICE_CIDR_MIN_PREFIX6} or longer)")
    return str(net)


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


_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,31}")


def _word(v: Any) -> str:
    if not isinstance(v, str) or not _NAME_RE.fullmatch(v):
        raise ValueError(f"{v!r} is not a plain name")
    return v


def _interface(v: Any) -> str:
    """A Linux interface name: at most 15 characters (IFNAMSIZ), no '/', ':' or whitespace."""
    if not isinstance(v, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", v) or v in (".", ".."):
        raise ValueError(f"{v!r} is not a Linux interface name (1-15 letters, digits, '_', '.', '-')")
    return v


_DNS_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def _dns_problem(name: str, wildcard: bool = False) -> str | None:
    """Why ``name`` is not an RFC 1123 DNS name (``*.`` as a whole first label if ``wildcard``)."""
    labels = name.split(".")
    if wildcard and len(labels) > 1 and labels[0] == "*":
        labels = labels[1:]
    if not 1 <= len(name) <= 253:
        return "a DNS name has 1-253 characters"
    if not all(_DNS_LABEL.fullmatch(label) for label in labels):
        return "each label is 1-63 letters, digits or inner hyphens" + (", a wildcard only as *.<name>" if wildcard else "")
    if labels[-1].isdigit():
        return "the last label is all digits (a mistyped IPv4 address?)"
    return None


def _cluster_domain(v: Any) -> str:
    if not isinstance(v, str) or (why := _dns_problem(v)):
        raise ValueError(f"{v!r} is not a DNS name" + (f": {why}" if isinstance(v, str) else ""))
    # kubernetes.default.svc.<domain> must itself stay a valid DNS name.
    if len(v) > 253 - len("kubernetes.default.svc."):
        raise ValueError(f"{v!r} is too long: kubernetes.default.svc.<domain> must fit in 253 characters")
    return v


def _printable_line(x: Any) -> str:
    # str.isprintable() is False for every control character (tab, CR, LF, NUL, ESC, NEL), format
    # characters (zero-width space, BOM) and the Unicode line/paragraph separators.
    if not isinstance(x, str) or not x.isprintable():
        raise ValueError(f"{x!r} must be one printable line: no newline, carriage return, tab or other control character")
    return x


#: haproxy section keywords: a raw line starting with one would open a section of its own.
HAPROXY_SECTIONS = frozenset(
    "global defaults frontend backend listen userlist peers resolvers mailers program http-errors "
    "ring cache fcgi-app crt-store traces log-forward acme".split()
)


def _raw_lines(forbidden: str = "", sections: frozenset = frozenset(), what: str = "") -> Callable[[Any], tuple[str, ...]]:
    """Lines passed through verbatim into one section of a config file: each must stay one line
    inside that section. Tabs are refused with the other control characters (write spaces)."""

    def check(v: Any) -> tuple[str, ...]:
        if not isinstance(v, (list, tuple)):
            raise ValueError("must be a list of single-line strings")
        for x in v:
            _printable_line(x)
            if any(c in x for c in forbidden):
                raise ValueError(f"{x!r} contains {' or '.join(forbidden)}: a line cannot open or close a {what} block")
            if x.split()[:1] and x.split()[0] in sections:
                raise ValueError(f"{x!r} would start a new {what} section")
        return tuple(v)

    return check


def _comma_list(v: Any, what: str) -> tuple[str, ...]:
    if isinstance(v, str):
        v = v.split(",")
    if not isinstance(v, (list, tuple)) or not v or not all(isinstance(x, str) for x in v):
        raise ValueError(f"must be a non-empty list of {what} (or one comma-separated string)")
    dups = sorted({x for x in v if v.count(x) > 1})
    if dups:
        raise ValueError(f"{', '.join(map(repr, dups))} listed more than once")
    return tuple(v)


def _admission_plugins(v: Any) -> tuple[str, ...]:
    names = _comma_list(v, "admission plugins")
    unknown = [x for x in names if x not in flagmod.ADMISSION_PLUGINS]
    if unknown:
        raise ValueError(f"unknown admission plugin(s) {', '.join(map(repr, unknown))}")
    return names  # which of them kube_version has is a relation, checked in load_inventory


def _authorization_modes(v: Any) -> str:
    names = _comma_list(v, "authorization modes")
    unknown = [x for x in names if x not in flagmod.AUTHORIZATION_MODES]
    if unknown:
        choices = ", ".join(flagmod.AUTHORIZATION_MODES)
        raise ValueError(f"unknown authorization mode(s) {', '.join(map(repr, unknown))} (choices: {choices})")
    return ",".join(names)


def _port_range(v: Any) -> str:
    m = re.fullmatch(r"([0-9]+)-([0-9]+)", str(v))
    if not m:
        raise ValueError(f"{v!r} is not LOW-HIGH")
    lo, hi = int(m.group(1)), int(m.group(2))
    if not (1 <= lo < hi <= 65535):
        raise ValueError(f"{v!r} must satisfy 1 <= LOW < HIGH <= 65535")
    return f"{lo}-{hi}"


def _host_problem(host: str) -> str | None:
    """Why ``host`` (from a URL) is neither an IPv4 address, an IPv6 address in brackets nor a DNS
    name."""
    if host.startswith("["):
        try:
            addr = ipaddress.ip_address(host[1:-1]) if host.endswith("]") else None
        except ValueError:
            addr = None
        if addr is None or addr.version != 6:
            return f"{host!r} is not an IPv6 address in brackets"
        if addr.scope_id:
            return f"{host!r} is a scoped IPv6 address: give a global or unique local address"
        return None
    try:
        if ipaddress.ip_address(host).version == 4:
            return None
        return f"{host!r}: an IPv6 address in a URL needs brackets ([{host}])"  # pragma: no cover (the URL regexes forbid ':')
    except ValueError:
        why = _dns_problem(host)
        return f"{host!r} is neither an IPv4 address, an IPv6 address in brackets nor a DNS name ({why})" if why else None


def _etcd_urls(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, (list, tuple)) or not v:
        raise ValueError("must be a non-empty list of https:// URLs")
    out = []
    for url in v:
        m = re.fullmatch(r"https://(\[[^\]]*\]|[^/:\[\]]+):([0-9]{1,5})/?", str(url))
        if not m:
            raise ValueError(f"{url!r} is not https://HOST:PORT (etcd must be reached over TLS; an IPv6 "
                             "address in brackets: https://[fd00::20]:2379)")
        if why := _host_problem(m.group(1)):
            raise ValueError(f"{url!r}: {why}")
        if not 1 <= int(m.group(2)) <= 65535:
            raise ValueError(f"{url!r} has an invalid port")
        host = m.group(1)
        if host.startswith("["):  # canonical text, as the SANs and the address checks compare it
            host = f"[{ipaddress.ip_address(host[1:-1])}]"
        out.append(f"https://{host}:{m.group(2)}")
    return tuple(out)


_URL_TAIL = re.compile(r"[A-Za-z0-9._~:/?#@!*+,=%-]*")


def _url(schemes: tuple[str, ...], placeholder: bool = False, query: bool = True) -> Callable[[Any], str]:
    """An http(s) URL of safe characters only: no whitespace, quotes, $, backtick, ;, &, |, <, >,
    parentheses or braces (with ``placeholder``, the literals ``{version}`` and ``{arch}`` are allowed)."""

    def check(v: Any) -> str:
        if not isinstance(v, str):
            raise ValueError(f"{v!r} is not a URL")
        probe = v.replace("{version}", "0").replace("{arch}", "amd64") if placeholder else v
        m = re.fullmatch(r"([a-z]+)://([^/?#]*)(.*)", probe, flags=re.S)
        if not m or m.group(1) not in schemes:
            raise ValueError(f"{v!r} is not a {' or '.join(s + '://' for s in schemes)} URL")
        authority, tail = m.group(2), m.group(3)
        hm = re.fullmatch(r"(\[[^\]]*\]|[^:\[\]]*)(?::([0-9]{1,5}))?", authority)
        if not hm or not hm.group(1):
            raise ValueError(f"{v!r} has no valid host[:port] (no user@ part)")
        if why := _host_problem(hm.group(1)):
            raise ValueError(f"{v!r}: {why}")
        if hm.group(2) and not 1 <= int(hm.group(2)) <= 65535:
            raise ValueError(f"{v!r} has an invalid port")
        if not _URL_TAIL.fullmatch(tail):
            raise ValueError(f"{v!r} may only hold letters, digits and ._~:/?#@!*+,=%- after the host")
        if not query and ("?" in tail or "#" in tail):
            raise ValueError(f"{v!r} must not have a query or fragment")
        return v

    return check


def _version(v: Any) -> str:
    if not re.fullmatch(r"v?[0-9]+\.[0-9]+\.[0-9]+", str(v)):
        raise ValueError(f"{v!r} is not a version like 1.36.0")
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


def _local_path(v: Any) -> str:
    """A path on the deploy machine: never rendered, but it must not hold control characters."""
    if not isinstance(v, (str, os.PathLike)) or not str(v) or not str(v).isprintable():
        raise ValueError(f"{str(v)!r} must be a non-empty path without control characters or line breaks")
    return str(v)


def _opt_local_path(v: Any) -> str | None:
    return None if v is None else _local_path(v)


def _opt_path(v: Any) -> str | None:
    if v is None:
        return None
    if not Path(_local_path(v)).is_file():
        raise ValueError(f"{str(v)!r} does not exist on the deploy machine")
    return str(v)


def _opt_ca_cert(v: Any) -> str | None:
    """A local PEM file holding one or more CA certificates, or None."""
    if _opt_path(v) is None:
        return None
    from cryptography import x509

    try:
        certs = x509.load_pem_x509_certificates(Path(v).read_bytes())
    except (ValueError, OSError) as e:
        raise ValueError(f"{str(v)!r} is not a PEM certificate file ({e})") from None
    if not all(_is_ca(c) for c in certs):
        raise ValueError(f"{str(v)!r} holds a certificate that is not a CA (basicConstraints CA:TRUE)")
    return str(v)


def _is_ca(cert) -> bool:
    from cryptography import x509

    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _audit_log_path(v: Any) -> str:
    if v == "-":
        return v  # the apiserver's stdout
    if not isinstance(v, str) or not re.fullmatch(r"/[A-Za-z0-9._/@%+,:=-]*", v) or v.endswith("/"):
        raise ValueError(f"{v!r} is not an absolute file path of letters, digits and ._/@%+,:=- (or - for stdout)")
    return v


def _duration(v: Any) -> str:
    """haproxy's time format."""
    if not isinstance(v, str) or not re.fullmatch(r"[0-9]+(ms|s|m|h|d)", v):
        raise ValueError(f"{v!r} is not a duration like 30s, 1h")
    return v


def _go_duration(v: Any) -> str:
    """A Go duration for an apiserver flag (Go has no 'd' unit)."""
    if not isinstance(v, str) or not re.fullmatch(r"[0-9]+(ms|s|m|h)", v):
        raise ValueError(f"{v!r} is not a duration like 30s, 1h (units ms, s, m, h)")
    return v


def _subject(v: Any) -> dict:
    if not isinstance(v, Mapping):
        raise ValueError("must be a mapping of C, ST, L, O, OU")
    unknown = set(v) - {"C", "ST", "L", "O", "OU"}
    if unknown:
        raise ValueError(f"unknown subject fields {sorted(map(str, unknown))}")
    if "C" in v and (not isinstance(v["C"], str) or not re.fullmatch(r"[A-Za-z]{2}", v["C"])):
        raise ValueError("C must be a two-letter country code")
    for k, x in v.items():
        if not isinstance(x, str) or not 1 <= len(x) <= 64 or not x.isprintable() or any(c in x for c in "\"'`\\"):
            raise ValueError(f"{k} must be 1-64 printable characters without quotes or backslashes: {x!r}")
    return dict(v)


def _sans(v: Any) -> tuple[str, ...]:
    if not isinstance(v, (list, tuple)):
        raise ValueError("must be a list")
    out = []
    for x in v:
        try:
            addr = ipaddress.ip_address(str(x))
        except ValueError:
            if not isinstance(x, str) or (why := _dns_problem(x, wildcard=True)):
                detail = f": {why}" if isinstance(x, str) else ""
                raise ValueError(f"{x!r} is neither an IP address nor a DNS name{detail}") from None
            out.append(x)
            continue
        if getattr(addr, "scope_id", None):
            raise ValueError(f"{x!r}: a scoped IPv6 address cannot be a SAN")
        out.append(str(addr))  # IPv6 is fine here: it is only a SAN
    return tuple(out)


AUDIT_RULE_FIELDS = frozenset(
    {"level", "users", "userGroups", "verbs", "resources", "namespaces", "nonResourceURLs", "omitStages", "omitManagedFields"}
)


def _printable_leaves(v: Any) -> None:
    if isinstance(v, str):
        if not v.isprintable():
            raise ValueError(f"{v!r} contains a control character or line break")
    elif isinstance(v, Mapping):
        for k, x in v.items():
            _printable_leaves(k)
            _printable_leaves(x)
    elif isinstance(v, (list, tuple)):
        for x in v:
            _printable_leaves(x)
    elif not (v is None or isinstance(v, (bool, int, float))):
        raise ValueError(f"{v!r} is not a string, number, list or mapping")


def _rules(v: Any) -> tuple[dict, ...]:
    if not isinstance(v, (list, tuple)) or not v or not all(isinstance(r, Mapping) and "level" in r for r in v):
        raise ValueError("must be a non-empty list of rules, each with a level")
    levels = {"None", "Metadata", "Request", "RequestResponse"}
    bad = [r["level"] for r in v if r["level"] not in levels]
    if bad:
        raise ValueError(f"unknown audit level(s) {bad}")
    unknown = sorted({str(k) for r in v for k in r} - AUDIT_RULE_FIELDS)
    if unknown:
        raise ValueError(f"unknown audit rule field(s) {unknown}")
    _printable_leaves(list(v))  # rendered as JSON, but a control character is never meant
    return tuple(dict(r) for r in v)


#: Characters an extra flag's value may hold: systemd splits $KUBE_* on whitespace, so a space,
#: tab or newline would add flags; quotes, $, backtick, ;, \, &, |, <, > are never needed.
FLAG_VALUE_RE = re.compile(r"[A-Za-z0-9._:/=,@+%*-]*")


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
        if not isinstance(x, (str, int, float)):
            raise ValueError(f"value of --{name} must be a string, a number or true/false, not {type(x).__name__}")
        if not FLAG_VALUE_RE.fullmatch(str(x)):
            raise ValueError(
                f"value of --{name} must be one word of letters, digits and ._:/=,@+%*- "
                f"(no whitespace, quotes or shell characters): {str(x)!r}"
            )
        out[name] = x
    return out


def _provider(v: Any) -> str:
    if v not in encryption.PROVIDERS:
        raise ValueError(f"{v!r} is not one of {', '.join(encryption.PROVIDERS)}")
    return v


def _key_names(v: Any) -> tuple[str, ...]:
    if not isinstance(v, (list, tuple)):
        raise ValueError("must be a list of key names")
    for x in v:
        if not isinstance(x, str) or not encryption.KEY_NAME_RE.fullmatch(x):
            raise ValueError(f"{x!r} is not a key name (1-32 of lowercase letters, digits and '-')")
    dupes = sorted({x for x in v if v.count(x) > 1})
    if dupes:
        raise ValueError(f"{', '.join(dupes)} listed more than once")
    return tuple(v)


def _choice(v: Any, choices: tuple) -> Any:
    if isinstance(v, bool) or v not in choices:
        raise ValueError(f"{v!r} is not one of {', '.join(map(str, choices))}")
    return v


def _advert_int(v: Any) -> int | float:
    """Seconds, in centiseconds (keepalived's unit for VRRPv3); which values a version accepts is a
    relation, checked in load_inventory (``_vrrp_v3``)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{v!r} is not a number of seconds")
    if not 0.01 <= v <= 255:
        raise ValueError(f"{v!r} is outside 0.01-255")
    if abs(v * 100 - round(v * 100)) > 1e-6:
        raise ValueError(f"{v!r} is not a whole number of centiseconds (at most 2 decimals)")
    return int(v) if float(v).is_integer() else round(v, 2)


KEYS: tuple[Key, ...] = (
    # Per master (steps 3, 5, 6).
    Key("bind_address", REQUIRED, "This master's address, IPv4 or IPv6 (every master of the same family): apiserver bind and advertise address, haproxy backend, VRRP unicast source. Not 0.0.0.0, ::, a loopback or (IPv6) a link-local address.", per_host=True, check=_bind_ip),
    Key("vrrp_priority", REQUIRED, "keepalived priority, 1-254, unique among masters; the highest starts as VIP holder.", per_host=True, check=_int_in(1, 254)),
    Key("vrrp_interface", REQUIRED, "Interface that carries VRRP and the VIP (e.g. eth0, ens160): a Linux interface name, 1-15 of letters, digits and `_.-`.", per_host=True, check=_interface),
    Key("leaving", False, "true: this master leaves the cluster (README, Day two: adding and removing a master). It stays in the inventory so the run can reach it: the VIP is moved off it, its apiserver drained, kube-apiserver, haproxy, keepalived and the haproxy agent stopped and disabled, its keys and certificates removed (packages and binary stay); the other masters drop it from their certificate SANs, haproxy backends and VRRP peers. At least 2 masters must remain; masters only.", per_host=True, check=_bool),
    # Step 1 — certificates (tasks/certs.py).
    Key("cert_subject", {"C": "CN", "ST": "Fuzhou", "L": "Fujian", "O": "k8s", "OU": "System"}, "Subject fields (C, ST, L, O, OU) of the serving certificate: printable, at most 64 characters, no quotes or backslash.", check=_subject),
    Key("cert_extra_sans", [], "Extra SANs for the serving certificate: IP addresses or DNS names (a wildcard only as a whole first label, `*.example.com`).", check=_sans),
    Key("cert_validity_days", pki.LEAF_VALIDITY.days, "Days a certificate the deploy issues is valid; never past its CA's expiry. Lowering it reissues the certificates that live longer at the next run. At most ca_validity_days.", check=_int_in(1, 36500)),
    Key("cert_renewal_days", pki.RENEW_BEFORE.days, "A run reissues (and rolls out) every certificate that expires within this many days; less than cert_validity_days. A CA with less than this left stops the run: replace it.", check=_int_in(1, 36500)),
    Key("ca_validity_days", pki.CA_VALIDITY.days, "Days a CA the deploy creates is valid (an imported or existing CA keeps its own dates).", check=_int_in(1, 36500)),
    Key("ca_cert_file", None, "Import this CA certificate instead of creating one (with ca_key_file).", check=_opt_path),
    Key("ca_key_file", None, "Private key of the imported CA; stays on the deploy machine.", check=_opt_path),
    Key("sa_key_file", None, "Import this service-account signing key (PEM) instead of creating one; stays on the deploy machine.", check=_opt_path),
    Key("replace_ca_sha256", None, "sha256 of the masters' ca.pem that this run may replace (the refusal prints it). Replacing the CA reissues every certificate: a deliberate change.", check=_sha256),
    Key("replace_sa_sha256", None, "sha256 of the masters' sa.pub that this run may replace. A new service-account key invalidates every service-account token.", check=_sha256),
    Key("etcd_ca_cert_file", None, "The existing etcd's CA certificate (etcd trusts it; it signed etcd's serving certificate). With etcd_ca_key_file, or with etcd_client_cert_file + etcd_client_key_file. Unset: the deploy creates etcd-ca.pem in pki_dir.", check=_opt_path),
    Key("etcd_ca_key_file", None, "Private key of etcd_ca_cert_file: the deploy issues the apiserver's etcd client certificate from it. Stays on the deploy machine.", check=_opt_path),
    Key("etcd_client_cert_file", None, "Instead of etcd_ca_key_file: the apiserver's etcd client certificate, issued by etcd_ca_cert_file elsewhere (clientAuth).", check=_opt_path),
    Key("etcd_client_key_file", None, "Private key of etcd_client_cert_file.", check=_opt_path),
    Key("kubelet_certificate_authority_file", None, "Local PEM file of the CA(s) that signed the kubelets' serving certificates: uploaded to /etc/kubernetes/ssl/kubelet-ca.pem and passed as --kubelet-certificate-authority (CIS 1.2.6 / 1.2.5), so the apiserver verifies each kubelet it calls (logs, exec, port-forward). Unset: the apiserver does not verify kubelets, as upstream; set it only once every kubelet serves a certificate from that CA (README: Hardening).", check=_opt_ca_cert),
    Key("pki_dir", "pki", "Local, git-ignored directory holding the CA and all issued certificates (no control characters).", check=_local_path),
    # Step 2 — audit policy (tasks/audit.py).
    Key("audit_policy_rules", [{"level": "Metadata"}], "Rules of the audit policy (audit.k8s.io/v1); strings without control characters.", check=_rules),
    Key("audit_log_path", "/var/log/k8s-audit.log", "--audit-log-path: an absolute path of letters, digits and `._/@%+,:=-` (or `-` for stdout).", check=_audit_log_path),
    Key("audit_log_maxage", 30, "--audit-log-maxage (days).", check=_int_in(0, 3650)),
    Key("audit_log_maxbackup", 10, "--audit-log-maxbackup: rotated audit files kept (the tutorial's 3 fails CIS 1.2.24 / 1.2.18, which want at least 10; with audit_log_maxsize, up to 11 x 100 MB on disk).", check=_int_in(0, 1000)),
    Key("audit_log_maxsize", 100, "--audit-log-maxsize (MB).", check=_int_in(1, 100000)),
    # Step 2b — Secrets encrypted at rest (tasks/encryption.py).
    Key("secrets_encryption", True, "Encrypt Secrets in etcd (--encryption-provider-config; identity stays last, so Secrets written before stay readable). On by default: the keys live in pki_dir, which must be kept safe anyway; turning it off while a master's config is live is refused.", check=_bool),
    Key("secrets_encryption_provider", "secretbox", "Provider of the keys: secretbox or aescbc. Cannot change while a master's config is live (refused).", check=_provider),
    Key("secrets_encryption_keys", ["key1"], "Key names, each [a-z0-9-]{1,32}, unique; the first encrypts new writes, every one decrypts. Each is 32 random bytes made once in pki_dir/encryption/<name>.key (0600). Rotation: README, Day two.", check=_key_names),
    # Step 3 — kube-apiserver (tasks/apiserver.py).
    Key("kube_version", flagmod.DEFAULT_KUBE_VERSION, "Kubernetes version; flags are rendered for it. Supported: 1.20 and 1.35-1.37.", check=_version),
    Key("kube_apiserver_binary", None, "Local path of a kube-apiserver binary to upload (air-gapped installs, the lab's build).", check=_opt_path),
    Key("kube_apiserver_url", "https://dl.k8s.io/release/v{version}/bin/linux/{arch}/kube-apiserver", "Download URL (http or https) when no local binary is given. `{version}` is filled in with kube_version, `{arch}` per host with its architecture (amd64, arm64, ...); no other placeholder, no spaces, quotes, `$`, `&` or `;`.", check=_url(("http", "https"), placeholder=True)),
    Key("kube_apiserver_sha256", None, "sha256 of the downloaded binary (for every master: one architecture per cluster); required when downloading. The download is checked on the host before it is staged; a mismatch is refused and the live binary stays.", check=_sha256),
    Key("apiserver_port", 6443, "Port each apiserver listens on at its bind_address.", check=_int_in(1, 65535)),
    Key("etcd_servers", REQUIRED, "List of https://HOST:PORT etcd client URLs (HOST an IPv4 address, an IPv6 address in brackets such as `https://[fd00::20]:2379`, or a DNS name).", check=_etcd_urls),
    Key("service_cluster_ip_range", "10.254.0.0/16", "Service CIDR, of the masters' family (IPv6: a prefix of /108 or longer, the apiserver's limit); its first address goes into the serving certificate. Must not contain a VIP or a bind_address.", check=_cidr),
    Key("service_node_port_range", "30000-32767", "NodePort range, LOW-HIGH.", check=_port_range),
    Key("cluster_domain", "cluster.local", "Cluster DNS domain (kubernetes.default.svc.<domain> SAN); a DNS name.", check=_cluster_domain),
    Key("admission_plugins", ["NamespaceLifecycle", "NodeRestriction", "LimitRanger", "ServiceAccount", "DefaultStorageClass", "ResourceQuota"], "--enable-admission-plugins (the tutorial's list without the removed Initializers); each must exist in kube_version.", check=_admission_plugins),
    Key("authorization_mode", "Node,RBAC", "--authorization-mode: comma-separated, each of AlwaysAllow, AlwaysDeny, ABAC, Webhook, RBAC, Node at most once.", check=_authorization_modes),
    Key("allow_privileged", True, "--allow-privileged.", check=_bool),
    Key("log_level", 0, "--v.", check=_int_in(0, 10)),
    Key("event_ttl", "1h", "--event-ttl (a number with ms, s, m or h).", check=_go_duration),
    Key("apiserver_ready_timeout", 120, "Seconds a restarted apiserver has to answer /readyz and be UP in haproxy; otherwise the roll puts its previous inputs back and stops.", check=_int_in(10, 3600)),
    Key("shutdown_delay_seconds", 5, "--shutdown-delay-duration: keeps serving after SIGTERM while haproxy drains this master.", check=_int_in(0, 600)),
    Key("service_account_issuer", "https://kubernetes.default.svc.cluster.local", "--service-account-issuer: an https:// URL without query or fragment.", check=_url(("https",), query=False)),
    Key("apiserver_extra_flags", {}, "Extra apiserver flags {name: value}; rejected unless the version accepts them. A value is a number, true/false or a string of letters, digits and `._:/=,@+%*-`.", check=_flag_map),
    # Step 5 — keepalived (tasks/keepalived.py).
    Key("vip", REQUIRED, "Virtual IP address that haproxy listens on and clients use (the kubeconfig's server), of the masters' family (an IPv6 vip needs vrrp_version 3: VRRPv2 has no IPv6): a host address of vip/vip_prefix (not its network or broadcast address) that no host, master or etcd server of the inventory has. Changing it on a running cluster is checked first (README: Changing the VIP or ports on a live cluster).", check=_vip),
    Key("vip_prefix", 24, "Prefix length of the VIP's subnet (1-32 for IPv4, 1-128 for IPv6); every master's bind_address must be inside it.", check=_int_in(1, 128)),
    Key("vip6", None, "Dual-stack front: an IPv6 VIP beside an IPv4 `vip`, held by the same master and moving with it (keepalived's `virtual_ipaddress_excluded` of the one VRRP instance), haproxy listening on both, both in the serving certificate; the kubeconfig keeps `vip`. Nobody's address in the inventory, outside the Service CIDR. Unset: one VIP.", check=_opt_vip6),
    Key("vip6_prefix", 64, "Prefix length of vip6 on the VRRP interface, 1-128.", check=_int_in(1, 128)),
    Key("virtual_router_id", 51, "VRRP virtual_router_id, 1-255, unique on the LAN.", check=_int_in(1, 255)),
    Key("vrrp_version", 2, "VRRP version: 2, or 3 (RFC 5798) for adverts faster than once a second (README: Fast failover (opt-in)). Version 3 carries no password: it needs vrrp_unicast true and neither vrrp_auth_pass_file nor HAKUBE_VRRP_AUTH_PASS; keepalived then accepts adverts only from the other masters' addresses, and a firewall should pass IP protocol 112 to a master only from the others.", check=lambda v: _choice(v, (2, 3))),
    Key("vrrp_advert_int", 1, "VRRP advert interval in seconds (failover takes about 3 of them): an integer 1-255 with vrrp_version 2; with 3, 0.01-40.95 in steps of 0.01 (e.g. 0.2).", check=_advert_int),
    Key("vrrp_unicast", False, "true: VRRP adverts go by unicast from each master's bind_address to every other master's (`unicast_src_ip`, `unicast_peer`) instead of multicast, for networks that drop multicast (clouds, some switches).", check=_bool),
    Key("vrrp_auth_pass_file", None, f"File holding the VRRP password (at most 8 printable ASCII characters; no spaces, quotes, braces, `#`, `!`, `$`, backslash or backtick). The environment variable {AUTH_PASS_ENV} wins over it. Required one way or the other with vrrp_version 2; refused with 3 (no authentication there).", check=_opt_local_path),
    Key("keepalived_extra_global_defs", [], "Raw lines added to keepalived's global_defs; each one printable line (no newline, tab or other control character) without `{` or `}`.", check=_raw_lines(forbidden="{}", what="keepalived")),
    # Step 6 — haproxy (tasks/haproxy.py).
    Key("lb_port", 6443, "Port haproxy listens on at the VIP. May equal apiserver_port (other address), no other port of the deploy.", check=_int_in(1, 65535)),
    Key("haproxy_agent_port", 6444, "Port of each master's haproxy agent on its bind_address (drains an apiserver before the deploy restarts it); a port of its own.", check=_int_in(1, 65535)),
    Key("haproxy_check_interval_ms", 1000, "haproxy health-check interval (GET /livez with a client certificate).", check=_int_in(100, 60000)),
    Key("haproxy_check_fall", 2, "Failed checks before a backend leaves rotation.", check=_int_in(1, 100)),
    Key("haproxy_check_rise", 2, "Good checks before a backend returns to rotation.", check=_int_in(1, 100)),
    Key("haproxy_timeout", "1h", "Client/server/tunnel timeout: long enough for watches, logs -f and exec.", check=_duration),
    Key("haproxy_extra_defaults", [], "Raw lines added to haproxy's defaults section; each one printable line (no newline, tab or other control character) that does not open another section.", check=_raw_lines(sections=HAPROXY_SECTIONS, what="haproxy")),
    Key("haproxy_stats_port", 8404, "Port of haproxy's stats page on 127.0.0.1 (the roll waits there for its master to be UP again); a port of its own.", check=_int_in(1, 65535)),
    # Step 7 — admin kubeconfig (tasks/kubeconfig.py).
    Key("artifacts_dir", "artifacts", "Local directory for the operator's admin kubeconfig (no control characters).", check=_local_path),
    Key("cluster_name", "kubernetes", "Cluster name in the kubeconfig: a plain name (letters, digits and `_.:@-`, at most 32).", check=_word),
    # Metrics (tasks/metrics.py; README: Metrics and alerts).
    Key("metrics", True, "Metrics for Prometheus on every master: haproxy's built-in exporter (haproxy_metrics_port), prometheus-node-exporter (node_exporter_port) with keepalived's VRRP state and the certificates' expiry in its textfile directory. Both listen on metrics_address only; a firewall in front of them is the operator's. false: none of it is rendered (what an earlier run installed stays).", check=_bool),
    Key("metrics_address", None, "This master's IPv4 address the exporters listen on; unset: its bind_address. Not 0.0.0.0.", per_host=True, check=_metrics_ip),
    Key("haproxy_metrics_port", 8405, "Port of haproxy's Prometheus exporter (`/metrics`) on metrics_address; a port of its own.", check=_int_in(1, 65535)),
    Key("node_exporter_port", 9100, "Port of prometheus-node-exporter on metrics_address (its `--web.listen-address`); a port of its own.", check=_int_in(1, 65535)),
)
KEY_BY_NAME = {k.name: k for k in KEYS}
CHECKS = {k.name: k.check for k in KEYS}  # what the collector asks (a test may swap one)
CLUSTER_KEYS = tuple(k for k in KEYS if not k.per_host)


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


#: what protects VRRPv3's adverts instead of a password (said by the problems and the README)
V3_PROTECTION = ("VRRPv3 has no authentication (keepalived ignores auth_pass with vrrp_version 3): its adverts "
                 "are protected by vrrp_unicast (keepalived accepts them only from the other masters' addresses, "
                 "check_unicast_src) and by a firewall that passes IP protocol 112 to a master only from the others")


def _vrrp_v3(col: _Collector, host: str, values: Mapping[str, Any], env: Mapping[str, str]) -> None:
    """vrrp_version 3: no password anywhere, unicast peers, an advert interval of at most 40.95 s
    (12 bits of centiseconds, RFC 5798)."""
    advert = values["vrrp_advert_int"]
    if advert is not None and advert > 40.95:
        col.add(host, "vrrp_advert_int", f"{advert:g} is outside 0.01-40.95: VRRPv3 carries the interval in 12 bits "
                                         "of centiseconds")
    if values["vrrp_auth_pass_file"] is not None:
        col.add(host, "vrrp_auth_pass_file", f"remove it: {V3_PROTECTION}")
    if env.get(AUTH_PASS_ENV):
        col.add(host, "vrrp_version", f"3 with {AUTH_PASS_ENV} set: unset it, it would protect nothing. {V3_PROTECTION}")
    if values["vrrp_unicast"] is False:
        col.add(host, "vrrp_unicast", f"must be true with vrrp_version 3: {V3_PROTECTION}")


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
    elif not re.fullmatch(r"[!-~]+", secret) or any(c in secret for c in AUTH_PASS_FORBIDDEN):
        # Never echo the secret: name its source and the rule only.
        col.add(host, key, f"VRRP password from {source} must be printable ASCII without spaces, "
                           f"quotes, braces, #, !, $, backslash or backtick (keepalived would misread it)")
    else:
        return secret
    return None


def _lifetimes(col: _Collector, host: str, values: Mapping[str, Any]) -> None:
    """A fresh certificate must lie outside the renewal window (or every run would reissue it),
    and a CA the deploy creates must outlive the certificates it issues."""
    validity, renewal, ca_validity = (values[k] for k in ("cert_validity_days", "cert_renewal_days", "ca_validity_days"))
    if validity and renewal and renewal >= validity:
        col.add(host, "cert_renewal_days", f"{renewal} must be less than cert_validity_days ({validity}): "
                                           "otherwise every run reissues every certificate")
    if validity and ca_validity and validity > ca_validity:
        col.add(host, "cert_validity_days", f"{validity} is more than ca_validity_days ({ca_validity})")


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


def _membership(col: _Collector, masters_raw, masters: list[Master], others) -> None:
    """``leaving`` only on a master, and at least 2 masters that stay (a cluster of one has no
    failover: add a master first)."""
    for name, data in others:
        if data.get("leaving", False) is not False:
            col.add(name, "leaving", "only a master can leave: this host is not in the masters group")
    leavers = [m.name for m in masters if m.leaving]
    if not leavers:
        return
    # A master whose data is invalid counts as staying only if it does not ask to leave.
    staying = [n for n, d in masters_raw if d.get("leaving", False) is not True]
    if len(staying) < 2:
        left = f"only {', '.join(staying)} would remain" if staying else "no master would remain"
        for name in leavers:
            col.add(name, "leaving", f"{left}; at least 2 masters must stay: add a master (and run) before "
                                     "removing this one")


def etcd_endpoints(urls) -> list[tuple[str, int, str]]:
    """(host, port, url) of every etcd URL (host: an IPv4 address or a DNS name as written, an IPv6
    address without its brackets, in canonical text)."""
    out = []
    for url in urls or ():
        m = re.fullmatch(r"https://(\[[^\]/]+\]|[^/:\[\]]+):([0-9]{1,5})/?", url)
        if m:
            host = m.group(1)
            if host.startswith("["):
                try:
                    host = str(ipaddress.ip_address(host[1:-1]))
                except ValueError:
                    continue
            out.append((host, int(m.group(2)), url))
    return out


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def _family(text: str) -> int | None:
    try:
        return ipaddress.ip_address(text).version
    except ValueError:
        return None


def _is_ipv4(text: str) -> bool:
    return _family(text) == 4


def host_address(name: str, data: Mapping[str, Any]) -> str | None:
    """The IP address pyinfra reaches a host at, when the inventory names one (``ssh_hostname``,
    or the host's name itself); None for a DNS name or a container."""
    for candidate in (data.get("ssh_hostname"), name.rsplit("/", 1)[-1]):
        if isinstance(candidate, str) and _is_ip(candidate):
            return str(ipaddress.ip_address(candidate))
    return None


FAMILY_NAME = {4: "IPv4", 6: "IPv6"}


def _families(col: _Collector, first: str, values: Mapping[str, Any], masters: list[Master]) -> bool:
    """One family for the masters, their VIP and the Service CIDR; ``vip6`` only beside an IPv4
    ``vip``; each prefix within its family. True when the families agree (the subnet and address
    checks that follow compare addresses of one family only)."""
    ok = True
    of = {m.name: ipaddress.ip_address(m.bind_address).version for m in masters}
    # the masters' family: most of them (the first master's on a tie); the others are named
    family = max(dict.fromkeys(of.values()), key=list(of.values()).count) if of else None
    for m in masters:
        if of[m.name] != family:
            col.add(m.name, "bind_address", f"{m.bind_address} is {FAMILY_NAME[of[m.name]]}, the other masters' are "
                                            f"{FAMILY_NAME[family]}: every master's bind_address must be of one family "
                                            "(the apiserver advertises them as the endpoints of one Service, VRRP peers "
                                            "speak one family)")
            ok = False
    vip, prefix, vip6 = values["vip"], values["vip_prefix"], values["vip6"]
    vip_family = _family(vip) if vip else None
    if vip_family and prefix and vip_family == 4 and prefix > 32:
        col.add(first, "vip_prefix", f"{prefix} is outside 1-32, the prefix lengths of an IPv4 vip ({vip})")
        ok = False
    if vip_family and family and ok and vip_family != family:
        col.add(first, "vip", f"{vip} is {FAMILY_NAME[vip_family]}, the masters' bind_address are "
                              f"{FAMILY_NAME[family]}: the VRRP instance speaks the vip's family, and vip/vip_prefix "
                              "must hold every bind_address. For an IPv6 VIP beside IPv4 masters keep an IPv4 vip and "
                              "add vip6")
        ok = False
    if vip6 and vip_family == 6:
        col.add(first, "vip6", f"{vip6} beside the IPv6 vip {vip}: vip6 is the IPv6 VIP of a dual-stack front whose "
                               "vip is IPv4 (two VIPs of one family are not supported)")
        ok = False
    if ok and vip_family == 6 and values["vrrp_version"] == 2:
        col.add(first, "vrrp_version", f"2 with the IPv6 vip {vip}: VRRPv2 has no IPv6 (keepalived would switch "
                                       "to version 3 and ignore the password); set vrrp_version: 3 (with vrrp_unicast: "
                                       "true, and no VRRP password)")
    cidr = values["service_cluster_ip_range"]
    if ok and cidr and family and ipaddress.ip_network(cidr).version != family:
        col.add(first, "service_cluster_ip_range",
                f"{cidr} is {FAMILY_NAME[ipaddress.ip_network(cidr).version]}, the masters' bind_address are "
                f"{FAMILY_NAME[family]}: the kubernetes Service's cluster IP and its endpoints (the masters' "
                "advertise addresses) are of one family")
        ok = False
    return ok


def _addresses(col: _Collector, first: str, values: Mapping[str, Any], masters: list[Master], hosts) -> None:
    """Keys that share the address space: the VIP must be nobody's address and a usable host address
    of its subnet; a Service's cluster IP must never be a host's. Each problem names its key."""
    vip, prefix, cidr = values["vip"], values["vip_prefix"], values["service_cluster_ip_range"]
    etcd = etcd_endpoints(values["etcd_servers"])
    named = {}  # address -> what the inventory says it is (a host's, etcd's)
    for name, data, _ in hosts:
        if (address := host_address(name, data)) is not None:
            named.setdefault(address, f"the address of host {name}")
    for m in masters:
        named[m.bind_address] = f"{m.name}'s bind_address"
    for host, _, url in etcd:
        if _is_ip(host):
            named.setdefault(host, f"the etcd server of {url}")
    vip6 = values["vip6"]
    if vip6:
        if vip6 in named:
            col.add(first, "vip6", f"{vip6} is {named[vip6]}: keepalived would take that address over and cut it off; "
                                   "choose a free address")
    if vip and prefix and not (_family(vip) == 4 and prefix > 32):
        net = ipaddress.ip_network(f"{vip}/{prefix}", strict=False)
        inside = all(ipaddress.ip_address(m.bind_address) in net for m in masters)  # else reported above
        # IPv4: the network and broadcast addresses; IPv6 has no broadcast, and its network address
        # is the subnet-router anycast address (RFC 4291), which no host may take either.
        specials = ((net.network_address, "network"), (net.broadcast_address, "broadcast")) if net.version == 4 \
            else ((net.network_address, "subnet-router anycast (network)"),)
        if prefix <= net.max_prefixlen - 2 and inside:
            for special, what in specials:
                if ipaddress.ip_address(vip) == special:
                    col.add(first, "vip", f"{vip} is the {what} address of {net}: choose a host address of that "
                                          "subnet (or the right vip_prefix)")
                for m in masters:
                    if ipaddress.ip_address(m.bind_address) == special:
                        col.add(m.name, "bind_address", f"{m.bind_address} is the {what} address of the VIP's "
                                                        f"subnet {net}")
        owner = named.get(vip)
        if owner and not any(m.bind_address == vip for m in masters):  # a master's is reported as bind_address
            col.add(first, "vip", f"{vip} is {owner}: keepalived would take that address over and cut it off; "
                                  "choose a free address")
    # A Service must never get a VIP, a host's or etcd's address as its cluster IP.
    if cidr:
        services = ipaddress.ip_network(cidr)
        for address in (vip, vip6):
            if address and ipaddress.ip_address(address) in services:
                col.add(first, "service_cluster_ip_range", f"{cidr} contains the VIP {address}: a Service could get it "
                                                           "as its cluster IP")
        for address, owner in named.items():
            if ipaddress.ip_address(address) in services:
                m = next((m for m in masters if m.bind_address == address), None)
                col.add(m.name if m else first, "service_cluster_ip_range",
                        f"{cidr} contains {owner} ({address}): a Service could get it as its cluster IP"
                        if not m else f"{cidr} contains {m.name}'s bind_address {address}: a Service could get it "
                                      "as its cluster IP")


#: The ports a master listens on (key, where): each its own, so no two listeners meet on one
#: address and port, and a firewall rule for one never opens or closes another. The frontend
#: alone may share the apiserver's port: it binds the VIP, the apiserver the master's own address
#: (both 6443 by default).
LISTENERS = (
    ("apiserver_port", "the apiserver on bind_address"),
    ("lb_port", "haproxy's frontend on the VIP"),
    ("haproxy_agent_port", "the haproxy agent on bind_address"),
    ("haproxy_stats_port", "haproxy's stats on 127.0.0.1"),
    ("haproxy_metrics_port", "haproxy's Prometheus exporter on metrics_address"),
    ("node_exporter_port", "the node exporter on metrics_address"),
)
METRICS_PORTS = frozenset({"haproxy_metrics_port", "node_exporter_port"})  # listen only with metrics on
SHARED_PORT_OK = frozenset({("apiserver_port", "lb_port")})


def _listeners(col: _Collector, first: str, values: Mapping[str, Any], masters: list[Master]) -> None:
    ports = [(key, values[key], where) for key, where in LISTENERS if values[key] is not None
             and (values["metrics"] is not False or key not in METRICS_PORTS)]
    for i, (key_a, port_a, where_a) in enumerate(ports):
        for key_b, port_b, where_b in ports[i + 1:]:
            if port_a == port_b and (key_a, key_b) not in SHARED_PORT_OK:
                col.add(first, key_b, f"{port_b} is also {key_a} ({where_a}); {where_b} needs a port of its own")
    # etcd on a master itself (on its bind_address or loopback) listens there too.
    local = {m.bind_address for m in masters} | {"localhost"}
    for host, port, url in etcd_endpoints(values["etcd_servers"]):
        if host in local or (_is_ip(host) and ipaddress.ip_address(host).is_loopback):
            for key, used, where in ports:
                if used == port:
                    col.add(first, key, f"{port} is etcd's port on a master ({url}): {where} cannot listen there too")


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
        per_host = {k: col.value(name, data, k) for k in ("bind_address", "vrrp_priority", "vrrp_interface", "leaving")}
        metrics_address = col.value(name, data, "metrics_address")  # None: its bind_address
        if None not in per_host.values():
            masters.append(Master(name=name, **per_host, metrics_address=metrics_address))
    _membership(col, masters_raw, masters, [(n, d) for n, d, g in hosts if "masters" not in g])

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
    families_agree = _families(col, first, values, masters)
    vip, prefix = values["vip"], values["vip_prefix"]
    if vip and prefix and families_agree:
        net = ipaddress.ip_network(f"{vip}/{prefix}", strict=False)
        for m in masters:
            if ipaddress.ip_address(m.bind_address) not in net:
                col.add(m.name, "vip", f"VIP {vip}/{prefix} is not in the subnet of bind_address {m.bind_address}")
            if m.bind_address == vip:
                col.add(m.name, "bind_address", "equals the VIP")
            if m.metrics_address == vip:
                col.add(m.name, "metrics_address", "equals the VIP: the exporters listen on this master's own address")
    _addresses(col, first, values, masters, hosts)
    _listeners(col, first, values, masters)
    version = values["kube_version"]
    if version and values["apiserver_extra_flags"] is not None:
        for name in values["apiserver_extra_flags"]:
            problem = flagmod.extra_flag_problem(name, flagmod.minor_of(version))
            if problem:
                col.add(first, "apiserver_extra_flags", f"{problem} (kube_version {version})")
    if version:
        modes = values["authorization_mode"]
        for key, names, problem_of in (
            ("admission_plugins", values["admission_plugins"] or (), flagmod.admission_plugin_problem),
            ("authorization_mode", modes.split(",") if modes else (), flagmod.authorization_mode_problem),
        ):
            for name in names:
                if problem := problem_of(name, flagmod.minor_of(version)):
                    col.add(first, key, f"{problem} (kube_version {version})")
    if (values["ca_cert_file"] is None) != (values["ca_key_file"] is None) and not any(
        p.startswith(f"{first}: ca_") for p in col.problems
    ):
        col.add(first, "ca_cert_file", "importing a CA needs both ca_cert_file and ca_key_file")
    _lifetimes(col, first, values)
    _etcd_import(col, first, first_data, values)  # etcd's CA: imported with its key or with a client cert
    # Raw values: an explicit `kube_apiserver_binary: None` still downloads, and a bad binary path
    # or malformed sha256 is already reported under its own key.
    if first_data.get("kube_apiserver_binary") is None and first_data.get("kube_apiserver_sha256") is None:
        col.add(first, "kube_apiserver_sha256", "required when the binary is downloaded (no kube_apiserver_binary given)")
    if values["haproxy_check_interval_ms"] and values["shutdown_delay_seconds"] is not None:
        drain_ms = values["haproxy_check_interval_ms"] * ((values["haproxy_check_fall"] or 2) + 1)
        if values["shutdown_delay_seconds"] * 1000 < drain_ms:
            col.add(first, "shutdown_delay_seconds", f"must be at least {drain_ms / 1000:g}s (haproxy check interval x (fall + 1)) so a restart drops no request")
    if values["secrets_encryption"] and values["secrets_encryption_keys"] == ():
        col.add(first, "secrets_encryption_keys", "empty while secrets_encryption is true: name at least one key")
    if any(line.split()[:1] == ["vrrp_version"] for line in values["keepalived_extra_global_defs"] or ()):
        col.add(first, "keepalived_extra_global_defs", "a raw vrrp_version line: set the vrrp_version key instead "
                                                       "(the password, the interval and the switch follow it)")
    auth = None
    if values["vrrp_version"] == 3:
        _vrrp_v3(col, first, values, env)
    else:
        if isinstance(values["vrrp_advert_int"], float):
            col.add(first, "vrrp_advert_int", f"{values['vrrp_advert_int']:g} is not a whole number of seconds: "
                                              "VRRPv2 advertises at most once a second (a fraction needs vrrp_version 3)")
        if not any(p.startswith(f"{first}: vrrp_auth_pass_file: ") for p in col.problems):
            auth = _auth_pass(col, first, values["vrrp_auth_pass_file"], env)


    if col.problems:
        raise InventoryError(col.problems)

    values.pop("vrrp_auth_pass_file")
    cluster = Cluster(masters=tuple(m for m in masters if not m.leaving), vrrp_auth_pass=auth,
                      leaving=tuple(m for m in masters if m.leaving), **values)
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
            leaving=m.leaving if m else False,
            metrics_address=m.metrics_bind if m else None,
        )
    return out


def inventory_warnings(settings: Mapping[str, Settings]) -> list[str]:
    """Warnings about data ``load_inventory`` accepted, one line each naming host and key.

    Today: extra flags the chosen kube_version accepts but reports as deprecated.
    """
    cluster = next(iter(settings.values())).cluster if settings else None
    if cluster is None or not cluster.masters:
        return []
    first, minor = cluster.masters[0].name, flagmod.minor_of(cluster.kube_version)
    return [
        f"{first}: apiserver_extra_flags: {warning} (kube_version {cluster.kube_version})"
        for name in cluster.apiserver_extra_flags
        if (warning := flagmod.deprecation_warning(name, minor))
    ]


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
