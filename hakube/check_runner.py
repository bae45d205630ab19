"""The runner of ``make check`` (``hakube.check``): gather, read only, then judge.

The inventory is loaded by pyinfra's own CLI loader (``pyinfra_cli.inventory.make_inventory``), so
``inventory.py`` means exactly what it means to ``pyinfra inventory.py deploy.py``: groups, group
data, ``@docker/NAME`` and ``@ssh`` hosts, ``_sudo`` and the other connector arguments from the
data (facts apply them as operations do). The data is validated by ``hakube.context`` like the
deploy's, the desired files are rendered by ``hakube.tasks.desired_state`` from the PKI as it is
in ``pki_dir`` (``hakube.tasks.certs.load_pki``: nothing is created or rewritten there).

Per host two facts run, both read-only commands: the deploy's own snapshot (``hakube.facts``:
sha256/mode/owner of every managed file, units, ...) and ``hakube.health.HostStatusFact``. No
operation is ever planned or executed. Then one GET /readyz through the VIP from this machine.

``@docker/NAME`` is never started: pyinfra's docker connector starts a stopped container (and at
the end commits and removes it) or runs a container from an image of that name. Here a docker
host is used only while it is a running, unpaused container; otherwise it is reported as not
reachable, and pyinfra's connect is not called for it.
"""

from __future__ import annotations

import http.client
import logging
import os
import ssl
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import gevent
from pyinfra import logger
from pyinfra.api import Config, State
from pyinfra.api.exceptions import ConnectError, PyinfraError
from pyinfra.api.facts import get_fact
from pyinfra.connectors.docker import DockerConnector
from pyinfra.context import ctx_config, ctx_host, ctx_inventory, ctx_state

from . import health, tasks
from .context import inventory_settings
from .facts import HostSnapshot, Needs
from .paths import PATHS
from .probes import readyz_url, stats_url
from .tasks import certs as certs_step

FACT_TIMEOUT = 60  # seconds per remote command
API_TIMEOUT = 3.0


class _Snapshot(HostSnapshot):
    """The deploy's snapshot, with ``None`` (not an empty host) when its command failed."""

    @staticmethod
    def default():
        return None


def _log(message: str) -> None:
    print(f"check: {message}", file=sys.stderr, flush=True)


