"""hakube.settings: the validated view of the inventory (one problem line per host and key)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hakube import flags
from hakube.settings import AUTH_PASS_ENV, KEY_BY_NAME, KEYS, InventoryError, Settings, load_inventory

from .conftest import AUTH_PASS, ENV, IS_ROOT, SHA, VIP, Inv, make_inventory, problem_for

# ------------------------------------------------------------------ the valid baseline


def test_baseline_loads(inv: Inv) -> None:
    s = inv.load()
    assert set(s) == {"m1", "m2", "n1"}
    assert all(isinstance(v, Settings) for v in s.values())

    m1, m2, n1 = s["m1"], s["m2"], s["n1"]
    assert (m1.host, m1.is_master, m1.bind_address, m1.vrrp_priority, m1.vrrp_interface) == (
        "m1", True, "10.9.0.11", 120, "eth0",
    )
    assert (m2.host, m2.is_master, m2.bind_address, m2.vrrp_priority, m2.vrrp_interface) == (
        "m2", True, "10.9.0.12", 110, "ens160",
    )
    assert (n1.host, n1.is_master, n1.bind_address, n1.vrrp_priority, n1.vrrp_interface) == (
        "n1", False, None, None, None,
    )

    # One cluster object, shared by every host (nodes included).
    c = m1.cluster
    assert m2.cluster is c and n1.cluster is c
    assert [m.name for m in c.masters] == ["m1", "m2"]
    assert c.bind_addresses == ("10.9.0.11", "10.9.0.12")
    assert c.vip == VIP
    assert c.virtual_router_id == 80
    assert c.vrrp_auth_pass == AUTH_PASS
    assert c.etcd_servers == ("https://10.9.0.20:2379", "https://10.9.0.21:2379")
    assert c.kube_version == "1.36.0"
    assert c.kube_apiserver_sha256 == SHA
    assert c.server_url == f"https://{VIP}:6443"
    assert c.download_url("amd64") == "https://dl.k8s.io/release/v1.36.0/bin/linux/amd64/kube-apiserver"
    assert c.download_url("arm64") == "https://dl.k8s.io/release/v1.36.0/bin/linux/arm64/kube-apiserver"


def test_baseline_defaults(inv: Inv) -> None:
    c = inv.load()["m1"].cluster
    assert c.vip_prefix == 24
    assert c.vrrp_advert_int == 1
    assert c.lb_port == 6443
    assert c.apiserver_port == 6443
    assert c.haproxy_check_interval_ms == 1000
    assert (c.haproxy_check_fall, c.haproxy_check_rise) == (2, 2)
    assert c.haproxy_timeout == "1h"
    assert c.service_cluster_ip_range == "10.254.0.0/16"
    assert c.service_node_port_range == "30000-32767"
    assert c.cluster_domain == "cluster.local"
    assert "Initializers" not in c.admission_plugins
    assert c.admission_plugins[0] == "NamespaceLifecycle" and "NodeRestriction" in c.admission_plugins
    assert c.authorization_mode == "Node,RBAC"
    assert c.allow_privileged is True
    assert c.vrrp_unicast is False
    assert c.shutdown_delay_seconds == 5
    assert c.service_account_issuer == "https://kubernetes.default.svc.cluster.local"
    assert c.audit_policy_rules == ({"level": "Metadata"},)
    assert c.apiserver_extra_flags == {}
    assert c.kube_apiserver_binary is None
    assert c.ca_cert_file is None and c.ca_key_file is None
    assert c.cluster_name == "kubernetes"
    assert c.cert_subject["C"] == "CN"


def test_default_kube_version_is_supported(inv: Inv) -> None:
    del inv.cluster["kube_version"]
    assert inv.load()["m1"].cluster.kube_version == flags.DEFAULT_KUBE_VERSION
    assert flags.is_supported(flags.DEFAULT_KUBE_VERSION)


def test_every_key_default_passes_its_check() -> None:
    from hakube.settings import REQUIRED

    for key in KEYS:
        if key.default is not REQUIRED and key.default is not None:
            key.check(key.default)


def test_one_key_is_one_row() -> None:
    """A key's check sits in its row, and ``Cluster`` has one field per cluster key with no
    default of its own (the default lives in ``KEYS`` only)."""
    from dataclasses import MISSING, fields

    from hakube.settings import CHECKS, CLUSTER_KEYS, Cluster

    assert all(callable(k.check) for k in KEYS) and CHECKS == {k.name: k.check for k in KEYS}
    own = {"masters", "vrrp_auth_pass", "leaving"}  # from the per-master keys and the password's file
    assert {f.name for f in fields(Cluster)} - own == {k.name for k in CLUSTER_KEYS} - {"vrrp_auth_pass_file"}
    defaulted = [f.name for f in fields(Cluster) if f.default is not MISSING or f.default_factory is not MISSING]
    assert defaulted == ["leaving"]


def test_auth_pass_from_file(inv: Inv, tmp_path: Path) -> None:
    secret = tmp_path / "vrrp_pass"
    secret.write_text("fIl3pass\n")
    inv.cluster["vrrp_auth_pass_file"] = str(secret)
    assert inv.load(env={})["m1"].cluster.vrrp_auth_pass == "fIl3pass"


def test_auth_pass_env_wins_over_file(inv: Inv, tmp_path: Path) -> None:
    secret = tmp_path / "vrrp_pass"
    secret.write_text("fIl3pass\n")
    inv.cluster["vrrp_auth_pass_file"] = str(secret)
    assert inv.load(env=ENV)["m1"].cluster.vrrp_auth_pass == AUTH_PASS


def test_env_defaults_to_os_environ(inv: Inv, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AUTH_PASS_ENV, "fromenv")
    assert load_inventory(inv.hosts())["m1"].cluster.vrrp_auth_pass == "fromenv"


def test_three_masters(tmp_path: Path) -> None:
    s = make_inventory(tmp_path, masters=3).load()
    assert [m.bind_address for m in s["m3"].cluster.masters] == ["10.9.0.11", "10.9.0.12", "10.9.0.13"]
    assert s["m3"].vrrp_priority == 100


def test_local_binary_needs_no_sha256(inv: Inv, tmp_path: Path) -> None:
    binary = tmp_path / "kube-apiserver"
    binary.write_bytes(b"\x7fELF")
    del inv.cluster["kube_apiserver_sha256"]
    inv.cluster["kube_apiserver_binary"] = str(binary)
    c = inv.load()["m1"].cluster
    assert c.kube_apiserver_binary == str(binary) and c.kube_apiserver_sha256 is None


def test_old_flag_accepted_by_old_version(tmp_path: Path) -> None:
    # insecure-port was removed in 1.24, so 1.20 still takes it.
    inv = make_inventory(tmp_path, kube_version="1.20.2")
    inv.cluster["apiserver_extra_flags"] = {"insecure-port": 0, "--goaway-chance": "0.01", "profiling": False}
    c = inv.load()["m1"].cluster
    assert c.apiserver_extra_flags == {"insecure-port": 0, "goaway-chance": "0.01", "profiling": "false"}


def test_version_with_v_prefix(inv: Inv) -> None:
    inv.cluster["kube_version"] = "v1.35.3"
    assert inv.load()["m1"].cluster.kube_version == "1.35.3"


def test_ca_import_accepted_when_both_files_exist(inv: Inv, tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_text("x")
    (tmp_path / "ca.key").write_text("x")
    inv.cluster.update(ca_cert_file=str(tmp_path / "ca.crt"), ca_key_file=str(tmp_path / "ca.key"))
    c = inv.load()["m1"].cluster
    assert (c.ca_cert_file, c.ca_key_file) == (str(tmp_path / "ca.crt"), str(tmp_path / "ca.key"))


def test_certificate_lifetimes(inv: Inv) -> None:
    c = inv.load()["m1"].cluster
    assert (c.cert_validity_days, c.cert_renewal_days, c.ca_validity_days) == (365, 30, 3650)
    inv.cluster.update(cert_validity_days=20, cert_renewal_days=10, ca_validity_days=20)
    c = inv.load()["m1"].cluster
    assert (c.cert_validity_days, c.cert_renewal_days, c.ca_validity_days) == (20, 10, 20)
    # The lab's second step: the default validity with a renewal window past the 20-day certificates.
    inv.cluster.update(cert_validity_days=365, cert_renewal_days=25, ca_validity_days=3650)
    assert inv.load()["m1"].cluster.cert_renewal_days == 25


def test_node_data_is_not_validated(inv: Inv) -> None:
    # Nodes only receive /etc/kubernetes/config rendered from the masters' values.
    inv.nodes = [("n1", {"ssh_user": "root", "vip": "garbage"})]
    assert inv.load()["n1"].cluster.vip == VIP


def test_unknown_data_keys_are_ignored(inv: Inv) -> None:
    # pyinfra's own data (ssh_user, connector data) shares host.data with ours.
    inv.cluster.update(ssh_user="root", fake_delay=0)
    inv.load()


# ------------------------------------------------------------------ one bad value per case


def _set(key, value, host=None):
    def mutate(inv: Inv, tmp: Path) -> None:
        (inv.master(host) if host else inv.cluster)[key] = value(tmp) if callable(value) else value

    return mutate


def _drop(key, host=None):
    def mutate(inv: Inv, tmp: Path) -> None:
        (inv.master(host) if host else inv.cluster).pop(key)

    return mutate


def _both(*mutators):
    def mutate(inv: Inv, tmp: Path) -> None:
        for m in mutators:
            m(inv, tmp)

    return mutate


def _existing(name):
    def make(tmp: Path) -> str:
        path = tmp / name
        path.write_text("-----BEGIN SOMETHING-----\n")
        return str(path)

    return make


def _file_with(name, text):
    def make(tmp: Path) -> str:
        path = tmp / name
        path.write_text(text)
        return str(path)

    return make


def _no_masters(inv: Inv, tmp: Path) -> None:
    inv.master_group = "controllers"


NO_PASS: dict = {}


def _set_many(**values):
    def mutate(inv: Inv, tmp: Path) -> None:
        inv.cluster.update(values)

    return mutate


def _node_data(**data):
    def mutate(inv: Inv, tmp: Path) -> None:
        inv.nodes = [(name, {**d, **data}) for name, d in inv.nodes]

    return mutate


def _rename_node(new: str):
    def mutate(inv: Inv, tmp: Path) -> None:
        inv.nodes = [(new, d) for _, d in inv.nodes]

    return mutate


def _compose(*mutations):
    def mutate(inv: Inv, tmp: Path) -> None:
        for m in mutations:
            m(inv, tmp)

    return mutate

# id: (mutation, env, [(host, key), ...], substring of the first expected problem)
BAD = {
    "bind-invalid-ip": (_set("bind_address", "10.9.0.300", "m1"), ENV, [("m1", "bind_address")], "10.9.0.300"),
    "bind-not-an-ip": (_set("bind_address", "master-1", "m2"), ENV, [("m2", "bind_address")], "master-1"),
    "bind-0.0.0.0": (_set("bind_address", "0.0.0.0", "m1"), ENV, [("m1", "bind_address")], "0.0.0.0 cannot be used"),
    "bind-127.0.0.1": (_set("bind_address", "127.0.0.1", "m2"), ENV, [("m2", "bind_address")], "127.0.0.1 cannot be used"),
    "bind-equals-vip": (_set("bind_address", VIP, "m2"), ENV, [("m2", "bind_address")], "equals the VIP"),
    "vip-invalid": (_set("vip", "10.9.0.999"), ENV, [("m1", "vip")], "10.9.0.999"),
    "vip-outside-subnet": (_set("vip", "10.8.0.100"), ENV, [("m1", "vip"), ("m2", "vip")], "not in the subnet"),
    "vip-outside-prefix": (_set("vip_prefix", 30), ENV, [("m1", "vip"), ("m2", "vip")], "not in the subnet"),
    "priority-duplicate": (_set("vrrp_priority", 120, "m2"), ENV, [("m2", "vrrp_priority")], "also m1's"),
    "priority-0": (_set("vrrp_priority", 0, "m1"), ENV, [("m1", "vrrp_priority")], "outside 1-254"),
    "priority-255": (_set("vrrp_priority", 255, "m2"), ENV, [("m2", "vrrp_priority")], "outside 1-254"),
    "priority-string": (_set("vrrp_priority", "120", "m1"), ENV, [("m1", "vrrp_priority")], "not an integer"),
    "priority-bool": (_set("vrrp_priority", True, "m1"), ENV, [("m1", "vrrp_priority")], "not an integer"),
    "interface-bad": (_set("vrrp_interface", "eth0; rm -rf /", "m1"), ENV, [("m1", "vrrp_interface")], "not a Linux interface name"),
    "router-id-0": (_set("virtual_router_id", 0), ENV, [("m1", "virtual_router_id")], "outside 1-255"),
    "router-id-256": (_set("virtual_router_id", 256), ENV, [("m1", "virtual_router_id")], "outside 1-255"),
    "auth-pass-missing": (lambda inv, tmp: None, NO_PASS, [("m1", "vrrp_auth_pass_file")], "no VRRP password"),
    "auth-pass-env-empty": (lambda inv, tmp: None, {AUTH_PASS_ENV: ""}, [("m1", "vrrp_auth_pass_file")], "no VRRP password"),
    "auth-pass-env-9-chars": (lambda inv, tmp: None, {AUTH_PASS_ENV: "123456789"}, [("m1", "vrrp_auth_pass_file")], "9 characters"),
    "auth-pass-file-9-chars": (
        _set("vrrp_auth_pass_file", _file_with("pass", "abcdefghi\n")), NO_PASS, [("m1", "vrrp_auth_pass_file")], "9 characters",
    ),
    "auth-pass-file-empty": (_set("vrrp_auth_pass_file", _file_with("pass", "\n")), NO_PASS, [("m1", "vrrp_auth_pass_file")], "empty"),
    "auth-pass-with-space": (lambda inv, tmp: None, {AUTH_PASS_ENV: "a b"}, [("m1", "vrrp_auth_pass_file")], "printable ASCII"),
    "auth-file-missing": (
        _set("vrrp_auth_pass_file", lambda tmp: str(tmp / "nope")), NO_PASS, [("m1", "vrrp_auth_pass_file")], "cannot read",
    ),
    "auth-file-is-a-directory": (
        _set("vrrp_auth_pass_file", lambda tmp: str(tmp)), NO_PASS, [("m1", "vrrp_auth_pass_file")], "cannot read",
    ),
    "service-cidr-invalid": (_set("service_cluster_ip_range", "10.254.0.0/33"), ENV, [("m1", "service_cluster_ip_range")], "10.254.0.0/33"),
    "service-cidr-garbage": (_set("service_cluster_ip_range", "services"), ENV, [("m1", "service_cluster_ip_range")], "services"),
    "service-cidr-host-bits": (_set("service_cluster_ip_range", "10.254.0.1/16"), ENV, [("m1", "service_cluster_ip_range")], "host bits"),
    "port-range-reversed": (_set("service_node_port_range", "32767-30000"), ENV, [("m1", "service_node_port_range")], "LOW < HIGH"),
    "port-range-abc": (_set("service_node_port_range", "abc"), ENV, [("m1", "service_node_port_range")], "not LOW-HIGH"),
    "port-range-zero": (_set("service_node_port_range", "0-10"), ENV, [("m1", "service_node_port_range")], "1 <= LOW"),
    "port-range-too-high": (_set("service_node_port_range", "30000-65536"), ENV, [("m1", "service_node_port_range")], "65535"),
    "etcd-http": (_set("etcd_servers", ["http://10.9.0.20:2379"]), ENV, [("m1", "etcd_servers")], "http://10.9.0.20:2379"),
    "etcd-one-of-many-http": (
        _set("etcd_servers", ["https://10.9.0.20:2379", "http://10.9.0.21:2379"]), ENV, [("m1", "etcd_servers")], "TLS",
    ),
    "etcd-no-port": (_set("etcd_servers", ["https://10.9.0.20"]), ENV, [("m1", "etcd_servers")], "https://HOST:PORT"),
    "etcd-empty": (_set("etcd_servers", []), ENV, [("m1", "etcd_servers")], "non-empty"),
    "version-unsupported": (_set("kube_version", "1.25.0"), ENV, [("m1", "kube_version")], "not supported"),
    "version-banana": (_set("kube_version", "banana"), ENV, [("m1", "kube_version")], "banana"),
    "version-no-patch": (_set("kube_version", "1.36"), ENV, [("m1", "kube_version")], "1.36"),
    "extra-flag-unknown": (
        _set("apiserver_extra_flags", {"no-such-flag": "x"}), ENV, [("m1", "apiserver_extra_flags")], "unknown kube-apiserver flag --no-such-flag",
    ),
    "extra-flag-removed": (
        _set("apiserver_extra_flags", {"insecure-port": 0}), ENV, [("m1", "apiserver_extra_flags")], "--insecure-port was removed in 1.24",
    ),
    "extra-flag-klog-removed": (
        _set("apiserver_extra_flags", {"logtostderr": True}), ENV, [("m1", "apiserver_extra_flags")], "--logtostderr was removed in 1.26",
    ),
    "extra-flag-too-new": (
        _both(_set("kube_version", "1.20.2"), _set("apiserver_extra_flags", {"authentication-config": "/etc/kubernetes/authn.yaml"})),
        ENV, [("m1", "apiserver_extra_flags")], "--authentication-config first appeared in 1.29",
    ),
    "extra-flag-bad-name": (_set("apiserver_extra_flags", {"Bad_Flag": "1"}), ENV, [("m1", "apiserver_extra_flags")], "not a flag name"),
    "extra-flag-value-with-space": (
        _set("apiserver_extra_flags", {"event-ttl": "1h --anonymous-auth=true"}), ENV, [("m1", "apiserver_extra_flags")], "one word",
    ),
    "extra-flags-not-a-mapping": (_set("apiserver_extra_flags", ["event-ttl=2h"]), ENV, [("m1", "apiserver_extra_flags")], "mapping"),
    "ca-cert-file-missing": (
        _both(_set("ca_cert_file", lambda tmp: str(tmp / "missing-ca.pem")), _set("ca_key_file", _existing("ca-key.pem"))),
        ENV, [("m1", "ca_cert_file")], "does not exist",
    ),
    "ca-key-file-missing": (
        _both(_set("ca_cert_file", _existing("ca.pem")), _set("ca_key_file", lambda tmp: str(tmp / "missing-key.pem"))),
        ENV, [("m1", "ca_key_file")], "does not exist",
    ),
    "ca-cert-only": (_set("ca_cert_file", _existing("ca.pem")), ENV, [("m1", "ca_cert_file")], "needs both"),
    "ca-key-only": (_set("ca_key_file", _existing("ca-key.pem")), ENV, [("m1", "ca_cert_file")], "needs both"),
    "missing-vip": (_drop("vip"), ENV, [("m1", "vip")], "missing (required)"),
    "missing-etcd-servers": (_drop("etcd_servers"), ENV, [("m1", "etcd_servers")], "missing (required)"),
    "missing-bind-address": (_drop("bind_address", "m2"), ENV, [("m2", "bind_address")], "missing (required)"),
    "missing-priority": (_drop("vrrp_priority", "m1"), ENV, [("m1", "vrrp_priority")], "missing (required)"),
    "missing-interface": (_drop("vrrp_interface", "m2"), ENV, [("m2", "vrrp_interface")], "missing (required)"),
    "required-set-to-none": (_set("vip", None), ENV, [("m1", "vip")], "missing (required)"),
    "duplicate-bind-address": (_set("bind_address", "10.9.0.11", "m2"), ENV, [("m2", "bind_address")], "also m1's"),
    "masters-disagree-vip": (_set("vip", "10.9.0.101", "m2"), ENV, [("m2", "vip")], "differs from m1's value"),
    "masters-disagree-default": (_set("lb_port", 8443, "m2"), ENV, [("m2", "lb_port")], "differs from m1's value"),
    "no-masters-group": (_no_masters, ENV, [("inventory", "masters")], "no host in the masters group"),
    "sha256-missing": (_drop("kube_apiserver_sha256"), ENV, [("m1", "kube_apiserver_sha256")], "required when the binary is downloaded"),
    "sha256-missing-binary-none": (
        _both(_drop("kube_apiserver_sha256"), _set("kube_apiserver_binary", None)),
        ENV, [("m1", "kube_apiserver_sha256")], "required when the binary is downloaded",
    ),
    "sha256-uppercase": (_set("kube_apiserver_sha256", SHA.upper()), ENV, [("m1", "kube_apiserver_sha256")], "lowercase hex"),
    "sha256-short": (_set("kube_apiserver_sha256", "abc"), ENV, [("m1", "kube_apiserver_sha256")], "64"),
    "binary-missing": (_set("kube_apiserver_binary", lambda tmp: str(tmp / "kube-apiserver")), ENV, [("m1", "kube_apiserver_binary")], "does not exist"),
    "shutdown-delay-too-small": (_set("shutdown_delay_seconds", 2), ENV, [("m1", "shutdown_delay_seconds")], "at least 3s"),
    "shutdown-delay-vs-slow-checks": (
        _both(_set("haproxy_check_interval_ms", 2000), _set("haproxy_check_fall", 3)),
        ENV, [("m1", "shutdown_delay_seconds")], "at least 8s",
    ),
    "haproxy-timeout-bad": (_set("haproxy_timeout", "forever"), ENV, [("m1", "haproxy_timeout")], "duration"),
    "audit-level-unknown": (_set("audit_policy_rules", [{"level": "Everything"}]), ENV, [("m1", "audit_policy_rules")], "Everything"),
    "subject-unknown-field": (_set("cert_subject", {"CN": "x"}), ENV, [("m1", "cert_subject")], "unknown subject fields"),
    "san-bad": (_set("cert_extra_sans", ["not a name"]), ENV, [("m1", "cert_extra_sans")], "neither an IP"),
    "allow-privileged-string": (_set("allow_privileged", "yes"), ENV, [("m1", "allow_privileged")], "true or false"),
    "vrrp-unicast-string": (_set("vrrp_unicast", "true"), ENV, [("m1", "vrrp_unicast")], "true or false"),
}


# Values are checked by type: nothing that reaches a flag, a config line or a shell command may
# carry whitespace, quotes, control characters or shell syntax its type does not allow.
def _one(key: str, host: str = "m1") -> list[tuple[str, str]]:
    return [(host, key)]


def _plugins(*extra: str) -> list[str]:
    return ["NamespaceLifecycle", "NodeRestriction", *extra]


BAD.update({
    # Addresses: IPv6 and dual stack have their own tests (test_ipv6.py); here, one family each.
    "vip-ipv6-beside-ipv4-masters": (_set("vip", "fd00::100"), ENV, _one("vip"), "is IPv6, the masters' bind_address are IPv4"),
    "vip-scoped-ipv6-with-flag": (_set("vip", "fe80::1%eth0 --anonymous-auth=true"), ENV, _one("vip"), "is a scoped IPv6 address"),
    "bind-ipv6-on-one-master": (_set("bind_address", "fd00::12", "m2"), ENV, _one("bind_address", "m2"), "must be of one family"),
    "service-cidr-ipv6-beside-ipv4-masters": (_set("service_cluster_ip_range", "fd00:254::/108"), ENV, _one("service_cluster_ip_range"), "is IPv6, the masters' bind_address are IPv4"),
    "etcd-host-with-flag": (_set("etcd_servers", ["https://10.9.0.20 --anonymous-auth=true:2379"]), ENV, _one("etcd_servers"), "neither an IPv4 address, an IPv6 address in brackets nor a DNS name"),
    "etcd-host-semicolon": (_set("etcd_servers", ["https://etcd;reboot:2379"]), ENV, _one("etcd_servers"), "neither an IPv4 address, an IPv6 address in brackets nor a DNS name"),
    "etcd-port-unicode-digits": (_set("etcd_servers", ["https://10.9.0.20:\uff12\uff13\uff17\uff19"]), ENV, _one("etcd_servers"), "https://HOST:PORT"),
    "etcd-trailing-newline": (_set("etcd_servers", ["https://10.9.0.20:2379\n"]), ENV, _one("etcd_servers"), "https://HOST:PORT"),
    # Interface names.
    "interface-too-long": (_set("vrrp_interface", "eth0123456789abc", "m1"), ENV, _one("vrrp_interface"), "1-15"),
    "interface-slash": (_set("vrrp_interface", "eth/0", "m2"), ENV, _one("vrrp_interface", "m2"), "not a Linux interface name"),
    "interface-dotdot": (_set("vrrp_interface", "..", "m1"), ENV, _one("vrrp_interface"), "not a Linux interface name"),
    "interface-colon-alias": (_set("vrrp_interface", "eth0:1", "m1"), ENV, _one("vrrp_interface"), "not a Linux interface name"),
    "interface-newline": (_set("vrrp_interface", "eth0\n", "m1"), ENV, _one("vrrp_interface"), "not a Linux interface name"),
    # --authorization-mode.
    "authorization-mode-with-flag": (_set("authorization_mode", "Node,RBAC --anonymous-auth=true"), ENV, _one("authorization_mode"), "unknown authorization mode"),
    "authorization-mode-unknown": (_set("authorization_mode", "Node,RBAC,Magic"), ENV, _one("authorization_mode"), "'Magic'"),
    "authorization-mode-lowercase": (_set("authorization_mode", "node,rbac"), ENV, _one("authorization_mode"), "unknown authorization mode"),
    "authorization-mode-duplicate": (_set("authorization_mode", "RBAC,Node,RBAC"), ENV, _one("authorization_mode"), "'RBAC' listed more than once"),
    "authorization-mode-empty": (_set("authorization_mode", ""), ENV, _one("authorization_mode"), "unknown authorization mode"),
    "authorization-mode-not-text": (_set("authorization_mode", 5), ENV, _one("authorization_mode"), "non-empty list"),
    # --enable-admission-plugins, per version.
    "admission-plugin-unknown": (_set("admission_plugins", _plugins("Initialiser")), ENV, _one("admission_plugins"), "unknown admission plugin(s) 'Initialiser'"),
    "admission-plugin-removed": (_set("admission_plugins", _plugins("PodSecurityPolicy")), ENV, _one("admission_plugins"), "PodSecurityPolicy was removed in 1.25 (kube_version 1.36.0)"),
    "admission-plugin-initializers": (_set("admission_plugins", _plugins("Initializers")), ENV, _one("admission_plugins"), "Initializers was removed in 1.14"),
    "admission-plugin-too-new": (
        _both(_set("kube_version", "1.20.2"), _set("admission_plugins", _plugins("PodSecurity"))),
        ENV, _one("admission_plugins"), "PodSecurity first appeared in 1.22 (kube_version 1.20.2)",
    ),
    "admission-plugin-duplicate": (_set("admission_plugins", _plugins("NodeRestriction")), ENV, _one("admission_plugins"), "listed more than once"),
    "admission-plugin-with-space": (_set("admission_plugins", ["NamespaceLifecycle ServiceAccount"]), ENV, _one("admission_plugins"), "unknown admission plugin"),
    "admission-plugins-empty": (_set("admission_plugins", []), ENV, _one("admission_plugins"), "non-empty"),
    # URLs.
    "issuer-http": (_set("service_account_issuer", "http://kubernetes.default.svc"), ENV, _one("service_account_issuer"), "https://"),
    "issuer-with-flag": (_set("service_account_issuer", "https://kubernetes.default.svc --anonymous-auth=true"), ENV, _one("service_account_issuer"), "neither an IPv4 address, an IPv6 address in brackets nor a DNS name"),
    "issuer-with-query": (_set("service_account_issuer", "https://issuer.example.com/?a=b"), ENV, _one("service_account_issuer"), "query or fragment"),
    "issuer-command-substitution": (_set("service_account_issuer", "https://example.com/$(reboot)"), ENV, _one("service_account_issuer"), "after the host"),
    "issuer-userinfo": (_set("service_account_issuer", "https://user@example.com/"), ENV, _one("service_account_issuer"), "neither an IPv4 address, an IPv6 address in brackets nor a DNS name"),
    "url-ftp": (_set("kube_apiserver_url", "ftp://mirror.example.com/kube-apiserver"), ENV, _one("kube_apiserver_url"), "http:// or https://"),
    "url-backtick": (_set("kube_apiserver_url", "https://mirror.example.com/`reboot`"), ENV, _one("kube_apiserver_url"), "after the host"),
    "url-semicolon": (_set("kube_apiserver_url", "https://mirror.example.com/x;reboot"), ENV, _one("kube_apiserver_url"), "after the host"),
    "url-other-placeholder": (_set("kube_apiserver_url", "https://mirror.example.com/{os}/{arch}/kube-apiserver"), ENV, _one("kube_apiserver_url"), "after the host"),
    "url-format-field": (_set("kube_apiserver_url", "https://mirror.example.com/{version.real}/kube-apiserver"), ENV, _one("kube_apiserver_url"), "after the host"),
    "url-nested-placeholder": (_set("kube_apiserver_url", "https://mirror.example.com/{ar{version}ch}/kube-apiserver"), ENV, _one("kube_apiserver_url"), "after the host"),
    "url-newline": (_set("kube_apiserver_url", "https://mirror.example.com/kube-apiserver\nreboot"), ENV, _one("kube_apiserver_url"), "after the host"),
    "url-bad-port": (_set("kube_apiserver_url", "https://mirror.example.com:99999/x"), ENV, _one("kube_apiserver_url"), "invalid port"),
    # --audit-log-path.
    "audit-path-relative": (_set("audit_log_path", "var/log/audit.log"), ENV, _one("audit_log_path"), "absolute file path"),
    "audit-path-space": (_set("audit_log_path", "/var/log/k8s audit.log"), ENV, _one("audit_log_path"), "absolute file path"),
    "audit-path-flag": (_set("audit_log_path", "/var/log/a.log --anonymous-auth=true"), ENV, _one("audit_log_path"), "absolute file path"),
    "audit-path-command": (_set("audit_log_path", "/var/log/$(reboot).log"), ENV, _one("audit_log_path"), "absolute file path"),
    "audit-path-directory": (_set("audit_log_path", "/var/log/"), ENV, _one("audit_log_path"), "absolute file path"),
    # Extra flag values.
    "extra-flag-value-tab": (_set("apiserver_extra_flags", {"goaway-chance": "0.01\t--anonymous-auth=true"}), ENV, _one("apiserver_extra_flags"), "value of --goaway-chance"),
    "extra-flag-value-newline": (_set("apiserver_extra_flags", {"goaway-chance": "0.01\n--anonymous-auth=true"}), ENV, _one("apiserver_extra_flags"), "value of --goaway-chance"),
    "extra-flag-value-command": (_set("apiserver_extra_flags", {"goaway-chance": "$(reboot)"}), ENV, _one("apiserver_extra_flags"), "no whitespace, quotes or shell characters"),
    "extra-flag-value-quote": (_set("apiserver_extra_flags", {"goaway-chance": "0.01'"}), ENV, _one("apiserver_extra_flags"), "value of --goaway-chance"),
    "extra-flag-value-list": (_set("apiserver_extra_flags", {"goaway-chance": ["0.01", "--anonymous-auth=true"]}), ENV, _one("apiserver_extra_flags"), "must be a string, a number or true/false"),
    # Raw config lines: one printable line each, inside their section.
    "keepalived-line-newline": (_set("keepalived_extra_global_defs", ["max_auto_priority 50\n}"]), ENV, _one("keepalived_extra_global_defs"), "one printable line"),
    "keepalived-line-brace": (_set("keepalived_extra_global_defs", ["} vrrp_script evil {"]), ENV, _one("keepalived_extra_global_defs"), "keepalived block"),
    "keepalived-line-tab": (_set("keepalived_extra_global_defs", ["max_auto_priority\t50"]), ENV, _one("keepalived_extra_global_defs"), "tab"),
    "keepalived-line-cr": (_set("keepalived_extra_global_defs", ["max_auto_priority 50\r"]), ENV, _one("keepalived_extra_global_defs"), "carriage return"),
    "keepalived-line-separator": (_set("keepalived_extra_global_defs", ["a\u2028b"]), ENV, _one("keepalived_extra_global_defs"), "one printable line"),
    "haproxy-line-newline": (_set("haproxy_extra_defaults", ["option log-health-checks\nfrontend evil"]), ENV, _one("haproxy_extra_defaults"), "one printable line"),
    "haproxy-line-section": (_set("haproxy_extra_defaults", ["listen evil"]), ENV, _one("haproxy_extra_defaults"), "new haproxy section"),
    "haproxy-line-nul": (_set("haproxy_extra_defaults", ["option\x00x"]), ENV, _one("haproxy_extra_defaults"), "one printable line"),
    "haproxy-lines-not-a-list": (_set("haproxy_extra_defaults", "option log-health-checks"), ENV, _one("haproxy_extra_defaults"), "must be a list"),
    # DNS names and plain names.
    "cluster-domain-with-flag": (_set("cluster_domain", "cluster.local --anonymous-auth=true"), ENV, _one("cluster_domain"), "not a DNS name"),
    "cluster-domain-underscore": (_set("cluster_domain", "cluster_local"), ENV, _one("cluster_domain"), "not a DNS name"),
    "cluster-domain-leading-hyphen": (_set("cluster_domain", "-cluster.local"), ENV, _one("cluster_domain"), "inner hyphens"),
    "cluster-domain-label-64": (_set("cluster_domain", "a" * 64 + ".local"), ENV, _one("cluster_domain"), "1-63"),
    "cluster-domain-empty-label": (_set("cluster_domain", "cluster..local"), ENV, _one("cluster_domain"), "not a DNS name"),
    "cluster-domain-wildcard": (_set("cluster_domain", "*.cluster.local"), ENV, _one("cluster_domain"), "not a DNS name"),
    "cluster-domain-too-long": (_set("cluster_domain", ".".join(["a" * 60] * 4)), ENV, _one("cluster_domain"), "too long"),
    "san-wildcard-inner": (_set("cert_extra_sans", ["api.*.example.com"]), ENV, _one("cert_extra_sans"), "neither an IP"),
    "san-wildcard-partial": (_set("cert_extra_sans", ["api*.example.com"]), ENV, _one("cert_extra_sans"), "neither an IP"),
    "san-bare-wildcard": (_set("cert_extra_sans", ["*"]), ENV, _one("cert_extra_sans"), "neither an IP"),
    "san-mistyped-ip": (_set("cert_extra_sans", ["10.9.0.300"]), ENV, _one("cert_extra_sans"), "all digits"),
    "san-label-64": (_set("cert_extra_sans", ["a" * 64 + ".example.com"]), ENV, _one("cert_extra_sans"), "1-63"),
    "san-name-254": (_set("cert_extra_sans", [".".join(["a" * 63] * 4)]), ENV, _one("cert_extra_sans"), "1-253"),
    "san-scoped-ipv6": (_set("cert_extra_sans", ["fe80::1%eth0"]), ENV, _one("cert_extra_sans"), "scoped IPv6"),
    "san-newline": (_set("cert_extra_sans", ["api.example.com\n"]), ENV, _one("cert_extra_sans"), "neither an IP"),
    "cluster-name-trailing-newline": (_set("cluster_name", "kubernetes\n"), ENV, _one("cluster_name"), "not a plain name"),
    "cluster-name-space": (_set("cluster_name", "my cluster"), ENV, _one("cluster_name"), "not a plain name"),
    # Certificate subject.
    "subject-newline": (_set("cert_subject", {"O": "k8s\nCN=admin"}), ENV, _one("cert_subject"), "O must be 1-64 printable characters"),
    "subject-quote": (_set("cert_subject", {"OU": 'System"'}), ENV, _one("cert_subject"), "without quotes"),
    "subject-country-digits": (_set("cert_subject", {"C": "C1"}), ENV, _one("cert_subject"), "two-letter"),
    "subject-too-long": (_set("cert_subject", {"OU": "x" * 65}), ENV, _one("cert_subject"), "1-64"),
    "subject-not-text": (_set("cert_subject", {"O": 5}), ENV, _one("cert_subject"), "O must be"),
    # Local paths on the deploy machine.
    "pki-dir-newline": (_set("pki_dir", lambda tmp: str(tmp / "pki\nx")), ENV, _one("pki_dir"), "control characters"),
    "pki-dir-line-separator": (_set("pki_dir", lambda tmp: str(tmp / "pki\u2028x")), ENV, _one("pki_dir"), "line breaks"),
    "artifacts-dir-nul": (_set("artifacts_dir", "art\x00ifacts"), ENV, _one("artifacts_dir"), "control characters"),
    "artifacts-dir-empty": (_set("artifacts_dir", ""), ENV, _one("artifacts_dir"), "non-empty"),
    "auth-pass-file-newline": (_set("vrrp_auth_pass_file", "pass\nfile"), NO_PASS, _one("vrrp_auth_pass_file"), "control characters"),
    "ca-cert-file-escape": (
        _both(_set("ca_cert_file", "ca\x1b[2J.pem"), _set("ca_key_file", _existing("ca-key.pem"))),
        ENV, _one("ca_cert_file"), "control characters",
    ),
    # Numbers: ASCII digits only, in the units the consumer understands.
    "event-ttl-days": (_set("event_ttl", "1d"), ENV, _one("event_ttl"), "units ms, s, m, h"),
    "event-ttl-with-flag": (_set("event_ttl", "1h --anonymous-auth=true"), ENV, _one("event_ttl"), "duration"),
    "haproxy-timeout-unicode-digit": (_set("haproxy_timeout", "\uff11h"), ENV, _one("haproxy_timeout"), "duration"),
    "version-unicode-digit": (_set("kube_version", "1.36.\u0663"), ENV, _one("kube_version"), "not a version"),
    "port-range-unicode-digits": (_set("service_node_port_range", "\uff13\uff10000-32767"), ENV, _one("service_node_port_range"), "LOW-HIGH"),
    # Audit policy rules.
    "audit-rule-unknown-field": (_set("audit_policy_rules", [{"level": "Metadata", "user": ["x"]}]), ENV, _one("audit_policy_rules"), "unknown audit rule field(s) ['user']"),
    "audit-rule-newline": (_set("audit_policy_rules", [{"level": "Metadata", "users": ["a\nb"]}]), ENV, _one("audit_policy_rules"), "control character"),
    # Relations: a Service must never get the VIP or a master's address as its cluster IP.
    "service-cidr-contains-vip": (_set("service_cluster_ip_range", "10.9.0.96/28"), ENV, _one("service_cluster_ip_range"), "10.9.0.96/28 contains the VIP 10.9.0.100"),
    "service-cidr-contains-bind-addresses": (
        _set("service_cluster_ip_range", "10.9.0.8/29"), ENV,
        [("m1", "service_cluster_ip_range"), ("m2", "service_cluster_ip_range")], "contains m1's bind_address 10.9.0.11",
    ),
    # --- keys that share an address space or a port (each pair its own case)
    "vip-network-address": (_set("vip", "10.9.0.0"), ENV, _one("vip"), "the network address of 10.9.0.0/24"),
    "vip-broadcast-address": (_set("vip", "10.9.0.255"), ENV, _one("vip"), "the broadcast address of 10.9.0.0/24"),
    "vip-broadcast-of-smaller-prefix": (
        _set_many(vip="10.9.0.15", vip_prefix=28), ENV, _one("vip"), "the broadcast address of 10.9.0.0/28"),
    "bind-broadcast-of-vip-subnet": (
        _set("bind_address", "10.9.0.255", "m2"), ENV, [("m2", "bind_address")], "broadcast address of the VIP's subnet"),
    "vip-is-etcd-server": (_set("vip", "10.9.0.20"), ENV, _one("vip"), "the etcd server of https://10.9.0.20:2379"),
    "vip-is-second-etcd-server": (_set("vip", "10.9.0.21"), ENV, _one("vip"), "the etcd server of https://10.9.0.21:2379"),
    "vip-is-a-node-ssh-address": (_node_data(ssh_hostname="10.9.0.100"), ENV, _one("vip"), "the address of host n1"),
    "vip-is-a-host-named-by-address": (_rename_node("10.9.0.100"), ENV, _one("vip"), "the address of host 10.9.0.100"),
    "vip-multicast": (_set("vip", "224.0.0.18"), ENV, _one("vip"), "a multicast address"),
    "vip-unspecified": (_set("vip", "0.0.0.0"), ENV, _one("vip"), "the unspecified address"),
    "vip-link-local": (_set("vip", "169.254.0.10"), ENV, _one("vip"), "a link-local address"),
    "vip-limited-broadcast": (_set("vip", "255.255.255.255"), ENV, _one("vip"), "the limited broadcast address"),
    "service-cidr-contains-etcd": (
        _set("service_cluster_ip_range", "10.9.0.16/28"), ENV, [("m1", "service_cluster_ip_range")] * 2,
        "contains the etcd server of https://10.9.0.20:2379"),
    "service-cidr-contains-node": (
        _compose(_node_data(ssh_hostname="10.254.0.7")), ENV, _one("service_cluster_ip_range"),
        "contains the address of host n1 (10.254.0.7)"),
    "lb-port-is-agent-port": (_set("lb_port", 6444), ENV, _one("haproxy_agent_port"), "6444 is also lb_port"),
    "apiserver-port-is-agent-port": (
        _set("apiserver_port", 6444), ENV, _one("haproxy_agent_port"), "6444 is also apiserver_port"),
    "stats-port-is-lb-port": (
        _set("haproxy_stats_port", 6443), ENV, [("m1", "haproxy_stats_port")] * 2, "6443 is also apiserver_port"),
    "stats-port-is-agent-port": (
        _set("haproxy_stats_port", 6444), ENV, _one("haproxy_stats_port"), "6444 is also haproxy_agent_port"),
    "stats-port-is-apiserver-port": (
        _set_many(haproxy_stats_port=7443, apiserver_port=7443), ENV, _one("haproxy_stats_port"),
        "7443 is also apiserver_port"),
    "lb-port-is-stats-port": (_set("lb_port", 8404), ENV, _one("haproxy_stats_port"), "8404 is also lb_port"),
    "etcd-on-a-master-on-apiserver-port": (
        _set_many(etcd_servers=["https://10.9.0.11:6443"]), ENV, [("m1", "apiserver_port"), ("m1", "lb_port")],
        "6443 is etcd's port on a master"),
    "etcd-on-loopback-on-agent-port": (
        _set_many(etcd_servers=["https://127.0.0.1:6444"]), ENV, _one("haproxy_agent_port"),
        "6444 is etcd's port on a master"),
    "service-cidr-contains-everything": (
        _set("service_cluster_ip_range", "10.9.0.0/24"), ENV,
        # the VIP, both masters, both etcd servers
        [("m1", "service_cluster_ip_range"), ("m1", "service_cluster_ip_range"), ("m2", "service_cluster_ip_range")]
        + [("m1", "service_cluster_ip_range")] * 2,
        "contains the VIP",
    ),
    "audit-rule-object": (_set("audit_policy_rules", [{"level": "Metadata", "users": [object()]}]), ENV, _one("audit_policy_rules"), "not a string"),
    # Certificate lifetimes: positive whole days; a fresh certificate outside the renewal window;
    # a created CA outliving what it issues.
    "cert-validity-zero": (_set("cert_validity_days", 0), ENV, _one("cert_validity_days"), "outside 1-36500"),
    "cert-validity-float": (_set("cert_validity_days", 365.5), ENV, _one("cert_validity_days"), "not an integer"),
    "cert-renewal-negative": (_set("cert_renewal_days", -1), ENV, _one("cert_renewal_days"), "outside 1-36500"),
    "cert-renewal-string": (_set("cert_renewal_days", "30"), ENV, _one("cert_renewal_days"), "not an integer"),
    "ca-validity-bool": (_set("ca_validity_days", True), ENV, _one("ca_validity_days"), "not an integer"),
    "ca-validity-zero": (_set("ca_validity_days", 0), ENV, _one("ca_validity_days"), "outside 1-36500"),
    "cert-renewal-equals-validity": (
        _both(_set("cert_validity_days", 20), _set("cert_renewal_days", 20)), ENV, _one("cert_renewal_days"),
        "20 must be less than cert_validity_days (20): otherwise every run reissues every certificate",
    ),
    # A short validity with the default renewal window (30 days) would reissue on every run.
    "cert-validity-below-default-renewal": (
        _set("cert_validity_days", 20), ENV, _one("cert_renewal_days"), "30 must be less than cert_validity_days (20)",
    ),
    "cert-validity-above-ca-validity": (
        _set("cert_validity_days", 4000), ENV, _one("cert_validity_days"), "4000 is more than ca_validity_days (3650)",
    ),
    "ca-validity-below-default-cert-validity": (
        _set("ca_validity_days", 100), ENV, _one("cert_validity_days"), "365 is more than ca_validity_days (100)",
    ),
})


@pytest.mark.parametrize("mutate, env, expected, reason", list(BAD.values()), ids=list(BAD))
def test_bad_inventory(inv: Inv, tmp_path: Path, mutate, env, expected, reason) -> None:
    mutate(inv, tmp_path)
    problems = inv.problems(env=env)
    lines = [problem_for(problems, host, key) for host, key in expected]
    assert reason in lines[0], lines
    # Only the broken thing is reported: one line per expected (host, key).
    assert len(problems) == len(expected), problems
    # A control character in the data never breaks a problem line (values are shown with repr).
    assert all(p.isprintable() for p in problems), problems


def test_error_message_lists_every_problem(inv: Inv) -> None:
    inv.master("m1")["bind_address"] = "0.0.0.0"
    with pytest.raises(InventoryError) as exc:
        inv.load()
    text = str(exc.value)
    assert "1 problem)" in text and "no host was changed" in text
    assert "m1: bind_address: 0.0.0.0 cannot be used" in text


def test_several_problems_reported_at_once(inv: Inv) -> None:
    inv.master("m1")["bind_address"] = "0.0.0.0"
    inv.master("m2")["vrrp_priority"] = 255
    inv.cluster["vip"] = "not-an-ip"
    inv.cluster["etcd_servers"] = ["http://10.9.0.20:2379"]
    inv.cluster["service_node_port_range"] = "abc"
    inv.cluster["apiserver_extra_flags"] = {"insecure-port": 0}
    with pytest.raises(InventoryError) as exc:
        inv.load(env={})
    problems = exc.value.problems
    expected = [
        ("m1", "bind_address"),
        ("m2", "vrrp_priority"),
        ("m1", "vip"),
        ("m1", "etcd_servers"),
        ("m1", "service_node_port_range"),
        ("m1", "apiserver_extra_flags"),
        ("m1", "vrrp_auth_pass_file"),
    ]
    for host, key in expected:
        problem_for(problems, host, key)
    assert len(problems) == len(expected) == 7, problems
    assert "(7 problems)" in str(exc.value)
    assert all(f"  {p}" in str(exc.value) for p in problems)


def test_relations_reported_together(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, masters=3)
    inv.master("m2")["vrrp_priority"] = 120
    inv.master("m3")["vrrp_priority"] = 120
    inv.master("m3")["bind_address"] = "10.9.0.11"
    problems = inv.problems()
    assert len(problems) == 3, problems
    problem_for(problems, "m2", "vrrp_priority")
    assert "also m1's" in problem_for(problems, "m3", "vrrp_priority")
    assert "also m1's" in problem_for(problems, "m3", "bind_address")


def test_auth_pass_file_unreadable_by_the_deploy_user_is_a_problem(inv: Inv, tmp_path: Path) -> None:
    """A mode-0 file: another user cannot read it (a problem naming the key); root reads any file."""
    secret = tmp_path / "pass"
    secret.write_text("s3cret\n")
    secret.chmod(0)
    inv.cluster["vrrp_auth_pass_file"] = str(secret)
    if IS_ROOT:
        assert inv.load(env={})["m1"].cluster.vrrp_auth_pass == "s3cret"
    else:
        assert "cannot read" in problem_for(inv.problems(env={}), "m1", "vrrp_auth_pass_file")


def test_secret_never_in_problems(inv: Inv) -> None:
    problems = inv.problems(env={AUTH_PASS_ENV: "toolong-secret"})
    assert not any("toolong-secret" in p for p in problems)


# ------------------------------------------------------------------ the VRRP password stays secret


def test_auth_pass_not_in_repr(inv: Inv) -> None:
    s = inv.load()
    assert s["m1"].cluster.vrrp_auth_pass == AUTH_PASS
    for text in (repr(s["m1"]), repr(s["m1"].cluster), repr(s["n1"]), str(s["m2"])):
        assert AUTH_PASS not in text
        assert "vrrp_auth_pass=" not in text


@pytest.mark.parametrize(
    "secret",
    ["ab}cd", "ab{", "pa#ss", "pa!ss", 'a"b', "a'b", "a$b", "a\\b", "a`b", "a b", "ab\tc", "toolong-secret"],
    ids=["close-brace", "open-brace", "hash", "bang", "double-quote", "single-quote", "dollar", "backslash",
         "backtick", "space", "tab", "too-long"],
)
def test_bad_auth_pass_refused_without_echoing_it(inv: Inv, secret: str) -> None:
    problems = inv.problems(env={AUTH_PASS_ENV: secret})
    line = problem_for(problems, "m1", "vrrp_auth_pass_file")
    assert AUTH_PASS_ENV in line
    assert len(problems) == 1, problems
    assert not any(secret in p for p in problems)


def test_bad_auth_pass_from_file_not_echoed(inv: Inv, tmp_path: Path) -> None:
    secret = tmp_path / "pass"
    secret.write_text("ab}c#d\n")
    inv.cluster["vrrp_auth_pass_file"] = str(secret)
    with pytest.raises(InventoryError) as exc:
        inv.load(env={})
    assert "ab}c#d" not in str(exc.value)
    assert str(secret) in problem_for(exc.value.problems, "m1", "vrrp_auth_pass_file")


# ------------------------------------------------------------------ typed values that are accepted

ACCEPTED = {
    "authorization-mode-list": ("authorization_mode", ["Node", "RBAC"], "Node,RBAC"),
    "authorization-mode-webhook": ("authorization_mode", "Node,Webhook,RBAC", "Node,Webhook,RBAC"),
    "admission-plugins-string": ("admission_plugins", "NamespaceLifecycle,NodeRestriction,PodSecurity", ("NamespaceLifecycle", "NodeRestriction", "PodSecurity")),
    "issuer-with-port-and-path": ("service_account_issuer", "https://issuer.example.com:8443/k8s", "https://issuer.example.com:8443/k8s"),
    "issuer-ipv4": ("service_account_issuer", "https://10.9.0.100:6443", "https://10.9.0.100:6443"),
    "url-http-mirror": ("kube_apiserver_url", "http://10.0.0.5:8080/k8s/v{version}/kube-apiserver", "http://10.0.0.5:8080/k8s/v{version}/kube-apiserver"),
    "audit-path-stdout": ("audit_log_path", "-", "-"),
    "audit-path-plain": ("audit_log_path", "/var/log/kubernetes/audit-1.log", "/var/log/kubernetes/audit-1.log"),
    "etcd-dns-host": ("etcd_servers", ["https://etcd-0.example.com:2379/"], ("https://etcd-0.example.com:2379",)),
    "cluster-domain-one-label": ("cluster_domain", "local", "local"),
    "cluster-domain-mixed": ("cluster_domain", "k8s-1.Example.org", "k8s-1.Example.org"),
    "sans-wildcard-and-ipv6": ("cert_extra_sans", ["*.api.example.com", "api.example.com", "fd00::1", "10.9.0.50"], ("*.api.example.com", "api.example.com", "fd00::1", "10.9.0.50")),
    "subject-with-spaces": ("cert_subject", {"C": "de", "O": "Acme & Sons (Ops)"}, {"C": "de", "O": "Acme & Sons (Ops)"}),
    "extra-flag-empty-value": ("apiserver_extra_flags", {"requestheader-allowed-names": ""}, {"requestheader-allowed-names": ""}),
    "extra-flag-sni": ("apiserver_extra_flags", {"tls-sni-cert-key": "/etc/k/a.crt,/etc/k/a.key:*.example.com"}, {"tls-sni-cert-key": "/etc/k/a.crt,/etc/k/a.key:*.example.com"}),
    "extra-flag-float": ("apiserver_extra_flags", {"goaway-chance": 0.01}, {"goaway-chance": 0.01}),
    "keepalived-line-quoted": ("keepalived_extra_global_defs", ['notification_email_from "kube@example.com"'], ('notification_email_from "kube@example.com"',)),
    "haproxy-line-log-format": ("haproxy_extra_defaults", ['log-format "%ci:%cp [%t] %ft %b/%s"', ""], ('log-format "%ci:%cp [%t] %ft %b/%s"', "")),
    "audit-rule-fields": ("audit_policy_rules", [{"level": "None", "users": ["John Doe"], "nonResourceURLs": ["/healthz*"]}], ({"level": "None", "users": ["John Doe"], "nonResourceURLs": ["/healthz*"]},)),
    "event-ttl-minutes": ("event_ttl", "90m", "90m"),
}


@pytest.mark.parametrize("key, value, expected", list(ACCEPTED.values()), ids=list(ACCEPTED))
def test_typed_value_accepted(inv: Inv, key: str, value, expected) -> None:
    inv.cluster[key] = value
    assert getattr(inv.load()["m1"].cluster, key) == expected


@pytest.mark.parametrize("iface", ["eth0", "ens160", "eth0.100", "br-0a1b2c3d4e5f", "enp0s31f6", "bond_0"])
def test_interface_names_accepted(inv: Inv, iface: str) -> None:
    inv.master("m1")["vrrp_interface"] = iface
    assert inv.load()["m1"].vrrp_interface == iface


def test_old_admission_plugin_accepted_by_old_version(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, kube_version="1.20.2")
    inv.cluster["admission_plugins"] = ["NamespaceLifecycle", "PodSecurityPolicy", "NodeRestriction"]
    assert "PodSecurityPolicy" in inv.load()["m1"].cluster.admission_plugins


def test_download_url_fills_in_the_version(inv: Inv) -> None:
    inv.cluster["kube_apiserver_url"] = "https://mirror.example.com/k8s/v{version}/kube-apiserver"
    assert inv.load()["m1"].cluster.download_url("arm64") == "https://mirror.example.com/k8s/v1.36.0/kube-apiserver"


def test_download_url_fills_in_version_and_arch(inv: Inv) -> None:
    inv.cluster["kube_apiserver_url"] = "http://10.0.0.5:8080/{arch}/k8s-{version}-{arch}/kube-apiserver"
    c = inv.load()["m1"].cluster
    assert c.download_url("amd64") == "http://10.0.0.5:8080/amd64/k8s-1.36.0-amd64/kube-apiserver"
    assert c.download_url("s390x") == "http://10.0.0.5:8080/s390x/k8s-1.36.0-s390x/kube-apiserver"


def test_default_download_url_has_both_placeholders() -> None:
    assert KEY_BY_NAME["kube_apiserver_url"].default == "https://dl.k8s.io/release/v{version}/bin/linux/{arch}/kube-apiserver"


# ------------------------------------------------------------------ etcd's CA: importing an existing one


def test_etcd_import_keys_default_to_none(inv: Inv) -> None:
    c = inv.load()["m1"].cluster
    assert (c.etcd_ca_cert_file, c.etcd_ca_key_file, c.etcd_client_cert_file, c.etcd_client_key_file) == (None,) * 4


def test_etcd_ca_import_with_its_key(inv: Inv, etcd_site: dict) -> None:
    inv.cluster.update(etcd_ca_cert_file=etcd_site["ca"], etcd_ca_key_file=etcd_site["ca_key"])
    c = inv.load()["m1"].cluster
    assert (c.etcd_ca_cert_file, c.etcd_ca_key_file) == (etcd_site["ca"], etcd_site["ca_key"])
    assert c.etcd_client_cert_file is None


def test_etcd_ca_import_with_a_client_cert(inv: Inv, etcd_site: dict) -> None:
    inv.cluster.update(etcd_ca_cert_file=etcd_site["ca"], etcd_client_cert_file=etcd_site["client"],
                       etcd_client_key_file=etcd_site["client_key"])
    c = inv.load()["m1"].cluster
    assert (c.etcd_client_cert_file, c.etcd_client_key_file) == (etcd_site["client"], etcd_site["client_key"])
    assert c.etcd_ca_key_file is None


# id: ({data key: etcd_site entry or a missing path}, the one (key, reason) expected on m1)
ETCD_BAD = {
    "ca-key-without-ca-cert": ({"etcd_ca_key_file": "ca_key"}, "etcd_ca_cert_file", "required with etcd_ca_key_file"),
    "client-without-ca-cert": (
        {"etcd_client_cert_file": "client", "etcd_client_key_file": "client_key"}, "etcd_ca_cert_file", "required with",
    ),
    "ca-cert-alone": ({"etcd_ca_cert_file": "ca"}, "etcd_ca_cert_file", "needs etcd_ca_key_file, or etcd_client_cert_file"),
    "client-cert-without-key": (
        {"etcd_ca_cert_file": "ca", "etcd_client_cert_file": "client"}, "etcd_client_key_file", "needs etcd_ca_key_file, or",
    ),
    "client-key-without-cert": (
        {"etcd_ca_cert_file": "ca", "etcd_client_key_file": "client_key"}, "etcd_client_cert_file", "needs etcd_ca_key_file, or",
    ),
    "ca-key-and-client": (
        {"etcd_ca_cert_file": "ca", "etcd_ca_key_file": "ca_key", "etcd_client_cert_file": "client",
         "etcd_client_key_file": "client_key"}, "etcd_ca_key_file", "not both",
    ),
    "ca-key-mismatch": ({"etcd_ca_cert_file": "ca", "etcd_ca_key_file": "other_ca_key"}, "etcd_ca_key_file", "does not match"),
    "ca-cert-not-a-ca": (
        {"etcd_ca_cert_file": "client", "etcd_ca_key_file": "client_key"}, "etcd_ca_cert_file", "not a CA certificate",
    ),
    "client-not-signed-by-the-ca": (
        {"etcd_ca_cert_file": "ca", "etcd_client_cert_file": "foreign", "etcd_client_key_file": "foreign_key"},
        "etcd_client_cert_file", "is not signed by the CA",
    ),
    "client-key-mismatch": (
        {"etcd_ca_cert_file": "ca", "etcd_client_cert_file": "client", "etcd_client_key_file": "server_key"},
        "etcd_client_key_file", "does not match the certificate",
    ),
    "client-without-clientAuth": (
        {"etcd_ca_cert_file": "ca", "etcd_client_cert_file": "server", "etcd_client_key_file": "server_key"},
        "etcd_client_cert_file", "lacks the extended key usage clientAuth",
    ),
    "ca-cert-file-missing": (
        {"etcd_ca_cert_file": None, "etcd_ca_key_file": "ca_key"}, "etcd_ca_cert_file", "does not exist",
    ),
    "client-key-file-missing": (
        {"etcd_ca_cert_file": "ca", "etcd_client_cert_file": "client", "etcd_client_key_file": None},
        "etcd_client_key_file", "does not exist",
    ),
}


@pytest.mark.parametrize("data, key, reason", list(ETCD_BAD.values()), ids=list(ETCD_BAD))
def test_bad_etcd_import(inv: Inv, tmp_path: Path, etcd_site: dict, data: dict, key: str, reason: str) -> None:
    inv.cluster.update({k: etcd_site[v] if v else str(tmp_path / "missing.pem") for k, v in data.items()})
    problems = inv.problems()
    assert reason in problem_for(problems, "m1", key), problems
    assert len(problems) == 1, problems


def test_etcd_import_must_agree_on_every_master(inv: Inv, etcd_site: dict) -> None:
    inv.cluster.update(etcd_ca_cert_file=etcd_site["ca"], etcd_ca_key_file=etcd_site["ca_key"])
    inv.master("m2")["etcd_ca_key_file"] = etcd_site["other_ca_key"]
    assert "differs from m1's value" in problem_for(inv.problems(), "m2", "etcd_ca_key_file")
