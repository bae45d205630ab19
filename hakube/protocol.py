"""The line protocol of the read-only host commands: every line kind, once.

Two facts read a host, each with one shell command whose stdout is lines ``TAG REST``: the deploy's
snapshot (``hakube.facts.HostSnapshot``, also run by the check) and the check's status
(``hakube.health.HostStatusFact``). ``KINDS`` is the one table of line kinds: per kind its tag
(unique across both facts: a test fails when one is reused), the name of the value it carries, the
shell function of this module that prints it, and the parser of REST to a typed value. Both facts
build their commands from those shell functions and read their output with ``parse``, which
dispatches on the tag. A line whose tag is not in the table (a stray message, an older protocol's
``K`` or ``X``) is ignored, the same way for both; so is a line its parser does not accept.

Pieces both facts ask for (the host's addresses, the pending-handler markers) are printed by one
function (``addresses``, ``pending``) and parsed by one parser.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass
from typing import Callable, Iterable, NamedTuple

from .encryption import AWK_KEYS, LiveKey
from .probes import BACKEND
from .roll import PENDING_DIR

# --- typed values -----------------------------------------------------------------------------------


class FileHash(NamedTuple):
    path: str
    sha256: str


class FileMeta(NamedTuple):
    path: str
    mode: int  # e.g. 0o644
    owner: str  # "user:group"


class UnitState(NamedTuple):
    unit: str
    active: str  # systemctl is-active ("active", "inactive", ...; "unknown" when it said nothing)
    enabled: str  # systemctl is-enabled


class Sysctl(NamedTuple):
    key: str
    value: str


class KeyDigest(NamedTuple):
    path: str  # the EncryptionConfiguration file
    key: LiveKey


class JournalLine(NamedTuple):
    unit: str
    text: str


class Address(NamedTuple):
    version: int  # 4 or 6
    address: str  # without its prefix length


class Readyz(NamedTuple):
    exit: int | None  # curl's exit code
    http: int | None  # the HTTP status; None: no answer


class Backend(NamedTuple):
    name: str
    status: str  # "UP", "DOWN", "DRAIN", "MAINT", ...


class CertLine(NamedTuple):
    path: str
    text: str  # one line of a BEGIN/END CERTIFICATE block


# --- the architecture --------------------------------------------------------------------------------

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


# --- parsers: REST of a line -> its value (None: nothing to record) ---------------------------------------


def _file_hash(rest: str) -> FileHash | None:
    sha, sep, path = rest.partition("  ")
    return FileHash(path, sha) if sep and path else None


def _file_meta(rest: str) -> FileMeta | None:
    meta, _, path = rest.partition(" ")
    parts = meta.split(":")
    if len(parts) != 3 or not path or not re.fullmatch(r"[0-7]{1,4}", parts[0]):
        return None
    return FileMeta(path, int(parts[0], 8), f"{parts[1]}:{parts[2]}")


def _unit_state(rest: str) -> UnitState | None:
    unit, *states = rest.split()
    return UnitState(unit, *(states + ["unknown", "unknown"])[:2]) if unit else None


def _sysctl(rest: str) -> Sysctl:
    key, _, value = rest.partition(" ")
    return Sysctl(key, value)


def _key_digest(rest: str) -> KeyDigest | None:
    words = rest.split(" ", 3)
    if len(words) != 4:
        return None
    sha, provider, name, path = words
    return KeyDigest(path, LiveKey(name, sha, provider))


def _journal_line(rest: str) -> JournalLine:
    unit, _, text = rest.partition(" ")
    return JournalLine(unit, text)


_INET = re.compile(r"(?:^|\s)(inet6?)\s+(\S+)")
_SCOPE = re.compile(r"\sscope\s+(\S+)")


def _address(rest: str) -> Address | None:
    """One line of ``ip -o addr show``: its address without the prefix length. IPv4: every one, as
    ``ip -o -4`` showed them (127.0.0.1 included). IPv6: not loopback (scope host) nor link-local
    (fe80::/10, scope link), which only ever name this host or this link."""
    m = _INET.search(rest)
    if not m:
        return None
    family, raw = m.groups()
    addr = raw.split("/")[0]
    if family == "inet":
        return Address(4, addr)
    scope = _SCOPE.search(rest)
    try:
        ip = ipaddress.IPv6Address(addr.split("%")[0])
    except ValueError:
        return None
    if ip.is_link_local or ip.is_loopback or (scope and scope.group(1) in ("host", "link")):
        return None
    return Address(6, str(ip))


def _version(rest: str) -> str | None:
    m = re.search(r"v\d+\.\d+\.\d+\S*", rest)
    return m.group(0) if m else (rest.strip() or None)


def _readyz(rest: str) -> Readyz:
    words = rest.split()
    code = words[1] if len(words) > 1 else ""
    return Readyz(int(words[0]) if words and words[0].isdigit() else None,
                  int(code) if code.isdigit() and int(code) else None)


def normal_backend_status(raw: str) -> str:
    """haproxy's status column, reduced to its word: "UP 1/2" (about to go down) is still UP,
    "DOWN 1/2" still DOWN, "MAINT (via ...)" MAINT, "DRAIN (agent)" DRAIN."""
    word = raw.strip().split(" ")[0] if raw.strip() else "unknown"
    return word.upper()


def _backend(rest: str) -> Backend | None:
    name, _, status = rest.partition(" ")
    return Backend(name, normal_backend_status(status)) if name else None


def _keepalived_state(rest: str) -> str | None:
    m = re.fullmatch(r"Entering ([A-Z]+) STATE", rest.strip())
    return m.group(1) if m else None


def _cert_line(rest: str) -> CertLine:
    path, _, text = rest.partition(" ")
    return CertLine(path, text)


def _vrrp_version(rest: str) -> int:
    return int(rest) if rest.strip() in ("2", "3") else 0


def _word(rest: str) -> str:
    return rest.strip()


def _flag(rest: str) -> bool:
    return True


# --- the shell that prints them -----------------------------------------------------------------------

_q = shlex.quote


def _words(items: Iterable[str]) -> str:
    return " ".join(_q(i) for i in items)


def tag(name: str) -> str:
    """The tag of the line kind ``name``."""
    return BY_NAME[name].tag


def line(name: str, rest: str = "") -> str:
    """A line of kind ``name`` as a host prints it (fixtures build canned output with it)."""
    return f"{tag(name)} {rest}" if rest else tag(name)


#: root-only (0700) directory on a host: one file per ``Needs.hash_cached`` path, "STAT SHA256"
HASH_CACHE_DIR = "/var/lib/hakube/sha256"
#: size, mtime and ctime in nanoseconds, inode (GNU stat): a file replaced or rewritten, even with
#: the same size and a preserved mtime, gets a new ctime (and a new inode when it is moved in)
STAT_FORMAT = "%s %.9Y %.9Z %i"


def hash_cache_file(path: str, cache_dir: str = HASH_CACHE_DIR) -> str:
    """The cache file of ``path`` on the host: its path with ``/`` as ``_`` (the file names the path too)."""
    return f"{cache_dir}/{path.strip('/').replace('/', '_')}.sha256"


def cached_hash(path: str, cache_dir: str = HASH_CACHE_DIR) -> str:
    """Shell: the ``file_hash`` line of an existing ``path`` (nothing when it is missing), its sha256
    read from the cache file when the cached stat equals the file's stat now, else computed and the
    cache written (atomically, 0600; best effort: a cache that cannot be written costs only the
    hash). The stat is taken before the hash: a file that changes while it is hashed is hashed
    again next time."""
    cache = hash_cache_file(path, cache_dir)
    return (
        f"p={_q(path)}; c={_q(cache)}; if [ -f \"$p\" ]; then "
        f"st=$(stat -c {_q(STAT_FORMAT + ' %n')} -- \"$p\" 2>/dev/null); h=''; "
        # the cache line is "STAT SHA256": taken only when STAT (with the path) is the file's now
        'if [ -n "$st" ] && [ -f "$c" ] && read -r l < "$c"; then case "$l" in "$st "*) h=${l#"$st "};; esac; fi; '
        'case "$h" in *[!0-9a-f]*) h="";; esac; [ ${#h} -eq 64 ] || h=""; '
        'if [ -z "$h" ]; then h=$(sha256sum -- "$p") && h=${h%% *}; '
        # mkdir -m sets the mode of the cache directory only: its parents (/var/lib/hakube, which
        # holds the upload directory the login user must reach) keep the usual umask's 0755
        'if [ -n "$h" ] && [ -n "$st" ]; then ( mkdir -p -m 0700 -- "${c%/*}" && umask 077 && t=$(mktemp -- "$c.XXXXXX") && '
        '{ printf \'%s %s\\n\' "$st" "$h" > "$t" && mv -f -- "$t" "$c" || rm -f -- "$t"; } ) 2>/dev/null; fi; fi; '
        f'[ -n "$h" ] && echo "{tag("file_hash")} $h  $p"; fi; '
    )


def file_hashes(paths: Iterable[str], hash_cached: Iterable[str] = (), cache_dir: str = HASH_CACHE_DIR) -> str:
    """``file_hash``: sha256 of each existing file of ``paths`` (those of ``hash_cached`` through the
    host's cache, ``cached_hash``)."""
    paths, cached = tuple(paths), set(hash_cached)
    return (f'set --; for p in {_words(p for p in paths if p not in cached)}; do [ -f "$p" ] && set -- "$@" "$p"; done; '
            f"if [ $# -gt 0 ]; then sha256sum \"$@\" | sed 's/^/{tag('file_hash')} /'; fi; "
            + "".join(cached_hash(p, cache_dir) for p in paths if p in cached))


def file_metas(paths: Iterable[str]) -> str:
    """``file_meta``: octal mode, owner and group of each existing file of ``paths``."""
    return (f'set --; for p in {_words(paths)}; do [ -f "$p" ] && set -- "$@" "$p"; done; '
            f"if [ $# -gt 0 ]; then stat -c '{tag('file_meta')} %a:%U:%G %n' \"$@\"; fi; ")


def awk_units() -> str:
    """awk over ``systemctl show -p Id -p ActiveState -p UnitFileState U1 U2 ...`` (a blank-line
    separated block per unit), with ``names`` the units asked: a ``unit`` line per block whose Id is
    a name asked (or a name + ``.service``), under that name; ActiveState is what ``is-active``
    prints, UnitFileState what ``is-enabled`` prints (empty for a unit that is not there). A block
    of another Id (an alias resolved to its unit) is left out: that unit's state stays unknown."""
    return ('function out() { if (id in W) print "' + tag("unit") + '", W[id], a, e; id = a = e = "" } '
            'BEGIN { n = split(names, N, " "); for (i = 1; i <= n; i++) { W[N[i]] = N[i]; '
            'if (!((N[i] ".service") in W)) W[N[i] ".service"] = N[i] } } '
            '/^Id=/ { id = substr($0, 4) } /^ActiveState=/ { a = substr($0, 13) } '
            '/^UnitFileState=/ { e = substr($0, 15) } /^$/ { out() } END { out() }')


def unit_states(units: Iterable[str]) -> str:
    """``unit``: is-active and is-enabled of each unit, from one ``systemctl show`` (``awk_units``)."""
    units = tuple(units)
    if not units:
        return ""
    return (f"systemctl show -p Id -p ActiveState -p UnitFileState -- {_words(units)} 2>/dev/null | "
            f"awk -v names={_q(' '.join(units))} {_q(awk_units())}; ")


def users(names: Iterable[str]) -> str:
    """``user``: each of ``names`` that exists."""
    return f'for u in {_words(names)}; do getent passwd "$u" >/dev/null && echo "{tag("user")} $u"; done; '


def sysctls(keys: Iterable[str]) -> str:
    """``sysctl``: the value of each key ("" when there is none)."""
    return f'for k in {_words(keys)}; do echo "{tag("sysctl")} $k $(sysctl -n "$k" 2>/dev/null)"; done; '


def commands(names: Iterable[str]) -> str:
    """``command``: each of ``names`` that is on the PATH."""
    return f'for c in {_words(names)}; do command -v "$c" >/dev/null && echo "{tag("command")} $c"; done; '


def arch() -> str:
    """``arch``: the host's architecture."""
    return f'echo "{tag("arch")} $(dpkg --print-architecture 2>/dev/null || uname -m)"; '


def secret_digests(files: Iterable[str]) -> str:
    """``secret_file`` for each EncryptionConfiguration file there, then a ``key_digest`` per key:
    its secret is decoded and hashed on the host, only its sha256 is printed."""
    return (f'for f in {_words(files)}; do [ -f "$f" ] || continue; echo "{tag("secret_file")} $f"; '
            f'awk {_q(AWK_KEYS)} "$f" | while read -r v n s; do '
            f'd=$(printf %s "$s" | base64 -d 2>/dev/null | sha256sum); echo "{tag("key_digest")} ${{d%% *}} $v $n $f"; '
            "done; done; ")


def kube_objects(objects: Iterable[str], kubeconfig: str) -> str:
    """``kube_object``: each of ``objects`` the API reports (through ``kubeconfig``, when kubectl is there)."""
    return (f"if command -v kubectl >/dev/null && [ -f {_q(kubeconfig)} ]; then "
            f"for o in {_words(objects)}; do kubectl --kubeconfig {_q(kubeconfig)} --request-timeout=5s "
            f'get "$o" -o name >/dev/null 2>&1 && echo "{tag("kube_object")} $o"; done; fi; ')


def in_background(part: str) -> str:
    """Shell: start ``part`` (a slow one that waits on the network: kubectl through the VIP) while
    the rest of the command runs, its lines kept in a private temporary file that
    ``background_lines`` prints at the end; inline when no temporary file can be made."""
    return (f"if bg=$(mktemp 2>/dev/null); then {{ {part} }} > \"$bg\" 2>/dev/null & "
            f"else bg=''; {part} fi; ")


def background_lines() -> str:
    """Shell: wait for the ``in_background`` part, print its lines, remove its file."""
    return 'if [ -n "$bg" ]; then wait; cat -- "$bg"; rm -f -- "$bg"; fi; '


def addresses(interface: str | None = None) -> str:
    """``address``: each line of ``ip -o addr show`` (IPv4 and IPv6), of every interface or of
    ``interface`` only; nothing without ``ip``."""
    dev = f" dev {_q(interface)}" if interface else ""
    return f"if command -v ip >/dev/null; then ip -o addr show{dev} 2>/dev/null | sed 's/^/{tag('address')} /'; fi; "


def journals(units_regexes: Iterable[tuple[str, str]]) -> str:
    """``journal``: per (unit, extended regex), its last 30 s of journal lines that match (at most 20)."""
    out = []
    for unit, regex in units_regexes:
        prefix = f"s|^|{tag('journal')} {unit} |"
        out.append(f"journalctl -u {_q(unit)} -o cat --no-pager --since -30s 2>/dev/null | "
                   f"grep -E {_q(regex)} | tail -n 20 | sed {_q(prefix)}; ")
    return "".join(out)


def awk_vips() -> str:
    """awk over a keepalived config: ``live_vip`` per line of its virtual_ipaddress block and of its
    virtual_ipaddress_excluded block (a dual-stack front's second VIP, ``vip6``), then ``vrrp_mode``
    and ``vrrp_version``."""
    return (f'/^[ \t]*virtual_ipaddress(_excluded)?[ \t]*{{/{{f=1;next}} f&&/}}/{{f=0}} '
            f'f&&NF{{split($1,a,"/"); print "{tag("live_vip")}", a[1]}} '
            '/^[ \t]*unicast_src_ip[ \t]/{u=1} /^[ \t]*vrrp_version[ \t]/{v=$2} '
            f'END{{print "{tag("vrrp_mode")}", (u ? "unicast" : "multicast"); print "{tag("vrrp_version")}", (v ? v : 2)}}')


def vip_configs(files: Iterable[str]) -> str:
    """``live_vip``, ``vrrp_mode``, ``vrrp_version`` of each keepalived config there."""
    return f"for f in {_words(files)}; do [ -f \"$f\" ] && awk {_q(awk_vips())} \"$f\"; done; "


def pending() -> str:
    """``pending``: the handler of each marker in ``PENDING_DIR`` (a change went live, its handler has not run)."""
    return f'for f in {PENDING_DIR}/*; do [ -e "$f" ] && echo "{tag("pending")} ${{f##*/}}"; done; '


def version(binary: str) -> str:
    """``version``: the first line of ``BINARY --version`` (empty: no binary)."""
    return f'v=$({_q(binary)} --version 2>/dev/null | head -n1); echo "{tag("version")} $v"; '


def readyz(url: str, ca: str, cert: str, key: str) -> str:
    """``readyz``: curl's exit code and the HTTP status of GET ``url``, then ``readyz_body``: its body
    (at most 20 lines)."""
    return (f"out=$(curl -s --max-time 3 --cacert {_q(ca)} --cert {_q(cert)} --key {_q(key)} "
            f"-w '\\n%{{http_code}}' {_q(url)} 2>/dev/null); rc=$?; "
            f'echo "{tag("readyz")} $rc $(printf \'%s\\n\' "$out" | tail -n1)"; '
            f"printf '%s\\n' \"$out\" | sed '$d' | head -n 20 | sed 's/^/{tag('readyz_body')} /'; ")


def haproxy_stats(url: str) -> str:
    """``stats_ok`` when haproxy's stats answer at ``url``, then ``backend``: each server of ``BACKEND``."""
    return (f"if st=$(curl -s --max-time 2 {_q(url)}); then echo {tag('stats_ok')}; "
            f"printf '%s\\n' \"$st\" | awk -F, '$1==\"{BACKEND}\" && $2!=\"FRONTEND\" && $2!=\"BACKEND\" "
            f"{{print \"{tag('backend')} \" $2 \" \" $18}}'; fi; ")


def keepalived_state() -> str:
    """``keepalived_state``: the last "Entering <STATE> STATE" of keepalived's journal."""
    return ("journalctl -u keepalived -o cat --no-pager -r -n 5000 2>/dev/null "
            f"| grep -m1 -oE 'Entering [A-Z]+ STATE' | sed 's/^/{tag('keepalived_state')} /'; ")


def certificates(paths: Iterable[str]) -> str:
    """``cert_line``: each line of the BEGIN/END CERTIFICATE blocks of each file there (never a key)."""
    return (f"for f in {_words(paths)}; do [ -f \"$f\" ] && "
            "sed -n '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/p' \"$f\" | "
            f"awk -v f=\"$f\" '{{print \"{tag('cert_line')} \" f \" \" $0}}'; done; ")


def kubeconfig_cert(kubeconfig: str) -> str:
    """``kubeconfig_cert``: the client-certificate-data of ``kubeconfig`` (base64, as it is there)."""
    return (f"[ -f {_q(kubeconfig)} ] && sed -n 's/^ *client-certificate-data: *//p' {_q(kubeconfig)} "
            f"| head -n1 | sed 's|^|{tag('kubeconfig_cert')} |'; ")


def end() -> str:
    """``end``: the last line; a command cut short is not a healthy host."""
    return f"echo {tag('end')}"


# --- the table ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """One line kind: ``TAG REST``; ``parse(REST)`` is its value (None: nothing to record)."""

    tag: str
    name: str
    parse: Callable[[str], object]
    emit: Callable[..., str]  # the function of this module whose shell prints it
    doc: str


KINDS: tuple[Kind, ...] = (
    # the deploy's snapshot (hakube.facts.HostSnapshot)
    Kind("H", "file_hash", _file_hash, file_hashes, "H <sha256>  <path>: FileHash"),
    Kind("M", "file_meta", _file_meta, file_metas, "M <octal mode>:<user>:<group> <path>: FileMeta"),
    Kind("U", "unit", _unit_state, unit_states, "U <unit> <is-active> <is-enabled>: UnitState"),
    Kind("P", "user", _word, users, "P <user>: the user exists"),
    Kind("S", "sysctl", _sysctl, sysctls, "S <key> <value>: Sysctl"),
    Kind("C", "command", _word, commands, "C <command>: on the PATH"),
    Kind("A", "arch", k8s_arch, arch, "A <dpkg or uname architecture>: Kubernetes' name of it"),
    Kind("EF", "secret_file", _word, secret_digests, "EF <path>: an EncryptionConfiguration file is there"),
    Kind("EK", "key_digest", _key_digest, secret_digests, "EK <sha256> <provider> <name> <path>: KeyDigest"),
    Kind("KO", "kube_object", _word, kube_objects, "KO <kind/name>: the API has it"),
    Kind("J", "journal", _journal_line, journals, "J <unit> <text>: JournalLine"),
    Kind("L", "live_vip", _word, vip_configs, "L <address>: in keepalived's virtual_ipaddress(_excluded) block"),
    Kind("LM", "vrrp_mode", _word, vip_configs, "LM unicast|multicast: how keepalived's config advertises"),
    Kind("LV", "vrrp_version", _vrrp_version, vip_configs, "LV 2|3: keepalived's config's VRRP version (0: other)"),
    # both facts
    Kind("I", "address", _address, addresses, "I <a line of ip -o addr show>: Address (IPv4 or IPv6)"),
    Kind("O", "pending", _word, pending, "O <handler>: its marker is in PENDING_DIR"),
    # the check's status (hakube.health.HostStatusFact)
    Kind("V", "version", _version, version, "V <kube-apiserver --version>: 'v1.20.2'"),
    Kind("R", "readyz", _readyz, readyz, "R <curl exit> <http code>: Readyz"),
    Kind("RB", "readyz_body", str, readyz, "RB <line>: of /readyz's body"),
    Kind("SO", "stats_ok", _flag, haproxy_stats, "SO: haproxy's stats answered"),
    Kind("B", "backend", _backend, haproxy_stats, "B <server> <status>: Backend"),
    Kind("KS", "keepalived_state", _keepalived_state, keepalived_state, "KS Entering <STATE> STATE: the state"),
    Kind("CP", "cert_line", _cert_line, certificates, "CP <path> <line>: CertLine of a certificate block"),
    Kind("KC", "kubeconfig_cert", _word, kubeconfig_cert, "KC <base64>: the admin kubeconfig's client certificate"),
    Kind("END", "end", _flag, end, "END: the command ran to its end"),
)

BY_TAG: dict[str, Kind] = {k.tag: k for k in KINDS}
BY_NAME: dict[str, Kind] = {k.name: k for k in KINDS}
if len(BY_TAG) != len(KINDS) or len(BY_NAME) != len(KINDS):
    raise ImportError("hakube.protocol: a line tag or name is used twice")


def parse(lines: Iterable[str]) -> dict[str, list]:
    """{kind name: [value, ...] in the order printed} for every kind of the table; unknown tags and
    lines their parser refuses are left out."""
    out: dict[str, list] = {k.name: [] for k in KINDS}
    for text in lines:
        t, _, rest = text.partition(" ")
        kind = BY_TAG.get(t)
        if kind is None:
            continue
        value = kind.parse(rest)
        if value is not None:
            out[kind.name].append(value)
    return out
