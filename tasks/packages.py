"""Step 0 — distribution packages for the later steps: keepalived, haproxy, kubectl, curl.

The tutorial installs each with yum at its own step; here they are one remote command per host,
planned only when one of the commands they provide is missing (the package manager — apt, dnf or
yum — is chosen on the host).
"""

from pyinfra import host
from pyinfra.api import deploy

from hakube.facts import Needs
from hakube.ops import packages

NAME = "Packages"
PACKAGES = ("keepalived", "haproxy", "kubernetes-client", "curl")
PROVIDES = ("keepalived", "haproxy", "kubectl", "curl")  # the commands the other steps run
NEEDS = Needs(commands=PROVIDES)


def desired_files(cfg, pki) -> dict:
    return {}


@deploy(NAME)
def apply(cfg, want, facts):
    if facts.commands >= set(PROVIDES):
        host.noop(f"{', '.join(PROVIDES)} are installed")
        return None
    return packages(name=f"Install {', '.join(PACKAGES)}", names=PACKAGES)
