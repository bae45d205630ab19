"""`hakube check [--json] [INVENTORY]` (`make check`, ``python -m hakube.check``): read-only health and drift.

The verdicts are ``hakube.health`` (pure: facts in, findings and the JSON document out); the
gathering is ``hakube.check_runner`` (pyinfra's inventory, read-only commands). This module only
joins them: stdout carries the report alone, progress goes to stderr, the exit code is 0 healthy,
1 degraded, 2 broken.
"""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = "read-only health and drift of the cluster INVENTORY describes; exit 0 healthy, 1 degraded, 2 broken"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The check's arguments: the same for ``hakube check`` and ``python -m hakube.check``."""
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    parser.add_argument("inventory", nargs="?", default="inventory.py", help="pyinfra inventory (default inventory.py)")
    return parser


def run(args: argparse.Namespace) -> int:
    """Print the report of ``args.inventory``, return the exit code."""
    import contextlib
    import json

    from .check_runner import collect
    from .health import render_text

    stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries the report only
        doc = collect(args.inventory)
    if args.json:
        stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        stdout.write(render_text(doc))
    stdout.flush()
    return doc["exit_code"]


def main(argv: list[str] | None = None) -> int:
    """``python -m hakube.check [--json] [INVENTORY]``: print the report, return the exit code."""
    parser = add_arguments(argparse.ArgumentParser(prog="python -m hakube.check", description=DESCRIPTION))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
