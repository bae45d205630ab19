"""Shared inventory builders for the settings, flags, render and planning tests.

``Inv`` mirrors what pyinfra hands to ``hakube.context.settings_for``: every master carries the
masters group's (cluster-wide) data merged with its own per-host data; nodes carry their own.
Every path (pki_dir, artifacts_dir, the VRRP password file) lives under a pytest tmp dir.
"""

from __future__ import annotations

import copy
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hakube.settings import InventoryError, Settings, load_inventory

#: The suite runs as root (CI, `make test`) and as any other user; a few tests assert per case.
IS_ROOT = os.geteuid() == 0
#: Who owns what the product's commands make root's when a test runs them for real (``root_commands``).
OWNER_UID = 0 if IS_ROOT else os.geteuid()
#: CI (`make test` there, CI=true) never skips a test: what one needs missing is a failure.
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def needed(found, message: str):
    """``found`` when it is something; otherwise a failure under CI (never a skip there), a skip elsewhere."""
    if found:
        return found
    if IN_CI:
        pytest.fail(f"{message}; CI=true, so this is a failure, not a skip", pytrace=False)
    pytest.skip(message)

@pytest.fixture(autouse=True)
def _local_hash_cache(tmp_path_factory, monkeypatch):
    """The deploy machine's sha256 cache of a local binary (``hakube.hostfiles``) under a tmp dir,
    for this process and the pyinfra processes a test starts: never the user's own."""
    cache_home = tmp_path_factory.mktemp("xdg-cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))
    import hakube.hostfiles

    monkeypatch.setattr(hakube.hostfiles, "LOCAL_HASH_CACHE", cache_home / "hakube" / "sha256")
    hakube.hostfiles._local_sha256.cache_clear()


AUTH_PASS = "s3cret"
ENV = {"HAKUBE_VRRP_AUTH_PASS": AUTH_PASS}
SHA = "0123456789abcdef" * 4
VIP = "10.9.0.100"

MASTERS = [
    ("m1", {"bind_address": "10.9.0.11", "vrrp_priority": 120, "vrrp_interface": "eth0"}),
    ("m2", {"bind_address": "10.9.0.12", "vrrp_priority": 110, "vrrp_interface": "ens160"}),
    ("m3", {"bind_address": "10.9.0.13", "vrrp_priority": 100, "vrrp_interface": "eth1"}),
]


@dataclass
class Inv:
    cluster: dict
    masters: list[tuple[str, dict]]
    nodes: list[tuple[str, dict]] = field(default_factory=list)
    master_group: str = "masters"

    def master(self, name: str) -> dict:
        return dict(self.masters)[name]

    def hosts(self) -> list[tuple[str, dict, list[str]]]:
        out = [(n, {**self.cluster, **d}, [self.master_group]) for n, d in self.masters]
        out += [(n, dict(d), ["nodes"]) for n, d in self.nodes]
        return out

    def load(self, env=ENV) -> dict[str, Settings]:
        return load_inventory(self.hosts(), env)

    def problems(self, env=ENV) -> list[str]:
        with pytest.raises(InventoryError) as exc:
            load_inventory(self.hosts(), env)
        problems = exc.value.problems
        assert problems, "InventoryError without problems"
        assert all(line.count(": ") >= 2 for line in problems), problems
        return problems


def make_inventory(base: Path, masters: int = 2, kube_version: str = "1.36.0", nodes: int = 1) -> Inv:
    cluster = {
        "vip": VIP,
        "virtual_router_id": 80,
        "etcd_servers": ["https://10.9.0.20:2379", "https://10.9.0.21:2379"],
        "kube_version": kube_version,
        "kube_apiserver_sha256": SHA,
        "pki_dir": str(base / "pki"),
        "artifacts_dir": str(base / "artifacts"),
    }
    return Inv(
        cluster=cluster,
        masters=copy.deepcopy(MASTERS[:masters]),
        nodes=[(f"n{i + 1}", {}) for i in range(nodes)],
    )


def problem_for(problems: list[str], host: str, key: str) -> str:
    """The (first) problem line naming ``host`` and ``key``; fails listing all problems otherwise."""
    prefix = f"{host}: {key}: "
    hits = [p for p in problems if p.startswith(prefix)]
    assert hits, f"no problem for {host}/{key} in {problems}"
    return hits[0]


@pytest.fixture
def inv(tmp_path: Path) -> Inv:
    return make_inventory(tmp_path)


@pytest.fixture(scope="session")
def etcd_site(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An existing site's etcd PKI, for the import keys: {what: path}.

    ``ca``/``ca_key``: etcd's CA; ``client``/``client_key``: an apiserver etcd client it issued;
    ``server``/``server_key``: a serverAuth-only certificate it issued; ``other_ca_key``,
    ``foreign``/``foreign_key``: another CA's key and a clientAuth certificate from that CA.
    """
    from hakube import pki

    site, other = tmp_path_factory.mktemp("etcd-site"), tmp_path_factory.mktemp("etcd-other")
    ca = pki.ensure_ca(site, kind="etcd")
    pki.ensure_cert(site, pki.ETCD_CLIENT, ca)
    pki.ensure_cert(site, pki.CertSpec("server", "etcd", server=True, sans=("127.0.0.1",)), ca)
    foreign_ca = pki.ensure_ca(other)
    pki.ensure_cert(other, pki.CertSpec("foreign", "foreign", client=True), foreign_ca)
    return {
        "ca": str(site / "etcd-ca.pem"), "ca_key": str(site / "etcd-ca-key.pem"),
        "client": str(site / "apiserver-etcd-client.pem"), "client_key": str(site / "apiserver-etcd-client-key.pem"),
        "server": str(site / "server.pem"), "server_key": str(site / "server-key.pem"),
        "other_ca_key": str(other / "ca-key.pem"),
        "foreign": str(other / "foreign.pem"), "foreign_key": str(other / "foreign-key.pem"),
    }


# The product's file commands run as root on a host (``install -o root -g root``, ``chown root:root``).
# Another user cannot give a file to root: these stand-ins check that root is what was asked for and
# leave the owner as it is; everything else (modes, contents, order, failures) stays real.
_CHOWN = """#!/bin/sh
[ "$1" = root:root ] || { echo "chown (test stand-in): asked for $1, the deploy gives root:root" >&2; exit 1; }
shift
for f in "$@"; do [ -e "$f" ] || { echo "chown: cannot access '$f': No such file or directory" >&2; exit 1; }; done
"""
_INSTALL = """#!/bin/sh
n=$#; i=0
while [ "$i" -lt "$n" ]; do
  a=$1; shift; i=$((i + 1))
  case $a in
    -o|-g) v=$1; shift; i=$((i + 1))
      [ "$v" = root ] || { echo "install (test stand-in): $a $v, the deploy gives root" >&2; exit 1; };;
    *) set -- "$@" "$a";;
  esac
done
exec {install} "$@"
"""


@pytest.fixture
def root_commands(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the product's root-owning commands for real in a test: as root unchanged; as another user
    through ``chown``/``install`` stand-ins first on PATH (see above). Owners: ``OWNER_UID``."""
    if IS_ROOT:
        return
    shims = tmp_path_factory.mktemp("root-commands")
    for name, text in (("chown", _CHOWN), ("install", _INSTALL.replace("{install}", shutil.which("install")))):
        (shims / name).write_text(text)
        (shims / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{shims}{os.pathsep}{os.environ.get('PATH', os.defpath)}")
