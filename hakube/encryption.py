"""Secrets encrypted at rest: the keys on the deploy machine, the apiserver's
EncryptionConfiguration, and which keys a master's live config holds — known by the sha256 of
each key's secret, so nothing secret is ever shown.

Keys live beside the CA in ``pki_dir`` (``encryption/<name>.key``: the base64 of 32 random
bytes, mode 0600, directory 0700), created once on the deploy machine and never replaced. Losing
them makes every Secret stored with them unreadable: the PKI directory must be kept safe anyway.

The config lists the keys in data order (the first one encrypts new writes, every one decrypts)
under one provider (secretbox or aescbc), then ``identity: {}``, so Secrets written before
encryption was turned on stay readable.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Mapping, NamedTuple

from .private import KEY_MODE, private_dir, write_private
from .render import render

PROVIDERS = ("secretbox", "aescbc")  # secretbox first: upstream's recommendation of the two
KEY_NAME_RE = re.compile(r"[a-z0-9-]{1,32}")
KEY_BYTES = 32  # secretbox needs 32; aescbc accepts 16, 24 or 32
KEY_DIR = "encryption"
DATA_KEY = "secrets_encryption_keys"


class EncryptionKeyError(ValueError):
    """A key file in pki_dir that cannot be used (it is never replaced: Secrets may depend on it)."""


def key_dir(pki_dir: str | os.PathLike) -> Path:
    return Path(pki_dir) / KEY_DIR


def key_path(pki_dir: str | os.PathLike, name: str) -> Path:
    return key_dir(pki_dir) / f"{name}.key"


def digest(secret: bytes) -> str:
    """What identifies a key everywhere it is shown: the sha256 of its 32 raw bytes."""
    return hashlib.sha256(secret).hexdigest()


def _decode(path: Path, data: bytes) -> bytes:
    try:
        secret = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise EncryptionKeyError(f"{path} is not base64 ({DATA_KEY}); it is never replaced: "
                                 "restore it from a backup of the PKI directory") from None
    if len(secret) != KEY_BYTES:
        raise EncryptionKeyError(f"{path} holds {len(secret)} bytes, not {KEY_BYTES} ({DATA_KEY}); it is never "
                                 "replaced: restore it from a backup of the PKI directory")
    return secret


def _create(path: Path) -> None:
    """Write a new key at ``path`` unless one is there (two planners racing for the same name both
    end up reading the one that won)."""
    write_private(path, base64.b64encode(secrets.token_bytes(KEY_BYTES)) + b"\n", replace=False)


@lru_cache(maxsize=8)
def ensure_keys(pki_dir: str, names: tuple[str, ...]) -> tuple[tuple[str, bytes], ...]:
    """``((name, 32 raw bytes), ...)`` in ``names`` order: each key read from ``pki_dir``, or made
    there once. Once per process (every master's planning gets the same keys)."""
    private_dir(key_dir(pki_dir))
    out = []
    for name in names:
        path = key_path(pki_dir, name)
        if not path.exists():
            _create(path)
        if path.stat().st_mode & 0o077:
            os.chmod(path, KEY_MODE)
        out.append((name, _decode(path, path.read_bytes())))
    return tuple(out)


def read_keys(pki_dir: str | os.PathLike, names: tuple[str, ...]) -> tuple[tuple[str, bytes], ...]:
    """Read-only ``ensure_keys`` (``make check``): the keys that are there, nothing created or chmodded;
    a missing one is left out (the caller reports it)."""
    out = []
    for name in names:
        path = key_path(pki_dir, name)
        if path.exists():
            out.append((name, _decode(path, path.read_bytes())))
    return tuple(out)


def local_digests(pki_dir: str | os.PathLike) -> dict[str, str]:
    """``{digest: key name}`` of every usable key in ``pki_dir`` (configured or not). Reads the
    deploy machine only; creates nothing."""
    out = {}
    folder = key_dir(pki_dir)
    for path in sorted(folder.glob("*.key")) if folder.is_dir() else ():
        try:
            out.setdefault(digest(_decode(path, path.read_bytes())), path.stem)
        except (OSError, EncryptionKeyError):
            continue  # unusable here: a master that has it is refused, and ensure_keys says why
    return out


def render_config(provider: str, keys: Iterable[tuple[str, bytes]]) -> bytes:
    """The EncryptionConfiguration: Secrets through ``provider`` with ``keys`` (first = writes),
    then identity (reads what was stored before encryption)."""
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r}")
    keys = [(name, base64.b64encode(secret).decode()) for name, secret in keys]
    return render("encryption-config.yaml.j2", provider=provider, keys=keys)


