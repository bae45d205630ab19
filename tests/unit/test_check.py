"""`make check` (hakube.check): findings, levels and the JSON document from hand-made host facts;
the status command's shell (run here, against loopback only); the read-only PKI loader; and the
whole CLI against @fake hosts with a loopback TLS server standing in for the VIP."""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import json
import os
import ssl
import stat
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from hakube import health as check, pki, protocol
from hakube.health import HostStatus, Observed, PKIView
from hakube.facts import FileState, HostFacts
from hakube.hostfiles import differs
from hakube.paths import PATHS
from hakube.roll import pending_marker
from hakube.tasks import desired_state
from hakube.tasks.certs import ensure_pki, load_pki

from .conftest import SHA, make_inventory

ROOT = Path(__file__).resolve().parents[2]
NOW = dt.datetime.now(dt.timezone.utc)
HAPROXY_CFG = "/etc/haproxy/haproxy.cfg"


# --- hand-made facts of a converged cluster -----------------------------------------------------------


def _files(want: dict) -> dict:
    return {f.path: f for step in want.values() for f in step.values()}


def converged_facts(want: dict, is_master: bool = True) -> HostFacts:
    files = {p: FileState(f.sha256, int(f.mode, 8), "root:root") for p, f in _files(want).items()}
    units = {}
    if is_master:
        files[PATHS.apiserver_binary] = FileState(SHA, 0o755, "root:root")
        units = {u: ("active", "enabled") for u in ("kube-apiserver.service", "haproxy.service",
                                                     "keepalived.service", "kube-apiserver-agent.socket")}
    return HostFacts(files=files, units=units)


def converged_status(cfg, want: dict, holds_vip: bool) -> HostStatus:
    c = cfg.cluster
    files = _files(want)
    certs = {p: _cert_only(files[p].content) for p in check.cert_paths(want)}
    kubeconfig = files[PATHS.kubeconfig].content.decode()
    b64 = next(line.split(":", 1)[1].strip() for line in kubeconfig.splitlines() if "client-certificate-data" in line)
    certs[PATHS.kubeconfig] = base64.b64decode(b64)
    return HostStatus(
        version=f"v{c.kube_version}", readyz_exit=0, readyz_http=200, readyz_body=("ok",), stats_ok=True,
        backends={m.short_name: "UP" for m in c.masters},
        keepalived_state="MASTER" if holds_vip else "BACKUP",
        addresses=(cfg.bind_address, *((c.vip,) if holds_vip else ())),
        certs={p: pem for p, pem in certs.items() if pem.strip()}, complete=True,
    )


def _cert_only(pem: bytes) -> bytes:
    out, keep = [], False
    for line in pem.decode().splitlines():
        keep = keep or line == "-----BEGIN CERTIFICATE-----"
        if keep:
            out.append(line)
        if line == "-----END CERTIFICATE-----":
            keep = False
    return ("\n".join(out) + "\n").encode()


@pytest.fixture
def lab(tmp_path):
    inv = make_inventory(tmp_path, masters=2, nodes=1)
    settings = inv.load()
    p = ensure_pki(settings["m1"])
    wants = {n: desired_state(cfg, p if cfg.is_master else None) for n, cfg in settings.items()}
    observed = {}
    for n, cfg in settings.items():
        if cfg.is_master:
            observed[n] = Observed(converged_facts(wants[n]), converged_status(cfg, wants[n], holds_vip=n == "m1"))
        else:
            observed[n] = Observed(converged_facts(wants[n], is_master=False), HostStatus(complete=True))
    return settings, wants, observed, tmp_path


def evaluate(lab, observed=None, api=(True, "ok"), pki_view=None, wants=None, now=NOW, binary_sha=SHA):
    settings, w, obs, base = lab
    return check.evaluate(settings, observed or obs, w if wants is None else wants,
                          pki=pki_view or PKIView(str(base / "pki")), api=api, binary_sha=binary_sha, now=now)


def messages(doc, host=None, level=None):
    return [p["message"] for p in doc["problems"] if (host is None or p["host"] == host)
            and (level is None or p["level"] == level)]


def with_file(seen: Observed, path: str, state: FileState | None) -> Observed:
    files = dict(seen.facts.files)
    if state is None:
        files.pop(path, None)
    else:
        files[path] = state
    return replace(seen, facts=replace(seen.facts, files=files))


