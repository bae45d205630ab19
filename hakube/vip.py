"""The VIP belongs to exactly one master: what the deploy checks before and after keepalived runs.

* Before keepalived first starts (it runs on no master yet), nothing may answer on the VIP: an
  ARP duplicate-address probe (``arping -D``) that gets a reply means the address belongs to
  another machine, and keepalived is not started anywhere.
* After keepalived and haproxy are in place, exactly one master holds the VIP, steadily. Two
  holders is a split brain: the masters do not hear each other's VRRP adverts (multicast dropped
  between them: ``vrrp_unicast``). None means VRRP elected no master (or another router won).
* A VRRP router outside the masters that sends adverts with our ``virtual_router_id`` shows in
  keepalived's journal: adverts with another password, for other addresses, or from an address
  that is no master's. It is reported, naming the VRID and, where keepalived logs it, the sender.

A VIP changed on a running cluster (``VipChange``: keepalived runs and a master's live config
carries another address) gets the same scrutiny before it goes live: no master may hold the new
address by any other means (refused while planning), and every master probes it with the same
ARP duplicate-address check while the old VIP still serves. Then haproxy listens on both, every
master's keepalived switches at once, and each master waits until the new VIP serves ``/readyz``
through haproxy with exactly one holder (``switch_ready``); otherwise keepalived's previous config
is put back and reloaded (the old VIP returns) and the run stops. A live VIP that is an address the
cluster needs (an etcd server's, a master's) is given up before the apiserver's roll waits on it.

Pure: shell text and verdicts; the operations live in ``tasks/keepalived.py`` and ``hakube.barriers``.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass
from typing import Iterable, Mapping

from .probes import readyz_ok, readyz_url, short_name

#: keepalived's words for an advert that no master sent (2.2.7 and 2.3.x):
#: "(kube_api) received an invalid passwd[ from 10.0.0.9]!",
#: "(kube_api) ip address associated with VRID 80 not present in [MASTER ]advert[ from 10.0.0.9]: ...",
#: "(kube_api) Master received advert from 10.0.0.9 with higher priority 200, ours 110"
FOREIGN_ADVERT = r"invalid passwd|not present in (MASTER )?advert|advert from [0-9a-fA-F.:]+ with (higher|lower|same) priority"
#: the sender keepalived names: an IPv4 address, or an IPv6 one (an IPv6 instance, VRRPv3)
_SOURCE = re.compile(r"from ([0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9a-fA-F]*:[0-9a-fA-F:]*[0-9a-fA-F]|::)")
#: seconds of keepalived's journal read for foreign adverts (a router that is MASTER sends one per advert_int)
JOURNAL_WINDOW = 30


def is_ipv6(address: str) -> bool:
    return ":" in address


def ip_show(address: str, interface: str | None = None) -> str:
    """``ip -o -4 addr show [dev IF]`` for an IPv4 ``address``, ``-6`` for an IPv6 one: the addresses
    of the family to look ``address`` up in (``ip -o`` prints ADDRESS/PREFIX as its 4th word)."""
    dev = f" dev {shlex.quote(interface)}" if interface else ""
    return f"ip -o -{6 if is_ipv6(address) else 4} addr show{dev}"


#: IPv6 has no ARP: a VIP's owner answers ICMPv6 neighbour solicitations, which ``ndisc6`` (package
#: ndisc6) sends from user space; ``-q`` prints the link-layer address of each answer and nothing
#: else (nothing when none came), ``-m`` waits for every answer, ``-n`` never resolves a name.
NDISC6 = "ndisc6 -q -m -n -r 2 -w 1000"


def _ndisc_probe(vip: str, interface: str, report: bool) -> str:
    """``dad_probe`` for an IPv6 VIP: a neighbour solicitation (ndisc6) instead of ARP."""
    q_vip, q_if = shlex.quote(vip), shlex.quote(interface)
    missing = f"ndisc6 could not probe {vip}: ndisc6 is not installed"
    ask = f"out=$({NDISC6} {q_vip} {q_if} 2>/dev/null | head -1); "
    if report:
        return (f'if ! command -v ndisc6 >/dev/null; then echo "{missing}"; else {ask}'
                f'if [ -n "$out" ]; then echo "reply from $out"; fi; fi; true')
    return (f'if ! command -v ndisc6 >/dev/null; then echo "{missing} on {interface}" >&2; exit 1; fi; {ask}'
            f'if [ -n "$out" ]; then echo "refusing to start keepalived: the VIP {vip} already answers on {interface} '
            f"(reply from $out) while keepalived runs on no master: the address belongs to another machine. "
            f'Choose a free address for the VIP, or free it." >&2; exit 1; fi')


def neighbours(vip: str, interface: str) -> str:
    """Shell printing how many other machines answer for ``vip`` on ``interface`` (ARP for IPv4,
    a neighbour solicitation for IPv6)."""
    q_vip, q_if = shlex.quote(vip), shlex.quote(interface)
    if is_ipv6(vip):
        return f"{NDISC6} {q_vip} {q_if} 2>/dev/null | sort -u | wc -l"
    return (f"arping -c 2 -w 3 -I {q_if} {q_vip} 2>/dev/null | grep -io 'reply from [^ ]* \\[[^]]*\\]' | "
            "sort -u | wc -l")


def dad_probe(vip: str, interface: str, report: bool = False) -> str:
    """Refuse (exit 1) when something answers ARP for ``vip`` on ``interface``. iputils' ``arping -D``
    (duplicate address detection) exits 0 when no reply came, 1 when one did. ``report``: never
    fail, print what answered (nothing when nothing did), for a check made while planning.
    An IPv6 ``vip``: the same with a neighbour solicitation (``ndisc6``)."""
    if is_ipv6(vip):
        return _ndisc_probe(vip, interface, report)
    q_vip, q_if = shlex.quote(vip), shlex.quote(interface)
    reply = "$(echo \"$out\" | grep -io 'reply from.*' | head -1)"
    if report:
        return (f"out=$(arping -D -c 2 -w 3 -I {q_if} {q_vip} 2>&1); rc=$?; "
                f'if [ $rc -eq 1 ]; then echo "{reply}"; '
                f'elif [ $rc -ne 0 ]; then echo "arping could not probe {vip}: $out"; fi; true')
    return (
        f"out=$(arping -D -c 2 -w 3 -I {q_if} {q_vip} 2>&1); rc=$?; "
        f'if [ $rc -eq 1 ]; then echo "refusing to start keepalived: the VIP {vip} already answers on {interface} '
        f"({reply}) while keepalived runs on no master: the address "
        f'belongs to another machine. Choose a free address for vip, or free it." >&2; exit 1; '
        f'elif [ $rc -ne 0 ]; then echo "arping could not probe {vip} on {interface}: $out" >&2; exit 1; fi'
    )


def switch_ready(vip: str, interface: str, port: int, ca: str, cert: str, settle: float) -> str:
    """Shell that succeeds when ``vip`` serves ``/readyz`` through haproxy (TLS verified against
    ``ca``, the VIP an IP SAN) and exactly one machine holds it, twice ``settle`` seconds apart: seen
    from this master, it holds the VIP and nobody else answers ARP for it, or one other machine does."""
    q_vip = shlex.quote(vip)
    one = (f"{readyz_ok(readyz_url(vip, port), ca, cert)} && "
           f"n=$({neighbours(vip, interface)}) && "
           f"if {ip_show(vip, interface)} | awk '{{print $4}}' | cut -d/ -f1 | grep -qxF {q_vip}; "
           'then [ "$n" -eq 0 ]; else [ "$n" -eq 1 ]; fi')
    return f"{{ {one}; }} && sleep {settle:g} && {{ {one}; }}"


def holder_first(vips: Iterable[str], interface: str, delay: float = 1.0) -> str:
    """Shell: a master that holds none of ``vips`` waits ``delay`` seconds (the holder goes first)."""
    vips = tuple(vips)
    pattern = "|".join(re.escape(v) for v in vips)
    show = "ip -o addr show" if len({is_ipv6(v) for v in vips}) > 1 else ip_show(vips[0])
    return (f"{show} dev {shlex.quote(interface)} | grep -Eq {shlex.quote(f' ({pattern})/')} "
            f"|| sleep {delay:g}")


def switch_in_place(vip: str | tuple[str, ...], interface: str, unit: str, advert_int: float,
                    seconds: float) -> tuple[str, str]:
    """Shell (before, after) around every master's reload for a switch between multicast and unicast,
    so that the VIP stays on its holder and its sessions live on.

    keepalived re-inits its VRRP instance on such a reload ("Entering BACKUP STATE (init)") and
    gives up the VIP with a priority-0 advert: a backup still on the old mode took the VIP over at
    once and reset every connection (seen in the lab), and for about three advert intervals nobody
    held it. So the masters that do not hold the VIP stop keepalived first; the holder adds the VIP
    to ``lo`` as a /32 (it stays a local address, so its sessions live on; a detached timer removes
    it after ``seconds`` whatever happens to the run), waits a second, and reloads: alone, it is
    MASTER again within 3 advert intervals and skew. The others start on the new config after
    that (4 intervals and 2 s), hear its adverts and stay backups. After, on every exit: the copy
    on ``lo`` goes, and a keepalived still stopped (a run cut short) is started. The deploy's
    snapshot reads every interface: a copy left behind would show as a second holder, never
    silently. A dual-stack front (``vip`` a tuple, the VIP first): every VIP goes onto ``lo`` alike
    (an IPv6 one as a /128); the holder is the master that holds the first."""
    vips = (vip,) if isinstance(vip, str) else tuple(vip)
    vip = vips[0]
    host = lambda v: f"{shlex.quote(v)}/{128 if is_ipv6(v) else 32}"  # noqa: E731
    drop = "; ".join(f"ip addr del {host(v)} dev lo" for v in vips)
    add = "".join(f"ip addr add {host(v)} dev lo 2>/dev/null; " for v in vips)
    before = (f"if {ip_show(vip, interface)} | grep -q {shlex.quote(f' {vip}/')}; then "
              f"{add}"
              f"setsid -f sh -c {shlex.quote(f'sleep {seconds:g}; {drop}')} >/dev/null 2>&1 </dev/null; sleep 1; "
              f"else systemctl stop {shlex.quote(unit)}; sleep {4 * advert_int + 2:g}; fi")
    # on every exit: no copy left on lo, and no master left with keepalived stopped (a run cut
    # short after the others stopped: they start on the new config, as the roll would have)
    after = f"{'; '.join(f'{d} 2>/dev/null' for d in drop.split('; '))}; systemctl is-active -q {shlex.quote(unit)} || systemctl start {shlex.quote(unit)}; true"
    return before, after


@dataclass(frozen=True)
class VipChange:
    """A VIP change on a running cluster: the addresses keepalived serves now (``old``) and the new one."""

    new: str
    old: tuple[str, ...]


def change_of(vip: str, peers: Mapping[str, object], unit: str = "keepalived.service") -> VipChange | None:
    """The VIP change this run makes, judged from every master's snapshot (``HostFacts``): keepalived
    runs somewhere and a master's live config carries an address other than ``vip``. None otherwise
    (also on a first install: nothing serves a VIP yet). ``vip`` may be every VIP of a dual-stack
    front (the primary first): none of them is an old address."""
    vips = (vip,) if isinstance(vip, str) else tuple(vip)
    running = any(f.active(unit) for f in peers.values())
    old = tuple(dict.fromkeys(a for f in peers.values() for a in f.live_vips if a not in vips))
    return VipChange(vips[0], old) if running and old else None


def mode_switch(unicast: bool, peers: Mapping[str, object], unit: str = "keepalived.service") -> bool:
    """Whether this run switches VRRP between multicast and unicast on a running cluster: a master
    whose live config sends its adverts the other way than ``unicast`` says. Masters that reloaded
    one at a time would not hear each other for a while (and the backup would take the VIP too)."""
    want = "unicast" if unicast else "multicast"
    running = any(f.active(unit) for f in peers.values())
    return running and any(f.live_vrrp_mode and f.live_vrrp_mode != want for f in peers.values())


def version_switch(version: int, peers: Mapping[str, object], unit: str = "keepalived.service") -> bool:
    """Whether this run switches the VRRP version on a running cluster: a master whose live config
    speaks another version than ``version``. A VRRPv2 and a VRRPv3 instance do not hear each other
    (each would hold the VIP), so every master switches at once, as for ``mode_switch``."""
    running = any(f.units.get(unit, ("", ""))[0] == "active" for f in peers.values())
    return running and any(getattr(f, "live_vrrp_version", 0) not in (0, version) for f in peers.values())


def held_by_hand(vip: str, peers: Mapping[str, object]) -> list[str]:
    """Masters that hold ``vip`` though their keepalived config does not carry it (and no reload of a
    changed config is owed there): an address added by hand, or by something else."""
    return [short_name(name) for name, f in peers.items()
            if vip in f.addresses and vip not in f.live_vips and not f.owed("keepalived")]


def held_by_keepalived(vip: str, peers: Mapping[str, object]) -> bool:
    return any(vip in f.addresses and (vip in f.live_vips or f.owed("keepalived")) for f in peers.values())


def harmful(live_vips: Iterable[str], needed: Iterable[str]) -> list[str]:
    """Of a master's live VIPs, those that are addresses the cluster needs (etcd's, a master's)."""
    needed = set(needed)
    return [a for a in live_vips if a in needed]


