"""Masters added and removed (issue 11, point 3): the `leaving` key, what each host renders, the whole
deploy planned on @fake hosts from a converged cluster (2 -> 3 masters, then one of 3 leaving), and the
leave's shell run for real in a scratch directory with stand-ins for systemctl, ip and curl.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from hakube.facts import FileState, HostFacts
from hakube.hostfiles import differs
from hakube.paths import PATHS
from hakube import metrics as hakube_metrics
from hakube import pki
from hakube.tasks import desired_state, leave, metrics, packages, steps_for
from hakube.tasks.certs import ensure_pki

from .conftest import SHA, VIP, make_inventory, problem_for

ROOT = Path(__file__).resolve().parents[2]
PYINFRA = Path(sys.executable).with_name("pyinfra")
LEAVE_STEP = leave.NAME
M3_ADDR = "10.9.0.13"


# --- the key ----------------------------------------------------------------------------------------


def test_a_leaving_master_is_no_member_but_stays_a_master(tmp_path):
    inv = make_inventory(tmp_path, masters=3)
    inv.master("m3")["leaving"] = True
    settings = inv.load()
    c = settings["m1"].cluster
    assert [m.name for m in c.masters] == ["m1", "m2"]
    assert [m.name for m in c.leaving] == ["m3"]
    assert M3_ADDR not in c.bind_addresses
    m3 = settings["m3"]
    assert m3.is_master and m3.leaving and not m3.is_member
    assert m3.bind_address == M3_ADDR and m3.vrrp_interface == "eth1"  # the leave needs them
    assert settings["m1"].is_member and not settings["m1"].leaving
    assert steps_for(m3) == (leave,)
    assert desired_state(m3, None) == {leave.KEY: {}}


def test_leaving_defaults_to_false(tmp_path):
    settings = make_inventory(tmp_path, masters=2).load()
    assert not any(cfg.leaving for cfg in settings.values())
    assert settings["m1"].cluster.leaving == ()


def test_leaving_must_be_a_boolean(tmp_path):
    inv = make_inventory(tmp_path, masters=3)
    inv.master("m3")["leaving"] = "yes"
    assert "is not true or false" in problem_for(inv.problems(), "m3", "leaving")


@pytest.mark.parametrize("masters, leavers", [(2, ["m2"]), (3, ["m2", "m3"]), (3, ["m1", "m2", "m3"])])
def test_at_least_two_masters_must_stay(tmp_path, masters, leavers):
    inv = make_inventory(tmp_path, masters=masters)
    for name in leavers:
        inv.master(name)["leaving"] = True
    problems = inv.problems()
    for name in leavers:
        line = problem_for(problems, name, "leaving")
        assert "at least 2 masters must stay" in line and "add a master" in line


def test_only_a_master_can_leave(tmp_path):
    inv = make_inventory(tmp_path, masters=2, nodes=1)
    inv.nodes[0][1]["leaving"] = True
    assert "only a master can leave" in problem_for(inv.problems(), "n1", "leaving")


def test_leaving_false_on_a_node_is_fine(tmp_path):
    inv = make_inventory(tmp_path, masters=2, nodes=1)
    inv.nodes[0][1]["leaving"] = False
    assert not inv.load()["n1"].leaving


# --- what the remaining masters render -----------------------------------------------------------------


def _servers(cfg_text: str) -> list[tuple[str, str]]:
    return [tuple(line.split()[1:3]) for line in cfg_text.splitlines() if line.strip().startswith("server ")]


def _peers(conf: str) -> list[str]:
    lines = conf.splitlines()
    if not any("unicast_peer {" in line for line in lines):
        return []
    start = next(i for i, line in enumerate(lines) if "unicast_peer {" in line)
    end = next(i for i in range(start, len(lines)) if lines[i].strip() == "}")
    return [line.strip() for line in lines[start + 1:end]]


def _san_ips(pem: bytes) -> set[str]:
    cert = x509.load_pem_x509_certificate(pem)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}


def test_the_remaining_masters_render_without_the_leaver(tmp_path):
    inv = make_inventory(tmp_path, masters=3)
    inv.cluster["vrrp_unicast"] = True
    inv.master("m3")["leaving"] = True
    settings = inv.load()
    p = ensure_pki(settings["m1"])
    assert M3_ADDR not in _san_ips(p.certs["apiserver"].cert_pem)
    assert {"10.9.0.11", "10.9.0.12"} <= _san_ips(p.certs["apiserver"].cert_pem)
    for name, peer in (("m1", "10.9.0.12"), ("m2", "10.9.0.11")):
        want = desired_state(settings[name], p)
        assert _servers(want["haproxy"]["cfg"].content.decode()) == [("m1", "10.9.0.11:6443"), ("m2", "10.9.0.12:6443")]
        assert _peers(want["keepalived"]["conf"].content.decode()) == [peer]


def test_a_third_master_joins_the_sans_backends_and_peers(tmp_path):
    inv = make_inventory(tmp_path, masters=3)
    inv.cluster["vrrp_unicast"] = True
    settings = inv.load()
    p = ensure_pki(settings["m1"])
    assert {"10.9.0.11", "10.9.0.12", M3_ADDR} <= _san_ips(p.certs["apiserver"].cert_pem)
    want = desired_state(settings["m1"], p)
    assert [s for s, _ in _servers(want["haproxy"]["cfg"].content.decode())] == ["m1", "m2", "m3"]
    assert _peers(want["keepalived"]["conf"].content.decode()) == ["10.9.0.12", M3_ADDR]


# --- when the leave is due --------------------------------------------------------------------------


ACTIVE = {u: ("active", "enabled") for u in leave.UNITS}
LEFT = {u: ("inactive", "disabled") for u in leave.UNITS}


def test_a_serving_master_has_to_leave():
    assert leave.needed(HostFacts(units=ACTIVE))
    assert leave.needed(HostFacts(units={**LEFT, "haproxy.service": ("inactive", "enabled")}))
    assert leave.needed(HostFacts(units={**LEFT, "keepalived.service": ("active", "disabled")}))
    assert leave.needed(HostFacts(units=LEFT, files={PATHS.key("apiserver"): FileState("0" * 64, 0o600, "root:root")}))


def test_a_master_that_left_has_nothing_to_do():
    assert not leave.needed(HostFacts(units=LEFT))
    assert not leave.needed(HostFacts())  # never deployed: no unit, no file
    # What stays (binary, flags, haproxy.cfg) does not count.
    stays = {p: FileState("0" * 64, 0o644, "root:root") for p in (PATHS.apiserver_binary, "/etc/kubernetes/apiserver",
                                                                   "/etc/haproxy/haproxy.cfg")}
    assert not leave.needed(HostFacts(units=LEFT, files=stays))


def test_every_key_and_certificate_of_a_master_is_removed(tmp_path):
    """Every secret or certificate file the deploy gives a master is in the leave's removal list."""
    settings = make_inventory(tmp_path, masters=2).load()
    want = desired_state(settings["m1"], ensure_pki(settings["m1"]))
    removed = set(leave.removed_files())
    for step in want.values():
        for f in step.values():
            if f.secret or f.path.endswith(".pem"):
                assert f.path in removed or f.path.startswith(PATHS.ssl_dir + "/"), f.path
    assert {PATHS.kubeconfig, PATHS.encryption_config, "/etc/keepalived/keepalived.conf",
            "/etc/haproxy/pki/healthcheck.pem"} <= removed
    assert PATHS.apiserver_binary not in removed


