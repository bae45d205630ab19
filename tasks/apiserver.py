"""Step 3 — kube-apiserver: shared config, per-master flags, systemd unit, binary, rolling restart.

Tutorial: 配置kube-apiserver运行参数 / 配置kube-apiserver服务 / 启动kube-apiserver.
/etc/kubernetes/config goes to every host (masters and nodes), the rest to masters only. The
apiserver restarts only when something it reads changed, one master at a time: the master is
first drained (its haproxy agent answers "drain", so no haproxy sends it new connections), then
restarted; the next master waits until this one answers /readyz and haproxy has put it back.
"""

import shlex

from pyinfra.api import deploy
from pyinfra.operations import systemd

from hakube import flags
from hakube.ops import binary, handler, managed_file
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
def apply(cfg, plan, restart_on=()):
    config = managed_file(name="Install /etc/kubernetes/config", file=plan.config, known_paths=plan.paths)
    if not cfg.is_master:
        return
    c = cfg.cluster
    binary_op = binary(
        name=f"Install kube-apiserver {c.kube_version}",
        dest=APISERVER_BINARY,
        local_path=c.kube_apiserver_binary,
        url=None if c.kube_apiserver_binary else c.download_url,
        sha256=c.kube_apiserver_sha256,
        known_paths=plan.paths,
        notify=("kube-apiserver",),
    )
    env, unit = (managed_file(name=f"Install {f.path}", file=f, known_paths=plan.paths) for f in plan.apiserver)
    agent = [managed_file(name=f"Install {f.path}", file=f, known_paths=plan.paths) for f in plan.agent]
    handler("daemon-reload", "systemctl daemon-reload", [unit, *agent], plan.paths,
            name="systemctl daemon-reload (units changed)")
    handler("kube-apiserver-agent", "systemctl restart kube-apiserver-agent.socket", agent, plan.paths,
            name="Restart the haproxy agent socket (changed)")
    systemd.service(name="haproxy agent socket enabled and listening", service="kube-apiserver-agent.socket",
                    running=True, enabled=True)
    handler("kube-apiserver", _restart_and_wait(cfg), [config, env, unit, binary_op, *restart_on], plan.paths,
            name="Restart kube-apiserver, one master at a time, waiting for /readyz", _serial=True)
    systemd.service(name="kube-apiserver enabled and running", service="kube-apiserver", running=True, enabled=True)
