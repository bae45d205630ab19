"""kube-apiserver flags per Kubernetes version.

One table (``FLAGS``) says in which minor version each flag appeared, was deprecated and was
removed; two more say the same of admission plugins and authorization modes. Settings check data
against them; ``hakube.apiserver_args`` checks every flag it renders. This module knows no settings.

Where the table comes from: for 1.20, the lab's real v1.20.2 binary (``kube-apiserver --help``, read
with ``parse_help``; ``tests/integration/test_06_flags_binary.py`` compares the two both ways); for
1.35-1.37, the release's kube-apiserver reference page and the CHANGELOG entry named in each flag's
``source``. A flag the binary reports as deprecated is accepted, but ``deprecation_warning`` says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

Version = tuple[int, int]

#: Minor versions this project supports: the lab's real 1.20 and upstream's supported releases.
SUPPORTED_MINORS: tuple[Version, ...] = ((1, 20), (1, 35), (1, 36), (1, 37))
DEFAULT_KUBE_VERSION = "1.36.0"

BASE: Version = (1, 0)


#: The kube-apiserver reference page (generated from the release's source; pick the release's
#: version of the page) and the lab's binary: the sources of every entry without a more specific one.
REFERENCE_PAGE = "https://kubernetes.io/docs/reference/command-line-tools-reference/kube-apiserver/"
HELP_1_20 = "kube-apiserver v1.20.2 --help (the lab's binary, Debian 1.20.5+really1.20.2)"
STILL_LISTED = f"1.20: {HELP_1_20}; 1.35-1.37: still on the reference page {REFERENCE_PAGE}"


@dataclass(frozen=True)
class Flag:
    since: Version = BASE
    removed: Version | None = None  # first minor version that no longer accepts the flag
    #: First minor whose kube-apiserver reports the flag as deprecated (accepts it, logs a warning).
    #: Releases before 1.20 are not supported: 1.20 stands for "already deprecated in 1.20" when
    #: ``source`` names no earlier release.
    deprecated: Version | None = None
    source: str = STILL_LISTED  # where since / removed / deprecated come from

    def accepted_by(self, version: Version) -> bool:
        return self.since <= version and (self.removed is None or version < self.removed)

    def deprecated_in(self, version: Version) -> bool:
        return self.accepted_by(version) and self.deprecated is not None and self.deprecated <= version


_KLOG_REMOVED = (1, 26)
_KLOG_DEPRECATED = (1, 23)
_KLOG_SOURCE = (
    "KEP-2845 (deprecate klog specific flags): deprecated in 1.23; removed in 1.26: CHANGELOG-1.26.md, "
    "v1.26.0, 'Legacy klog flags are no longer available. Only -v and -vmodule are still supported' "
    f"(#112120). 1.20: {HELP_1_20}, not deprecated there"
)
_INSECURE_SOURCE = (
    "deprecated since 1.10 and inert since 1.20: CHANGELOG-1.20.md, v1.20.0 Urgent Upgrade Notes "
    "(#95856); 1.20.2 hides it and prints 'Flag --{0} has been deprecated'; removed: CHANGELOG-1.24.md, "
    "v1.24.0, Changes by Kind > Deprecation, 'the insecure address flags ... are removed' (#106859)"
)

FLAGS: dict[str, Flag] = {
    # Removed flags the tutorial (Kubernetes ~1.10) still used.
    "insecure-port": Flag(
        removed=(1, 24), deprecated=(1, 10), source=_INSECURE_SOURCE.format("insecure-port")
    ),
    "insecure-bind-address": Flag(
        removed=(1, 24), deprecated=(1, 10), source=_INSECURE_SOURCE.format("insecure-bind-address")
    ),
    "kubelet-https": Flag(
        removed=(1, 22),
        deprecated=(1, 20),
        source="1.20.2 hides it and prints 'Flag --kubelet-https has been deprecated, API Server "
        "connections to kubelets always use https. This flag will be removed in 1.22.'; removed in "
        "1.22 by #101178",
    ),
    "enable-swagger-ui": Flag(
        removed=(1, 24),
        deprecated=(1, 20),
        source="1.20.2 hides it and prints 'Flag --enable-swagger-ui has been deprecated, swagger 1.2 "
        "support has been removed'. The removal release is NOT pinned to a CHANGELOG entry (v1.24.0's "
        "Deprecation section does not list it); any value in 1.21-1.35 gives the same answers for "
        "the supported versions",
    ),
    **{
        name: Flag(removed=_KLOG_REMOVED, deprecated=_KLOG_DEPRECATED, source=_KLOG_SOURCE)
        for name in (
            "logtostderr", "alsologtostderr", "log-dir", "log-file", "log-file-max-size", "skip-headers",
            "skip-log-headers", "stderrthreshold", "add-dir-header", "one-output",
        )
    },
    # Flags that appeared after 1.20 (the 1.20.2 binary answers 'unknown flag' to each of them).
    "strict-transport-security-directives": Flag(
        since=(1, 21),
        source="CHANGELOG-1.21.md, v1.21.0-alpha.3, Changes by Kind > Feature: 'Adds the ability to pass "
        "--strict-transport-security-directives to the kube-apiserver' (#96502)",
    ),
    "tracing-config-file": Flag(
        since=(1, 22),
        source="CHANGELOG-1.22.md, v1.22.0: 'Add distributed tracing to the kube-apiserver ... feature gate "
        "APIServerTracing' (#94942, KEP-647)",
    ),
    "shutdown-send-retry-after": Flag(
        since=(1, 23),
        source="CHANGELOG-1.23.md, v1.23.0-alpha.1, Changes by Kind > Feature: 'A new server run option "
        "shutdown-send-retry-after has been introduced' (#101257; also backported to 1.22 patch releases)",
    ),
    "shutdown-watch-termination-grace-period": Flag(
        since=(1, 27),
        source="#114925 'apiserver: terminate watch with rate limiting during shutdown', landed in 1.27 "
        "(SIG API Machinery annual report)",
    ),
    "authorization-config": Flag(
        since=(1, 29),
        source="KEP-3221 structured authorization configuration, alpha in 1.29 "
        "(feature gate StructuredAuthorizationConfiguration)",
    ),
    "authentication-config": Flag(
        since=(1, 29),
        source="KEP-3331 structured authentication configuration, alpha in 1.29 (feature gate "
        "StructuredAuthenticationConfiguration): the 1.29 release notes add --authentication-config, "
        "mutually exclusive with --oidc-*",
    ),
    "emulated-version": Flag(since=(1, 31), source="KEP-4330 compatibility versions, alpha in 1.31"),
    # Present in 1.20.2 and still accepted by 1.35-1.37, with the file format the deploy renders.
    "encryption-provider-config": Flag(
        source=f"1.20: {HELP_1_20}; 1.35-1.37: still on the reference page {REFERENCE_PAGE}. Its file is an "
        "EncryptionConfiguration, apiserver.config.k8s.io/v1 "
        "(https://kubernetes.io/docs/reference/config-api/apiserver-encryption.v1/), with the secretbox and "
        "aescbc providers (https://kubernetes.io/docs/tasks/administer-cluster/encrypt-data/); the lab's 1.20.2 "
        "reads it (the lab agent's Secrets-at-rest test)",
    ),
    # Present in 1.20.2 and still accepted by 1.35-1.37, deprecated in between.
    "apiserver-count": Flag(
        deprecated=(1, 24),
        source=f"1.20: {HELP_1_20}, not deprecated there; deprecated: CHANGELOG-1.24.md, v1.24.0, Changes "
        "by Kind > Deprecation, 'the --master-count flag and --endpoint-reconciler-type=master-count "
        "reconciler are deprecated' (#108062; the flag is spelled --apiserver-count)",
    ),
}

# Flags present in 1.20 (the v1.20.2 binary's --help, not deprecated there) and still present in
# 1.35-1.37 (the kube-apiserver reference page): source STILL_LISTED. Not recorded: upstream's
# current source marks --default-watch-cache-size deprecated ("watch caches are sized automatically");
# the release that did so is not pinned here, so no warning is given for it.
for _name in """
    admission-control-config-file advertise-address allow-privileged anonymous-auth api-audiences
    audit-log-batch-max-size audit-log-compress audit-log-format audit-log-maxage
    audit-log-maxbackup audit-log-maxsize audit-log-mode audit-log-path audit-policy-file
    audit-webhook-config-file audit-webhook-mode authentication-token-webhook-cache-ttl
    authentication-token-webhook-config-file authorization-mode authorization-webhook-config-file
    bind-address cert-dir client-ca-file cors-allowed-origins default-not-ready-toleration-seconds
    default-unreachable-toleration-seconds default-watch-cache-size delete-collection-workers
    disable-admission-plugins egress-selector-config-file enable-admission-plugins
    enable-aggregator-routing enable-bootstrap-token-auth enable-garbage-collector
    enable-priority-and-fairness endpoint-reconciler-type etcd-cafile
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
    runtime-config secure-port service-account-issuer service-account-jwks-uri service-account-key-file
    service-account-extend-token-expiration service-account-lookup service-account-max-token-expiration service-account-signing-key-file
    service-cluster-ip-range service-node-port-range show-hidden-metrics-for-version
    shutdown-delay-duration storage-backend storage-media-type
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
    "encryption-provider-config": "secrets_encryption",
    "kubelet-certificate-authority": "kubelet_certificate_authority_file",
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


