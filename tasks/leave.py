"""A master leaves the cluster (``leaving: true`` in its data; README, Day two).

The leaving master stays in the inventory for this run so the deploy can reach it, but it is no
longer a member: ``Cluster.masters`` holds the members only, so the other masters' serving
certificate SANs, haproxy backends and keepalived unicast peers drop it and converge as a smaller
cluster in the same run. On the leaving master itself, one operation, first of the whole run:

1. the VIP moves off it: keepalived is stopped (it sends a priority-0 advert, a peer takes the VIP
   at once); then wait until the VIP is no longer on its interface *and* another master answers
   ``/readyz`` through the VIP. If that does not happen in time, keepalived is started again and
   the run stops: nothing else changed;
2. its apiserver is drained: the haproxy agent answers ``drain``, so after 1.5 s (agent-inter
   0.5 s) no haproxy opens a new connection to it;
3. kube-apiserver, the haproxy agent socket, haproxy and keepalived are stopped and disabled
   (kube-apiserver's ``--shutdown-delay-duration`` finishes what is in flight);
4. its keys and certificates are removed: ``/etc/kubernetes/ssl``, the Secrets encryption config,
   ``/etc/haproxy/pki``, the admin kubeconfig, keepalived.conf (the VRRP password), and the
   deploy's rollback copies and pending markers under /var/lib/hakube. Packages, the binary and the
   non-secret config files stay.

pyinfra runs each operation on every host before the next; the leave is the leaving master's
only operation and is planned first (``deploy.py``), so it runs before any operation of the
remaining masters, and their first operation (``wait``) fails them — changing nothing — unless
every master that had to leave has left. A second run finds nothing to do (the snapshot: no unit
active or enabled, no key file left) and plans nothing.
"""

from __future__ import annotations

import math
import shlex

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.exceptions import PyinfraError

from hakube.barriers import leave, leavers_left, outside_limit
from hakube.facts import Needs
from hakube.hostfiles import UPLOAD_DIR
from hakube.paths import PATHS
from hakube.probes import readyz_ok, readyz_url
from hakube.roll import PENDING_DIR, ROLLBACK_DIR

from . import certs, haproxy, keepalived

NAME = "Leave the cluster"
KEY = "leave"  # this step's files in ``want`` (stable: NAME is only what pyinfra prints)
#: Stopped and disabled, in this order: the drained apiserver first, keepalived (already stopped) last.
UNITS = ("kube-apiserver.service", "kube-apiserver-agent.socket", "haproxy.service", "keepalived.service")
HAPROXY_PKI_DIR = haproxy.CA.rsplit("/", 1)[0]


def removed_files() -> tuple[str, ...]:
    """Every key and certificate the deploy put on a master (and keepalived.conf: the VRRP
    password). Any of them present means the leave is not done."""
    ssl = [PATHS.cert("ca"), PATHS.etcd_ca, PATHS.sa_pub, PATHS.key("sa")]
    ssl += [p for name in certs.APISERVER_CERTS for p in (PATHS.cert(name), PATHS.key(name))]
    return (*ssl, PATHS.encryption_config, haproxy.CA, haproxy.CHECK_CERT, PATHS.kubeconfig, keepalived.CONF)


#: Removed too, before the files above (so an interrupted removal is finished by the next run):
#: staged copies and the deploy's rollback copies (they hold old keys and the VRRP password).
REMOVED_FIRST = (f"{PATHS.encryption_config}.new", f"{PATHS.kubeconfig}.new", f"{keepalived.CONF}.new",
                 ROLLBACK_DIR, PENDING_DIR, UPLOAD_DIR)
REMOVED_DIRS = (PATHS.ssl_dir, HAPROXY_PKI_DIR)

NEEDS = Needs(paths=removed_files(), units=UNITS, secret_digests=(PATHS.encryption_config,))


def desired_files(cfg, pki) -> dict:
    return {}  # a leaving master gets no file: it loses some


def needed(facts) -> bool:
    """Has this master still something to give up: a unit running or enabled, a key or certificate?"""
    units = any(facts.active(u) or facts.enabled(u)
                for u in UNITS)
    return units or any(p in facts.files for p in removed_files())


def pending(peers: dict, cluster) -> tuple[str, ...]:
    """The leaving masters (of those this run reaches) that still have to leave."""
    return tuple(m.name for m in cluster.leaving if m.name in peers and needed(peers[m.name]))


