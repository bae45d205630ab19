"""Step 6 — haproxy in front of every apiserver (tutorial: 安装配置haproxy).

ip_nonlocal_bind lets every master bind the VIP (and, while a VIP changes, the new one as well). The backend check is GET /readyz over TLS with
a client certificate (anonymous auth is off), not the tutorial's TCP check. The config is
validated with `haproxy -c` on the host before it goes live; changes reload, never restart, one
master at a time, and a reload that leaves haproxy not running is rolled back and stops the run.
"""

from dataclasses import replace

from pyinfra.api import deploy
from pyinfra.operations import server

from hakube import pki as pkimod
from hakube.facts import FileState, Needs
from hakube.hostfiles import install
from hakube.probes import is_ipv6
from hakube.render import DesiredFile, render, static
from hakube.rolls import reload_roll
from hakube.units import ensure_running

NAME = "haproxy"
KEY = "haproxy"  # this step's files in ``want`` (stable: NAME is only what pyinfra prints)
CFG = "/etc/haproxy/haproxy.cfg"
CA = "/etc/haproxy/pki/ca.pem"
CHECK_CERT = "/etc/haproxy/pki/healthcheck.pem"  # the client certificate of the /readyz check
SYSCTL_CONF = "/etc/sysctl.d/99-kube-apiserver-vip.conf"
NONLOCAL_BIND = "net.ipv4.ip_nonlocal_bind"
NONLOCAL_BIND6 = "net.ipv6.ip_nonlocal_bind"  # the same for an IPv6 VIP (vip, vip6)
NEEDS = Needs(units=("haproxy.service",), sysctls=(NONLOCAL_BIND, NONLOCAL_BIND6))


def nonlocal_binds(c) -> tuple[str, ...]:
    """The sysctls that let haproxy bind every VIP of ``c`` on a master that does not hold it: IPv4's
    always (an IPv4-only cluster's file stays as it was), IPv6's too when a VIP is IPv6."""
    return (NONLOCAL_BIND, *((NONLOCAL_BIND6,) if any(is_ipv6(v) for v in c.vips) else ()))


def _config(cfg, vips: tuple[str, ...]) -> DesiredFile:
    content = render("haproxy.cfg.j2", cfg=cfg, c=cfg.cluster, pki={"ca": CA, "crt": CHECK_CERT}, vips=vips)
    return DesiredFile(CFG, content, validate="haproxy -c -f {path}", notify=("haproxy",))


def desired_files(cfg, p) -> dict[str, DesiredFile]:
    if not cfg.is_master:
        return {}
    return {
        "sysctl": DesiredFile(SYSCTL_CONF, static("99-kube-apiserver-vip.conf")
                              + b"".join(f"{k} = 1\n".encode() for k in nonlocal_binds(cfg.cluster)[1:])),
        "ca": DesiredFile(CA, p.ca_pem, notify=("haproxy",)),
        "check-cert": DesiredFile(CHECK_CERT, pkimod.combined_pem(p.certs["haproxy-healthcheck"]), mode="0600",
                                  secret=True, notify=("haproxy",)),
        "cfg": _config(cfg, cfg.cluster.vips),
    }


def _both(cfg, moving) -> DesiredFile:
    return _config(cfg, tuple(dict.fromkeys((*cfg.cluster.vips, *moving.old))))


def _after_listen_both(cfg, facts, moving):
    """The host as ``listen_both`` leaves it: haproxy.cfg listening on both VIPs."""
    both = _both(cfg, moving)
    return replace(facts, files={**facts.files, CFG: FileState(both.sha256, int(both.mode, 8), "root:root")})


@deploy("haproxy listens on the new VIP too")
def listen_both(cfg, want, facts, moving):
    """A VIP change (``moving``, ``hakube.vip.VipChange``): before keepalived switches, haproxy listens
    on the new VIP as well as the old ones (ip_nonlocal_bind), so whichever the holder carries
    serves; ``apply`` drops the old ones once the switch is done."""
    if moving is None:
        return
    both = _both(cfg, moving)
    install([both], facts)
    reload_roll("haproxy", [both], facts, cfg.short_name, name=f"Reload haproxy (listening on {cfg.cluster.vip} too)")


@deploy(NAME)
def apply(cfg, want, facts, one_at_a_time: bool = True, moving=None):
    """``moving``: the VIP change of this run (``listen_both`` ran): the old VIPs are dropped here."""
    files = want[KEY]
    if moving is not None:
        facts = _after_listen_both(cfg, facts, moving)
    install([files["sysctl"]], facts, verb="Persist")
    for key in nonlocal_binds(cfg.cluster):
        if facts.sysctls.get(key) != "1":
            server.sysctl(name=f"{key} = 1", key=key, value=1)
    served = [files["ca"], files["check-cert"], files["cfg"]]
    install(served, facts)
    reload_roll("haproxy", served, facts, cfg.short_name, one_at_a_time=one_at_a_time)
    ensure_running("haproxy.service", facts, name="haproxy enabled and running")
