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
NODES = {"vm04": "10.213.0.14"}  # `up --nodes 1`: the next free lab address after the masters
NODE_NAMES = tuple(NODES)
ALLOWED_NODES = (0, 1)
ETCD_NAME = "etcd"
ETCD_ADDRESS = "10.213.0.20"
# Started on demand (`python -m lab http up`): serves the lab's kube-apiserver over plain HTTP,
# at the path of the default download URL, for the checked-download tests.
HTTP_NAME = "http"
HTTP_ADDRESS = "10.213.0.30"
# Started on demand (`python -m lab prometheus up`, test_16_metrics): a real Prometheus scraping every
# master's haproxy exporter and node exporter, with the shipped alerts at short `for:`.
PROMETHEUS_NAME = "prometheus"
PROMETHEUS_ADDRESS = "10.213.0.50"
PROMETHEUS_PORT = 9090
PROMETHEUS_URL = f"http://{PROMETHEUS_ADDRESS}:{PROMETHEUS_PORT}"
ADDRESSES = {**MASTERS, **NODES, ETCD_NAME: ETCD_ADDRESS, HTTP_NAME: HTTP_ADDRESS, PROMETHEUS_NAME: PROMETHEUS_ADDRESS}
CONTAINERS = tuple(ADDRESSES)

VIP = "10.213.0.100"
VIP_PREFIX = 24
VIP_CIDR = f"{VIP}/{VIP_PREFIX}"
INTERFACE = "eth0"

# --- IPv6 and dual stack (`up --family`) -------------------------------------------------------------
# ipv4: the network and the inventory as ever. ipv6 and dual: the network gets an IPv6 ULA subnet
# as well (Docker's bridge keeps its IPv4 one: `docker exec` and SSH stay on IPv4) and every machine
# an address in it; the inventory then uses IPv6 for everything (ipv6) or adds the IPv6 VIP beside
# the IPv4 one (dual: `vip6`).
FAMILIES = ("ipv4", "ipv6", "dual")
DEFAULT_FAMILY = "ipv4"
SUBNET6 = "fd00:213::/64"
GATEWAY6 = "fd00:213::1"
ADDRESSES6 = {name: f"fd00:213::{address.rsplit('.', 1)[1]}" for name, address in ADDRESSES.items()}
VIP6 = "fd00:213::100"
VIP6_PREFIX = 64
SERVICE_CIDR6 = "fd00:254::/108"  # the apiserver takes an IPv6 Service CIDR of /108 or longer


def has_ipv6(family: str) -> bool:
    """Whether the lab's network and machines of ``family`` carry IPv6 addresses."""
    if family not in FAMILIES:
        raise ValueError(f"--family must be one of {', '.join(FAMILIES)}, not {family!r}")
    return family != "ipv4"


def subnets(family: str) -> tuple[str, ...]:
    return (SUBNET, SUBNET6) if has_ipv6(family) else (SUBNET,)


def primary_vip(family: str) -> str:
    """The VIP clients use (the inventory's ``vip``): IPv6 for the ipv6 family."""
    return VIP6 if family == "ipv6" else VIP

DEFAULT_MASTERS = 2
ALLOWED_MASTERS = (2, 3)

# --- etcd inside the `etcd` container ------------------------------------------------------------
ETCD_PORT = 2379
ETCD_ENDPOINT = f"https://{ETCD_ADDRESS}:{ETCD_PORT}"
ETCD_ENDPOINT6 = f"https://[{ADDRESSES6['etcd']}]:{ETCD_PORT}"
ETCD_PKI = "/etc/etcd/pki"  # etcd-ca.pem, etcd-server.pem/-key.pem, lab-etcdctl.pem/-key.pem
ETCD_SERVER_CERT = "etcd-server"
ETCD_CLIENT_CERT = "lab-etcdctl"

# --- Software versions --------------------------------------------------------------------------
K8S_VERSION = "v1.20.2"
APISERVER_VERSION_LINE = f"Kubernetes {K8S_VERSION}"
SUITE = "trixie"  # the default suite of the masters, and etcd's (etcd 3.5.x)
SUITES = ("bookworm", "trixie")  # Debian 12 and 13
OS_CHOICES = (*SUITES, "mixed")  # mixed: vm01 bookworm, every other machine trixie
DEFAULT_OS = "trixie"


def suites_for(os_choice: str, names) -> dict[str, str]:
    """{machine: Debian suite} for `up --os`."""
    if os_choice not in OS_CHOICES:
        raise ValueError(f"--os must be one of {', '.join(OS_CHOICES)}, not {os_choice!r}")
    if os_choice == "mixed":
        return {n: ("bookworm" if n == "vm01" else "trixie") for n in names}
    return {n: os_choice for n in names}

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
PROMETHEUS_DIR = LAB_DIR / "prometheus"  # the on-demand Prometheus's config and rules, mounted read-only
VRRP_PASS_FILE = LAB_DIR / "vrrp_auth_pass"
# SSH: a non-root admin with passwordless sudo, as on a real site (LAB_CONNECT=ssh in inventory.py)
SSH_USER = "hakube"
SSH_KEY = LAB_DIR / "ssh_key"  # ed25519, OpenSSH format, 0600; the public half is SSH_KEY.pub
KNOWN_HOSTS = LAB_DIR / "known_hosts"  # the masters' host keys, read by `up` through Docker
ADMIN_KUBECONFIG = ARTIFACTS_DIR / "admin.kubeconfig"
CA_PEM = PKI_DIR / "ca.pem"  # the cluster CA (apiserver clients)
ETCD_CA_PEM = PKI_DIR / "etcd-ca.pem"  # the etcd CA: the only CA etcd trusts
