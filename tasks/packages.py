"""Step 0 — distribution packages for the later steps: keepalived, haproxy, kubectl.

The tutorial installs each with yum at its own step; one call here keeps a no-op run at one
package check per host. The package manager (apt, dnf, yum) is chosen from facts.
"""

from pyinfra.api import deploy

from pyinfra import host

from hakube.ops import COMMANDS, install_packages

PACKAGES = ["keepalived", "haproxy", "kubernetes-client"]  # provide hakube.ops.COMMANDS


@deploy("Packages")
def apply(now):
    if now.commands >= set(COMMANDS):
        host.noop(f"{', '.join(COMMANDS)} are installed")
        return None
    return install_packages(PACKAGES, name=f"Install {', '.join(PACKAGES)}")
