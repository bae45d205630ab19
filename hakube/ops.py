"""The deploy's own pyinfra facts and operations.

``managed_file`` is the one way a file reaches a host: all files of a host are checked with one
remote command (``HostSnapshot``, taken once while planning), content is compared by sha256 against the locally rendered bytes,
secrets never appear in a diff, and a file with a validator is staged next to the live one,
validated on the host and only then moved into place. When validation fails the live file stays
as it was, the staged copy is left for inspection, and the next run tries again.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import shlex
from dataclasses import dataclass
from functools import lru_cache

from pyinfra import host, logger
from pyinfra.api import FactBase, FileUploadCommand, FunctionCommand, QuoteString, StringCommand, operation
from pyinfra.api.arguments import CONNECTOR_ARGUMENT_KEYS
from pyinfra.api.exceptions import OperationError
from pyinfra.api.util import get_file_sha256
from pyinfra.operations.util.files import generate_color_diff
from pyinfra.facts.files import FileContents

from . import roll as rollsh
from .render import KUBECONFIG, DesiredFile
from .roll import PENDING_DIR, pending_marker

# Services whose inputs are kept for a rollback before a change goes live (see hakube.roll).
ROLLED = ("kube-apiserver", "haproxy", "keepalived")
# Services whose inputs go live only in their roll, one master at a time (staged until then).
STAGED = ("kube-apiserver",)


@dataclass(frozen=True)
class FileState:
    sha256: str
    mode: int
    owner: str


@dataclass(frozen=True)
class Snapshot:
    """What the deploy needs to know about a host, learned with one remote command per run."""

    files: dict  # path -> FileState (missing files are absent)
    units: dict  # unit -> (is-active, is-enabled)
    users: frozenset
    sysctls: dict  # key -> value
    commands: frozenset = frozenset()  # of COMMANDS, those on the PATH
    kube_objects: frozenset = frozenset()  # of KUBE_OBJECTS, those the API reports (via the VIP)

    def owed(self, handler: str) -> bool:
        return pending_marker(handler) in self.files


UNITS = ("kube-apiserver.service", "kube-apiserver-agent.socket", "keepalived.service", "haproxy.service")
USERS = ("keepalived_script",)
SYSCTLS = ("net.ipv4.ip_nonlocal_bind",)
COMMANDS = ("keepalived", "haproxy", "kubectl")  # what the packages step provides
RBAC_BINDING = "kube-apiserver:kubelet-apis"  # the tutorial's binding (tasks/rbac.py)
KUBE_OBJECTS = (f"clusterrolebinding/{RBAC_BINDING}",)


class HostSnapshot(FactBase):
    """sha256/mode/owner of every managed file, state of the deploy's units, users and sysctls.

    pyinfra 3.10 does not cache facts between operations, so the deploy takes this snapshot once
    per host while planning and hands each operation its part: a no-op run costs one command here
    instead of one per file and unit.
    """

    def command(self, paths: tuple[str, ...], units: tuple[str, ...], users: tuple[str, ...],
                sysctls: tuple[str, ...], commands: tuple[str, ...], kube_objects: tuple[str, ...],
                kubeconfig: str) -> str:
        q = lambda items: " ".join(shlex.quote(i) for i in items)  # noqa: E731
        return (
            f'set --; for p in {q(paths)}; do [ -f "$p" ] && set -- "$@" "$p"; done; '
            "if [ $# -gt 0 ]; then sha256sum \"$@\" | sed 's/^/H /'; stat -c 'M %a:%U:%G %n' \"$@\"; fi; "
            f'for u in {q(units)}; do echo "U $u $(systemctl is-active "$u" 2>/dev/null || true) '
            '$(systemctl is-enabled "$u" 2>/dev/null || true)"; done; '
            f'for u in {q(users)}; do getent passwd "$u" >/dev/null && echo "P $u"; done; '
            f'for k in {q(sysctls)}; do echo "S $k $(sysctl -n "$k" 2>/dev/null)"; done; '
            f'for c in {q(commands)}; do command -v "$c" >/dev/null && echo "C $c"; done; '
            f"if command -v kubectl >/dev/null && [ -f {shlex.quote(kubeconfig)} ]; then "
            f"for o in {q(kube_objects)}; do kubectl --kubeconfig {shlex.quote(kubeconfig)} --request-timeout=5s "
            'get "$o" -o name >/dev/null 2>&1 && echo "K $o"; done; fi; true'
        )

    @staticmethod
    def default() -> Snapshot:
        return Snapshot({}, {}, frozenset(), {})

    def process(self, output: list[str]) -> Snapshot:
        hashes, metas, units, users, sysctls, commands, objects = {}, {}, {}, set(), {}, set(), set()
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
                units[unit] = (states + ["unknown", "unknown"])[:2]
            elif kind == "P":
                users.add(rest)
            elif kind == "S":
                key, _, value = rest.partition(" ")
                sysctls[key] = value
            elif kind == "C":
                commands.add(rest)
            elif kind == "K":
                objects.add(rest)
        files = {}
        for path, sha in hashes.items():
            mode, user, group = metas[path].split(":")
            files[path] = FileState(sha, int(mode, 8), f"{user}:{group}")
        return Snapshot(files, units, frozenset(users), sysctls, frozenset(commands), frozenset(objects))


def snapshot(paths: tuple[str, ...]) -> Snapshot:
    """The current host's snapshot (one remote command)."""
    return host.get_fact(HostSnapshot, paths=paths, units=UNITS, users=USERS, sysctls=SYSCTLS,
                         commands=COMMANDS, kube_objects=KUBE_OBJECTS, kubeconfig=KUBECONFIG)


