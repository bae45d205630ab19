"""Step 1 — Kubernetes certificates and keys (tutorial: 创建kubernetes证书和密钥).

The PKI lives on the deploy machine (hakube.pki, called from deploy.py); this step uploads the
cluster CA and etcd CA certificates, the apiserver's certificates and keys and the
service-account keypair to /etc/kubernetes/ssl. Keys are 0600. The CA keys never leave the
deploy machine.
"""

from pyinfra.api import deploy

from hakube.ops import managed_file


@deploy("Certificates (/etc/kubernetes/ssl)")
def apply(plan, now):
    return [managed_file(name=f"Install {f.path}", file=f, now=now) for f in plan.certs]
