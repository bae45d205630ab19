"""bench/run.py's pure parts (no Docker): the VIP moves counted over a soak, the VRRPv3 variant
inventory, the first apply's parts and their targets, the table rows, and results.json merges
that keep every key."""

from __future__ import annotations

import contextlib
import json
import runpy
from pathlib import Path

import pytest

from bench import run
from hakube.settings import AUTH_PASS_ENV, _Collector, _vrrp_v3

REPO = Path(__file__).resolve().parents[2]


# --- counting VIP moves -------------------------------------------------------------------------------


def test_no_move_when_one_master_holds_the_vip_throughout() -> None:
    assert run.vip_moves([(0.0, ["vm01"]), (0.5, ["vm01"]), (1.0, ["vm01"])]) == []


def test_each_change_of_the_holder_set_is_a_move_order_ignored() -> None:
    seen = [(0.0, ["vm01"]), (0.5, ["vm01", "vm02"]), (1.0, ["vm02", "vm01"]), (1.5, ["vm02"]),
            (2.0, []), (2.5, ["vm01"])]
    moves = run.vip_moves(seen)
    assert [(m["from"], m["to"]) for m in moves] == [
        (["vm01"], ["vm01", "vm02"]), (["vm01", "vm02"], ["vm02"]), (["vm02"], []), ([], ["vm01"])]
    assert [m["t"] for m in moves] == [0.5, 1.5, 2.0, 2.5]


def test_empty_and_single_series_have_no_move() -> None:
    assert run.vip_moves([]) == [] and run.vip_moves([(0.0, [])]) == []


def test_soak_polls_every_interval_and_counts_the_moves() -> None:
    now = [0.0]
    series = iter([["vm01"]] * 4 + [["vm02"]] * 4 + [["vm02"]] * 100)

    def sleep(s):
        now[0] += max(s, 0.0)

    out = run.soak(("vm01", "vm02"), seconds=4.0, interval=0.5, poll=lambda: next(series),
                   clock=lambda: now[0], sleep=sleep)
    assert out["polls"] == 8 and out["count"] == 1 and out["unit"] == "moves"
    assert out["seconds"] == 4.0 and out["moves"][0] == {"t": 2.0, "from": ["vm01"], "to": ["vm02"]}
    assert out["first_holders"] == ["vm01"] and out["not_one_holder_polls"] == 0


def test_the_cpu_burner_writes_its_pid_and_ends_by_itself() -> None:
    sh = run.load_command(1, 600, stress_ng=False)
    assert sh.startswith("echo $$ > /run/hakube-bench-burn.1.pid; exec timeout 720 ")
    assert "while :; do :; done" in sh
    assert "stress-ng --cpu 1" in run.load_command(0, 10, stress_ng=True)


# --- the VRRPv3 variant ---------------------------------------------------------------------------------