def deprecation_warning(name: str, version: Version) -> str | None:
    """A warning when ``version`` accepts ``--name`` but reports it deprecated, else None."""
    info = FLAGS.get(name)
    if info is None or not info.deprecated_in(version):
        return None
    text = (f"--{name} is deprecated in {version[0]}.{version[1]} "
            "(kube-apiserver accepts it and logs a deprecation warning)")
    if info.removed is not None:
        text += f"; it is removed in {info.removed[0]}.{info.removed[1]}"
    return text


# --- reading the binary ---------------------------------------------------------------------------

# pflag prints a flag as "      --name type   description" or "  -x, --name type   description";
# longer descriptions continue on lines indented to the description column.
_HELP_FLAG_RE = re.compile(r"^(?:  -[A-Za-z0-9], |      )--([A-Za-z0-9][A-Za-z0-9_.-]*)(?=[\s=\[]|$)")
# pflag appends "(DEPRECATED: why)" to a deprecated flag it still shows; some usage strings start
# with "DEPRECATED: ". Feature-gate lines say "(DEPRECATED - default=...)", which is not about the flag.
_DEPRECATED_RE = re.compile(r"\bDEPRECATED:")


def parse_help(text: str) -> dict[str, bool]:
    """``kube-apiserver --help`` -> ``{flag name: the help calls it deprecated}``.

    Flags pflag hides are not in the output: ``MarkDeprecated`` hides a flag, so most deprecated
    flags only show up when used (see ``classify_probe``).
    """
    flags: dict[str, bool] = {}
    current: str | None = None
    for line in text.splitlines():
        match = _HELP_FLAG_RE.match(line)
        if match:
            current = match.group(1)
            flags[current] = False
            description = line[match.end():]
        elif current is not None and line.startswith(" ") and line.strip():
            description = line  # continuation of the current flag's description
        else:
            current = None  # a blank line or a section title ("Etcd flags:") ends the entry
            continue
        if _DEPRECATED_RE.search(description):
            flags[current] = True
    return flags