def holds(ip_addr_output: str, vip: str) -> bool:
    """Does ``ip -o addr show`` output (``-4`` or ``-6``) carry ``vip``?"""
    return any(word.split("/")[0] == vip for word in ip_addr_output.split())


def vips_verdict(held: Mapping[str, tuple], vips: tuple[str, ...], vrid: int, unicast: bool) -> str | None:
    """``holders_verdict`` for every VIP of the front (``held``: master -> the VIPs it holds). One
    holder means one master holds every VIP (a dual-stack front's two move together); a master that
    holds some of them only is named."""
    verdict = holders_verdict({m: bool(h) for m, h in held.items()}, " and ".join(vips), vrid, unicast)
    if verdict is not None:
        return verdict
    holder, got = next((m, h) for m, h in held.items() if h)
    missing = [v for v in vips if v not in got]
    if missing:
        return (f"{holder} holds {', '.join(got)} but not {', '.join(missing)}: the VIPs of the front are "
                f"apart (virtual_router_id {vrid}); keepalived adds them together, see `journalctl -u keepalived`")
    return None


def holders_verdict(held: Mapping[str, bool], vip: str, vrid: int, unicast: bool) -> str | None:
    """None when exactly one master holds the VIP; else what is wrong and what to do."""
    holders = [m for m, h in held.items() if h]
    if len(holders) == 1:
        return None
    if not holders:
        return (f"no master holds the VIP {vip} (virtual_router_id {vrid}): keepalived elected no master, or a "
                "router outside the masters with a higher priority took the VRID over; see `journalctl -u keepalived`")
    fix = ("allow VRRP (IP protocol 112) between the masters' bind addresses" if unicast else
           "multicast to 224.0.0.18 is probably dropped between them: set `vrrp_unicast: True` in the masters' "
           "data (keepalived then sends to each peer), or allow multicast VRRP (IP protocol 112) on that network")
    return (f"{', '.join(holders)} all hold the VIP {vip} (virtual_router_id {vrid}): a split brain, the masters do "
            f"not hear each other's VRRP adverts; {fix}")