def _sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _show_diff(path: str, content: bytes, secret: bool, exists: bool) -> None:
    if not host.state.config.DIFF:
        return
    verb = "modify" if exists else "create"
    host.log(f"Will {verb} {path}", logger.info)
    if secret:
        logger.info("  (secret content: diff not shown)")
        return
    current = host.get_fact(FileContents, path=path) if exists else None
    current_lines = [line + "\n" for line in current or []]
    for line in generate_color_diff(current_lines, content.decode().splitlines(keepends=True)):
        logger.info("  %s", line)
    logger.info("")


def content_changes(file: DesiredFile, facts: Snapshot) -> bool:
    """True when the host's copy of ``file`` is missing or has other bytes (a mode is no change)."""
    state = facts.files.get(file.path)
    return state is None or state.sha256 != _sha(file.content)


@operation()
def managed_file(file: DesiredFile, now: Snapshot):
    """
    Install ``file`` (rendered content) on the host, owned by root with ``file.mode``.

    + file: a ``hakube.render.DesiredFile``
    + now: the host's snapshot, taken once while planning

    An input of a service in ``STAGED`` (the apiserver) stays at ``<path>.new``: the service's roll
    switches it in on its master's turn (``hakube.roll``). Any other file goes live here, after the
    version it replaces was kept for a rollback of the services it notifies.

    The new version is written into a file that is already root-owned and private (0600) and gets
    its final mode before it is moved into place: a secret is never readable by anyone else, not
    even for an instant. A mode or owner repair touches nothing else and restarts nothing.
    """
    state = now.files.get(file.path)
    q_path = shlex.quote(file.path)
    if not content_changes(file, now):
        if state.mode == int(file.mode, 8) and state.owner == "root:root":
            host.noop(f"{file.path} is up to date")
            return
        yield f"chown root:root {q_path} && chmod {file.mode} {q_path}"
        return

    _show_diff(file.path, file.content, file.secret, exists=state is not None)
    staged_path = f"{file.path}.new"
    q_staged = shlex.quote(staged_path)
    yield f"mkdir -p {shlex.quote(posixpath.dirname(file.path))} && install -m 0600 -o root -g root /dev/null {q_staged}"
    yield FileUploadCommand(
        io.BytesIO(file.content), staged_path, remote_temp_filename=host.get_temp_filename(staged_path)
    )
    yield f"chown root:root {q_staged} && chmod {file.mode} {q_staged}"
    if file.validate:
        check = file.validate.format(path=q_staged)
        # The validator's own message goes to stderr, which pyinfra prints for the failed host.
        yield f"{check} >&2 || {{ echo 'validation failed: {file.path} left unchanged, new version kept at {staged_path}' >&2; exit 1; }}"
    yield from _mark_pending(file.notify)
    if any(service in STAGED for service in file.notify):
        return
    for service in file.notify:
        if service in ROLLED:
            yield rollsh.backup(service, [file.path])
    yield f"mv -f {q_staged} {q_path}"


def _mark_pending(handlers: tuple[str, ...]):
    """Before a change goes live, leave a marker per handler: the restart/reload then happens in
    this run or, if this run dies first, in the next one (a handler is never lost)."""
    if handlers:
        yield f"mkdir -p {PENDING_DIR} && touch " + " ".join(pending_marker(h) for h in handlers)


@operation()
def binary(dest: str, now: Snapshot, local_path: str | None = None, url: str | None = None,
           sha256: str | None = None, notify: tuple[str, ...] = ()):
    """
    Stage an executable at ``<dest>.new`` from a local file or from ``url``, checked against
    ``sha256`` on the host; the service's roll switches it in (the live binary is not touched here).

    + dest: path on the host
    + local_path: file on the deploy machine (uploaded)
    + url: download URL (with ``sha256``)
    """
    want = _local_sha256(local_path) if local_path else sha256
    state = now.files.get(dest)
    if state and state.sha256 == want:
        if state.mode == 0o755 and state.owner == "root:root":
            host.noop(f"{dest} is up to date")
            return
        yield f"chown root:root {shlex.quote(dest)} && chmod 0755 {shlex.quote(dest)}"
        return
    staged = f"{dest}.new"
    q_staged = shlex.quote(staged)
    if local_path:
        yield FileUploadCommand(local_path, staged, remote_temp_filename=host.get_temp_filename(staged))
    else:
        yield f"curl -fsSL --retry 3 -o {q_staged} {shlex.quote(url)}"
    yield (
        f'echo "{want}  {staged}" | sha256sum -c --quiet - >&2 '
        f"|| {{ rm -f {q_staged}; echo 'checksum mismatch: {dest} left unchanged' >&2; exit 1; }}"
    )
    yield f"chmod 0755 {q_staged} && chown root:root {q_staged}"
    yield from _mark_pending(notify)


