"""Lab lifecycle: up, down, status, health."""
from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import secrets
import string
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

from . import ssh
from .config import (ADDRESSES, ADDRESSES6, ADMIN_KUBECONFIG, ALLOWED_MASTERS, ALLOWED_NODES, APISERVER_BIN, BRIDGE,
                     CA_PEM, CACHE_DIR, DEFAULT_FAMILY, DEFAULT_MASTERS, DEFAULT_OS, ETCD_NAME, FAMILIES, GATEWAY,
                     GATEWAY6, HTTP_ADDRESS, HTTP_NAME, INTERFACE, K8S_VERSION, LAB_DIR, LABEL, LABEL_FILTER,
                     MASTER_NAMES, MASTERS, NETWORK, NODE_NAMES, OS_CHOICES, PROMETHEUS_ADDRESS, PROMETHEUS_DIR,
                     PROMETHEUS_NAME, PROMETHEUS_PORT, PROMETHEUS_URL, STATE_FILE, SUBNET, SUBNET6, VIP, VIP6,
                     VRRP_PASS_FILE, has_ipv6, primary_vip, subnets, suites_for)
from .images import BUILD_PREFIX, ensure_images, ensure_prometheus_image, etcd_tag
from .tools import detect_mirror, ensure_apiserver, ensure_kubectl, kubectl_ok, kubectl_path
from .util import (LabError, check_docker, container_info, container_state, docker, docker_exec,
                   has_lab_label, inspect, log, run)

# SYS_NICE: keepalived raises its own priority (`vrrp_priority` in keepalived.conf), as root on a host may
CAPS = ("SYS_ADMIN", "NET_ADMIN", "NET_RAW", "SYS_NICE")
# units whose failure means the lab itself is broken (others are reported, not fatal)
LAB_UNIT_PREFIXES = ("hakube",)
BOOT_TIMEOUT = 180


# --- state ----------------------------------------------------------------------------------------


def read_state() -> dict:
    try:
        return json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return {}


def _lab_dir() -> Path:
    LAB_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(LAB_DIR, 0o700)  # holds secrets
    return LAB_DIR


def _write_state(state: dict) -> None:
    _lab_dir()
    tmp = STATE_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    tmp.replace(STATE_FILE)


def masters_count() -> int:
    """Masters of the current lab (from .lab/state.json; DEFAULT_MASTERS if unknown)."""
    count = read_state().get("masters")
    return count if count in ALLOWED_MASTERS else DEFAULT_MASTERS


def family() -> str:
    """The current lab's address family (from .lab/state.json; ipv4 if unknown)."""
    recorded = read_state().get("family")
    return recorded if recorded in FAMILIES else DEFAULT_FAMILY


def master_names(count: int | None = None) -> tuple[str, ...]:
    return MASTER_NAMES[: count or masters_count()]


def nodes_count() -> int:
    """Nodes of the current lab (0 unless `up --nodes 1`)."""
    count = read_state().get("nodes")
    return count if count in ALLOWED_NODES else 0


def node_names(count: int | None = None) -> tuple[str, ...]:
    return NODE_NAMES[: nodes_count() if count is None else count]


