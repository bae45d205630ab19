"""Highly available kube-apiserver: the tutorial's table of contents, done right for today.

``ha_apiserver()`` is the whole deploy for the host pyinfra is planning; the repository's
``deploy.py`` calls it (``pyinfra inventory.py deploy.py``), and ``deploy_ha_apiserver`` is the same
function as a pyinfra ``@deploy`` for a user's own deploy file, between their own operations::

    from hakube import deploy_ha_apiserver

    deploy_ha_apiserver()

All inventory data is validated first (every problem, each naming host and key), then every
master's CA and service-account key are checked against this checkout's, and every key of its
Secrets encryption config must be one this checkout has; nothing runs on any host if one is wrong.
"""

from __future__ import annotations

import copy

from pyinfra import host, inventory
from pyinfra.api import deploy

from .context import masters_facts, settings_for
from .settings import KEYS, REQUIRED
from .tasks import (apiserver, audit, certs, desired_state, encryption, haproxy, host_facts, keepalived, kubeconfig,
                    leave, metrics, packages, rbac)

#: ``data_defaults`` of ``deploy_ha_apiserver``: every key of the settings table that has a default,
#: with that default (a required key has none, so a missing one is still refused). The validation
#: (``hakube.context.settings_for``) applies the same defaults itself, so what pyinfra's deploy data
#: adds to a host's data while it is planned changes nothing it decides.
DATA_DEFAULTS: dict = {k.name: copy.deepcopy(k.default) for k in KEYS if k.default is not REQUIRED}


def ha_apiserver() -> None:
    """The whole deploy for the host being planned, step by step in the tutorial's order."""
    cfg = settings_for(host, inventory)  # raises before any host is touched
    facts = host_facts(host, cfg)  # what the host has: one remote command, asked for by the steps
    peers = masters_facts(cfg, host, inventory, facts, host_facts)  # every master's (read-only outside --limit)
    keepalived.precheck(cfg, facts, peers)  # a new VIP for a running cluster must be free: else refuse now
    pki = certs.ensure_pki(cfg) if cfg.is_member else None
    want = desired_state(cfg, pki)  # every file this host should have, rendered locally, by step
    serving = apiserver.serving(peers)  # anything to protect? then one master at a time

    if cfg.leaving:
        leave.apply(cfg, want, facts)  # -. a master that leaves (`leaving`): VIP off, drain, stop, keys removed; first
    elif cfg.is_master:
        leave.wait(cfg, want, facts, peers)  # -. ... the others change nothing until it has left
        packages.apply(cfg, want, facts)  # 0. keepalived, haproxy, kubectl, curl, ... (installed in the background)
        certs.apply(cfg, want, facts)  # 1. Kubernetes certificates and keys (staged)
        audit.apply(cfg, want, facts)  # 2. audit policy (staged)
        encryption.apply(cfg, want, facts)  # 2b. Secrets encrypted at rest: the keys' config (staged)
        apiserver.apply(cfg, want, facts)  # 3. config, flags, unit, a local binary (staged)
        keepalived.script_user(cfg, facts)  # 5. the user of keepalived's health scripts
        packages.wait(cfg, want, facts)  # 0. ... installed before anything runs them
        metrics.apply(cfg, want, facts)  # -. node exporter's flags, keepalived's notify script, the certificates' metrics
        apiserver.download(cfg, want, facts)  # 3. ... or the binary downloaded with that curl, checked (staged)
        released = keepalived.release(cfg, want, facts, peers)  # 5. a live VIP the apiserver needs: given up first
        apiserver.roll_out(cfg, want, facts, one_at_a_time=serving)  # 3. the roll: start or restart, /readyz
        moving = keepalived.change(cfg, peers)  # a new VIP for a running cluster (or None)
        haproxy.listen_both(cfg, want, facts, moving)  # 6. ... haproxy listens on the new VIP too
        keepalived.apply(cfg, want, facts, peers, one_at_a_time=serving, released=released)  # 5. the VIP
        haproxy.apply(cfg, want, facts, one_at_a_time=serving, moving=moving)  # 6. haproxy in front of every apiserver
        keepalived.verify(cfg, want, facts, peers)  # 5. ... exactly one master holds the VIP
        metrics.seed(cfg, want, facts)  # -. ... and a keepalived that ran before its notify reports its state
        kubeconfig.apply(cfg, want, facts)  # 7. admin kubeconfig (masters)
        kubeconfig.write_local(cfg, pki)  #    ... and for the operator
        rbac.apply(cfg, want, facts)  # 4. RBAC, once the VIP answers
    else:
        apiserver.apply(cfg, want, facts)  # /etc/kubernetes/config on the other nodes


@deploy("HA kube-apiserver", data_defaults=DATA_DEFAULTS)
def deploy_ha_apiserver() -> None:
    """The whole hakube deploy as one pyinfra deploy, to call from your own deploy file.

    It reads the same data keys as ``pyinfra inventory.py deploy.py`` (README: Data keys), from
    the inventory: the data of *every* host is validated when the first host is planned, and a
    missing required key stops the run before any host is touched. Its operations are named
    ``HA kube-apiserver | <step> | ...``; pyinfra orders them between the operations you call
    before and after it.
    """
    ha_apiserver()
