"""The lab's images, tagged by a hash of their recipe.

hakube-lab:<hash>       debootstrap'ed Debian, one per suite (bookworm, trixie): a minimal OS with
                        systemd as PID 1, sshd and sudo, nothing else. Every command the deploy
                        runs on a master (curl, ip, pgrep, ...) is installed by the deploy itself.
hakube-lab-etcd:<hash>  the trixie image plus etcd-server/etcd-client (etcd unit disabled) and
                        busybox (the on-demand HTTP server of the download tests runs its httpd)
hakube-lab-prometheus:<hash>  the trixie image plus Debian's prometheus (built on demand by
                        `python -m lab prometheus up`; the container runs the binary, no systemd)
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .config import CACHE_DIR, PACKAGE_DIR, SUITE, SUITES
from .tools import IMAGE_TOOLS, require_root, require_tools
from .util import LabError, docker, log

BASE_REPO = "hakube-lab"
ETCD_REPO = "hakube-lab-etcd"
IMAGE_LABEL = "hakube.lab.image"  # images carry this (not `hakube.lab`, which containers inherit)
BUILD_PREFIX = "hakube-lab-build-"  # temporary build containers (by name: a label would be committed)

BASE_INCLUDE = ("systemd", "systemd-sysv", "dbus", "openssh-server", "sudo")
ETCD_PACKAGES = ("etcd-server", "etcd-client", "busybox")
PROMETHEUS_REPO = "hakube-lab-prometheus"
PROMETHEUS_PACKAGES = ("prometheus",)
SETUP_SCRIPT = PACKAGE_DIR / "rootfs-setup.sh"
IMPORT_CHANGES = ('CMD ["/sbin/init"]', "ENV container=docker")


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


def base_recipe(mirror: str, suite: str = SUITE) -> dict:
    # the mirror is baked into the image's /etc/apt/sources.list, so it is part of the recipe
    return {"suite": suite, "variant": "minbase", "include": list(BASE_INCLUDE),
            "setup": SETUP_SCRIPT.read_text(), "changes": list(IMPORT_CHANGES), "mirror": mirror}


def base_tag(mirror: str, suite: str = SUITE) -> str:
    return f"{BASE_REPO}:{suite}-{_hash(base_recipe(mirror, suite))}"


def etcd_recipe(mirror: str) -> dict:
    return {"base": base_tag(mirror, SUITE), "packages": list(ETCD_PACKAGES), "changes": list(IMPORT_CHANGES),
            "label": f"{IMAGE_LABEL}=etcd"}


def etcd_tag(mirror: str) -> str:
    return f"{ETCD_REPO}:{_hash(etcd_recipe(mirror))}"


def image_exists(tag: str) -> bool:
    return docker("image", "inspect", tag, check=False).returncode == 0


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mounts") as f:
        points = [line.split()[1].replace("\\040", " ") for line in f]
    return [p for p in points if p.startswith(prefix)]


def _remove_tree(path: Path) -> None:
    """rmtree, but never descend into something still mounted (debootstrap mounts proc/sys)."""
    for point in sorted(_mounts_under(path), reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)
    left = _mounts_under(path)
    if left:
        log(f"not removing {path}: still mounted: {', '.join(left)}")
        return
    shutil.rmtree(path, ignore_errors=True)


def build_base(mirror: str, tag: str, suite: str = SUITE) -> None:
    require_tools(IMAGE_TOOLS, "building the base image")
    require_root("building the base image (debootstrap)")
    log(f"building base image {tag} (debootstrap {suite}, ~1 min)")
    started = time.monotonic()
    build_root = CACHE_DIR / "build"
    build_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="rootfs-", dir=build_root))
    rootfs = tmp / "rootfs"
    try:
        logfile = tmp / "debootstrap.log"
        with open(logfile, "w") as out:
            proc = subprocess.run(
                ["debootstrap", "--variant=minbase", "--include=" + ",".join(BASE_INCLUDE),
                 suite, str(rootfs), mirror], stdout=out, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            tail = "\n".join(logfile.read_text(errors="replace").splitlines()[-20:])
            raise LabError(f"debootstrap {suite} from {mirror} failed:\n{tail}\n",
                           "check the mirror and network, then rerun `python -m lab up`")
        with open(SETUP_SCRIPT) as script:
            proc = subprocess.run(["chroot", str(rootfs), "/bin/sh", "-s"], stdin=script,
                                  capture_output=True, text=True)
        if proc.returncode != 0:
            raise LabError(f"image setup script failed:\n{proc.stderr.strip()}\n",
                           f"fix {SETUP_SCRIPT.name}")
        log("importing the root filesystem into Docker")
        args = ["docker", "import"]
        for change in (*IMPORT_CHANGES, f"LABEL {IMAGE_LABEL}=base"):
            args += ["--change", change]
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."],
                               stdout=subprocess.PIPE)
        imp = subprocess.run([*args, "-", tag], stdin=tar.stdout, capture_output=True, text=True)
        tar.stdout.close()
        if tar.wait() != 0 or imp.returncode != 0:
            raise LabError(f"docker import failed: {imp.stderr.strip()}", "see the error above")
    finally:
        _remove_tree(tmp)
    log(f"base image ready in {time.monotonic() - started:.0f}s")


def _build_layer(what: str, base: str, tag: str, install: str, version: str, changes: tuple[str, ...]) -> None:
    """``tag``: ``base`` with ``install`` run in a throwaway container (apt's lists and caches
    dropped afterwards), committed with ``changes``; logs the first line of ``version``."""
    started = time.monotonic()
    name = f"{BUILD_PREFIX}{tag.split(':')[1]}"
    docker("rm", "-f", name, check=False)
    docker("run", "-d", "--name", name, "--network", "bridge", base, "sleep", "infinity")
    try:
        script = (
            "set -e; export DEBIAN_FRONTEND=noninteractive; apt-get -q update >/dev/null; "
            f"{install}; "
            "apt-get clean; rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin; "
            f"{version} 2>&1 | head -1"
        )
        proc = docker("exec", name, "sh", "-c", script, timeout=900)
        log(f"{what} image: {proc.stdout.strip().splitlines()[-1]}")
        docker("stop", "-t", "1", name)
        args = ["commit"]
        for change in changes:
            args += ["--change", change]
        docker(*args, name, tag)
    finally:
        docker("rm", "-f", name, check=False)
    log(f"{what} image ready in {time.monotonic() - started:.0f}s")


def build_etcd(base: str, tag: str) -> None:
    log(f"building etcd image {tag} (apt-get install {' '.join(ETCD_PACKAGES)}, ~1 min)")
    _build_layer("etcd", base, tag,
                 f"apt-get -q install -y {' '.join(ETCD_PACKAGES)} >/dev/null; systemctl disable etcd.service",
                 "etcd --version", (*IMPORT_CHANGES, f"LABEL {IMAGE_LABEL}=etcd"))


def prometheus_recipe(mirror: str) -> dict:
    return {"base": base_tag(mirror, SUITE), "packages": list(PROMETHEUS_PACKAGES), "no_recommends": True,
            "label": f"{IMAGE_LABEL}=prometheus"}


def prometheus_tag(mirror: str) -> str:
    return f"{PROMETHEUS_REPO}:{_hash(prometheus_recipe(mirror))}"


def build_prometheus(base: str, tag: str) -> None:
    """Debian's prometheus on the trixie base image (its service is never started: the lab's
    container runs the binary itself)."""
    log(f"building prometheus image {tag} (apt-get install {' '.join(PROMETHEUS_PACKAGES)}, ~1 min)")
    _build_layer("prometheus", base, tag,
                 "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d; chmod 0755 /usr/sbin/policy-rc.d; "
                 f"apt-get -q install -y --no-install-recommends {' '.join(PROMETHEUS_PACKAGES)} >/dev/null; "
                 "rm -f /usr/sbin/policy-rc.d",
                 "prometheus --version", (f"LABEL {IMAGE_LABEL}=prometheus",))
    for old in docker("images", PROMETHEUS_REPO, "--format", "{{.Repository}}:{{.Tag}}").stdout.split():
        if old != tag and docker("rmi", old, check=False).returncode == 0:
            log(f"removed stale image {old}")


def ensure_prometheus_image(mirror: str) -> str:
    """The prometheus image's tag, built (with the trixie base image, if missing) on demand."""
    base, tag = base_tag(mirror, SUITE), prometheus_tag(mirror)
    if not image_exists(tag):
        if not image_exists(base):
            build_base(mirror, base, SUITE)
        build_prometheus(base, tag)
    return tag


def prune_stale(keep: tuple[str, ...]) -> None:
    """Remove older hakube-lab images (other recipes); ones still used by a container stay."""
    for repo in (ETCD_REPO, BASE_REPO):
        tags = docker("images", repo, "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
        for tag in tags:
            if tag not in keep and docker("rmi", tag, check=False).returncode == 0:
                log(f"removed stale image {tag}")


def ensure_images(mirror: str, suites=(SUITE,)) -> tuple[dict[str, str], str]:
    """Return ({suite: base tag}, etcd tag), building what is missing (etcd's suite always)."""
    bases = {suite: base_tag(mirror, suite) for suite in dict.fromkeys((*suites, SUITE)) if suite in SUITES}
    etcd = etcd_tag(mirror)
    built = False
    for suite, tag in bases.items():
        if not image_exists(tag):
            build_base(mirror, tag, suite)
            built = True
    if not image_exists(etcd):
        build_etcd(bases[SUITE], etcd)
        built = True
    if built:
        # keep every suite's current image, not only the ones this `up` asked for
        keep = {base_tag(mirror, suite) for suite in SUITES if image_exists(base_tag(mirror, suite))}
        prune_stale((*keep, etcd))
    return bases, etcd
