"""kube-apiserver flags per Kubernetes version.

One table (``FLAGS``) says in which minor version each flag appeared and in which it was removed.
``apiserver_env`` renders the tutorial's environment files (``/etc/kubernetes/config`` and
``/etc/kubernetes/apiserver``) for the target version: flags the version no longer has are dropped,
the service-account issuer and signing-key flags are always set, and every rendered flag is checked
against the table so that a typo here can never reach a host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:  # pragma: no cover
    from .settings import Settings

Version = tuple[int, int]

#: Minor versions this project supports: the lab's real 1.20 and upstream's supported releases.
SUPPORTED_MINORS: tuple[Version, ...] = ((1, 20), (1, 35), (1, 36), (1, 37))
DEFAULT_KUBE_VERSION = "1.36.0"

BASE: Version = (1, 0)


@dataclass(frozen=True)
class Flag:
    since: Version = BASE
    removed: Version | None = None  # first minor version that no longer accepts the flag

    def accepted_by(self, version: Version) -> bool:
        return self.since <= version and (self.removed is None or version < self.removed)


_KLOG_REMOVED = (1, 26)

FLAGS: dict[str, Flag] = {
    # Removed flags the tutorial (Kubernetes ~1.10) still used.
    "insecure-port": Flag(removed=(1, 24)),
    "insecure-bind-address": Flag(removed=(1, 24)),
    "kubelet-https": Flag(removed=(1, 22)),
    "enable-swagger-ui": Flag(removed=(1, 24)),
    "logtostderr": Flag(removed=_KLOG_REMOVED),
    "alsologtostderr": Flag(removed=_KLOG_REMOVED),
    "log-dir": Flag(removed=_KLOG_REMOVED),
    "log-file": Flag(removed=_KLOG_REMOVED),
    "log-file-max-size": Flag(removed=_KLOG_REMOVED),
    "skip-headers": Flag(removed=_KLOG_REMOVED),
    "skip-log-headers": Flag(removed=_KLOG_REMOVED),
    "stderrthreshold": Flag(removed=_KLOG_REMOVED),
    "add-dir-header": Flag(removed=_KLOG_REMOVED),
    "one-output": Flag(removed=_KLOG_REMOVED),
    # Flags that appeared after 1.20.
    "service-account-jwks-uri": Flag(since=(1, 21)),
    "tracing-config-file": Flag(since=(1, 22)),
    "shutdown-send-retry-after": Flag(since=(1, 24)),
    "shutdown-watch-termination-grace-period": Flag(since=(1, 27)),
    "authorization-config": Flag(since=(1, 29)),
    "authentication-config": Flag(since=(1, 30)),
    "emulated-version": Flag(since=(1, 31)),
}

# Flags present in 1.20 and still present in 1.35-1.37.
for _name in """
    admission-control-config-file advertise-address allow-privileged anonymous-auth api-audiences
    apiserver-count audit-log-batch-max-size audit-log-compress audit-log-format audit-log-maxage
    audit-log-maxbackup audit-log-maxsize audit-log-mode audit-log-path audit-policy-file
    audit-webhook-config-file audit-webhook-mode authentication-token-webhook-cache-ttl
    authentication-token-webhook-config-file authorization-mode authorization-webhook-config-file
    bind-address cert-dir client-ca-file cors-allowed-origins default-not-ready-toleration-seconds
    default-unreachable-toleration-seconds default-watch-cache-size delete-collection-workers
    disable-admission-plugins egress-selector-config-file enable-admission-plugins
    enable-aggregator-routing enable-bootstrap-token-auth enable-garbage-collector
    enable-priority-and-fairness encryption-provider-config endpoint-reconciler-type etcd-cafile
    etcd-certfile etcd-compaction-interval etcd-count-metric-poll-period etcd-keyfile etcd-prefix
    etcd-servers etcd-servers-overrides event-ttl external-hostname feature-gates goaway-chance
    http2-max-streams-per-connection kubelet-certificate-authority kubelet-client-certificate
    kubelet-client-key kubelet-preferred-address-types kubelet-timeout kubernetes-service-node-port
    livez-grace-period log-flush-frequency max-connection-bytes-per-sec max-mutating-requests-inflight
    max-requests-inflight min-request-timeout oidc-ca-file oidc-client-id oidc-groups-claim
    oidc-groups-prefix oidc-issuer-url oidc-required-claim oidc-signing-algs oidc-username-claim
    oidc-username-prefix permit-port-sharing profiling proxy-client-cert-file proxy-client-key-file
    request-timeout requestheader-allowed-names requestheader-client-ca-file
    requestheader-extra-headers-prefix requestheader-group-headers requestheader-username-headers
    runtime-config secure-port service-account-issuer service-account-key-file
    service-account-lookup service-account-max-token-expiration service-account-signing-key-file
    service-cluster-ip-range service-node-port-range show-hidden-metrics-for-version
    shutdown-delay-duration storage-backend storage-media-type strict-transport-security-directives
    tls-cert-file tls-cipher-suites tls-min-version tls-private-key-file tls-sni-cert-key
    token-auth-file v vmodule watch-cache watch-cache-sizes
