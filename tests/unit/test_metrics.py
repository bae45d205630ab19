"""Metrics and alerts (README: Metrics and alerts): the data keys, what each master gets, keepalived's
notify script run for real, the certificates' textfile, and the shipped rules through promtool
(`promtool check rules` / `check metrics` / `test rules`: `make host-deps` installs the prometheus
package for it; missing, the tests fail under CI=true and skip elsewhere)."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from hakube import metrics, render
from hakube.tasks import desired_state, haproxy, keepalived, packages
from hakube.tasks import metrics as metrics_step
from hakube.tasks.certs import ensure_pki

from .conftest import ENV, VIP, make_inventory, needed, problem_for

SCRIPT = render.FILES / "hakube-vrrp-notify"


def _promtool() -> str:
    return needed(shutil.which("promtool"), "promtool is not installed (`make host-deps` installs the prometheus package)")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("metrics")
    s = make_inventory(base, masters=2).load()
    return s, ensure_pki(s["m1"])


# ------------------------------------------------------------------ data keys


def test_defaults_listen_on_each_masters_bind_address(site) -> None:
    s, _ = site
    c = s["m1"].cluster
    assert (c.metrics, c.haproxy_metrics_port, c.node_exporter_port) == (True, 8405, 9100)
    assert (s["m1"].metrics_address, s["m2"].metrics_address) == ("10.9.0.11", "10.9.0.12")
    assert s["n1"].metrics_address is None


def test_metrics_address_per_master(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path)
    inv.master("m2")["metrics_address"] = "127.0.0.1"  # a Prometheus agent on the master itself
    s = inv.load()
    assert (s["m1"].metrics_address, s["m2"].metrics_address) == ("10.9.0.11", "127.0.0.1")
    text = desired_state(s["m2"], ensure_pki(s["m2"]))[haproxy.KEY]["cfg"].content.decode()
    assert "    bind 127.0.0.1:8405\n" in text


@pytest.mark.parametrize("value, why", [("0.0.0.0", "never on every interface"), ("10.9.0.300", "does not appear"),
                                        (VIP, "equals the VIP")])
def test_metrics_address_refused(tmp_path: Path, value: str, why: str) -> None:
    inv = make_inventory(tmp_path)
    inv.master("m2")["metrics_address"] = value
    assert why in problem_for(inv.problems(), "m2", "metrics_address")


def test_metrics_ports_need_ports_of_their_own_while_on(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path)
    inv.cluster.update(haproxy_metrics_port=8404)  # haproxy_stats_port
    assert "haproxy_stats_port" in problem_for(inv.problems(), "m1", "haproxy_metrics_port")
    inv.cluster.update(haproxy_metrics_port=8405, node_exporter_port=6443)
    assert "apiserver_port" in problem_for(inv.problems(), "m1", "node_exporter_port")
    inv.cluster.update(metrics=False)  # nothing listens there then
    inv.load()


def test_metrics_off_renders_none_of_it(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path)
    inv.cluster.update(metrics=False)
    cfg = inv.load()["m1"]
    want = desired_state(cfg, ensure_pki(cfg))
    assert want[metrics_step.KEY] == {}
    assert "prometheus" not in want[haproxy.KEY]["cfg"].content.decode()
    assert "notify" not in want[keepalived.KEY]["conf"].content.decode()
    assert "prometheus-node-exporter" not in packages.wanted(cfg)[0]
    assert "prometheus-node-exporter" not in packages.wanted(cfg)[1]


# ------------------------------------------------------------------ what a master gets


def test_a_master_gets_the_exporters_files_and_a_node_none(site) -> None:
    s, p = site
    want = desired_state(s["m1"], p)[metrics_step.KEY]
    assert {f.path: f.mode for f in want.values()} == {
        "/etc/default/prometheus-node-exporter": "0644", "/etc/keepalived/hakube-vrrp-notify": "0755",
        "/var/lib/prometheus/node-exporter/hakube.prom": "0644",
        "/etc/systemd/system/keepalived.service.d/hakube-metrics.conf": "0644"}
    assert want["keepalived-dropin"].notify == ("daemon-reload",)
    assert want["keepalived-dropin"].content.decode().splitlines()[-2:] == [
        "[Service]", "ExecStopPost=/etc/keepalived/hakube-vrrp-notify INSTANCE kube_api STOP 0"]
    assert want["node-exporter-args"].notify == ("prometheus-node-exporter",)
    assert want["vrrp-notify"].content == SCRIPT.read_bytes()
    assert desired_state(s["n1"], None).get(metrics_step.KEY) is None
    assert "prometheus-node-exporter" in packages.wanted(s["m1"])[0]
    # the state keepalived writes is in the one snapshot, so the run that seeds it is planned only once
    assert metrics.VRRP_STATE_FILE in metrics_step.NEEDS.paths
    assert metrics_step.UNIT in metrics_step.NEEDS.units


def test_haproxy_exporter_frontend(site) -> None:
    s, p = site
    text = desired_state(s["m2"], p)[haproxy.KEY]["cfg"].content.decode()
    block = text[text.index("frontend prometheus\n"):].split("\n\n", 1)[0].splitlines()
    assert [line.strip() for line in block[1:]] == [
        "mode http", "bind 10.9.0.12:8405", "no log",
        "http-request use-service prometheus-exporter if { path /metrics }", "http-request deny deny_status 404"]
    # (test_render.py runs this haproxy.cfg through `haproxy -c`)


def test_keepalived_runs_the_notify_script_as_root(site) -> None:
    s, _ = site
    text = keepalived.desired_files(s["m1"], None)["conf"].content.decode()
    instance = text[text.index("vrrp_instance kube_api {"):]
    assert '    notify "/etc/keepalived/hakube-vrrp-notify" root\n' in instance
    assert "enable_script_security" in text  # keepalived checks the script's owner and path


def test_node_exporter_args_listen_on_one_address(site, tmp_path: Path) -> None:
    s, p = site
    f = desired_state(s["m1"], p)[metrics_step.KEY]["node-exporter-args"]
    (tmp_path / "defaults").write_bytes(f.content)
    # What Debian's unit gets (EnvironmentFile, then $ARGS split on whitespace); sh reads it the same way.
    args = subprocess.run(["sh", "-c", f'. "{tmp_path / "defaults"}"; printf "%s\\n" $ARGS'], capture_output=True,
                          text=True, check=True).stdout.split()
    assert args[0] == "--web.listen-address=10.9.0.11:9100"
    assert "--collector.disable-defaults" in args and "--collector.textfile" in args
    assert f"--collector.textfile.directory={metrics.TEXTFILE_DIR}" in args
    assert "--collector.systemd.unit-include=(kube-apiserver|haproxy|keepalived)[.]service" in args
    assert not any("0.0.0.0" in a or a.startswith("--web.listen-address=:") for a in args)


def _samples(text: str) -> dict[str, float]:
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


def test_certificates_textfile(site) -> None:
    s, p = site
    f = desired_state(s["m1"], p)[metrics_step.KEY]["textfile"]
    samples = _samples(f.content.decode())
    apiserver = x509.load_pem_x509_certificate(p.certs["apiserver"].cert_pem)
    key = 'hakube_certificate_not_after_seconds{kind="leaf",name="apiserver",path="/etc/kubernetes/ssl/apiserver.pem"}'
    assert samples[key] == int(apiserver.not_valid_after_utc.timestamp())
    ca = x509.load_pem_x509_certificate(p.ca_pem)
    assert samples['hakube_certificate_not_after_seconds{kind="ca",name="ca",path="/etc/kubernetes/ssl/ca.pem"}'] == \
        int(ca.not_valid_after_utc.timestamp())
    names = {re.search(r'name="([^"]+)"', k).group(1) for k in samples if k.startswith("hakube_certificate_not_after")}
    assert names == {"ca", "etcd-ca", "apiserver", "apiserver-etcd-client", "apiserver-kubelet-client",
                     "haproxy-healthcheck", "admin"}
    assert samples["hakube_certificate_renewal_window_seconds"] == 30 * 86400
    assert samples[f'hakube_info{{master="m1",vip="{VIP}",vrrp_instance="kube_api"}}'] == 1
    # the same certificates and data: the same bytes, so a run that changes nothing changes nothing here
    assert desired_state(s["m1"], p)[metrics_step.KEY]["textfile"].content == f.content
    lint = subprocess.run([_promtool(), "check", "metrics"], input=f.content.decode(), capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


# ------------------------------------------------------------------ keepalived's notify script, for real


def _notify(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(SCRIPT), *args], capture_output=True, text=True,
                          env={**os.environ, "HAKUBE_TEXTFILE_DIR": str(tmp_path)})


def _state(tmp_path: Path) -> dict[str, float]:
    samples = _samples((tmp_path / "hakube_keepalived.prom").read_text())
    return {re.search(r'state="([A-Z]+)"', k).group(1): v for k, v in samples.items()
            if k.startswith("hakube_keepalived_vrrp_state{")}


def test_notify_writes_one_state_atomically(tmp_path: Path) -> None:
    assert _notify(tmp_path, "INSTANCE", "kube_api", "BACKUP", "120").returncode == 0
    assert _state(tmp_path) == {"MASTER": 0, "BACKUP": 1, "FAULT": 0, "STOP": 0}
    assert _notify(tmp_path, "INSTANCE", "kube_api", "MASTER", "120").returncode == 0
    assert _state(tmp_path) == {"MASTER": 1, "BACKUP": 0, "FAULT": 0, "STOP": 0}
    text = (tmp_path / "hakube_keepalived.prom").read_text()
    assert 'hakube_keepalived_vrrp_state{state="MASTER",vrrp_instance="kube_api"} 1\n' in text
    assert "hakube_keepalived_vrrp_state_change_timestamp_seconds{vrrp_instance=\"kube_api\"} " in text
    assert [p.name for p in tmp_path.iterdir()] == ["hakube_keepalived.prom"]  # no temporary file left
    assert (tmp_path / "hakube_keepalived.prom").stat().st_mode & 0o777 == 0o644  # node exporter's user reads it
    lint = subprocess.run([_promtool(), "check", "metrics"], input=text, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    # STOP (keepalived stopping) and a state the metric has no series for (DELETED): nothing holds the VIP
    _notify(tmp_path, "INSTANCE", "kube_api", "STOP", "120")
    assert _state(tmp_path) == {"MASTER": 0, "BACKUP": 0, "FAULT": 0, "STOP": 1}
    _notify(tmp_path, "INSTANCE", "kube_api", "DELETED", "120")
    assert _state(tmp_path) == {"MASTER": 0, "BACKUP": 0, "FAULT": 0, "STOP": 0}


def test_notify_ignores_groups_and_cleans_labels(tmp_path: Path) -> None:
    assert _notify(tmp_path, "GROUP", "g1", "MASTER", "0").returncode == 0
    assert not (tmp_path / "hakube_keepalived.prom").exists()
    assert _notify(tmp_path, "INSTANCE", 'kube"} evil{x="', "master\n$(reboot)", "1").returncode == 0
    text = (tmp_path / "hakube_keepalived.prom").read_text()
    assert 'vrrp_instance="kubeevilx"' in text and "reboot" not in text and "evil{" not in text
    assert _notify(tmp_path, "INSTANCE").returncode == 2  # too few arguments: a usage line, nothing written


def test_seed_writes_only_where_keepalived_wrote_nothing(tmp_path: Path) -> None:
    assert _notify(tmp_path, "--seed", "INSTANCE", "kube_api", "MASTER", "0").returncode == 0
    assert _state(tmp_path)["MASTER"] == 1
    _notify(tmp_path, "INSTANCE", "kube_api", "BACKUP", "120")  # keepalived's own report
    assert _notify(tmp_path, "--seed", "INSTANCE", "kube_api", "MASTER", "0").returncode == 0
    assert _state(tmp_path) == {"MASTER": 0, "BACKUP": 1, "FAULT": 0, "STOP": 0}
    assert [p.name for p in tmp_path.iterdir()] == ["hakube_keepalived.prom"]


def test_seed_command_reads_the_vip_on_this_masters_interface(site) -> None:
    s, _ = site
    command = metrics.seed_command(s["m2"])
    assert "ip -o -4 addr show dev ens160" in command and f"' {VIP}/'" in command
    assert f"[ ! -e {metrics.VRRP_STATE_FILE} ]" in command and "--seed INSTANCE kube_api" in command


# ------------------------------------------------------------------ the alerts


def test_rules_pass_promtool_check(tmp_path: Path) -> None:
    promtool = _promtool()
    for for_ in (None, "2s"):
        path = tmp_path / f"rules-{for_}.yml"
        path.write_text(metrics.rules_text(for_))
        r = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
    short = metrics.rules_text("2s")
    assert re.findall(r"(?m)^\s*for: (\S+)$", short) == ["2s"] * short.count("- alert:")
    assert len(re.findall(r"(?m)^\s*for: ", metrics.rules_text())) == short.count("- alert:")
    with pytest.raises(ValueError):
        metrics.rules_text("2s; rm")


#: promtool compares annotations too: the test copy has none (check rules renders them above)
def _without_annotations(text: str) -> str:
    return re.sub(r"(?m)^        annotations:\n(?:          .*\n)*", "", text)


RULE_TESTS = """
rule_files: [rules.yml]
evaluation_interval: 15s
tests:
  - interval: 15s
    input_series:
      # vm01 held the VIP, then went FAULT (its haproxy died); vm02 stayed BACKUP: nobody holds it
      - series: 'hakube_keepalived_vrrp_state{instance="10.0.0.11:9100",state="MASTER",vrrp_instance="kube_api"}'
        values: '1x3 0x20'
      - series: 'hakube_keepalived_vrrp_state{instance="10.0.0.12:9100",state="MASTER",vrrp_instance="kube_api"}'
        values: '0x23'
      - series: 'hakube_info{instance="10.0.0.11:9100",master="vm01",vip="10.0.0.100",vrrp_instance="kube_api"}'
        values: '1x23'
      - series: 'hakube_info{instance="10.0.0.12:9100",master="vm02",vip="10.0.0.100",vrrp_instance="kube_api"}'
        values: '1x23'
      # vm03 reports no VRRP state at all
      - series: 'hakube_info{instance="10.0.0.13:9100",master="vm03",vip="10.0.0.100",vrrp_instance="kube_api"}'
        values: '1x23'
    alert_rule_test:
      - eval_time: 30s
        alertname: HakubeVIPNoHolder
        exp_alerts: []
      - eval_time: 2m
        alertname: HakubeVIPNoHolder
        exp_alerts:
          - exp_labels: {severity: critical, vip: 10.0.0.100}
      - eval_time: 5m
        alertname: HakubeVIPSplitBrain
        exp_alerts: []
      - eval_time: 5m30s
        alertname: HakubeVRRPStateMissing
        exp_alerts:
          - exp_labels: {severity: warning, instance: "10.0.0.13:9100", master: vm03, vip: 10.0.0.100,
                         vrrp_instance: kube_api}
  - interval: 15s
    input_series:
      - series: 'hakube_keepalived_vrrp_state{instance="10.0.0.11:9100",state="MASTER",vrrp_instance="kube_api"}'
        values: '1x20'
      - series: 'hakube_keepalived_vrrp_state{instance="10.0.0.12:9100",state="MASTER",vrrp_instance="kube_api"}'
        values: '0x3 1x16'
      - series: 'hakube_info{instance="10.0.0.11:9100",master="vm01",vip="10.0.0.100",vrrp_instance="kube_api"}'
        values: '1x20'
      - series: 'hakube_info{instance="10.0.0.12:9100",master="vm02",vip="10.0.0.100",vrrp_instance="kube_api"}'
        values: '1x20'
    alert_rule_test:
      - eval_time: 2m
        alertname: HakubeVIPSplitBrain
        exp_alerts:
          - exp_labels: {severity: critical, vip: 10.0.0.100}
      - eval_time: 2m
        alertname: HakubeVIPNoHolder
        exp_alerts: []
  - interval: 15s
    input_series:
      # vm02's apiserver stopped: both haproxies mark it DOWN (haproxy 2.6 and 3.0 emit this state set)
      - series: 'haproxy_server_status{instance="10.0.0.11:8405",proxy="kube_api",server="vm02",state="DOWN"}'
        values: '0x3 1x20'
      - series: 'haproxy_server_status{instance="10.0.0.11:8405",proxy="kube_api",server="vm02",state="UP"}'
        values: '1x3 0x20'
      - series: 'haproxy_server_status{instance="10.0.0.11:8405",proxy="kube_api",server="vm01",state="DOWN"}'
        values: '0x23'
      - series: 'haproxy_backend_active_servers{instance="10.0.0.11:8405",proxy="kube_api"}'
        values: '2x3 1x10 0x10'
    alert_rule_test:
      - eval_time: 3m
        alertname: HakubeApiserverBackendDown
        exp_alerts:
          - exp_labels: {severity: warning, instance: "10.0.0.11:8405", proxy: kube_api, server: vm02, state: DOWN}
      - eval_time: 3m
        alertname: HakubeNoApiserver
        exp_alerts: []
      - eval_time: 5m
        alertname: HakubeNoApiserver
        exp_alerts:
          - exp_labels: {severity: critical, instance: "10.0.0.11:8405", proxy: kube_api}
  - interval: 1m
    input_series:
      # Unix time 0 + t: the apiserver's certificate ends at 7 days + 2 h, the CA much later; the
      # renewal window is 7 days + 1 h: due from t = 1 h (fires 1 h later), within 7 days from 2 h
      - series: 'hakube_certificate_not_after_seconds{instance="10.0.0.11:9100",kind="leaf",name="apiserver",path="/etc/kubernetes/ssl/apiserver.pem"}'
        values: '612000x200'
      - series: 'hakube_certificate_not_after_seconds{instance="10.0.0.11:9100",kind="ca",name="ca",path="/etc/kubernetes/ssl/ca.pem"}'
        values: '86400000x200'
      - series: 'hakube_certificate_renewal_window_seconds{instance="10.0.0.11:9100"}'
        values: '608400x200'
    alert_rule_test:
      - eval_time: 1h30m
        alertname: HakubeCertificateRenewalDue
        exp_alerts: []
      - eval_time: 2h5m
        alertname: HakubeCertificateRenewalDue
        exp_alerts:
          - exp_labels: {severity: warning, instance: "10.0.0.11:9100", kind: leaf, name: apiserver,
                         path: /etc/kubernetes/ssl/apiserver.pem}
      - eval_time: 2h5m
        alertname: HakubeCertificateExpiresSoon
        exp_alerts: []
      - eval_time: 2h30m
        alertname: HakubeCertificateExpiresSoon
        exp_alerts:
          - exp_labels: {severity: critical, instance: "10.0.0.11:9100", kind: leaf, name: apiserver,
                         path: /etc/kubernetes/ssl/apiserver.pem}
"""


def test_alerts_fire_on_the_metrics_the_masters_export(tmp_path: Path) -> None:
    """promtool's rule unit tests on series as the masters export them: no holder, two holders, a
    master without VRRP state, an apiserver DOWN in haproxy, none UP, a certificate in the window."""
    promtool = _promtool()
    (tmp_path / "rules.yml").write_text(_without_annotations(metrics.rules_text()))
    (tmp_path / "tests.yml").write_text(RULE_TESTS)
    r = subprocess.run([promtool, "test", "rules", "tests.yml"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "annotations:" not in (tmp_path / "rules.yml").read_text()
    assert (tmp_path / "rules.yml").read_text().count("- alert:") == metrics.rules_text().count("- alert:")


def test_python_m_hakube_metrics_rules_prints_the_shipped_file() -> None:
    import sys

    r = subprocess.run([sys.executable, "-m", "hakube.metrics", "rules"], capture_output=True, text=True, check=True)
    assert r.stdout == (render.FILES / "hakube-rules.yml").read_text()
    r = subprocess.run([sys.executable, "-m", "hakube.metrics", "rules", "--for", "2s"], capture_output=True,
                       text=True, check=True)
    assert r.stdout == metrics.rules_text("2s")
