"""Step 5 — keepalived: the VIP (tutorial: 安装配置keepalived).

State BACKUP with nopreempt as in the tutorial, but haproxy's death puts the holder in FAULT so
the VIP really moves (a vrrp_script without weight; the tutorial's weight 20 never moved it).
The config is validated with `keepalived -t` on the host before it replaces the live one; a
reload that leaves keepalived not running is rolled back and stops the run.
"""

from pyinfra.api import deploy
from pyinfra.operations import server

from hakube.ops import managed_file, reload_roll, unit_running


@deploy("keepalived")
def apply(cfg, plan, now):
    if "keepalived_script" not in now.users:
        server.user(
            name="User for keepalived's health scripts",
            user="keepalived_script", system=True, shell="/usr/sbin/nologin", home="/nonexistent", create_home=False,
        )
    for f in plan.keepalived:
        managed_file(name=f"Install {f.path}", file=f, now=now)
    reload_roll("keepalived", plan.keepalived, now, cfg.short_name)
    unit_running(name="keepalived enabled and running", unit="keepalived.service", now=now)
