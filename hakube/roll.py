"""A roll that stops and rolls back: the shell the deploy runs on a master, as pure functions.

A *rolled* service (kube-apiserver, haproxy, keepalived) keeps, under ``ROLLBACK_DIR/<service>``, a
byte-identical copy of every input file as it was before the change that is now being applied (or
the note that the file did not exist). The copy is taken once per change: an interrupted run
leaves it in place, so it always holds the last inputs that served. Then, one master at a time:

* kube-apiserver: drain the master, switch its staged inputs (``<path>.new``) into place, restart,
  wait for ``/readyz`` and for haproxy to put it back in rotation. If it does not become ready in
  time: print the apiserver's last journal lines, put the copies back, restart, wait until it
  serves, undrain, and fail with "rolled back".
* haproxy / keepalived: their validated files went live already; reload, and if the daemon is not
  running afterwards put the copies back, restart it, and fail with "rolled back".

Every later master is left alone: ``hakube.rolls.roll`` refuses to start there once a master's roll
failed, and puts that master's own staged or backed-up inputs back (nothing of the failed change
stays live anywhere).
"""

from __future__ import annotations

import shlex

PENDING_DIR = "/var/lib/hakube/pending"  # one marker per handler whose inputs changed, until it ran
ROLLBACK_DIR = "/var/lib/hakube/rollback"  # per service: the inputs before the change (0700)


def pending_marker(handler: str) -> str:
    return f"{PENDING_DIR}/{handler}"


def backup_dir(service: str) -> str:
    return f"{ROLLBACK_DIR}/{service}"


def _q(paths) -> str:
    return " ".join(shlex.quote(p) for p in paths)


def backup(service: str, paths) -> str:
    """Keep the current version of each of ``paths`` unless this change already kept one."""
    return _keep(service, _q(paths))


def _keep(service: str, words: str) -> str:
    b = shlex.quote(backup_dir(service))
    return (
        f"mkdir -p -m 0700 {b} {b}/state && "
        f'for f in {words}; do '
        f'grep -qxF "$f" {b}/kept {b}/absent 2>/dev/null || '
        f'{{ if [ -e "$f" ]; then mkdir -p {b}/state"${{f%/*}}" && cp -a "$f" {b}/state"$f" && echo "$f" >> {b}/kept; '
        f'else echo "$f" >> {b}/absent; fi; }} || exit 1; '
        "done"
    )


def switch_staged(service: str, staged) -> str:
    """Back up, then move every staged ``<path>.new`` into place (atomic per file).

    ``staged`` maps each input's path to the sha256 this run wants there. Only a staged copy with
    exactly those bytes goes live: one left behind by a run that died before this master's turn,
    for data that has changed since, is deleted instead.
    """
    checks = " ".join(f"_pick {shlex.quote(path)} {sha};" for path, sha in staged.items())
    return (
        'ok=""; _pick() { [ -e "$1.new" ] || return 0; '
        'if [ "$(sha256sum < "$1.new" | cut -c1-64)" = "$2" ]; then ok="$ok $1"; else rm -f "$1.new"; fi; }; '
        f"{checks} "
        f'if [ -n "$ok" ]; then {_keep(service, "$ok")}; '
        'for f in $ok; do mv -f "$f.new" "$f" || exit 1; done; fi'
    )


def restore(service: str) -> str:
    """Put the kept versions back (byte-identical, same mode and owner); remove files that were new."""
    b = shlex.quote(backup_dir(service))
    return (
        f'if [ -f {b}/kept ]; then while read -r f; do cp -a {b}/state"$f" "$f"; done < {b}/kept; fi; '
        f'if [ -f {b}/absent ]; then while read -r f; do rm -f "$f"; done < {b}/absent; fi'
    )


def forget(service: str) -> str:
    """The change is settled (served, or rolled back): drop the copies and the marker."""
    return f"rm -rf {shlex.quote(backup_dir(service))} && rm -f {shlex.quote(pending_marker(service))}"


def discard_staged(paths) -> str:
    return f"for f in {_q(paths)}; do rm -f \"$f.new\"; done"


def stopped_elsewhere(service: str, staged_paths=()) -> str:
    """On a master the roll did not reach: nothing of the failed change may stay live here."""
    return f"{restore(service)}; {discard_staged(staged_paths)}; {forget(service)}"


def rolled_restart(service: str, host: str, staged=None, *, apply: str, ready: str, timeout: int,
                   before: str = ":", after: str = ":", functions: str = "", journal_lines: int = 15,
                   revert: str | None = None) -> str:
    """Switch inputs, ``apply`` (restart or reload), wait up to ``timeout`` s for ``ready``; roll back on failure.

    ``functions`` defines shell functions the other parts use. ``before`` runs first and again
    before the rollback's restart (e.g. drain), ``after`` runs on exit whatever happened (e.g. undrain). The
    script exits 0 when the new inputs serve, 1 after a rollback (with the journal and "rolled
    back" on stderr), and does nothing when the marker says nothing is owed. ``revert`` brings the
    previous inputs live after the rollback put them back (default: daemon-reload and restart).
    """
    marker = shlex.quote(pending_marker(service))
    unit = shlex.quote(service)
    return (
        f"[ -e {marker} ] || exit 0; "
        f"{functions}"
        f"_ready() {{ end=$(( $(date +%s) + {int(timeout)} )); "
        f"until {ready}; do [ $(date +%s) -lt $end ] || return 1; sleep 0.5; done; }}; "
        # On exit and on a signal (a deploy machine that goes away mid-roll): never left drained.
        f"_after() {{ {after}; }}; trap _after EXIT; trap 'exit 1' INT TERM HUP; "
        f"{before}; "
        f"{switch_staged(service, staged or {})}; "
        "since=$(date '+%Y-%m-%d %H:%M:%S'); "
        f"if {{ {apply}; }} && _ready; then {forget(service)}; exit 0; fi; "
        f'echo "{host}: {service} did not become ready (waited up to {int(timeout)}s); its last journal lines:" >&2; '
        # journald can lag the unit by a second or more (seen on Debian 12): wait (3 s at most) for
        # systemd's own word on the failure before showing the last lines.
        f'for _ in 1 2 3 4 5 6; do journalctl -u {unit} --since "$since" -o cat --no-pager 2>/dev/null | '
        f"grep -q -e 'Failed with result' -e 'Main process exited' && break; sleep 0.5; done; "
        # the tail by `tail`, not by journalctl's -n: with --since on Debian 12 it showed older lines
        f'journalctl -u {unit} --since "$since" --no-pager -o cat 2>&1 | tail -n {int(journal_lines)} >&2; '
        f"{before}; "
        f"{restore(service)}; "
        f"{revert or f'systemctl daemon-reload; systemctl restart {unit}'}; "
        f'if _ready; then echo "{host}: {service} rolled back: its previous inputs are live again and it serves" >&2; '
        f'else echo "{host}: {service} rolled back: its previous inputs are live again, but it does not serve" >&2; fi; '
        f"{forget(service)}; exit 1"
    )
