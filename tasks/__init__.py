"""One module per step of the tutorial. Each declares what it owns and applies it:

* ``NAME`` — the step's name in pyinfra's output; ``KEY`` — its files' key in ``want`` (stable);
* ``NEEDS`` — what it must know about a host besides its files (``hakube.facts.Needs``);
* ``desired_files(cfg, pki)`` — every file it manages on that host, by role;
* ``apply(cfg, want, facts)`` — a pyinfra deploy: its operations, decided from the host's facts.

``deploy.py`` calls them in the tutorial's order; the host snapshot is assembled here from what
the steps declare, so nothing about a step lives in a central list elsewhere.
"""

from __future__ import annotations

from hakube.facts import HostFacts, Needs, snapshot
from hakube.paths import PATHS
from hakube.roll import pending_marker

from . import apiserver, audit, certs, encryption, haproxy, keepalived, kubeconfig, leave, metrics, packages, rbac

STEPS = (packages, certs, audit, encryption, apiserver, keepalived, haproxy, kubeconfig, rbac, metrics)


def steps_for(cfg) -> tuple:
    """A master runs every step; a leaving master only ``leave``; any other host only gets
    /etc/kubernetes/config (apiserver step)."""
    if cfg.leaving:
        return (leave,)
    return STEPS if cfg.is_master else (apiserver,)


def desired_state(cfg, pki) -> dict[str, dict]:
    """{step KEY: {role: DesiredFile}}: every file ``cfg.host`` should have, rendered locally."""
    return {step.KEY: step.desired_files(cfg, pki) for step in steps_for(cfg)}


def managed_paths(want: dict[str, dict]) -> tuple[str, ...]:
    """Every file of ``want`` and the pending marker of every handler they notify."""
    files = [f for step in want.values() for f in step.values()]
    return tuple(sorted({f.path for f in files} | {pending_marker(h) for f in files for h in f.notify}))


def host_facts(host, cfg) -> HostFacts:
    """The host's snapshot (one remote command): what every step of this host declared it needs.
    Which paths a step manages is known before any PKI exists (``certs.placeholder``)."""
    needs = Needs()
    for step in steps_for(cfg):
        needs |= step.NEEDS
    paths = managed_paths(desired_state(cfg, certs.placeholder() if cfg.is_member else None))
    return snapshot(host, paths, needs, kubeconfig=PATHS.kubeconfig)