# --- the deploy planned on @fake hosts from a converged cluster -------------------------------------------


FAKE = {"fake_delay": 0, "fake_delay_jitter": 0}
PACKAGE_COMMANDS = packages.PROVIDES + packages.METRICS_PACKAGES


def _snapshot_lines(facts: HostFacts) -> list[str]:
    lines = [f"H {s.sha256}  {p}" for p, s in facts.files.items()]
    lines += [f"M {s.mode:o}:{s.owner} {p}" for p, s in facts.files.items()]
    lines += [f"U {u} {a} {e}" for u, (a, e) in facts.units.items()]
    return lines


def converged(want: dict, vip: str | None = None) -> list[str]:
    """The snapshot of a master the deploy converged to ``want`` (holding ``vip`` if given)."""
    files = {f.path: FileState(f.sha256, int(f.mode, 8), "root:root") for step in want.values() for f in step.values()}
    files[PATHS.apiserver_binary] = FileState(SHA, 0o755, "root:root")
    files[hakube_metrics.VRRP_STATE_FILE] = FileState(SHA, 0o644, "root:root")  # keepalived's notify wrote it
    units = {u: ("active", "enabled") for u in (*leave.UNITS, metrics.UNIT)}
    return (_snapshot_lines(HostFacts(files=files, units=units))
            + [f"C {c}" for c in PACKAGE_COMMANDS] + ["P keepalived_script", "S net.ipv4.ip_nonlocal_bind 1",
                                                      "KO clusterrolebinding/kube-apiserver:kubelet-apis", "A amd64"]
            + ([f"I 2: eth0    inet {vip}/24 scope global secondary eth0"] if vip else []))


