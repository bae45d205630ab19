"""Step 5 — keepalived: the VIP (tutorial: 安装配置keepalived).

State BACKUP with nopreempt as in the tutorial, but haproxy's death puts the holder in FAULT so
the VIP really moves (a vrrp_script without weight; the tutorial's weight 20 never moved it).
The config is validated with `keepalived -t` on the host before it replaces the live one; a
reload that leaves keepalived not running is rolled back and stops the run.

The VIP must be ours, and one master's (``hakube.vip``): before keepalived first starts (it runs on
no master yet) an ARP probe refuses an address that already answers; once keepalived and haproxy
are in place (``verify``) exactly one master must hold the VIP, steadily, and no router outside
the masters may send adverts with our virtual_router_id.

A VIP changed on a running cluster (``precheck``, first of all): refused while planning if a master
holds the new address by hand, then probed from every master while the old VIP serves. A live VIP
that is an address the cluster needs is given up before the apiserver's roll (``release``). The
switch itself reloads every master's keepalived at once (haproxy already listens on both VIPs) and
waits for the new VIP to serve with one holder, or puts the previous config back.
"""

from pyinfra import host
from pyinfra.api import FactBase, deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.operations import server

from hakube import metrics
from hakube import vip as vipmod
from hakube.barriers import masters_unfailed, outside_limit, vip_one_holder
from hakube.facts import Needs
from hakube.hostfiles import differs, install
from hakube.probes import short_name
from hakube.render import DesiredFile, render
from hakube.rolls import reload_roll
from hakube.settings import etcd_endpoints
from hakube.units import ensure_running

from . import haproxy

NAME = "keepalived"
KEY = "keepalived"  # this step's files in ``want`` (stable: NAME is only what pyinfra prints)
CONF = "/etc/keepalived/keepalived.conf"
SCRIPT_USER = "keepalived_script"  # runs the health script: never root
UNIT = "keepalived.service"
NEEDS = Needs(units=(UNIT,), users=(SCRIPT_USER,), journals=((UNIT, vipmod.FOREIGN_ADVERT),), vip_configs=(CONF,))
# `keepalived -t`, as a validator ({path} is the staged copy). Debian 12's keepalived 2.2.7 kills
# its own config test (SIGTERM, exit 143) whenever a tracked script runs under script security
# (keepalived#2587, #2617; fixed in 2.2.8). A test killed that way without a word is run once more
# without the vrrp_script and track_script blocks (fixed text of the template), in a private
# temporary copy (it holds the VRRP password); one that printed an error has failed.
VALIDATE = ('o=$(keepalived -t -f {path} 2>&1); r=$?; [ -z "$o" ] || echo "$o"; [ $r -eq 0 ] || '
            '{{ [ $r -eq 143 ] && [ -z "$o" ] && t=$(mktemp) && '
            "sed '/^vrrp_script /,/^}}/d; /^    track_script {{/,/^    }}/d' {path} > \"$t\" && keepalived -t -f \"$t\"; "
            'r=$?; rm -f "$t"; [ $r -eq 0 ]; }}')


def settle_seconds(c) -> float:
    """How long one VIP holder must last to count as steady: 3 adverts at the configured interval."""
    return 3.0 * c.vrrp_advert_int


def holder_deadline(c) -> float:
    """Seconds to wait for one steady holder: an election (~3 adverts), the settle, and a margin."""
    return 15.0 + 6 * c.vrrp_advert_int


def desired_files(cfg, pki) -> dict[str, DesiredFile]:
    if not cfg.is_master:
        return {}
    content = render("keepalived.conf.j2", cfg=cfg, c=cfg.cluster, script_user=SCRIPT_USER,
                     notify_script=metrics.NOTIFY_SCRIPT if cfg.cluster.metrics else None)
    # Holds the VRRP password: secret, 0600.
    return {"conf": DesiredFile(CONF, content, mode="0600", secret=True, validate=VALIDATE,
                                notify=("keepalived",))}


def _running_anywhere(peers: dict) -> bool:
    return any(f.active(UNIT) for f in peers.values())


def change(cfg, peers: dict):
    """The VIP change this run makes on a running cluster (``hakube.vip.VipChange``), or None."""
    return vipmod.change_of(cfg.cluster.vips, peers, UNIT)


def needed_addresses(c) -> tuple[str, ...]:
    """Addresses the apiserver needs to reach: no master may carry one of them as its VIP."""
    return (*c.bind_addresses, *(h for h, _, _ in etcd_endpoints(c.etcd_servers)))


