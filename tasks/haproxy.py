"""Step 6 — haproxy in front of every apiserver (tutorial: 安装配置haproxy).

ip_nonlocal_bind lets every master bind the VIP. The backend check is GET /readyz over TLS with
a client certificate (anonymous auth is off), not the tutorial's TCP check. The config is
validated with `haproxy -c` on the host before it goes live; changes reload, never restart, one
master at a time, and a reload that leaves haproxy not running is rolled back and stops the run.
"""

from pyinfra.api import deploy
from pyinfra.operations import server

from hakube.ops import managed_file, reload_roll, unit_running


@deploy("haproxy")
def apply(cfg, plan, now):
    sysctl_conf, *haproxy_files = plan.haproxy
    managed_file(name=f"Persist {sysctl_conf.path}", file=sysctl_conf, now=now)
    if now.sysctls.get("net.ipv4.ip_nonlocal_bind") != "1":
        server.sysctl(name="net.ipv4.ip_nonlocal_bind = 1", key="net.ipv4.ip_nonlocal_bind", value=1)
    for f in haproxy_files:
        managed_file(name=f"Install {f.path}", file=f, now=now)
    reload_roll("haproxy", haproxy_files, now, cfg.short_name)
    unit_running(name="haproxy enabled and running", unit="haproxy.service", now=now)
