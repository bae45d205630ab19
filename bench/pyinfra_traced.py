"""The real pyinfra CLI with a logging hook: which operation and fact ran each remote command.

    python bench/pyinfra_traced.py TRACE.jsonl -y inventory.py deploy.py --json

Used by `make bench` (bench/run.py) for one extra, untimed no-op run: every
``Host.run_shell_command`` / ``put_file`` / ``get_file`` is appended to TRACE.jsonl with the host,
the pyinfra stage (Prepare/Execute), the operation being planned or executed, the enclosing
``@deploy``, when the command belongs to a fact the fact's name, and when it started (seconds since
the run began) and how long it took: a first apply's timeline. Nothing else changes: the
arguments go to pyinfra's own ``main()``.

pyinfra_cli monkey-patches the standard library with gevent when imported, so it is imported
before anything else here (this file deliberately imports no project code).
"""

import pyinfra_cli  # noqa: F401  (gevent monkey.patch_all() first)

import json
import sys
import time


def _install(trace_path: str) -> None:
    import pyinfra.api.facts as facts
    from pyinfra.api.host import Host

    out = open(trace_path, "a", buffering=1)
    seq = [0]
    t0 = time.monotonic()
    orig_get_fact = facts._get_fact

    def get_fact(state, host, cls, *args, **kwargs):
        stack = host.__dict__.setdefault("_bench_fact_stack", [])
        stack.append(getattr(cls, "name", cls.__name__))
        try:
            return orig_get_fact(state, host, cls, *args, **kwargs)
        finally:
            stack.pop()

    facts._get_fact = get_fact  # get_fact() looks _get_fact up as a module global on every call

    def record(host, kind: str, text: str, seconds: float, ok, started: float) -> None:
        state = host.state
        op_hash = host.current_op_hash
        op = None
        if op_hash and op_hash in state.op_meta:
            op = sorted(state.op_meta[op_hash].names)[0]
        stack = host.__dict__.get("_bench_fact_stack") or []
        stage = getattr(state, "current_stage", None)
        seq[0] += 1
        out.write(json.dumps({
            "seq": seq[0],
            "host": host.name,
            "kind": "fact" if stack and kind == "command" else kind,
            "fact": stack[-1] if stack else None,
            "op": op,
            "deploy": host.current_deploy_name,
            "stage": getattr(stage, "name", str(stage)),
            "text": text[:400],
            "started": round(started - t0, 4),  # seconds since the run began
            "seconds": round(seconds, 4),
            "ok": ok,
        }) + "\n")

    orig_run = Host.run_shell_command
    orig_put = Host.put_file
    orig_get = Host.get_file

    def run_shell_command(self, command, *args, **kwargs):
        started, result = time.monotonic(), None
        try:
            result = orig_run(self, command, *args, **kwargs)
            return result
        finally:
            record(self, "command", str(command), time.monotonic() - started,
                   bool(result[0]) if result else None, started)

    def put_file(self, filename_or_io, remote_filename, *args, **kwargs):
        started, result = time.monotonic(), None
        try:
            result = orig_put(self, filename_or_io, remote_filename, *args, **kwargs)
            return result
        finally:
            record(self, "upload", f"upload {remote_filename}", time.monotonic() - started, result, started)

    def get_file(self, remote_filename, filename_or_io, *args, **kwargs):
        started, result = time.monotonic(), None
        try:
            result = orig_get(self, remote_filename, filename_or_io, *args, **kwargs)
            return result
        finally:
            record(self, "download", f"download {remote_filename}", time.monotonic() - started, result, started)

    Host.run_shell_command = run_shell_command
    Host.put_file = put_file
    Host.get_file = get_file


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: pyinfra_traced.py TRACE.jsonl PYINFRA-ARGS...")
    _install(sys.argv[1])
    sys.argv = ["pyinfra", *sys.argv[2:]]
    from pyinfra_cli.main import main

    sys.exit(main())
