"""Step 6 — haproxy in front of every apiserver (tutorial: 安装配置haproxy).

ip_nonlocal_bind lets every master bind the VIP. The backend check is GET /readyz over TLS with
a client certificate (anonymous auth is off), not the tutorial's TCP check. The config is
validated with `haproxy -c` on the host before it goes live; changes reload, never restart, one
master at a time, and a reload that leaves haproxy not running is rolled back and stops the run.
"""

from pyinfra.api import deploy
from pyinfra.operations import server

from hakube import pki as pkimod
from hakube.facts import Needs
from hakube.ops import ensure_running, install, reload_roll
from hakube.render import DesiredFile, render, static

NAME = "haproxy"
CFG = "/etc/haproxy/haproxy.cfg"
CA = "/etc/haproxy/pki/ca.pem"
CHECK_CERT = "/etc/haproxy/pki/healthcheck.pem"  # the client certificate of the /readyz check
SYSCTL_CONF = "/etc/sysctl.d/99-kube-apiserver-vip.conf"
NONLOCAL_BIND = "net.ipv4.ip_nonlocal_bind"
NEEDS = Needs(units=("haproxy.service",), sysctls=(NONLOCAL_BIND,))


def desired_files(cfg, p) -> dict[str, DesiredFile]:
    if not cfg.is_master:
        return {}
    content = render("haproxy.cfg.j2", cfg=cfg, c=cfg.cluster, pki={"ca": CA, "crt": CHECK_CERT})
    return {
        "sysctl": DesiredFile(SYSCTL_CONF, static("99-kube-apiserver-vip.conf")),
        "ca": DesiredFile(CA, p.ca_pem, notify=("haproxy",)),
        "check-cert": DesiredFile(CHECK_CERT, pkimod.combined_pem(p.certs["haproxy-healthcheck"]), mode="0600",
                                  secret=True, notify=("haproxy",)),
        "cfg": DesiredFile(CFG, content, validate="haproxy -c -f {path}", notify=("haproxy",)),
    }


@deploy(NAME)
def apply(cfg, want, facts, one_at_a_time: bool = True):
    files = want[NAME]
    install([files["sysctl"]], facts, verb="Persist")
    if facts.sysctls.get(NONLOCAL_BIND) != "1":
        server.sysctl(name=f"{NONLOCAL_BIND} = 1", key=NONLOCAL_BIND, value=1)
    served = [files["ca"], files["check-cert"], files["cfg"]]
    install(served, facts)
    reload_roll("haproxy", served, facts, cfg.short_name, one_at_a_time=one_at_a_time)
    ensure_running("haproxy.service", facts, name="haproxy enabled and running")
