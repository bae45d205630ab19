"""Step 7 — the admin kubeconfig, pointing at the VIP (tutorial: 修改kubeconfig文件).

On every master at /root/.kube/config (0600; kubectl comes from the packages step) and, for the
operator, in the local artifacts directory.
"""

import base64
from pathlib import Path

from pyinfra.api import deploy

from hakube.facts import Needs
from hakube.hostfiles import install
from hakube.paths import PATHS
from hakube.private import write_private
from hakube.render import DesiredFile, render

NAME = "Admin kubeconfig"
KEY = "kubeconfig"  # this step's files in ``want`` (stable: NAME is only what pyinfra prints)
NEEDS = Needs()


def admin_kubeconfig(cfg, p) -> bytes:
    admin = p.certs["admin"]
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return render("kubeconfig.j2", c=cfg.cluster, ca_b64=b64(p.ca_pem), cert_b64=b64(admin.cert_pem),
                  key_b64=b64(admin.key_pem))


def desired_files(cfg, p) -> dict[str, DesiredFile]:
    if not cfg.is_master:
        return {}
    return {"kubeconfig": DesiredFile(PATHS.kubeconfig, admin_kubeconfig(cfg, p), mode="0600", secret=True)}


def write_local(cfg, p) -> Path:
    """The operator's copy, written on the deploy machine when its content changed."""
    path = Path(cfg.cluster.artifacts_dir) / "admin.kubeconfig"
    content = admin_kubeconfig(cfg, p)
    if not path.exists() or path.read_bytes() != content:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(path, content)  # a system:masters key
    return path


@deploy(NAME)
def apply(cfg, want, facts):
    return install(want[KEY].values(), facts)
