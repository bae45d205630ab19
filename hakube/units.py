"""Units on a host: started and enabled from the snapshot, and a plain reload when an input changed."""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import operation

from .facts import HostFacts
from .hostfiles import content_changes
from .roll import pending_marker


def ensure_running(unit: str, facts: HostFacts, name: str):
    """``unit_running`` only when the snapshot says the unit is not enabled and active."""
    if facts.running(unit):
        host.noop(f"{unit} is enabled and running")
        return None
    return unit_running(name=name, unit=unit, facts=facts)


@operation()
def unit_running(unit: str, facts: HostFacts):
    """
    Enable and start a systemd unit (one its step declared in ``Needs.units``), judged from the snapshot.

    + unit: e.g. ``haproxy.service``
    """
    active, enabled = facts.unit_state(unit)
    q = shlex.quote(unit)
    if enabled != "enabled":
        # A package's postinst enables its unit after the snapshot (keepalived, haproxy, the node
        # exporter on a first run): enabling reloads systemd (~1 s), so only a unit still disabled.
        start = f" && systemctl start {q}" if active != "active" else ""
        yield f"{{ systemctl is-enabled --quiet {q} || systemctl enable {q}; }}{start}"
    elif active != "active":
        yield f"systemctl start {q}"
    else:
        host.noop(f"{unit} is enabled and running")


def handler(handler: str, command: str, files, facts: HostFacts, **op_kwargs):
    """Run ``command`` (a reload) when the content of one of ``files`` (``DesiredFile``) changes.

    Planned only when a file's content will change, or when a marker left by an earlier,
    interrupted run says the handler is still owed (so a converged ``--dry`` lists nothing, and a
    mode-only repair lists no reload it does not do). At execution the command runs only if the
    marker is there, and removes it once it succeeded.
    """
    from pyinfra.operations import server

    marker = pending_marker(handler)
    if not facts.owed(handler) and not any(content_changes(f, facts) for f in files):
        return None
    return server.shell(
        commands=[f"if [ -e {marker} ]; then {{ {command} ; }} && rm -f {marker}; fi"], **op_kwargs
    )