def vip_timeout(cluster) -> int:
    """Seconds for the VIP to leave this master and answer elsewhere: a few adverts and a margin."""
    return math.ceil(4 * cluster.vrrp_advert_int) + 10  # whole seconds: the shell's $(( )) takes no fraction


def script(cfg) -> list[str]:
    """The leave, as four remote commands (each must succeed for the next to run)."""
    c = cfg.cluster
    q = shlex.quote
    url = readyz_url(c.vip, c.lb_port)
    ca, cert, key = PATHS.cert("ca"), PATHS.cert("apiserver-kubelet-client"), PATHS.key("apiserver-kubelet-client")
    timeout = vip_timeout(c)
    who = f"{cfg.short_name}: leaving"
    vip_off = (
        f"vip={q(c.vip)}; dev={q(cfg.vrrp_interface)}; "
        f"_here() {{ ip -o -{6 if ':' in c.vip else 4} addr show dev \"$dev\" 2>/dev/null | awk '{{print $4}}' | cut -d/ -f1 | grep -qxF \"$vip\"; }}; "
        # Another master answers through the VIP: /readyz with this master's client certificate
        # while it has one; without it (a leave interrupted after the removal), any HTTP answer.
        f"if [ -f {q(ca)} ] && [ -f {q(cert)} ] && [ -f {q(key)} ]; then "
        f"_answers() {{ {readyz_ok(url, ca, cert, key)}; }}; "
        f"else _answers() {{ [ \"$(curl -sk -o /dev/null -w '%{{http_code}}' --max-time 2 {q(url)})\" != 000 ]; }}; fi; "
        'stopped=""; if systemctl is-active -q keepalived.service; then systemctl stop keepalived.service || exit 1; stopped=1; fi; '
        f"end=$(( $(date +%s) + {timeout} )); "
        "until ! _here && _answers; do "
        "if [ $(date +%s) -ge $end ]; then "
        'if _here; then why="the VIP $vip is still on $dev"; else why="no other master answers at $vip"; fi; '
        'if [ -n "$stopped" ]; then systemctl start keepalived.service; what="keepalived started again"; '
        'else what="keepalived was not running"; fi; '
        f'echo "{who}: after {timeout}s $why; $what; nothing else changed" >&2; exit 1; fi; '
        "sleep 0.2; done"
    )
    state = q(PATHS.agent_state)
    # agent-inter is 0.5 s: after 1.5 s every haproxy has seen "drain" (as in the apiserver's roll).
    drain = f"if systemctl is-active -q kube-apiserver.service; then echo drain > {state} && sleep 1.5; fi"
    stop = (
        f"for u in {' '.join(UNITS)}; do "
        'if [ "$(systemctl is-enabled "$u" 2>/dev/null)" = enabled ]; then systemctl disable --now -q "$u" || exit 1; '
        'elif systemctl is-active -q "$u"; then systemctl stop "$u" || exit 1; fi; done; '
        f"rm -f {state}"
    )
    remove = (f"rm -rf {' '.join(q(p) for p in REMOVED_FIRST)} && "
              f"rm -rf {' '.join(q(p) for p in (*removed_files(), *REMOVED_DIRS))}")
    return [vip_off, drain, stop, remove]


@deploy(NAME)
def apply(cfg, want, facts):
    """On the leaving master: VIP off, drain, stop and disable, remove its keys (one operation)."""
    if not needed(facts):
        host.noop(f"{cfg.short_name} has left: {', '.join(UNITS)} stopped and disabled, no key left")
        return None
    return leave(name=f"Leave: VIP off {cfg.short_name}, drain, stop and disable "
                      "kube-apiserver/haproxy/keepalived, remove its keys",
                 commands=tuple(script(cfg)), _serial=True)


@deploy(NAME)
def wait(cfg, want, facts, peers: dict):
    """On a remaining master, before anything changes here: every master that had to leave has left."""
    names = pending(peers, cfg.cluster)
    if not names:
        return None
    left_out = outside_limit(host.state, names)
    if left_out:
        raise PyinfraError(f"{cfg.host}: leaving: {', '.join(left_out)} must leave before the other masters change, "
                           "but --limit leaves it out of this run: add it to --limit (or run without --limit). "
                           "Nothing was changed.")
    return leavers_left(name=f"The others go on once {', '.join(names)} left", leavers=names)
