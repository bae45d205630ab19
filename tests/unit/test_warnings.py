"""Deprecated extra flags: accepted by validation, reported once as a warning naming host and key."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from hakube import barriers, context
from hakube.settings import inventory_warnings

from .conftest import ENV, make_inventory


def _loaded(tmp_path: Path, version: str, extra: dict):
    inv = make_inventory(tmp_path, kube_version=version)
    inv.cluster["apiserver_extra_flags"] = extra
    return inv


def test_deprecated_extra_flag_is_a_warning_not_an_error(tmp_path: Path) -> None:
    settings = _loaded(tmp_path, "1.20.2", {"kubelet-https": True, "goaway-chance": "0.001"}).load()
    assert inventory_warnings(settings) == [
        "m1: apiserver_extra_flags: --kubelet-https is deprecated in 1.20 (kube-apiserver accepts it and "
        "logs a deprecation warning); it is removed in 1.22 (kube_version 1.20.2)"
    ]


def test_every_deprecated_extra_flag_is_named(tmp_path: Path) -> None:
    settings = _loaded(tmp_path, "1.20.2", {"insecure-port": 0, "enable-swagger-ui": False}).load()
    lines = inventory_warnings(settings)
    assert [line.split(" ")[2] for line in lines] == ["--insecure-port", "--enable-swagger-ui"]


@pytest.mark.parametrize("version, extra", [
    ("1.20.2", {}),
    ("1.20.2", {"log-dir": "/var/log/k", "goaway-chance": "0.001"}),  # klog flags: deprecated only from 1.23
    ("1.36.0", {"profiling": False}),
])
def test_no_warning(tmp_path: Path, version: str, extra: dict) -> None:
    assert inventory_warnings(_loaded(tmp_path, version, extra).load()) == []


def test_deprecated_in_new_versions_too(tmp_path: Path) -> None:
    lines = inventory_warnings(_loaded(tmp_path, "1.36.0", {"apiserver-count": 2}).load())
    assert lines == ["m1: apiserver_extra_flags: --apiserver-count is deprecated in 1.36 (kube-apiserver "
                     "accepts it and logs a deprecation warning) (kube_version 1.36.0)"]


# ------------------------------------------------------------------ hakube.context: logged once


class _Data:
    def __init__(self, data: dict):
        self._data = data

    def dict(self) -> dict:
        return dict(self._data)


class _Host:
    def __init__(self, name: str, data: dict, groups: list[str]):
        self.name, self.data, self.groups = name, _Data(data), groups


def test_settings_for_logs_each_warning_once(tmp_path: Path, caplog, monkeypatch) -> None:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    inv = _loaded(tmp_path, "1.20.2", {"insecure-port": 0})
    inventory = [_Host(name, data, groups) for name, data, groups in inv.hosts()]
    with caplog.at_level(logging.WARNING, logger="pyinfra"):
        for host in inventory:
            context.settings_for(host, inventory)
    warnings = [r.getMessage() for r in caplog.records if r.name == "pyinfra" and r.levelno == logging.WARNING]
    assert warnings == [
        "m1: apiserver_extra_flags: --insecure-port is deprecated in 1.20 (kube-apiserver accepts it and "
        "logs a deprecation warning); it is removed in 1.24 (kube_version 1.20.2)"
    ]
    barriers.forget_run(inventory)