def with_status(seen: Observed, **kw) -> Observed:
    return replace(seen, status=replace(seen.status, **kw))


def with_unit(seen: Observed, unit: str, state: str) -> Observed:
    units = dict(seen.facts.units)
    units[unit] = (state, "enabled")
    return replace(seen, facts=replace(seen.facts, units=units))


# --- levels ----------------------------------------------------------------------------------------


def test_a_converged_cluster_is_healthy_and_the_document_has_the_agreed_shape(lab):
    doc = evaluate(lab)
    assert doc["problems"] == [] and doc["status"] == "healthy" and doc["exit_code"] == 0
    assert set(doc) >= {"status", "exit_code", "vip", "api_via_vip", "masters", "problems"}
    assert doc["vip"] == {"address": "10.9.0.100", "holders": ["m1"]}
    assert doc["api_via_vip"] == {"ok": True, "detail": "ok"}
    assert set(doc["masters"]) == {"m1", "m2"}
    m1 = doc["masters"]["m1"]
    assert m1["apiserver"] == {"active": True, "version": "v1.36.0", "readyz": "ok"}
    assert m1["haproxy"]["backends"] == {"m1": "UP", "m2": "UP"}
    assert m1["keepalived"] == {"active": True, "state": "MASTER"}
    assert m1["holds_vip"] is True and doc["masters"]["m2"]["holds_vip"] is False
    assert m1["drift"] == [] and m1["restarts_owed"] == []
    assert {"ca", "etcd-ca", "apiserver", "apiserver-kubelet-client", "apiserver-etcd-client",
            "haproxy-ca", "haproxy-healthcheck"} <= set(m1["certificates"])
    assert all(c["days_left"] >= 364 and c["not_after"].endswith("Z") for c in m1["certificates"].values())
    assert doc["nodes"] == {"n1": {"reachable": True, "drift": [], "restarts_owed": []}}
    json.dumps(doc)  # plain JSON


def test_a_hand_edited_file_is_drift_naming_host_and_path(lab):
    settings, wants, obs, _ = lab
    obs = dict(obs)
    obs["m2"] = with_file(obs["m2"], HAPROXY_CFG, FileState("0" * 64, 0o644, "root:root"))
    doc = evaluate(lab, obs)
    assert doc["exit_code"] == 1 and doc["status"] == "degraded"
    assert doc["masters"]["m2"]["drift"] == [{"path": HAPROXY_CFG, "differs": ["content"]}]
    assert [p["host"] for p in doc["problems"]] == ["m2"]
    assert HAPROXY_CFG in messages(doc, "m2")[0]


def test_mode_owner_and_missing_are_named(lab):
    _, _, obs, _ = lab
    key = PATHS.key("apiserver")
    seen = with_file(obs["m1"], key, replace(obs["m1"].facts.files[key], mode=0o644, owner="root:adm"))
    seen = with_file(seen, PATHS.audit_policy, None)
    doc = evaluate(lab, {**obs, "m1": seen})
    assert {d["path"]: d["differs"] for d in doc["masters"]["m1"]["drift"]} == {
        key: ["mode", "owner"], PATHS.audit_policy: ["missing"]}
    assert doc["exit_code"] == 1


def test_drift_agrees_with_what_the_deploy_would_change(lab):
    _, wants, obs, _ = lab
    facts = obs["m1"].facts
    for f in _files(wants["m1"]).values():
        for state in (facts.files[f.path], replace(facts.files[f.path], mode=0o640),
                      replace(facts.files[f.path], sha256="1" * 64), replace(facts.files[f.path], owner="a:b")):
            one = HostFacts(files={f.path: state})
            assert bool(check.drift({"s": {"r": f}}, one.files)) == differs(f, one), (f.path, state)


def test_a_staged_copy_is_not_the_live_file(lab):
    """The apiserver's inputs may wait at <path>.new for the roll: the LIVE file is compared."""
    _, wants, obs, _ = lab
    flags = "/etc/kubernetes/apiserver"
    seen = with_file(obs["m1"], flags + ".new", FileState("2" * 64, 0o644, "root:root"))
    assert evaluate(lab, {**obs, "m1": seen})["masters"]["m1"]["drift"] == []
    seen = with_file(seen, flags, FileState("3" * 64, 0o644, "root:root"))
    assert evaluate(lab, {**obs, "m1": seen})["masters"]["m1"]["drift"] == [{"path": flags, "differs": ["content"]}]


