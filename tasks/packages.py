"""Step 0 — distribution packages for the later steps: keepalived, haproxy, kubectl, curl, ip, pgrep
(and prometheus-node-exporter with metrics on).

The tutorial installs each with yum at its own step; here they are one remote command per host,
planned only when one of the commands they provide is missing (the package manager — apt, dnf or
yum — is chosen on the host). The install runs in the background while the certificates, the
audit policy and the apiserver's files are staged; ``wait`` makes sure it is done (or shows why
it failed) before anything runs them.
"""

from pyinfra import host
from pyinfra.api import deploy

from hakube.facts import Needs
from hakube.packages import packages, packages_ready

NAME = "Packages"
KEY = "packages"  # this step's files in ``want`` (stable: NAME is only what pyinfra prints)
# Everything the deploy runs on a master beyond a minimal image (systemd + sshd; Debian's
# "required" packages give sh, coreutils' sha256sum/install/stat, awk, grep, getent, useradd):
PACKAGES = (
    "keepalived",  # step 5
    "haproxy",  # step 6
    "kubernetes-client",  # kubectl: the snapshot's RBAC check, step 4
    "curl",  # the binary's download, the roll's /readyz and haproxy-stats checks
    "ca-certificates",  # curl's trust for https downloads (curl only recommends it)
    "iproute2",  # ip: where the VIP is (keepalived itself talks netlink)
    "procps",  # pgrep in keepalived's check script, sysctl for ip_nonlocal_bind
    "iputils-arping",  # arping: nothing answers on the VIP before keepalived first starts
)
# Names on dnf/yum hosts where they differ from Debian's.
RPM_NAMES = {"iproute2": "iproute", "procps": "procps-ng", "iputils-arping": "iputils"}
# The commands they provide that the other steps run: one missing = install them all. (ca-certificates
# has no command common to Debian and RHEL: it comes with the others, as on a minimal image.)
PROVIDES = ("keepalived", "haproxy", "kubectl", "curl", "ip", "pgrep", "sysctl", "arping")
#: With an IPv6 VIP (``vip`` or ``vip6``) only: ndisc6 asks who answers for it (IPv6 has no ARP).
IPV6_PACKAGES = ("ndisc6",)
IPV6_PROVIDES = ("ndisc6",)
# With metrics on (the default): the node exporter (README: Metrics and alerts), its command named as the package.
METRICS_PACKAGES = ("prometheus-node-exporter",)
NEEDS = Needs(commands=PROVIDES + IPV6_PROVIDES + METRICS_PACKAGES)


def wanted(cfg) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(packages, the commands they provide) this master needs: an IPv4-only cluster without metrics's as ever."""
    names, provides = PACKAGES, PROVIDES
    if any(":" in v for v in cfg.cluster.vips):
        names, provides = names + IPV6_PACKAGES, provides + IPV6_PROVIDES
    if cfg.cluster.metrics:
        names, provides = names + METRICS_PACKAGES, provides + METRICS_PACKAGES
    return names, provides


def desired_files(cfg, pki) -> dict:
    return {}


def _installed(cfg, facts) -> bool:
    return facts.commands >= set(wanted(cfg)[1])


@deploy(NAME)
def apply(cfg, want, facts):
    names, provides = wanted(cfg)
    if _installed(cfg, facts):
        host.noop(f"{', '.join(provides)} are installed")
        return None
    return packages(name=f"Install {', '.join(names)}", names=names, rpm_names=RPM_NAMES)


@deploy(NAME)
def wait(cfg, want, facts):
    if _installed(cfg, facts):
        return None
    names, provides = wanted(cfg)
    return packages_ready(name=f"Wait for {', '.join(names)}", commands=provides)
