"""Desired state as data: a file the deploy manages, and the templates that render it.

Each step of the deploy declares its files (``tasks/<step>.py``: ``desired_files``) and hands them
to one operation (``hakube.ops.managed_file``). Rendering needs no host, so every template is
unit-tested without pyinfra.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import jinja2

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
FILES = ROOT / "files"


@dataclass(frozen=True)
class DesiredFile:
    path: str
    content: bytes = field(repr=False)  # may be a key: never in a repr, a log line or an exception
    mode: str = "0644"
    secret: bool = False  # never shown in a diff
    validate: str | None = None  # command run on the staged copy ({path}); must pass to go live
    notify: tuple[str, ...] = ()  # handlers to run once this file's content changed


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["json"] = lambda v: json.dumps(v, sort_keys=True)
    return env


def render(template: str, **context) -> bytes:
    return _env().get_template(template).render(**context).encode()


def static(name: str) -> bytes:
    """A file shipped as is (``files/``)."""
    return (FILES / name).read_bytes()