def test_the_binary_is_compared_by_content_when_its_sha256_is_known(lab):
    _, _, obs, _ = lab
    seen = with_file(obs["m1"], PATHS.apiserver_binary, FileState("4" * 64, 0o755, "root:root"))
    doc = evaluate(lab, {**obs, "m1": seen})
    assert doc["masters"]["m1"]["drift"] == [{"path": PATHS.apiserver_binary, "differs": ["content"]}]
    assert evaluate(lab, {**obs, "m1": seen}, binary_sha=None)["exit_code"] == 0


def test_no_vip_holder_or_two_is_broken(lab):
    _, _, obs, _ = lab
    two = {**obs, "m2": with_status(obs["m2"], addresses=("10.9.0.12", "10.9.0.100"))}
    doc = evaluate(lab, two)
    assert doc["exit_code"] == 2 and doc["vip"]["holders"] == ["m1", "m2"]
    assert any("m1, m2" in m for m in messages(doc, None, "error"))
    none = {**obs, "m1": with_status(obs["m1"], addresses=("10.9.0.11",))}
    doc = evaluate(lab, none)
    assert doc["exit_code"] == 2 and doc["vip"]["holders"] == []


def test_the_api_not_answering_through_the_vip_is_broken(lab):
    doc = evaluate(lab, api=(False, "ConnectionRefusedError: refused"))
    assert doc["status"] == "broken" and doc["api_via_vip"] == {"ok": False, "detail": "ConnectionRefusedError: refused"}
    assert "refused" in messages(doc, None, "error")[0]


def test_a_stopped_apiserver_is_degraded_and_named(lab):
    _, _, obs, _ = lab
    m2 = with_unit(obs["m2"], "kube-apiserver.service", "inactive")
    m2 = with_status(m2, readyz_exit=7, readyz_http=None, readyz_body=())
    m1 = with_status(obs["m1"], backends={"m1": "UP", "m2": "DOWN"})
    doc = evaluate(lab, {**obs, "m1": m1, "m2": m2})
    assert doc["exit_code"] == 1
    assert doc["masters"]["m2"]["apiserver"] == {"active": False, "version": "v1.36.0",
                                                  "readyz": "no answer (curl exit 7)"}
    assert any("kube-apiserver is not active" in m for m in messages(doc, "m2"))
    assert any("backend m2 DOWN" in m for m in messages(doc, "m1"))


def test_an_apiserver_not_ready_and_backends_not_up_are_warnings(lab):
    _, _, obs, _ = lab
    m1 = with_status(obs["m1"], readyz_http=500, readyz_body=("[+]ping ok", "[-]etcd failed: reason withheld"),
                     backends={"m1": "DRAIN", "m2": "MAINT"})
    doc = evaluate(lab, {**obs, "m1": m1})
    assert doc["exit_code"] == 1
    assert doc["masters"]["m1"]["apiserver"]["readyz"] == "HTTP 500: [-]etcd failed: reason withheld"
    assert sum("backend" in m for m in messages(doc, "m1")) == 2


def test_haproxy_and_keepalived_trouble_are_warnings(lab):
    _, _, obs, _ = lab
    m1 = with_status(obs["m1"], stats_ok=False, backends={})
    m2 = with_status(obs["m2"], keepalived_state="FAULT")
    doc = evaluate(lab, {**obs, "m1": m1, "m2": m2})
    assert doc["exit_code"] == 1 and any("stats" in m for m in messages(doc, "m1"))
    assert doc["masters"]["m2"]["keepalived"] == {"active": True, "state": "FAULT"}
    m2 = with_unit(obs["m2"], "keepalived.service", "failed")
    doc = evaluate(lab, {**obs, "m2": m2})
    assert doc["masters"]["m2"]["keepalived"] == {"active": False, "state": None}
    assert messages(doc, "m2") == ["keepalived is not active (failed)"]


