"""Step 3 — kube-apiserver: shared config, per-master flags, systemd unit, binary, rolling restart.

Tutorial: 配置kube-apiserver运行参数 / 配置kube-apiserver服务 / 启动kube-apiserver.
/etc/kubernetes/config goes to every host (masters and nodes), the rest to masters only. The
apiserver restarts only when something it reads changed, one master at a time, and the next
master waits until this one answers /readyz and haproxy has put it back into rotation.
"""

import shlex

from pyinfra.api import deploy
from pyinfra.operations import server, systemd
from pyinfra.operations.util import any_changed

from hakube import flags
from hakube.ops import any_will_change, binary, managed_file
from hakube.render import APISERVER_BINARY


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
    return (
        "systemctl restart kube-apiserver && "
        f"for i in $(seq 1 120); do {curl} && break; sleep 1; done && {curl} && "
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
    )
    env, unit = (managed_file(name=f"Install {f.path}", file=f, known_paths=plan.paths) for f in plan.apiserver)
    if any_will_change(unit):
        systemd.daemon_reload(name="systemctl daemon-reload (unit changed)", _if=any_changed(unit))
    inputs = (config, env, unit, binary_op, *restart_on)
    if any_will_change(*inputs):
        server.shell(
            name="Restart kube-apiserver, one master at a time, waiting for /readyz",
            commands=[_restart_and_wait(cfg)],
            _serial=True,
            _if=any_changed(*inputs),
        )
    systemd.service(name="kube-apiserver enabled and running", service="kube-apiserver", running=True, enabled=True)
