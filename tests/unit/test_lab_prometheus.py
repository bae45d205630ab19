"""The lab's on-demand Prometheus (test_16_metrics): its config and rules as `python -m lab prometheus up`
writes them pass `promtool check config` (no Docker needed; promtool from `make host-deps`)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lab import config as lab_config
from lab import core

from .conftest import needed


@pytest.fixture
def written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(core, "PROMETHEUS_DIR", tmp_path / "prometheus")
    monkeypatch.setattr(core, "_lab_dir", lambda: tmp_path)
    assert core._prometheus_files(("vm01", "vm02")) is True
    assert core._prometheus_files(("vm01", "vm02")) is False  # unchanged: no reload
    return tmp_path / "prometheus"


def test_scrapes_every_masters_two_exporters_at_a_lab_address(written: Path) -> None:
    cfg = json.loads((written / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j["static_configs"][0]["targets"] for j in cfg["scrape_configs"]}
    assert jobs == {"hakube-haproxy": ["10.213.0.11:8405", "10.213.0.12:8405"],
                    "hakube-node": ["10.213.0.11:9100", "10.213.0.12:9100"]}
    assert cfg["global"]["scrape_interval"] == cfg["global"]["evaluation_interval"] == "2s"
    assert lab_config.PROMETHEUS_ADDRESS not in lab_config.MASTERS.values()
    assert list(lab_config.ADDRESSES.values()).count(lab_config.PROMETHEUS_ADDRESS) == 1
    rules = (written / "rules.yml").read_text()
    assert set(re.findall(r"(?m)^\s*for: (\S+)$", rules)) == {"2s"}


def test_promtool_accepts_the_config_and_its_rules(written: Path) -> None:
    promtool = needed(shutil.which("promtool"), "promtool is not installed (`make host-deps`)")
    cfg = json.loads((written / "prometheus.yml").read_text())
    cfg["rule_files"] = [str(written / "rules.yml")]  # the container's mount point, here
    (written / "check.yml").write_text(json.dumps(cfg))
    r = subprocess.run([promtool, "check", "config", str(written / "check.yml")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"SUCCESS: [1-9][0-9]* rules found", r.stdout + r.stderr), r.stdout + r.stderr
