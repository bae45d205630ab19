"""The packages step installs every command the deploy runs on a master beyond a minimal image
(systemd + sshd + Debian's "required" packages)."""

from __future__ import annotations

import re
from pathlib import Path

from hakube import packages as package_ops
from hakube.tasks import packages

ROOT = Path(__file__).resolve().parents[2]

#: command -> (a file that runs it, the package that brings it on Debian)
USED = {
    "curl": ("hakube/hostfiles.py", "curl"),  # the download; also the roll's /readyz check
    "pgrep": ("templates/keepalived.conf.j2", "procps"),  # keepalived's check script
    "kubectl": ("tasks/rbac.py", "kubernetes-client"),
    "keepalived": ("tasks/keepalived.py", "keepalived"),
    "haproxy": ("tasks/haproxy.py", "haproxy"),
    "sysctl": ("tasks/haproxy.py", "procps"),  # server.sysctl for ip_nonlocal_bind
    "ip": ("hakube/barriers.py", "iproute2"),  # where the VIP is (the one-holder check)
    "arping": ("hakube/vip.py", "iputils-arping"),  # nothing answers on the VIP before keepalived starts  # where the VIP is: for the operator and the lab's checks
}


def test_every_command_used_is_provided_and_installed() -> None:
    for command, (where, package) in USED.items():
        if where:
            assert re.search(rf"\b{command}\b", (ROOT / where).read_text()), (command, where)
        assert command in packages.PROVIDES, command
        assert package in packages.PACKAGES, package


def test_https_downloads_have_ca_certificates() -> None:
    # curl only recommends ca-certificates, and the install runs with --no-install-recommends.
    assert "--no-install-recommends" in package_ops._install_command(packages.PACKAGES)
    assert "ca-certificates" in packages.PACKAGES


def test_rpm_hosts_get_their_own_package_names() -> None:
    command = package_ops._install_command(packages.PACKAGES, packages.RPM_NAMES)
    dnf = command.split("dnf install -y -q ", 1)[1].split(";", 1)[0].split()
    assert "iproute" in dnf and "procps-ng" in dnf and "iproute2" not in dnf and "procps" not in dnf
    apt = command.split("--no-install-recommends ", 1)[1].split(";", 1)[0].split()
    assert apt == list(packages.PACKAGES)