def test_a_restart_still_owed_is_degraded(lab):
    _, _, obs, _ = lab
    m1 = with_file(obs["m1"], pending_marker("kube-apiserver"), FileState("e" * 64, 0o644, "root:root"))
    m1 = with_status(m1, owed=("haproxy",))
    doc = evaluate(lab, {**obs, "m1": m1})
    assert doc["masters"]["m1"]["restarts_owed"] == ["haproxy", "kube-apiserver"]
    assert doc["exit_code"] == 1 and len(messages(doc, "m1")) == 2


def test_a_version_other_than_kube_version_is_a_warning(lab):
    _, _, obs, _ = lab
    doc = evaluate(lab, {**obs, "m1": with_status(obs["m1"], version="v1.35.1")})
    assert doc["exit_code"] == 1 and "v1.35.1" in messages(doc, "m1")[0]


# --- certificates ---------------------------------------------------------------------------------


def _not_after(lab, name):
    doc = evaluate(lab)
    return dt.datetime.strptime(doc["masters"]["m1"]["certificates"][name]["not_after"],
                                "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)


def test_a_leaf_inside_the_renewal_window_warns_and_the_window_is_cert_renewal_days(lab):
    settings = lab[0]
    when = _not_after(lab, "apiserver") - dt.timedelta(days=20)
    doc = evaluate(lab, now=when)
    assert doc["exit_code"] == 1
    assert any("apiserver" in m and "expires in" in m for m in messages(doc, "m1"))
    assert not any("CA certificate" in m for m in messages(doc))
    when = _not_after(lab, "apiserver") - dt.timedelta(days=45)
    assert evaluate(lab, now=when)["exit_code"] == 0
    cluster = next(iter(settings.values())).cluster
    object.__setattr__(cluster, "cert_renewal_days", 60)  # the key another change adds to the data
    assert evaluate(lab, now=when)["exit_code"] == 1


def test_the_ca_warns_a_year_ahead_and_an_expired_certificate_is_broken(lab):
    when = _not_after(lab, "ca") - dt.timedelta(days=300)
    doc = evaluate(lab, now=when)
    assert any(m.startswith("CA certificate ca ") for m in messages(doc, "m1", "warning"))
    assert any("expired" in m for m in messages(doc, "m1", "error"))  # the leaves (1 year) are long gone
    assert doc["exit_code"] == 2


def test_an_unreachable_master_is_reported_with_nulls(lab):
    _, _, obs, _ = lab
    doc = evaluate(lab, {**obs, "m2": Observed(error="container vm02 is paused")})
    m2 = doc["masters"]["m2"]
    assert m2["reachable"] is False and m2["holds_vip"] is None and m2["drift"] is None
    assert messages(doc, "m2") == ["not checked: container vm02 is paused"]
    assert doc["exit_code"] == 1


def test_a_missing_pki_is_broken_and_drift_is_not_computed(lab):
    settings, wants, obs, base = lab
    no_pki = {n: (None if settings[n].is_master else w) for n, w in wants.items()}
    doc = evaluate(lab, wants=no_pki, pki_view=PKIView(str(base / "pki"), "the PKI in x is missing ca.pem"))
    assert doc["exit_code"] == 2 and doc["pki"]["ok"] is False
    assert doc["masters"]["m1"]["drift"] is None and doc["masters"]["m1"]["certificates"]
    assert "PKI" in messages(doc, None, "error")[0]


def test_a_leaf_the_next_deploy_reissues_is_a_warning(lab):
    doc = evaluate(lab, pki_view=PKIView("pki", reissue={"apiserver": "SANs changed: +10.9.0.50"}))
    assert doc["exit_code"] == 1 and doc["pki"]["reissue"] == {"apiserver": "SANs changed: +10.9.0.50"}
    assert "pki/apiserver.pem" in messages(doc)[0]


def test_human_output_groups_findings_under_their_host_and_ends_with_the_status(lab):
    _, _, obs, _ = lab
    obs2 = {**obs, "m2": with_file(obs["m2"], HAPROXY_CFG, FileState("0" * 64, 0o644, "root:root"))}
    text = check.render_text(evaluate(lab, obs2)).splitlines()
    assert text[-1] == "degraded"
    m2 = next(i for i, line in enumerate(text) if line.startswith("m2: "))
    assert text[m2 + 1].startswith("  warning: m2: ") and HAPROXY_CFG in text[m2 + 1]
    assert check.render_text(evaluate(lab)).splitlines()[-1] == "healthy"


def test_failure_document_is_broken():
    doc = check.failure("invalid inventory data")
    assert doc["exit_code"] == 2 and doc["problems"][0]["level"] == "error"


def test_cert_names():
    assert check.cert_name("/etc/kubernetes/ssl/apiserver.pem") == "apiserver"
    assert check.cert_name("/etc/haproxy/pki/healthcheck.pem") == "haproxy-healthcheck"
    assert check.cert_name(PATHS.kubeconfig) == "admin"


# --- the status command, run for real (loopback only) ---------------------------------------------------


def test_the_status_command_runs_and_parses_and_never_sends_a_key(tmp_path):
    p = pki.ensure_ca(tmp_path / "pki")
    leaf = pki.ensure_cert(tmp_path / "pki", pki.CertSpec("hc", "hc", client=True), p)
    combined = tmp_path / "healthcheck.pem"
    combined.write_bytes(pki.combined_pem(leaf))
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(f"users:\n- user:\n    client-certificate-data: {base64.b64encode(leaf.cert_pem).decode()}\n"
                          f"    client-key-data: {base64.b64encode(leaf.key_pem).decode()}\n")
    fact = check.HostStatusFact()
    cmd = fact.command(binary=str(tmp_path / "no-binary"), readyz_url="https://127.0.0.1:9/readyz",
                       ca=str(tmp_path / "pki" / "ca.pem"), cert="/nonexistent", key="/nonexistent",
                       stats_url="http://127.0.0.1:9/stats;csv", interface="lo",
                       cert_paths=(str(combined), str(tmp_path / "pki" / "ca.pem"), str(tmp_path / "missing.pem")),
                       kubeconfig=str(kubeconfig))
    out = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=60).stdout
    assert "PRIVATE KEY" not in out and base64.b64encode(leaf.key_pem).decode()[:40] not in out
    s = fact.process(out.splitlines())
    assert s.complete and s.version is None and s.readyz_http is None and s.readyz_exit not in (None, 0)
    assert not s.stats_ok and s.backends == {}
    assert s.certs[str(combined)] == leaf.cert_pem
    assert s.certs[str(tmp_path / "pki" / "ca.pem")] == p.cert_pem
    assert s.certs[PATHS.kubeconfig] == leaf.cert_pem
    assert str(tmp_path / "missing.pem") not in s.certs