def journal_command(window: int = JOURNAL_WINDOW) -> str:
    """keepalived's journal lines of the last ``window`` seconds that tell of adverts no master sent."""
    return (f"journalctl -u keepalived.service -o cat --no-pager --since -{int(window)}s 2>/dev/null | "
            f"grep -E {shlex.quote(FOREIGN_ADVERT)} | tail -n 20 || true")


def foreign_adverts(lines: Iterable[str], master_addresses: Iterable[str]) -> list[str]:
    """The senders of foreign adverts in ``lines``: an address that is no master's (an advert from a
    master's address is never foreign), or "an unnamed router" when keepalived did not log the sender (an invalid password or other addresses can
    only come from outside: every master has the same)."""
    masters = set(master_addresses)
    found: dict[str, None] = {}
    for line in lines:
        if not re.search(FOREIGN_ADVERT, line):
            continue
        match = _SOURCE.search(line)
        if match and (match.group(1) in masters or _canonical(match.group(1)) in masters):
            # Ours, whatever it says: an election among the masters, or a master that carried
            # another VIP (or password) a moment ago, in the middle of a change.
            continue
        found.setdefault(match.group(1) if match else "an unnamed router")
    return list(found)


def _canonical(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address


def foreign_verdict(senders_by_master: Mapping[str, list[str]], vrid: int, vip: str) -> str | None:
    heard = {s for senders in senders_by_master.values() for s in senders}
    if not heard:
        return None
    who = ", ".join(sorted(heard))
    by = ", ".join(m for m, s in senders_by_master.items() if s)
    return (f"another VRRP router uses virtual_router_id {vrid} on the masters' network ({who}; heard by {by}): "
            f"it can take the VIP {vip} away. Choose a virtual_router_id nobody else uses on that LAN "
            "(or reconfigure that router)")
