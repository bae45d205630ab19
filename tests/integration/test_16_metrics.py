"""Metrics and alerts on the real lab (README: Metrics and alerts).

A real Prometheus (`python -m lab prometheus up`: Debian's, in the `prometheus` container at
10.213.0.50) scrapes every master's haproxy exporter and node exporter every 2 s and evaluates the
shipped rules with `for: 2s`. On the converged default lab: both masters' targets are up; an
apiserver stopped by hand fires HakubeApiserverBackendDown (and it resolves once it is back);
keepalived stopped on the VIP holder moves MASTER to the other master in the metrics. The seconds
each took are printed. Every test leaves the lab converged: one VIP holder, every unit running.
Prometheus is removed at the end of the module (the other tests pay nothing for it).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

import lab

from .conftest import REPO, api_ok, holders, masters, sh, wait_for

pytestmark = pytest.mark.lab

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # a lab address: never through a proxy
ADDRESS_OF = {address: name for name, address in lab.MASTERS.items()}


def prom(path: str, **params) -> dict:
    url = f"{lab.PROMETHEUS_URL}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
    with _OPENER.open(url, timeout=5) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", body
    return body["data"]


def query(expr: str) -> list[dict]:
    return prom("/api/v1/query", query=expr)["result"]


def alerts(name: str, state: str | None = None) -> list[dict]:
    return [a for a in prom("/api/v1/alerts")["alerts"]
            if a["labels"].get("alertname") == name and (state is None or a["state"] == state)]


def master_of(instance: str) -> str:
    return ADDRESS_OF[instance.rsplit(":", 1)[0]]


def vrrp_masters() -> list[str]:
    """The masters whose keepalived reports MASTER in Prometheus."""
    return sorted(master_of(s["metric"]["instance"])
                  for s in query('hakube_keepalived_vrrp_state{state="MASTER"} == 1'))


def vrrp_state(name: str) -> str | None:
    hits = [s["metric"]["state"] for s in query("hakube_keepalived_vrrp_state == 1")
            if master_of(s["metric"]["instance"]) == name]
    return hits[0] if len(hits) == 1 else None


def settle(timeout: float = 30) -> str:
    def one_holder_and_ok():
        h = holders()
        return h[0] if len(h) == 1 and api_ok() else None

    return wait_for(one_holder_and_ok, timeout, interval=0.2, what="one VIP holder and /readyz ok")


class Poll:
    """``wait_for`` that counts its calls: a measurement that saw its condition at the first call
    measured nothing, so each asks for at least ``least`` calls."""

    def __init__(self, predicate):
        self.predicate, self.calls = predicate, 0

    def __call__(self):
        self.calls += 1
        return self.predicate()

    def until(self, timeout: float, what: str, interval: float = 0.5, least: int = 2):
        started = time.monotonic()
        value = wait_for(self, timeout, interval=interval, what=what)
        seconds = time.monotonic() - started
        assert self.calls >= least, f"{what}: true after {self.calls} call(s): nothing was measured"
        return value, seconds


@pytest.fixture(scope="module")
def prometheus(converged):
    url = lab.prometheus_up()
    yield url
    lab.prometheus_down()


@pytest.fixture
def healthy(prometheus):
    for m in masters():
        sh(m, "systemctl start haproxy keepalived kube-apiserver")
    settle()
    # Prometheus agrees: one MASTER, no backend DOWN (the previous test's alerts resolved)
    wait_for(lambda: len(vrrp_masters()) == 1 and not alerts("HakubeApiserverBackendDown"), 60,
             what="Prometheus seeing one VIP holder and every apiserver UP")
    yield
    for m in masters():
        sh(m, "systemctl start haproxy keepalived kube-apiserver")
    settle()
    wait_for(lambda: len(vrrp_masters()) == 1, 30, what="Prometheus seeing one VIP holder again")


def test_every_masters_exporters_are_scraped(healthy):
    names = masters()
    ups = wait_for(lambda: (u := query('up{job=~"hakube-.*"}')) and len(u) == 2 * len(names)
                   and all(s["value"][1] == "1" for s in u) and u, 30, what="every target up")
    assert sorted((s["metric"]["job"], master_of(s["metric"]["instance"])) for s in ups) == \
        sorted((job, n) for job in ("hakube-haproxy", "hakube-node") for n in names)
    status = json.loads(subprocess.run([sys.executable, "-m", "lab", "status"], cwd=REPO, capture_output=True,
                                       text=True, check=True).stdout)
    assert status["prometheus"] == lab.PROMETHEUS_URL
    # each haproxy sees every apiserver UP (haproxy 2.6 on vm01, 3.0 on vm02: the same metric)
    up = query('haproxy_server_status{proxy="kube_api",state="UP"} == 1')
    assert sorted((master_of(s["metric"]["instance"]), s["metric"]["server"]) for s in up) == \
        sorted((m, n) for m in names for n in names)
    # keepalived's state: MASTER where the VIP is
    assert vrrp_masters() == holders()
    certs = {s["metric"]["name"] for s in query("hakube_certificate_not_after_seconds")}
    assert {"apiserver", "ca", "etcd-ca", "haproxy-healthcheck", "admin"} <= certs
    window = query("hakube_certificate_renewal_window_seconds")
    assert {s["value"][1] for s in window} == {str(30 * 86400)}
    # the exporters listen on each master's own address, on no other
    for n in names:
        listening = sh(n, "ss -Hltn '( sport = :9100 or sport = :8405 )' | awk '{print $4}' | sort -u").stdout.split()
        assert listening == [f"{lab.MASTERS[n]}:8405", f"{lab.MASTERS[n]}:9100"], (n, listening)


def test_a_stopped_apiserver_fires_backend_down_and_resolves(healthy):
    holder = settle()
    victim = next(m for m in reversed(masters()) if m != holder)
    assert alerts("HakubeApiserverBackendDown") == []
    sh(victim, "systemctl stop kube-apiserver")
    firing = Poll(lambda: [a for a in alerts("HakubeApiserverBackendDown", "firing") if a["labels"]["server"] == victim])
    fired, seconds = firing.until(60, f"HakubeApiserverBackendDown firing for {victim}")
    print(f"\nkube-apiserver stopped on {victim}: HakubeApiserverBackendDown firing after {seconds:.1f}s "
          f"({firing.calls} polls; shutdown delay 5s + haproxy check 2 x 1s + scrape 2s + for 2s)")
    every = Poll(lambda: {master_of(a["labels"]["instance"]) for a in alerts("HakubeApiserverBackendDown", "firing")
                          if a["labels"]["server"] == victim} == set(masters()))
    every.until(30, "every master's haproxy reporting it DOWN", least=1)
    assert api_ok()  # the other apiserver serves through the VIP meanwhile

    sh(victim, "systemctl start kube-apiserver")
    resolved = Poll(lambda: not alerts("HakubeApiserverBackendDown"))
    _, seconds = resolved.until(120, f"HakubeApiserverBackendDown resolved for {victim}")
    print(f"kube-apiserver started on {victim}: the alert resolved after {seconds:.1f}s ({resolved.calls} polls)")
    assert query(f'haproxy_server_status{{proxy="kube_api",server="{victim}",state="UP"}} == 1')


def test_keepalived_stopped_on_the_holder_moves_master_in_the_metrics(healthy):
    holder = settle()
    assert vrrp_masters() == [holder]
    sh(holder, "systemctl stop keepalived")
    moved = Poll(lambda: (m := vrrp_masters()) and m != [holder] and len(m) == 1 and m[0])
    new, seconds = moved.until(30, "another master reporting MASTER")
    print(f"\nkeepalived stopped on {holder}: {new} reports MASTER after {seconds:.1f}s ({moved.calls} polls)")
    assert holders() == [new]
    assert vrrp_state(holder) == "STOP"  # its notify ran on the way down

    sh(holder, "systemctl start keepalived")
    assert settle() == new  # nopreempt: the VIP stays where it went
    back = Poll(lambda: vrrp_state(holder) == "BACKUP" and vrrp_masters() == [new])
    _, seconds = back.until(30, f"{holder} reporting BACKUP, {new} MASTER", least=1)
    print(f"keepalived started on {holder}: BACKUP in the metrics after {seconds:.1f}s")
    assert alerts("HakubeVIPSplitBrain", "firing") == []
