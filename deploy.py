"""Highly available kube-apiserver: the tutorial's table of contents is ``hakube/deploy.py``.

    pyinfra inventory.py deploy.py            apply
    pyinfra inventory.py deploy.py --dry --diff   show what would change, touch nothing

From your own deploy file: ``from hakube import deploy_ha_apiserver; deploy_ha_apiserver()``.
"""

from hakube.deploy import ha_apiserver

ha_apiserver()
