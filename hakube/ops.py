"""The deploy's own pyinfra operations: each a small generator over the host's facts.

``managed_file`` is the one way a file reaches a host: content is compared by sha256 against the
locally rendered bytes (``hakube.facts``, one snapshot per run), secrets never appear in a diff,
a file with a validator is validated on the host before it goes live, and an input of a rolled
service is kept for a rollback (``hakube.roll``). ``roll`` applies a change to a service one
master at a time and stops at the first that fails; ``handler`` runs a plain reload.
"""

from __future__ import annotations

import io
import posixpath
import shlex
import time
from functools import lru_cache

import gevent
from pyinfra import host, logger
from pyinfra.api import FileUploadCommand, FunctionCommand, QuoteString, StringCommand, operation
from pyinfra.api.arguments import CONNECTOR_ARGUMENT_KEYS
from pyinfra.api.util import get_file_sha256
from pyinfra.facts.files import FileContents
from pyinfra.operations.util.files import generate_color_diff

from . import roll as rollsh
from . import vip as vipmod
from .facts import HostFacts
from .render import DesiredFile
from .roll import PENDING_DIR, pending_marker

# Over SSH with sudo, pyinfra uploads a file as the login user into a temporary file and copies it
# as root. That temporary file lives here: a directory under root's /var/lib/hakube that only the
# login user may enter (0700), so no other user can read a secret while it is in flight (in /tmp
# it would be created with the login user's umask). pyinfra removes the temporary file itself.
UPLOAD_DIR = "/var/lib/hakube/upload"


def upload_dir_ready() -> str:
    """`sudo` sets SUDO_USER to the login user; through `docker exec` (root, no sudo) it is unset."""
    return f'install -d -m 0700 -o "${{SUDO_USER:-root}}" {UPLOAD_DIR}'


def upload_temp(dest: str) -> str:
    return host.get_temp_filename(dest, temp_directory=UPLOAD_DIR)


# Services whose inputs are kept for a rollback before a change goes live (see hakube.roll).
ROLLED = ("kube-apiserver", "haproxy", "keepalived")
# Services whose inputs go live only in their roll, one master at a time (staged until then).
STAGED = ("kube-apiserver",)


def _show_diff(path: str, content: bytes, secret: bool, exists: bool) -> None:
    """The diff of one file on this host as ONE log record, headed by host and path: hosts are
    planned concurrently, so line-by-line logging would interleave them."""
    if not host.state.config.DIFF:
        return
    head = f"{host.print_prefix}Will {'modify' if exists else 'create'} {path}"
    if secret:
        logger.info(f"{head}\n    (secret content: diff not shown)\n")
        return
    current = host.get_fact(FileContents, path=path) if exists else None
    current_lines = [line + "\n" for line in current or []]
    lines = generate_color_diff(current_lines, content.decode().splitlines(keepends=True))
    logger.info("\n".join([head, *(f"    {line}" for line in lines), ""]))


def content_changes(file: DesiredFile, facts: HostFacts) -> bool:
    """True when the host's copy of ``file`` is missing or has other bytes (a mode is no change)."""
    state = facts.files.get(file.path)
    return state is None or state.sha256 != file.sha256


def differs(file: DesiredFile, facts: HostFacts) -> bool:
    """Content, mode or owner on the host is not what ``file`` wants."""
    state = facts.files.get(file.path)
    return content_changes(file, facts) or state.mode != int(file.mode, 8) or state.owner != "root:root"


def install(files, facts: HostFacts, verb: str = "Install") -> list:
    """``managed_file`` for each of ``files`` that differs on the host. A file that is up to date
    gets no operation at all (one no-op line names them): pyinfra spends ~10 ms planning each
    operation, which would be most of a no-op run. Every file is still compared, by content."""
    ops, same = [], []
    for f in files:
        if differs(f, facts):
            ops.append(managed_file(name=f"{verb} {f.path}", file=f, facts=facts))
        else:
            same.append(f.path)
    if same:
        host.noop(f"up to date: {', '.join(same)}")
    return ops