def ensure_vrrp_pass() -> Path:
    """LAB_DIR/vrrp_auth_pass: 8 random alphanumerics, mode 0600, created once."""
    _lab_dir()
    if not VRRP_PASS_FILE.exists() or len(VRRP_PASS_FILE.read_text().strip()) != 8:
        alphabet = string.ascii_letters + string.digits
        password = "".join(secrets.choice(alphabet) for _ in range(8))
        fd = os.open(VRRP_PASS_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
    os.chmod(VRRP_PASS_FILE, 0o600)
    return VRRP_PASS_FILE


def vrrp_auth_pass() -> str:
    """The lab's keepalived auth_pass (created by `up`)."""
    return VRRP_PASS_FILE.read_text().strip()


@contextlib.contextmanager
def _lock():
    """Serialise up/down between concurrent callers (one lab per machine)."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / "lab.lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("another `python -m lab up/down` is running; waiting for it")
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


# --- network --------------------------------------------------------------------------------------


def _network_subnets(info: dict) -> list[str]:
    return [c["Subnet"] for c in ((info.get("IPAM") or {}).get("Config") or []) if c.get("Subnet")]


def network_matches(family_: str, info: dict | None) -> bool:
    """Whether the existing lab network ``info`` has the subnets ``family_`` needs (IPv4 alone, or
    IPv4 and the IPv6 ULA subnet)."""
    return info is not None and sorted(_network_subnets(info)) == sorted(subnets(family_))


def network_create_args(family_: str = DEFAULT_FAMILY) -> list[str]:
    """``docker network create`` arguments of the lab network for ``family_``."""
    six = ["--ipv6", "--subnet", SUBNET6, "--gateway", GATEWAY6] if has_ipv6(family_) else []
    return ["network", "create", "--driver", "bridge", "--subnet", SUBNET, "--gateway", GATEWAY, *six,
            "--label", f"{LABEL}=1", "-o", f"com.docker.network.bridge.name={BRIDGE}", NETWORK]


def ensure_network(family_: str = DEFAULT_FAMILY) -> None:
    ours = ipaddress.ip_network(SUBNET)
    existing = inspect("network", NETWORK)
    if existing is not None and not has_lab_label(existing):
        raise LabError(f"a Docker network named {NETWORK} exists but was not created by the lab "
                       f"(no {LABEL}=1 label)",
                       f"remove or rename it (`docker network rm {NETWORK}`) if it is unused, then retry")
    if existing is not None and not network_matches(family_, existing):
        raise LabError(f"the lab network {NETWORK} has subnet(s) {_network_subnets(existing)}, "
                       f"expected {', '.join(subnets(family_))}", "recreate it with `python -m lab down` then `up`")
    ids = docker("network", "ls", "-q").stdout.split()
    if ids:
        for info in json.loads(docker("network", "inspect", *ids).stdout):
            if info["Name"] == NETWORK:
                continue
            for subnet in _network_subnets(info):
                for mine in subnets(family_):
                    try:
                        overlaps = ipaddress.ip_network(subnet, strict=False).overlaps(ipaddress.ip_network(mine))
                    except (ValueError, TypeError):
                        continue
                    if overlaps:
                        raise LabError(
                            f"Docker network {info['Name']} ({subnet}) overlaps the lab subnet {mine}",
                            f"remove it (`docker network rm {info['Name']}`) if unused, or free {mine}")
    _warn_route_overlap(ours)
    if existing is None:
        log(f"creating network {NETWORK} ({', '.join(subnets(family_))})")
        docker(*network_create_args(family_))


def _warn_route_overlap(ours: ipaddress.IPv4Network) -> None:
    """Warn about host routes (VPNs, ...) that the lab bridge would shadow."""
    proc = run(["ip", "-o", "-4", "route", "show"], check=False)
    for line in proc.stdout.splitlines():
        dest = line.split()[0] if line.split() else ""
        if dest == "default" or f"dev {BRIDGE}" in line:
            continue
        try:
            net = ipaddress.ip_network(dest, strict=False)
        except ValueError:
            continue
        if net.prefixlen > 0 and net.overlaps(ours):
            log(f"warning: host route `{line.strip()}` overlaps the lab subnet {SUBNET}")


# --- containers ---------------------------------------------------------------------------------


def _check_names(names: tuple[str, ...]) -> None:
    for name in names:
        info = container_info(name)
        if info is not None and not has_lab_label(info):
            raise LabError(f"a container named {name} exists but was not created by the lab "
                           f"(no {LABEL}=1 label)",
                           f"remove or rename it (`docker rm -f {name}` if it is unused), then retry")


OS_LABEL = f"{LABEL}.os"  # the Debian suite a machine runs


def container_os(name: str) -> str | None:
    info = container_info(name)
    return ((info or {}).get("Config") or {}).get("Labels", {}).get(OS_LABEL) if info else None


def _start_container(name: str, image: str, role: str, suite: str | None = None,
                     family_: str = DEFAULT_FAMILY) -> None:
    info = container_info(name)
    if info is not None and suite and container_os(name) != suite:
        log(f"recreating {name}: it runs {container_os(name) or 'another image'}, the lab wants {suite}")
        docker("rm", "-f", "-v", name)
        info = None
    if info is not None:
        state = container_state(name)
        if info.get("Image") != inspect("image", image).get("Id"):
            log(f"note: {name} runs an older lab image; `down` + `up` to rebuild it")
        if state == "paused":
            log(f"unpausing {name}")
            docker("unpause", name)
        elif state != "running":
            log(f"starting {name}")
            docker("start", name)
        return
    log(f"creating {name} ({ADDRESSES[name]})")
    args = ["run", "-d", "--name", name, "--hostname", name,
            "--label", f"{LABEL}=1", "--label", f"{LABEL}.role={role}",
            *(["--label", f"{OS_LABEL}={suite}"] if suite else []),
            "--network", NETWORK, "--ip", ADDRESSES[name],
            *(["--ip6", ADDRESSES6[name]] if has_ipv6(family_) else []),
            # private cgroup namespace: bookworm's systemd 252 can't boot on a cgroup v1 host without it
            "--cgroupns", "private",
            "--tmpfs", "/run", "--tmpfs", "/run/lock", "--stop-signal", "RTMIN+3"]
    for cap in CAPS:
        args += ["--cap-add", cap]
    docker(*args, image, "/sbin/init")


def _failed_units(name: str) -> list[str]:
    out = docker_exec(name, "systemctl", "list-units", "--state=failed", "--plain", "--no-legend",
                      check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.split()]


def wait_booted(name: str, timeout: float = BOOT_TIMEOUT) -> str:
    """Wait for systemd in NAME; 'running', or 'degraded' when only non-lab units failed."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            proc = docker_exec(name, "systemctl", "is-system-running", "--wait", check=False,
                               timeout=max(1.0, left))
            state = proc.stdout.strip()
        except LabError:  # timed out while systemd was still starting
            state, left = "starting", -1
        # right after `docker run`, systemd may not answer yet: offline / no answer
        if state in ("", "offline", "unknown") and container_state(name) != "running":
            logs = docker("logs", "--tail", "20", name, check=False)
            raise LabError(f"{name} is {container_state(name)} instead of running:\n"
                           f"{(logs.stdout + logs.stderr).strip()}\n",
                           f"inspect with `docker logs {name}`; `python -m lab down` then `up` "
                           "recreates it")
        if state not in ("", "offline", "unknown", "starting", "initializing"):
            break
        if left <= 0:
            jobs = docker_exec(name, "systemctl", "list-jobs", "--no-pager", check=False).stdout.strip()
            raise LabError(f"{name}: systemd did not finish booting within {timeout:.0f}s "
                           f"(state {state or 'unknown'}):\n{jobs}\n",
                           f"inspect with `docker exec {name} systemctl status`")
        time.sleep(0.5)
    if state == "running":
        return state
    failed = _failed_units(name)
    if state == "degraded":
        ours = [u for u in failed if u.startswith(LAB_UNIT_PREFIXES)]
        if ours:
            raise LabError(f"{name}: lab unit(s) failed: {', '.join(ours)}",
                           f"see `docker exec {name} journalctl -u {ours[0]}`")
        log(f"{name}: systemd degraded; failed non-lab units: {', '.join(failed) or '?'}")
        return state
    raise LabError(f"{name}: systemd state is {state or 'unknown'} (failed: {', '.join(failed) or 'none'})",
                   f"inspect with `docker exec {name} systemctl status`")


