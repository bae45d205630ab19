"""What the deploy and the check ask a master, and the names they ask by: written once, so the
roll, the leave, the VIP switch, the check and the templates cannot drift apart."""

from __future__ import annotations

import re
import shlex

BACKEND = "kube_api"  # haproxy's frontend and backend of every apiserver (templates/haproxy.cfg.j2)


def short_name(host_name: str) -> str:
    """``@docker/vm01`` -> ``vm01``: a name haproxy and keepalived accept."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", host_name.rsplit("/", 1)[-1])


def url_host(address: str) -> str:
    """``address`` as the host part of a URL or an ``address:port`` pair: an IPv6 address in
    brackets (``[fd00::1]``), anything else as it is."""
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


def host_port(address: str, port: int) -> str:
    """``10.0.0.1:6443``, ``[fd00::1]:6443``: what haproxy, systemd sockets and URLs take."""
    return f"{url_host(address)}:{port}"


def is_ipv6(address: str) -> bool:
    """An IPv6 address (written without brackets); False for IPv4 and DNS names."""
    return ":" in address


def readyz_url(address: str, port: int) -> str:
    return f"https://{host_port(address, port)}/readyz"


def stats_url(port: int) -> str:
    """haproxy's stats as CSV, on the master itself (the stats listener binds 127.0.0.1)."""
    return f"http://127.0.0.1:{port}/stats;csv"


def readyz_ok(url: str, ca: str, cert: str, key: str | None = None) -> str:
    """Shell that succeeds when ``url`` answers 2xx to our client certificate, TLS verified against
    ``ca`` (no ``key``: ``cert`` holds it too, as haproxy's combined file does)."""
    # -g: brackets of an IPv6 URL are the address, never curl's globbing
    words = ("curl", "-gsf", "-o", "/dev/null", "--max-time", "2", "--cacert", ca, "--cert", cert,
             *(("--key", key) if key else ()), url)
    return " ".join(shlex.quote(w) for w in words)