@operation()
def managed_file(file: DesiredFile, facts: HostFacts):
    """
    Install ``file`` (rendered content) on the host, owned by root with ``file.mode``.

    + file: a ``hakube.render.DesiredFile``
    + facts: the host's snapshot (``hakube.facts``), taken once while planning

    An input of a service in ``STAGED`` (the apiserver) stays at ``<path>.new``: the service's roll
    switches it in on its master's turn (``hakube.roll``). Any other file goes live here, after the
    version it replaces was kept for a rollback of the services it notifies.

    The new version is written into a file that is already root-owned and private (0600) and gets
    its final mode before it is moved into place: a secret is never readable by anyone else, not
    even for an instant. A mode or owner repair touches nothing else and restarts nothing.
    """
    state = facts.files.get(file.path)
    q_path = shlex.quote(file.path)
    if not content_changes(file, facts):
        if state.mode == int(file.mode, 8) and state.owner == "root:root":
            host.noop(f"{file.path} is up to date")
            return
        yield f"chown root:root {q_path} && chmod {file.mode} {q_path}"
        return

    _show_diff(file.path, file.content, file.secret, exists=state is not None)
    staged_path = f"{file.path}.new"
    q_staged = shlex.quote(staged_path)
    yield (f"mkdir -p {shlex.quote(posixpath.dirname(file.path))} && install -m 0600 -o root -g root /dev/null "
           f"{q_staged} && {upload_dir_ready()}")
    yield FileUploadCommand(io.BytesIO(file.content), staged_path, remote_temp_filename=upload_temp(staged_path))
    # One remote command from here on: every step must pass for the next to run.
    steps = [f"chown root:root {q_staged} && chmod {file.mode} {q_staged}"]
    if file.validate:
        check = file.validate.format(path=q_staged)
        # The validator's own message goes to stderr, which pyinfra prints for the failed host.
        steps.append(f"{{ {check} >&2 || {{ echo 'validation failed: {file.path} left unchanged, new version "
                     f"kept at {staged_path}' >&2; exit 1; }}; }}")
    steps += _mark_pending(file.notify)
    if not any(service in STAGED for service in file.notify):
        steps += [rollsh.backup(service, [file.path]) for service in file.notify if service in ROLLED]
        steps.append(f"mv -f {q_staged} {q_path}")
    yield " && ".join(steps)


def _mark_pending(handlers: tuple[str, ...]) -> list[str]:
    """Before a change goes live, leave a marker per handler: the restart/reload then happens in
    this run or, if this run dies first, in the next one (a handler is never lost)."""
    if not handlers:
        return []
    return [f"mkdir -p {PENDING_DIR} && touch " + " ".join(pending_marker(h) for h in handlers)]


@operation()
def binary(dest: str, facts: HostFacts, local_path: str | None = None, url: str | None = None,
           sha256: str | None = None, notify: tuple[str, ...] = ()):
    """
    Stage an executable at ``<dest>.new`` from a local file or from ``url``, checked against
    ``sha256`` on the host; the service's roll switches it in (the live binary is not touched here).

    + dest: path on the host
    + local_path: file on the deploy machine (uploaded)
    + url: download URL (with ``sha256``); needs curl on the host (plan it after the packages)

    The bytes land in ``<dest>.download`` (a download: created 0600 root before its first byte;
    ``curl -f``: an HTTP error fails, nothing half-written goes on). Only when its sha256 is the
    wanted one does it get mode 0755 and move to ``<dest>.new``; otherwise it is deleted, the
    error names the source, the expected and the actual sha256, and the run stops on this host.

    **Example:**

    .. code:: python

        binary(name="Install kube-apiserver", dest="/usr/local/bin/kube-apiserver", facts=facts,
               url="https://dl.k8s.io/release/v1.36.0/bin/linux/amd64/kube-apiserver", sha256="...")
    """
    want = binary_sha256(local_path, sha256)
    state = facts.files.get(dest)
    if state and state.sha256 == want:
        if state.mode == 0o755 and state.owner == "root:root":
            host.noop(f"{dest} is up to date")
            return
        yield f"chown root:root {shlex.quote(dest)} && chmod 0755 {shlex.quote(dest)}"
        return
    temp, staged = f"{dest}.download", f"{dest}.new"
    q_temp, q_staged = shlex.quote(temp), shlex.quote(staged)
    left = f"{dest} left unchanged"
    if local_path:
        source = local_path
        yield (f"mkdir -p {shlex.quote(posixpath.dirname(dest))} && "
               f"install -m 0600 -o root -g root /dev/null {q_temp} && {upload_dir_ready()}")
        yield FileUploadCommand(local_path, temp, remote_temp_filename=upload_temp(temp))
    else:
        source = url
        q_url = shlex.quote(url)
        yield (f"mkdir -p {shlex.quote(posixpath.dirname(dest))} && "
               f"install -m 0600 -o root -g root /dev/null {q_temp}")
        yield (
            f"curl -fsSL --proto =http,https --retry 3 -o {q_temp} {q_url} || "
            f"{{ rm -f {q_temp}; echo {shlex.quote(f'download of {url} failed: {left}')} >&2; exit 1; }}"
        )
    mismatch = shlex.quote(f"checksum mismatch for {source}: expected sha256 {want}, got ")
    yield (
        f"actual=$(sha256sum < {q_temp} | cut -c1-64) && if [ \"$actual\" != {shlex.quote(want)} ]; then rm -f {q_temp}; "
        f"echo {mismatch}\"$actual\"{shlex.quote(f'; {left}')} >&2; exit 1; fi"
    )
    yield " && ".join([f"chmod 0755 {q_temp} && chown root:root {q_temp} && mv -f {q_temp} {q_staged}",
                       *_mark_pending(notify)])


