"""The one way the deploy machine writes a private file (a key, a kubeconfig with a key in it).

Private from its first byte: the bytes go into a 0600 temporary file in the same directory, which
gets its final mode and is flushed to disk before it takes its name, so no one else reads a secret
even for an instant and no reader sees half a file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

DIR_MODE = 0o700
KEY_MODE = 0o600


def private_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and parents) if needed and force mode 0700."""
    folder = Path(path)
    folder.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(folder, DIR_MODE)
    return folder


def write_private(path: str | os.PathLike, data: bytes, mode: int = KEY_MODE, *, replace: bool = True) -> None:
    """Write ``data`` to ``path`` atomically with ``mode``. ``replace=False``: never overwrite
    (``os.link``): two writers racing for one name both end up reading the one that won."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # 0600
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # made meanwhile: that one stays
        os.unlink(tmp)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
