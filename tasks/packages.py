"""Step 0 — distribution packages for the later steps: keepalived, haproxy, kubectl, curl.

The tutorial installs each with yum at its own step; here they are one remote command per host,
planned only when one of the commands they provide is missing (the package manager — apt, dnf or
yum — is chosen on the host). The install runs in the background while the certificates, the
audit policy and the apiserver's files are staged; ``wait`` makes sure it is done (or shows why
it failed) before anything runs them.
"""

from pyinfra import host
from pyinfra.api import deploy

from hakube.facts import Needs
from hakube.ops import packages, packages_ready

NAME = "Packages"
PACKAGES = ("keepalived", "haproxy", "kubernetes-client", "curl")
PROVIDES = ("keepalived", "haproxy", "kubectl", "curl")  # the commands the other steps run
NEEDS = Needs(commands=PROVIDES)


def desired_files(cfg, pki) -> dict:
    return {}


def _installed(facts) -> bool:
    return facts.commands >= set(PROVIDES)


@deploy(NAME)
def apply(cfg, want, facts):
    if _installed(facts):
        host.noop(f"{', '.join(PROVIDES)} are installed")
        return None
    return packages(name=f"Install {', '.join(PACKAGES)}", names=PACKAGES)


@deploy(NAME)
def wait(cfg, want, facts):
    if _installed(facts):
        return None
    return packages_ready(name=f"Wait for {', '.join(PACKAGES)}", commands=PROVIDES)
