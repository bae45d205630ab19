"""hakube.flags: version-aware kube-apiserver flags and the tutorial's environment files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from hakube import flags
from hakube.flags import FLAGS, FlagError, apiserver_env, config_env, flag_problem
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
    assert f["etcd-cafile"] == "/etc/kubernetes/ssl/etcd-ca.pem" == flags.PATHS.etcd_ca
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
    s = _settings(tmp_path, apiserver_extra_flags={"goaway-chance": "0.001", "profiling": False})
    groups = _parse(apiserver_env(s))
    assert groups["KUBE_API_ARGS"]["goaway-chance"] == "0.001"
    assert groups["KUBE_API_ARGS"]["profiling"] == "false"
    assert list(groups["KUBE_API_ARGS"])[-2:] == ["goaway-chance", "profiling"]


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
    assert "--authentication-config first appeared in 1.30" in str(exc.value)
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
    assert flag_problem("authentication-config", (1, 20)) == "--authentication-config first appeared in 1.30"
    assert flag_problem("authentication-config", (1, 29)) == "--authentication-config first appeared in 1.30"
    assert flag_problem("authentication-config", (1, 30)) is None


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
