"""Metrics for Prometheus (README: Metrics and alerts): what the deploy writes, as data.

Every master offers two scrape targets on its ``metrics_address`` (its bind_address by default):

* haproxy's built-in exporter (``haproxy_metrics_port``, ``templates/haproxy.cfg.j2``): every
  apiserver as this master's haproxy sees it, ``haproxy_server_status{proxy="kube_api",server=..,state=..}``;
* prometheus-node-exporter (``node_exporter_port``), whose textfile directory holds

  - ``hakube.prom`` (written by the deploy, changed only when its inputs change): ``hakube_info``,
    ``hakube_certificate_not_after_seconds`` per certificate on the master and the renewal window;
  - ``hakube_keepalived.prom`` (written by keepalived's notify script on every VRRP state change):
    ``hakube_keepalived_vrrp_state{vrrp_instance="kube_api",state=..}``, one series per state, 1 for
    the current one (MASTER holds the VIP), and the time of the last change.

The alerts are ``files/hakube-rules.yml`` (``rules_text``; ``python -m hakube.metrics rules``).
"""

from __future__ import annotations

import re
import shlex

from . import pki as pkimod
from .probes import host_port
from .render import static

#: node exporter's textfile collector directory on Debian (and its default there)
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"
#: what the deploy writes there (a managed file: compared in the one snapshot like any other)
HAKUBE_TEXTFILE = f"{TEXTFILE_DIR}/hakube.prom"
#: what keepalived's notify script writes there (not managed: it changes with the VRRP state)
VRRP_STATE_FILE = f"{TEXTFILE_DIR}/hakube_keepalived.prom"
#: keepalived's notify script (root-owned, 0755, in a root-only path: keepalived's script security)
NOTIFY_SCRIPT = "/etc/keepalived/hakube-vrrp-notify"
#: keepalived.service's drop-in: STOP once it stopped, however (its own notify on the way down is
#: fire-and-forget: killed with it, or never sent when keepalived is killed or crashes)
KEEPALIVED_DROPIN = "/etc/systemd/system/keepalived.service.d/hakube-metrics.conf"
NODE_EXPORTER_DEFAULTS = "/etc/default/prometheus-node-exporter"  # its ARGS (Debian's unit reads them)
NODE_EXPORTER_SERVICE = "prometheus-node-exporter"
NODE_EXPORTER_PACKAGE = "prometheus-node-exporter"  # the command it installs has the same name
VRRP_INSTANCE = "kube_api"  # templates/keepalived.conf.j2's vrrp_instance
VRRP_STATES = ("MASTER", "BACKUP", "FAULT", "STOP")  # the states the metric has a series for
RULES_FILE = "hakube-rules.yml"  # files/: the alerts

#: node exporter's collectors besides the textfile one: the host's basics and our three units
#: (the systemd collector reads them over D-Bus); every other default collector is off.
COLLECTORS = ("cpu", "diskstats", "filesystem", "loadavg", "meminfo", "netdev", "stat", "time", "uname")
UNITS_WATCHED = ("kube-apiserver", "haproxy", "keepalived")


def node_exporter_args(cfg) -> str:
    """The flags of prometheus-node-exporter on this master (systemd splits ``$ARGS`` on spaces;
    the unit regex has no backslash, which an environment file would take as an escape)."""
    c = cfg.cluster
    units = f"({'|'.join(UNITS_WATCHED)})[.]service"
    flags = [f"--web.listen-address={host_port(cfg.metrics_address, c.node_exporter_port)}", "--collector.disable-defaults",
             "--collector.textfile", f"--collector.textfile.directory={TEXTFILE_DIR}",
             "--collector.systemd", f"--collector.systemd.unit-include={units}",
             *(f"--collector.{name}" for name in COLLECTORS)]
    return " ".join(flags)


def node_exporter_defaults(cfg) -> bytes:
    return (f"# Managed by hakube (pyinfra) for {cfg.short_name}: prometheus-node-exporter's flags; a change\n"
            f"# restarts it. It listens on {cfg.metrics_address} only (metrics_address, node_exporter_port).\n"
            f'ARGS="{node_exporter_args(cfg)}"\n').encode()


def _labels(**labels: str) -> str:
    def esc(v: str) -> str:
        return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in sorted(labels.items())) + "}"