def left() -> list[str]:
    return [f"U {u} inactive disabled" for u in leave.UNITS] + [f"C {c}" for c in PACKAGE_COMMANDS] + ["A amd64"]


FRESH = ["A amd64"]
OTHER_FACTS = {"command -v apt-get": "/usr/bin/apt-get", "uname -s": "Linux", "command -v useradd": "/usr/sbin/useradd"}


def _plan(base: Path, inv, snapshots: dict[str, list[str]]) -> list[dict]:
    """``pyinfra INVENTORY deploy.py --dry --json`` with each master's snapshot canned."""
    (base / "vrrp_pass").write_text("fAkep4ss\n")
    cluster = {**inv.cluster, **FAKE, "vrrp_auth_pass_file": str(base / "vrrp_pass")}
    masters = [(f"@fake/{n}", {**d, "fake_responses": {"set --; for p in": snapshots[n], **OTHER_FACTS}})
               for n, d in inv.masters]
    path = base / "fake_inventory.py"
    path.write_text(f"masters = ({masters!r}, {cluster!r})\n")
    env = {k: v for k, v in os.environ.items() if k != "HAKUBE_VRRP_AUTH_PASS"}
    env.update(PYINFRA_FAKE_DELAY="0", PYINFRA_FAKE_DELAY_JITTER="0")
    proc = subprocess.run([str(PYINFRA), str(path), "deploy.py", "--dry", "--json"], cwd=ROOT, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)["plan"]


def changed(plan: list[dict], name: str) -> list[str]:
    """The operations planned on ``name``, in order. pyinfra shares one operation between hosts that
    reach it on the same line (``install`` loops over files), so such an operation's name may be
    another host's file: every file's is shown as ``<step> | Install …``; which files change is
    ``files_changed``'s part."""
    host = f"@fake/{name}"
    return [re.sub(r" \| Install .*", " | Install …", op["name"])
            for op in plan if host in op["hosts_with_change"] + op["hosts_with_conditional_change"]]


def files_changed(new: dict, old: dict) -> list[str]:
    """The files a master converged to ``old`` gets an operation for when the data says ``new``
    (what ``hakube.hostfiles.install`` decides from the snapshot)."""
    facts = HostFacts(files={f.path: FileState(f.sha256, int(f.mode, 8), "root:root")
                             for step in old.values() for f in step.values()})
    return [f.path for step in new.values() for f in step.values() if differs(f, facts)]


@contextlib.contextmanager
def an_hour_ago():
    """Certificates issued inside are an hour old: a converged cluster's. Reissued in the same second,
    a certificate would end at the same second and the certificates' metrics would not change."""
    real = pki._utcnow
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pki, "_utcnow", lambda now=None: real(now) - dt.timedelta(hours=1) if now is None else real(now))
        yield


def _wants(inv) -> dict[str, dict]:
    """What a run with this data leaves on each master (the VRRP password _plan's file gives)."""
    settings = inv.load({"HAKUBE_VRRP_AUTH_PASS": "fAkep4ss"})
    p = ensure_pki(next(cfg for cfg in settings.values() if cfg.is_member))
    return {n: desired_state(cfg, p if cfg.is_member else None) for n, cfg in settings.items()}


ROLL = "kube-apiserver | Restart kube-apiserver, one master at a time, waiting for /readyz"
RELOAD_HAPROXY = "haproxy | Reload haproxy (config changed)"
RELOAD_KEEPALIVED = "keepalived | Reload keepalived (config changed)"
START_KEEPALIVED = "keepalived | Start keepalived (after the running ones reloaded)"
# apiserver.pem and its new key, and the certificates' metrics (their ends changed)
REISSUED = ["Certificates (/etc/kubernetes/ssl) | Install …"] * 2 + ["Metrics (node exporter, VRRP state, certificates) | Install …"]
HAPROXY_CFG = ["haproxy | Install …"]
# haproxy or keepalived changed: the run checks that exactly one master holds the VIP (hakube.vip)
VERIFY = "The VIP: one master holds it | Exactly one master holds the VIP 10.9.0.100, no other router uses VRID 80"


