"""hakube.flags: version-aware kube-apiserver flags and the tutorial's environment files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from hakube import flags
from hakube.apiserver_args import apiserver_env, config_env
from hakube.flags import FLAGS, FlagError, flag_problem
from hakube.paths import PATHS
from hakube.settings import InventoryError

from .conftest import VIP, make_inventory

SUPPORTED = ["1.20.2", "1.35.0", "1.36.0", "1.37.0"]
REMOVED_SINCE_TUTORIAL = ("insecure-port", "insecure-bind-address", "kubelet-https", "enable-swagger-ui", "apiserver-count")


def _settings(tmp_path: Path, version: str = "1.36.0", host: str = "m1", **cluster):
    inv = make_inventory(tmp_path, kube_version=version)
    inv.cluster.update(cluster)
    return inv.load()[host]


def _with_extra(s, extra: dict):
    """Settings whose extra flags bypass load_inventory's validation (as a later edit could)."""
    return dataclasses.replace(s, cluster=dataclasses.replace(s.cluster, apiserver_extra_flags=extra))


def _parse(env: dict[str, str]) -> dict[str, dict[str, str]]:
    """{VAR: {flag: value}}; every word must be --name=value and no flag may repeat in a VAR."""
    out = {}
    for var, value in env.items():
        group: dict[str, str] = {}
        for word in value.split(" "):
            assert word.startswith("--") and "=" in word, (var, word)
            name, _, val = word[2:].partition("=")
            assert name not in group, f"--{name} twice in {var}"
            group[name] = val
        out[var] = group
    return out


