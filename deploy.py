"""Highly available kube-apiserver: the tutorial's table of contents, done right for today.

    pyinfra inventory.py deploy.py            apply
    pyinfra inventory.py deploy.py --dry --diff   show what would change, touch nothing

All inventory data is validated first (every problem, each naming host and key); nothing runs on
any host if one is wrong.
"""

from pyinfra import host, inventory

from hakube.context import settings_for
from hakube.render import ensure_pki, plan
from tasks import apiserver, audit, certs, haproxy, keepalived, kubeconfig, rbac

cfg = settings_for(host, inventory)  # raises before any host is touched
pki = ensure_pki(cfg) if cfg.is_master else None
files = plan(cfg, pki)

if cfg.is_master:
    cert_ops = certs.apply(files)  # 1. Kubernetes certificates and keys
    audit_ops = audit.apply(files)  # 2. audit policy
    apiserver.apply(cfg, files, restart_on=[*cert_ops, *audit_ops])  # 3. config, flags, unit, start
    keepalived.apply(cfg, files)  # 5. keepalived: the VIP
    haproxy.apply(cfg, files)  # 6. haproxy in front of every apiserver
    kubeconfig.apply(cfg, files)  # 7. admin kubeconfig (masters)
    kubeconfig.write_local(cfg, pki)  #    ... and for the operator
    rbac.apply(cfg)  # 4. RBAC, once the VIP answers
else:
    apiserver.apply(cfg, files)  # /etc/kubernetes/config on the other nodes
