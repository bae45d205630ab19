"""The pure parts of lab/clients.py: one client's figures, the watch's comparison, the report and
its assertion, the Go client's output handling. No network: fakes stand in for the API."""

from __future__ import annotations

import json
import stat
import sys
import threading
import time
from pathlib import Path

import pytest

from lab import clients
from lab.clients import (ClientHarness, ClientStats, assert_no_failures, expected_names, format_report,
                         parse_go_line, problems)


class Clock:
    def __init__(self, t: float = 100.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def entry(calls=100, failed=0, naive=False, **extra) -> dict:
    return {"naive": naive, "calls": calls, "failed": failed, "longest_stall_s": 0.1, "seconds": 10.0,
            "errors": [f"+1.0s boom {i}" for i in range(min(failed, 5))], **extra}


def clean_report() -> dict:
    return {
        "new_conn": entry(), "go_h2": entry(writes=30, writes_failed=0, proto=["HTTP/2.0"], conns=1),
        "python_client": entry(writes=30, writes_failed=0),
        "watch": entry(calls=2, events=60, expected=60, missed=0, missed_names=[], relists=0, reconnects=0),
        "naive_keepalive": entry(naive=True), "httpx_h2": entry(naive=True, proto=["HTTP/2"]),
    }


# --- ClientStats ----------------------------------------------------------------------------------


def test_stats_count_calls_failures_and_the_longest_gap_between_successes():
    clock = Clock()
    s = ClientStats("go_h2", clock=clock)
    for t, ok in [(100.5, True), (100.6, True), (101.0, False), (102.0, False), (102.6, True), (102.7, True)]:
        clock.t = t
        s.record(ok, None if ok else "EOF")
    s.finish(103.0)
    d = s.as_dict()
    assert (d["calls"], d["failed"]) == (6, 2)
    assert d["longest_stall_s"] == pytest.approx(2.0)
    assert d["errors"] == ["+1.0s EOF", "+2.0s EOF"]
    assert d["naive"] is False and "died" not in d


def test_a_client_that_stops_succeeding_shows_the_tail_as_a_stall():
    clock = Clock()
    s = ClientStats("python_client", clock=clock)
    clock.t = 100.1
    s.record(True)
    s.finish(130.1)  # nothing after the first success: 30 s to the end of the measurement
    assert s.as_dict()["longest_stall_s"] == pytest.approx(30.0)


def test_only_the_first_errors_are_kept_and_mark_ok_counts_no_call():
    s = ClientStats("watch", clock=Clock())
    for i in range(20):
        s.record(False, f"error {i}")
    s.mark_ok(101.0)
    s.mark_ok(101.5)
    assert s.calls == 20 and s.failed == 20 and len(s.errors) == clients.MAX_ERRORS
    assert s.longest_stall == pytest.approx(0.5)


# --- the writes the watch must have seen ----------------------------------------------------------


@pytest.mark.parametrize("error, ambiguous", [
    ('Post "https://127.0.0.1:6443/api/v1/...": dial tcp 127.0.0.1:6443: connect: connection refused', False),
    ("MaxRetryError: NewConnectionError: Failed to establish a new connection: [Errno 111]", False),
    ("HTTP 429: Too many requests", False),
    ("HTTP 409: configmaps already exists", False),
    ('Post "https://10.0.0.1:6443/...": unexpected EOF', True),
    ("ProtocolError: ('Connection aborted.', RemoteDisconnected('Remote end closed connection'))", True),
    ("HTTP 500: etcdserver: request timed out", True),
    ("", True),
])
def test_a_failed_write_is_ambiguous_unless_it_surely_never_reached_the_server(error, ambiguous):
    assert clients.ambiguous_write(error) is ambiguous


def test_expected_names_keep_ambiguous_writes_that_exist_afterwards():
    ok, ambiguous = {"a", "b"}, {"c", "d"}
    assert expected_names(ok, ambiguous, {"a", "b", "c"}) == {"a", "b", "c"}
    assert expected_names(ok, ambiguous, None) == {"a", "b", "c", "d"}  # the final list failed
    assert expected_names(ok, set(), set()) == {"a", "b"}


def test_parse_go_line():
    assert parse_go_line('{"op":"read","ok":true,"status":200}\n') == {"op": "read", "ok": True, "status": 200}
    assert parse_go_line('{"summary":{"calls":3}}') == {"summary": {"calls": 3}}
    assert parse_go_line("panic: something") is None
    assert parse_go_line("{not json") is None
    assert parse_go_line("[1, 2]") is None


# --- the assertion ----------------------------------------------------------------------------------


def test_a_clean_report_passes():
    assert problems(clean_report(), 50) == []
    assert_no_failures(clean_report(), min_calls={"new_conn": 100, "watch": 60})


def test_a_naive_failure_does_not_fail_it():
    report = clean_report()
    report["naive_keepalive"] = entry(failed=2, naive=True)
    report["httpx_h2"] = entry(failed=1, naive=True)
    assert_no_failures(report, 50)
    assert "naive" in format_report(report)


@pytest.mark.parametrize("kind", ["new_conn", "go_h2", "python_client", "watch"])
def test_one_failed_call_of_a_real_client_fails_it(kind):
    report = clean_report()
    report[kind]["failed"] = 1
    report[kind]["errors"] = ["+3.2s unexpected EOF"]
    with pytest.raises(AssertionError) as err:
        assert_no_failures(report, 50)
    message = str(err.value)
    assert f"{kind}: 1 of" in message
    assert "unexpected EOF" in message  # the table and the first errors come with it
    assert "client" in message and "stall_s" in message


def test_a_dead_client_cannot_pass():
    report = clean_report()
    report["go_h2"] = entry(calls=3)  # a thread that died early: no failure, few calls
    with pytest.raises(AssertionError, match=r"go_h2: 3 calls, fewer than the minimum 50"):
        assert_no_failures(report, 50)
    report = clean_report()
    report["naive_keepalive"] = entry(calls=0, naive=True)  # the minimum holds for naive clients too
    with pytest.raises(AssertionError, match="naive_keepalive: 0 calls"):
        assert_no_failures(report, {"naive_keepalive": 10})


def test_a_client_that_died_fails_it_whatever_its_calls():
    report = clean_report()
    report["httpx_h2"]["died"] = "ImportError: no module named h2"
    with pytest.raises(AssertionError, match="httpx_h2: died: ImportError"):
        assert_no_failures(report, 1)


def test_a_missed_object_or_a_relist_fails_it():
    report = clean_report()
    report["watch"].update(missed=2, missed_names=["hkp-go-x-3", "hkp-py-x-6"])
    with pytest.raises(AssertionError, match=r"watch: missed 2 created objects \(e.g. hkp-go-x-3, hkp-py-x-6\)"):
        assert_no_failures(report, 1)
    report = clean_report()
    report["watch"]["relists"] = 1
    with pytest.raises(AssertionError, match="relisted 1 times"):
        assert_no_failures(report, 1)


def test_the_watch_minimum_is_about_its_events():
    report = clean_report()  # 2 calls (a list and a watch), 60 events
    assert_no_failures(report, 50)
    report["watch"]["events"] = 10
    with pytest.raises(AssertionError, match="watch: 10 events, fewer than the minimum 50"):
        assert_no_failures(report, 50)


def test_a_kind_named_in_the_minimums_must_be_in_the_report():
    report = clean_report()
    del report["go_h2"]
    assert_no_failures(report, 1)
    with pytest.raises(AssertionError, match="go_h2: not in the report"):
        assert_no_failures(report, {"go_h2": 1})


def test_format_report_is_one_line_per_client_then_errors():
    report = clean_report()
    report["python_client"].update(failed=1, errors=["+2.0s write ProtocolError: Connection aborted."])
    text = format_report(report)
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["client", "calls", "failed", "stall_s"]
    assert [line.split()[0] for line in lines[2:8]] == list(report)
    assert "events 60, missed 0 of 60, relists 0, reconnects 0" in text
    assert "HTTP/2.0; 1 conns" in text
    assert lines[-1] == "  python_client: +2.0s write ProtocolError: Connection aborted."
    json.dumps(report)  # the report itself is JSON-able


# --- the Go binary's cache, and its output read through a stand-in ------------------------------------


def test_the_go_binary_is_reused_from_the_cache_by_source_hash(tmp_path, monkeypatch):
    source = tmp_path / "main.go"
    source.write_text("package main\nfunc main() {}\n")
    monkeypatch.setattr(clients.shutil, "which", lambda name: None)  # no toolchain: it must not be needed
    with pytest.raises(clients.HarnessError, match="make host-deps"):
        clients.go_binary(source, tmp_path / "cache", log=lambda m: None)
    import hashlib

    digest = hashlib.sha256(source.read_bytes() + "\0".join(clients.GO_BUILD_FLAGS).encode()).hexdigest()[:16]
    cached = tmp_path / "cache" / f"h2client-{digest}"
    cached.parent.mkdir()
    cached.write_text("binary")
    assert clients.go_binary(source, tmp_path / "cache", log=lambda m: None) == cached
    source.write_text("package main\nfunc main() { println() }\n")  # another source, another key
    with pytest.raises(clients.HarnessError):
        clients.go_binary(source, tmp_path / "cache", log=lambda m: None)


FAKE_GO = """#!{python}
import json, signal, sys, time
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
print("some noise on stdout", flush=True)
i = 0
while not stop and i < {limit}:
    i += 1
    write = i % 3 == 0
    ok = i not in (4, 6)
    rec = {{"op": "write" if write else "read", "ok": ok, "status": 200 if ok else 0, "proto": "HTTP/2.0",
           "err": "" if ok else ("unexpected EOF" if i == 6 else "dial tcp: connection refused")}}
    if write:
        rec["name"] = "hkp-go-t-%d" % i
    print(json.dumps(rec), flush=True)
    time.sleep(0.01)
print(json.dumps({{"summary": {{"calls": i, "failed": 2, "conns": 2, "reason": "signal" if stop else "x"}}}}),
      flush=True)
sys.exit({code})
"""


def fake_go(tmp_path: Path, limit: int = 100000, code: int = 0) -> Path:
    path = tmp_path / "fake-h2client"
    path.write_text(FAKE_GO.format(python=sys.executable, limit=limit, code=code))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def harness(tmp_path: Path, **kw) -> ClientHarness:
    return ClientHarness("127.0.0.1", 1, tmp_path / "ca.pem", tmp_path / "c.pem", tmp_path / "k.pem",
                         log=lambda m: None, **kw)


def wait(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_the_go_client_lines_become_figures_and_writes(tmp_path):
    client = clients.GoH2Client(harness(tmp_path), fake_go(tmp_path))
    client.start()
    wait(lambda: client.stats.calls >= 9)
    client.stop()
    client.join(10)
    client.stats.finish()
    d = client.stats.as_dict()
    assert "died" not in d, d
    assert d["failed"] == 2 and d["calls"] >= 9
    assert d["proto"] == ["HTTP/2.0"] and d["conns"] == 2
    assert "hkp-go-t-3" in client.succeeded
    assert client.ambiguous == {"hkp-go-t-6"}  # the refused write (4 is a read) is not ambiguous
    assert d["writes_failed"] == 1


def test_a_go_client_that_exits_on_its_own_has_died(tmp_path):
    client = clients.GoH2Client(harness(tmp_path), fake_go(tmp_path, limit=5, code=3))
    client.start()
    client.thread.join(10)
    assert client.stats.died and client.stats.died.startswith("exit 3")
    client.join(1)


# --- the watch's stream handling --------------------------------------------------------------------


class FakeResponse:
    def __init__(self, chunks):
        self.chunks = chunks

    def stream(self, amt=None, decode_content=False):
        yield from self.chunks


def event(kind: str, name: str = "", rv: str = "1", **obj) -> bytes:
    return json.dumps({"type": kind, "object": {"metadata": {"name": name, "resourceVersion": rv}, **obj}}).encode()


def test_the_watch_reads_events_split_across_chunks(tmp_path):
    w = clients.WatchClient(harness(tmp_path))
    stream = event("ADDED", "a", "5") + b"\n" + event("BOOKMARK", "", "7") + b"\n" + event("ADDED", "b", "8") + b"\n"
    chunks = [stream[:10], stream[10:70], stream[70:]]
    assert w._read_stream(FakeResponse(chunks)) == "ended"
    assert w.seen == {"a", "b"} and w.rv == "8" and w.events == 2


def test_the_watch_relists_on_410_and_counts_other_errors(tmp_path):
    w = clients.WatchClient(harness(tmp_path))
    gone = json.dumps({"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}}).encode()
    assert w._read_stream(FakeResponse([event("ADDED", "a", "3") + b"\n" + gone + b"\n"])) == "gone"
    other = json.dumps({"type": "ERROR", "object": {"kind": "Status", "code": 500, "message": "etcd"}}).encode()
    assert w._read_stream(FakeResponse([other + b"\n"])) == "ended"
    assert w.stats.failed == 1 and "500" in w.stats.errors[0]


# --- the report's aggregation at the end -------------------------------------------------------------


class FakeWriter(clients._Client, clients._Writer):
    kind = "go_h2"

    def setup(self):
        self.init_writes()

    def loop(self):
        for i in self.steps(0.01):
            name = f"w-{i}"
            ok = i != 2
            self.stats.record(ok, None if ok else "unexpected EOF")
            self.wrote(name, ok, None if ok else "unexpected EOF")

    def teardown(self):
        self.stats.extra.update(self.write_figures())


class FakeWatch(clients.WatchClient):
    def setup(self):
        pass

    def teardown(self):
        self.stats.extra.update({"events": self.events, "relists": self.relists, "reconnects": self.reconnects})

    def loop(self):
        self.stats.record(True)
        while not self.stop_event.wait(0.01):
            # sees everything the writer wrote, except w-1 and w-2
            self.seen.update(f"w-{i}" for i in range(3, self.h.clients["go_h2"].stats.calls + 1))
            self.events += 1
            self.stats.mark_ok()


def test_stop_compares_what_the_writers_created_with_what_the_watch_saw(tmp_path):
    h = harness(tmp_path, drain_timeout=0.3)
    h.clients = {"go_h2": FakeWriter(h), "watch": FakeWatch(h)}
    h._existing_names = lambda: {"w-1", "w-3"}  # w-2 failed ambiguously and does not exist
    for c in h.clients.values():
        c.start()
    wait(lambda: h.clients["go_h2"].stats.calls >= 5)
    h.stop(cleanup=False)
    report = h.report()
    watch = report["watch"]
    assert watch["missed"] == 1 and watch["missed_names"] == ["w-1"]
    assert watch["expected"] == report["go_h2"]["calls"] - 1  # every write but the ambiguous, absent w-2
    assert watch["ambiguous_writes"] == 1 and watch["ambiguous_checked"] is True
    assert report["go_h2"]["failed"] == 1 and report["go_h2"]["writes_failed"] == 1
    with pytest.raises(AssertionError, match="watch: missed 1"):
        assert_no_failures(report, 1)
    assert not any(t.name.startswith("client-") and t.is_alive() for t in threading.enumerate())


def test_unknown_kinds_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown client kinds"):
        harness(tmp_path, kinds=("new_conn", "grpc"))


def test_a_tolerated_number_of_failures_passes_and_one_more_fails():
    from lab.clients import problems

    report = {"go_h2": {"naive": False, "calls": 500, "failed": 2},
              "watch": {"naive": False, "calls": 2, "failed": 0, "events": 300, "missed": 0}}
    assert problems(report, 10, allowed_failures=2) == []
    assert problems(report, 10) == ["go_h2: 2 of 500 calls failed"]
    report["go_h2"]["failed"] = 3
    assert problems(report, 10, allowed_failures=2) == ["go_h2: 3 of 500 calls failed (more than the 2 tolerated)"]
    report["watch"]["missed"] = 1  # never tolerated
    assert any("missed 1" in p for p in problems(report, 10, allowed_failures=2))


def test_a_tolerance_per_client_kind_spares_only_that_kind():
    from lab.clients import problems

    report = {"go_h2": {"naive": False, "calls": 500, "failed": 1},
              "python_client": {"naive": False, "calls": 500, "failed": 1}}
    assert problems(report, 10, allowed_failures={"python_client": 1}) == ["go_h2: 1 of 500 calls failed"]
    report["go_h2"]["failed"] = 0
    assert problems(report, 10, allowed_failures={"python_client": 1}) == []
    report["python_client"]["failed"] = 2
    assert problems(report, 10, allowed_failures={"python_client": 1}) == [
        "python_client: 2 of 500 calls failed (more than the 1 tolerated)"]
