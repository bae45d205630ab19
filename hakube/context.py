"""Glue between pyinfra's planning and the pure logic: validated settings (the only reader of
host.data) and every master's facts, with the trust check across them before any host is touched.
What the run's hosts share is kept in ``hakube.barriers``."""

from __future__ import annotations

import time

import gevent
from pyinfra import logger
from pyinfra.api.exceptions import PyinfraError

from . import encryption, trust
from .barriers import outside_limit, reach, run_of
from .paths import PATHS
from .settings import InventoryError, Settings, inventory_warnings, load_inventory

UNREADABLE = object()  # the snapshot of a master outside --limit that could not be reached

BARRIER_TIMEOUT = 300  # seconds a master's planning waits for the other masters' snapshots


def settings_for(host, inventory) -> Settings:
    """Settings of ``host``, after validating the data of *every* host in ``inventory`` once.

    Any problem anywhere stops the whole run here, while pyinfra is still planning: no operation
    has been executed on any host yet. Warnings (e.g. a deprecated extra flag) are logged once.
    """
    return inventory_settings(inventory)[host.name]


def inventory_settings(inventory) -> dict[str, Settings]:
    """``{host name: Settings}`` of a pyinfra inventory, validated once (``PyinfraError`` listing
    every problem); ``settings_for`` and ``make check`` (``hakube.check``) read it."""
    run = run_of(inventory)
    if run.settings is None:
        try:
            run.settings = load_inventory((h.name, h.data.dict(), h.groups) for h in inventory)
        except InventoryError as e:
            raise PyinfraError(str(e)) from None
        for warning in inventory_warnings(run.settings):
            logger.warning(warning)
    return run.settings


def _snapshot_outside(cfg: Settings, host, names, seen: dict, taking: set, snapshot) -> None:
    """Masters that ``--limit`` leaves out are read, not changed: the first limited master to get
    here takes their snapshots (``snapshot(host, settings)``) so that every check that needs them
    sees them. One that cannot be reached is said so, and left out."""
    for name in names:
        if name in taking:
            continue
        taking.add(name)
        other = host.state.inventory.get_host(name)
        try:
            ok = reach(other)
        except Exception as e:  # noqa: BLE001 - any connector's failure: say what is not checked
            ok, why = False, str(e)
        else:
            why = "cannot connect"
        if not ok:
            logger.warning(f"{name} (outside --limit) could not be read ({why}): its CA, service-account key, "
                           "Secrets keys, VIP and apiserver are not checked in this run")
            seen[name] = UNREADABLE
            continue
        seen[name] = snapshot(other, inventory_settings(host.state.inventory)[name])


def masters_facts(cfg: Settings, host, inventory, facts, snapshot=None) -> dict:
    """Every reachable master's facts, once each has its snapshot; refuse the run unless every
    master's CA, etcd CA and service-account key are this checkout's (``hakube.trust``) and every
    key of its live Secrets encryption config is one this checkout has (``hakube.encryption``).

    pyinfra plans the hosts concurrently (one greenlet each); every master records its facts and
    waits until every reachable master has (a leaving one included), so the refusal names them all
    and every master's plan sees the same cluster. Planning comes before any execution: a refusal here leaves every
    host as it was. Other hosts (nodes) get ``{}``.

    Masters that ``--limit`` leaves out are read (``snapshot(host, settings)``, read-only), so the
    same checks cover them; one that cannot be read is named in a warning and left out.
    """
    if not cfg.is_master:
        return {}
    c = cfg.cluster
    run = run_of(inventory)
    seen = run.facts
    seen[host.name] = facts
    active = {h.name for h in host.state.inventory.get_active_hosts()}
    every = [m.name for m in (*c.masters, *c.leaving)]
    outside = outside_limit(host.state, every)
    if outside and snapshot is not None:
        _snapshot_outside(cfg, host, outside, seen, run.taking, snapshot)
        active |= set(outside)  # another limited master may still be taking it: wait for it below
    # A leaving master is asked too: its CA is the cluster's until it has left (then it has none),
    # and the remaining masters wait for its leave (tasks.leave) only if its facts say one is due.
    masters = [m for m in every if m in active]
    deadline = time.monotonic() + BARRIER_TIMEOUT
    while not all(m in seen for m in masters):
        if time.monotonic() > deadline:
            missing = ", ".join(m for m in masters if m not in seen)
            raise PyinfraError(f"refusing to run: no snapshot of {missing} to check its CA against")
        gevent.sleep(0.01)
    peers = {m: seen[m] for m in masters if seen[m] is not UNREADABLE}
    allow = {a.kind: getattr(c, a.replace_key) for a in trust.ANCHORS}
    anchors = {m: trust.host_anchors(f.files) for m, f in peers.items()}
    if run.local is None:  # read once per run, not once per master
        run.local = trust.local_anchors(c)
    lines = trust.problems(run.local, anchors, allow, c.pki_dir)
    if lines:
        raise PyinfraError(trust.refusal(lines, c.pki_dir))
    # Secrets at rest: every key of a master's live config must be one this checkout has (by the
    # sha256 of its secret; read before this run makes any key), under the same provider. Turning
    # encryption off over a live config is refused too: the apiservers would no longer read it.
    if run.local_keys is None:
        run.local_keys = encryption.local_digests(c.pki_dir)
    live = {m: f.secret_digests.get(PATHS.encryption_config) for m, f in peers.items()}
    lines = encryption.check_problems(c.secrets_encryption, c.secrets_encryption_provider, run.local_keys,
                                      live, PATHS.encryption_config, c.pki_dir)
    if lines:
        raise PyinfraError(encryption.refusal(lines, c.pki_dir))
    if c.secrets_encryption and not run.warned:
        run.warned = True
        serving = any(f.active("kube-apiserver.service") for f in peers.values())
        for warning in encryption.rotation_warnings(c.masters[0].name, c.secrets_encryption_keys, live, serving):
            logger.warning(warning)
    return peers
