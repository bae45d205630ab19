"""Process helpers, the LabError exception and thin Docker wrappers."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from typing import Sequence

DOCKER_START_HINT = (
    "start it with `sudo systemctl start docker` (or `sudo service docker start`), "
    "and make sure this user may use /var/run/docker.sock"
)


class LabError(Exception):
    """An expected failure: the CLI prints `lab: error: <what happened>. <what to do>` and exits 1."""

    def __init__(self, what: str, todo: str | None = None):
        self.what = what.rstrip(". \n")
        self.todo = todo
        # multi-line details (command output) end the first part; the hint then gets its own line
        sep = "\n" if "\n" in self.what else ". "
        super().__init__(f"{self.what}{sep}{todo.rstrip('.')}." if todo else f"{self.what}.")


def log(msg: str) -> None:
    """Progress line on stderr (stdout is reserved for machine-readable output)."""
    print(f"[lab] {msg}", file=sys.stderr, flush=True)


def _tail(text: str | None, lines: int = 15) -> str:
    text = (text or "").strip()
    return "\n".join(text.splitlines()[-lines:])


def run(
    cmd: Sequence[str],
    *,
    check: bool = True,
    input: str | None = None,
    timeout: float | None = None,
    env: dict | None = None,
    cwd: str | None = None,
) -> subprocess.CompletedProcess:
    """Run a command with captured text output; raise LabError on failure when check."""
    cmd = [str(c) for c in cmd]
    try:
        proc = subprocess.run(
            cmd, input=input, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd,
        )
    except FileNotFoundError as exc:
        raise LabError(f"command not found: {cmd[0]}", "install it (see `make host-deps`)") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"`{' '.join(cmd)}` timed out after {timeout:.0f}s",
                       "check the lab with `python -m lab status`") from exc
    if check and proc.returncode != 0:
        detail = _tail(proc.stderr) or _tail(proc.stdout)
        raise LabError(
            f"`{' '.join(cmd)}` failed (exit {proc.returncode})" + (f":\n{detail}\n" if detail else ""),
            "see the output above",
        )
    return proc


# --- Docker --------------------------------------------------------------------------------------


def docker(*args: str, check: bool = True, input: str | None = None,
           timeout: float | None = 300) -> subprocess.CompletedProcess:
    return run(["docker", *args], check=check, input=input, timeout=timeout)


def check_docker() -> str:
    """Return the server version or raise a LabError explaining how to get a daemon."""
    if shutil.which("docker") is None:
        raise LabError("the docker CLI is not installed", "install Docker (e.g. `apt-get install docker.io`)")
    try:
        proc = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                              capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        raise LabError("Docker daemon not reachable: `docker info` timed out", DOCKER_START_HINT) from None
    version = proc.stdout.strip()
    if proc.returncode != 0 or not version or version == "<no value>":
        detail = _tail(proc.stderr, 3).replace("\n", " ").replace(" Is the docker daemon running?", "")
        detail = detail.strip() or "no answer"
        raise LabError(f"Docker daemon not reachable: {detail}", DOCKER_START_HINT)
    return version


def docker_available() -> bool:
    try:
        check_docker()
        return True
    except LabError:
        return False


def inspect(kind: str, name: str) -> dict | None:
    """`docker <kind> inspect NAME` as a dict, or None when it does not exist."""
    proc = docker(kind, "inspect", name, check=False)
    if proc.returncode != 0:
        return None
    data = json.loads(proc.stdout or "[]")
    return data[0] if data else None


def container_info(name: str) -> dict | None:
    return inspect("container", name)


def container_state(name: str) -> str:
    """running | paused | exited | missing."""
    info = container_info(name)
    if info is None:
        return "missing"
    status = info["State"]["Status"]
    if status in ("running", "paused"):
        return status
    if status == "restarting":
        return "running"
    return "exited"


def has_lab_label(info: dict | None) -> bool:
    from .config import LABEL

    labels = ((info or {}).get("Config") or {}).get("Labels") or (info or {}).get("Labels") or {}
    return labels.get(LABEL) == "1"


def docker_exec(name: str, *cmd: str, check: bool = True, input: str | None = None,
                timeout: float | None = 120, user: str | None = None) -> subprocess.CompletedProcess:
    """Run CMD inside container NAME (`docker exec -i`); text output is captured."""
    args = ["exec"]
    if input is not None:
        args.append("-i")
    if user:
        args += ["--user", user]
    return docker(*args, name, *cmd, check=check, input=input, timeout=timeout)