def binary_sha256(local_path: str | None, sha256: str | None) -> str:
    """The sha256 the binary must have: the local file's, or the one given for a download."""
    return _local_sha256(local_path) if local_path else sha256


def binary_differs(dest: str, facts: HostFacts, local_path: str | None, sha256: str | None) -> str | None:
    """"content" when the host lacks this binary, "mode" when only its mode or owner is wrong, else None."""
    state = facts.files.get(dest)
    if state is None or state.sha256 != binary_sha256(local_path, sha256):
        return "content"
    return "mode" if (state.mode, state.owner) != (0o755, "root:root") else None


@lru_cache(maxsize=8)
def _local_sha256(path: str) -> str:
    return get_file_sha256(path)  # the 110 MB binary: hashed once per run, not once per host


def ensure_running(unit: str, facts: HostFacts, name: str):
    """``unit_running`` only when the snapshot says the unit is not enabled and active."""
    if tuple(facts.units.get(unit, ())) == ("active", "enabled"):
        host.noop(f"{unit} is enabled and running")
        return None
    return unit_running(name=name, unit=unit, facts=facts)


@operation()
def unit_running(unit: str, facts: HostFacts):
    """
    Enable and start a systemd unit (one its step declared in ``Needs.units``), judged from the snapshot.

    + unit: e.g. ``haproxy.service``
    """
    active, enabled = facts.units.get(unit, ("unknown", "unknown"))
    q = shlex.quote(unit)
    if enabled != "enabled":
        yield f"systemctl enable {'--now ' if active != 'active' else ''}{q}"
    elif active != "active":
        yield f"systemctl start {q}"
    else:
        host.noop(f"{unit} is enabled and running")


PACKAGES_UNIT = "hakube-packages"  # the transient unit that installs them in the background


def _install_command(names, rpm_names: dict | None = None) -> str:
    q = " ".join(shlex.quote(n) for n in names)
    rpm = " ".join(shlex.quote((rpm_names or {}).get(n, n)) for n in names)
    return (
        "if command -v apt-get >/dev/null; then apt-get -o Acquire::Languages=none update -qq && "
        f"DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends {q}; "
        f"elif command -v dnf >/dev/null; then dnf install -y -q {rpm}; "
        f"elif command -v yum >/dev/null; then yum install -y -q {rpm}; "
        "else echo 'no supported package manager (apt-get, dnf, yum)' >&2; exit 1; fi"
    )


@operation(is_idempotent=False)
def packages(names: tuple[str, ...], rpm_names: dict | None = None):
    """
    Start installing distribution packages in the background (a transient systemd unit), with the
    host's own package manager (apt, dnf or yum): one remote command, and the later steps' file
    uploads go on meanwhile. ``packages_ready`` waits for it before anything runs them. Plan it
    only when something is missing (``tasks/packages.py``).

    + names: package names (Debian's)
    + rpm_names: {Debian name: name on dnf/yum hosts} where they differ
    """
    yield (  # an install an interrupted run started may still be going: then wait for that one
        f"systemctl is-active -q {PACKAGES_UNIT} || {{ systemctl reset-failed {PACKAGES_UNIT} 2>/dev/null; "
        f"systemd-run --quiet --unit={PACKAGES_UNIT} --description='hakube: install packages' "
        f"sh -c {shlex.quote(_install_command(names, rpm_names))}; }}"
    )


@operation(is_idempotent=False)
def packages_ready(commands: tuple[str, ...]):
    """
    Wait for the background install of ``packages``; fail with its journal if it failed, or if
    one of ``commands`` is still missing.

    + commands: what the packages provide
    """
    unit = PACKAGES_UNIT
    yield (
        f"while case $(systemctl show -p ActiveState --value {unit}) in active|activating|deactivating) true;; "
        "*) false;; esac; do sleep 0.5; done; "
        f"if systemctl is-failed -q {unit}; then echo 'installing the packages failed:' >&2; "
        f"journalctl -u {unit} -n 30 --no-pager -o cat >&2; systemctl reset-failed {unit}; exit 1; fi; "
        f"for c in {' '.join(shlex.quote(c) for c in commands)}; do command -v \"$c\" >/dev/null || "
        "{ echo \"$c is still missing after the package install\" >&2; exit 1; }; done"
    )