def test_the_status_command_only_reads():
    cmd = check.HostStatusFact().command(binary="/b", readyz_url="https://10.0.0.1:6443/readyz", ca="/ca", cert="/c",
                                         key="/k", stats_url="http://127.0.0.1:8404/stats;csv", interface="eth0",
                                         cert_paths=("/etc/kubernetes/ssl/ca.pem",), kubeconfig="/root/.kube/config")
    for word in ("rm ", "mv ", "cp ", "tee", "touch", "mkdir", "chmod", "chown", "systemctl ", "-o /", "sed -i"):
        assert word not in cmd, word
    assert cmd.replace("2>/dev/null", "").replace(">/dev/null", "").count(">") == 0


def test_parse_status_reads_haproxy_keepalived_and_addresses():
    s = check.parse_status([
        "V Kubernetes v1.20.2", "R 0 200", "RB ok", "SO", "B vm01 UP", "B vm02 DOWN 1/2", "B vm03 MAINT (via x)",
        "B vm04 DRAIN (agent)", "KS Entering BACKUP STATE", "I 2: eth0    inet 10.213.0.11/24 brd 10.213.0.255 scope global eth0",
        "I 2: eth0    inet 10.213.0.100/24 scope global secondary eth0", "O kube-apiserver", "END"])
    assert s.version == "v1.20.2" and check.readyz_text(s) == "ok"
    assert s.backends == {"vm01": "UP", "vm02": "DOWN", "vm03": "MAINT", "vm04": "DRAIN"}
    assert s.keepalived_state == "BACKUP" and s.addresses == ("10.213.0.11", "10.213.0.100")
    assert s.owed == ("kube-apiserver",) and s.complete
    assert not check.parse_status(["V x"]).complete


# --- the local PKI, read only ---------------------------------------------------------------------


