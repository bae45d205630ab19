"""hakube.render: every file the deploy manages, rendered locally from Settings and a real PKI."""

from __future__ import annotations

import base64
import json
import os
import pwd
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from hakube import apiserver_args, render, tasks
from hakube.paths import PATHS
from hakube.render import DesiredFile
from hakube.roll import pending_marker
from hakube.tasks import apiserver, certs, haproxy, keepalived, kubeconfig
from hakube.tasks.certs import ensure_pki


class Plan:
    """Every desired file of one host, by step (``tasks.desired_state``), with shortcuts by step."""

    def __init__(self, want: dict):
        self.want = want

    def step(self, name: str) -> list[DesiredFile]:
        return list(self.want.get(name, {}).values())

    @property
    def files(self) -> list[DesiredFile]:
        return [f for step in self.want.values() for f in step.values()]

    @property
    def paths(self) -> tuple[str, ...]:
        return tasks.managed_paths(self.want)

    certs = property(lambda self: self.step(certs.KEY))
    audit = property(lambda self: self.step(tasks.audit.KEY))
    keepalived = property(lambda self: self.step(keepalived.KEY))
    haproxy = property(lambda self: self.step(haproxy.KEY))
    kubeconfig = property(lambda self: self.step(kubeconfig.KEY))
    apiserver = property(lambda self: [self.want[apiserver.KEY][r] for r in ("flags", "unit") if r in self.want[apiserver.KEY]])
    agent = property(lambda self: [self.want[apiserver.KEY][r] for r in ("agent-socket", "agent-service") if r in self.want[apiserver.KEY]])


def plan(cfg, p) -> Plan:
    return Plan(tasks.desired_state(cfg, p))

from .conftest import AUTH_PASS, ENV, IS_ROOT, VIP, make_inventory, needed

# haproxy -c and keepalived -t check the rendered configs for real. `make test` installs them
# (`make host-deps`); one missing fails the test under CI=true and skips it elsewhere. They live in
# /usr/sbin, which is not on a non-root user's PATH.
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", os.defpath), "/usr/sbin", "/sbin"])


def _needed(found, message: str):
    return needed(found, message + " (`make host-deps` installs haproxy, keepalived and procps)")


def _tool(name: str) -> str:
    return _needed(shutil.which(name, path=SBIN_PATH), f"{name} is not installed")


def _vrrp_interface_here() -> str | None:
    """A network interface of this machine that keepalived accepts for VRRP (it refuses one that
    does not exist, and `lo`: "cannot use a loopback interface"): the default route's, else the
    first Ethernet-type one."""
    try:
        rows = [line.split() for line in Path("/proc/net/route").read_text().splitlines()[1:]]
        default = next((r[0] for r in rows if len(r) > 1 and r[1] == "00000000"), None)
    except OSError:
        default = None
    net = Path("/sys/class/net")
    ether = []
    for iface in sorted(p.name for p in net.iterdir()) if net.is_dir() else []:
        try:
            if (net / iface / "type").read_text().strip() == "1":  # ARPHRD_ETHER (lo is 772)
                ether.append(iface)
        except OSError:
            continue
    return default if default in ether else next(iter(ether), None)


@pytest.fixture(scope="session")
def two(tmp_path_factory: pytest.TempPathFactory):
    """(settings by host, ClusterPKI, pki_dir) for 2 masters + 1 node, kube 1.36."""
    base = tmp_path_factory.mktemp("render2")
    s = make_inventory(base, masters=2).load()
    return s, ensure_pki(s["m1"]), base / "pki"


@pytest.fixture(scope="session")
def three(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("render3")
    s = make_inventory(base, masters=3).load()
    return s, ensure_pki(s["m1"])


@pytest.fixture(scope="session")
def plans(two):
    s, p, _ = two
    return {name: plan(cfg, p if cfg.is_master else None) for name, cfg in s.items()}


def _files(pl: Plan) -> list[DesiredFile]:
    return pl.files


def _file(pl: Plan, path: str) -> DesiredFile:
    hits = [f for f in _files(pl) if f.path == path]
    assert len(hits) == 1, (path, [f.path for f in _files(pl)])
    return hits[0]


def _text(pl: Plan, path: str) -> str:
    return _file(pl, path).content.decode()


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def _block(text: str, header: str) -> str:
    """Body of a keepalived ``header { ... }`` block (nested braces allowed)."""
    start = text.index(header + " {") + len(header) + 2
    depth, i = 1, start
    while depth:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[start : i - 1]


def _seconds(duration: str) -> float:
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d)", duration)
    assert m, duration
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def _env_file(text: str) -> dict[str, str]:
    out = {}
    for line in _lines(text):
        m = re.fullmatch(r'([A-Z_]+)="([^"]*)"', line)
        assert m, line
        out[m.group(1)] = m.group(2)
    return out


