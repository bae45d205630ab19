"""Metrics for Prometheus (not in the tutorial; README: Metrics and alerts). With ``metrics`` on
(the default), on every master:

* prometheus-node-exporter (installed by the packages step) listens on ``metrics_address`` only
  (``/etc/default/prometheus-node-exporter``; a change restarts it), its textfile directory holding
  ``hakube.prom``: ``hakube_info``, every certificate's end (``hakube_certificate_not_after_seconds``)
  and the renewal window. Its bytes change only with the certificates or the data;
* keepalived's notify script (``/etc/keepalived/hakube-vrrp-notify``, root's, run as root by
  keepalived on every VRRP state change) writes ``hakube_keepalived_vrrp_state`` there; a keepalived
  already running when the notify arrives gets its state written once (``seed``), and a drop-in
  of keepalived.service writes STOP once it stopped, however it stopped (ExecStopPost);
* haproxy's own exporter is a frontend of ``haproxy.cfg`` (step 6).

Every file is in the host's one snapshot, so a run with nothing to change stays one remote command.
"""

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import server

from hakube import metrics
from hakube.facts import Needs
from hakube.hostfiles import install
from hakube.render import DesiredFile, static
from hakube.units import ensure_running, handler

NAME = "Metrics (node exporter, VRRP state, certificates)"
KEY = "metrics"  # this step's files in ``want`` (stable: NAME is only what pyinfra prints)
UNIT = f"{metrics.NODE_EXPORTER_SERVICE}.service"
NEEDS = Needs(paths=(metrics.VRRP_STATE_FILE,), units=(UNIT,))


def desired_files(cfg, pki) -> dict[str, DesiredFile]:
    if not cfg.is_master or not cfg.cluster.metrics:
        return {}
    return {
        "node-exporter-args": DesiredFile(metrics.NODE_EXPORTER_DEFAULTS, metrics.node_exporter_defaults(cfg),
                                          notify=(metrics.NODE_EXPORTER_SERVICE,)),
        # before keepalived.conf names it: keepalived's script security checks it when it loads the config
        "vrrp-notify": DesiredFile(metrics.NOTIFY_SCRIPT, static("hakube-vrrp-notify"), mode="0755"),
        "textfile": DesiredFile(metrics.HAKUBE_TEXTFILE, metrics.textfile(cfg, pki)),
        "keepalived-dropin": DesiredFile(metrics.KEEPALIVED_DROPIN, metrics.keepalived_dropin(), notify=("daemon-reload",)),
    }


@deploy(NAME)
def apply(cfg, want, facts):
    """After the packages (the node exporter's package must not meet its conffile already there),
    before keepalived's config (which names the notify script)."""
    files = want[KEY]
    if not files:
        return
    install(files.values(), facts)
    handler("daemon-reload", "systemctl daemon-reload", [files["keepalived-dropin"]], facts,
            name="systemctl daemon-reload (keepalived's drop-in changed)")
    handler(metrics.NODE_EXPORTER_SERVICE, f"systemctl restart {UNIT}", [files["node-exporter-args"]], facts,
            name=f"Restart {metrics.NODE_EXPORTER_SERVICE} (its flags changed)")
    ensure_running(UNIT, facts, name=f"{metrics.NODE_EXPORTER_SERVICE} enabled and running")


@deploy("keepalived's VRRP state for Prometheus")
def seed(cfg, want, facts):
    """keepalived runs its notify script on a change of state only: one that was already running
    when the notify was added (a reload is no change) has not written its state. Planned only while
    the snapshot shows no state file."""
    if not want[KEY]:
        return
    if metrics.VRRP_STATE_FILE in facts.files:
        host.noop(f"{metrics.VRRP_STATE_FILE} is there")
        return
    server.shell(name="Write keepalived's VRRP state once (MASTER where the VIP is)", commands=[metrics.seed_command(cfg)])