def _tree(path: Path) -> dict:
    return {str(p): (p.stat().st_mode, p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None)
            for p in sorted(path.rglob("*"))} | {str(path): stat.S_IMODE(path.stat().st_mode)}


def test_load_pki_reads_what_ensure_pki_made_and_changes_nothing(tmp_path):
    settings = make_inventory(tmp_path).load()
    made = ensure_pki(settings["m1"])
    before = _tree(tmp_path / "pki")
    read = load_pki(settings["m1"])
    assert _tree(tmp_path / "pki") == before
    assert read.reissue == {}
    assert desired_state(settings["m1"], read.pki) == desired_state(settings["m1"], made)


def test_load_pki_names_what_is_missing_and_creates_no_directory(tmp_path):
    settings = make_inventory(tmp_path).load()
    with pytest.raises(pki.PKIMissing) as e:
        load_pki(settings["m1"])
    assert "ca.pem" in str(e.value) and "sa-key.pem" in str(e.value)
    assert not (tmp_path / "pki").exists()


def test_load_pki_says_what_the_next_deploy_would_reissue(tmp_path):
    inv = make_inventory(tmp_path)
    ensure_pki(inv.load()["m1"])
    inv.cluster["cert_extra_sans"] = ["10.9.0.50"]
    read = load_pki(inv.load()["m1"])
    assert set(read.reissue) == {"apiserver"} and "+10.9.0.50" in read.reissue["apiserver"]


# --- the runner -----------------------------------------------------------------------------------


def _fake_docker(tmp_path: Path, output: str, rc: int = 0) -> str:
    path = tmp_path / "docker"
    path.write_text(f"#!/bin/sh\necho '{output}'\nexit {rc}\n")
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize("output,rc,expected", [
    ("true false", 0, None),
    ("true true", 0, "paused"),
    ("false false", 0, "not running"),
    ("Error: No such container: vm09", 1, "no container"),
])
def test_a_docker_host_is_used_only_while_it_runs(tmp_path, output, rc, expected):
    from hakube.check_runner import docker_problem

    problem = docker_problem(_fake_docker(tmp_path, output, rc), "vm09")
    assert problem is None if expected is None else expected in problem


class _Readyz(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = b"ok" if self.path == "/readyz" else b"no"
        self.send_response(200 if body == b"ok" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_cluster(tmp_path):
    """Two @fake masters whose canned answers are a converged cluster; the VIP is a loopback address
    (vip_prefix 1 holds the masters' 10.x addresses) where a TLS server answers /readyz like haproxy,
    with the apiserver's certificate, asking for a client certificate from the cluster CA."""
    vip = "127.0.0.100"
    httpd = http.server.HTTPServer((vip, 0), _Readyz)
    inv = make_inventory(tmp_path, masters=2, nodes=0)
    (tmp_path / "pass").write_text("abcd1234\n")
    inv.cluster.update(vip=vip, vip_prefix=1, lb_port=httpd.server_address[1], fake_delay=0, fake_delay_jitter=0,
                       vrrp_auth_pass_file=str(tmp_path / "pass"))
    settings = inv.load(env={})
    ensure_pki(settings["m1"])
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tmp_path / "pki" / "ca.pem"))
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(str(tmp_path / "pki" / "apiserver.pem"), str(tmp_path / "pki" / "apiserver-key.pem"))
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield tmp_path, inv, settings
    httpd.shutdown()


def _snapshot_lines(want: dict, facts: HostFacts) -> list[str]:
    lines = [f"H {s.sha256}  {p}" for p, s in facts.files.items()]
    lines += [f"M {s.mode:o}:{s.owner} {p}" for p, s in facts.files.items()]
    lines += [f"U {u} {a} {e}" for u, (a, e) in facts.units.items()]
    return lines


def _status_lines(status: HostStatus) -> list[str]:
    lines = [f"V Kubernetes {status.version}", "R 0 200", "RB ok", "SO"]
    lines += [f"B {n} {s}" for n, s in status.backends.items()]
    lines += [protocol.line("keepalived_state", f"Entering {status.keepalived_state} STATE")]
    lines += [f"I 2: eth0    inet {a}/24 scope global eth0" for a in status.addresses]
    for path, pem in status.certs.items():
        if path == PATHS.kubeconfig:
            lines.append(f"KC {base64.b64encode(pem).decode()}")
        else:
            lines += [protocol.line("cert_line", f"{path} {text}") for text in pem.decode().splitlines()]
    return lines + ["END"]


