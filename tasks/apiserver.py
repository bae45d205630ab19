"""Step 3 — kube-apiserver: shared config, per-master flags, systemd unit, binary, rolling restart.

Tutorial: 配置kube-apiserver运行参数 / 配置kube-apiserver服务 / 启动kube-apiserver.
/etc/kubernetes/config goes to every host (masters and nodes), the rest to masters only. On a
master every input of the apiserver (binary, env files, unit, certificates, audit policy) is only
staged next to the live file; the roll then takes one master at a time: drain it (its haproxy
agent answers "drain"), switch the staged inputs in, restart, and wait — bounded by
``apiserver_ready_timeout`` — for /readyz and for haproxy to have it UP again. A master that does
not become ready gets its previous inputs back (byte-identical), is restarted and undrained, and
the run stops there: no later master is touched (``hakube.roll``).
"""

import shlex

from pyinfra.api import deploy

from hakube import flags, roll as rollsh
from hakube.ops import binary, handler, managed_file, roll, roll_owed, unit_running
from hakube.render import AGENT_STATE, APISERVER_BINARY

SERVICE = "kube-apiserver"


def _roll_script(cfg, inputs) -> str:
    c, ssl = cfg.cluster, flags.PATHS
    url = f"https://{cfg.bind_address}:{c.apiserver_port}/readyz"
    curl = " ".join(
        shlex.quote(a)
        for a in ("curl", "-sf", "-o", "/dev/null", "--max-time", "2", "--cacert", ssl.cert("ca"),
                  "--cert", ssl.cert("apiserver-kubelet-client"), "--key", ssl.key("apiserver-kubelet-client"), url)
    )
    stats = shlex.quote(f"http://127.0.0.1:{c.haproxy_stats_port}/stats;csv")
    state = shlex.quote(AGENT_STATE)
    functions = (
        # This master's row in the local haproxy's view; no stats yet (first install) = nothing to wait for.
        f"_up() {{ st=$(curl -s --max-time 2 {stats}) || return 0; "
        f"echo \"$st\" | awk -F, '$1==\"kube_api\" && $2==\"{cfg.short_name}\" {{print $18}}' | grep -qx UP; }}; "
        f"_serving() {{ {curl} && rm -f {state} && _up; }}; "
    )
    return rollsh.rolled_restart(
        SERVICE, cfg.short_name, inputs,
        functions=functions,
        before=f"echo drain > {state} && sleep 1.5",  # agent-inter is 0.5 s: every haproxy has seen it
        apply="systemctl daemon-reload && systemctl restart kube-apiserver",
        ready="_serving",
        after=f"rm -f {state}",  # never leave a master drained, whatever happens
        timeout=c.apiserver_ready_timeout,
    )


@deploy("kube-apiserver")
def apply(cfg, plan, now, inputs=()):
    """``inputs``: the other steps' files the apiserver reads (certificates, audit policy)."""
    managed_file(name="Install /etc/kubernetes/config", file=plan.config, now=now)
    if not cfg.is_master:
        return
    c = cfg.cluster
    binary_op = binary(
        name=f"Install kube-apiserver {c.kube_version}",
        dest=APISERVER_BINARY,
        local_path=c.kube_apiserver_binary,
        url=None if c.kube_apiserver_binary else c.download_url,
        sha256=c.kube_apiserver_sha256,
        now=now,
        notify=(SERVICE,),
    )
    for f in plan.apiserver:
        managed_file(name=f"Install {f.path}", file=f, now=now)
    agent = [managed_file(name=f"Install {f.path}", file=f, now=now) for f in plan.agent]
    handler("daemon-reload", "systemctl daemon-reload", plan.agent, now,
            name="systemctl daemon-reload (units changed)")
    handler("kube-apiserver-agent", "systemctl restart kube-apiserver-agent.socket", plan.agent, now,
            name="Restart the haproxy agent socket (changed)")
    unit_running(name="haproxy agent socket enabled and listening", unit="kube-apiserver-agent.socket", now=now)
    files = [plan.config, *plan.apiserver, *inputs]
    if roll_owed(SERVICE, files, now, binary_changes=binary_op.will_change):
        paths = [APISERVER_BINARY, *(f.path for f in files)]
        roll(name="Restart kube-apiserver, one master at a time, waiting for /readyz",
             service=SERVICE, script=_roll_script(cfg, paths),
             on_stop=rollsh.stopped_elsewhere(SERVICE, paths), _serial=True)
    unit_running(name="kube-apiserver enabled and running", unit="kube-apiserver.service", now=now)
