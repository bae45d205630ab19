"""The deploy's custom operations in pyinfra's own test style: facts in, commands out.

Each ``tests/unit/operations/<operation>/<case>.json`` holds the operation's keyword arguments,
the host facts it sees (``hakube.facts.HostFacts`` fields; a file is ``[sha256, mode, owner]``) and
the commands it must yield, in order (an upload is ``["upload", remote path]``, a Python callback
``["function", name]``), or the no-op message. The generator runs without pyinfra's state: a
stand-in host records no-ops and names temp files.
"""

from __future__ import annotations

import importlib
import json
import os
import stat
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from pyinfra.api import FileUploadCommand, FunctionCommand, StringCommand

from hakube import hostfiles
from hakube.facts import FileState, HostFacts
from hakube.render import DesiredFile

CASES = sorted(Path(__file__).with_name("operations").glob("*/*.json"))
# the module of each custom operation (tests/unit/operations/<operation>/)
HOME = {"managed_file": "hostfiles", "binary": "hostfiles", "unit_running": "units", "roll": "rolls", "packages": "packages",
        "packages_ready": "packages", "vip_one_holder": "barriers", "masters_unfailed": "barriers"}


def _module(operation: str):
    return importlib.import_module(f"hakube.{HOME[operation]}")


class FakeHost:
    name = "@fake/m1"
    print_prefix = "[@fake/m1] "

    def __init__(self):
        self.noops: list[str] = []
        self.state = SimpleNamespace(config=SimpleNamespace(DIFF=False))

    def noop(self, message: str) -> None:
        self.noops.append(message)

    def get_temp_filename(self, name: str, temp_directory: str = "/tmp") -> str:
        return f"{temp_directory}/pyinfra-{abs(hash(name))}"


def _facts(raw: dict) -> HostFacts:
    files = {p: FileState(sha, int(mode, 8), owner) for p, (sha, mode, owner) in raw.get("files", {}).items()}
    units = {u: tuple(v) for u, v in raw.get("units", {}).items()}
    return HostFacts(files=files, units=units)


def _kwargs(raw: dict) -> dict:
    out = dict(raw)
    if "file" in out:
        f = dict(out["file"])
        f["content"] = f["content"].encode()
        f["notify"] = tuple(f.get("notify", ()))
        out["file"] = DesiredFile(**f)
    for key in ("names", "commands"):
        if key in out:
            out[key] = tuple(out[key])
    if "notify" in out:
        out["notify"] = tuple(out["notify"])
    return out


def _shown(command) -> str | list:
    if isinstance(command, str):
        return command
    if isinstance(command, FileUploadCommand):
        return ["upload", command.dest]
    if isinstance(command, FunctionCommand):
        return ["function", command.function.__name__]
    if isinstance(command, StringCommand):
        return command.get_raw_value()
    raise TypeError(command)


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.stem}" for p in CASES])
def test_operation(path: Path, monkeypatch) -> None:
    case = json.loads(path.read_text())
    fake = FakeHost()
    module = _module(path.parent.name)
    if hasattr(module, "host"):
        monkeypatch.setattr(module, "host", fake)
    op = getattr(module, path.parent.name)
    kwargs = _kwargs(case["kwargs"])
    if path.parent.name in ("managed_file", "binary", "unit_running"):
        kwargs["facts"] = _facts(case.get("facts", {}))
    commands = [_shown(c) for c in op.__wrapped__(**kwargs)]
    assert commands == case["commands"]
    assert fake.noops == ([case["noop"]] if "noop" in case else [])


def test_every_custom_operation_has_cases() -> None:
    tested = {p.parent.name for p in CASES}
    assert tested == set(HOME)
    for name in tested:
        assert hasattr(getattr(_module(name), name), "__wrapped__"), f"{name} is not a pyinfra operation"


@pytest.mark.parametrize("validator, goes_live", [("true", True), ("false", False)], ids=["passes", "fails"])
def test_the_staged_file_goes_live_only_after_its_validator(tmp_path, monkeypatch, root_commands, validator,
                                                          goes_live) -> None:
    """The commands of ``managed_file`` run for real in a scratch directory: a failed validation
    leaves the live file, no pending marker and no kept copy; a passing one keeps the old version
    for a rollback, marks the reload owed, and moves the new one in."""
    from hakube import roll

    monkeypatch.setattr(hostfiles, "host", FakeHost())
    for module in (hostfiles, roll):
        monkeypatch.setattr(module, "PENDING_DIR", str(tmp_path / "pending"))
    monkeypatch.setattr(roll, "ROLLBACK_DIR", str(tmp_path / "rollback"))
    monkeypatch.setattr(hostfiles, "UPLOAD_DIR", str(tmp_path / "upload"))
    live = tmp_path / "etc" / "app.cfg"
    live.parent.mkdir()
    live.write_text("old\n")
    file = DesiredFile(str(live), b"new\n", validate=f"{validator} {{path}}", notify=("haproxy",))
    first, upload, last = list(hostfiles.managed_file.__wrapped__(file=file, facts=HostFacts()))
    assert isinstance(upload, FileUploadCommand)
    assert subprocess.run(["sh", "-c", first]).returncode == 0
    assert stat.S_IMODE(os.stat(f"{live}.new").st_mode) == 0o600  # private before the first byte
    assert stat.S_IMODE(os.stat(tmp_path / "upload").st_mode) == 0o700  # pyinfra's sudo upload lands here
    Path(f"{live}.new").write_bytes(file.content)  # what the upload does
    proc = subprocess.run(["sh", "-c", last], capture_output=True, text=True)
    assert (proc.returncode == 0) == goes_live, proc.stderr
    assert live.read_text() == ("new\n" if goes_live else "old\n")
    assert (tmp_path / "pending" / "haproxy").exists() == goes_live
    assert (tmp_path / "rollback" / "haproxy" / "state" / str(live).lstrip("/")).exists() == goes_live
    if not goes_live:
        assert f"validation failed: {live} left unchanged" in proc.stderr


FAKE_SYSTEMCTL = """#!/bin/sh
echo "$*" >> "$(dirname "$0")/calls"
[ "$1" = is-enabled ] && [ -e "$(dirname "$0")/enabled" ] && exit 0
[ "$1" = is-enabled ] && exit 1
exit 0
"""


@pytest.mark.parametrize("enabled_meanwhile", [True, False], ids=["package-enabled-it", "still-disabled"])
def test_unit_running_enables_only_a_unit_still_disabled_when_it_runs(tmp_path, enabled_meanwhile) -> None:
    """The snapshot said disabled and stopped; the package's postinst may have enabled it since:
    then no `systemctl enable` (a reload of systemd), only the start."""
    from hakube.units import unit_running

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text(FAKE_SYSTEMCTL)
    (bin_dir / "systemctl").chmod(0o755)
    if enabled_meanwhile:
        (bin_dir / "enabled").write_text("")
    facts = _facts({"units": {"keepalived.service": ["inactive", "disabled"]}})
    (command,) = [str(_shown(c)) for c in unit_running._inner(unit="keepalived.service", facts=facts)]
    subprocess.run(["sh", "-c", command], check=True, env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    calls = (bin_dir / "calls").read_text().split("\n")[:-1]
    assert calls == ["is-enabled --quiet keepalived.service",
                     *([] if enabled_meanwhile else ["enable keepalived.service"]),
                     "start keepalived.service"]
