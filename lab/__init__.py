"""The Docker lab: systemd containers (vm01..vm03 masters, etcd) on the `hakube-lab` network.

CLI: ``python -m lab up [--masters 2|3] [--os bookworm|trixie|mixed] [--nodes 0|1] [--family ipv4|ipv6|dual] | down | status |
health | http up|down | prometheus up|down``.
Importing this package needs neither Docker nor root.
"""
from .config import (ADDRESSES, ADMIN_KUBECONFIG, ALLOWED_MASTERS, APISERVER_BIN, ARTIFACTS_DIR,
                     CA_PEM, CACHE_DIR, CONTAINERS, DEFAULT_MASTERS, ETCD_ADDRESS, ETCD_CA_PEM, ETCD_ENDPOINT,
                     ETCD_NAME, ETCD_PKI, GATEWAY, INTERFACE, K8S_VERSION, KUBECTL_BIN, LAB_DIR, LABEL,
                     HTTP_ADDRESS, HTTP_NAME, KNOWN_HOSTS, MASTER_NAMES, MASTERS, NETWORK, NODE_NAMES, NODES,
                     PKI_DIR, PROMETHEUS_ADDRESS, PROMETHEUS_NAME, PROMETHEUS_URL, REPO, SSH_KEY, SSH_USER,
                     STATE_FILE, SUBNET, VIP, VIP_CIDR, VIP_PREFIX, VRRP_PASS_FILE, ADDRESSES6, DEFAULT_FAMILY,
                     ETCD_ENDPOINT6, FAMILIES, SUBNET6, VIP6, VIP6_PREFIX, primary_vip)
from .core import (family, container_os, down, health, host_arch, http_down, http_up, kubectl, kubectl_env,
                   master_names, masters_count, netshell, node_names, nodes_count, prometheus_down, prometheus_up,
                   read_state, status, up, vip_holder, vip_holders, vrrp_auth_pass)
from .etcd import (CA_FILE as ETCD_CA_FILE, CLIENT_CERT_FILE as ETCD_CLIENT_CERT_FILE,
                   CLIENT_KEY_FILE as ETCD_CLIENT_KEY_FILE, etcd_healthy, etcdctl)
from .tools import apiserver_path, detect_mirror, kubectl_path
from .util import LabError, container_state, docker_available, docker_exec, log

__all__ = [
    # constants
    "NETWORK", "SUBNET", "GATEWAY", "MASTERS", "MASTER_NAMES", "ETCD_NAME", "ETCD_ADDRESS",
    "ADDRESSES", "CONTAINERS", "VIP", "VIP_PREFIX", "VIP_CIDR", "INTERFACE", "LABEL",
    "DEFAULT_MASTERS", "ALLOWED_MASTERS", "K8S_VERSION",
    "ETCD_ENDPOINT", "ETCD_PKI", "ETCD_CA_FILE", "ETCD_CLIENT_CERT_FILE", "ETCD_CLIENT_KEY_FILE",
    "REPO", "CACHE_DIR", "PKI_DIR", "ARTIFACTS_DIR", "LAB_DIR", "STATE_FILE", "VRRP_PASS_FILE",
    "ADMIN_KUBECONFIG", "CA_PEM", "ETCD_CA_PEM", "APISERVER_BIN", "KUBECTL_BIN",
    "NODES", "NODE_NAMES", "HTTP_NAME", "HTTP_ADDRESS", "SSH_USER", "SSH_KEY", "KNOWN_HOSTS",
    "ADDRESSES6", "DEFAULT_FAMILY", "ETCD_ENDPOINT6", "FAMILIES", "SUBNET6", "VIP6", "VIP6_PREFIX", "primary_vip",
    "family",
    # functions
    "LabError", "up", "down", "status", "health", "docker_exec", "docker_available",
    "container_state", "vip_holder", "vip_holders", "kubectl_path", "kubectl", "kubectl_env",
    "apiserver_path", "etcdctl", "etcd_healthy", "vrrp_auth_pass", "masters_count", "master_names",
    "read_state", "detect_mirror", "log", "node_names", "nodes_count", "container_os", "http_up",
    "http_down", "host_arch", "netshell",
    "PROMETHEUS_NAME", "PROMETHEUS_ADDRESS", "PROMETHEUS_URL", "prometheus_up", "prometheus_down",
]
