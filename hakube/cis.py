"""Section 1.2 (API Server) of the CIS Kubernetes Benchmark, as kube-bench checks it, as data.

Two benchmarks, each copied check by check from kube-bench's own definitions (aquasecurity/kube-bench):

* ``cis-1.6``: ``cfg/cis-1.6/master.yaml`` (read at commit 06642c880ff48f950bb7ffc41e97c59cf181a283),
  the benchmark for the lab's 1.20;
* ``cis-1.12``: ``cfg/cis-1.12/master.yaml`` (read at commit 0139daa50912236542f062e53d58372b51922e7e),
  the newest benchmark kube-bench ships, for 1.3x.

Each check keeps kube-bench's id, title (with CIS's "(Automated)" or "(Manual)") and ``tests``: the
``test_items`` (``flag``; ``set``, true unless said; ``compare`` ``op`` and ``value``) joined by
``bin_op`` (``and`` unless said). ``evaluate`` runs the Automated checks against an apiserver
command line the way kube-bench's flag tests do: a flag without ``set: false`` must be present and,
with a ``compare``, its value must compare; ``set: false`` wants it absent. Manual checks and the
checks that read a file (1.2.34 of cis-1.6: the providers inside the encryption config) are
returned as skipped, with why.

What the deploy renders by default fails only the checks in ``EXCEPTIONS``; each names the data key
that makes it pass and why it is not the default (the README's hardening table, ``markdown``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping

SOURCE = "https://github.com/aquasecurity/kube-bench/blob/main/cfg/{benchmark}/master.yaml"

#: The Kubernetes version each benchmark is evaluated against here (kube-bench's version_mapping
#: sends 1.16-1.18 to cis-1.6; it is the lab's benchmark, the issue's "benchmark for 1.20").
BENCHMARK_FOR = {"cis-1.6": "1.20", "cis-1.12": "1.35-1.37"}


@dataclass(frozen=True)
class Item:
    """One kube-bench ``test_item`` on the command line."""

    flag: str  # with its dashes, as kube-bench writes it: "--profiling"
    set: bool = True
    op: str | None = None  # eq noteq gt gte lt lte has nothave valid_elements
    value: str | None = None

    def describe(self) -> str:
        if not self.set:
            return f"{self.flag} not set"
        if self.op is None:
            return f"{self.flag} set"
        return f"{self.flag} {self.op} {self.value}"


@dataclass(frozen=True)
class Check:
    id: str
    title: str  # kube-bench's text, "(Automated)" or "(Manual)" included
    tests: tuple[Item, ...] = ()
    bin_op: str = "and"
    #: Why evaluate() skips it although it is Automated (it reads a file, not the command line).
    not_on_command_line: str | None = None

    @property
    def automated(self) -> bool:
        return self.title.endswith("(Automated)")

    @property
    def flags(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t.flag.removeprefix("--") for t in self.tests))

    def describe(self) -> str:
        return f" {self.bin_op} ".join(t.describe() for t in self.tests)


@dataclass(frozen=True)
class Result:
    id: str
    title: str
    status: str  # "pass", "fail" or "skip"
    reason: str

    @property
    def passed(self) -> bool:
        return self.status == "pass"


def _set(flag: str) -> Item:
    return Item(flag)


def _unset(flag: str) -> Item:
    return Item(flag, set=False)


def _cmp(flag: str, op: str, value: object) -> Item:
    # kube-bench reads YAML values as strings: false -> "false", 0 -> "0".
    return Item(flag, op=op, value=str(value).lower() if isinstance(value, bool) else str(value))


_CIPHERS_1_6 = (
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,"
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,"
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,"
    "TLS_RSA_WITH_AES_256_GCM_SHA384,TLS_RSA_WITH_AES_128_GCM_SHA256"
)
_CIPHERS_1_12 = (
    "TLS_AES_128_GCM_SHA256,TLS_AES_256_GCM_SHA384,TLS_CHACHA20_POLY1305_SHA256,"
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,"
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,"
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,"
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"
)
_EA = "--enable-admission-plugins"
_DA = "--disable-admission-plugins"
_AM = "--authorization-mode"
_ENCRYPTION_FILE = (
    "reads the providers inside the --encryption-provider-config file, not the command line "
    "(the deploy writes secretbox or aescbc first: secrets_encryption_provider)"
)

BENCHMARKS: dict[str, tuple[Check, ...]] = {
    "cis-1.6": (
        Check("1.2.1", "Ensure that the --anonymous-auth argument is set to false (Manual)", (_cmp("--anonymous-auth", "eq", False),)),
        Check("1.2.2", "Ensure that the --basic-auth-file argument is not set (Automated)", (_unset("--basic-auth-file"),)),
        Check("1.2.3", "Ensure that the --token-auth-file parameter is not set (Automated)", (_unset("--token-auth-file"),)),
        Check("1.2.4", "Ensure that the --kubelet-https argument is set to true (Automated)", (_cmp("--kubelet-https", "eq", True), _unset("--kubelet-https")), "or"),
        Check("1.2.5", "Ensure that the --kubelet-client-certificate and --kubelet-client-key arguments are set as appropriate (Automated)", (_set("--kubelet-client-certificate"), _set("--kubelet-client-key"))),
        Check("1.2.6", "Ensure that the --kubelet-certificate-authority argument is set as appropriate (Automated)", (_set("--kubelet-certificate-authority"),)),
        Check("1.2.7", "Ensure that the --authorization-mode argument is not set to AlwaysAllow (Automated)", (_cmp(_AM, "nothave", "AlwaysAllow"),)),
        Check("1.2.8", "Ensure that the --authorization-mode argument includes Node (Automated)", (_cmp(_AM, "has", "Node"),)),
        Check("1.2.9", "Ensure that the --authorization-mode argument includes RBAC (Automated)", (_cmp(_AM, "has", "RBAC"),)),
        Check("1.2.10", "Ensure that the admission control plugin EventRateLimit is set (Manual)", (_cmp(_EA, "has", "EventRateLimit"),)),
        Check("1.2.11", "Ensure that the admission control plugin AlwaysAdmit is not set (Automated)", (_cmp(_EA, "nothave", "AlwaysAdmit"), _unset(_EA)), "or"),
        Check("1.2.12", "Ensure that the admission control plugin AlwaysPullImages is set (Manual)", (_cmp(_EA, "has", "AlwaysPullImages"),)),
        Check("1.2.13", "Ensure that the admission control plugin SecurityContextDeny is set if PodSecurityPolicy is not used (Manual)", (_cmp(_EA, "has", "SecurityContextDeny"), _cmp(_EA, "has", "PodSecurityPolicy")), "or"),
        Check("1.2.14", "Ensure that the admission control plugin ServiceAccount is set (Automated)", (_cmp(_DA, "nothave", "ServiceAccount"), _unset(_DA)), "or"),
        Check("1.2.15", "Ensure that the admission control plugin NamespaceLifecycle is set (Automated)", (_cmp(_DA, "nothave", "NamespaceLifecycle"), _unset(_DA)), "or"),
        Check("1.2.16", "Ensure that the admission control plugin PodSecurityPolicy is set (Automated)", (_cmp(_EA, "has", "PodSecurityPolicy"),)),
        Check("1.2.17", "Ensure that the admission control plugin NodeRestriction is set (Automated)", (_cmp(_EA, "has", "NodeRestriction"),)),
        Check("1.2.18", "Ensure that the --insecure-bind-address argument is not set (Automated)", (_unset("--insecure-bind-address"),)),
        Check("1.2.19", "Ensure that the --insecure-port argument is set to 0 (Automated)", (_cmp("--insecure-port", "eq", 0),)),
        Check("1.2.20", "Ensure that the --secure-port argument is not set to 0 (Automated)", (_cmp("--secure-port", "gt", 0), _unset("--secure-port")), "or"),
        Check("1.2.21", "Ensure that the --profiling argument is set to false (Automated)", (_cmp("--profiling", "eq", False),)),
        Check("1.2.22", "Ensure that the --audit-log-path argument is set (Automated)", (_set("--audit-log-path"),)),
        Check("1.2.23", "Ensure that the --audit-log-maxage argument is set to 30 or as appropriate (Automated)", (_cmp("--audit-log-maxage", "gte", 30),)),
        Check("1.2.24", "Ensure that the --audit-log-maxbackup argument is set to 10 or as appropriate (Automated)", (_cmp("--audit-log-maxbackup", "gte", 10),)),
        Check("1.2.25", "Ensure that the --audit-log-maxsize argument is set to 100 or as appropriate (Automated)", (_cmp("--audit-log-maxsize", "gte", 100),)),
        Check("1.2.26", "Ensure that the --request-timeout argument is set as appropriate (Automated)", (_unset("--request-timeout"), _set("--request-timeout")), "or"),
        Check("1.2.27", "Ensure that the --service-account-lookup argument is set to true (Automated)", (_unset("--service-account-lookup"), _cmp("--service-account-lookup", "eq", True)), "or"),
        Check("1.2.28", "Ensure that the --service-account-key-file argument is set as appropriate (Automated)", (_set("--service-account-key-file"),)),
        Check("1.2.29", "Ensure that the --etcd-certfile and --etcd-keyfile arguments are set as appropriate (Automated)", (_set("--etcd-certfile"), _set("--etcd-keyfile"))),
        Check("1.2.30", "Ensure that the --tls-cert-file and --tls-private-key-file arguments are set as appropriate (Automated)", (_set("--tls-cert-file"), _set("--tls-private-key-file"))),
        Check("1.2.31", "Ensure that the --client-ca-file argument is set as appropriate (Automated)", (_set("--client-ca-file"),)),
        Check("1.2.32", "Ensure that the --etcd-cafile argument is set as appropriate (Automated)", (_set("--etcd-cafile"),)),
        Check("1.2.33", "Ensure that the --encryption-provider-config argument is set as appropriate (Automated)", (_set("--encryption-provider-config"),)),
        Check("1.2.34", "Ensure that encryption providers are appropriately configured (Automated)", not_on_command_line=_ENCRYPTION_FILE),
        Check("1.2.35", "Ensure that the API Server only makes use of Strong Cryptographic Ciphers (Manual)", (_cmp("--tls-cipher-suites", "valid_elements", _CIPHERS_1_6),)),
    ),
    "cis-1.12": (
        Check("1.2.1", "Ensure that the --anonymous-auth argument is set to false (Manual)", (_cmp("--anonymous-auth", "eq", False),)),
        Check("1.2.2", "Ensure that the --token-auth-file parameter is not set (Automated)", (_unset("--token-auth-file"),)),
        Check("1.2.3", "Ensure that the --DenyServiceExternalIPs is set (Manual)", (_cmp(_EA, "has", "DenyServiceExternalIPs"),), "or"),
        Check("1.2.4", "Ensure that the --kubelet-client-certificate and --kubelet-client-key arguments are set as appropriate (Automated)", (_set("--kubelet-client-certificate"), _set("--kubelet-client-key"))),
        Check("1.2.5", "Ensure that the --kubelet-certificate-authority argument is set as appropriate (Automated)", (_set("--kubelet-certificate-authority"),)),
        Check("1.2.6", "Ensure that the --authorization-mode argument is not set to AlwaysAllow (Automated)", (_cmp(_AM, "nothave", "AlwaysAllow"),)),
        Check("1.2.7", "Ensure that the --authorization-mode argument includes Node (Automated)", (_cmp(_AM, "has", "Node"),)),
        Check("1.2.8", "Ensure that the --authorization-mode argument includes RBAC (Automated)", (_cmp(_AM, "has", "RBAC"),)),
        Check("1.2.9", "Ensure that the admission control plugin EventRateLimit is set (Manual)", (_cmp(_EA, "has", "EventRateLimit"),)),
        Check("1.2.10", "Ensure that the admission control plugin AlwaysAdmit is not set (Automated)", (_cmp(_EA, "nothave", "AlwaysAdmit"), _unset(_EA)), "or"),
        Check("1.2.11", "Ensure that the admission control plugin AlwaysPullImages is set (Manual)", (_cmp(_EA, "has", "AlwaysPullImages"),)),
        Check("1.2.12", "Ensure that the admission control plugin ServiceAccount is set (Automated)", (_cmp(_DA, "nothave", "ServiceAccount"), _unset(_DA)), "or"),
        Check("1.2.13", "Ensure that the admission control plugin NamespaceLifecycle is set (Automated)", (_cmp(_DA, "nothave", "NamespaceLifecycle"), _unset(_DA)), "or"),
        Check("1.2.14", "Ensure that the admission control plugin NodeRestriction is set (Automated)", (_cmp(_EA, "has", "NodeRestriction"),)),
        Check("1.2.15", "Ensure that the --profiling argument is set to false (Automated)", (_cmp("--profiling", "eq", False),)),
        Check("1.2.16", "Ensure that the --audit-log-path argument is set (Automated)", (_set("--audit-log-path"),)),
        Check("1.2.17", "Ensure that the --audit-log-maxage argument is set to 30 or as appropriate (Automated)", (_cmp("--audit-log-maxage", "gte", 30),)),
        Check("1.2.18", "Ensure that the --audit-log-maxbackup argument is set to 10 or as appropriate (Automated)", (_cmp("--audit-log-maxbackup", "gte", 10),)),
        Check("1.2.19", "Ensure that the --audit-log-maxsize argument is set to 100 or as appropriate (Automated)", (_cmp("--audit-log-maxsize", "gte", 100),)),
        Check("1.2.20", "Ensure that the --request-timeout argument is set as appropriate (Manual)"),  # kube-bench: type manual, no tests
        Check("1.2.21", "Ensure that the --service-account-lookup argument is set to true (Automated)", (_unset("--service-account-lookup"), _cmp("--service-account-lookup", "eq", True)), "or"),
        Check("1.2.22", "Ensure that the --service-account-key-file argument is set as appropriate (Automated)", (_set("--service-account-key-file"),)),
        Check("1.2.23", "Ensure that the --etcd-certfile and --etcd-keyfile arguments are set as appropriate (Automated)", (_set("--etcd-certfile"), _set("--etcd-keyfile"))),
        Check("1.2.24", "Ensure that the --tls-cert-file and --tls-private-key-file arguments are set as appropriate (Automated)", (_set("--tls-cert-file"), _set("--tls-private-key-file"))),
        Check("1.2.25", "Ensure that the --client-ca-file argument is set as appropriate (Automated)", (_set("--client-ca-file"),)),
        Check("1.2.26", "Ensure that the --etcd-cafile argument is set as appropriate (Automated)", (_set("--etcd-cafile"),)),
        Check("1.2.27", "Ensure that the --encryption-provider-config argument is set as appropriate (Manual)", (_set("--encryption-provider-config"),)),
        Check("1.2.28", "Ensure that encryption providers are appropriately configured (Manual)", not_on_command_line=_ENCRYPTION_FILE),
        Check("1.2.29", "Ensure that the API Server only makes use of Strong Cryptographic Ciphers (Manual)", (_cmp("--tls-cipher-suites", "valid_elements", _CIPHERS_1_12),)),
        Check("1.2.30", "Ensure that the --service-account-extend-token-expiration parameter is set to false (Automated)", (_cmp("--service-account-extend-token-expiration", "eq", False),)),
    ),
}


@dataclass(frozen=True)
class Exemption:
    """An Automated check the default rendering fails on purpose: the data key that makes it pass, and why."""

    key: str
    why: str


_KUBELET_CA = Exemption(
    "kubelet_certificate_authority_file",
    "the apiserver would then refuse every kubelet whose serving certificate that CA did not sign "
    "(logs, exec, port-forward break); kubelets serve self-signed certificates unless the operator "
    "set up serving certificates (serverTLSBootstrap and a signer, or certificates issued by hand), "
    "so only the operator can name that CA",
)

#: The Automated checks the default rendering fails, per benchmark (evaluated for its version).
EXCEPTIONS: dict[str, dict[str, Exemption]] = {
    "cis-1.6": {
        "1.2.6": _KUBELET_CA,
        "1.2.16": Exemption(
            "admission_plugins",
            "with PodSecurityPolicy admission and no policy that allows them, no pod is admitted; the "
            "policies (and RBAC to use them) are the cluster's, not this deploy's. Add "
            "PodSecurityPolicy to admission_plugins once they exist (1.20-1.24 only: removed in 1.25)",
        ),
        "1.2.19": Exemption(
            "apiserver_extra_flags",
            "1.20's insecure port is already off whatever the flag says: v1.20.2 answers 'Flag "
            "--insecure-port has been deprecated, This flag has no effect now and will be removed in "
            "v1.24.'. The deploy renders no deprecated flag (the lab checks the binary logs no "
            "deprecation); `apiserver_extra_flags: {insecure-port: 0}` passes the check on 1.20 "
            "(with that warning at each start)",
        ),
    },
    "cis-1.12": {"1.2.5": _KUBELET_CA},
}


# --- the command line ------------------------------------------------------------------------------


def parse_cmdline(raw: bytes | str) -> list[str]:
    """``/proc/<pid>/cmdline`` (arguments each ended by NUL) -> argv."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="surrogateescape")
    return raw.split("\0")[:-1] if raw.endswith("\0") else (raw.split("\0") if raw else [])