# ------------------------------------------------------------------ keepalived


@pytest.mark.parametrize("host, prio, iface", [("m1", 120, "eth0"), ("m2", 110, "ens160")])
def test_keepalived_conf(plans, host: str, prio: int, iface: str) -> None:
    f = _file(plans[host], keepalived.CONF)
    text = f.content.decode()
    lines = _lines(text)
    instance = _lines(_block(text, "vrrp_instance kube_api"))
    assert "state BACKUP" in instance
    assert "nopreempt" in instance
    assert f"priority {prio}" in instance
    assert f"interface {iface}" in instance
    assert "virtual_router_id 80" in instance
    assert "advert_int 1" in instance
    assert _lines(_block(text, "authentication")) == ["auth_type PASS", f"auth_pass {AUTH_PASS}"]
    assert _lines(_block(text, "virtual_ipaddress")) == [f"{VIP}/24 dev {iface} scope global"]
    assert _lines(_block(text, "track_script")) == ["chk_haproxy"]
    # No weight anywhere: a failed check must put the instance in FAULT.
    assert not any(line.startswith("weight") or " weight" in line for line in lines)
    assert "vrrp_script chk_haproxy {" in text
    globals_ = _lines(_block(text, "global_defs"))
    assert "enable_script_security" in globals_
    assert "script_user keepalived_script" in globals_
    assert f"router_id {host}" in globals_
    assert text.count("{") == text.count("}")


def test_keepalived_tracks_exactly_the_haproxy_process(plans, tmp_path: Path) -> None:
    """chk_haproxy is tracked, and it is `pgrep -x haproxy`: true while a process is named exactly
    haproxy. A misspelt name never matches, the check fails on every master and the VIP goes nowhere.
    Run for real against a process of that name."""
    text = _text(plans["m1"], keepalived.CONF)
    assert _lines(_block(text, "track_script")) == ["chk_haproxy"]
    (script,) = [line for line in _lines(_block(text, "vrrp_script chk_haproxy")) if line.startswith("script ")]
    (command,) = shlex.split(script.removeprefix("script "))  # keepalived's "quoted command line"
    argv = shlex.split(command)
    assert argv == ["/usr/bin/pgrep", "-x", "haproxy"]
    _needed(os.access(argv[0], os.X_OK), f"{argv[0]} is not installed")
    fake = tmp_path / "haproxy"  # a process named haproxy: sleep under that name
    shutil.copy(shutil.which("sleep"), fake)
    proc = subprocess.Popen([str(fake), "30"])
    try:
        assert subprocess.run(argv, capture_output=True, timeout=10).returncode == 0
    finally:
        proc.kill()
        proc.wait()


def test_keepalived_file_is_secret_and_validated(plans) -> None:
    f = _file(plans["m1"], keepalived.CONF)
    assert (f.mode, f.secret) == ("0600", True)
    assert f.validate == keepalived.VALIDATE and "keepalived -t -f {path}" in f.validate


def test_keepalived_extra_global_defs(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path)
    inv.cluster["keepalived_extra_global_defs"] = ["vrrp_garp_master_refresh 60"]
    text = keepalived.desired_files(inv.load()["m1"], None)["conf"].content.decode()
    assert "vrrp_garp_master_refresh 60" in _lines(_block(text, "global_defs"))


def _unicast_conf(tmp_path: Path, masters: int, host: str, unicast: bool = True) -> str:
    inv = make_inventory(tmp_path, masters=masters)
    inv.cluster["vrrp_unicast"] = unicast
    return keepalived.desired_files(inv.load()[host], None)["conf"].content.decode()


@pytest.mark.parametrize("host, src, peers", [("m1", "10.9.0.11", ["10.9.0.12"]), ("m2", "10.9.0.12", ["10.9.0.11"])])
def test_keepalived_unicast_two_masters(tmp_path: Path, host: str, src: str, peers: list[str]) -> None:
    text = _unicast_conf(tmp_path, 2, host)
    instance = _lines(_block(text, "vrrp_instance kube_api"))
    assert f"unicast_src_ip {src}" in instance
    assert _lines(_block(text, "unicast_peer")) == peers
    assert text.count("{") == text.count("}")


