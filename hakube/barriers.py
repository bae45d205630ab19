"""Run-wide barriers: what one host's operation waits for, or refuses on, from the other hosts.

pyinfra plans and runs the hosts concurrently (one greenlet each) and keeps nothing across them;
what must be shared within one run lives here: the validated settings and every master's
snapshot (keyed by the run's inventory, while planning), the roll that stopped and the masters
that left (keyed by its State, while executing). A master outside ``--limit`` is read, never
changed (``reach``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import gevent
from pyinfra import logger
from pyinfra.api import FunctionCommand, QuoteString, StringCommand, operation
from pyinfra.api.arguments import CONNECTOR_ARGUMENT_KEYS

from . import vip as vipmod
from .probes import short_name


@dataclass
class Run:
    """What the hosts of one run share (``run_of`` its inventory or its State)."""

    settings: dict | None = None  # host name -> Settings, validated once
    facts: dict = field(default_factory=dict)  # master name -> HostFacts (or UNREADABLE)
    local: dict | None = None  # this checkout's trust anchors
    local_keys: dict | None = None  # digests of this checkout's Secrets encryption keys
    warned: bool = False  # the rotation warnings were logged
    taking: set = field(default_factory=set)  # masters outside --limit whose snapshot is being taken
    rolls: dict = field(default_factory=dict)  # service -> {"host": name, "done": bool}
    left: set = field(default_factory=set)  # masters whose leave ran to its end


_RUNS: dict[int, Run] = {}  # id(inventory or State) -> Run


def run_of(key) -> Run:
    return _RUNS.setdefault(id(key), Run())


def forget_run(key) -> None:
    _RUNS.pop(id(key), None)


def outside_limit(state, names) -> list[str]:
    """Of ``names`` (hosts of the inventory), those pyinfra's ``--limit`` leaves out of this run."""
    return [n for n in names if not state.is_host_in_limit(state.inventory.get_host(n))]


def reach(h) -> bool:
    """Connect to ``h`` when it is not connected (a master outside ``--limit``: only read, never
    changed); False when it cannot be reached."""
    if not h.connected:
        h.connect(reason="read only: outside --limit", show_errors=False)
    return h.connected


# --- the roll: once one master's roll failed, no later master is touched --------------------------


def roll_guard(state, host, service: str, on_stop: str):
    """Start the roll here unless it failed on an earlier master; then leave this one as it was."""
    rolls = run_of(state).rolls
    last = rolls.get(service)
    if last and not last["done"]:
        host.log_styled(
            f"{service} not touched here: the roll stopped at {last['host']}, where it failed",
            fg="red", log_func=logger.error,
        )
        args = state.get_op_data_for_host(host, host.executing_op_hash).global_arguments
        host.run_shell_command(StringCommand("sh", "-c", QuoteString(on_stop)),
                               **{k: args[k] for k in CONNECTOR_ARGUMENT_KEYS if k in args})
        return False
    rolls[service] = {"host": host.name, "done": False}
    return True


def roll_done(state, host, service: str):
    run_of(state).rolls[service]["done"] = True
    return True


# --- the VIP: exactly one master holds it (hakube.vip) ---------------------------------------------


def _connector_args(h) -> dict:
    """How to run a command on ``h`` outside an operation: its inventory's connector arguments
    (``_sudo`` and the like), as pyinfra gives them to its operations."""
    return {k: h.data.get(k) for k in CONNECTOR_ARGUMENT_KEYS if h.data.get(k) is not None}


