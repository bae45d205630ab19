"""Step 3 — kube-apiserver: shared config, per-master flags, systemd unit, binary, the roll.

Tutorial: 配置kube-apiserver运行参数 / 配置kube-apiserver服务 / 启动kube-apiserver.
/etc/kubernetes/config goes to every host (masters and nodes), the rest to masters only. On a
master every input of the apiserver (binary, env files, unit, certificates, audit policy: every
file that notifies "kube-apiserver") is only staged next to the live file; the roll then takes one
master at a time: drain it (its haproxy agent answers "drain"), switch the staged inputs in,
restart, and wait — bounded by ``apiserver_ready_timeout`` — for /readyz and for haproxy to have it
UP again. A master that does not become ready gets its previous inputs back (byte-identical), is
restarted and undrained, and the run stops there: no later master is touched (``hakube.roll``).
While no apiserver serves anywhere (a first install) there is nothing to protect: every master
rolls at once.
"""

import shlex

from pyinfra.api import deploy
from pyinfra.api.exceptions import PyinfraError

from hakube import roll as rollsh
from hakube.apiserver_args import apiserver_env, config_env
from hakube.facts import Needs
from hakube.hostfiles import binary, binary_differs, binary_sha256, install
from hakube.paths import PATHS
from hakube.probes import BACKEND, readyz_ok, readyz_url, stats_url
from hakube.render import DesiredFile, render
from hakube.rolls import roll, roll_owed
from hakube.units import ensure_running, handler

NAME = "kube-apiserver"
KEY = "apiserver"  # this step's files in ``want`` (stable: NAME is only what pyinfra prints)
SERVICE = "kube-apiserver"
UNIT = "/etc/systemd/system/kube-apiserver.service"
AGENT_SOCKET = "/etc/systemd/system/kube-apiserver-agent.socket"
AGENT_SERVICE = "/etc/systemd/system/kube-apiserver-agent@.service"
# The 110 MB binary's sha256 is kept on the host beside its stat (``hakube.facts.cached_hash``).
NEEDS = Needs(paths=(PATHS.apiserver_binary,), units=("kube-apiserver.service", "kube-apiserver-agent.socket"),
              hash_cached=(PATHS.apiserver_binary,))


def desired_files(cfg, pki) -> dict[str, DesiredFile]:
    """/etc/kubernetes/config on every host; on a master also the flags, the unit and the haproxy agent."""
    restart = (SERVICE,) if cfg.is_master else ()
    out = {"config": DesiredFile("/etc/kubernetes/config", render("config.j2", env=config_env(cfg)), notify=restart)}
    if not cfg.is_master:
        return out
    out["flags"] = DesiredFile("/etc/kubernetes/apiserver", render("apiserver.j2", cfg=cfg, env=apiserver_env(cfg)),
                               notify=restart)
    # The roll runs daemon-reload before it restarts the apiserver.
    out["unit"] = DesiredFile(UNIT, render("kube-apiserver.service.j2", binary=PATHS.apiserver_binary), notify=restart)
    # The haproxy agent-check responder (a systemd socket, no daemon of its own).
    out["agent-socket"] = DesiredFile(AGENT_SOCKET, render("kube-apiserver-agent.socket.j2", cfg=cfg, c=cfg.cluster),
                                      notify=("daemon-reload", "kube-apiserver-agent"))
    out["agent-service"] = DesiredFile(AGENT_SERVICE, render("kube-apiserver-agent@.service.j2",
                                                             state_file=PATHS.agent_state), notify=("daemon-reload",))
    return out


def serving(masters_facts: dict) -> bool:
    """Is an apiserver running on any master? Then every roll has something to protect and takes
    one master at a time; on a first install nothing serves yet and the masters need not wait.
    ``masters_facts`` includes a leaving master: it counts as something serving (its leave comes
    first in the run), never as a roll target (it plans no roll). A master joining a serving
    cluster rolls in its turn like the others."""
    return any(f.active("kube-apiserver.service") for f in masters_facts.values())


