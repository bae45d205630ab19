"""Step 2 — the audit policy (tutorial: 配置kube-apiserver审计策略), audit.k8s.io/v1."""

from pyinfra.api import deploy

from hakube.ops import managed_file


@deploy("Audit policy")
def apply(plan, now):
    return [managed_file(name=f"Install {f.path}", file=f, now=now) for f in plan.audit]
