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
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(content)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    return path


@deploy("Admin kubeconfig")
def apply(cfg, plan, now):
    return [managed_file(name=f"Install {f.path}", file=f, now=now) for f in plan.kubeconfig]