# --- commands -------------------------------------------------------------------------------------


def up(masters: int | None = None, os_choice: str | None = None, nodes: int | None = None,
       family_: str | None = None) -> dict:
    """Bring the lab up (idempotent). Returns status().

    masters: 2 or 3; os_choice: bookworm, trixie or mixed (vm01 bookworm, the rest trixie); nodes:
    0 or 1 (vm04); family_: ipv4, ipv6 or dual (the network's subnets and the inventory's addresses).
    Each defaults to the current lab's, else 2 / trixie / 0 / ipv4. A lab whose network has other
    subnets than the family needs is recreated (its containers too: Docker cannot add a subnet to a
    network in use); between ipv6 and dual only the inventory changes."""
    started = time.monotonic()
    masters = masters or masters_count()
    if masters not in ALLOWED_MASTERS:
        raise LabError(f"--masters must be one of {ALLOWED_MASTERS}, not {masters}", "pick 2 or 3")
    os_choice = os_choice or read_state().get("os_choice") or DEFAULT_OS
    if os_choice not in OS_CHOICES:
        raise LabError(f"--os must be one of {', '.join(OS_CHOICES)}, not {os_choice}", "pick one of them")
    family_ = family_ or family()
    if family_ not in FAMILIES:
        raise LabError(f"--family must be one of {', '.join(FAMILIES)}, not {family_}", "pick one of them")
    nodes = nodes_count() if nodes is None else nodes
    if nodes not in ALLOWED_NODES:
        raise LabError(f"--nodes must be one of {ALLOWED_NODES}, not {nodes}", "pick 0 or 1")
    check_docker()
    with _lock():
        mirror = detect_mirror()
        ensure_apiserver(mirror)
        ensure_kubectl(mirror)
        wanted = master_names(masters) + node_names(nodes)
        suites = suites_for(os_choice, wanted)
        bases, etcd_image = ensure_images(mirror, tuple(sorted(set(suites.values()))))
        _check_names((*MASTER_NAMES, *NODE_NAMES, ETCD_NAME, HTTP_NAME))
        if not STATE_FILE.exists() and any(container_info(n) is not None for n in (*MASTER_NAMES, ETCD_NAME)):
            # Its masters hold another checkout's CA, which this checkout's deploy would refuse to
            # replace (rightly): a lab belongs to the checkout that made it.
            log(f"the running lab was made by another checkout (no {STATE_FILE} here): recreating it")
            _remove_lab()
        current = inspect("network", NETWORK)
        if current is not None and has_lab_label(current) and not network_matches(family_, current):
            log(f"recreating the lab for the {family_} family (its network has {_network_subnets(current)}): "
                "every container starts afresh")
            _remove_lab()
        ensure_network(family_)
        for name in (*MASTER_NAMES[masters:], *NODE_NAMES[nodes:]):  # scale down: drop surplus machines
            if container_info(name) is not None:
                log(f"removing {name} (lab now has {masters} masters, {nodes} nodes)")
                docker("rm", "-f", name)
        for name in wanted:
            _start_container(name, bases[suites[name]], "master" if name in MASTER_NAMES else "node", suites[name],
                             family_)
        _start_container(ETCD_NAME, etcd_image, "etcd", family_=family_)
        for name in (*wanted, ETCD_NAME):
            wait_booted(name)
        ssh.ensure(wanted)
        ensure_vrrp_pass()
        from .etcd import ensure_etcd

        ensure_etcd(family_)
        _write_state({"masters": masters, "nodes": nodes, "os_choice": os_choice, "os": suites, "family": family_,
                      "images": {"base": bases, "etcd": etcd_image}, "mirror": mirror})
    log(f"lab up: {', '.join(f'{n}={ADDRESSES[n]}' for n in (*wanted, ETCD_NAME))}, "
        f"VIP {primary_vip(family_)}{f' and {VIP6}' if family_ == 'dual' else ''}, family {family_} "
        f"({time.monotonic() - started:.1f}s)")
    return status()


