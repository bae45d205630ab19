"""Step 7 — the admin kubeconfig, pointing at the VIP (tutorial: 修改kubeconfig文件).

On every master at /root/.kube/config (0600; kubectl comes from the packages step) and, for the
operator, in the local artifacts directory.
"""

import os
from pathlib import Path

from pyinfra.api import deploy

from hakube.ops import managed_file
from hakube.render import admin_kubeconfig


def write_local(cfg, pki) -> Path:
    """The operator's copy, written on the deploy machine when its content changed."""
    path = Path(cfg.cluster.artifacts_dir) / "admin.kubeconfig"
    content = admin_kubeconfig(cfg, pki)
    if not path.exists() or path.read_bytes() != content:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        # A system:masters key: private from its first byte (created 0600, never chmod-ed later).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.replace(tmp, path)
    return path


@deploy("Admin kubeconfig")
def apply(cfg, plan, now):
    return [managed_file(name=f"Install {f.path}", file=f, now=now) for f in plan.kubeconfig]
