"""Where the deploy puts things on a host that more than one step reads.

The certs step writes /etc/kubernetes/ssl; the apiserver's flags, its roll and haproxy's check
read it. A path only one step uses lives in that step's task file.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Paths:
    ssl_dir: str = "/etc/kubernetes/ssl"
    audit_policy: str = "/etc/kubernetes/audit-policy.yaml"
    encryption_config: str = "/etc/kubernetes/encryption-config.yaml"  # Secrets at rest (0600: holds the keys)
    apiserver_binary: str = "/usr/local/bin/kube-apiserver"
    agent_state: str = "/run/kube-apiserver-agent"  # "drain" while the roll restarts this apiserver
    kubeconfig: str = "/root/.kube/config"  # the admin kubeconfig on a master

    def cert(self, name: str) -> str:
        return f"{self.ssl_dir}/{name}.pem"

    def key(self, name: str) -> str:
        return f"{self.ssl_dir}/{name}-key.pem"

    @property
    def etcd_ca(self) -> str:
        """etcd's CA: verifies etcd's serving certificate (and issued the apiserver's etcd client cert)."""
        return self.cert("etcd-ca")

    @property
    def sa_pub(self) -> str:
        return f"{self.ssl_dir}/sa.pub"


PATHS = Paths()
