"""Step 5 — keepalived: the VIP (tutorial: 安装配置keepalived).

State BACKUP with nopreempt as in the tutorial, but haproxy's death puts the holder in FAULT so
the VIP really moves (a vrrp_script without weight; the tutorial's weight 20 never moved it).
The config is validated with `keepalived -t` on the host before it replaces the live one; a
reload that leaves keepalived not running is rolled back and stops the run.
"""

from pyinfra.api import deploy
from pyinfra.operations import server

from hakube.facts import Needs
from hakube.ops import ensure_running, install, reload_roll
from hakube.render import DesiredFile, render

NAME = "keepalived"
CONF = "/etc/keepalived/keepalived.conf"
SCRIPT_USER = "keepalived_script"  # runs the health script: never root
NEEDS = Needs(units=("keepalived.service",), users=(SCRIPT_USER,))
# `keepalived -t`, as a validator ({path} is the staged copy). Debian 12's keepalived 2.2.7 kills
# its own config test (SIGTERM, exit 143) whenever a tracked script runs under script security
# (keepalived#2587, #2617; fixed in 2.2.8). A test killed that way without a word is run once more
# without the vrrp_script and track_script blocks (fixed text of the template), in a private
# temporary copy (it holds the VRRP password); one that printed an error has failed.
VALIDATE = ('o=$(keepalived -t -f {path} 2>&1); r=$?; [ -z "$o" ] || echo "$o"; [ $r -eq 0 ] || '
            '{{ [ $r -eq 143 ] && [ -z "$o" ] && t=$(mktemp) && '
            "sed '/^vrrp_script /,/^}}/d; /^    track_script {{/,/^    }}/d' {path} > \"$t\" && keepalived -t -f \"$t\"; "
            'r=$?; rm -f "$t"; [ $r -eq 0 ]; }}')


def desired_files(cfg, pki) -> dict[str, DesiredFile]:
    if not cfg.is_master:
        return {}
    content = render("keepalived.conf.j2", cfg=cfg, c=cfg.cluster, script_user=SCRIPT_USER)
    # Holds the VRRP password: secret, 0600.
    return {"conf": DesiredFile(CONF, content, mode="0600", secret=True, validate=VALIDATE,
                                notify=("keepalived",))}


@deploy(NAME)
def apply(cfg, want, facts, one_at_a_time: bool = True):
    files = want[NAME]
    if SCRIPT_USER not in facts.users:
        server.user(name="User for keepalived's health scripts", user=SCRIPT_USER, system=True,
                    shell="/usr/sbin/nologin", home="/nonexistent", create_home=False)
    install([files["conf"]], facts)
    running = tuple(facts.units.get("keepalived.service", ("", "")))[0] == "active"
    if running:
        reload_roll("keepalived", files.values(), facts, cfg.short_name, one_at_a_time=one_at_a_time)
    # A keepalived that does not run yet (a new master) starts in a later operation than the
    # others' reloads: with vrrp_unicast they send it their adverts before it listens, so it
    # joins as a backup instead of taking the VIP as well. (Serial hosts come in no set order.)
    if not running:
        reload_roll("keepalived", files.values(), facts, cfg.short_name, one_at_a_time=one_at_a_time,
                    name="Start keepalived (after the running ones reloaded)")
    ensure_running("keepalived.service", facts, name="keepalived enabled and running")
