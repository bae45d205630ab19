"""What the deploy knows of a host: one snapshot per run, assembled from what the steps declare.

pyinfra 3.10 does not cache facts between operations, so the deploy takes this snapshot once per
host while planning and every operation decides from it: a no-op run costs one remote command
per host. Each step declares what it needs (``Needs``: paths besides its files, units, users,
sysctls, commands, Kubernetes objects); ``deploy.py`` joins them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from pyinfra.api import FactBase

from . import protocol as p
from .protocol import HASH_CACHE_DIR, K8S_ARCH, STAT_FORMAT, cached_hash, hash_cache_file, k8s_arch  # noqa: F401
from .roll import pending_marker

#: awk over a keepalived config: its live VIPs, VRRP mode and version (``hakube.protocol.awk_vips``)
AWK_VIPS = p.awk_vips()


@dataclass(frozen=True)
class FileState:
    sha256: str
    mode: int
    owner: str


@dataclass(frozen=True)
class Needs:
    """What one step needs to know about a host, besides its own files."""

    paths: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    sysctls: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()
    kube_objects: tuple[str, ...] = ()  # asked through the admin kubeconfig (via the VIP)
    #: EncryptionConfiguration files: each key's name and the sha256 of its secret (never the secret)
    secret_digests: tuple[str, ...] = ()
    #: (unit, extended regex): that unit's journal lines of the last 30 s that match (``hakube.vip``)
    journals: tuple[tuple[str, str], ...] = ()
    #: keepalived configs: the addresses of their virtual_ipaddress blocks (the VIP it serves now)
    vip_configs: tuple[str, ...] = ()
    #: of ``paths``, big files whose sha256 the host keeps beside their stat (``cached_hash``): hashed
    #: again only when their size, mtime, ctime or inode changed
    hash_cached: tuple[str, ...] = ()

    def __or__(self, other: "Needs") -> "Needs":
        return Needs(**{f.name: tuple(dict.fromkeys(getattr(self, f.name) + getattr(other, f.name)))
                        for f in fields(self)})


@dataclass(frozen=True)
class HostFacts:
    """A host as the snapshot saw it."""

    files: dict = field(default_factory=dict)  # path -> FileState (missing files are absent)
    units: dict = field(default_factory=dict)  # unit -> (is-active, is-enabled): a tuple of two words
    users: frozenset = frozenset()
    sysctls: dict = field(default_factory=dict)  # key -> value
    commands: frozenset = frozenset()  # of the commands asked for, those on the PATH
    kube_objects: frozenset = frozenset()  # of the objects asked for, those the API reports
    #: the host's addresses (without prefix), once `ip` is installed: every IPv4 one, the IPv6 ones
    #: but loopback and link-local (``hakube.protocol``)
    addresses: frozenset = frozenset()
    arch: str = ""  # Kubernetes' name of the host's architecture (amd64, arm64, ...); "" unknown
    #: of the secret_digests files asked for, those present: path -> (LiveKey(name, sha256 of secret, provider), ...)
    secret_digests: dict = field(default_factory=dict)
    journal: dict = field(default_factory=dict)  # unit -> its matching journal lines (``Needs.journals``)
    #: the addresses in the virtual_ipaddress blocks of ``Needs.vip_configs`` (keepalived's live VIPs)
    live_vips: tuple = ()
    #: how that keepalived config sends its adverts: "unicast", "multicast" ("" when there is none)
    live_vrrp_mode: str = ""
    #: the VRRP version of that keepalived config: 2 or 3 (0 when there is none)
    live_vrrp_version: int = 0
    #: handlers with a marker in ``PENDING_DIR`` (``owed``)
    pending: frozenset = frozenset()

    def unit_state(self, unit: str) -> tuple[str, str]:
        """``(is-active, is-enabled)`` of ``unit``; ``("unknown", "unknown")`` when it was not asked."""
        return tuple(self.units.get(unit, ("unknown", "unknown")))

    def active(self, unit: str) -> bool:
        return self.unit_state(unit)[0] == "active"

    def enabled(self, unit: str) -> bool:
        return self.unit_state(unit)[1] == "enabled"

    def running(self, unit: str) -> bool:
        """Active and enabled: nothing for ``ensure_running`` to do."""
        return self.active(unit) and self.enabled(unit)

    def owed(self, handler: str) -> bool:
        """A change that needs ``handler`` went live (or was staged) and the handler has not run yet:
        its marker was listed (``pending``) or is among the files (the markers of the handlers a
        host's files notify are among its managed paths)."""
        return handler in self.pending or pending_marker(handler) in self.files


class HostSnapshot(FactBase):
    """sha256/mode/owner of the given files, state of units, users, sysctls, commands, kube objects,
    the architecture (for the download URL), addresses, pending markers: lines of
    ``hakube.protocol``, whose functions build the command and whose ``parse`` reads it."""

    def command(self, paths: tuple[str, ...], units: tuple[str, ...], users: tuple[str, ...],
                sysctls: tuple[str, ...], commands: tuple[str, ...], kube_objects: tuple[str, ...],
                kubeconfig: str, secret_digests: tuple[str, ...] = (),
                journals: tuple[tuple[str, str], ...] = (), vip_configs: tuple[str, ...] = (),
                hash_cached: tuple[str, ...] = (), hash_cache_dir: str = HASH_CACHE_DIR) -> str:
        # kubectl waits on the VIP: it runs while the rest is read
        return (p.in_background(p.kube_objects(kube_objects, kubeconfig))
                + p.file_hashes(paths, hash_cached, hash_cache_dir) + p.file_metas(paths) + p.unit_states(units)
                + p.users(users) + p.sysctls(sysctls) + p.commands(commands) + p.arch()
                + p.secret_digests(secret_digests) + p.addresses()
                + p.journals(journals) + p.vip_configs(vip_configs) + p.pending() + p.background_lines() + "true")

    @staticmethod
    def default() -> HostFacts:
        return HostFacts()

    def process(self, output: list[str]) -> HostFacts:
        return host_facts(output)


def host_facts(lines: list[str]) -> HostFacts:
    """``HostSnapshot``'s output as ``HostFacts`` (``hakube.protocol.parse``)."""
    got = p.parse(lines)
    hashes = {h.path: h.sha256 for h in got["file_hash"]}
    metas = {m.path: m for m in got["file_meta"]}
    files = {path: FileState(sha, metas[path].mode, metas[path].owner) for path, sha in hashes.items() if path in metas}
    digests: dict[str, list] = {path: [] for path in got["secret_file"]}
    for d in got["key_digest"]:
        digests.setdefault(d.path, []).append(d.key)
    journal: dict[str, list] = {}
    for j in got["journal"]:
        journal.setdefault(j.unit, []).append(j.text)
    return HostFacts(
        files=files,
        units={u.unit: (u.active, u.enabled) for u in got["unit"]},
        users=frozenset(got["user"]),
        sysctls={s.key: s.value for s in got["sysctl"]},
        commands=frozenset(got["command"]),
        kube_objects=frozenset(got["kube_object"]),
        addresses=frozenset(a.address for a in got["address"]),
        arch=got["arch"][-1] if got["arch"] else "",
        secret_digests={path: tuple(keys) for path, keys in digests.items()},
        journal={unit: tuple(texts) for unit, texts in journal.items()},
        live_vips=tuple(dict.fromkeys(got["live_vip"])),
        live_vrrp_mode=got["vrrp_mode"][-1] if got["vrrp_mode"] else "",
        live_vrrp_version=got["vrrp_version"][-1] if got["vrrp_version"] else 0,
        pending=frozenset(got["pending"]),
    )


def snapshot(host, paths, needs: Needs, kubeconfig: str) -> HostFacts:
    """``host``'s facts: one remote command."""
    return host.get_fact(HostSnapshot, paths=tuple(sorted(set(paths) | set(needs.paths))), units=needs.units,
                         users=needs.users, sysctls=needs.sysctls, commands=needs.commands,
                         kube_objects=needs.kube_objects, kubeconfig=kubeconfig, secret_digests=needs.secret_digests,
                         journals=needs.journals, vip_configs=needs.vip_configs,
                         hash_cached=tuple(p for p in needs.hash_cached if p in paths or p in needs.paths))