def precheck(cfg, facts, peers: dict) -> None:
    """While planning, before anything changes anywhere (the local PKI included): a new VIP for a
    running cluster must be free. A master that holds it by hand refuses the run; otherwise every
    master probes it (ARP duplicate address detection) while the old VIP still serves, and any
    answer refuses the run. Raises ``PyinfraError``; pyinfra then runs nothing on any host."""
    c, moving = cfg.cluster, change(cfg, peers)
    if not cfg.is_member:
        return
    left_out = outside_limit(host.state, [m.name for m in c.masters])
    if left_out and vipmod.mode_switch(c.vrrp_unicast, peers, UNIT):
        raise PyinfraError(f"{cfg.host}: vrrp_unicast: switching VRRP between multicast and unicast needs every "
                           f"master at once, but --limit leaves out {', '.join(left_out)}: run without --limit. "
                           "Nothing was changed.")
    if left_out and vipmod.version_switch(c.vrrp_version, peers, UNIT):
        raise PyinfraError(f"{cfg.host}: vrrp_version: switching VRRP to version {c.vrrp_version} needs every master "
                           f"at once (versions 2 and 3 do not hear each other), but --limit leaves out "
                           f"{', '.join(left_out)}: run without --limit. Nothing was changed.")
    if moving is None:
        return
    kept = f"Nothing was changed; keepalived still serves {', '.join(moving.old)}."
    if left_out:  # every keepalived switches at once, or a master carries another VIP than the holder
        raise PyinfraError(f"{cfg.host}: vip: changing the VIP needs every master, but --limit leaves out "
                           f"{', '.join(left_out)}: run without --limit. {kept}")
    by_hand = vipmod.held_by_hand(c.vip, peers)
    if by_hand:
        raise PyinfraError(
            f"{cfg.host}: vip: the new VIP {c.vip} is already an address of {', '.join(by_hand)} (not from "
            f"keepalived): taking it over would cut off whatever uses it. Choose a free address, or remove it "
            f"there. {kept}")
    if vipmod.held_by_keepalived(c.vip, peers):  # ours already (an earlier, interrupted run)
        return
    answer = host.get_fact(VipProbe, vip=c.vip, interface=cfg.vrrp_interface)
    if answer:
        raise PyinfraError(f"{cfg.host}: vip: refusing to change the VIP: the new VIP {c.vip} already answers on "
                           f"{cfg.vrrp_interface} ({answer}): the address belongs to another machine. Choose a "
                           f"free address for vip, or free it. {kept}")


class VipProbe(FactBase):
    """What answers ARP for ``vip`` on ``interface`` (``hakube.vip.dad_probe``, read-only): "" when
    nothing does. A probe that cannot run says so (and so refuses)."""

    def command(self, vip: str, interface: str) -> str:
        return vipmod.dad_probe(vip, interface, report=True)

    def process(self, output):
        return " ".join(output).strip()


@deploy("A VIP that takes an address the cluster needs is given up first")
def release(cfg, want, facts, peers: dict) -> bool:
    """A live VIP that is an etcd server's or a master's address (an earlier run's, or a hand edit)
    cuts this master off from it, so its apiserver cannot become ready: the roll would wait on it
    for ever. keepalived's config goes live here, before the roll. True when it did."""
    bad = vipmod.harmful(facts.live_vips, needed_addresses(cfg.cluster))
    if not bad or not facts.active(UNIT):
        return False
    files = want[KEY]
    install([files["conf"]], facts)
    reload_roll("keepalived", files.values(), facts, cfg.short_name, one_at_a_time=False,
                name=f"Reload keepalived: give up {', '.join(bad)} (an address the apiserver needs)")
    return True


@deploy(NAME)
def script_user(cfg, facts):
    """The user keepalived's health scripts run as: needs no package, so it is made while the
    packages install (before ``packages.wait``)."""
    if SCRIPT_USER not in facts.users:
        server.user(name="User for keepalived's health scripts", user=SCRIPT_USER, system=True,
                    shell="/usr/sbin/nologin", home="/nonexistent", create_home=False)


