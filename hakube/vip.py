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

Pure: shell text and verdicts; the operations live in ``tasks/keepalived.py`` and ``hakube.ops``.
"""

from __future__ import annotations

import re
import shlex
from typing import Iterable, Mapping

#: keepalived's words for an advert that no master sent (2.2.7 and 2.3.x):
#: "(kube_api) received an invalid passwd[ from 10.0.0.9]!",
#: "(kube_api) ip address associated with VRID 80 not present in [MASTER ]advert[ from 10.0.0.9]: ...",
#: "(kube_api) Master received advert from 10.0.0.9 with higher priority 200, ours 110"
FOREIGN_ADVERT = r"invalid passwd|not present in (MASTER )?advert|advert from [0-9.]+ with (higher|lower|same) priority"
_SOURCE = re.compile(r"from ([0-9]{1,3}(?:\.[0-9]{1,3}){3})")
#: seconds of keepalived's journal read for foreign adverts (a router that is MASTER sends one per advert_int)
JOURNAL_WINDOW = 30


def dad_probe(vip: str, interface: str) -> str:
    """Refuse (exit 1) when something answers ARP for ``vip`` on ``interface``. iputils' ``arping -D``
    (duplicate address detection) exits 0 when no reply came, 1 when one did."""
    q_vip, q_if = shlex.quote(vip), shlex.quote(interface)
    return (
        f"out=$(arping -D -c 2 -w 3 -I {q_if} {q_vip} 2>&1); rc=$?; "
        f'if [ $rc -eq 1 ]; then echo "refusing to start keepalived: the VIP {vip} already answers on {interface} '
        f"($(echo \"$out\" | grep -io 'reply from.*' | head -1)) while keepalived runs on no master: the address "
        f'belongs to another machine. Choose a free address for vip, or free it." >&2; exit 1; '
        f'elif [ $rc -ne 0 ]; then echo "arping could not probe {vip} on {interface}: $out" >&2; exit 1; fi'
    )


def holds(ip_addr_output: str, vip: str) -> bool:
    """Does ``ip -o -4 addr show`` output carry ``vip``?"""
    return any(word.split("/")[0] == vip for word in ip_addr_output.split())


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
    """The senders of foreign adverts in ``lines``: an address that is no master's, or "an unnamed
    router" when keepalived did not log the sender (an invalid password or other addresses can
    only come from outside: every master has the same)."""
    masters = set(master_addresses)
    found: dict[str, None] = {}
    for line in lines:
        if not re.search(FOREIGN_ADVERT, line):
            continue
        match = _SOURCE.search(line)
        if match and match.group(1) in masters:
            if "priority" in line:
                continue  # an election among the masters themselves
        found.setdefault(match.group(1) if match else "an unnamed router")
    return list(found)


def foreign_verdict(senders_by_master: Mapping[str, list[str]], vrid: int, vip: str) -> str | None:
    heard = {s for senders in senders_by_master.values() for s in senders}
    if not heard:
        return None
    who = ", ".join(sorted(heard))
    by = ", ".join(m for m, s in senders_by_master.items() if s)
    return (f"another VRRP router uses virtual_router_id {vrid} on the masters' network ({who}; heard by {by}): "
            f"it can take the VIP {vip} away. Choose a virtual_router_id nobody else uses on that LAN "
            "(or reconfigure that router)")