def flag_values(argv: Iterable[str]) -> dict[str, str]:
    """``{"--name": value}`` of an apiserver's argv (argv[0], the binary, is skipped).

    As pflag reads them: ``--name=value``; ``--name value`` when the next argument is not a flag
    (kube-apiserver has no positional arguments); a bare ``--name`` is a boolean set to true. A flag
    given twice keeps its last value (what pflag does for a scalar flag).
    """
    args = list(argv)[1:]
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith("-"):
            continue
        name, eq, value = arg.partition("=")
        name = "--" + name.lstrip("-")
        if not eq:
            if i < len(args) and not args[i].startswith("-"):
                value, i = args[i], i + 1
            else:
                value = "true"
        out[name] = value
    return out


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def compare(op: str, have: str, want: str) -> bool:
    """kube-bench's ``compare`` ops on a flag value (``check/test.go``: eq/noteq compare booleans
    case-insensitively, the numeric ops need integers, has/nothave are substring tests,
    valid_elements wants every comma-separated element among ``want``'s)."""
    if op in ("eq", "noteq"):
        same = have.lower() == want.lower() if have.lower() in ("true", "false") else have == want
        return same if op == "eq" else not same
    if op in ("gt", "gte", "lt", "lte"):
        a, b = _int(have), _int(want)
        if a is None or b is None:
            return False
        return {"gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[op]
    if op == "has":
        return want in have
    if op == "nothave":
        return want not in have
    if op == "valid_elements":
        allowed = set(want.split(","))
        return all(e in allowed for e in have.split(",")) and bool(have)
    raise ValueError(f"unknown compare op {op!r}")


def _run(test: Item, flags: Mapping[str, str]) -> tuple[bool, str]:
    present = test.flag in flags
    shown = f"{test.flag}={flags[test.flag]}" if present else f"{test.flag} not set"
    if not test.set:
        return not present, shown
    if not present:
        return False, shown
    if test.op is None:
        return True, shown
    return compare(test.op, flags[test.flag], test.value or ""), shown


def evaluate(argv: list[str], benchmark: str) -> list[Result]:
    """Every section 1.2 check of ``benchmark`` against the apiserver's ``argv``: the Automated ones
    on the command line pass or fail with the reason; Manual ones and file checks are skipped."""
    flags = flag_values(argv)
    results = []
    for check in BENCHMARKS[benchmark]:
        if not check.automated:
            results.append(Result(check.id, check.title, "skip", "Manual check: not evaluated"))
            continue
        if check.not_on_command_line:
            results.append(Result(check.id, check.title, "skip", check.not_on_command_line))
            continue
        outcomes = [_run(t, flags) for t in check.tests]
        ok = any(o for o, _ in outcomes) if check.bin_op == "or" else all(o for o, _ in outcomes)
        seen = ", ".join(dict.fromkeys(s for _, s in outcomes))
        results.append(Result(check.id, check.title, "pass" if ok else "fail", f"wants {check.describe()}; has {seen}"))
    return results


def failures(argv: list[str], benchmark: str) -> dict[str, str]:
    """``{check id: reason}`` of the Automated checks ``argv`` fails."""
    return {r.id: r.reason for r in evaluate(argv, benchmark) if r.status == "fail"}


def argv_from_env(binary: str, unit: str, env: Mapping[str, str]) -> list[str]:
    """The argv systemd gives the apiserver: ``binary`` then each ``$VAR`` of ``unit``'s ExecStart in
    order (the line and its backslash continuations), its value from the environment files (``env``)
    split at whitespace, as systemd expands an unbraced ``$VAR``."""
    lines = unit.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("ExecStart="))
    command = []
    for line in lines[start:]:
        command.append(line.rstrip().removesuffix("\\"))
        if not line.rstrip().endswith("\\"):
            break
    argv = [binary]
    for var in re.findall(r"\$([A-Z_][A-Z0-9_]*)", " ".join(command)):
        argv += env.get(var, "").split()
    return argv


