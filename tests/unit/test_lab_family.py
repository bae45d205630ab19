"""The lab's address families (`python -m lab up --family ipv4|ipv6|dual`): the network's subnets,
etcd's listen URLs, and inventory.py's data for each family, validated as the deploy validates it.
Pure: no Docker."""

from __future__ import annotations

import importlib.util
import ipaddress
from pathlib import Path

import pytest

from hakube.settings import load_inventory
from lab import config, core
from lab import etcd as lab_etcd

ROOT = Path(__file__).resolve().parents[2]


def _inventory(monkeypatch, family: str, masters: int = 2):
    monkeypatch.setenv("LAB_FAMILY", family)
    monkeypatch.setenv("LAB_MASTERS", str(masters))
    monkeypatch.delenv("LAB_CONNECT", raising=False)
    spec = importlib.util.spec_from_file_location(f"lab_inventory_{family}", ROOT / "inventory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _hosts(module, tmp_path: Path):
    binary = tmp_path / "kube-apiserver"
    binary.write_bytes(b"\x7fELF")
    masters, cluster = module.masters
    cluster = {**cluster, "kube_apiserver_binary": str(binary), "pki_dir": str(tmp_path / "pki"),
               "artifacts_dir": str(tmp_path / "artifacts")}
    cluster.pop("vrrp_auth_pass_file", None)  # the lab's file is made by `up`; the password comes from env here
    return [(name, {**cluster, **data}, ["masters"]) for name, data in masters]


@pytest.mark.parametrize("family", config.FAMILIES)
def test_the_inventory_of_each_family_is_valid(monkeypatch, tmp_path: Path, family: str) -> None:
    module = _inventory(monkeypatch, family, masters=3)
    env = {} if family == "ipv6" else {"HAKUBE_VRRP_AUTH_PASS": "labpass1"}
    c = load_inventory(_hosts(module, tmp_path), env)["@docker/vm01"].cluster
    want = 6 if family == "ipv6" else 4
    assert c.family == want and {ipaddress.ip_address(a).version for a in c.bind_addresses} == {want}
    assert c.vip == config.primary_vip(family)
    assert c.vips == ((config.VIP, config.VIP6) if family == "dual" else (config.primary_vip(family),))
    if family == "ipv6":
        assert c.bind_addresses == tuple(config.ADDRESSES6[n] for n in ("vm01", "vm02", "vm03"))
        assert c.etcd_servers == (config.ETCD_ENDPOINT6,)
        assert c.service_cluster_ip_range == config.SERVICE_CIDR6 and c.vrrp_version == 3 and c.vrrp_unicast
        assert c.server_url == f"https://[{config.VIP6}]:6443"
    else:
        assert c.bind_addresses == tuple(config.ADDRESSES[n] for n in ("vm01", "vm02", "vm03"))
        assert c.etcd_servers == (config.ETCD_ENDPOINT,)
        assert c.server_url == f"https://{config.VIP}:6443"
    # every address the inventory uses is the lab's own (never an address the project did not create)
    lab = [ipaddress.ip_network(s) for s in config.subnets(family)]
    for address in (*c.vips, *c.bind_addresses):
        assert any(ipaddress.ip_address(address) in net for net in lab), address


def test_the_inventory_refuses_an_unknown_family(monkeypatch) -> None:
    with pytest.raises(ValueError, match="ipv4, ipv6 or dual"):
        _inventory(monkeypatch, "ipv5")


def test_the_network_of_each_family() -> None:
    assert config.subnets("ipv4") == (config.SUBNET,)
    assert config.subnets("dual") == config.subnets("ipv6") == (config.SUBNET, config.SUBNET6)
    args = core.network_create_args("ipv4")
    assert "--ipv6" not in args and args[args.index("--subnet") + 1] == config.SUBNET
    args = core.network_create_args("dual")
    assert args[args.index("--ipv6"):args.index("--ipv6") + 5] == ["--ipv6", "--subnet", config.SUBNET6,
                                                                     "--gateway", config.GATEWAY6]
    info = lambda *subnets: {"IPAM": {"Config": [{"Subnet": s} for s in subnets]}}  # noqa: E731
    assert core.network_matches("ipv4", info(config.SUBNET))
    assert not core.network_matches("dual", info(config.SUBNET))  # an IPv4 lab is recreated for dual
    assert core.network_matches("ipv6", info(config.SUBNET6, config.SUBNET))
    assert not core.network_matches("ipv4", info(config.SUBNET, config.SUBNET6))
    with pytest.raises(ValueError):
        config.has_ipv6("both")
    # every IPv6 address of the lab is in its ULA subnet, one per machine, the VIP free
    net6 = ipaddress.ip_network(config.SUBNET6)
    assert all(ipaddress.ip_address(a) in net6 for a in (*config.ADDRESSES6.values(), config.VIP6, config.GATEWAY6))
    assert config.VIP6 not in config.ADDRESSES6.values() and len(set(config.ADDRESSES6.values())) == len(config.ADDRESSES6)


def test_etcd_listens_on_ipv6_only_when_the_lab_has_it() -> None:
    def env(family):
        return dict(line.split("=", 1) for line in lab_etcd.env_text(family).splitlines() if "=" in line and not line.startswith("#"))

    assert env("ipv4")["ETCD_LISTEN_CLIENT_URLS"] == "https://10.213.0.20:2379,https://127.0.0.1:2379"
    assert env("ipv4")["ETCD_ADVERTISE_CLIENT_URLS"] == config.ETCD_ENDPOINT
    for family in ("ipv6", "dual"):
        assert config.ETCD_ENDPOINT6 in env(family)["ETCD_LISTEN_CLIENT_URLS"].split(",")
        assert env(family)["ETCD_ADVERTISE_CLIENT_URLS"].split(",") == [config.ETCD_ENDPOINT, config.ETCD_ENDPOINT6]
    assert env("dual")["ETCD_TRUSTED_CA_FILE"] == lab_etcd.CA_FILE