@pytest.mark.parametrize("host, src, peers", [
    ("m1", "10.9.0.11", ["10.9.0.12", "10.9.0.13"]),
    ("m2", "10.9.0.12", ["10.9.0.11", "10.9.0.13"]),
    ("m3", "10.9.0.13", ["10.9.0.11", "10.9.0.12"]),
])
def test_keepalived_unicast_three_masters(tmp_path: Path, host: str, src: str, peers: list[str]) -> None:
    text = _unicast_conf(tmp_path, 3, host)
    assert f"unicast_src_ip {src}" in _lines(_block(text, "vrrp_instance kube_api"))
    # Every other master, never this one.
    assert _lines(_block(text, "unicast_peer")) == peers


def test_keepalived_unicast_single_master_has_no_empty_peer_block(tmp_path: Path) -> None:
    text = _unicast_conf(tmp_path, 1, "m1")
    assert "unicast_src_ip 10.9.0.11" in _lines(_block(text, "vrrp_instance kube_api"))
    assert "unicast_peer" not in text


def test_keepalived_multicast_by_default(plans, tmp_path: Path) -> None:
    """vrrp_unicast false (the default): no unicast line at all, the file the default renders."""
    off = _unicast_conf(tmp_path, 2, "m1", unicast=False)
    assert "unicast" not in off
    assert off == _text(plans["m1"], keepalived.CONF)
    assert not any("unicast" in f.content.decode() for pl in plans.values() for f in pl.keepalived)


# ------------------------------------------------------------------ haproxy


def _servers(text: str) -> list[tuple[str, str]]:
    return re.findall(r"^\s*server (\S+) (\S+)\s*$", text, flags=re.M)


def test_haproxy_backends_two_masters(plans) -> None:
    for host in ("m1", "m2"):
        text = _text(plans[host], haproxy.CFG)
        assert _servers(text) == [("m1", "10.9.0.11:6443"), ("m2", "10.9.0.12:6443")]


def test_haproxy_backends_three_masters(three) -> None:
    s, p = three
    for host in ("m1", "m2", "m3"):
        text = _text(plan(s[host], p), haproxy.CFG)
        assert _servers(text) == [("m1", "10.9.0.11:6443"), ("m2", "10.9.0.12:6443"), ("m3", "10.9.0.13:6443")]


def test_haproxy_checks(plans) -> None:
    text = _text(plans["m1"], haproxy.CFG)
    lines = _lines(text)
    assert f"bind {VIP}:6443" in lines
    assert "mode tcp" in lines
    assert "option httpchk" in lines
    send = next(line for line in lines if line.startswith("http-check send"))
    assert re.search(r"\bmeth GET uri /livez\b", send), send
    assert "http-check expect status 200" in lines
    default_server = next(line for line in lines if line.startswith("default-server")).split()
    for word in ("check", "check-ssl"):
        assert word in default_server
    assert default_server[default_server.index("crt") + 1] == "/etc/haproxy/pki/healthcheck.pem"
    assert default_server[default_server.index("ca-file") + 1] == "/etc/haproxy/pki/ca.pem"
    assert default_server[default_server.index("verify") + 1] == "required"
    assert default_server[default_server.index("inter") + 1] == "1000"
    assert default_server[default_server.index("fall") + 1] == "2"
    assert default_server[default_server.index("rise") + 1] == "2"
    # a refused connection is retried on another apiserver at once
    assert "option redispatch 1" in lines
    assert "stick" not in text


def _default_server(text: str) -> list[str]:
    """haproxy's default-server words (every server line of the backend inherits them)."""
    (line,) = [line for line in _lines(text) if line.startswith("default-server ")]
    assert all(line.split()[:1] == ["server"] and len(line.split()) == 3
               for line in _lines(text) if line.startswith("server ")), "a server line overrides default-server"
    return line.split()


def _after(words: list[str], word: str) -> str:
    assert word in words, f"{word} missing from {' '.join(words)}"
    return words[words.index(word) + 1]