# --- a master's live config, as the host snapshot reports it (names and digests only) -----------

#: awk over an EncryptionConfiguration: one "PROVIDER NAME SECRET" line per key, in file order.
#: It runs on the host; only the sha256 of each decoded secret leaves it (``hakube.facts``).
AWK_KEYS = (
    r'/^[ \t-]*(secretbox|aescbc|aesgcm|kms|identity):/ { v = $0; sub(/^[ \t-]*/, "", v); sub(/:.*/, "", v); p = v } '
    r'/^[ \t-]*name:/ { v = $0; sub(/^[^:]*:/, "", v); gsub(/[ \t\r"' "'" r']/, "", v); n = v } '
    r'/^[ \t-]*secret:/ { v = $0; sub(/^[^:]*:/, "", v); gsub(/[ \t\r"' "'" r']/, "", v); '
    r'print (p == "" ? "-" : p), (n == "" ? "-" : n), v; n = "" }'
)


class LiveKey(NamedTuple):
    """A key of a master's live config, as the snapshot reports it: never the secret itself."""

    name: str
    digest: str  # sha256 of the decoded secret
    provider: str = "secretbox"


def check_problems(enabled: bool, provider: str, local: Mapping[str, str], hosts: Mapping[str, tuple | None],
                   host_path: str, pki_dir: str) -> list[str]:
    """One line per key on a master's live config that this run would no longer read: a key this
    checkout does not have, a key under another provider than ``provider`` (the new config would
    not read what it stored), every key when encryption is turned off. ``local``: ``local_digests``;
    ``hosts``: master -> its live config's ``LiveKey``s, None without one."""
    out = []
    for name in sorted(hosts):
        live = hosts[name]
        if live is None:
            continue
        if not enabled:
            names = ", ".join(k.name for k in live) or "none"
            out.append(f"{name}: {host_path} is live (keys: {names}) but secrets_encryption is false: the apiservers "
                       "would no longer read the Secrets stored with those keys")
            continue
        for k in live:
            if k.digest not in local:
                out.append(f"{name}: {host_path} key {k.name!r} (sha256 of its secret {k.digest}): "
                           f"no key in {key_dir(pki_dir)} has it")
            elif k.provider != provider:
                out.append(f"{name}: {host_path} key {k.name!r} is a {k.provider} key; secrets_encryption_provider "
                           f"{provider} would no longer read what it stored (changing the provider is not supported)")
    return out


def refusal(lines: list[str], pki_dir: str) -> str:
    return (
        "refusing to run: Secrets on the masters are encrypted with keys this run would drop; no host was "
        "changed.\n  " + "\n  ".join(lines)
        + f"\nBring {key_dir(pki_dir)} over from the checkout that made those keys (they are the only way to"
          " read the Secrets stored with them); keys are identified by the sha256 of their secret, never shown."
          " To stop encrypting, first rewrite every Secret unencrypted by hand (README: Day two)."
    )


def rotation_warnings(first_master: str, names: tuple[str, ...], hosts: Mapping[str, tuple | None],
                      serving: bool) -> list[str]:
    """Warnings (not refusals) when this run skips a step of the documented key rotation."""
    live = {m: [k.name for k in keys] for m, keys in hosts.items() if keys is not None}
    out = []
    if not names or not serving or len(hosts) < 2:
        return out
    write = names[0]
    behind = sorted(m for m in hosts if write not in live.get(m, ()))
    if behind:
        out.append(
            f"{first_master}: {DATA_KEY}: {write} becomes the key new Secrets are written with, but "
            f"{', '.join(behind)} cannot read it yet: until the roll reaches them (or if it stops before), a Secret "
            f"written through a rolled master is unreadable through them. Without that window: list {write} second, "
            "run, then first (README: Day two)")
    dropped = sorted({k for keys in live.values() for k in keys} - set(names))
    if dropped and any(keys and keys[0] != write for keys in live.values()):
        out.append(
            f"{first_master}: {DATA_KEY}: {', '.join(dropped)} removed in the same run that changes the write key: "
            "Secrets still stored with it become unreadable. Rewrite every Secret first (README: Day two)")
    return out