def classify_probe(name: str, output: str) -> str:
    """What ``kube-apiserver --NAME=VALUE --help`` printed (stdout + stderr) says about ``--name``.

    ``unknown``: the binary has no such flag; ``deprecated``: it accepts the flag with pflag's
    deprecation message; ``bad-value``: the flag exists but VALUE does not parse (try another);
    ``accepted``: the flag exists and is not deprecated.
    """
    if re.search(rf"unknown flag: --{re.escape(name)}(?![A-Za-z0-9_.-])", output):
        return "unknown"
    if f"Flag --{name} has been deprecated" in output:
        return "deprecated"
    if f'for "--{name}" flag' in output:
        return "bad-value"
    return "accepted"


# --- admission plugins and authorization modes per version (checked by hakube.settings) ----------

#: kube-apiserver's admission plugins (``--enable-admission-plugins``): the minor version each one
#: appeared in and the first one without it, like ``FLAGS``. The names present in 1.20 come from
#: 1.20.2's ``pkg/kubeapiserver/options/plugins.go``; later ones from upstream's plugin list and
#: release notes. A name unknown here is refused, so a plugin added after 1.37 needs a row.
ADMISSION_PLUGINS: dict[str, Flag] = {
    # Removed.
    "Initializers": Flag(removed=(1, 14)),
    "PodPreset": Flag(removed=(1, 20)),
    "DenyEscalatingExec": Flag(removed=(1, 21)),
    "DenyExecOnPrivileged": Flag(removed=(1, 21)),
    "PodSecurityPolicy": Flag(removed=(1, 25)),
    "SecurityContextDeny": Flag(removed=(1, 30)),
    "PersistentVolumeLabel": Flag(removed=(1, 31)),
    # Appeared after 1.20.
    "DenyServiceExternalIPs": Flag(since=(1, 21)),
    "PodSecurity": Flag(since=(1, 22)),  # GA in 1.25, when PodSecurityPolicy went away
    "ValidatingAdmissionPolicy": Flag(since=(1, 26)),
    "ClusterTrustBundleAttest": Flag(since=(1, 27)),
    "MutatingAdmissionPolicy": Flag(since=(1, 32)),
    "PodTopologyLabels": Flag(since=(1, 33)),
    "NodeDeclaredFeatureValidator": Flag(since=(1, 35)),
    "JobValidation": Flag(since=(1, 36)),
    "PodGroupProtection": Flag(since=(1, 36)),
    "PodResizeValidator": Flag(since=(1, 36)),
    "PodGroupWorkloadExists": Flag(since=(1, 36), removed=(1, 37)),  # alpha, reverted in 1.37
}

