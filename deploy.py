"""Highly available kube-apiserver: the tutorial's table of contents, done right for today.

    pyinfra inventory.py deploy.py            apply
    pyinfra inventory.py deploy.py --dry --diff   show what would change, touch nothing

All inventory data is validated first (every problem, each naming host and key), then every
master's CA and service-account key are checked against this checkout's; nothing runs on any
host if one is wrong.
"""

from pyinfra import host, inventory

from hakube.context import check_trust, settings_for
from hakube.ops import snapshot
from hakube.render import ensure_pki, managed_paths, plan
from tasks import apiserver, audit, certs, haproxy, keepalived, kubeconfig, packages, rbac

cfg = settings_for(host, inventory)  # raises before any host is touched
now = snapshot(managed_paths(cfg))  # what the host has: one remote command
if cfg.is_master:
    check_trust(cfg, host, inventory, now)  # the masters' CA is the truth: refuse, never replace
pki = ensure_pki(cfg) if cfg.is_master else None
files = plan(cfg, pki)  # every file this host should have, rendered locally

if cfg.is_master:
    packages.apply(now)  # 0. keepalived, haproxy, kubectl from the distribution
    certs.apply(files, now)  # 1. Kubernetes certificates and keys
    audit.apply(files, now)  # 2. audit policy
    apiserver.apply(cfg, files, now, inputs=[*files.certs, *files.audit])  # 3. config, flags, unit, roll
    keepalived.apply(cfg, files, now)  # 5. keepalived: the VIP
    haproxy.apply(cfg, files, now)  # 6. haproxy in front of every apiserver
    kubeconfig.apply(cfg, files, now)  # 7. admin kubeconfig (masters)
    kubeconfig.write_local(cfg, pki)  #    ... and for the operator
    rbac.apply(cfg, now)  # 4. RBAC, once the VIP answers
else:
    apiserver.apply(cfg, files, now)  # /etc/kubernetes/config on the other nodes