def test_a_converged_cluster_plans_nothing(tmp_path):
    inv = make_inventory(tmp_path, masters=2, nodes=0)
    wants = _wants(inv)
    plan = _plan(tmp_path, inv, {n: converged(w, VIP if n == "m1" else None) for n, w in wants.items()})
    assert changed(plan, "m1") == [] and changed(plan, "m2") == [], plan


@pytest.mark.parametrize("unicast", [False, True], ids=["multicast", "unicast"])
def test_adding_a_third_master_to_a_converged_pair(tmp_path, unicast):
    """2 converged masters -> 3: the old masters get the reissued serving certificate (SANs + m3),
    rolled one at a time; haproxy.cfg (a third backend) and its reload; keepalived.conf only with
    unicast (the new peer). Nothing else changes on them; the new master gets everything."""
    two = make_inventory(tmp_path, masters=2, nodes=0)
    two.cluster["vrrp_unicast"] = unicast
    with an_hour_ago():
        wants = _wants(two)
    three = make_inventory(tmp_path, masters=3, nodes=0)
    three.cluster["vrrp_unicast"] = unicast
    plan = _plan(tmp_path, three, {"m1": converged(wants["m1"], VIP), "m2": converged(wants["m2"]), "m3": FRESH})
    keepalived = ["keepalived | Install …", RELOAD_KEEPALIVED] if unicast else []
    for name in ("m1", "m2"):
        assert changed(plan, name) == [*REISSUED, ROLL, *keepalived, *HAPROXY_CFG, RELOAD_HAPROXY, VERIFY], name
    new = _wants(three)
    for name in ("m1", "m2"):
        assert files_changed(new[name], wants[name]) == [
            PATHS.cert("apiserver"), PATHS.key("apiserver"),
            *(["/etc/keepalived/keepalived.conf"] if unicast else []), "/etc/haproxy/haproxy.cfg",
            hakube_metrics.HAKUBE_TEXTFILE], name
    if unicast:  # the new master's keepalived starts once the old ones send it their adverts
        names = [op["name"] for op in plan]
        assert names.index(RELOAD_KEEPALIVED) < names.index(START_KEEPALIVED)
    assert START_KEEPALIVED in changed(plan, "m3") and RELOAD_KEEPALIVED not in changed(plan, "m3")
    steps = {n.split(" | ")[0] for n in changed(plan, "m3")}
    assert steps >= {"Packages", "Certificates (/etc/kubernetes/ssl)", "kube-apiserver", "keepalived", "haproxy",
                     "Admin kubeconfig"}, steps
    assert ROLL in changed(plan, "m3") and RELOAD_HAPROXY in changed(plan, "m3")
    assert not any(op["name"].startswith(LEAVE_STEP) for op in plan)
    assert M3_ADDR in _san_ips((tmp_path / "pki" / "apiserver.pem").read_bytes())


def test_a_master_joining_or_leaving_a_serving_cluster_keeps_the_roll_one_at_a_time():
    """``serving`` over every master's facts (``masters_facts``): old masters active and a fresh one
    joining -> True, so every roll (the new master's too) is serial and drains first; a leaving
    master that still serves counts as serving (it plans no roll of its own)."""
    from hakube.tasks.apiserver import serving

    active = HostFacts(units={"kube-apiserver.service": ("active", "enabled")})
    assert serving({"m1": active, "m2": active, "m3": HostFacts()})
    assert serving({"m1": HostFacts(), "m2": HostFacts(), "m3": active})
    assert not serving({"m1": HostFacts(), "m2": HostFacts(), "m3": HostFacts()})  # a first install


@pytest.fixture
def three_converged(tmp_path):
    """3 converged masters (unicast VRRP, so keepalived.conf names the peers), m3 about to leave."""
    three = make_inventory(tmp_path, masters=3, nodes=0)
    three.cluster["vrrp_unicast"] = True
    with an_hour_ago():
        wants = _wants(three)
    three.master("m3")["leaving"] = True
    return three, wants


