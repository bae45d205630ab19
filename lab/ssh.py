"""SSH into the lab as on a real site: a non-root admin with passwordless sudo and a key pair.

``lab up`` makes the key pair once (``.lab/ssh_key``, ed25519, 0600; git-ignored), creates the
user on every machine with the public key authorised, and writes the machines' own host keys —
read through Docker, not over the network — into ``.lab/known_hosts``, so pyinfra connects with
strict host-key checking. ``inventory.py`` uses all of it when ``LAB_CONNECT=ssh``.
"""
from __future__ import annotations

import os
import shlex

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from .config import ADDRESSES, KNOWN_HOSTS, LAB_DIR, SSH_KEY, SSH_USER
from .util import LabError, docker_exec, log

HOST_KEY = "/etc/ssh/ssh_host_ed25519_key.pub"


def ensure_key() -> str:
    """The lab's key pair (made once); returns the public key line."""
    pub = SSH_KEY.with_name(SSH_KEY.name + ".pub")
    if not SSH_KEY.exists() or not pub.exists():
        LAB_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = ed25519.Ed25519PrivateKey.generate()
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                    serialization.NoEncryption())
        tmp = SSH_KEY.with_name(SSH_KEY.name + ".tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # private from its first byte
        with os.fdopen(fd, "wb") as f:
            f.write(private)
        line = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                             serialization.PublicFormat.OpenSSH).decode()
        pub.write_text(f"{line} hakube-lab\n")
        tmp.replace(SSH_KEY)
    os.chmod(SSH_KEY, 0o600)
    return pub.read_text().strip()


def ensure_user(name: str, public_key: str) -> None:
    """SSH_USER on ``name``: a login shell, the lab's key authorised, sudo without a password."""
    home = f"/home/{SSH_USER}"
    script = (
        "set -e; "
        f"id -u {SSH_USER} >/dev/null 2>&1 || useradd -m -s /bin/bash {SSH_USER}; "
        f"install -d -m 0700 -o {SSH_USER} -g {SSH_USER} {home}/.ssh; "
        f"printf '%s\\n' {shlex.quote(public_key)} > {home}/.ssh/authorized_keys; "
        f"chown {SSH_USER}:{SSH_USER} {home}/.ssh/authorized_keys; chmod 0600 {home}/.ssh/authorized_keys; "
        f"printf '%s\\n' '{SSH_USER} ALL=(ALL:ALL) NOPASSWD: ALL' > /etc/sudoers.d/{SSH_USER}; "
        f"chmod 0440 /etc/sudoers.d/{SSH_USER}; "
        "systemctl is-active --quiet ssh.service || systemctl start ssh.service"
    )
    docker_exec(name, "sh", "-c", script, timeout=60)


def host_key(name: str) -> str:
    proc = docker_exec(name, "cat", HOST_KEY, check=False)
    words = proc.stdout.split()
    if proc.returncode != 0 or len(words) < 2:
        raise LabError(f"{name} has no SSH host key at {HOST_KEY}",
                       f"see `docker exec {name} systemctl status ssh hakube-lab-sshd-keys`")
    return " ".join(words[:2])


def ensure(names) -> None:
    """User, key and known_hosts for every machine in ``names`` (idempotent)."""
    public_key = ensure_key()
    lines = []
    for name in names:
        ensure_user(name, public_key)
        lines.append(f"{ADDRESSES[name]} {host_key(name)}")
    KNOWN_HOSTS.write_text("\n".join(lines) + "\n")
    log(f"ssh: {SSH_USER}@{{{','.join(names)}}} with {SSH_KEY} (sudo without a password)")


def info() -> dict:
    return {"user": SSH_USER, "key": str(SSH_KEY) if SSH_KEY.exists() else None,
            "known_hosts": str(KNOWN_HOSTS) if KNOWN_HOSTS.exists() else None}