def down() -> None:
    """Remove the lab's containers and network (label hakube.lab=1); images and caches stay."""
    check_docker()
    with _lock():
        _remove_lab()
    log("lab down")


def _remove_lab() -> None:
    ids = docker("ps", "-aq", "--filter", LABEL_FILTER).stdout.split()
    ids += docker("ps", "-aq", "--filter", f"name=^{BUILD_PREFIX}").stdout.split()
    ids = list(dict.fromkeys(ids))
    if ids:
        log(f"removing {len(ids)} lab container(s)")
        docker("rm", "-f", "-v", *ids)
    nets = docker("network", "ls", "-q", "--filter", LABEL_FILTER).stdout.split()
    if nets:
        log(f"removing network {NETWORK}")
        docker("network", "rm", *nets)


def vip_holders(names: tuple[str, ...] | None = None, vip: str | None = None) -> list[str]:
    """Running masters whose eth0 carries the VIP (more than one = split brain); ``vip``: another
    address than the family's primary VIP (VIP6 on a dual-stack lab)."""
    vip = vip or primary_vip(family())
    holders = []
    for name in names or MASTER_NAMES:
        if container_state(name) != "running":
            continue  # a paused container can't be asked
        proc = docker_exec(name, "ip", "-o", "-6" if ":" in vip else "-4", "addr", "show", "dev", INTERFACE,
                           check=False, timeout=20)
        if proc.returncode == 0 and any(w.split("/")[0] == vip for w in proc.stdout.split()):
            holders.append(name)
    return holders