def handler(handler: str, command: str, files, facts: HostFacts, **op_kwargs):
    """Run ``command`` (a reload) when the content of one of ``files`` (``DesiredFile``) changes.

    Planned only when a file's content will change, or when a marker left by an earlier,
    interrupted run says the handler is still owed (so a converged ``--dry`` lists nothing, and a
    mode-only repair lists no reload it does not do). At execution the command runs only if the
    marker is there, and removes it once it succeeded.
    """
    from pyinfra.operations import server

    marker = pending_marker(handler)
    if not facts.owed(handler) and not any(content_changes(f, facts) for f in files):
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
            f"{service} not touched here: the roll stopped at {last['host']}, where it failed",
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
def roll(service: str, script: str, on_stop: str, guard: bool = True):
    """
    Apply a change to ``service`` on this master (``script``, from ``hakube.roll.rolled_restart``).
    Run with ``_serial=True`` and ``guard``: once one master's roll failed (and was rolled back),
    every later master runs ``on_stop`` instead (its own previous inputs stay or are put back) and
    fails too: the run stops there. Without ``guard`` (nothing serving yet) masters roll at once.

    + service: the systemd unit, e.g. ``kube-apiserver``
    + script: the shell that switches inputs, restarts and waits, or rolls back
    + on_stop: the shell for a master the roll does not reach
    """
    if guard:
        yield FunctionCommand(_roll_guard, (service, on_stop), {})
    yield script
    if guard:
        yield FunctionCommand(_roll_done, (service,), {})


def reload_roll(service: str, files, facts: HostFacts, host_name: str, timeout: int = 10,
                one_at_a_time: bool = True, name: str | None = None, ready: str | None = None,
                wait_first: str = ":", after: str = ":"):
    """Reload ``service`` (one master at a time) when one of ``files`` changed content; if the
    daemon is not running afterwards (or ``ready``, a shell condition, does not hold within
    ``timeout`` seconds), put its previous files back, reload it on them and stop the run.
    ``wait_first``: shell run just before the reload (e.g. let the VIP holder reload first);
    ``after``: shell run on exit, whatever happened."""
    if not roll_owed(service, files, facts):
        return None
    unit = shlex.quote(service)
    active = f"systemctl is-active -q {unit}"
    script = rollsh.rolled_restart(
        service, host_name, (), apply=f"{{ {wait_first}; }} && systemctl reload-or-restart {unit} && sleep 1",
        ready=f"{active} && {{ {ready}; }}" if ready else active, timeout=timeout,
        # a reload keeps what still serves (keepalived keeps its VRRP state, haproxy its sessions)
        revert=f"systemctl reload-or-restart {unit}", after=after,
    )
    return roll(name=name or f"Reload {service} (config changed)", service=service, script=script,
                on_stop=rollsh.stopped_elsewhere(service), guard=one_at_a_time, _serial=one_at_a_time)


def roll_owed(service: str, files, facts: HostFacts, binary_changes: bool = False) -> bool:
    """Plan a roll only when an input's content changes or an interrupted run still owes one."""
    return binary_changes or facts.owed(service) or any(content_changes(f, facts) for f in files)


# --- the VIP: exactly one master holds it (hakube.vip) ---------------------------------------------


def _connector_args(h) -> dict:
    """How to run a command on ``h`` outside an operation: its inventory's connector arguments
    (``_sudo`` and the like), as pyinfra gives them to its operations."""
    return {k: h.data.get(k) for k in CONNECTOR_ARGUMENT_KEYS if h.data.get(k) is not None}