def _all_flags(env: dict[str, str]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for group in _parse(env).values():
        for name, value in group.items():
            assert name not in merged, f"--{name} in two variables"
            merged[name] = value
    return merged


# ------------------------------------------------------------------ /etc/kubernetes/config


def test_config_env_1_20_logs_to_stderr(tmp_path: Path) -> None:
    env = config_env(_settings(tmp_path, "1.20.2"))
    assert env["KUBE_LOGTOSTDERR"] == "--logtostderr=true"


@pytest.mark.parametrize("version", ["1.35.0", "1.36.0", "1.37.0"])
def test_config_env_new_versions_have_no_logtostderr(tmp_path: Path, version: str) -> None:
    env = config_env(_settings(tmp_path, version))
    assert "KUBE_LOGTOSTDERR" not in env
    assert not any("logtostderr" in v for v in env.values())


def test_config_env_values(tmp_path: Path) -> None:
    env = config_env(_settings(tmp_path, log_level=2, allow_privileged=False))
    assert env["KUBE_LOG_LEVEL"] == "--v=2"
    assert env["KUBE_ALLOW_PRIV"] == "--allow-privileged=false"
    assert env["KUBE_MASTER_SECURE"] == f"--master=https://{VIP}:6443"


def test_config_env_same_on_nodes_and_masters(tmp_path: Path) -> None:
    s = make_inventory(tmp_path).load()
    assert config_env(s["n1"]) == config_env(s["m1"]) == config_env(s["m2"])


# ------------------------------------------------------------------ /etc/kubernetes/apiserver


@pytest.mark.parametrize("version", ["1.20.2", "1.36.0"])
def test_apiserver_env_service_account_and_security(tmp_path: Path, version: str) -> None:
    f = _all_flags(apiserver_env(_settings(tmp_path, version)))
    assert f["service-account-issuer"] == "https://kubernetes.default.svc.cluster.local"
    assert f["service-account-signing-key-file"] == "/etc/kubernetes/ssl/sa-key.pem"
    # Verification key is the SA public key, not the tutorial's CA key.
    assert f["service-account-key-file"] == "/etc/kubernetes/ssl/sa.pub"
    assert "ca" not in Path(f["service-account-key-file"]).name
    assert f["anonymous-auth"] == "false"
    for name in REMOVED_SINCE_TUTORIAL:
        assert name not in f
    plugins = f["enable-admission-plugins"].split(",")
    assert "Initializers" not in plugins
    assert plugins == ["NamespaceLifecycle", "NodeRestriction", "LimitRanger", "ServiceAccount", "DefaultStorageClass", "ResourceQuota"]
    assert f["client-ca-file"] == "/etc/kubernetes/ssl/ca.pem"
    assert f["tls-cert-file"] == "/etc/kubernetes/ssl/apiserver.pem"
    assert f["tls-private-key-file"] == "/etc/kubernetes/ssl/apiserver-key.pem"
    assert f["etcd-servers"] == "https://10.9.0.20:2379,https://10.9.0.21:2379"
    # etcd is verified with (and only trusts) its own CA, not the cluster CA.
    assert f["etcd-cafile"] == "/etc/kubernetes/ssl/etcd-ca.pem" == PATHS.etcd_ca
    assert f["etcd-certfile"] == "/etc/kubernetes/ssl/apiserver-etcd-client.pem"
    assert f["etcd-keyfile"] == "/etc/kubernetes/ssl/apiserver-etcd-client-key.pem"
    assert f["authorization-mode"] == "Node,RBAC"
    assert f["audit-policy-file"] == "/etc/kubernetes/audit-policy.yaml"
    assert f["shutdown-delay-duration"] == "5s"
    assert f["service-cluster-ip-range"] == "10.254.0.0/16"
    assert f["service-node-port-range"] == "30000-32767"


@pytest.mark.parametrize("version", ["1.20.2", "1.36.0"])
@pytest.mark.parametrize("host, addr", [("m1", "10.9.0.11"), ("m2", "10.9.0.12")])
def test_apiserver_env_binds_to_the_hosts_own_address(tmp_path: Path, version: str, host: str, addr: str) -> None:
    groups = _parse(apiserver_env(_settings(tmp_path, version, host=host)))
    assert groups["KUBE_API_ADDRESS"] == {"advertise-address": addr, "bind-address": addr, "secure-port": "6443"}


def test_apiserver_env_groups_are_the_tutorials(tmp_path: Path) -> None:
    env = apiserver_env(_settings(tmp_path))
    assert list(env) == ["KUBE_API_ADDRESS", "KUBE_ETCD_SERVERS", "KUBE_SERVICE_ADDRESSES", "KUBE_ADMISSION_CONTROL", "KUBE_API_ARGS"]


@pytest.mark.parametrize("version", SUPPORTED)
def test_every_rendered_flag_is_accepted(tmp_path: Path, version: str) -> None:
    f = _all_flags(apiserver_env(_settings(tmp_path, version)))
    minor = flags.minor_of(version)
    assert [n for n in f if flag_problem(n, minor)] == []


# ------------------------------------------------------------------ extra flags


@pytest.mark.parametrize("flag", ["event-ttl", "enable-admission-plugins", "bind-address", "anonymous-auth", "tls-cert-file"])
def test_extra_flag_may_not_override_what_the_deploy_sets(tmp_path: Path, flag: str) -> None:
    with pytest.raises(InventoryError) as e:
        _settings(tmp_path, apiserver_extra_flags={flag: "x"})
    assert f"m1: apiserver_extra_flags: --{flag} is set by the deploy" in str(e.value)


def test_new_extra_flag_lands_in_api_args(tmp_path: Path) -> None:
    s = _settings(tmp_path, apiserver_extra_flags={"max-mutating-requests-inflight": "300", "request-timeout": "2m0s"})
    groups = _parse(apiserver_env(s))
    assert groups["KUBE_API_ARGS"]["max-mutating-requests-inflight"] == "300"
    assert groups["KUBE_API_ARGS"]["request-timeout"] == "2m0s"
    assert list(groups["KUBE_API_ARGS"])[-2:] == ["max-mutating-requests-inflight", "request-timeout"]


def test_extra_flag_overrides_a_default_in_its_place(tmp_path: Path) -> None:
    """A CIS default (``--profiling=false``) is a default: an extra flag overrides it where it stands."""
    default = list(_parse(apiserver_env(_settings(tmp_path)))["KUBE_API_ARGS"].items())
    s = _settings(tmp_path, apiserver_extra_flags={"profiling": True})
    overridden = list(_parse(apiserver_env(s))["KUBE_API_ARGS"].items())
    assert ("profiling", "false") in default
    assert overridden == [(k, "true" if k == "profiling" else v) for k, v in default]


@pytest.mark.parametrize("version, expected", [
    ("1.20.2", {"goaway-chance": "0.001"}),
    ("1.35.0", {"goaway-chance": "0.001", "shutdown-send-retry-after": "true",
                "shutdown-watch-termination-grace-period": "5s"}),
    ("1.37.1", {"goaway-chance": "0.001", "shutdown-send-retry-after": "true",
                "shutdown-watch-termination-grace-period": "5s"}),
])
def test_graceful_shutdown_flags_by_version(tmp_path: Path, version: str, expected: dict) -> None:
    """The apiserver's own help for kept connections: each flag where the version has it, and only there."""
    args = _parse(apiserver_env(_settings(tmp_path, version)))["KUBE_API_ARGS"]
    names = ("goaway-chance", "shutdown-send-retry-after", "shutdown-watch-termination-grace-period")
    assert {n: args[n] for n in names if n in args} == expected


def test_a_graceful_shutdown_default_is_overridden_by_extra_flags(tmp_path: Path) -> None:
    s = _settings(tmp_path, "1.36.0",
                  apiserver_extra_flags={"goaway-chance": "0", "shutdown-send-retry-after": False})
    args = _parse(apiserver_env(s))["KUBE_API_ARGS"]
    assert args["goaway-chance"] == "0" and args["shutdown-send-retry-after"] == "false"


def test_old_flag_rendered_for_1_20(tmp_path: Path) -> None:
    s = _settings(tmp_path, "1.20.2", apiserver_extra_flags={"insecure-port": 0})
    assert _parse(apiserver_env(s))["KUBE_API_ARGS"]["insecure-port"] == "0"


def test_rendering_does_not_mutate_settings(tmp_path: Path) -> None:
    s = _settings(tmp_path, apiserver_extra_flags={"max-requests-inflight": 800})
    apiserver_env(s)
    apiserver_env(s)
    assert s.cluster.apiserver_extra_flags == {"max-requests-inflight": 800}


def test_flag_error_for_removed_flag(tmp_path: Path) -> None:
    s = _with_extra(_settings(tmp_path, "1.36.0"), {"insecure-port": 0})
    with pytest.raises(FlagError, match=r"--insecure-port was removed in 1\.24"):
        apiserver_env(s)


def test_flag_error_lists_every_bad_flag(tmp_path: Path) -> None:
    s = _with_extra(_settings(tmp_path, "1.20.2"), {"authentication-config": "/x", "bogus": "1"})
    with pytest.raises(FlagError) as exc:
        apiserver_env(s)
    assert "--authentication-config first appeared in 1.29" in str(exc.value)
    assert "unknown kube-apiserver flag --bogus" in str(exc.value)


# ------------------------------------------------------------------ the table


def test_flag_problem_unknown() -> None:
    assert flag_problem("no-such-flag", (1, 36)) == "unknown kube-apiserver flag --no-such-flag"


def test_flag_problem_removed() -> None:
    assert flag_problem("insecure-port", (1, 36)) == "--insecure-port was removed in 1.24"
    assert flag_problem("insecure-port", (1, 24)) == "--insecure-port was removed in 1.24"
    assert flag_problem("insecure-port", (1, 23)) is None
    assert flag_problem("insecure-port", (1, 20)) is None


def test_flag_problem_too_new() -> None:
    assert flag_problem("authentication-config", (1, 20)) == "--authentication-config first appeared in 1.29"
    assert flag_problem("authentication-config", (1, 28)) == "--authentication-config first appeared in 1.29"
    assert flag_problem("authentication-config", (1, 29)) is None


def test_flag_problem_accepted_everywhere() -> None:
    for minor in flags.SUPPORTED_MINORS:
        assert flag_problem("bind-address", minor) is None


def test_flag_table_boundaries() -> None:
    assert FLAGS["kubelet-https"].accepted_by((1, 21)) and not FLAGS["kubelet-https"].accepted_by((1, 22))
    assert FLAGS["logtostderr"].accepted_by((1, 25)) and not FLAGS["logtostderr"].accepted_by((1, 26))
    assert "apiserver-count" in FLAGS  # still accepted (deprecated), but never rendered
    for name, flag in FLAGS.items():
        assert flag.removed is None or flag.since < flag.removed, name


def test_versions() -> None:
    assert flags.parse_version("v1.36.2") == (1, 36, 2)
    assert flags.minor_of("1.20.2") == (1, 20)
    for bad in ("1.36", "banana", "1.36.x", ""):
        with pytest.raises(ValueError):
            flags.parse_version(bad)
    assert flags.is_supported("1.20.2") and flags.is_supported("v1.37.1")
    assert not flags.is_supported("1.25.0") and not flags.is_supported("banana")


# ------------------------------------------------------------------ the table's 1.20 entries (v1.20.2)

# What the lab's real v1.20.2 binary answered (tests/integration/test_06_flags_binary.py asks it live):
# `--NAME=... --help` says "unknown flag" for these table flags ...
UNKNOWN_TO_1_20 = {
    "strict-transport-security-directives", "tracing-config-file", "shutdown-send-retry-after",
    "shutdown-watch-termination-grace-period", "authorization-config", "authentication-config",
    "emulated-version",
}
# ... and these are hidden from --help and print "Flag --NAME has been deprecated" when used.
DEPRECATED_IN_1_20 = {"insecure-port", "insecure-bind-address", "kubelet-https", "enable-swagger-ui"}


def test_table_1_20_accepts_what_the_binary_accepts() -> None:
    for name, flag in FLAGS.items():
        assert flag.accepted_by((1, 20)) == (name not in UNKNOWN_TO_1_20), name


def test_table_1_20_deprecations_are_the_binarys() -> None:
    assert {n for n, f in FLAGS.items() if f.deprecated_in((1, 20))} == DEPRECATED_IN_1_20


def test_hsts_flag_appeared_in_1_21() -> None:
    assert flag_problem("strict-transport-security-directives", (1, 20)) == (
        "--strict-transport-security-directives first appeared in 1.21"
    )
    for minor in flags.SUPPORTED_MINORS[1:]:
        assert flag_problem("strict-transport-security-directives", minor) is None


def test_jwks_uri_and_klog_flags_in_1_20() -> None:
    assert flag_problem("service-account-jwks-uri", (1, 20)) is None
    assert FLAGS["logtostderr"].accepted_by((1, 20)) and not FLAGS["logtostderr"].deprecated_in((1, 20))
    assert FLAGS["logtostderr"].deprecated_in((1, 23)) and not FLAGS["logtostderr"].deprecated_in((1, 26))


def test_deprecated_in_needs_the_flag_accepted() -> None:
    assert FLAGS["insecure-port"].deprecated_in((1, 23))
    assert not FLAGS["insecure-port"].deprecated_in((1, 24))  # removed: an error, not a warning
    assert FLAGS["apiserver-count"].deprecated_in((1, 36)) and not FLAGS["apiserver-count"].deprecated_in((1, 20))


def test_every_entry_names_its_source() -> None:
    for name, flag in FLAGS.items():
        assert flag.source, name
        if flag.since != flags.BASE or flag.removed or flag.deprecated:
            assert flag.source != flags.STILL_LISTED, f"--{name} needs a specific source"


# ------------------------------------------------------------------ reading the binary

# A short excerpt in the format of the real v1.20.2 `kube-apiserver --help` (pflag, no terminal):
# section titles, a wrapped description, pflag's "(DEPRECATED: ...)" suffix, a usage string that
# starts with "DEPRECATED:", feature-gate lines, a shorthand flag and a bool flag without a type.
HELP_EXCERPT = """\
The Kubernetes API server validates and configures data
for the api objects which include pods, services, replicationcontrollers, and
others.

Usage:
  kube-apiserver [flags]

Generic flags:

      --advertise-address ip                         The IP address on which to advertise the apiserver to members of the cluster.
      --feature-gates mapStringBool                  A set of key=value pairs that describe feature gates for alpha/experimental features. Options are:
                                                     APIListChunking=true|false (BETA - default=true)
                                                     SomeGate=true|false (DEPRECATED - default=false)
      --master-service-namespace string              DEPRECATED: the namespace from which the Kubernetes master services should be injected into pods. (default "default")

Secure serving flags:

      --tls-cipher-suites strings              Comma-separated list of cipher suites for the server.
                                               Insecure values: TLS_RSA_WITH_RC4_128_SHA.

Admission flags:

      --admission-control strings              Admission is divided into two phases. Comma-delimited list of: AlwaysAdmit,
                                               NamespaceLifecycle. (DEPRECATED: Use --enable-admission-plugins or --disable-admission-plugins instead. Will be removed in a future version.)
      --enable-admission-plugins strings       admission plugins that should be enabled in addition to default enabled ones (NamespaceLifecycle, LimitRanger).

Global flags:

      --add-dir-header                   If true, adds the file directory to the header of the log messages
  -h, --help                             help for kube-apiserver
      --logtostderr                      log to standard error instead of files (default true)
  -v, --v Level                          number for the log level verbosity
      --version version[=true]           Print version information and quit
"""


def test_parse_help_names_and_deprecation() -> None:
    assert flags.parse_help(HELP_EXCERPT) == {
        "advertise-address": False,
        "feature-gates": False,  # a deprecated *gate* is not a deprecated flag
        "master-service-namespace": True,
        "tls-cipher-suites": False,
        "admission-control": True,  # "(DEPRECATED: ...)" on a continuation line
        "enable-admission-plugins": False,
        "add-dir-header": False,
        "help": False,
        "logtostderr": False,
        "v": False,
        "version": False,
    }


def test_parse_help_ignores_prose() -> None:
    assert flags.parse_help("Usage:\n  kube-apiserver [flags]\n\nSome text --not-a-flag DEPRECATED: x\n") == {}


@pytest.mark.parametrize("output, expected", [
    ("Error: unknown flag: --strict-transport-security-directives\nUsage:\n  kube-apiserver [flags]\n", "unknown"),
    ("Flag --insecure-port has been deprecated, This flag has no effect now and will be removed in v1.24.\n"
     "The Kubernetes API server validates and configures data\n", "deprecated"),
    ('Error: invalid argument "0" for "--insecure-bind-address" flag: failed to parse IP: "0"\n', "bad-value"),
    ("The Kubernetes API server validates and configures data\n", "accepted"),
])
def test_classify_probe(output: str, expected: str) -> None:
    name = {"unknown": "strict-transport-security-directives", "deprecated": "insecure-port",
            "bad-value": "insecure-bind-address", "accepted": "apiserver-count"}[expected]
    assert flags.classify_probe(name, output) == expected


def test_classify_probe_reads_only_its_own_flag() -> None:
    assert flags.classify_probe("insecure-port", "Error: unknown flag: --insecure-port-x\n") == "accepted"


# ------------------------------------------------------------------ deprecation warnings


def test_deprecation_warning_for_1_20() -> None:
    assert flags.deprecation_warning("insecure-port", (1, 20)) == (
        "--insecure-port is deprecated in 1.20 (kube-apiserver accepts it and logs a deprecation warning); "
        "it is removed in 1.24"
    )
    assert flags.deprecation_warning("kubelet-https", (1, 20)).endswith("it is removed in 1.22")


@pytest.mark.parametrize("name, version", [
    ("bind-address", (1, 20)),  # not deprecated
    ("logtostderr", (1, 20)),  # deprecated only from 1.23
    ("insecure-port", (1, 36)),  # removed: that is an error, not a warning
    ("no-such-flag", (1, 20)),
])
def test_no_deprecation_warning(name: str, version) -> None:
    assert flags.deprecation_warning(name, version) is None


def test_deprecation_warning_without_removal() -> None:
    assert flags.deprecation_warning("apiserver-count", (1, 36)) == (
        "--apiserver-count is deprecated in 1.36 (kube-apiserver accepts it and logs a deprecation warning)"
    )


@pytest.mark.parametrize("version", SUPPORTED)
def test_the_deploy_renders_no_deprecated_flag(tmp_path: Path, version: str) -> None:
    s = _settings(tmp_path, version)
    env = {**apiserver_env(s), **config_env(s)}
    env.pop("KUBE_MASTER_SECURE")  # --master is read by the other components, not the apiserver
    minor = flags.minor_of(version)
    assert [n for n in _all_flags(env) if flags.deprecation_warning(n, minor)] == []


# ------------------------------------------------------------------ admission plugins, authorization modes

# kube-apiserver 1.20.2's AllOrderedPlugins (pkg/kubeapiserver/options/plugins.go).
PLUGINS_1_20 = """
    AlwaysAdmit NamespaceAutoProvision NamespaceLifecycle NamespaceExists SecurityContextDeny
    LimitPodHardAntiAffinityTopology LimitRanger ServiceAccount NodeRestriction TaintNodesByCondition
    AlwaysPullImages ImagePolicyWebhook PodSecurityPolicy PodNodeSelector Priority
    DefaultTolerationSeconds PodTolerationRestriction DenyEscalatingExec DenyExecOnPrivileged
    EventRateLimit ExtendedResourceToleration PersistentVolumeLabel DefaultStorageClass
    StorageObjectInUseProtection OwnerReferencesPermissionEnforcement PersistentVolumeClaimResize
    RuntimeClass CertificateApproval CertificateSigning CertificateSubjectRestriction
    DefaultIngressClass MutatingAdmissionWebhook ValidatingAdmissionWebhook ResourceQuota AlwaysDeny
""".split()
# Upstream's AllOrderedPlugins in 1.36.
PLUGINS_1_36 = """
    AlwaysAdmit NamespaceAutoProvision NamespaceLifecycle NamespaceExists
    LimitPodHardAntiAffinityTopology LimitRanger ServiceAccount NodeRestriction TaintNodesByCondition
    AlwaysPullImages ImagePolicyWebhook PodSecurity PodNodeSelector Priority DefaultTolerationSeconds
    PodTolerationRestriction EventRateLimit ExtendedResourceToleration DefaultStorageClass
    StorageObjectInUseProtection PodGroupProtection OwnerReferencesPermissionEnforcement
    PersistentVolumeClaimResize RuntimeClass CertificateApproval CertificateSigning
    ClusterTrustBundleAttest CertificateSubjectRestriction DefaultIngressClass DenyServiceExternalIPs
    PodTopologyLabels PodGroupWorkloadExists NodeDeclaredFeatureValidator JobValidation
    PodResizeValidator MutatingAdmissionPolicy MutatingAdmissionWebhook ValidatingAdmissionPolicy
    ValidatingAdmissionWebhook ResourceQuota AlwaysDeny
""".split()


def _accepted_plugins(version) -> set[str]:
    return {name for name in flags.ADMISSION_PLUGINS if flags.admission_plugin_problem(name, version) is None}


@pytest.mark.parametrize("version, expected", [((1, 20), PLUGINS_1_20), ((1, 36), PLUGINS_1_36)], ids=["1.20", "1.36"])
def test_admission_plugin_table_is_upstreams_list(version, expected) -> None:
    assert len(expected) == len(set(expected))
    assert _accepted_plugins(version) == set(expected)


def test_admission_plugins_across_supported_versions() -> None:
    v120, v135, v137 = (1, 20), (1, 35), (1, 37)
    assert flags.admission_plugin_problem("PodSecurityPolicy", v120) is None
    assert flags.admission_plugin_problem("PodSecurityPolicy", v135) == "admission plugin PodSecurityPolicy was removed in 1.25"
    assert flags.admission_plugin_problem("PodSecurity", v120) == "admission plugin PodSecurity first appeared in 1.22"
    assert flags.admission_plugin_problem("PodSecurity", v135) is None
    assert flags.admission_plugin_problem("Initializers", v120) == "admission plugin Initializers was removed in 1.14"
    assert flags.admission_plugin_problem("NodeDeclaredFeatureValidator", v135) is None
    assert flags.admission_plugin_problem("PodResizeValidator", v135) == "admission plugin PodResizeValidator first appeared in 1.36"
    assert flags.admission_plugin_problem("PodGroupWorkloadExists", v137) == "admission plugin PodGroupWorkloadExists was removed in 1.37"
    assert flags.admission_plugin_problem("NoSuchPlugin", v135) == "unknown admission plugin 'NoSuchPlugin'"
    assert _accepted_plugins(v135) < _accepted_plugins((1, 36))


@pytest.mark.parametrize("version", SUPPORTED)
def test_default_admission_plugins_exist_in_every_supported_version(version: str) -> None:
    from hakube.settings import KEY_BY_NAME

    for name in KEY_BY_NAME["admission_plugins"].default:
        assert flags.admission_plugin_problem(name, flags.minor_of(version)) is None, name


@pytest.mark.parametrize("version", SUPPORTED)
def test_authorization_modes(version: str) -> None:
    minor = flags.minor_of(version)
    for mode in ("AlwaysAllow", "AlwaysDeny", "ABAC", "Webhook", "RBAC", "Node"):
        assert flags.authorization_mode_problem(mode, minor) is None
    assert flags.authorization_mode_problem("rbac", minor) == "unknown authorization mode 'rbac'"
