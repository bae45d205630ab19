"""Step 2 — the audit policy (tutorial: 配置kube-apiserver审计策略), audit.k8s.io/v1."""

from pyinfra.api import deploy

from hakube.facts import Needs
from hakube.hostfiles import install
from hakube.paths import PATHS
from hakube.render import DesiredFile, render

NAME = "Audit policy"
KEY = "audit"  # this step's files in ``want`` (stable: NAME is only what pyinfra prints)
NEEDS = Needs()


def desired_files(cfg, pki) -> dict[str, DesiredFile]:
    if not cfg.is_master:
        return {}
    rules = list(cfg.cluster.audit_policy_rules)
    return {"policy": DesiredFile(PATHS.audit_policy, render("audit-policy.yaml.j2", rules=rules),
                                  notify=("kube-apiserver",))}


@deploy(NAME)
def apply(cfg, want, facts):
    return install(want[KEY].values(), facts)