# Admission plugins present in 1.20 and still present in 1.35-1.37.
for _name in """
    AlwaysAdmit AlwaysDeny AlwaysPullImages CertificateApproval CertificateSigning
    CertificateSubjectRestriction DefaultIngressClass DefaultStorageClass DefaultTolerationSeconds
    EventRateLimit ExtendedResourceToleration ImagePolicyWebhook LimitPodHardAntiAffinityTopology
    LimitRanger MutatingAdmissionWebhook NamespaceAutoProvision NamespaceExists NamespaceLifecycle
    NodeRestriction OwnerReferencesPermissionEnforcement PersistentVolumeClaimResize PodNodeSelector
    PodTolerationRestriction Priority ResourceQuota RuntimeClass ServiceAccount
    StorageObjectInUseProtection TaintNodesByCondition ValidatingAdmissionWebhook
""".split():
    ADMISSION_PLUGINS.setdefault(_name, Flag())

#: ``--authorization-mode`` choices: the same six in 1.20 and 1.35-1.37.
AUTHORIZATION_MODES: dict[str, Flag] = {
    mode: Flag() for mode in ("AlwaysAllow", "AlwaysDeny", "ABAC", "Webhook", "RBAC", "Node")
}


def _listed_problem(table: Mapping[str, Flag], what: str, name: str, version: Version) -> str | None:
    info = table.get(name)
    if info is None:
        return f"unknown {what} {name!r}"
    if not info.accepted_by(version):
        if info.removed is not None and version >= info.removed:
            return f"{what} {name} was removed in {info.removed[0]}.{info.removed[1]}"
        return f"{what} {name} first appeared in {info.since[0]}.{info.since[1]}"
    return None


def admission_plugin_problem(name: str, version: Version) -> str | None:
    """Why admission plugin ``name`` cannot be enabled on ``version``, or None when it can."""
    return _listed_problem(ADMISSION_PLUGINS, "admission plugin", name, version)


def authorization_mode_problem(name: str, version: Version) -> str | None:
    """Why ``name`` is not an ``--authorization-mode`` of ``version``, or None when it is."""
    return _listed_problem(AUTHORIZATION_MODES, "authorization mode", name, version)
