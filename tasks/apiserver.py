"""Step 3 — kube-apiserver: shared config, per-master flags, systemd unit, binary, rolling restart.

Tutorial: 配置kube-apiserver运行参数 / 配置kube-apiserver服务 / 启动kube-apiserver.
/etc/kubernetes/config goes to every host (masters and nodes), the rest to masters only. The
apiserver restarts only when something it reads changed, one master at a time: the master is
first drained (its haproxy agent answers "drain", so no haproxy sends it new connections), then
restarted; the next master waits until this one answers /readyz and haproxy has put it back.
"""

import shlex

from pyinfra.api import deploy

from hakube import flags
from hakube.ops import binary, handler, managed_file, unit_running
from hakube.render import AGENT_STATE, APISERVER_BINARY


def _restart_and_wait(cfg) -> str:
    c, ssl = cfg.cluster, flags.PATHS
    url = f"https://{cfg.bind_address}:{c.apiserver_port}/readyz"
    curl = " ".join(
        shlex.quote(a)
        for a in ("curl", "-sf", "-o", "/dev/null", "--max-time", "2", "--cacert", ssl.cert("ca"),
                  "--cert", ssl.cert("apiserver-kubelet-client"), "--key", ssl.key("apiserver-kubelet-client"), url)
    )
    # After /readyz is ok, haproxy needs `rise` good checks before this master takes traffic again.
    back_in_rotation = (c.haproxy_check_rise + 1) * c.haproxy_check_interval_ms / 1000
    state = AGENT_STATE
    return (
        f"trap 'rm -f {state}' EXIT; "  # never leave a master drained, whatever happens
        f"echo drain > {state} && sleep 1.5 && "  # agent-inter is 0.5 s: every haproxy has seen it
        "systemctl restart kube-apiserver && "
        f"for i in $(seq 1 120); do {curl} && break; sleep 1; done && {curl} && rm -f {state} && "
        f"{{ systemctl is-active -q haproxy && sleep {back_in_rotation:g} || true; }}"
    )


@deploy("kube-apiserver")
def apply(cfg, plan, now, restart_on=()):
    config = managed_file(name="Install /etc/kubernetes/config", file=plan.config, now=now)
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
        notify=("kube-apiserver",),
    )
    env, unit = (managed_file(name=f"Install {f.path}", file=f, now=now) for f in plan.apiserver)
    agent = [managed_file(name=f"Install {f.path}", file=f, now=now) for f in plan.agent]
    handler("daemon-reload", "systemctl daemon-reload", [unit, *agent], now,
            name="systemctl daemon-reload (units changed)")
    handler("kube-apiserver-agent", "systemctl restart kube-apiserver-agent.socket", agent, now,
            name="Restart the haproxy agent socket (changed)")
    unit_running(name="haproxy agent socket enabled and listening", unit="kube-apiserver-agent.socket", now=now)
    handler("kube-apiserver", _restart_and_wait(cfg), [config, env, unit, binary_op, *restart_on], now,
            name="Restart kube-apiserver, one master at a time, waiting for /readyz", _serial=True)
    unit_running(name="kube-apiserver enabled and running", unit="kube-apiserver.service", now=now)