def _roll_script(cfg, staged: dict, drain: bool = True) -> str:
    c = cfg.cluster
    curl = readyz_ok(readyz_url(cfg.bind_address, c.apiserver_port), PATHS.cert("ca"),
                     PATHS.cert("apiserver-kubelet-client"), PATHS.key("apiserver-kubelet-client"))
    stats = shlex.quote(stats_url(c.haproxy_stats_port))
    state = shlex.quote(PATHS.agent_state)
    functions = (
        # This master's row in the local haproxy's view; no stats yet (first install) = nothing to wait for.
        f"_up() {{ st=$(curl -s --max-time 2 {stats}) || return 0; "
        f"echo \"$st\" | awk -F, '$1==\"{BACKEND}\" && $2==\"{cfg.short_name}\" {{print $18}}' | grep -qx UP; }}; "
        f"_serving() {{ {curl} && rm -f {state} && _up; }}; "
    )
    return rollsh.rolled_restart(
        SERVICE, cfg.short_name, staged,
        functions=functions,
        # agent-inter is 0.5 s: after 1.5 s every haproxy has seen it. Nothing serving: nothing to drain.
        before=f"echo drain > {state} && sleep 1.5" if drain else ":",
        apply="systemctl daemon-reload && systemctl restart kube-apiserver",
        # The local haproxy's UP is one view; the VIP holder's haproxy checks on its own phase. Every
        # haproxy has seen the master ready within two more check intervals: only then may the next
        # master drain (seen in the lab: the next drain came first, the holder had no server left).
        ready=f"_serving && sleep {2 * c.haproxy_check_interval_ms / 1000 + 0.5:g}" if drain else "_serving",
        after=f"rm -f {state}",  # never leave a master drained, whatever happens
        timeout=c.apiserver_ready_timeout,
    )


@deploy(NAME)
def apply(cfg, want, facts):
    """Stage what the apiserver runs: /etc/kubernetes/config (every host), a local binary (uploaded
    while the packages install; a downloaded one comes in ``download``), its flags and unit, and
    the haproxy agent (live at once: the apiserver does not read it)."""
    files = want[KEY]
    install([files["config"]], facts)
    if not cfg.is_master:
        return
    if cfg.cluster.kube_apiserver_binary:  # uploaded now, while the packages install
        _stage_binary(cfg, facts)
    install([files[role] for role in ("flags", "unit", "agent-socket", "agent-service")], facts)
    agent = [files["agent-socket"], files["agent-service"]]
    handler("daemon-reload", "systemctl daemon-reload", agent, facts, name="systemctl daemon-reload (units changed)")
    handler("kube-apiserver-agent", "systemctl restart kube-apiserver-agent.socket", agent, facts,
            name="Restart the haproxy agent socket (changed)")
    ensure_running("kube-apiserver-agent.socket", facts, name="haproxy agent socket enabled and listening")


@deploy(NAME)
def download(cfg, want, facts):
    """The binary from ``kube_apiserver_url``, when no local one is given: downloaded with the
    packages step's curl (so after ``packages.wait``), checked, staged."""
    if not cfg.cluster.kube_apiserver_binary:
        _stage_binary(cfg, facts)


def download_url(cfg, facts) -> str:
    """``kube_apiserver_url`` for this host: ``{arch}`` from its snapshot (refused when unknown)."""
    c = cfg.cluster
    if "{arch}" in c.kube_apiserver_url and not facts.arch:
        raise PyinfraError(
            f"{cfg.host}: kube_apiserver_url: cannot fill in {{arch}}: the host's architecture is unknown "
            "(neither `dpkg --print-architecture` nor `uname -m` gave a plain name); put the architecture "
            "in the URL, or set kube_apiserver_binary"
        )
    return c.download_url(facts.arch)


def _stage_binary(cfg, facts):
    c = cfg.cluster
    if binary_differs(PATHS.apiserver_binary, facts, c.kube_apiserver_binary, c.kube_apiserver_sha256):
        local = c.kube_apiserver_binary
        binary(name=f"Install kube-apiserver {c.kube_version}", dest=PATHS.apiserver_binary, local_path=local,
               url=None if local else download_url(cfg, facts), sha256=c.kube_apiserver_sha256, facts=facts,
               notify=(SERVICE,))


@deploy(NAME)
def roll_out(cfg, want, facts, one_at_a_time: bool = True):
    """The roll: every staged input of the apiserver (every step's files that notify it) goes live,
    one master at a time — or all at once while nothing serves (``one_at_a_time=False``)."""
    c = cfg.cluster
    inputs = [f for step in want.values() for f in step.values() if SERVICE in f.notify]
    new_binary = binary_differs(PATHS.apiserver_binary, facts, c.kube_apiserver_binary, c.kube_apiserver_sha256)
    if roll_owed(SERVICE, inputs, facts, binary_changes=new_binary == "content"):
        # Each input with the sha256 it must have: only such a staged copy goes live.
        staged = {PATHS.apiserver_binary: binary_sha256(c.kube_apiserver_binary, c.kube_apiserver_sha256),
                  **{f.path: f.sha256 for f in inputs}}
        roll(name="Restart kube-apiserver, one master at a time, waiting for /readyz",
             service=SERVICE, script=_roll_script(cfg, staged, drain=one_at_a_time),
             on_stop=rollsh.stopped_elsewhere(SERVICE, list(staged)), guard=one_at_a_time, _serial=one_at_a_time)
    ensure_running("kube-apiserver.service", facts, name="kube-apiserver enabled and running")