def _watch_vip(state, host, vip: str, interfaces: dict, vrid: int, unicast: bool, addresses: tuple,
               settle: float, deadline: float):
    """Poll every master's interface until exactly one holds the VIP for ``settle`` seconds (or fail
    after ``deadline``), then read keepalived's journal on each for adverts no master sent."""
    from .context import reach  # a master outside --limit is read, not changed

    masters = {name: state.inventory.get_host(name) for name in interfaces}
    unreachable = [name for name, h in masters.items() if not reach(h)]
    if unreachable:
        host.log_styled(f"could not read {', '.join(unreachable)} (outside --limit, unreachable): who holds the VIP "
                        "there is not checked", fg="yellow", log_func=logger.warning)
        masters = {name: h for name, h in masters.items() if name not in unreachable}
    started, steady_since, held = time.monotonic(), None, {}
    while True:
        for name, h in masters.items():
            ok, out = h.run_shell_command(StringCommand("ip", "-o", "-4", "addr", "show", "dev", interfaces[name]),
                                          **_connector_args(h))
            held[name] = vipmod.holds(out.stdout, vip) if ok else None
        now = time.monotonic()
        known = {n.rsplit("/", 1)[-1]: bool(v) for n, v in held.items()}
        verdict = vipmod.holders_verdict(known, vip, vrid, unicast)
        if verdict is None and None not in held.values():
            steady_since = steady_since or now
            if now - steady_since >= settle:
                break
        else:
            steady_since = None
        if now - started > deadline:
            unknown = [n for n, v in held.items() if v is None]
            detail = f" ({', '.join(unknown)} could not be asked)" if unknown else ""
            host.log_styled(f"{verdict or 'the VIP holder did not settle'}{detail}", fg="red", log_func=logger.error)
            return False
        gevent.sleep(0.5)
    heard = {}
    for name, h in masters.items():
        ok, out = h.run_shell_command(StringCommand("sh", "-c", QuoteString(vipmod.journal_command())),
                                      **_connector_args(h))
        heard[name.rsplit("/", 1)[-1]] = vipmod.foreign_adverts(out.stdout_lines if ok else [], addresses)
    verdict = vipmod.foreign_verdict(heard, vrid, vip)
    if verdict:
        host.log_styled(verdict, fg="red", log_func=logger.error)
        return False
    return True


@operation(is_idempotent=False)
def vip_one_holder(vip: str, interfaces: dict, vrid: int, unicast: bool, addresses: tuple, settle: float,
                   deadline: float):
    """
    Exactly one master holds the VIP, steadily, and no router outside the masters sends adverts with
    our virtual_router_id (``hakube.vip``); otherwise fail, saying which and what to do.

    + vip: the VIP
    + interfaces: {master host name: its VRRP interface}
    + vrid: virtual_router_id
    + unicast: whether keepalived uses unicast peers (the advice differs)
    + addresses: every master's bind address (their adverts are not foreign)
    + settle: seconds one holder must last
    + deadline: seconds to wait for it
    """
    yield FunctionCommand(_watch_vip, (vip, interfaces, vrid, unicast, addresses, settle, deadline), {})


def _none_failed(state, host, masters: tuple):
    failed = sorted(h.name for h in state.failed_hosts if h.name in masters)
    if failed:
        host.log_styled(f"not going on here: {', '.join(failed)} failed earlier in this run", fg="red",
                        log_func=logger.error)
        return False
    return True


@operation(is_idempotent=False)
def masters_unfailed(masters: tuple):
    """
    Fail this host when one of ``masters`` already failed in this run: pyinfra would carry on with
    the others, and some steps (keepalived's first start) must happen on all masters or on none.

    + masters: the masters' host names
    """
    yield FunctionCommand(_none_failed, (masters,), {})


# --- membership: a master leaves before the others change ------------------------------------------

_LEFT: dict[int, set] = {}  # id(state) -> names of the masters whose leave ran to its end in this run


def _record_left(state, host):
    _LEFT.setdefault(id(state), set()).add(host.name)
    return True


def _check_left(state, host, leavers: tuple[str, ...]):
    missing = [name for name in leavers if name not in _LEFT.get(id(state), set())]
    if missing:
        host.log_styled(
            f"not changed: {', '.join(missing)} did not leave (its error is above); "
            "this master keeps its certificates, haproxy and keepalived as they were",
            fg="red", log_func=logger.error,
        )
        return False
    return True


@operation(is_idempotent=False)
def leave(commands: tuple[str, ...]):
    """
    Take this master out of the cluster (``tasks.leave``): each of ``commands`` in turn, each one
    remote command that must succeed for the next to run; then record that it left, for
    ``leavers_left`` on the other masters.

    + commands: the shell of the leave (VIP off, drain, stop and disable, remove keys)
    """
    yield from commands
    yield FunctionCommand(_record_left, (), {})


@operation(is_idempotent=False)
def leavers_left(leavers: tuple[str, ...]):
    """
    On a master that stays: fail (and so change nothing more here) unless every one of
    ``leavers`` finished its ``leave`` earlier in this run. pyinfra goes on with the other hosts
    after a failed one; this keeps a remaining master from dropping a peer that still holds the VIP
    or still serves.

    + leavers: names of the masters whose leave is planned in this run
    """
    yield FunctionCommand(_check_left, (tuple(leavers),), {})
