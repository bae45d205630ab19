"""Fixed facts of the Docker lab: names, addresses and paths.

Everything here is importable without Docker being present.
"""
from __future__ import annotations

from pathlib import Path

# --- Docker network -----------------------------------------------------------------------------
NETWORK = "hakube-lab"
SUBNET = "10.213.0.0/24"
GATEWAY = "10.213.0.1"
BRIDGE = "br-hakube-lab"  # host-side bridge name (<= 15 chars)
LABEL = "hakube.lab"  # every lab container and the network carry LABEL=1
LABEL_FILTER = f"label={LABEL}=1"

# --- Machines ---------------------------------------------------------------------------------------
MASTERS = {"vm01": "10.213.0.11", "vm02": "10.213.0.12", "vm03": "10.213.0.13"}
MASTER_NAMES = tuple(MASTERS)
ETCD_NAME = "etcd"
ETCD_ADDRESS = "10.213.0.20"
ADDRESSES = {**MASTERS, ETCD_NAME: ETCD_ADDRESS}
CONTAINERS = tuple(ADDRESSES)

VIP = "10.213.0.100"
VIP_PREFIX = 24
VIP_CIDR = f"{VIP}/{VIP_PREFIX}"
INTERFACE = "eth0"

DEFAULT_MASTERS = 2
ALLOWED_MASTERS = (2, 3)

# --- etcd inside the `etcd` container ------------------------------------------------------------
ETCD_PORT = 2379
ETCD_ENDPOINT = f"https://{ETCD_ADDRESS}:{ETCD_PORT}"
ETCD_PKI = "/etc/etcd/pki"  # etcd-ca.pem, etcd-server.pem/-key.pem, lab-etcdctl.pem/-key.pem
ETCD_SERVER_CERT = "etcd-server"
ETCD_CLIENT_CERT = "lab-etcdctl"

# --- Software versions --------------------------------------------------------------------------
K8S_VERSION = "v1.20.2"
APISERVER_VERSION_LINE = f"Kubernetes {K8S_VERSION}"
SUITE = "trixie"  # image suite (etcd 3.5.x, systemd)
K8S_SUITE = "bookworm"  # source of kube-apiserver and kubectl 1.20.2

# --- Paths ----------------------------------------------------------------------------------------------
PACKAGE_DIR = Path(__file__).resolve().parent
CACHE_DIR = Path.home() / ".cache" / "hakube"
APISERVER_BIN = CACHE_DIR / "kube-apiserver"
KUBECTL_BIN = CACHE_DIR / "kubectl"
REPO = PACKAGE_DIR.parent  # the checkout: the lab runs from it, never from an installed package
PKI_DIR = REPO / "pki"
ARTIFACTS_DIR = REPO / "artifacts"
LAB_DIR = REPO / ".lab"  # git-ignored: secrets and state
STATE_FILE = LAB_DIR / "state.json"
VRRP_PASS_FILE = LAB_DIR / "vrrp_auth_pass"
ADMIN_KUBECONFIG = ARTIFACTS_DIR / "admin.kubeconfig"
CA_PEM = PKI_DIR / "ca.pem"  # the cluster CA (apiserver clients)
ETCD_CA_PEM = PKI_DIR / "etcd-ca.pem"  # the etcd CA: the only CA etcd trusts