def load(inventory_path: str) -> tuple[State, object]:
    """pyinfra's State and the inventory, loaded as ``pyinfra INVENTORY ...`` loads it.

    Importing ``pyinfra_cli`` applies gevent's monkey patching, as the ``pyinfra`` command has it
    (hosts are then asked in parallel); it is imported here, not when this module is imported.
    """
    from pyinfra_cli.inventory import make_inventory
    os.environ.setdefault("PYINFRA_PROGRESS", "off")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("check: pyinfra: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
    cwd = os.getcwd()
    state = State(check_for_changes=False)
    state.cwd = cwd
    ctx_state.set(state)
    config = Config()
    ctx_config.set(config)
    inventory = make_inventory(inventory_path, cwd=cwd, override_data={})
    ctx_inventory.set(inventory)
    state.init(inventory, config)
    return state, inventory


# --- connecting without side effects -----------------------------------------------------------------


def docker_problem(docker_cmd: str, identifier: str) -> str | None:
    """Why ``identifier`` is not a running, unpaused container (``docker container inspect``, read only)."""
    try:
        proc = subprocess.run([docker_cmd, "container", "inspect", "-f", "{{.State.Running}} {{.State.Paused}}",
                               identifier], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"cannot ask {docker_cmd} about container {identifier}: {e}"
    if proc.returncode != 0:
        return f"no container {identifier} ({docker_cmd} container inspect: {proc.stderr.strip() or 'failed'})"
    running, _, paused = proc.stdout.strip().partition(" ")
    if paused == "true":
        return f"container {identifier} is paused"
    if running != "true":
        return f"container {identifier} is not running"
    return None


def connect(host) -> str | None:
    """Connect ``host`` without changing anything anywhere; return why it failed, or None."""
    connector = host.connector
    if isinstance(connector, DockerConnector):
        ident = host.data.get("docker_identifier") or host.name.rsplit("/", 1)[-1]
        problem = docker_problem(connector.docker_cmd, ident)
        if problem:
            return problem
        # What DockerConnector.connect does for a running container, minus its start/commit/remove paths.
        connector.local.connect()
        connector.container_id, connector.no_stop = ident, True
        host.connected = True
        return None
    try:
        host.connect(show_errors=False, raise_exceptions=True)
    except ConnectError as e:
        return f"cannot connect: {e}"
    except Exception as e:  # noqa: BLE001 - a connector's own failure is this host's, not the check's
        return f"cannot connect: {type(e).__name__}: {e}"
    return None if host.connected else "cannot connect"


def _fact(state, host, cls, **kwargs):
    with ctx_host.use(host):
        return get_fact(state, host, cls, kwargs={**kwargs, "_timeout": FACT_TIMEOUT}, apply_failed_hosts=False)


# --- one host --------------------------------------------------------------------------------------


def observe(state, host, cfg, want: dict, needs: Needs) -> health.Observed:
    """Both read-only facts of one host."""
    problem = connect(host)
    if problem:
        return health.Observed(error=problem)
    paths = tuple(sorted(set(tasks.managed_paths(want)) | set(needs.paths)))
    try:
        facts = _fact(state, host, _Snapshot, paths=paths, units=needs.units, users=needs.users,
                      sysctls=needs.sysctls, commands=needs.commands, kube_objects=(), kubeconfig=PATHS.kubeconfig)
        if facts is None:
            return health.Observed(error="the snapshot command failed")
        c = cfg.cluster
        master = cfg.is_member  # a leaving master: only its units, files and addresses are looked at
        status = _fact(
            state, host, health.HostStatusFact,
            binary=PATHS.apiserver_binary,
            readyz_url=readyz_url(cfg.bind_address, c.apiserver_port) if master else None,
            ca=PATHS.cert("ca"), cert=PATHS.cert("apiserver-kubelet-client"), key=PATHS.key("apiserver-kubelet-client"),
            stats_url=stats_url(c.haproxy_stats_port) if master else None,
            interface=cfg.vrrp_interface, cert_paths=health.cert_paths(want), kubeconfig=PATHS.kubeconfig,
        )
    except (PyinfraError, OSError, gevent.Timeout) as e:
        return health.Observed(error=f"{type(e).__name__}: {e}")
    if status is None or not status.complete:
        return health.Observed(facts=facts, error="the status command failed")
    return health.Observed(facts=facts, status=status)


# --- from this machine -------------------------------------------------------------------------------


def api_via_vip(cluster, timeout: float = API_TIMEOUT) -> tuple[bool, str]:
    """GET https://VIP:lb_port/readyz with pki_dir's admin client certificate, trusting its CA.

    http.client: no proxy from the environment is used. Reads the PKI, writes nothing.
    """
    pki_dir = Path(cluster.pki_dir)
    ca, cert, key = pki_dir / "ca.pem", pki_dir / "admin.pem", pki_dir / "admin-key.pem"
    missing = [p.name for p in (ca, cert, key) if not p.is_file()]
    if missing:
        return False, f"not asked: {pki_dir} has no {', '.join(missing)}"
    try:
        ctx = ssl.create_default_context(cafile=str(ca))
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError, ValueError) as e:
        return False, f"not asked: the admin client certificate in {pki_dir} does not load: {e}"
    conn = http.client.HTTPSConnection(cluster.vip, cluster.lb_port, timeout=timeout, context=ctx)
    try:
        conn.request("GET", "/readyz")
        resp = conn.getresponse()
        body = resp.read(4096).decode(errors="replace").strip()
    except (OSError, http.client.HTTPException, ssl.SSLError) as e:
        return False, f"{type(e).__name__}: {e}"
    finally:
        conn.close()
    if resp.status == 200 and body == "ok":
        return True, "ok"
    return False, f"HTTP {resp.status}: {body.splitlines()[0] if body else ''}".rstrip(": ")


# --- everything ------------------------------------------------------------------------------------


def collect(inventory_path: str, api_check=api_via_vip) -> dict:
    """The check's JSON document for ``inventory_path`` (``hakube.health.evaluate``)."""
    from . import pki as pkimod
    from .hostfiles import binary_sha256

    try:
        state, inventory = load(inventory_path)
    except Exception as e:  # noqa: BLE001 - the inventory file's own error, reported as broken
        return health.failure(f"cannot load the inventory {inventory_path}: {type(e).__name__}: {e}")
    hosts = list(inventory)
    if not hosts:
        return health.failure(f"the inventory {inventory_path} has no hosts")
    try:
        settings = inventory_settings(inventory)
    except PyinfraError as e:
        return health.failure(str(e))
    cluster = next(iter(settings.values())).cluster

    master_cfg = next(cfg for cfg in settings.values() if cfg.is_member)
    try:
        read = certs_step.load_pki(master_cfg)
        pki, view = read.pki, health.PKIView(cluster.pki_dir, None, read.reissue)
    except pkimod.PKIError as e:
        pki, view = None, health.PKIView(cluster.pki_dir, str(e))
    placeholder = certs_step.placeholder()

    wants, scan = {}, {}  # the desired files (None: no PKI to render them), the paths to look at
    for name, cfg in settings.items():
        if not cfg.is_member:  # a node, or a leaving master (it should have no file of the deploy's)
            wants[name] = scan[name] = tasks.desired_state(cfg, None)
        else:
            wants[name] = tasks.desired_state(cfg, pki) if pki is not None else None
            scan[name] = wants[name] or tasks.desired_state(cfg, placeholder)

    try:
        binary_sha = binary_sha256(cluster.kube_apiserver_binary, cluster.kube_apiserver_sha256)
    except OSError as e:
        _log(f"the apiserver binary's content is not compared: {e}")
        binary_sha = None

    _log(f"checking {', '.join(h.name for h in hosts)} (read only)")
    observed: dict = {}

    def one(host):
        cfg = settings[host.name]
        needs = Needs()
        for step in tasks.steps_for(cfg):
            needs |= step.NEEDS
        needs = replace(needs, kube_objects=())  # the check asks the API itself, through the VIP
        observed[host.name] = observe(state, host, cfg, scan[host.name], needs)

    try:
        greenlets = [state.pool.spawn(one, h) for h in hosts]
        gevent.joinall(greenlets)
        for g, h in zip(greenlets, hosts):
            if not g.successful():
                observed[h.name] = health.Observed(error=f"{type(g.exception).__name__}: {g.exception}")
        api = api_check(cluster)
    finally:
        for h in hosts:
            if h.connected:
                try:
                    h.disconnect()
                except Exception as e:  # noqa: BLE001
                    _log(f"{h.name}: disconnect: {e}")
    return health.evaluate(settings, observed, wants, pki=view, api=api, binary_sha=binary_sha)
