"""Distribution packages, installed in the background with the host's own package manager."""

from __future__ import annotations

import shlex

from pyinfra.api import operation

PACKAGES_UNIT = "hakube-packages"  # the transient unit that installs them in the background


def _install_command(names, rpm_names: dict | None = None) -> str:
    q = " ".join(shlex.quote(n) for n in names)
    rpm = " ".join(shlex.quote((rpm_names or {}).get(n, n)) for n in names)
    return (
        "if command -v apt-get >/dev/null; then apt-get -o Acquire::Languages=none update -qq && "
        f"DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends {q}; "
        f"elif command -v dnf >/dev/null; then dnf install -y -q {rpm}; "
        f"elif command -v yum >/dev/null; then yum install -y -q {rpm}; "
        "else echo 'no supported package manager (apt-get, dnf, yum)' >&2; exit 1; fi"
    )


@operation(is_idempotent=False)
def packages(names: tuple[str, ...], rpm_names: dict | None = None):
    """
    Start installing distribution packages in the background (a transient systemd unit), with the
    host's own package manager (apt, dnf or yum): one remote command, and the later steps' file
    uploads go on meanwhile. ``packages_ready`` waits for it before anything runs them. Plan it
    only when something is missing (``tasks/packages.py``).

    + names: package names (Debian's)
    + rpm_names: {Debian name: name on dnf/yum hosts} where they differ
    """
    yield (  # an install an interrupted run started may still be going: then wait for that one
        f"systemctl is-active -q {PACKAGES_UNIT} || {{ systemctl reset-failed {PACKAGES_UNIT} 2>/dev/null; "
        f"systemd-run --quiet --unit={PACKAGES_UNIT} --description='hakube: install packages' "
        f"sh -c {shlex.quote(_install_command(names, rpm_names))}; }}"
    )


@operation(is_idempotent=False)
def packages_ready(commands: tuple[str, ...]):
    """
    Wait for the background install of ``packages``; fail with its journal if it failed, or if
    one of ``commands`` is still missing.

    + commands: what the packages provide
    """
    unit = PACKAGES_UNIT
    yield (
        f"while case $(systemctl show -p ActiveState --value {unit}) in active|activating|deactivating) true;; "
        "*) false;; esac; do sleep 0.5; done; "
        f"if systemctl is-failed -q {unit}; then echo 'installing the packages failed:' >&2; "
        f"journalctl -u {unit} -n 30 --no-pager -o cat >&2; systemctl reset-failed {unit}; exit 1; fi; "
        f"for c in {' '.join(shlex.quote(c) for c in commands)}; do command -v \"$c\" >/dev/null || "
        "{ echo \"$c is still missing after the package install\" >&2; exit 1; }; done"
    )