@lru_cache(maxsize=8)
def _local_sha256(path: str) -> str:
    return get_file_sha256(path)  # the 110 MB binary: hashed once per run, not once per host


@operation()
def unit_running(unit: str, now: Snapshot):
    """
    Enable and start a systemd unit (one of ``UNITS``), judged from the snapshot.

    + unit: e.g. ``haproxy.service``
    """
    active, enabled = now.units.get(unit, ("unknown", "unknown"))
    if enabled != "enabled":
        yield f"systemctl enable {shlex.quote(unit)}"
    if active != "active":
        yield f"systemctl start {shlex.quote(unit)}"
    if enabled == "enabled" and active == "active":
        host.noop(f"{unit} is enabled and running")


def install_packages(names: list[str], **kwargs):
    """Install distribution packages with the host's own package manager (apt, dnf or yum)."""
    from pyinfra.facts.server import Which
    from pyinfra.operations import apt, dnf, yum

    if host.get_fact(Which, command="apt-get"):
        return apt.packages(packages=names, update=True, cache_time=86400, no_recommends=True, **kwargs)
    if host.get_fact(Which, command="dnf"):
        return dnf.packages(packages=names, **kwargs)
    if host.get_fact(Which, command="yum"):
        return yum.packages(packages=names, **kwargs)
    raise OperationError(f"{host.name}: no supported package manager (apt-get, dnf, yum)")


def handler(handler: str, command: str, files, now: Snapshot, **op_kwargs):
    """Run ``command`` (a reload) when the content of one of ``files`` (``DesiredFile``) changes.

    Planned only when a file's content will change, or when a marker left by an earlier,
    interrupted run says the handler is still owed (so a converged ``--dry`` lists nothing, and a
    mode-only repair lists no reload it does not do). At execution the command runs only if the
    marker is there, and removes it once it succeeded.
    """
    from pyinfra.operations import server

    marker = pending_marker(handler)
    if not now.owed(handler) and not any(content_changes(f, now) for f in files):
        return None
    return server.shell(
        commands=[f"if [ -e {marker} ]; then {{ {command} ; }} && rm -f {marker}; fi"], **op_kwargs
    )


# --- the roll: one master at a time, stop and roll back on the first failure ----------------------

_ROLLS: dict[int, dict[str, dict]] = {}  # id(state) -> service -> {"host": name, "done": bool}


def _roll_guard(state, host, service: str, on_stop: str):
    """Start the roll here unless it failed on an earlier master; then leave this one as it was."""
    rolls = _ROLLS.setdefault(id(state), {})
    last = rolls.get(service)
    if last and not last["done"]:
        host.log_styled(
            f"{service} not touched here: the roll stopped at {last['host']}, which was rolled back",
            fg="red", log_func=logger.error,
        )
        args = state.get_op_data_for_host(host, host.executing_op_hash).global_arguments
        host.run_shell_command(StringCommand("sh", "-c", QuoteString(on_stop)),
                               **{k: args[k] for k in CONNECTOR_ARGUMENT_KEYS if k in args})
        return False
    rolls[service] = {"host": host.name, "done": False}
    return True


def _roll_done(state, host, service: str):
    _ROLLS[id(state)][service]["done"] = True
    return True


@operation(is_idempotent=False)
def roll(service: str, script: str, on_stop: str):
    """
    Apply a change to ``service`` on this master (``script``, from ``hakube.roll.rolled_restart``),
    run with ``_serial=True``. Once one master's roll failed (and was rolled back), every later
    master runs ``on_stop`` instead (its own previous inputs stay or are put back) and fails too:
    the run stops there.
    """
    yield FunctionCommand(_roll_guard, (service, on_stop), {})
    yield script
    yield FunctionCommand(_roll_done, (service,), {})


def reload_roll(service: str, files, now: Snapshot, host_name: str, timeout: int = 10):
    """Reload ``service`` (one master at a time) when one of ``files`` changed content; if the
    daemon is not running afterwards, put its previous files back, restart it and stop the run."""
    if not roll_owed(service, files, now):
        return None
    unit = shlex.quote(service)
    script = rollsh.rolled_restart(
        service, host_name, (), apply=f"systemctl reload-or-restart {unit} && sleep 1",
        ready=f"systemctl is-active -q {unit}", timeout=timeout,
    )
    return roll(name=f"Reload {service} (config changed)", service=service,
                script=script, on_stop=rollsh.stopped_elsewhere(service), _serial=True)


def roll_owed(service: str, files, now: Snapshot, binary_changes: bool = False) -> bool:
    """Plan a roll only when an input's content changes or an interrupted run still owes one."""
    return binary_changes or now.owed(service) or any(content_changes(f, now) for f in files)
