"""Host-side prerequisites: the Debian mirror, host tools, kube-apiserver and kubectl 1.20.2."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .config import (APISERVER_BIN, APISERVER_VERSION_LINE, CACHE_DIR, K8S_SUITE, K8S_VERSION,
                     KUBECTL_BIN, PACKAGE_DIR)
from .util import LabError, log, run

# tool -> Debian package that provides it
BUILD_TOOLS = {"debootstrap": "debootstrap", "go": "golang-go", "rsync": "rsync",
               "dpkg-source": "dpkg-dev", "apt-get": "apt"}
IMAGE_TOOLS = {"debootstrap": "debootstrap", "tar": "tar", "chroot": "coreutils"}
KUBECTL_TOOLS = {"apt-get": "apt", "dpkg-deb": "dpkg"}


def require_tools(tools: dict[str, str], why: str) -> None:
    missing = {t: p for t, p in tools.items() if shutil.which(t) is None}
    if missing:
        names = ", ".join(f"{t} (package {p})" for t, p in missing.items())
        raise LabError(f"missing host tools for {why}: {names}",
                       "install them with `make host-deps` (or apt-get install " +
                       " ".join(sorted(set(missing.values()))) + ")")


def require_root(why: str) -> None:
    if os.geteuid() != 0:
        raise LabError(f"{why} needs root", "run `python -m lab up` as root (e.g. via sudo)")


# --- Debian mirror (read from this machine's apt configuration, never hard-coded) -----------------


def _main_suite(suites: list[str]) -> bool:
    # the main suite is the one without a -updates/-security/-backports suffix
    return any(s and "-" not in s and "/" not in s for s in suites)


def parse_deb822_sources(text: str) -> list[str]:
    """URIs of `Types: deb` stanzas whose Suites include a main suite (in file order)."""
    uris: list[str] = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        for line in stanza.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line[0] in " \t" and key:
                fields[key] += " " + line.strip()
                continue
            if ":" in line:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if "deb" not in fields.get("types", "").split():
            continue
        if _main_suite(fields.get("suites", "").split()):
            uris += fields.get("uris", "").split()
    return uris


def parse_sources_list(text: str) -> list[str]:
    """URIs of one-line `deb` entries for a main suite."""
    uris = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):  # options: [arch=amd64 signed-by=...]
            while words and not words[0].endswith("]"):
                words = words[1:]
            words = words[1:]
        if len(words) >= 2 and _main_suite([words[1]]):
            uris.append(words[0])
    return uris


def detect_mirror(etc_apt: str = "/etc/apt") -> str:
    """The Debian mirror URI this machine's apt uses (HAKUBE_MIRROR overrides)."""
    override = os.environ.get("HAKUBE_MIRROR")
    if override:
        return override.rstrip("/")
    uris: list[str] = []
    for path in sorted(glob.glob(f"{etc_apt}/sources.list.d/*.sources")):
        uris += parse_deb822_sources(Path(path).read_text(errors="replace"))
    for path in [f"{etc_apt}/sources.list", *sorted(glob.glob(f"{etc_apt}/sources.list.d/*.list"))]:
        if os.path.exists(path):
            uris += parse_sources_list(Path(path).read_text(errors="replace"))
    uris = [u for u in uris if u.startswith(("http://", "https://"))]
    if not uris:
        raise LabError(f"no http(s) Debian mirror found in {etc_apt}/sources.list(.d)",
                       "set HAKUBE_MIRROR=http://<your debian mirror>/debian")
    return uris[0].rstrip("/")


# --- kube-apiserver -----------------------------------------------------------------------------------


def _version_of(binary: Path, *args: str) -> str:
    try:
        proc = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return ""
    return (proc.stdout + proc.stderr).strip() if proc.returncode == 0 else ""


def apiserver_path() -> Path:
    return APISERVER_BIN


def apiserver_ok() -> bool:
    return APISERVER_BIN.exists() and _version_of(APISERVER_BIN, "--version") == APISERVER_VERSION_LINE


def ensure_apiserver(mirror: str) -> Path:
    if apiserver_ok():
        return APISERVER_BIN
    require_tools(BUILD_TOOLS, "building kube-apiserver")
    log(f"building kube-apiserver {K8S_VERSION} from Debian {K8S_SUITE} sources (~5 min)")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["bash", str(PACKAGE_DIR / "build-apiserver.sh"), str(CACHE_DIR), mirror],
                          stdout=subprocess.DEVNULL, stderr=None)  # its progress lines go to stderr
    if proc.returncode != 0 or not apiserver_ok():
        raise LabError("building kube-apiserver failed",
                       f"see {CACHE_DIR}/apiserver-build/build.log; rerun `python -m lab up`")
    return APISERVER_BIN


# --- kubectl (Debian bookworm's kubernetes-client 1.20.2) ------------------------------------------


def kubectl_path() -> Path:
    """Where the lab's kubectl 1.20.2 lives (installed by `up`)."""
    return KUBECTL_BIN


def kubectl_ok(path: Path = KUBECTL_BIN) -> bool:
    return path.exists() and K8S_VERSION in _version_of(path, "version", "--client")


def ensure_kubectl(mirror: str) -> Path:
    if kubectl_ok():
        return KUBECTL_BIN
    require_tools(KUBECTL_TOOLS, "fetching kubectl")
    log(f"fetching kubectl {K8S_VERSION} (Debian {K8S_SUITE} kubernetes-client)")
    apt_dir = CACHE_DIR / "apt-kubectl"
    for sub in ("lists/partial", "archives/partial", "sources.list.d", "preferences.d"):
        (apt_dir / sub).mkdir(parents=True, exist_ok=True)
    (apt_dir / "sources.list").write_text(f"deb {mirror} {K8S_SUITE} main\n")
    apt = ["apt-get", "-q",
           "-o", f"Dir::Etc::SourceList={apt_dir}/sources.list",
           "-o", f"Dir::Etc::SourceParts={apt_dir}/sources.list.d",
           "-o", f"Dir::Etc::PreferencesParts={apt_dir}/preferences.d",
           "-o", f"Dir::State::Lists={apt_dir}/lists",
           "-o", f"Dir::Cache::Archives={apt_dir}/archives",
           "-o", "APT::Sandbox::User=root"]
    run([*apt, "update"], timeout=600)
    with tempfile.TemporaryDirectory(prefix="kubectl-", dir=CACHE_DIR) as tmp:
        run([*apt, "download", "kubernetes-client"], cwd=tmp, timeout=600)
        debs = sorted(Path(tmp).glob("kubernetes-client_*.deb"))
        if not debs:
            raise LabError("apt-get download kubernetes-client produced no .deb", "check the mirror")
        run(["dpkg-deb", "-x", str(debs[0]), f"{tmp}/x"])
        new = Path(tmp) / "x" / "usr" / "bin" / "kubectl"
        if not kubectl_ok(new):
            got = _version_of(new, "version", "--client") or "nothing"
            raise LabError(f"{debs[0].name} does not contain kubectl {K8S_VERSION} (got: {got})",
                           f"check that {mirror} serves Debian {K8S_SUITE}")
        staged = KUBECTL_BIN.with_suffix(".tmp")
        shutil.copy2(new, staged)
        staged.chmod(0o755)
        staged.replace(KUBECTL_BIN)
    return KUBECTL_BIN
