"""Desired state as data: a file the deploy manages, and the templates that render it.

Each step of the deploy declares its files (``tasks/<step>.py``: ``desired_files``) and hands them
to one operation (``hakube.hostfiles.managed_file``). Rendering needs no host, so every template is
unit-tested without pyinfra.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import jinja2

from .probes import BACKEND, host_port

HERE = Path(__file__).resolve().parent  # the hakube package
ROOT = HERE.parent  # the repository root when hakube runs from a checkout


def _data_dir(name: str) -> Path:
    """``templates/`` or ``files/``: the package data ``hakube.<name>`` of an installed hakube, else
    the checkout's top-level directory (a plain checkout, ``PYTHONPATH=.``, or an editable install).

    Package data counts only when it lies inside this hakube package: an editable install maps
    ``hakube.templates`` onto its own checkout, which is another one when a checkout runs with
    ``PYTHONPATH`` and a different checkout's editable install.
    """
    try:
        packaged = Path(str(importlib.resources.files(f"hakube.{name}"))).resolve()
    except ModuleNotFoundError:  # a plain checkout: hakube/ has no templates/ or files/
        packaged = None
    if packaged is not None and packaged.parent == HERE and packaged.is_dir():
        return packaged
    return ROOT / name


TEMPLATES = _data_dir("templates")
FILES = _data_dir("files")


@dataclass(frozen=True)
class DesiredFile:
    path: str
    content: bytes = field(repr=False)  # may be a key: never in a repr, a log line or an exception
    mode: str = "0644"
    secret: bool = False  # never shown in a diff
    validate: str | None = None  # command run on the staged copy ({path}); must pass to go live
    notify: tuple[str, ...] = ()  # handlers to run once this file's content changed

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


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
    env.filters["host_port"] = host_port  # 10.0.0.1:6443, [fd00::1]:6443
    env.globals["haproxy_backend"] = BACKEND  # the stats rows the roll and the check read are named so
    return env


def render(template: str, **context) -> bytes:
    return _env().get_template(template).render(**context).encode()


def static(name: str) -> bytes:
    """A file shipped as is (``files/``)."""
    return (FILES / name).read_bytes()