def test_haproxy_checks_verify_each_apiservers_certificate_and_its_name(plans, two) -> None:
    """The /readyz check is TLS that verifies the apiserver: its chain up to the cluster CA
    (verify required, ca-file) AND its name (verifyhost: a DNS name of the serving certificate,
    also sent as SNI). Without verifyhost any certificate the cluster CA issued would pass for an
    apiserver."""
    from cryptography import x509

    _, p, _ = two
    words = _default_server(_text(plans["m1"], haproxy.CFG))
    assert "check-ssl" in words and _after(words, "verify") == "required"
    ca_file = _after(words, "ca-file")
    assert _file(plans["m1"], ca_file).content == p.ca_pem
    name = _after(words, "verifyhost")
    serving = x509.load_pem_x509_certificate(p.certs["apiserver"].cert_pem)
    serving.verify_directly_issued_by(x509.load_pem_x509_certificate(p.ca_pem))
    assert name in serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName)
    assert _after(words, "check-sni") == name


def test_haproxy_drains_a_master_whose_agent_says_drain(tmp_path: Path) -> None:
    """Every server is also agent-checked, on the port of that master's agent socket (set here to a
    non-default one); the agent answers the roll's drain file, "ready" without it."""
    inv = make_inventory(tmp_path)
    inv.cluster["haproxy_agent_port"] = 7444
    s = inv.load()
    cfg = s["m1"]
    text = render.render("haproxy.cfg.j2", cfg=cfg, c=cfg.cluster, pki={"ca": "/ca", "crt": "/crt"}).decode()
    words = _default_server(text)
    assert "agent-check" in words
    assert _after(words, "agent-port") == "7444"
    assert 0 < int(_after(words, "agent-inter")) <= 1000  # the roll's wait after a drain is sized on it
    for name in ("m1", "m2"):
        files = apiserver.desired_files(s[name], None)
        assert f"ListenStream={s[name].bind_address}:7444" in _lines(files["agent-socket"].content.decode())
    service = _lines(apiserver.desired_files(cfg, None)["agent-service"].content.decode())
    (start,) = [line.removeprefix("ExecStart=") for line in service if line.startswith("ExecStart=")]
    assert PATHS.agent_state in start
    state = tmp_path / "agent"
    answer = lambda: subprocess.run(shlex.split(start.replace(PATHS.agent_state, str(state))),  # noqa: E731
                                    capture_output=True, text=True, timeout=10).stdout
    assert answer() == "ready\n"
    state.write_text("drain\n")  # what the roll writes there
    assert answer() == "drain\n"


def test_haproxy_timeouts_long_enough_for_watches(plans) -> None:
    lines = _lines(_text(plans["m1"], haproxy.CFG))
    timeouts = dict(line.split()[1:3] for line in lines if line.startswith("timeout "))
    for kind in ("client", "server", "tunnel"):
        assert _seconds(timeouts[kind]) >= 3600, timeouts


def test_haproxy_files(plans, two) -> None:
    _, p, _ = two
    pl = plans["m1"]
    cfg = _file(pl, haproxy.CFG)
    assert cfg.validate == "haproxy -c -f {path}"
    assert (cfg.mode, cfg.secret) == ("0644", False)
    crt = _file(pl, "/etc/haproxy/pki/healthcheck.pem")
    assert (crt.mode, crt.secret) == ("0600", True)
    hc = p.certs["haproxy-healthcheck"]
    assert hc.cert_pem.strip() in crt.content and hc.key_pem in crt.content
    assert _file(pl, "/etc/haproxy/pki/ca.pem").content == p.ca_pem
    assert pl.haproxy[0].path == haproxy.SYSCTL_CONF
    assert b"net.ipv4.ip_nonlocal_bind" in pl.haproxy[0].content


def test_haproxy_extra_defaults(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path)
    inv.cluster.update(haproxy_extra_defaults=["option log-health-checks"], haproxy_timeout="4h")
    s = inv.load()
    text = render.render("haproxy.cfg.j2", cfg=s["m1"], c=s["m1"].cluster, pki={"ca": "/ca", "crt": "/crt"}).decode()
    assert "option log-health-checks" in _lines(text)
    assert "timeout tunnel 4h" in _lines(text)


