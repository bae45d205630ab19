"""Step 4 — let the apiserver (user "kubernetes") call the kubelet API (tutorial: 授权kubernetes用户访问kubelet).

Runs once per cluster, through the VIP, with the real kubectl and the admin kubeconfig, so it
comes after keepalived, haproxy and the kubeconfig. Idempotent: skipped when the binding exists.
"""

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import server

from hakube.facts import Needs
from hakube.paths import PATHS

NAME = "RBAC: kube-apiserver -> kubelet API"
KEY = "rbac"  # this step's files in ``want`` (stable: NAME is only what pyinfra prints)
BINDING = "kube-apiserver:kubelet-apis"  # the tutorial's binding
OBJECT = f"clusterrolebinding/{BINDING}"
NEEDS = Needs(kube_objects=(OBJECT,))


def desired_files(cfg, pki) -> dict:
    return {}


@deploy(NAME)
def apply(cfg, want, facts):
    if OBJECT in facts.kube_objects:
        host.noop(f"clusterrolebinding {BINDING} exists")
        return
    kubectl = f"kubectl --kubeconfig {PATHS.kubeconfig}"
    server.shell(
        name=f"Create clusterrolebinding {BINDING} (through the VIP)",
        commands=[
            # The VIP may still be settling right after keepalived and haproxy started.
            f"for i in $(seq 1 60); do {kubectl} get --raw /readyz >/dev/null 2>&1 && break; sleep 1; done",
            f"{kubectl} create clusterrolebinding {BINDING} --clusterrole=system:kubelet-api-admin "
            f"--user=kubernetes --dry-run=client -o yaml | {kubectl} apply -f -",
        ],
        _run_once=True,
    )