def test_the_variant_inventory_is_inventory_py_with_the_fast_keys(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LAB_MASTERS", "2")
    path = tmp_path / "inventory_fast.py"
    path.write_text(run.variant_inventory_text(REPO / "inventory.py", run.FAST_VARIANT, {"vm02": {"vrrp_priority": 1}}))
    ns = runpy.run_path(str(path))
    base = runpy.run_path(str(REPO / "inventory.py"))
    hosts, cluster = ns["masters"]
    assert cluster == {**base["masters"][1], "vrrp_version": 3, "vrrp_advert_int": 0.2, "vrrp_unicast": True,
                       "vrrp_auth_pass_file": None}
    assert cluster["pki_dir"] == str(REPO / "pki")  # the inventory's own paths, not the variant's directory
    assert [h[0] for h in hosts] == ["@docker/vm01", "@docker/vm02"]
    assert hosts[1][1]["vrrp_priority"] == 1 and hosts[0][1]["vrrp_priority"] == 120


def test_the_fast_variant_passes_the_vrrp3_rules_without_the_password_variable() -> None:
    assert run.FAST_UNSET_ENV == (AUTH_PASS_ENV,)
    env = run._clean_env({"X": "1"}, unset=run.FAST_UNSET_ENV) | {}
    assert AUTH_PASS_ENV not in env
    col = _Collector()
    _vrrp_v3(col, "@docker/vm01", dict(run.FAST_VARIANT), env)
    assert col.problems == []
    col = _Collector()
    _vrrp_v3(col, "@docker/vm01", dict(run.FAST_VARIANT), {AUTH_PASS_ENV: "secret"})
    assert col.problems  # why the bench unsets it


def test_clean_env_drops_unset_and_pyinfra_variables(monkeypatch) -> None:
    monkeypatch.setenv(AUTH_PASS_ENV, "x")
    monkeypatch.setenv("PYINFRA_PROGRESS", "off")
    assert AUTH_PASS_ENV in run._clean_env()
    env = run._clean_env(unset=(AUTH_PASS_ENV,))
    assert AUTH_PASS_ENV not in env and "PYINFRA_PROGRESS" not in env and env["LAB_MASTERS"] == "2"


# --- the first apply's parts and the targets -------------------------------------------------------------


def test_parts_ratio_and_targets() -> None:
    ratio, t = run.parts_summary(26.0, 14.0, 6.0)
    assert ratio == 1.3
    assert t["first_apply_le_1_3x_parts"]["pass"] is True and t["first_apply_le_1_3x_parts"]["limit"] == 26.0
    assert t["first_apply_le_40s"]["pass"] is True
    ratio, t = run.parts_summary(55.2, 20.0, 5.0)
    assert ratio == 2.208
    assert t["first_apply_le_1_3x_parts"]["pass"] is False and t["first_apply_le_40s"]["pass"] is False


def test_parts_without_a_figure_fail_without_a_ratio() -> None:
    ratio, t = run.parts_summary(None, 10.0, 5.0)
    assert ratio is None and not t["first_apply_le_1_3x_parts"]["pass"] and not t["first_apply_le_40s"]["pass"]
    ratio, t = run.parts_summary(30.0, None, 5.0)
    assert ratio is None and not t["first_apply_le_1_3x_parts"]["pass"] and t["first_apply_le_40s"]["pass"]


def _parts(packages, start):
    return {"packages": run.figure(packages, "s", "p"), "apiserver_start": run.figure(start, "s", "a"),
            "ratio": None}


def test_new_targets_from_the_figures_present() -> None:
    assert run.new_targets({}) == {}
    results = {
        "first_apply": run.figure([30.0, 31.0, 29.0], "s", "fa"),
        "first_apply_parts": _parts([20.0, 21.0, 19.0], [4.0, 4.0, 4.0]),
        "failover_host_loss_fast": run.figure([0.7, 0.8, 0.9], "s", "fast", failed=0),
        "false_failovers_fast": {"count": 0, "seconds": 600.0, "unit": "moves"},
    }
    t = run.new_targets(results)
    assert set(t) == {"failover_host_loss_fast_le_1s", "false_failovers_fast_eq_0",
                      "first_apply_le_1_3x_parts", "first_apply_le_40s"}
    assert all(v["pass"] for v in t.values())
    results["failover_host_loss_fast"] = run.figure([0.7, None, 0.9], "s", "fast", failed=1)
    results["false_failovers_fast"]["count"] = 2
    results["first_apply"] = run.figure([45.0], "s", "fa")
    t = run.new_targets(results)
    assert not any(v["pass"] for v in t.values())
    assert t["false_failovers_fast_eq_0"]["value"] == 2


def test_host_loss_fast_over_one_second_fails() -> None:
    t = run.new_targets({"failover_host_loss_fast": run.figure([1.1, 1.2, 0.9], "s", "fast", failed=0)})
    assert t["failover_host_loss_fast_le_1s"]["value"] == 1.1 and not t["failover_host_loss_fast_le_1s"]["pass"]


def test_the_table_shows_the_breakdown() -> None:
    results = {
        "first_apply": run.figure([30.0], "s", "fa"),
        "first_apply_parts": {**_parts([20.0], [4.0]), "ratio": 1.25},
        "failover_host_loss": run.figure([3.4], "s", "v2"),
        "failover_host_loss_fast": run.figure([0.8], "s", "v3"),
        "false_failovers_fast": {"count": 0, "seconds": 600.0, "unit": "moves"},
    }
    text = "\n".join(run.extra_rows(results))
    for words in ("host loss", "VRRPv3", "false failovers", "packages alone", "apiserver start alone",
                  "1.25", "first apply 30.00 s", "moves in 600 s"):
        assert words in text, words
    assert run.extra_rows({}) == []


# --- results.json -------------------------------------------------------------------------------------


def test_merge_keeps_every_old_key_and_merges_targets() -> None:
    old = {"noop_reapply": {"median": 1.0}, "plan_scale": {"x": 1}, "failover_host_loss": {"median": 9.0},
           "targets": {"noop_le_2x_floor": {"pass": True}, "first_apply_le_40s": {"pass": False}}}
    new = {"failover_host_loss": {"median": 3.0}, "targets": {"first_apply_le_40s": {"pass": True}}}
    merged = run.merge_results(old, new)
    assert merged["noop_reapply"] == {"median": 1.0} and merged["plan_scale"] == {"x": 1}
    assert merged["failover_host_loss"] == {"median": 3.0}
    assert merged["targets"] == {"noop_le_2x_floor": {"pass": True}, "first_apply_le_40s": {"pass": True}}
    assert old["failover_host_loss"] == {"median": 9.0}  # not mutated


def test_merged_with_targets_recomputes_the_new_targets() -> None:
    old = {"first_apply": run.figure([30.0], "s", "fa"), "targets": {"noop_le_3x_floor": {"pass": True}}}
    merged = run.merged_with_targets(old, {"false_failovers_fast": {"count": 1, "seconds": 60.0, "unit": "moves"}})
    assert merged["first_apply"] == old["first_apply"]
    assert set(merged["targets"]) == {"noop_le_3x_floor", "false_failovers_fast_eq_0"}
    assert merged["targets"]["false_failovers_fast_eq_0"]["pass"] is False


def test_a_part_alone_merges_into_results_json(tmp_path: Path, monkeypatch, capsys) -> None:
    results_file = tmp_path / "results.json"
    results_file.write_text(json.dumps({"noop_reapply": {"median": 1.0}, "check": {"k": 1},
                                        "targets": {"noop_le_2x_floor": {"pass": True}}}))
    monkeypatch.setattr(run, "RESULTS_FILE", results_file)
    monkeypatch.setattr(run, "BENCH_DIR", tmp_path)
    monkeypatch.setattr(run.lab, "docker_available", lambda: True)
    monkeypatch.setattr(run, "session_lock", lambda log=None: contextlib.nullcontext())

    @contextlib.contextmanager
    def source_tree(worktree):
        yield run.Source(REPO, "0" * 40, "test")

    monkeypatch.setattr(run, "source_tree", source_tree)
    asked = []

    def measure_part(part, runs):
        asked.append((part, runs))
        return {"false_failovers_fast": {"count": 0, "seconds": 30.0, "unit": "moves", "description": "soak"}}

    monkeypatch.setattr(run, "measure_part", measure_part)
    assert run.main(["soak", "--runs", "2"]) == 0
    assert asked == [("soak", 2)]
    saved = json.loads(results_file.read_text())
    assert saved["noop_reapply"] == {"median": 1.0} and saved["check"] == {"k": 1}
    assert saved["false_failovers_fast"]["count"] == 0 and saved["soak_alone"]["runs"] == 2
    assert saved["targets"]["noop_le_2x_floor"] == {"pass": True}
    assert saved["targets"]["false_failovers_fast_eq_0"]["pass"] is True
    out = capsys.readouterr().out
    assert "false failovers" in out and "PASS" in out
    assert run.main(["--show"]) == 0  # no full lab table yet: the parts' rows
    assert "false failovers" in capsys.readouterr().out


@pytest.mark.parametrize("part", ["failover", "soak", "parts"])
def test_the_lab_parts_are_cli_choices(part, monkeypatch) -> None:
    seen = []
    monkeypatch.setattr(run, "part_alone", lambda p, runs, worktree: seen.append((p, runs)) or 0)
    assert run.main([part, "--runs", "3"]) == 0
    assert seen == [(part, 3)]


def test_an_unanswered_poll_is_not_a_move() -> None:
    seen = [(0.0, ["vm01"]), (0.5, None), (1.0, ["vm01"]), (1.5, None), (2.0, ["vm02"])]
    assert [(m["t"], m["from"], m["to"]) for m in run.vip_moves(seen)] == [(2.0, ["vm01"], ["vm02"])]
    now = [0.0]
    series = iter([None, ["vm01"], None, ["vm01"]])
    out = run.soak(("vm01",), seconds=2.0, poll=lambda: next(series), clock=lambda: now[0],
                   sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert out["count"] == 0 and out["unanswered_polls"] == 2 and out["first_holders"] == ["vm01"]


def test_noop_targets_from_the_floor() -> None:
    results = {"floor": run.figure([0.60, 0.62, 0.58], "s", "floor"),
               "noop_reapply": run.figure([0.88, 0.90, 0.89], "s", "noop"),
               "dry_run": run.figure([0.92, 0.95, 0.91], "s", "dry")}
    t = run.new_targets(results)
    assert set(t) == {"noop_le_3x_floor", "noop_le_2x_floor", "dry_le_2x_floor", "noop_le_1_5x_floor",
                      "dry_le_1_5x_floor"}
    assert t["noop_le_1_5x_floor"]["limit"] == 0.9 and t["noop_le_1_5x_floor"]["pass"] is True
    assert t["dry_le_1_5x_floor"]["value"] == 0.92 and t["dry_le_1_5x_floor"]["pass"] is False
    assert t["noop_le_3x_floor"]["pass"] and t["dry_le_2x_floor"]["pass"]
    assert "no-op" in t["noop_le_1_5x_floor"]["description"] and "--dry" in t["dry_le_1_5x_floor"]["description"]


def test_noop_rows_print_the_figures_present() -> None:
    results = {"floor": run.figure([0.6], "s", "floor"),
               "ratio_noop_to_floor": {"unit": "ratio", "median": 1.45, "min": 1.4, "max": 1.5}}
    rows = run.noop_rows(results)
    assert len(rows) == 2 and rows[0].startswith("floor") and rows[1].rstrip().endswith("x")
    assert "1.45" in rows[1]


def test_noop_is_a_part_of_its_own() -> None:
    assert "noop" in run.LAB_PARTS
