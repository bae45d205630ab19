"""The ``hakube`` command (``[project.scripts]``; also ``python -m hakube``).

    hakube check [--json] [INVENTORY]    read-only health and drift (``make check``): exit 0/1/2

The deploy itself runs through pyinfra: ``pyinfra INVENTORY deploy.py`` from a checkout, or your
own deploy file calling ``hakube.deploy_ha_apiserver()``.
"""

from __future__ import annotations

import argparse
import sys

from . import check


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hakube")
    except PackageNotFoundError:  # a checkout that is not installed
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hakube", description="hakube: an HA kube-apiserver control plane with pyinfra")
    parser.add_argument("--version", action="version", version=f"hakube {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    check.add_arguments(commands.add_parser("check", help=check.DESCRIPTION, description=check.DESCRIPTION))
    args = parser.parse_args(argv)
    return check.run(args)


if __name__ == "__main__":
    sys.exit(main())