def test_one_of_three_leaves_first_and_the_others_drop_it(tmp_path, three_converged):
    inv, wants = three_converged
    plan = _plan(tmp_path, inv, {n: converged(w, VIP if n == "m1" else None) for n, w in wants.items()})
    names = [op["name"] for op in plan]
    (leave_op,) = [n for n in names if n.startswith(f"{LEAVE_STEP} | Leave: VIP off m3")]
    (wait_op,) = [n for n in names if n.startswith(f"{LEAVE_STEP} | The others go on once @fake/m3 left")]
    assert changed(plan, "m3") == [leave_op]
    for name in ("m1", "m2"):
        assert changed(plan, name) == [wait_op, *REISSUED, ROLL, "keepalived | Install …",
                                       RELOAD_KEEPALIVED, *HAPROXY_CFG, RELOAD_HAPROXY, VERIFY], name
    new = _wants(inv)
    for name in ("m1", "m2"):
        assert files_changed(new[name], wants[name]) == [PATHS.cert("apiserver"), PATHS.key("apiserver"),
                                                         "/etc/keepalived/keepalived.conf", "/etc/haproxy/haproxy.cfg",
                                                         hakube_metrics.HAKUBE_TEXTFILE]
    # The leave comes before every operation of the remaining masters (pyinfra runs them in this order).
    assert names.index(leave_op) == 0 and names.index(wait_op) == 1
    assert M3_ADDR not in _san_ips((tmp_path / "pki" / "apiserver.pem").read_bytes())


def test_a_second_run_after_the_leave_changes_nothing(tmp_path, three_converged):
    inv, _ = three_converged
    wants = _wants(inv)  # what the first run left on m1, m2: the 2-member cluster
    plan = _plan(tmp_path, inv, {"m1": converged(wants["m1"], VIP), "m2": converged(wants["m2"]), "m3": left()})
    assert [changed(plan, n) for n in ("m1", "m2", "m3")] == [[], [], []], plan


def test_the_others_do_not_wait_for_a_leaver_that_already_left(tmp_path, three_converged):
    """m3 left in an earlier run whose remaining masters failed: they converge now, without a wait."""
    inv, old = three_converged
    plan = _plan(tmp_path, inv, {"m1": converged(old["m1"], VIP), "m2": converged(old["m2"]), "m3": left()})
    assert changed(plan, "m3") == []
    assert not any(n.startswith(LEAVE_STEP) for n in changed(plan, "m1"))
    assert ROLL in changed(plan, "m1") and RELOAD_HAPROXY in changed(plan, "m1")


# --- the leave's shell, run for real ---------------------------------------------------------------------

SYSTEMCTL = r"""#!/bin/sh
q=""; now=""; cmd=""; units=""
for a in "$@"; do case "$a" in -q) q=1;; --now) now=1;; is-active|is-enabled|stop|start|disable|enable) cmd=$a;;
  *) units="$units $a";; esac; done
echo "systemctl $cmd$units" >> "$BOX/log"
for u in $units; do
  f="$BOX/units/$u"; if [ -f "$f" ]; then read -r a e < "$f"; else a=inactive; e=not-found; fi
  case $cmd in
    is-active) [ -n "$q" ] || echo "$a"; [ "$a" = active ]; exit $?;;
    is-enabled) [ -n "$q" ] || echo "$e"; [ "$e" = enabled ]; exit $?;;
    stop) a=inactive;;
    start) a=active;;
    disable) e=disabled; [ -z "$now" ] || a=inactive;;
  esac
  if [ "$a" = inactive ] && [ "$u" = keepalived.service ] && [ ! -e "$BOX/vip_sticks" ]; then grep -v " inet $VIP/" "$BOX/addrs" > "$BOX/addrs.t"; mv "$BOX/addrs.t" "$BOX/addrs"; fi
  if [ "$a" = inactive ] && [ "$u" = kube-apiserver.service ]; then echo "agent said: $(cat "$BOX/run/kube-apiserver-agent" 2>/dev/null)" >> "$BOX/log"; fi
  echo "$a $e" > "$f"
done
"""
IP = '#!/bin/sh\ncat "$BOX/addrs"\n'
CURL = r"""#!/bin/sh
echo "curl $*" >> "$BOX/log"
case "$*" in *http_code*) if [ -e "$BOX/answers" ]; then printf 401; else printf 000; fi; exit 0;; esac
[ -e "$BOX/answers" ] || exit 7
"""
KEPT = ("/usr/local/bin/kube-apiserver", "/etc/kubernetes/apiserver", "/etc/kubernetes/config",
        "/etc/haproxy/haproxy.cfg")