""".split():
    FLAGS.setdefault(_name, Flag())


#: Flags the deploy derives from data and its own files; extra flags may not override them.
RESERVED: dict[str, str] = {
    **{f: "bind_address" for f in ("advertise-address", "bind-address")},
    "secure-port": "apiserver_port",
    "etcd-servers": "etcd_servers",
    "service-cluster-ip-range": "service_cluster_ip_range",
    "service-node-port-range": "service_node_port_range",
    "enable-admission-plugins": "admission_plugins",
    "authorization-mode": "authorization_mode",
    "allow-privileged": "allow_privileged",
    "v": "log_level",
    "event-ttl": "event_ttl",
    "shutdown-delay-duration": "shutdown_delay_seconds",
    "service-account-issuer": "service_account_issuer",
    "audit-log-path": "audit_log_path",
    "audit-log-maxage": "audit_log_maxage",
    "audit-log-maxbackup": "audit_log_maxbackup",
    "audit-log-maxsize": "audit_log_maxsize",
    **{
        f: "the deploy's PKI"
        for f in (
            "anonymous-auth", "tls-cert-file", "tls-private-key-file", "client-ca-file",
            "service-account-key-file", "service-account-signing-key-file", "etcd-cafile",
            "etcd-certfile", "etcd-keyfile", "kubelet-client-certificate", "kubelet-client-key",
            "audit-policy-file", "logtostderr",
        )
    },
}


class FlagError(ValueError):
    pass


def parse_version(text: str) -> tuple[int, int, int]:
    """``"1.36.2"`` or ``"v1.36.2"`` -> ``(1, 36, 2)``; ValueError when malformed."""
    parts = str(text).lstrip("v").split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"{text!r} is not a version like 1.36.0")
    major, minor, patch = (int(p) for p in parts)
    return major, minor, patch


def minor_of(text: str) -> Version:
    major, minor, _ = parse_version(text)
    return major, minor


def is_supported(text: str) -> bool:
    try:
        return minor_of(text) in SUPPORTED_MINORS
    except ValueError:
        return False


def extra_flag_problem(name: str, version: Version) -> str | None:
    """Why ``--name`` cannot be an extra flag for ``version``, or None when it can."""
    problem = flag_problem(name, version)
    if problem is None and name in RESERVED:
        return f"--{name} is set by the deploy (from {RESERVED[name]}); change that instead"
    return problem


def flag_problem(name: str, version: Version) -> str | None:
    """Why ``--name`` cannot be used with ``version``, or None when it can."""
    info = FLAGS.get(name)
    if info is None:
        return f"unknown kube-apiserver flag --{name}"
    if not info.accepted_by(version):
        if info.removed is not None and version >= info.removed:
            return f"--{name} was removed in {info.removed[0]}.{info.removed[1]}"
        return f"--{name} first appeared in {info.since[0]}.{info.since[1]}"
    return None


@dataclass(frozen=True)
class Paths:
    """Where the deploy puts things on a master."""

    ssl_dir: str = "/etc/kubernetes/ssl"
    audit_policy: str = "/etc/kubernetes/audit-policy.yaml"

    def cert(self, name: str) -> str:
        return f"{self.ssl_dir}/{name}.pem"

    def key(self, name: str) -> str:
        return f"{self.ssl_dir}/{name}-key.pem"

    @property
    def etcd_ca(self) -> str:
        """etcd's CA: verifies etcd's serving certificate (and issued the apiserver's etcd client cert)."""
        return self.cert("etcd-ca")


PATHS = Paths()


def _join(flags: Mapping[str, object]) -> str:
    return " ".join(f"--{k}={v}" for k, v in flags.items())


def config_env(s: "Settings") -> dict[str, str]:
    """``/etc/kubernetes/config``: shared by every host (masters and nodes), as in the tutorial."""
    c = s.cluster
    version = minor_of(c.kube_version)
    env = {}
    if FLAGS["logtostderr"].accepted_by(version):
        env["KUBE_LOGTOSTDERR"] = "--logtostderr=true"
    env["KUBE_LOG_LEVEL"] = f"--v={c.log_level}"
    env["KUBE_ALLOW_PRIV"] = f"--allow-privileged={str(c.allow_privileged).lower()}"
    # Not an apiserver flag: read by the other components (controller-manager, scheduler, ...).
    env["KUBE_MASTER_SECURE"] = f"--master=https://{c.vip}:{c.lb_port}"
    return env


def apiserver_flags(s: "Settings") -> dict[str, dict[str, object]]:
    """The apiserver's flags, grouped as the tutorial's ``/etc/kubernetes/apiserver`` groups them."""
    c = s.cluster
    p = PATHS
    groups: dict[str, dict[str, object]] = {
        "KUBE_API_ADDRESS": {
            "advertise-address": s.bind_address,
            "bind-address": s.bind_address,
            "secure-port": c.apiserver_port,
        },
        "KUBE_ETCD_SERVERS": {"etcd-servers": ",".join(c.etcd_servers)},
        "KUBE_SERVICE_ADDRESSES": {"service-cluster-ip-range": c.service_cluster_ip_range},
        "KUBE_ADMISSION_CONTROL": {"enable-admission-plugins": ",".join(c.admission_plugins)},
        "KUBE_API_ARGS": {
            "authorization-mode": c.authorization_mode,
            "anonymous-auth": "false",
            "enable-bootstrap-token-auth": "true",
            "service-node-port-range": c.service_node_port_range,
            "tls-cert-file": p.cert("apiserver"),
            "tls-private-key-file": p.key("apiserver"),
            "client-ca-file": p.cert("ca"),
            "service-account-key-file": f"{p.ssl_dir}/sa.pub",
            "service-account-signing-key-file": p.key("sa"),
            "service-account-issuer": c.service_account_issuer,
            "storage-backend": "etcd3",
            "etcd-cafile": p.etcd_ca,
            "etcd-certfile": p.cert("apiserver-etcd-client"),
            "etcd-keyfile": p.key("apiserver-etcd-client"),
            "kubelet-client-certificate": p.cert("apiserver-kubelet-client"),
            "kubelet-client-key": p.key("apiserver-kubelet-client"),
            "audit-policy-file": p.audit_policy,
            "audit-log-path": c.audit_log_path,
            "audit-log-maxage": c.audit_log_maxage,
            "audit-log-maxbackup": c.audit_log_maxbackup,
            "audit-log-maxsize": c.audit_log_maxsize,
            "event-ttl": c.event_ttl,
            # Keep serving for a while after SIGTERM while /readyz fails, so haproxy drains this
            # apiserver before it stops listening: a rolling restart drops no request.
            "shutdown-delay-duration": f"{c.shutdown_delay_seconds}s",
        },
    }
    groups["KUBE_API_ARGS"].update(c.apiserver_extra_flags)  # validated: never a RESERVED flag
    return groups


def apiserver_env(s: "Settings") -> dict[str, str]:
    """``/etc/kubernetes/apiserver`` for one master, checked against the flag table."""
    version = minor_of(s.cluster.kube_version)
    groups = apiserver_flags(s)
    problems = [
        problem
        for group in groups.values()
        for name in group
        if (problem := flag_problem(name, version))
    ]
    if problems:
        raise FlagError("; ".join(problems))
    return {var: _join(group) for var, group in groups.items()}