# --- the README's hardening table ----------------------------------------------------------------


def _key_of(flag: str) -> str:
    """What sets ``--flag`` in the deploy's rendering, for the hardening table."""
    from .apiserver_args import CIS_DEFAULTS
    from .flags import FLAGS, RESERVED

    where = RESERVED.get(flag)
    if where is not None:
        return where if " " in where else f"`{where}`"
    if flag in dict(CIS_DEFAULTS):
        return f"default `--{flag}={dict(CIS_DEFAULTS)[flag]}`; `apiserver_extra_flags` may override it"
    if flag not in FLAGS:
        return "not rendered (unknown to the flag table: refused as an extra flag)"
    return "not rendered (`apiserver_extra_flags` could add it)"


def markdown() -> str:
    """The README's hardening table (``python -m hakube.cis`` prints it): every Automated check of
    both benchmarks, whether the default rendering passes it, the data key behind it, and why not.
    ``tests/unit/test_cis.py`` checks the default rendering fails exactly ``EXCEPTIONS``."""
    rows = ["| benchmark | check | by default | what sets it | why not by default |", "|---|---|---|---|---|"]
    for name, checks in BENCHMARKS.items():
        for check in checks:
            if not check.automated:
                continue
            title = check.title.removesuffix(" (Automated)").removeprefix("Ensure that ")
            exemption = EXCEPTIONS.get(name, {}).get(check.id)
            if check.not_on_command_line:
                status, key, why = "not on the command line", "`secrets_encryption_provider`", check.not_on_command_line
            elif exemption:
                status, key, why = "**fail**", f"`{exemption.key}` turns it on", exemption.why
            else:
                status, key, why = "pass", ", ".join(dict.fromkeys(_key_of(f) for f in check.flags)), ""
            rows.append(f"| {name} ({BENCHMARK_FOR[name]}) | {check.id} {title} | {status} | {key} | {why} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown())