@pytest.fixture
def box(tmp_path, monkeypatch):
    """A master's files under tmp_path, and systemctl/ip/curl stand-ins: keepalived holds the VIP
    until it stops, every unit active and enabled, another master answers at the VIP."""
    monkeypatch.setattr(leave, "vip_timeout", lambda cluster: 1)
    inv = make_inventory(tmp_path / "inv", masters=3)
    inv.master("m3")["leaving"] = True
    cfg = inv.load()["m3"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("systemctl", SYSTEMCTL), ("ip", IP), ("curl", CURL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (tmp_path / "units").mkdir()
    for u in leave.UNITS:
        (tmp_path / "units" / u).write_text("active enabled\n")
    (tmp_path / "addrs").write_text(f"2: eth1    inet {M3_ADDR}/24 scope global eth1\n"
                                    f"2: eth1    inet {cfg.cluster.vip}/24 scope global secondary eth1\n")
    (tmp_path / "answers").touch()
    (tmp_path / "run").mkdir()
    extra = [f"{PATHS.key('apiserver')}.new", f"{PATHS.encryption_config}.new",
             "/var/lib/hakube/rollback/keepalived/state/etc/keepalived/keepalived.conf", "/var/lib/hakube/pending/haproxy"]
    for path in (*leave.removed_files(), *extra, *KEPT):
        target = tmp_path / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f"{path}\n")
    return tmp_path, cfg


def run_leave(box: Path, cfg) -> subprocess.CompletedProcess:
    script = " && ".join(f"( {c} )" for c in leave.script(cfg))
    # Every absolute path of the host lives under the box.
    script = re.sub(r"(?<![\w./-])(/etc/|/root/|/var/lib/hakube|/run/kube)", lambda m: f"{box}{m.group(1)}", script)
    env = {**os.environ, "BOX": str(box), "VIP": cfg.cluster.vip, "PATH": f"{box / 'bin'}:{os.environ['PATH']}"}
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60, env=env)


def _units(box: Path) -> dict[str, str]:
    return {u: (box / "units" / u).read_text().strip() for u in leave.UNITS}


def _exists(box: Path, path: str) -> bool:
    return (box / path.lstrip("/")).exists()


def test_the_leave_moves_the_vip_drains_stops_and_removes_the_keys(box):
    box, cfg = box
    proc = run_leave(box, cfg)
    assert proc.returncode == 0, proc.stderr
    assert cfg.cluster.vip not in (box / "addrs").read_text()
    assert _units(box) == {u: "inactive disabled" for u in leave.UNITS}
    log = (box / "log").read_text().splitlines()
    calls = [line for line in log if line.startswith("systemctl ") and " is-" not in line]
    # keepalived first (the VIP), then the drained apiserver, the agent, haproxy.
    assert calls[0] == "systemctl stop keepalived.service"
    assert calls[1:4] == ["systemctl disable kube-apiserver.service", "systemctl disable kube-apiserver-agent.socket",
                          "systemctl disable haproxy.service"]
    assert "agent said: drain" in log  # haproxy was told to drain before the apiserver stopped
    # Another master was asked through the VIP, with this master's client certificate, before the drain.
    asked = next(i for i, line in enumerate(log) if line.startswith("curl ") and f"https://{cfg.cluster.vip}:6443/readyz" in line)
    assert "--cert" in log[asked] and asked < log.index("systemctl disable kube-apiserver.service")
    for path in leave.removed_files():
        assert not _exists(box, path), path
    for path in (PATHS.ssl_dir, "/etc/haproxy/pki", "/var/lib/hakube/rollback", "/var/lib/hakube/pending",
                 f"{PATHS.encryption_config}.new", PATHS.agent_state):
        assert not _exists(box, path), path
    for path in KEPT:
        assert _exists(box, path), path


def test_a_second_leave_changes_nothing(box):
    box, cfg = box
    assert run_leave(box, cfg).returncode == 0
    before = sorted(str(p) for p in box.rglob("*") if "log" not in p.name)
    (box / "log").unlink()
    proc = run_leave(box, cfg)
    assert proc.returncode == 0, proc.stderr
    assert sorted(str(p) for p in box.rglob("*") if "log" not in p.name) == before
    log = (box / "log").read_text()
    assert "stop" not in log and "disable" not in log and "agent said" not in log