def test_haproxy_cfg_passes_haproxy_check(plans, tmp_path: Path) -> None:
    """The rendered haproxy.cfg with its CA and check certificate, through `haproxy -c` (what the
    host runs before it goes live); a missing ca-file is refused, so the check reads them."""
    haproxy_bin = _tool("haproxy")
    pl = plans["m1"]
    text = _text(pl, haproxy.CFG)
    for name in ("ca.pem", "healthcheck.pem"):
        (tmp_path / name).write_bytes(_file(pl, f"/etc/haproxy/pki/{name}").content)
        text = text.replace(f"/etc/haproxy/pki/{name}", str(tmp_path / name))
    # The host's chroot, admin socket and user: not this machine's to give (nor a non-root user's).
    text = re.sub(r"^\s*(chroot|stats socket|user|group) .*$", "", text, flags=re.M)
    (tmp_path / "haproxy.cfg").write_text(text)
    r = subprocess.run([haproxy_bin, "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    (tmp_path / "bad.cfg").write_text(text.replace(str(tmp_path / "ca.pem"), str(tmp_path / "no-such-ca.pem")))
    r = subprocess.run([haproxy_bin, "-c", "-f", str(tmp_path / "bad.cfg")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0, r.stdout + r.stderr


@pytest.mark.parametrize("version", [2, 3])
def test_keepalived_conf_passes_keepalived_check(tmp_path: Path, version: int) -> None:
    """m1's keepalived.conf through the deploy's own validator (`keepalived -t`, with its retry for
    Debian 12's self-killing test), on an interface this machine has; one it lacks is refused.
    Version 3: VRRPv3 with a 0.2 s advert interval, unicast peers and no authentication."""
    keepalived_bin = _tool("keepalived")
    iface = needed(_vrrp_interface_here(), "no non-loopback network interface here for keepalived -t")
    inv = make_inventory(tmp_path)
    inv.master("m1")["vrrp_interface"] = iface
    if version == 3:
        inv.cluster.update(vrrp_version=3, vrrp_advert_int=0.2, vrrp_unicast=True)
    text = keepalived.desired_files(inv.load(env={} if version == 3 else ENV)["m1"], None)["conf"].content.decode()
    assert ("vrrp_version 3\n" in text and "advert_int 0.2\n" in text) == (version == 3)
    # The deploy creates keepalived_script on a master; here the check script runs as nobody (root)
    # or, for a non-root user, as that user (keepalived cannot switch to anyone else).
    script_user = f"script_user {keepalived.SCRIPT_USER}\n"
    assert text.count(script_user) == 1 and f"interface {iface}\n" in text
    user = "nobody" if IS_ROOT else pwd.getpwuid(os.geteuid()).pw_name
    text = text.replace(script_user, f"script_user {user}\n")
    env = {**os.environ, "PATH": f"{Path(keepalived_bin).parent}{os.pathsep}{os.environ.get('PATH', os.defpath)}"}

    def validate(conf: str) -> subprocess.CompletedProcess:
        path = tmp_path / "keepalived.conf"
        path.write_text(conf)
        return subprocess.run(["sh", "-c", keepalived.VALIDATE.format(path=shlex.quote(str(path)))],
                              capture_output=True, text=True, env=env, timeout=60)

    r = validate(text)
    assert r.returncode == 0, r.stdout + r.stderr
    r = validate(text.replace(f"interface {iface}\n", "interface hk-no-such0\n"))
    assert r.returncode != 0, r.stdout + r.stderr


# ------------------------------------------------------------------ audit policy


def _audit_rules(text: str) -> list[dict]:
    lines = _lines(text)
    assert lines[:3] == ["apiVersion: audit.k8s.io/v1", "kind: Policy", "rules:"]
    rules = []
    for line in lines[3:]:
        assert line.startswith("- "), line
        rules.append(json.loads(line[2:]))  # JSON is YAML
    return rules


def test_audit_policy(plans) -> None:
    f = _file(plans["m1"], PATHS.audit_policy)
    assert _audit_rules(f.content.decode()) == [{"level": "Metadata"}]


def test_audit_policy_custom_rules(tmp_path: Path) -> None:
    rules = [
        {"level": "None", "users": ["system:kube-proxy"], "verbs": ["watch"]},
        {"level": "RequestResponse", "resources": [{"group": "", "resources": ["secrets"]}]},
        {"level": "Metadata"},
    ]
    inv = make_inventory(tmp_path)
    inv.cluster["audit_policy_rules"] = rules
    (f,) = tasks.audit.desired_files(inv.load()["m1"], None).values()
    assert _audit_rules(f.content.decode()) == rules


# ------------------------------------------------------------------ apiserver: env file and unit


def test_systemd_unit(plans) -> None:
    f = _file(plans["m1"], apiserver.UNIT)
    text = f.content.decode()
    lines = _lines(text)
    for expected in (
        "Type=notify",
        "Restart=on-failure",
        "LimitNOFILE=65536",
        "EnvironmentFile=-/etc/kubernetes/config",
        "EnvironmentFile=-/etc/kubernetes/apiserver",
        "WantedBy=multi-user.target",
    ):
        assert expected in lines, expected
    assert f"ExecStart={PATHS.apiserver_binary} \\" in lines
    assert (f.mode, f.secret, f.validate) == ("0644", False, None)


def test_unit_passes_every_rendered_variable(plans) -> None:
    exec_vars = set(re.findall(r"\$([A-Z_]+)", _text(plans["m1"], apiserver.UNIT)))
    config_vars = set(_env_file(_text(plans["m1"], "/etc/kubernetes/config")))
    api_vars = set(_env_file(_text(plans["m1"], "/etc/kubernetes/apiserver")))
    assert api_vars <= exec_vars
    # KUBE_MASTER_SECURE is for the other components, not the apiserver.
    assert config_vars - exec_vars == {"KUBE_MASTER_SECURE"}


@pytest.mark.parametrize("host", ["m1", "m2"])
def test_apiserver_env_file(plans, two, host: str) -> None:
    s, _, _ = two
    env = _env_file(_text(plans[host], "/etc/kubernetes/apiserver"))
    assert env == apiserver_args.apiserver_env(s[host])
    assert f"--bind-address={s[host].bind_address}" in env["KUBE_API_ADDRESS"]


def test_config_file_same_everywhere(plans) -> None:
    texts = {h: _text(pl, "/etc/kubernetes/config") for h, pl in plans.items()}
    assert texts["m1"] == texts["m2"] == texts["n1"]
    assert _env_file(texts["n1"])["KUBE_MASTER_SECURE"] == f"--master=https://{VIP}:6443"


# ------------------------------------------------------------------ certificates and kubeconfig


def test_cert_files(plans, two) -> None:
    _, p, pki_dir = two
    pl = plans["m1"]
    ssl = PATHS
    assert _file(pl, ssl.cert("ca")).content == p.ca_pem
    assert _file(pl, ssl.etcd_ca).content == p.etcd_ca_pem == (pki_dir / "etcd-ca.pem").read_bytes()
    assert p.etcd_ca_pem != p.ca_pem
    assert _file(pl, f"{ssl.ssl_dir}/sa.pub").content == p.sa_pub
    assert _file(pl, ssl.key("sa")).content == p.sa_key
    for name in certs.APISERVER_CERTS:
        assert _file(pl, ssl.cert(name)).content == p.certs[name].cert_pem
        assert _file(pl, ssl.key(name)).content == p.certs[name].key_pem
    for f in pl.certs:
        if f.path.endswith("-key.pem"):
            assert (f.mode, f.secret) == ("0600", True), f.path
        else:
            assert (f.mode, f.secret) == ("0644", False), f.path
            assert b"PRIVATE KEY" not in f.content, f.path


def test_certs_step_uploads_the_etcd_ca(plans, two) -> None:
    _, p, _ = two
    f = _file(plans["m1"], "/etc/kubernetes/ssl/etcd-ca.pem")
    assert f in plans["m1"].certs
    assert (f.content, f.mode, f.secret, f.notify) == (p.etcd_ca_pem, "0644", False, ("kube-apiserver",))


def test_apiserver_reaches_etcd_with_the_etcd_ca_pair(plans, two) -> None:
    from cryptography import x509

    _, p, _ = two
    env = _env_file(_text(plans["m1"], "/etc/kubernetes/apiserver"))
    args = dict(a.removeprefix("--").split("=", 1) for a in env["KUBE_API_ARGS"].split())
    uploaded = {f.path: f.content for f in plans["m1"].certs}
    assert args["etcd-cafile"] == "/etc/kubernetes/ssl/etcd-ca.pem"
    assert uploaded[args["etcd-cafile"]] == p.etcd_ca_pem
    assert uploaded[args["etcd-certfile"]] == p.certs["apiserver-etcd-client"].cert_pem
    assert uploaded[args["etcd-keyfile"]] == p.certs["apiserver-etcd-client"].key_pem
    client = x509.load_pem_x509_certificate(uploaded[args["etcd-certfile"]])
    client.verify_directly_issued_by(x509.load_pem_x509_certificate(p.etcd_ca_pem))
    # Clients of the apiserver are still verified with the cluster CA.
    assert uploaded[args["client-ca-file"]] == p.ca_pem


def test_ca_keys_never_leave_the_deploy_machine(plans, two) -> None:
    _, _, pki_dir = two
    for name in ("ca-key.pem", "etcd-ca-key.pem"):
        ca_key = (pki_dir / name).read_bytes()
        for pl in plans.values():
            for f in _files(pl):
                assert ca_key.strip() not in f.content, (name, f.path)


def test_every_private_key_file_is_secret_0600(plans) -> None:
    for pl in plans.values():
        for f in _files(pl):
            if b"PRIVATE KEY" in f.content or b"client-key-data" in f.content:
                assert (f.mode, f.secret) == ("0600", True), f.path


def _kubeconfig_fields(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        m = re.fullmatch(r"\s*-?\s*([a-z-]+): (\S+)", line)
        if m:
            out.setdefault(m.group(1), m.group(2))
    return out


def test_kubeconfig(plans, two) -> None:
    s, p, _ = two
    f = _file(plans["m1"], PATHS.kubeconfig)
    assert (f.mode, f.secret) == ("0600", True)
    assert f.content == kubeconfig.admin_kubeconfig(s["m1"], p)
    fields = _kubeconfig_fields(f.content.decode())
    assert fields["server"] == f"https://{VIP}:6443"
    assert fields["kind"] == "Config" and fields["current-context"] == "admin@kubernetes"
    assert base64.b64decode(fields["certificate-authority-data"], validate=True) == p.ca_pem
    assert base64.b64decode(fields["client-certificate-data"], validate=True) == p.certs["admin"].cert_pem
    assert base64.b64decode(fields["client-key-data"], validate=True) == p.certs["admin"].key_pem


def test_kubeconfig_same_on_every_master(plans) -> None:
    assert _file(plans["m1"], PATHS.kubeconfig).content == _file(plans["m2"], PATHS.kubeconfig).content


# ------------------------------------------------------------------ the plan


def test_node_plan_has_only_the_shared_config(plans) -> None:
    pl = plans["n1"]
    assert [f.path for f in _files(pl)] == ["/etc/kubernetes/config"]
    assert (pl.certs, pl.audit, pl.apiserver, pl.keepalived, pl.haproxy, pl.kubeconfig) == ([],) * 6
    assert pl.paths == ("/etc/kubernetes/config",)


def test_plan_paths_cover_every_file(plans) -> None:
    for host in ("m1", "m2"):
        pl = plans[host]
        paths = [f.path for f in _files(pl)]
        assert len(paths) == len(set(paths)), paths
        markers = {pending_marker(h) for h in ("kube-apiserver", "daemon-reload", "kube-apiserver-agent", "haproxy", "keepalived",
                                               "prometheus-node-exporter")}
        assert set(pl.paths) == set(paths) | markers
        assert PATHS.apiserver_binary in apiserver.NEEDS.paths  # checked by the snapshot too
        assert list(pl.paths) == sorted(pl.paths)


def test_master_plan_contents(plans) -> None:
    pl = plans["m1"]
    assert [f.path for f in pl.apiserver] == ["/etc/kubernetes/apiserver", apiserver.UNIT]
    assert [f.path for f in pl.agent] == [apiserver.AGENT_SOCKET, apiserver.AGENT_SERVICE]
    assert [f.path for f in pl.keepalived] == [keepalived.CONF]
    assert [f.path for f in pl.haproxy] == [haproxy.SYSCTL_CONF, "/etc/haproxy/pki/ca.pem", "/etc/haproxy/pki/healthcheck.pem", haproxy.CFG]
    assert [f.path for f in pl.kubeconfig] == [PATHS.kubeconfig]
    assert len(pl.certs) == 2 + 2 * len(certs.APISERVER_CERTS) + 2  # 2 CA certs, pairs, SA keypair
    # Only the two configs with a host-side validator have one.
    assert {f.path for f in _files(pl) if f.validate} == {keepalived.CONF, haproxy.CFG}


def test_pki_is_reused(two) -> None:
    s, p, _ = two
    certs._ensure_pki.cache_clear()  # read everything back from pki_dir
    again = ensure_pki(s["m2"])
    assert again is not p
    assert again.ca_pem == p.ca_pem
    assert again.etcd_ca_pem == p.etcd_ca_pem
    assert not any(c.issued for c in again.certs.values())
    assert {n: c.cert_pem for n, c in again.certs.items()} == {n: c.cert_pem for n, c in p.certs.items()}
    assert (again.sa_pub, again.sa_key) == (p.sa_pub, p.sa_key)


def test_serving_cert_covers_vip_and_masters(two) -> None:
    from cryptography import x509

    _, p, _ = two
    cert = x509.load_pem_x509_certificate(p.certs["apiserver"].cert_pem)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    assert {VIP, "10.9.0.11", "10.9.0.12", "10.254.0.1", "127.0.0.1"} <= ips
    assert "kubernetes.default.svc.cluster.local" in sans.get_values_for_type(x509.DNSName)


# ------------------------------------------------------------------ etcd's CA imported from an existing etcd


def test_etcd_ca_import_with_key(tmp_path: Path, etcd_site: dict) -> None:
    from cryptography import x509

    inv = make_inventory(tmp_path)
    inv.cluster.update(etcd_ca_cert_file=etcd_site["ca"], etcd_ca_key_file=etcd_site["ca_key"])
    s = inv.load()
    p = ensure_pki(s["m1"])
    assert p.etcd_ca_pem == Path(etcd_site["ca"]).read_bytes()
    client = p.certs["apiserver-etcd-client"]
    assert client.cert_pem != Path(etcd_site["client"]).read_bytes()  # issued by the deploy from the site's CA
    x509.load_pem_x509_certificate(client.cert_pem).verify_directly_issued_by(
        x509.load_pem_x509_certificate(p.etcd_ca_pem))
    assert _file(plan(s["m1"], p), "/etc/kubernetes/ssl/etcd-ca.pem").content == p.etcd_ca_pem
    for pl in (plan(s["m1"], p), plan(s["m2"], p)):
        for f in _files(pl):
            assert Path(etcd_site["ca_key"]).read_bytes().strip() not in f.content, f.path


def test_etcd_client_cert_import(tmp_path: Path, etcd_site: dict) -> None:
    inv = make_inventory(tmp_path)
    inv.cluster.update(etcd_ca_cert_file=etcd_site["ca"], etcd_client_cert_file=etcd_site["client"],
                       etcd_client_key_file=etcd_site["client_key"])
    s = inv.load()
    pl = plan(s["m1"], ensure_pki(s["m1"]))
    ssl = PATHS
    assert _file(pl, ssl.etcd_ca).content == Path(etcd_site["ca"]).read_bytes()
    assert _file(pl, ssl.cert("apiserver-etcd-client")).content == Path(etcd_site["client"]).read_bytes()
    assert _file(pl, ssl.key("apiserver-etcd-client")).content == Path(etcd_site["client_key"]).read_bytes()
    assert not (tmp_path / "pki" / "etcd-ca-key.pem").exists()


def test_want_is_keyed_by_each_steps_stable_key_not_its_printed_name(monkeypatch, two) -> None:
    """A step's NAME is only what pyinfra prints: renaming it must not break a lookup in ``want``."""
    from hakube.tasks import STEPS, desired_state, leave

    for step in (*STEPS, leave):
        assert step.KEY == step.__name__.rsplit(".", 1)[-1], step
    s, p, _ = two
    for step in STEPS:
        monkeypatch.setattr(step, "NAME", f"renamed {step.NAME}")
    assert set(desired_state(s["m1"], p)) == {step.KEY for step in STEPS}


# ------------------------------------------------------------------ kubelet serving CA (CIS 1.2.6 / 1.2.5)


def test_kubelet_ca_is_uploaded_and_passed(tmp_path: Path, etcd_site: dict) -> None:
    inv = make_inventory(tmp_path)
    inv.cluster["kubelet_certificate_authority_file"] = etcd_site["ca"]  # any CA certificate will do
    s = inv.load()
    pl = plan(s["m1"], ensure_pki(s["m1"]))
    f = _file(pl, PATHS.cert("kubelet-ca"))
    assert f.content == Path(etcd_site["ca"]).read_bytes() and f.notify == ("kube-apiserver",)
    assert apiserver_args.apiserver_flags(s["m1"])["KUBE_API_ARGS"]["kubelet-certificate-authority"] == f.path


def test_no_kubelet_ca_by_default(tmp_path: Path) -> None:
    s = make_inventory(tmp_path).load()
    assert "kubelet-certificate-authority" not in apiserver_args.apiserver_flags(s["m1"])["KUBE_API_ARGS"]
    assert PATHS.cert("kubelet-ca") not in [f.path for f in _files(plan(s["m1"], ensure_pki(s["m1"])))]
