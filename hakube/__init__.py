"""hakube: a pyinfra deploy of a highly available kube-apiserver control plane.

``from hakube import deploy_ha_apiserver`` gives the whole deploy as a pyinfra ``@deploy`` to call
from your own deploy file (``hakube.deploy``). It is imported on first use: importing a module of
the package (``hakube.settings``, ``hakube.pki``, ...) does not import the deploy and its steps.
"""

__all__ = ["deploy_ha_apiserver"]


def __getattr__(name: str):
    if name == "deploy_ha_apiserver":
        from .deploy import deploy_ha_apiserver

        return deploy_ha_apiserver
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
