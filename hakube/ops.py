"""The deploy's own pyinfra facts and operations.

``managed_file`` is the one way a file reaches a host: all files of a host are checked with one
remote command (``FileStates``), content is compared by sha256 against the locally rendered bytes,
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

from pyinfra import host, logger
from pyinfra.api import FactBase, FileUploadCommand, operation
from pyinfra.api.exceptions import OperationError
from pyinfra.api.util import get_file_sha256
from pyinfra.operations.util.files import generate_color_diff
from pyinfra.facts.files import FileContents

from .render import PENDING_DIR, DesiredFile, pending_marker


@dataclass(frozen=True)
class FileState:
    sha256: str
    mode: int
    owner: str


class FileStates(FactBase):
    """sha256, mode and owner of many files in one remote command; missing files are absent."""

    def command(self, paths: tuple[str, ...]) -> str:
        quoted = " ".join(shlex.quote(p) for p in paths)
        return (
            f"for p in {quoted}; do if [ -f \"$p\" ]; then "
            'printf "%s %s %s\\n" "$(sha256sum < "$p" | cut -d" " -f1)" "$(stat -c %a:%U:%G "$p")" "$p"; '
            "fi; done"
        )

    @staticmethod
    def default() -> dict:
        return {}

    def process(self, output: list[str]) -> dict[str, FileState]:
        states = {}
        for line in output:
            sha, meta, path = line.split(" ", 2)
            mode, user, group = meta.split(":")
            states[path] = FileState(sha, int(mode, 8), f"{user}:{group}")
        return states


class KubectlGet(FactBase):
    """True when ``kubectl get KIND NAME`` finds the object (False also when kubectl or the API is
    not there yet: the operation using it is idempotent either way)."""

    def command(self, kubeconfig: str, kind: str, object_name: str) -> str:
        return (
            f"if command -v kubectl >/dev/null && kubectl --kubeconfig {shlex.quote(kubeconfig)} "
            f"get {shlex.quote(kind)} {shlex.quote(object_name)} -o name >/dev/null 2>&1; "
            "then echo present; else echo absent; fi"
        )

    def process(self, output: list[str]) -> bool:
        return output == ["present"]


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


@operation()
def managed_file(file: DesiredFile, known_paths: tuple[str, ...] = ()):
    """
    Install ``file`` (rendered content) on the host, owned by root with ``file.mode``.

    + file: a ``hakube.render.DesiredFile``
    + known_paths: every path this deploy manages on the host, so one command checks them all
    """
    paths = tuple(sorted(set(known_paths) | {file.path}))
    state = host.get_fact(FileStates, paths=paths).get(file.path)
    mode = int(file.mode, 8)
    if state and state.sha256 == _sha(file.content):
        if state.mode == mode and state.owner == "root:root":
            host.noop(f"{file.path} is up to date")
            return
        yield f"chown root:root {shlex.quote(file.path)} && chmod {file.mode} {shlex.quote(file.path)}"
        return

    _show_diff(file.path, file.content, file.secret, exists=state is not None)
    staged = f"{file.path}.new"
    q_staged, q_path = shlex.quote(staged), shlex.quote(file.path)
    yield f"mkdir -p {shlex.quote(posixpath.dirname(file.path))}"
    yield FileUploadCommand(
        io.BytesIO(file.content), staged, remote_temp_filename=host.get_temp_filename(staged)
    )
    yield f"chown root:root {q_staged} && chmod {file.mode} {q_staged}"
    if file.validate:
        check = file.validate.format(path=q_staged)
        # The validator's own message goes to stderr, which pyinfra prints for the failed host.
        yield f"{check} >&2 || {{ echo 'validation failed: {file.path} left unchanged, new version kept at {staged}' >&2; exit 1; }}"
    yield from _mark_pending(file.notify)
    yield f"mv -f {q_staged} {q_path}"


def _mark_pending(handlers: tuple[str, ...]):
    """Before a change goes live, leave a marker per handler: the restart/reload then happens in
    this run or, if this run dies first, in the next one (a handler is never lost)."""
    if handlers:
        yield f"mkdir -p {PENDING_DIR} && touch " + " ".join(pending_marker(h) for h in handlers)


@operation()
def binary(dest: str, local_path: str | None = None, url: str | None = None, sha256: str | None = None,
           known_paths: tuple[str, ...] = (), notify: tuple[str, ...] = ()):
    """
    Install an executable from a local file or from ``url``, checked against ``sha256`` on the
    host before it replaces the live one.

    + dest: path on the host
    + local_path: file on the deploy machine (uploaded)
    + url: download URL (with ``sha256``)
    """
    want = get_file_sha256(local_path) if local_path else sha256
    paths = tuple(sorted(set(known_paths) | {dest}))
    state = host.get_fact(FileStates, paths=paths).get(dest)
    if state and state.sha256 == want and state.mode == 0o755:
        host.noop(f"{dest} is up to date")
        return
    staged, q_dest = f"{dest}.new", shlex.quote(dest)
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
    yield f"mv -f {q_staged} {q_dest}"


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


def handler(handler: str, command: str, upstream, known_paths: tuple[str, ...], **op_kwargs):
    """Run ``command`` (a restart or reload) when a file it depends on changed.

    Planned only when one of the ``upstream`` operations will change something, or when a marker
    left by an earlier, interrupted run says the handler is still owed (so a converged ``--dry``
    lists nothing). At execution the command runs only if the marker is there, and removes it
    once it succeeded.
    """
    from pyinfra.operations import server

    marker = pending_marker(handler)
    owed = marker in host.get_fact(FileStates, paths=tuple(sorted(set(known_paths) | {marker})))
    if not owed and not any(op.will_change for op in upstream):
        return None
    return server.shell(
        commands=[f"if [ -e {marker} ]; then {{ {command} ; }} && rm -f {marker}; fi"], **op_kwargs
    )
