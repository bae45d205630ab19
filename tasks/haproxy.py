"""Step 6 — haproxy in front of every apiserver (tutorial: 安装配置haproxy).

ip_nonlocal_bind lets every master bind the VIP. The backend check is GET /readyz over TLS with
a client certificate (anonymous auth is off), not the tutorial's TCP check. The config is
validated with `haproxy -c` on the host before it goes live; changes reload, never restart.
"""

from pyinfra.api import deploy
from pyinfra.operations import server, systemd

from hakube.ops import handler, install_packages, managed_file


@deploy("haproxy")
def apply(cfg, plan):
    sysctl_conf, *haproxy_files = plan.haproxy
    managed_file(name=f"Persist {sysctl_conf.path}", file=sysctl_conf, known_paths=plan.paths)
    server.sysctl(name="net.ipv4.ip_nonlocal_bind = 1", key="net.ipv4.ip_nonlocal_bind", value=1)
    install_packages(["haproxy"], name="Install haproxy")
    files = [managed_file(name=f"Install {f.path}", file=f, known_paths=plan.paths) for f in haproxy_files]
    systemd.service(name="haproxy enabled and running", service="haproxy", running=True, enabled=True)
    handler("haproxy", "systemctl reload haproxy", files, plan.paths, name="Reload haproxy (config changed)")
