"""The tutorial's real topology: documentation only. NEVER run it from this repository's lab.

Two masters (vm01, vm02) carry the apiserver, keepalived and haproxy behind VIP 172.16.16.200;
vm03 and vm04 are nodes that get /etc/kubernetes/config. etcd runs on vm01-vm03. Copy this file,
edit it for your machines, and run:

    HAKUBE_VRRP_AUTH_PASS=... pyinfra my_inventory.py deploy.py --dry --diff
    HAKUBE_VRRP_AUTH_PASS=... pyinfra my_inventory.py deploy.py
"""

masters = (
    [
        ("vm01", {"ssh_hostname": "172.16.16.81", "bind_address": "172.16.16.81", "vrrp_priority": 120, "vrrp_interface": "ens160"}),
        ("vm02", {"ssh_hostname": "172.16.16.82", "bind_address": "172.16.16.82", "vrrp_priority": 110, "vrrp_interface": "ens160"}),
    ],
    {
        "ssh_user": "root",
        "vip": "172.16.16.200",
        "vip_prefix": 24,
        "virtual_router_id": 80,
        "etcd_servers": ["https://172.16.16.81:2379", "https://172.16.16.82:2379", "https://172.16.16.83:2379"],
        "service_cluster_ip_range": "10.254.0.0/16",
        "kube_version": "1.36.0",
        # "vrrp_unicast": True,  # where multicast is dropped (clouds, some switches): see the README
        # sha256 of https://dl.k8s.io/release/v1.36.0/bin/linux/amd64/kube-apiserver (published
        # next to it as kube-apiserver.sha256). Or set kube_apiserver_binary to a local file.
        "kube_apiserver_sha256": "<fill in from dl.k8s.io>",
        # The tutorial's etcd certificates were issued by this CA: import it instead of creating one.
        "ca_cert_file": "/etc/kubernetes/ssl/ca.pem",
        "ca_key_file": "/etc/kubernetes/ssl/ca-key.pem",
        # ...and the tutorial's etcd trusts that same CA, so it is etcd's CA too for now. That keeps
        # the tutorial's weakness (every cert of this CA can read etcd): give etcd its own CA
        # (--trusted-ca-file and a serving cert from it), then point these two at that CA.
        "etcd_ca_cert_file": "/etc/kubernetes/ssl/ca.pem",
        "etcd_ca_key_file": "/etc/kubernetes/ssl/ca-key.pem",
        "cert_subject": {"C": "CN", "ST": "Fuzhou", "L": "Fujian", "O": "k8s", "OU": "System"},
    },
)

nodes = (
    [
        ("vm03", {"ssh_hostname": "172.16.16.83"}),
        ("vm04", {"ssh_hostname": "172.16.16.84"}),
    ],
    {"ssh_user": "root"},
)
