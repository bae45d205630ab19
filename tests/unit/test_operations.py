"""The deploy's custom operations in pyinfra's own test style: facts in, commands out.

Each ``tests/unit/operations/<operation>/<case>.json`` holds the operation's keyword arguments,
the host facts it sees (``hakube.facts.HostFacts`` fields; a file is ``[sha256, mode, owner]``) and
the commands it must yield, in order (an upload is ``["upload", remote path]``, a Python callback
``["function", name]``), or the no-op message. The generator runs without pyinfra's state: a
stand-in host records no-ops and names temp files.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from pyinfra.api import FileUploadCommand, FunctionCommand, StringCommand

from hakube import ops
from hakube.facts import FileState, HostFacts
from hakube.render import DesiredFile

CASES = sorted(Path(__file__).with_name("operations").glob("*/*.json"))


class FakeHost:
    name = "@fake/m1"
    print_prefix = "[@fake/m1] "

    def __init__(self):
        self.noops: list[str] = []
        self.state = SimpleNamespace(config=SimpleNamespace(DIFF=False))

    def noop(self, message: str) -> None:
        self.noops.append(message)

    def get_temp_filename(self, name: str) -> str:
        return f"/tmp/pyinfra-{abs(hash(name))}"


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
    if "names" in out:
        out["names"] = tuple(out["names"])
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
    monkeypatch.setattr(ops, "host", fake)
    op = getattr(ops, path.parent.name)
    kwargs = _kwargs(case["kwargs"])
    if path.parent.name in ("managed_file", "binary", "unit_running"):
        kwargs["facts"] = _facts(case.get("facts", {}))
    commands = [_shown(c) for c in op.__wrapped__(**kwargs)]
    assert commands == case["commands"]
    assert fake.noops == ([case["noop"]] if "noop" in case else [])


def test_every_custom_operation_has_cases() -> None:
    tested = {p.parent.name for p in CASES}
    assert tested == {"managed_file", "binary", "unit_running", "roll", "packages"}
    for name in tested:
        assert hasattr(getattr(ops, name), "__wrapped__"), f"{name} is not a pyinfra operation"
