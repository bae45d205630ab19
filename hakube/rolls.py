"""The roll as operations: one master at a time, stop and roll back on the first failure.

The shell of a roll is ``hakube.roll``; the guard that stops it on later masters is a run-wide
barrier (``hakube.barriers``).
"""

from __future__ import annotations

import shlex

from pyinfra.api import FunctionCommand, operation

from . import roll as rollsh
from .barriers import roll_done, roll_guard
from .facts import HostFacts
from .hostfiles import content_changes


@operation(is_idempotent=False)
def roll(service: str, script: str, on_stop: str, guard: bool = True):
    """
    Apply a change to ``service`` on this master (``script``, from ``hakube.roll.rolled_restart``).
    Run with ``_serial=True`` and ``guard``: once one master's roll failed (and was rolled back),
    every later master runs ``on_stop`` instead (its own previous inputs stay or are put back) and
    fails too: the run stops there. Without ``guard`` (nothing serving yet) masters roll at once.

    + service: the systemd unit, e.g. ``kube-apiserver``
    + script: the shell that switches inputs, restarts and waits, or rolls back
    + on_stop: the shell for a master the roll does not reach
    """
    if guard:
        yield FunctionCommand(roll_guard, (service, on_stop), {})
    yield script
    if guard:
        yield FunctionCommand(roll_done, (service,), {})


def reload_roll(service: str, files, facts: HostFacts, host_name: str, timeout: int = 10,
                one_at_a_time: bool = True, name: str | None = None, ready: str | None = None,
                wait_first: str = ":", after: str = ":"):
    """Reload ``service`` (one master at a time) when one of ``files`` changed content; if the
    daemon is not running afterwards (or ``ready``, a shell condition, does not hold within
    ``timeout`` seconds), put its previous files back, reload it on them and stop the run.
    ``wait_first``: shell run just before the reload (e.g. let the VIP holder reload first);
    ``after``: shell run on exit, whatever happened."""
    if not roll_owed(service, files, facts):
        return None
    unit = shlex.quote(service)
    active = f"systemctl is-active -q {unit}"
    script = rollsh.rolled_restart(
        service, host_name, (), apply=f"{{ {wait_first}; }} && systemctl reload-or-restart {unit} && sleep 1",
        ready=f"{active} && {{ {ready}; }}" if ready else active, timeout=timeout,
        # a reload keeps what still serves (keepalived keeps its VRRP state, haproxy its sessions)
        revert=f"systemctl reload-or-restart {unit}", after=after,
    )
    return roll(name=name or f"Reload {service} (config changed)", service=service, script=script,
                on_stop=rollsh.stopped_elsewhere(service), guard=one_at_a_time, _serial=one_at_a_time)


def roll_owed(service: str, files, facts: HostFacts, binary_changes: bool = False) -> bool:
    """Plan a roll only when an input's content changes or an interrupted run still owes one."""
    return binary_changes or facts.owed(service) or any(content_changes(f, facts) for f in files)