@deploy(NAME)
def apply(cfg, want, facts, peers: dict, one_at_a_time: bool = True, released: bool = False):
    files = want[KEY]
    c = cfg.cluster
    if not _running_anywhere(peers):  # the first start: the VIPs must be nobody's yet
        # (an IPv6 VIP: a neighbour solicitation with ndisc6 instead of ARP, ``hakube.vip``)
        server.shell(name=f"Nothing answers on the VIP {' or '.join(c.vips)} (keepalived runs on no master yet)",
                     commands=[vipmod.dad_probe(v, cfg.vrrp_interface) for v in c.vips])
        masters_unfailed(name="keepalived starts only if every master found the VIP free",
                         masters=tuple(m.name for m in c.masters))
    if released:  # its config went live before the roll (``release``)
        ensure_running(UNIT, facts, name="keepalived enabled and running")
        return
    install([files["conf"]], facts)
    running = facts.active(UNIT)
    moving = change(cfg, peers)
    switching = vipmod.mode_switch(c.vrrp_unicast, peers, UNIT)
    new_version = vipmod.version_switch(c.vrrp_version, peers, UNIT)
    if running and (moving or switching or new_version):
        # Every master at once (haproxy listens on both VIPs already): a master that reloaded alone
        # would carry another VIP, or send its adverts another way, than the holder. Each waits for
        # the VIP to serve with one holder; otherwise its previous config goes back (reloaded).
        # A VIP move: the holder reloads a second before the others, so the VIP comes back to the
        # same master. A switch between multicast and unicast, or of VRRP version, re-inits
        # keepalived's instance: the others stop while the holder reloads alone (``switch_in_place``).
        what = (f"the VIP {', '.join(moving.old)} -> {c.vip}" if moving else
                f"VRRP to {'unicast' if c.vrrp_unicast else 'multicast'}" if switching else
                f"VRRP to version {c.vrrp_version}")
        timeout = int(holder_deadline(c))
        if (switching or new_version) and not moving:  # the holder keeps the VIP through its re-init
            first, after = vipmod.switch_in_place(c.vips, cfg.vrrp_interface, UNIT, c.vrrp_advert_int, timeout + 10)
        else:
            first, after = vipmod.holder_first(moving.old if moving else (c.vip,), cfg.vrrp_interface), ":"
        reload_roll("keepalived", files.values(), facts, cfg.short_name, one_at_a_time=False, timeout=timeout,
                    ready=vipmod.switch_ready(c.vip, cfg.vrrp_interface, c.lb_port, haproxy.CA, haproxy.CHECK_CERT,
                                              settle=settle_seconds(c)),
                    wait_first=first, after=after,
                    name=f"Switch {what} on every master at once, waiting for the VIP to serve")
    elif running:
        reload_roll("keepalived", files.values(), facts, cfg.short_name, one_at_a_time=one_at_a_time)
    # A keepalived that does not run yet (a new master) starts in a later operation than the
    # others' reloads: with vrrp_unicast they send it their adverts before it listens, so it
    # joins as a backup instead of taking the VIP as well. (Serial hosts come in no set order.)
    if not running:
        reload_roll("keepalived", files.values(), facts, cfg.short_name, one_at_a_time=one_at_a_time,
                    name="Start keepalived (after the running ones reloaded)")
    ensure_running(UNIT, facts, name="keepalived enabled and running")


def _in_place(want, facts) -> bool:
    """keepalived and haproxy on this host as the run leaves them: nothing to change, nothing owed."""
    files = [*want[KEY].values(), *want[haproxy.KEY].values()]
    units_ok = all(facts.running(u) for u in (UNIT, "haproxy.service"))
    return units_ok and not any(differs(f, facts) for f in files) and not (facts.owed("keepalived") or facts.owed("haproxy"))


@deploy("The VIP: one master holds it")
def verify(cfg, want, facts, peers: dict):
    """Once keepalived and haproxy are in place: exactly one master holds the VIP and no foreign
    router speaks our VRID. A run that changed neither, on a cluster whose snapshots already show
    one holder and no foreign advert, has nothing to wait for."""
    c = cfg.cluster
    # A dual-stack front: one holder means one master holds both VIPs.
    held = {short_name(name): tuple(v for v in c.vips if v in f.addresses) for name, f in peers.items()}
    heard = {name: vipmod.foreign_adverts(f.journal.get(UNIT, ()), c.bind_addresses) for name, f in peers.items()}
    vips = " and ".join(c.vips)
    if _in_place(want, facts) and vipmod.vips_verdict(held, c.vips, c.virtual_router_id, c.vrrp_unicast) is None \
            and not any(heard.values()):
        host.noop(f"the VIP {vips} is on {next(m for m, h in held.items() if h)} alone")
        return
    vip_one_holder(name=f"Exactly one master holds the VIP {vips}, no other router uses VRID {c.virtual_router_id}",
                   vip=c.vip if len(c.vips) == 1 else c.vips, interfaces={m.name: m.vrrp_interface for m in c.masters}, vrid=c.virtual_router_id,
                   unicast=c.vrrp_unicast, addresses=c.bind_addresses, settle=settle_seconds(c),
                   deadline=holder_deadline(c))
