"""Step 2b — Secrets encrypted at rest: /etc/kubernetes/encryption-config.yaml.

The keys are made once on the deploy machine (``pki_dir/encryption``, ``hakube.encryption``) and
are the same on every master. The config holds them, so it is 0600 root and never shown in a
diff; it is an input of the apiserver (``--encryption-provider-config``): staged, and live in the
apiserver's roll like every other input. Before any host is touched, every key a master's live
config holds must be one this checkout has (``hakube.context.masters_facts``).
"""

from __future__ import annotations

from pyinfra.api import deploy

from hakube.encryption import render_config
from hakube.facts import Needs
from hakube.hostfiles import install
from hakube.paths import PATHS
from hakube.render import DesiredFile

NAME = "Secrets encryption at rest"
KEY = "encryption"  # this step's files in ``want`` (stable: NAME is only what pyinfra prints)
# The live config's keys (name, sha256 of the secret) are read even while encryption is off:
# turning it off over a live config is refused.
NEEDS = Needs(secret_digests=(PATHS.encryption_config,))


def desired_files(cfg, pki) -> dict[str, DesiredFile]:
    c = cfg.cluster
    if not cfg.is_master or not c.secrets_encryption:
        return {}
    keys = [(name, pki.encryption_keys[name]) for name in c.secrets_encryption_keys]
    return {"config": DesiredFile(PATHS.encryption_config, render_config(c.secrets_encryption_provider, keys),
                                  mode="0600", secret=True, notify=("kube-apiserver",))}


@deploy(NAME)
def apply(cfg, want, facts):
    return install(want[KEY].values(), facts)