def _write_fake_inventory(base: Path, inv, settings, edit=None) -> Path:
    made = load_pki(settings["m1"]).pki
    masters = []
    for name, data in inv.masters:
        cfg = settings[name]
        want = desired_state(cfg, made)
        facts = converged_facts(want)
        if edit and name in edit:
            facts = replace(facts, files={**facts.files, **edit[name]})
        status = converged_status(cfg, want, holds_vip=name == "m1")
        responses = {"sha256sum": _snapshot_lines(want, facts), "echo END": _status_lines(status)}
        masters.append((f"@fake/{name}", {**data, "fake_responses": responses}))
    path = base / "fake_inventory.py"
    path.write_text(f"masters = ({masters!r}, {inv.cluster!r})\n")
    return path


def _check(inventory: Path, *args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("HAKUBE_VRRP_AUTH_PASS", "http_proxy", "https_proxy")}
    env.update(PYTHONPATH=str(ROOT), PYINFRA_FAKE_DELAY="0", PYINFRA_FAKE_DELAY_JITTER="0")
    return subprocess.run([sys.executable, "-m", "hakube.check", *args, str(inventory)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_the_cli_against_fake_hosts_healthy_then_drift(fake_cluster):
    base, inv, settings = fake_cluster
    before = _tree(base / "pki")
    proc = _check(_write_fake_inventory(base, inv, settings), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)  # one JSON document, nothing else on stdout
    assert doc["status"] == "healthy", doc["problems"]
    assert doc["api_via_vip"] == {"ok": True, "detail": "ok"} and doc["vip"]["holders"] == ["m1"]
    assert _tree(base / "pki") == before  # the local PKI is read, never written

    edited = {"m2": {HAPROXY_CFG: FileState("0" * 64, 0o644, "root:root")}}
    proc = _check(_write_fake_inventory(base, inv, settings, edit=edited))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "degraded"
    assert any(line.startswith("  warning: m2: ") and HAPROXY_CFG in line for line in lines)


def test_the_cli_refuses_invalid_data_as_broken(tmp_path):
    inv = make_inventory(tmp_path, masters=2, nodes=0)
    inv.master("m2")["vrrp_priority"] = 120
    path = tmp_path / "bad_inventory.py"
    masters = [(f"@fake/{n}", d) for n, d in inv.masters]
    path.write_text(f"masters = ({masters!r}, {inv.cluster!r})\n")
    proc = _check(path, "--json")
    assert proc.returncode == 2
    doc = json.loads(proc.stdout)
    assert doc["status"] == "broken" and "vrrp_priority" in doc["problems"][0]["message"]


def test_a_docker_host_is_never_started_by_the_check(monkeypatch):
    """pyinfra's DockerConnector.connect starts a stopped container (and commits and removes it at the
    end): the check never calls it, and a container that does not run is not reachable."""
    from pyinfra.api import Config, Inventory, State
    from pyinfra.connectors.docker import DockerConnector

    from hakube import check_runner

    state = State(Inventory((["@docker/vm09"], {})), Config())
    host = next(iter(state.inventory))
    monkeypatch.setattr(DockerConnector, "connect", lambda self: pytest.fail("DockerConnector.connect was called"))
    monkeypatch.setattr(check_runner, "docker_problem", lambda cmd, ident: f"container {ident} is not running")
    assert check_runner.connect(host) == "container vm09 is not running" and not host.connected
    monkeypatch.setattr(check_runner, "docker_problem", lambda cmd, ident: None)
    assert check_runner.connect(host) is None
    assert host.connected and host.connector.container_id == "vm09" and host.connector.no_stop


def test_the_check_never_plans_an_operation():
    """Only facts: no pyinfra operation module, no add_op, no @operation in the check's code."""
    for module in ("check.py", "health.py", "check_runner.py"):
        source = (ROOT / "hakube" / module).read_text()
        for word in ("pyinfra.operations", "add_op", "@operation", "from .hostfiles import install", "ensure_pki",
                     "run_ops"):
            assert word not in source, (module, word)