def vip_holder() -> str | None:
    """The master currently holding the VIP, or None."""
    holders = vip_holders()
    return holders[0] if holders else None


def status() -> dict:
    check_docker()
    names = list(master_names()) + list(node_names()) + [ETCD_NAME]
    for extra in (*MASTER_NAMES, *NODE_NAMES, HTTP_NAME, PROMETHEUS_NAME):  # lab machines beyond the recorded count, too
        if extra not in names and container_info(extra) is not None:
            names.append(extra)
    family_ = family()
    containers = {n: {"address": ADDRESSES[n], **({"address6": ADDRESSES6[n]} if has_ipv6(family_) and n in ADDRESSES6 else {}),
                      "state": container_state(n)} for n in names}
    six = {"vip6": VIP6, "vip6_holders": vip_holders(vip=VIP6)} if family_ in ("ipv6", "dual") else {}
    return {
        "containers": containers,
        "family": family_,
        "vip": primary_vip(family_),
        **six,
        "vip_holder": vip_holder(),
        "kubeconfig": str(ADMIN_KUBECONFIG) if ADMIN_KUBECONFIG.exists() else None,
        "ca": str(CA_PEM) if CA_PEM.exists() else None,
        "masters": masters_count(),
        "nodes": nodes_count(),
        "os": {n: container_os(n) for n in names if n in (*MASTER_NAMES, *NODE_NAMES)},
        "ssh": {"user": ssh.info()["user"], "key": ssh.info()["key"]},
        # `python -m lab prometheus up` (test_16_metrics): its URL while it runs, else null
        "prometheus": PROMETHEUS_URL if container_state(PROMETHEUS_NAME) == "running" else None,
    }


# --- the on-demand HTTP server (checked-download tests) ----------------------------------------------


def host_arch() -> str:
    """This machine's architecture in Kubernetes' download naming (amd64, arm64)."""
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def http_up() -> str:
    """Start the `http` container (busybox httpd from the etcd image) serving the lab's kube-apiserver
    at the default download URL's path; returns the URL template for ``kube_apiserver_url``."""
    check_docker()
    path = f"/srv/v{K8S_VERSION.lstrip('v')}/bin/linux/{host_arch()}/kube-apiserver"
    if container_state(HTTP_NAME) != "running":
        docker("rm", "-f", HTTP_NAME, check=False)
        image = read_state().get("images", {}).get("etcd") or etcd_tag(detect_mirror())
        log(f"starting {HTTP_NAME} ({HTTP_ADDRESS}): serves {APISERVER_BIN.name} over HTTP")
        docker("run", "-d", "--name", HTTP_NAME, "--hostname", HTTP_NAME,
               "--label", f"{LABEL}=1", "--label", f"{LABEL}.role=http",
               "--network", NETWORK, "--ip", HTTP_ADDRESS,
               "-v", f"{APISERVER_BIN}:{path}:ro", image, "busybox", "httpd", "-f", "-p", "80", "-h", "/srv")
    return f"http://{HTTP_ADDRESS}/v{{version}}/bin/linux/{{arch}}/kube-apiserver"


