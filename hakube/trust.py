"""The hosts' CA is the truth: a run never replaces the masters' trust anchors by accident.

Before any change, every master's CA certificates (cluster and etcd) and service-account public key (their sha256,
from the host snapshot) are compared with what this checkout would upload. Any difference — a
fresh clone without the PKI directory, another checkout's CA, masters that disagree among
themselves — refuses the run before a host is touched, naming each master and both hashes.
Replacing an anchor is a deliberate data change: ``replace_ca_sha256`` / ``replace_sa_sha256``
name the exact anchor on the masters that may be replaced.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from . import pki
from .paths import PATHS


@dataclass(frozen=True)
class Anchor:
    kind: str  # "ca", "sa" or "etcd-ca"
    what: str  # for people
    host_path: str  # where the deploy puts it on a master
    replace_key: str  # the data key that allows replacing it


ANCHORS = (
    Anchor("ca", "CA certificate", PATHS.cert("ca"), "replace_ca_sha256"),
    Anchor("sa", "service-account public key", PATHS.sa_pub, "replace_sa_sha256"),
    Anchor("etcd-ca", "etcd CA certificate", PATHS.etcd_ca, "replace_ca_sha256"),
)


def _sha(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def _read(path: str | Path | None) -> bytes | None:
    try:
        return Path(path).read_bytes() if path else None
    except FileNotFoundError:
        return None


def local_anchors(cluster) -> dict[str, str | None]:
    """sha256 of the CA certificate and SA public key this checkout would upload (None: it has none
    yet and would create one). Reads the deploy machine only; creates nothing."""
    pki_dir = Path(cluster.pki_dir)
    ca = _read(pki_dir / pki.CA_CERT_FILE) or _read(cluster.ca_cert_file)
    sa_key = _read(pki_dir / pki.SA_KEY_FILE) or _read(cluster.sa_key_file)
    sa_pub = None
    if sa_key is not None:
        try:
            sa_pub = pki.public_pem(sa_key)
        except (ValueError, TypeError):
            sa_pub = b"unreadable service-account key"
    etcd_ca = _read(pki_dir / pki.ETCD_CA_CERT_FILE) or _read(cluster.etcd_ca_cert_file)
    return {"ca": _sha(ca), "sa": _sha(sa_pub), "etcd-ca": _sha(etcd_ca)}


def problems(local: dict[str, str | None], hosts: dict[str, dict[str, str | None]],
             allow: dict[str, str | None], pki_dir: str) -> list[str]:
    """One line per master whose anchor this run would replace without being told to."""
    out = []
    for a in ANCHORS:
        mine = local.get(a.kind)
        for name in sorted(hosts):
            theirs = hosts[name].get(a.kind)
            if theirs is None or theirs == mine or theirs == allow.get(a.kind):
                continue
            here = f"this checkout's is {mine}" if mine else f"this checkout has none ({pki_dir} holds no {a.what})"
            out.append(f"{name}: {a.host_path} ({a.what}) sha256 {theirs}; {here}")
    return out


def refusal(lines: list[str], pki_dir: str) -> str:
    return (
        "refusing to run: the masters' trust anchors are not this checkout's; no host was changed.\n  "
        + "\n  ".join(lines)
        + f"\nTo go on with the cluster as it is, bring the PKI directory ({pki_dir}) over from the checkout"
        " that made it, or import it through data: ca_cert_file + ca_key_file for the CA, sa_key_file for"
        " the service-account key.\nReplacing them is a deliberate change: set replace_ca_sha256 (or"
        " replace_sa_sha256) to the masters' sha256 shown above; every certificate is then reissued, and a"
        " new service-account key invalidates every service-account token."
    )


def host_anchors(files: dict) -> dict[str, str | None]:
    """The anchors in a host snapshot's ``files`` ({path: FileState})."""
    return {a.kind: (files[a.host_path].sha256 if a.host_path in files else None) for a in ANCHORS}
