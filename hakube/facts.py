"""What the deploy knows of a host: one snapshot per run, assembled from what the steps declare.

pyinfra 3.10 does not cache facts between operations, so the deploy takes this snapshot once per
host while planning and every operation decides from it: a no-op run costs one remote command
per host. Each step declares what it needs (``Needs``: paths besides its files, units, users,
sysctls, commands, Kubernetes objects); ``deploy.py`` joins them.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field, fields

from pyinfra.api import FactBase

from .encryption import AWK_KEYS, LiveKey
from .roll import pending_marker


#: What ``dpkg --print-architecture`` or ``uname -m`` say -> Kubernetes' name of the architecture
#: (the ``{arch}`` of https://dl.k8s.io/release/v{version}/bin/linux/{arch}/kube-apiserver).
K8S_ARCH = {
    "x86_64": "amd64", "amd64": "amd64",
    "aarch64": "arm64", "arm64": "arm64",
    "armv7l": "arm", "armhf": "arm",
    "ppc64le": "ppc64le", "ppc64el": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def k8s_arch(raw: str) -> str:
    """Kubernetes' name for a host's architecture; another plain name as it is (a download of it
    then fails naming the URL); "" when unknown or not a plain name (never reaches a URL)."""
    raw = raw.strip()
    if raw in K8S_ARCH:
        return K8S_ARCH[raw]
    return raw if re.fullmatch(r"[a-z0-9_]{1,32}", raw) else ""


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
    addresses: frozenset = frozenset()  # the host's IPv4 and IPv6 addresses (without prefix), once `ip` is installed
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
        """A change that needs ``handler`` went live (or was staged) and the handler has not run yet."""
        return pending_marker(handler) in self.files


#: ``L <address>`` for each line of a keepalived config's virtual_ipaddress block, and of its
#: virtual_ipaddress_excluded block (a dual-stack front's second VIP, ``vip6``)
AWK_VIPS = ('/^[ \t]*virtual_ipaddress(_excluded)?[ \t]*{/{f=1;next} f&&/}/{f=0} f&&NF{split($1,a,"/"); print "L", a[1]} '
            '/^[ \t]*unicast_src_ip[ \t]/{u=1} /^[ \t]*vrrp_version[ \t]/{v=$2} '
            'END{print "LM", (u ? "unicast" : "multicast"); print "LV", (v ? v : 2)}')


#: root-only (0700) directory on a host: one file per ``Needs.hash_cached`` path, "STAT SHA256"
HASH_CACHE_DIR = "/var/lib/hakube/sha256"
#: size, mtime and ctime in nanoseconds, inode (GNU stat): a file replaced or rewritten, even with
#: the same size and a preserved mtime, gets a new ctime (and a new inode when it is moved in)
STAT_FORMAT = "%s %.9Y %.9Z %i"


def hash_cache_file(path: str, cache_dir: str = HASH_CACHE_DIR) -> str:
    """The cache file of ``path`` on the host: its path with ``/`` as ``_`` (the file names the path too)."""
    return f"{cache_dir}/{path.strip('/').replace('/', '_')}.sha256"


def cached_hash(path: str, cache_dir: str = HASH_CACHE_DIR) -> str:
    """Shell: the ``H <sha256>  <path>`` line of an existing ``path`` (nothing when it is missing),
    its sha256 read from the cache file when the cached stat equals the file's stat now, else computed
    and the cache written (atomically, 0600; best effort: a cache that cannot be written costs only
    the hash). The stat is taken before the hash: a file that changes while it is hashed is hashed
    again next time."""
    q, cache = shlex.quote, hash_cache_file(path, cache_dir)
    return (
        f"p={q(path)}; c={q(cache)}; if [ -f \"$p\" ]; then "
        f"st=$(stat -c {q(STAT_FORMAT + ' %n')} -- \"$p\" 2>/dev/null); h=''; "
        # the cache line is "STAT SHA256": taken only when STAT (with the path) is the file's now
        'if [ -n "$st" ] && [ -f "$c" ] && read -r l < "$c"; then case "$l" in "$st "*) h=${l#"$st "};; esac; fi; '
        'case "$h" in *[!0-9a-f]*) h="";; esac; [ ${#h} -eq 64 ] || h=""; '
        'if [ -z "$h" ]; then h=$(sha256sum -- "$p") && h=${h%% *}; '
        # mkdir -m sets the mode of the cache directory only: its parents (/var/lib/hakube, which
        # holds the upload directory the login user must reach) keep the usual umask's 0755
        'if [ -n "$h" ] && [ -n "$st" ]; then ( mkdir -p -m 0700 -- "${c%/*}" && umask 077 && t=$(mktemp -- "$c.XXXXXX") && '
        '{ printf \'%s %s\\n\' "$st" "$h" > "$t" && mv -f -- "$t" "$c" || rm -f -- "$t"; } ) 2>/dev/null; fi; fi; '
        '[ -n "$h" ] && echo "H $h  $p"; fi; '
    )


class HostSnapshot(FactBase):
    """sha256/mode/owner of the given files, state of units, users, sysctls, commands, kube objects,
    and the architecture (for the download URL)."""

    def command(self, paths: tuple[str, ...], units: tuple[str, ...], users: tuple[str, ...],
                sysctls: tuple[str, ...], commands: tuple[str, ...], kube_objects: tuple[str, ...],
                kubeconfig: str, secret_digests: tuple[str, ...] = (),
                journals: tuple[tuple[str, str], ...] = (), vip_configs: tuple[str, ...] = (),
                hash_cached: tuple[str, ...] = (), hash_cache_dir: str = HASH_CACHE_DIR) -> str:
        q = lambda items: " ".join(shlex.quote(i) for i in items)  # noqa: E731
        cached = [p for p in paths if p in hash_cached]
        hashed = [p for p in paths if p not in hash_cached]
        return (
            f'set --; for p in {q(hashed)}; do [ -f "$p" ] && set -- "$@" "$p"; done; '
            "if [ $# -gt 0 ]; then sha256sum \"$@\" | sed 's/^/H /'; fi; "
            + "".join(cached_hash(p, hash_cache_dir) for p in cached)
            + f'set --; for p in {q(paths)}; do [ -f "$p" ] && set -- "$@" "$p"; done; '
            "if [ $# -gt 0 ]; then stat -c 'M %a:%U:%G %n' \"$@\"; fi; "
            f'for u in {q(units)}; do echo "U $u $(systemctl is-active "$u" 2>/dev/null || true) '
            '$(systemctl is-enabled "$u" 2>/dev/null || true)"; done; '
            f'for u in {q(users)}; do getent passwd "$u" >/dev/null && echo "P $u"; done; '
            f'for k in {q(sysctls)}; do echo "S $k $(sysctl -n "$k" 2>/dev/null)"; done; '
            f'for c in {q(commands)}; do command -v "$c" >/dev/null && echo "C $c"; done; '
            'echo "A $(dpkg --print-architecture 2>/dev/null || uname -m)"; '
            # Each key's secret is decoded and hashed on the host: only its sha256 is printed.
            f'for f in {q(secret_digests)}; do [ -f "$f" ] || continue; echo "X $f"; '
            f'awk {shlex.quote(AWK_KEYS)} "$f" | while read -r v n s; do '
            'd=$(printf %s "$s" | base64 -d 2>/dev/null | sha256sum); echo "E ${d%% *} $v $n $f"; done; done; '
            f"if command -v kubectl >/dev/null && [ -f {shlex.quote(kubeconfig)} ]; then "
            f"for o in {q(kube_objects)}; do kubectl --kubeconfig {shlex.quote(kubeconfig)} --request-timeout=5s "
            'get "$o" -o name >/dev/null 2>&1 && echo "K $o"; done; fi; '
            "if command -v ip >/dev/null; then ip -o addr show | awk '{print \"I\", $4}'; fi; "
            + "".join(f"journalctl -u {shlex.quote(unit)} -o cat --no-pager --since -30s 2>/dev/null | "
                      f"grep -E {shlex.quote(regex)} | tail -n 20 | sed {shlex.quote(f's|^|J {unit} |')}; "
                      for unit, regex in journals)
            + f"for f in {q(vip_configs)}; do [ -f \"$f\" ] && awk {shlex.quote(AWK_VIPS)} \"$f\"; done; "
            + "true"
        )

    @staticmethod
    def default() -> HostFacts:
        return HostFacts()

    def process(self, output: list[str]) -> HostFacts:
        hashes, metas, units, users, sysctls, commands, objects, addresses = {}, {}, {}, set(), {}, set(), set(), set()
        arch = ""
        digests: dict[str, list] = {}
        journal: dict[str, list] = {}
        live_vips: list[str] = []
        live_mode = ""
        live_version = 0
        for line in output:
            kind, _, rest = line.partition(" ")
            if kind == "H":
                sha, path = rest.split("  ", 1)
                hashes[path] = sha
            elif kind == "M":
                meta, path = rest.split(" ", 1)
                metas[path] = meta
            elif kind == "U":
                unit, *states = rest.split()
                units[unit] = tuple((states + ["unknown", "unknown"])[:2])
            elif kind == "P":
                users.add(rest)
            elif kind == "S":
                key, _, value = rest.partition(" ")
                sysctls[key] = value
            elif kind == "C":
                commands.add(rest)
            elif kind == "K":
                objects.add(rest)
            elif kind == "J":
                unit, _, text = rest.partition(" ")
                journal.setdefault(unit, []).append(text)
            elif kind == "I":
                addresses.add(rest.split("/")[0])
            elif kind == "L":
                live_vips.append(rest.strip())
            elif kind == "LM":
                live_mode = rest.strip()
            elif kind == "LV":
                live_version = int(rest) if rest.strip() in ("2", "3") else 0
            elif kind == "A":
                arch = k8s_arch(rest)
            elif kind == "X":
                digests.setdefault(rest, [])
            elif kind == "E":
                sha, provider, name, path = rest.split(" ", 3)
                digests.setdefault(path, []).append(LiveKey(name, sha, provider))
        files = {}
        for path, sha in hashes.items():
            mode, user, group = metas[path].split(":")
            files[path] = FileState(sha, int(mode, 8), f"{user}:{group}")
        return HostFacts(files, units, frozenset(users), sysctls, frozenset(commands), frozenset(objects),
                         frozenset(addresses), arch, {path: tuple(keys) for path, keys in digests.items()},
                         {unit: tuple(lines) for unit, lines in journal.items()}, tuple(dict.fromkeys(live_vips)), live_mode,
                         live_version)


def snapshot(host, paths, needs: Needs, kubeconfig: str) -> HostFacts:
    """``host``'s facts: one remote command."""
    return host.get_fact(HostSnapshot, paths=tuple(sorted(set(paths) | set(needs.paths))), units=needs.units,
                         users=needs.users, sysctls=needs.sysctls, commands=needs.commands,
                         kube_objects=needs.kube_objects, kubeconfig=kubeconfig, secret_digests=needs.secret_digests,
                         journals=needs.journals, vip_configs=needs.vip_configs,
                         hash_cached=tuple(p for p in needs.hash_cached if p in paths or p in needs.paths))
