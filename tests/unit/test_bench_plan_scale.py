"""bench/plan_scale.py (``python -m bench plan_scale``): its inventory plans for real on @fake, its
arithmetic, and the results.json it writes keeps every other key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import plan_scale, run


def test_one_real_plan_on_fake_hosts(tmp_path: Path) -> None:
    inventory = plan_scale.write_inventory(tmp_path, 2, tmp_path / "pki")
    seconds, rss, cpu = plan_scale.plan_once(inventory, tmp_path)
    assert seconds > 0 and rss > 10 and cpu > 0
    plan = json.loads((tmp_path / "stdout.json").read_text())["plan"]
    hosts = {h for op in plan for h in op["hosts_with_change"] + op["hosts_with_conditional_change"]}
    assert {"@fake/m1", "@fake/m2", "@fake/m3", "@fake/n0001", "@fake/n0002"} <= hosts


def test_a_failed_plan_says_so(tmp_path: Path) -> None:
    bad = tmp_path / "inventory.py"
    bad.write_text("masters = ([('@fake/m1', {})], {})\n")  # no data: refused
    with pytest.raises(RuntimeError, match="failed"):
        plan_scale.plan_once(bad, tmp_path)


def _fake_plan(costs: dict[int, float]):
    """plan_once as a function of the inventory's node count: linear wall/CPU plus ``costs``."""

    def plan_once(inventory: Path, workdir, root=None, env=None):
        nodes = int(inventory.stem.split("_")[1])
        return 1.0 + 0.01 * nodes + costs.get(nodes, 0.0), 60.0 + 0.01 * nodes, 0.5 + 0.01 * nodes + costs.get(nodes, 0.0)

    return plan_once


def test_linear_planning_has_growth_1_and_passes(monkeypatch) -> None:
    monkeypatch.setattr(plan_scale, "plan_once", _fake_plan({}))
    ps = plan_scale.measure(runs=2, log=lambda m: None)
    assert ps["per_node_growth"] == 1.0 and ps["target"]["pass"]
    assert set(ps["50"]) == {"hosts", "seconds", "peak_rss_mib", "cpu_seconds"}
    assert ps["500"]["seconds"]["median"] == 6.0 and ps["500"]["seconds"]["unit"] == "s"
    assert ps["500"]["peak_rss_mib"]["unit"] == "MiB" and ps["500"]["peak_rss_mib"]["min"] == 65.0


def test_quadratic_planning_fails(monkeypatch) -> None:
    monkeypatch.setattr(plan_scale, "plan_once", _fake_plan({500: 2.5}))  # 500 nodes cost 1.5x per node
    ps = plan_scale.measure(runs=1, log=lambda m: None)
    assert ps["per_node_growth"] == 1.5 and not ps["target"]["pass"]
    assert "FAIL" in plan_scale.render(ps)


def test_plan_scale_alone_keeps_every_other_key(monkeypatch, tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"noop_reapply": {"median": 1.0}, "targets": {"noop_le_3x_floor": {"pass": True}}}))
    monkeypatch.setattr(run, "RESULTS_FILE", results)
    monkeypatch.setattr(plan_scale, "plan_once", _fake_plan({}))
    assert run.main(["plan_scale", "--runs", "1"]) == 0
    doc = json.loads(results.read_text())
    assert doc["noop_reapply"] == {"median": 1.0} and doc["targets"]["noop_le_3x_floor"] == {"pass": True}
    assert doc["plan_scale"]["50"]["seconds"]["median"] == 1.5
    assert doc["targets"]["plan_scale_per_node_growth_le_1_2"]["pass"]


def test_show_after_plan_scale_alone(monkeypatch, tmp_path: Path, capsys) -> None:
    monkeypatch.setattr(run, "RESULTS_FILE", tmp_path / "results.json")
    monkeypatch.setattr(plan_scale, "plan_once", _fake_plan({}))
    assert run.main(["plan_scale", "--runs", "1"]) == 0
    capsys.readouterr()
    assert run.main(["--show"]) == 0
    assert "PASS" in capsys.readouterr().out