def netshell(name: str, *cmd: str, check: bool = False, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run busybox ``cmd`` in ``name``'s network namespace (from the etcd image), so that the
    masters' minimal image needs no network tools of its own: `netshell("vm01", "ping", ...)`."""
    image = read_state().get("images", {}).get("etcd") or etcd_tag(detect_mirror())
    return docker("run", "--rm", "--network", f"container:{name}", image, "busybox", *cmd, check=check,
                  timeout=timeout)


def http_down() -> None:
    docker("rm", "-f", HTTP_NAME, check=False)


# --- the on-demand Prometheus (test_16_metrics) ----------------------------------------------------

#: the lab's Prometheus: fast scrapes and evaluations, and every alert's `for:` this short
PROMETHEUS_INTERVAL = "2s"
PROMETHEUS_FOR = "2s"
PROMETHEUS_CONFIG = "/etc/hakube-prometheus"  # PROMETHEUS_DIR, mounted read-only in the container


def prometheus_config(names: tuple[str, ...], haproxy_port: int = 8405, node_port: int = 9100) -> dict:
    """prometheus.yml (JSON is YAML) scraping ``names``' exporters at the deploy's default ports,
    with the shipped rules at short ``for:`` (``rules.yml`` beside it)."""
    def targets(port: int) -> list[dict]:
        return [{"targets": [f"{MASTERS[n]}:{port}" for n in names]}]

    return {
        "global": {"scrape_interval": PROMETHEUS_INTERVAL, "scrape_timeout": "1s",
                   "evaluation_interval": PROMETHEUS_INTERVAL},
        "rule_files": [f"{PROMETHEUS_CONFIG}/rules.yml"],
        "scrape_configs": [{"job_name": "hakube-haproxy", "static_configs": targets(haproxy_port)},
                           {"job_name": "hakube-node", "static_configs": targets(node_port)}],
    }


def _prometheus_files(names: tuple[str, ...]) -> bool:
    """Write PROMETHEUS_DIR's config and rules; True when either changed."""
    from hakube.metrics import rules_text

    _lab_dir()
    PROMETHEUS_DIR.mkdir(mode=0o755, exist_ok=True)
    changed = False
    for name, text in (("prometheus.yml", json.dumps(prometheus_config(names), indent=2) + "\n"),
                       ("rules.yml", rules_text(PROMETHEUS_FOR))):
        path = PROMETHEUS_DIR / name
        if not path.exists() or path.read_text() != text:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.chmod(0o644)
            tmp.replace(path)
            changed = True
    return changed


def prometheus_ready(timeout: float = 2.0) -> bool:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # lab address: never a proxy
    try:
        with opener.open(f"{PROMETHEUS_URL}/-/ready", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def prometheus_up(timeout: float = 90) -> str:
    """Start the `prometheus` container (idempotent): Debian's Prometheus scraping every master of
    the current lab (haproxy's exporter and the node exporter), with the shipped alerts at
    ``for: 2s``; a changed config is reloaded. Returns its URL once it answers /-/ready."""
    check_docker()
    _check_names((PROMETHEUS_NAME,))
    changed = _prometheus_files(master_names())
    if container_state(PROMETHEUS_NAME) == "running":
        if changed:
            log(f"{PROMETHEUS_NAME}: config changed, reloading")
            docker("kill", "-s", "HUP", PROMETHEUS_NAME)
    else:
        docker("rm", "-f", PROMETHEUS_NAME, check=False)
        image = ensure_prometheus_image(read_state().get("mirror") or detect_mirror())
        log(f"starting {PROMETHEUS_NAME} ({PROMETHEUS_ADDRESS}): scrapes {', '.join(master_names())}")
        docker("run", "-d", "--name", PROMETHEUS_NAME, "--hostname", PROMETHEUS_NAME,
               "--label", f"{LABEL}=1", "--label", f"{LABEL}.role=prometheus",
               "--network", NETWORK, "--ip", PROMETHEUS_ADDRESS,
               "-v", f"{PROMETHEUS_DIR}:{PROMETHEUS_CONFIG}:ro", image,
               "/usr/bin/prometheus", f"--config.file={PROMETHEUS_CONFIG}/prometheus.yml",
               "--storage.tsdb.path=/var/lib/prometheus/lab", "--storage.tsdb.retention.time=1d",
               f"--web.listen-address={PROMETHEUS_ADDRESS}:{PROMETHEUS_PORT}")
    deadline = time.monotonic() + timeout
    while not prometheus_ready():
        if container_state(PROMETHEUS_NAME) != "running" or time.monotonic() > deadline:
            logs = docker("logs", "--tail", "20", PROMETHEUS_NAME, check=False)
            raise LabError(f"{PROMETHEUS_NAME} did not become ready at {PROMETHEUS_URL}:\n"
                           f"{(logs.stdout + logs.stderr).strip()}\n", f"see `docker logs {PROMETHEUS_NAME}`")
        time.sleep(0.5)
    return PROMETHEUS_URL


def prometheus_down() -> None:
    docker("rm", "-f", PROMETHEUS_NAME, check=False)


def _lab_address(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip in ipaddress.ip_network(SUBNET) or ip in ipaddress.ip_network(SUBNET6)


def kubectl_env() -> dict:
    """Environment for kubectl against the lab: no proxies, no ambient KUBECONFIG."""
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "kubeconfig")}
    env["NO_PROXY"] = env["no_proxy"] = f"{SUBNET},{SUBNET6},127.0.0.1,::1,localhost"
    return env


def kubeconfig_server(kubeconfig: Path = ADMIN_KUBECONFIG) -> str:
    proc = run([kubectl_path(), "--kubeconfig", kubeconfig, "config", "view", "--minify",
                "-o", "jsonpath={.clusters[0].cluster.server}"], check=False, env=kubectl_env())
    return proc.stdout.strip()


def kubectl(*args: str, kubeconfig: Path = ADMIN_KUBECONFIG, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the lab's kubectl 1.20.2 with KUBECONFIG (refuses servers outside the lab)."""
    server = kubeconfig_server(kubeconfig)
    host = urlsplit(server).hostname or ""
    if not _lab_address(host):
        raise LabError(f"{kubeconfig} points at {server or 'no server'}, which is not a lab address",
                       f"use a kubeconfig whose server is the VIP {VIP} (or another {SUBNET} address)")
    return run([kubectl_path(), "--kubeconfig", kubeconfig, "--request-timeout", "10s", *args],
               check=check, timeout=timeout, env=kubectl_env())


def health() -> str:
    """GET /readyz through the kubeconfig's server (normally the VIP); raise unless 'ok'."""
    if not ADMIN_KUBECONFIG.exists():
        raise LabError(f"no admin kubeconfig at {ADMIN_KUBECONFIG}", "run the deploy against the lab first")
    if not kubectl_ok():
        raise LabError(f"kubectl 1.20.2 missing at {kubectl_path()}", "run `python -m lab up`")
    server = kubeconfig_server()
    if (urlsplit(server).hostname or "") != primary_vip(family()):
        log(f"note: {ADMIN_KUBECONFIG} points at {server}, not at the VIP {primary_vip(family())}")
    proc = kubectl("get", "--raw", "/readyz", check=False)
    answer = (proc.stdout or proc.stderr).strip()
    if proc.returncode != 0 or answer != "ok":
        verbose = kubectl("get", "--raw", "/readyz?verbose", check=False)
        detail = (verbose.stdout or verbose.stderr).strip()
        raise LabError(f"kube-apiserver at {server} is not ready: {answer}\n{detail}\n",
                       "check haproxy/keepalived/kube-apiserver on the masters")
    return answer