def test_no_other_master_answering_puts_keepalived_back_and_changes_nothing_else(box):
    box, cfg = box
    (box / "answers").unlink()
    proc = run_leave(box, cfg)
    assert proc.returncode != 0
    assert f"m3: leaving: after 1s no other master answers at {cfg.cluster.vip}; keepalived started again; " \
           "nothing else changed" in proc.stderr
    units = _units(box)
    assert units["keepalived.service"] == "active enabled" and units["kube-apiserver.service"] == "active enabled"
    assert not _exists(box, PATHS.agent_state)  # never drained
    for path in leave.removed_files():
        assert _exists(box, path), path


def test_a_vip_that_stays_on_the_leaver_stops_the_leave(box):
    box, cfg = box
    (box / "vip_sticks").touch()
    proc = run_leave(box, cfg)
    assert proc.returncode != 0
    assert f"the VIP {cfg.cluster.vip} is still on eth1; keepalived started again" in proc.stderr
    assert _exists(box, PATHS.key("apiserver"))


def test_a_master_that_does_not_hold_the_vip_leaves_too(box):
    box, cfg = box
    (box / "addrs").write_text(f"2: eth1    inet {M3_ADDR}/24 scope global eth1\n")
    proc = run_leave(box, cfg)
    assert proc.returncode == 0, proc.stderr
    assert _units(box) == {u: "inactive disabled" for u in leave.UNITS}


def test_an_interrupted_leave_is_finished_without_its_certificates(box):
    """Keys already gone but a unit still enabled: any HTTP answer at the VIP will do."""
    box, cfg = box
    import shutil

    shutil.rmtree(box / PATHS.ssl_dir.lstrip("/"))
    (box / "units" / "keepalived.service").write_text("inactive disabled\n")
    (box / "addrs").write_text(f"2: eth1    inet {M3_ADDR}/24 scope global eth1\n")
    proc = run_leave(box, cfg)
    assert proc.returncode == 0, proc.stderr
    assert "http_code" in (box / "log").read_text()
    assert _units(box) == {u: "inactive disabled" for u in leave.UNITS}
    assert not _exists(box, PATHS.kubeconfig)


# --- make check with a leaving master ---------------------------------------------------------------------


def _check_doc(tmp_path, leaver_facts: HostFacts, leaver_addresses=(M3_ADDR,)):
    from hakube import health as check
    from hakube.health import HostStatus, Observed, PKIView

    from .test_check import converged_facts, converged_status

    inv = make_inventory(tmp_path, masters=3, nodes=0)
    inv.master("m3")["leaving"] = True
    settings = inv.load()
    p = ensure_pki(settings["m1"])
    wants = {n: desired_state(cfg, p if cfg.is_member else None) for n, cfg in settings.items()}
    observed = {n: Observed(converged_facts(wants[n]), converged_status(settings[n], wants[n], holds_vip=n == "m1"))
                for n in ("m1", "m2")}
    observed["m3"] = Observed(leaver_facts, HostStatus(addresses=tuple(leaver_addresses), complete=True))
    return check.evaluate(settings, observed, wants, pki=PKIView(str(tmp_path / "pki")), api=(True, "ok"),
                          binary_sha=SHA)


def test_check_a_master_that_left_is_healthy(tmp_path):
    doc = _check_doc(tmp_path, HostFacts(units=LEFT))
    assert doc["status"] == "healthy", doc["problems"]
    assert set(doc["masters"]) == {"m1", "m2"}
    assert doc["leaving"] == {"m3": {"reachable": True, "left": True, "holds_vip": False, "remains": []}}
    assert doc["masters"]["m1"]["haproxy"]["backends"] == {"m1": "UP", "m2": "UP"}


def test_check_a_master_that_has_not_left_yet_is_named(tmp_path):
    from hakube.health import render_text

    key = PATHS.key("apiserver")
    doc = _check_doc(tmp_path, HostFacts(units=ACTIVE, files={key: FileState("0" * 64, 0o600, "root:root")}))
    assert doc["exit_code"] == 1 and doc["leaving"]["m3"]["left"] is False
    (message,) = [p["message"] for p in doc["problems"] if p["host"] == "m3"]
    assert "has not left yet" in message and "keepalived.service active/enabled" in message and key in message
    assert "m3: leaving, not left yet" in render_text(doc)


def test_check_a_leaver_holding_the_vip_counts_as_a_holder(tmp_path):
    from .conftest import VIP

    doc = _check_doc(tmp_path, HostFacts(units=LEFT), leaver_addresses=(M3_ADDR, VIP))
    assert doc["vip"]["holders"] == ["m1", "m3"] and doc["exit_code"] == 2
