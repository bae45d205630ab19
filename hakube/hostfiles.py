"""Files on a host: ``managed_file`` is the one way a file reaches a host.

Content is compared by sha256 against the locally rendered bytes (``hakube.facts``, one snapshot
per run), secrets never appear in a diff, a file with a validator is validated on the host before
it goes live, and an input of a rolled service is kept for a rollback (``hakube.roll``).
``binary`` stages an executable the same way, checked by its sha256.
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import re
import shlex
from functools import lru_cache
from pathlib import Path

from pyinfra import host, logger
from pyinfra.api import FileUploadCommand, operation
from pyinfra.facts.files import FileContents
from pyinfra.operations.util.files import generate_color_diff

from . import roll as rollsh
from .facts import HostFacts
from .private import private_dir, write_private
from .protocol import hash_cache_file
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
    steps += mark_pending(file.notify)
    if not any(service in STAGED for service in file.notify):
        steps += [rollsh.backup(service, [file.path]) for service in file.notify if service in ROLLED]
        steps.append(f"mv -f {q_staged} {q_path}")
    yield " && ".join(steps)



def mark_pending(handlers: tuple[str, ...]) -> list[str]:
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
                       *mark_pending(notify)])


def binary_sha256(local_path: str | None, sha256: str | None) -> str:
    """The sha256 the binary must have: the local file's, or the one given for a download."""
    return _local_sha256(local_path) if local_path else sha256


def binary_differs(dest: str, facts: HostFacts, local_path: str | None, sha256: str | None) -> str | None:
    """"content" when the host lacks this binary, "mode" when only its mode or owner is wrong, else None."""
    state = facts.files.get(dest)
    if state is None or state.sha256 != binary_sha256(local_path, sha256):
        return "content"
    return "mode" if (state.mode, state.owner) != (0o755, "root:root") else None


#: the deploy machine's cache of a local binary's sha256, kept beside the file's stat as the host
#: keeps its own (``hakube.protocol.cached_hash``): a no-op reads the 110 MB binary again only when
#: its size, mtime, ctime or inode changed
LOCAL_HASH_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hakube" / "sha256"
_SHA256 = re.compile(r"[0-9a-f]{64}")


def file_sha256(path: str) -> str:
    """sha256 of a local file, read now (pyinfra's get_file_sha256 keeps one per path for the process)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def cached_local_sha256(path: str, cache_dir: str | os.PathLike | None = None) -> str:
    """sha256 of the local file ``path``: from its cache file when the stat recorded there (size,
    mtime and ctime in ns, inode, and the path itself) is the file's now, else computed and the cache
    written (0600 in a 0700 directory, atomically; best effort: a cache that cannot be written costs
    only the hash). The stat is taken before the hash: a file changed while it is hashed is hashed
    again next time."""
    st = os.stat(path)
    key = f"{st.st_size} {st.st_mtime_ns} {st.st_ctime_ns} {st.st_ino}"
    where = os.path.abspath(path)
    cache = Path(hash_cache_file(where, str(cache_dir or LOCAL_HASH_CACHE)))  # named as the host names its own
    try:
        line = cache.read_text().rstrip("\n")  # "KEY SHA256 PATH"
    except (OSError, UnicodeDecodeError):
        line = ""
    if line.startswith(f"{key} ") and line.endswith(f" {where}"):
        sha = line[len(key) + 1:-len(where) - 1]
        if _SHA256.fullmatch(sha):
            return sha
    sha = file_sha256(path)
    try:
        private_dir(cache.parent)
        write_private(cache, f"{key} {sha} {where}\n".encode())
    except OSError:
        pass
    return sha


@lru_cache(maxsize=8)
def _local_sha256(path: str) -> str:
    return cached_local_sha256(path)  # the 110 MB binary: hashed once per run at most, not once per host

