"""python -m lab up [--masters 2|3] [--os bookworm|trixie|mixed] [--nodes 0|1] [--family ipv4|ipv6|dual] | down | status
| health | http up|down | prometheus up|down"""
from __future__ import annotations

import argparse
import json
import sys

from . import core
from .config import ALLOWED_MASTERS, ALLOWED_NODES, FAMILIES, OS_CHOICES
from .util import LabError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab",
                                     description="The hakube Docker lab (systemd containers).")
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="build what is missing and start the lab (idempotent)")
    p_up.add_argument("--masters", type=int, choices=ALLOWED_MASTERS, default=None,
                      help="number of masters (default: the current lab's, else 2)")
    p_up.add_argument("--os", choices=OS_CHOICES, default=None,
                      help="Debian of the masters and nodes; mixed = vm01 bookworm, the rest trixie "
                           "(default: the current lab's, else trixie)")
    p_up.add_argument("--nodes", type=int, choices=ALLOWED_NODES, default=None,
                      help="1 adds the node vm04 (default: the current lab's, else 0)")
    p_up.add_argument("--family", choices=FAMILIES, default=None,
                      help="addresses of the lab: ipv4; ipv6 (an IPv6 subnet too, and the inventory all IPv6); "
                           "dual (IPv4 masters and etcd, an IPv4 and an IPv6 VIP) (default: the current lab's, "
                           "else ipv4)")
    sub.add_parser("down", help="remove the lab's containers and network (images/caches stay)")
    sub.add_parser("status", help="print the lab's state as JSON on stdout")
    sub.add_parser("health", help="GET /readyz through the VIP with the admin kubeconfig")
    p_http = sub.add_parser("http", help="the on-demand HTTP server of the lab's kube-apiserver")
    p_http.add_argument("action", choices=("up", "down"))
    p_prom = sub.add_parser("prometheus", help="the on-demand Prometheus scraping the masters (alerts at short for:)")
    p_prom.add_argument("action", choices=("up", "down"))
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            core.up(args.masters, args.os, args.nodes, args.family)
        elif args.command == "down":
            core.down()
        elif args.command == "status":
            print(json.dumps(core.status(), indent=2))
        elif args.command == "health":
            print(core.health())
        elif args.command == "http":
            print(core.http_up()) if args.action == "up" else core.http_down()
        elif args.command == "prometheus":
            print(core.prometheus_up()) if args.action == "up" else core.prometheus_down()
    except LabError as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lab: error: interrupted. Rerun the command; `up` and `down` are idempotent.",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