def _watch_vip(state, host, vip, interfaces: dict, vrid: int, unicast: bool, addresses: tuple,
               settle: float, deadline: float):
    """Poll every master's interface until exactly one holds the VIP for ``settle`` seconds (or fail
    after ``deadline``), then read keepalived's journal on each for adverts no master sent. ``vip``:
    one address, or every VIP of a dual-stack front (one master must hold them all)."""
    vips = (vip,) if isinstance(vip, str) else tuple(vip)
    masters = {name: state.inventory.get_host(name) for name in interfaces}
    unreachable = [name for name, h in masters.items() if not reach(h)]
    if unreachable:
        host.log_styled(f"could not read {', '.join(unreachable)} (outside --limit, unreachable): who holds the VIP "
                        "there is not checked", fg="yellow", log_func=logger.warning)
        masters = {name: h for name, h in masters.items() if name not in unreachable}
    started, steady_since, held = time.monotonic(), None, {}
    while True:
        for name, h in masters.items():
            # one family per `ip` call (-4 as ever for an IPv4 front; -6 for IPv6 only): no family
            # flag when the front has both
            family = () if len({vipmod.is_ipv6(v) for v in vips}) > 1 else ("-6" if vipmod.is_ipv6(vips[0]) else "-4",)
            ok, out = h.run_shell_command(StringCommand("ip", "-o", *family, "addr", "show", "dev", interfaces[name]),
                                          **_connector_args(h))
            held[name] = tuple(v for v in vips if vipmod.holds(out.stdout, v)) if ok else None
        now = time.monotonic()
        known = {short_name(n): v or () for n, v in held.items()}
        verdict = vipmod.vips_verdict(known, vips, vrid, unicast)
        if verdict is None and None not in held.values():
            steady_since = steady_since or now
            if now - steady_since >= settle:
                break
        else:
            steady_since = None
        if now - started > deadline:
            unknown = [n for n, v in held.items() if v is None]
            detail = f" ({', '.join(unknown)} could not be asked)" if unknown else ""
            host.log_styled(f"{verdict or 'the VIP holder did not settle'}{detail}", fg="red", log_func=logger.error)
            return False
        gevent.sleep(0.5)
    heard = {}
    for name, h in masters.items():
        ok, out = h.run_shell_command(StringCommand("sh", "-c", QuoteString(vipmod.journal_command())),
                                      **_connector_args(h))
        heard[short_name(name)] = vipmod.foreign_adverts(out.stdout_lines if ok else [], addresses)
    verdict = vipmod.foreign_verdict(heard, vrid, " and ".join(vips))
    if verdict:
        host.log_styled(verdict, fg="red", log_func=logger.error)
        return False
    return True



@operation(is_idempotent=False)
def vip_one_holder(vip, interfaces: dict, vrid: int, unicast: bool, addresses: tuple, settle: float,
                   deadline: float):
    """
    Exactly one master holds the VIP, steadily, and no router outside the masters sends adverts with
    our virtual_router_id (``hakube.vip``); otherwise fail, saying which and what to do.

    + vip: the VIP, or a tuple of every VIP of a dual-stack front (one master holds all of them)
    + interfaces: {master host name: its VRRP interface}
    + vrid: virtual_router_id
    + unicast: whether keepalived uses unicast peers (the advice differs)
    + addresses: every master's bind address (their adverts are not foreign)
    + settle: seconds one holder must last
    + deadline: seconds to wait for it
    """
    yield FunctionCommand(_watch_vip, (vip, interfaces, vrid, unicast, addresses, settle, deadline), {})


def _none_failed(state, host, masters: tuple):
    failed = sorted(h.name for h in state.failed_hosts if h.name in masters)
    if failed:
        host.log_styled(f"not going on here: {', '.join(failed)} failed earlier in this run", fg="red",
                        log_func=logger.error)
        return False
    return True


@operation(is_idempotent=False)
def masters_unfailed(masters: tuple):
    """
    Fail this host when one of ``masters`` already failed in this run: pyinfra would carry on with
    the others, and some steps (keepalived's first start) must happen on all masters or on none.

    + masters: the masters' host names
    """
    yield FunctionCommand(_none_failed, (masters,), {})



# --- membership: a master leaves before the others change ------------------------------------------

def _record_left(state, host):
    run_of(state).left.add(host.name)
    return True


def _check_left(state, host, leavers: tuple[str, ...]):
    missing = [name for name in leavers if name not in run_of(state).left]
    if missing:
        host.log_styled(
            f"not changed: {', '.join(missing)} did not leave (its error is above); "
            "this master keeps its certificates, haproxy and keepalived as they were",
            fg="red", log_func=logger.error,
        )
        return False
    return True


@operation(is_idempotent=False)
def leave(commands: tuple[str, ...]):
    """
    Take this master out of the cluster (``tasks.leave``): each of ``commands`` in turn, each one
    remote command that must succeed for the next to run; then record that it left, for
    ``leavers_left`` on the other masters.

    + commands: the shell of the leave (VIP off, drain, stop and disable, remove keys)
    """
    yield from commands
    yield FunctionCommand(_record_left, (), {})


@operation(is_idempotent=False)
def leavers_left(leavers: tuple[str, ...]):
    """
    On a master that stays: fail (and so change nothing more here) unless every one of
    ``leavers`` finished its ``leave`` earlier in this run. pyinfra goes on with the other hosts
    after a failed one; this keeps a remaining master from dropping a peer that still holds the VIP
    or still serves.

    + leavers: names of the masters whose leave is planned in this run
    """
    yield FunctionCommand(_check_left, (tuple(leavers),), {})