def certificates(cfg, p) -> list[tuple[str, str, bytes]]:
    """(name, path on the master, PEM) of every certificate the deploy puts on a master."""
    from hakube.paths import PATHS

    out = [("ca", PATHS.cert("ca"), p.ca_pem), ("etcd-ca", PATHS.etcd_ca, p.etcd_ca_pem)]
    for name in ("apiserver", "apiserver-etcd-client", "apiserver-kubelet-client"):
        out.append((name, PATHS.cert(name), p.certs[name].cert_pem))
    out.append(("haproxy-healthcheck", "/etc/haproxy/pki/healthcheck.pem", p.certs["haproxy-healthcheck"].cert_pem))
    out.append(("admin", PATHS.kubeconfig, p.certs["admin"].cert_pem))
    if cfg.cluster.kubelet_certificate_authority_file:
        from pathlib import Path

        out.append(("kubelet-ca", PATHS.cert("kubelet-ca"), Path(cfg.cluster.kubelet_certificate_authority_file).read_bytes()))
    return out


def textfile(cfg, p) -> bytes:
    """``hakube.prom``: the same bytes for the same certificates and data, so a run that changes
    neither changes nothing. A blank PEM (the placeholder PKI, only its paths count) is left out."""
    c = cfg.cluster
    lines = [f"# Managed by hakube (pyinfra) for {cfg.short_name}: read by prometheus-node-exporter's textfile collector.",
             "# HELP hakube_info This master in a hakube cluster: its VIP and VRRP instance.",
             "# TYPE hakube_info gauge",
             f"hakube_info{_labels(master=cfg.short_name, vip=c.vip, vrrp_instance=VRRP_INSTANCE)} 1",
             "# HELP hakube_certificate_not_after_seconds When a certificate the deploy put on this master expires (Unix time).",
             "# TYPE hakube_certificate_not_after_seconds gauge"]
    for name, path, pem in sorted(certificates(cfg, p)):
        if not pem:
            continue
        e = pkimod.expiry(pem)
        kind = "ca" if e.is_ca else "leaf"
        lines.append(f"hakube_certificate_not_after_seconds{_labels(name=name, path=path, kind=kind)} "
                     f"{int(e.not_after.timestamp())}")
    lines += ["# HELP hakube_certificate_renewal_window_seconds A run reissues a certificate that expires within this "
              "(cert_renewal_days); a CA with less left stops the run.",
              "# TYPE hakube_certificate_renewal_window_seconds gauge",
              f"hakube_certificate_renewal_window_seconds {c.cert_renewal_days * 86400}"]
    return ("\n".join(lines) + "\n").encode()


def notify_line() -> str:
    """keepalived's ``notify`` for the VRRP instance: the script, run as root (it writes into node
    exporter's directory, nothing else). keepalived appends: INSTANCE, the name, the state, the priority."""
    return f'notify "{NOTIFY_SCRIPT}" root'


def keepalived_dropin() -> bytes:
    return ("# Managed by hakube (pyinfra): keepalived's VRRP state for Prometheus is STOP once keepalived has\n"
            "# stopped, however it stopped (its own notify on the way down may never run: killed, crashed).\n"
            "[Service]\n"
            f"ExecStopPost={NOTIFY_SCRIPT} INSTANCE {VRRP_INSTANCE} STOP 0\n").encode()


def seed_command(cfg) -> str:
    """Shell: a running keepalived that has not written its state yet (it writes on a change of
    state only, and a reload that adds the notify is none) gets it written once: MASTER when the
    VIP is on this master's interface, else BACKUP. The script never replaces a state keepalived
    wrote meanwhile (``--seed``)."""
    c, q = cfg.cluster, shlex.quote
    return (f"if [ ! -e {q(VRRP_STATE_FILE)} ] && systemctl is-active -q keepalived.service; then "
            f"if ip -o -4 addr show dev {q(cfg.vrrp_interface)} | grep -q {q(f' {c.vip}/')}; then s=MASTER; "
            f"else s=BACKUP; fi; {q(NOTIFY_SCRIPT)} --seed INSTANCE {VRRP_INSTANCE} \"$s\" 0; fi")


def rules_text(for_: str | None = None) -> str:
    """The shipped alerting rules; ``for_`` replaces every ``for:`` duration (the lab's short copy)."""
    text = static("hakube-rules.yml").decode()  # RULES_FILE
    if for_ is not None:
        if not re.fullmatch(r"[0-9]+(ms|s|m|h|d)", for_):
            raise ValueError(f"{for_!r} is not a Prometheus duration like 2s, 5m")
        text = re.sub(r"(?m)^(\s*for:\s*)\S+", lambda m: m.group(1) + for_, text)
    return text


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m hakube.metrics", description="hakube's Prometheus alerts")
    sub = parser.add_subparsers(dest="command", required=True)
    p_rules = sub.add_parser("rules", help="print the alerting rules (a Prometheus rule file)")
    p_rules.add_argument("--for", dest="for_", default=None, help="replace every `for:` duration (e.g. 2s)")
    args = parser.parse_args(argv)
    print(rules_text(args.for_), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
