"""The apiserver's command line as data: the tutorial's environment files for one host.

``config_env`` is ``/etc/kubernetes/config`` (every host), ``apiserver_env`` the per-master
``/etc/kubernetes/apiserver``: flags the target version no longer has are dropped, the
service-account issuer and signing-key flags are always set, and every rendered flag is checked
against the version table (``hakube.flags``) so that a typo here can never reach a host.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

from .flags import FLAGS, FlagError, flag_problem, minor_of
from .paths import PATHS

if TYPE_CHECKING:  # pragma: no cover
    from .settings import Settings


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
    env["KUBE_MASTER_SECURE"] = f"--master={c.server_url}"
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
            **({"kubelet-certificate-authority": p.cert("kubelet-ca")} if c.kubelet_certificate_authority_file else {}),
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
    if c.secrets_encryption:
        groups["KUBE_API_ARGS"]["encryption-provider-config"] = p.encryption_config
    groups["KUBE_API_ARGS"].update(graceful_shutdown_flags(minor_of(c.kube_version), c.shutdown_delay_seconds))
    groups["KUBE_API_ARGS"].update(cis_flags(minor_of(c.kube_version)))
    groups["KUBE_API_ARGS"].update(c.apiserver_extra_flags)  # validated: never a RESERVED flag
    return groups


#: The apiserver's own help for clients that keep their connections, by the version that has it
#: (sources in ``hakube.flags.FLAGS``). Each is a default: ``apiserver_extra_flags`` overrides it
#: (e.g. ``goaway-chance: 0`` turns it off).
GRACEFUL_SHUTDOWN = (
    # 1.18+: now and then an HTTP/2 client is sent a graceful GOAWAY, so after a roll client-go's one
    # connection per server moves to the other apiservers too (0.001 is upstream's advice behind a
    # load balancer). Graceful: the request answered, new ones retried on a new connection.
    ("goaway-chance", lambda delay: "0.001"),
    # 1.23+: after the shutdown delay, a request on a kept connection is answered 429 with
    # Retry-After and `Connection: close` instead of the connection being closed under it:
    # client-go retries it; HTTP/1.1 keep-alive clients reconnect.
    ("shutdown-send-retry-after", lambda delay: "true"),
    # 1.27+: watches are ended (rate-limited) during the shutdown instead of held until the request
    # timeout, so their clients re-watch at once from their resourceVersion.
    ("shutdown-watch-termination-grace-period", lambda delay: f"{max(delay, 5)}s"),
)


def graceful_shutdown_flags(version, shutdown_delay: int) -> dict[str, str]:
    """The flags of ``GRACEFUL_SHUTDOWN`` that ``version`` accepts."""
    return {name: value(shutdown_delay) for name, value in GRACEFUL_SHUTDOWN if FLAGS[name].accepted_by(version)}


#: CIS benchmark section 1.2 (``hakube.cis``): flags whose upstream default fails a check, set to
#: the value the check wants on every version that has the flag (sources in ``hakube.flags.FLAGS``).
#: Each is a default: ``apiserver_extra_flags`` overrides it (e.g. ``profiling: true``).
CIS_DEFAULTS = (
    # cis-1.6 1.2.21, cis-1.12 1.2.15: no /debug/pprof on the serving port.
    ("profiling", "false"),
    # cis-1.12 1.2.30: service-account tokens injected by admission expire when they say (1 h by
    # default) instead of being extended to a year; a client that reads its token only once fails
    # when it expires (README, Hardening: apiserver_extra_flags turns the extension back on).
    ("service-account-extend-token-expiration", "false"),
)


def cis_flags(version) -> dict[str, str]:
    """The flags of ``CIS_DEFAULTS`` that ``version`` accepts."""
    return {name: value for name, value in CIS_DEFAULTS if FLAGS[name].accepted_by(version)}


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
