"""Step 5 — keepalived: the VIP (tutorial: 安装配置keepalived).

State BACKUP with nopreempt as in the tutorial, but haproxy's death puts the holder in FAULT so
the VIP really moves (a vrrp_script without weight; the tutorial's weight 20 never moved it).
The config is validated with `keepalived -t` on the host before it replaces the live one.
"""

from pyinfra.api import deploy
from pyinfra.operations import server

from hakube.ops import handler, managed_file, unit_running


@deploy("keepalived")
def apply(cfg, plan, now):
    if "keepalived_script" not in now.users:
        server.user(
            name="User for keepalived's health scripts",
            user="keepalived_script", system=True, shell="/usr/sbin/nologin", home="/nonexistent", create_home=False,
        )
    conf = [managed_file(name=f"Install {f.path}", file=f, now=now) for f in plan.keepalived]
    unit_running(name="keepalived enabled and running", unit="keepalived.service", now=now)
    handler("keepalived", "systemctl reload keepalived", conf, now, name="Reload keepalived (config changed)")
