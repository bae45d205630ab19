"""Secrets encrypted at rest: keys, the EncryptionConfiguration, the flag, and the refusal of a
run that would drop a key a master's live config holds."""

from __future__ import annotations

import base64
import os
import re
import stat
import subprocess
from types import SimpleNamespace

import gevent
import pytest
from pyinfra.api.exceptions import PyinfraError

from hakube import apiserver_args, context, encryption
from hakube.encryption import LiveKey
from hakube.facts import HostFacts, HostSnapshot
from hakube.paths import PATHS
from hakube.tasks import certs, desired_state
from hakube.tasks import encryption as step

from .conftest import Inv, problem_for

K1, K2, K3 = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32


@pytest.fixture(autouse=True)
def _fresh_caches():
    encryption.ensure_keys.cache_clear()
    yield
    encryption.ensure_keys.cache_clear()


# ------------------------------------------------------------------ rendering


def _providers(text: str) -> list[str]:
    return re.findall(r"^      - (\w+):", text, re.M)


def test_config_lists_the_keys_in_order_under_the_provider_then_identity() -> None:
    text = encryption.render_config("secretbox", [("key2", K2), ("key1", K1)]).decode()
    assert "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n" in text
    assert re.search(r"^  - resources:\n      - secrets\n    providers:\n", text, re.M)
    assert _providers(text) == ["secretbox", "identity"]
    assert text.rstrip().endswith("- identity: {}")
    assert re.findall(r"- name: (\S+)\n\s+secret: (\S+)", text) == [
        ("key2", base64.b64encode(K2).decode()), ("key1", base64.b64encode(K1).decode())]


def test_aescbc_provider() -> None:
    assert _providers(encryption.render_config("aescbc", [("key1", K1)]).decode()) == ["aescbc", "identity"]
    with pytest.raises(ValueError):
        encryption.render_config("aesgcm", [("key1", K1)])


# ------------------------------------------------------------------ keys on the deploy machine


def test_a_key_is_32_random_bytes_base64_0600_in_a_0700_dir_and_never_remade(tmp_path) -> None:
    (name, secret), = encryption.ensure_keys(str(tmp_path), ("key1",))
    path = tmp_path / "encryption" / "key1.key"
    assert name == "key1" and len(secret) == 32 and base64.b64decode(path.read_bytes()) == secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    encryption.ensure_keys.cache_clear()  # another run (process) reads the same key
    assert encryption.ensure_keys(str(tmp_path), ("key1",)) == ((name, secret),)
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")], "temp file left behind"


def test_keys_come_in_data_order_and_new_names_get_new_keys(tmp_path) -> None:
    one = dict(encryption.ensure_keys(str(tmp_path), ("key1",)))
    both = encryption.ensure_keys(str(tmp_path), ("key2", "key1"))
    assert [n for n, _ in both] == ["key2", "key1"]
    assert dict(both)["key1"] == one["key1"] and dict(both)["key2"] != one["key1"]


def test_a_key_created_meanwhile_wins(tmp_path, monkeypatch) -> None:
    """Two planners racing for one name: the second ``_create`` keeps the first one's key."""
    encryption.key_dir(tmp_path).mkdir(mode=0o700)
    path = encryption.key_path(tmp_path, "key1")
    encryption._create(path)
    first = path.read_bytes()
    encryption._create(path)
    assert path.read_bytes() == first
    assert sorted(os.listdir(path.parent)) == ["key1.key"]


def test_a_loose_key_mode_is_tightened(tmp_path) -> None:
    encryption.ensure_keys(str(tmp_path), ("key1",))
    path = encryption.key_path(tmp_path, "key1")
    os.chmod(path, 0o644)
    encryption.ensure_keys.cache_clear()
    encryption.ensure_keys(str(tmp_path), ("key1",))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("content", [b"not base64 !!\n", base64.b64encode(b"short") + b"\n"])
def test_a_broken_key_file_is_refused_never_replaced(tmp_path, content) -> None:
    path = encryption.key_path(tmp_path, "key1")
    path.parent.mkdir(mode=0o700)
    path.write_bytes(content)
    with pytest.raises(encryption.EncryptionKeyError) as exc:
        encryption.ensure_keys(str(tmp_path), ("key1",))
    assert str(path) in str(exc.value) and "secrets_encryption_keys" in str(exc.value)
    assert path.read_bytes() == content


def test_local_digests_read_every_key_and_create_nothing(tmp_path) -> None:
    assert encryption.local_digests(tmp_path) == {}
    assert not (tmp_path / "encryption").exists()
    keys = dict(encryption.ensure_keys(str(tmp_path), ("key1", "old")))
    (tmp_path / "encryption" / "junk.key").write_text("nope")
    assert encryption.local_digests(tmp_path) == {encryption.digest(keys["key1"]): "key1",
                                                  encryption.digest(keys["old"]): "old"}


# ------------------------------------------------------------------ the desired file and the flag


def test_every_master_gets_the_same_secret_0600_config_that_restarts_the_apiserver(inv: Inv) -> None:
    s = inv.load()
    files = {}
    for name in ("m1", "m2"):
        files[name] = desired_state(s[name], certs.ensure_pki(s[name]))[step.KEY]["config"]
    f = files["m1"]
    assert f.content == files["m2"].content
    assert (f.path, f.mode, f.secret, f.notify) == (PATHS.encryption_config, "0600", True, ("kube-apiserver",))
    key = (s["m1"].cluster.pki_dir + "/encryption/key1.key")
    secret = open(key, "rb").read().strip()
    assert secret in f.content and secret.decode() not in repr(f)
    assert secret.decode() not in repr(certs.ensure_pki(s["m1"]))
    assert step.KEY not in desired_state(s["n1"], None)


def test_flag_only_when_on(inv: Inv) -> None:
    on = inv.load()["m1"]
    assert f"--encryption-provider-config={PATHS.encryption_config}" in apiserver_args.apiserver_env(on)["KUBE_API_ARGS"]
    inv.cluster["secrets_encryption"] = False
    off = inv.load()["m1"]
    assert "encryption-provider-config" not in apiserver_args.apiserver_env(off)["KUBE_API_ARGS"]
    assert desired_state(off, certs.ensure_pki(off))[step.KEY] == {}
    assert not (off.cluster.pki_dir and os.path.exists(off.cluster.pki_dir + "/encryption"))


def test_flag_for_1_20(tmp_path) -> None:
    from .conftest import make_inventory

    cfg = make_inventory(tmp_path, kube_version="1.20.2").load()["m1"]
    assert "--encryption-provider-config=" in apiserver_args.apiserver_env(cfg)["KUBE_API_ARGS"]


def test_the_flag_cannot_be_an_extra_flag(inv: Inv) -> None:
    inv.cluster["apiserver_extra_flags"] = {"encryption-provider-config": "/tmp/x"}
    line = problem_for(inv.problems(), "m1", "apiserver_extra_flags")
    assert "secrets_encryption" in line


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize("value, why", [
    (["Key1"], "not a key name"),
    (["a" * 33], "not a key name"),
    ([""], "not a key name"),
    (["key/1"], "not a key name"),
    (["key1", "key1"], "more than once"),
    ("key1", "must be a list"),
    ([1], "not a key name"),
])
def test_bad_key_names_are_refused_naming_the_key(inv: Inv, value, why) -> None:
    inv.cluster["secrets_encryption_keys"] = value
    assert why in problem_for(inv.problems(), "m1", "secrets_encryption_keys")


def test_no_key_while_on_is_refused_but_fine_while_off(inv: Inv) -> None:
    inv.cluster["secrets_encryption_keys"] = []
    assert "empty" in problem_for(inv.problems(), "m1", "secrets_encryption_keys")
    inv.cluster["secrets_encryption"] = False
    assert inv.load()["m1"].cluster.secrets_encryption_keys == ()


def test_bad_provider_and_switch(inv: Inv) -> None:
    inv.cluster["secrets_encryption_provider"] = "aesgcm"
    inv.cluster["secrets_encryption"] = "yes"
    problems = inv.problems()
    assert "secretbox, aescbc" in problem_for(problems, "m1", "secrets_encryption_provider")
    problem_for(problems, "m1", "secrets_encryption")


def test_defaults_on_secretbox_key1(inv: Inv) -> None:
    c = inv.load()["m1"].cluster
    assert (c.secrets_encryption, c.secrets_encryption_provider, c.secrets_encryption_keys) == (True, "secretbox", ("key1",))


# ------------------------------------------------------------------ what a master's live config holds


def test_the_snapshot_reports_names_and_digests_never_a_secret(tmp_path) -> None:
    live = tmp_path / "encryption-config.yaml"
    live.write_bytes(encryption.render_config("secretbox", [("key2", K2), ("key1", K1)]))
    hand = tmp_path / "hand.yaml"  # written by hand: flow list, quotes, no leading indentation
    hand.write_text(f'resources:\n- resources: [secrets]\n  providers:\n  - aescbc:\n      keys:\n'
                    f'      - name: "a"\n        secret: \'{base64.b64encode(K3).decode()}\'\n  - identity: {{}}\n')
    fact = HostSnapshot()
    cmd = fact.command(paths=(), units=(), users=(), sysctls=(), commands=(), kube_objects=(), kubeconfig="/none",
                       secret_digests=(str(live), str(hand), str(tmp_path / "missing")))
    out = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, check=True).stdout
    for secret in (K1, K2, K3):
        assert base64.b64encode(secret).decode() not in out + cmd
    got = fact.process(out.splitlines()).secret_digests
    assert got == {str(live): (LiveKey("key2", encryption.digest(K2), "secretbox"),
                               LiveKey("key1", encryption.digest(K1), "secretbox")),
                   str(hand): (LiveKey("a", encryption.digest(K3), "aescbc"),)}


# ------------------------------------------------------------------ never make it worse


LOCAL = {encryption.digest(K1): "key1", encryption.digest(K2): "key2"}


def test_live_keys_this_checkout_has_are_fine() -> None:
    hosts = {"m1": (LiveKey("key2", encryption.digest(K2)), LiveKey("key1", encryption.digest(K1))), "m2": None}
    assert encryption.check_problems(True, "secretbox", LOCAL, hosts, PATHS.encryption_config, "pki") == []


def test_a_live_key_this_checkout_lacks_is_refused_by_hash() -> None:
    hosts = {"m1": (LiveKey("key1", encryption.digest(K3)),), "m2": (LiveKey("key1", encryption.digest(K1)),)}
    lines = encryption.check_problems(True, "secretbox", LOCAL, hosts, PATHS.encryption_config, "pki")
    assert lines == [f"m1: {PATHS.encryption_config} key 'key1' (sha256 of its secret {encryption.digest(K3)}): "
                     "no key in pki/encryption has it"]
    text = encryption.refusal(lines, "pki")
    assert "no host was changed" in text and "pki/encryption" in text
    assert base64.b64encode(K3).decode() not in text


def test_turning_encryption_off_over_a_live_config_is_refused() -> None:
    hosts = {"m1": (LiveKey("key1", encryption.digest(K1)),), "m2": None}
    lines = encryption.check_problems(False, "secretbox", LOCAL, hosts, PATHS.encryption_config, "pki")
    assert len(lines) == 1 and lines[0].startswith("m1: ") and "secrets_encryption is false" in lines[0]
    assert encryption.check_problems(False, "secretbox", LOCAL, {"m1": None}, PATHS.encryption_config, "pki") == []


def test_changing_the_provider_over_a_live_config_is_refused() -> None:
    hosts = {"m1": (LiveKey("key1", encryption.digest(K1), "secretbox"),)}
    (line,) = encryption.check_problems(True, "aescbc", LOCAL, hosts, PATHS.encryption_config, "pki")
    assert line.startswith("m1: ") and "secretbox key" in line and "secrets_encryption_provider aescbc" in line


def _plan_masters(s, facts_by_master: dict) -> list:
    """``context.masters_facts`` as pyinfra calls it: one planning greenlet per master."""
    inventory = SimpleNamespace()
    active = [SimpleNamespace(name=m) for m in facts_by_master]
    state = SimpleNamespace(inventory=SimpleNamespace(get_active_hosts=lambda: active, get_host=lambda n: n),
                            is_host_in_limit=lambda h: True)  # no --limit
    hosts = [SimpleNamespace(name=name, state=state) for name in facts_by_master]
    jobs = [gevent.spawn(context.masters_facts, s[h.name], h, inventory, facts_by_master[h.name]) for h in hosts]
    gevent.joinall(jobs, timeout=10)
    for job in jobs:
        if job.exception is not None:
            raise job.exception
    return [job.value for job in jobs]


def _live(*keys) -> HostFacts:
    return HostFacts(secret_digests={PATHS.encryption_config: tuple(LiveKey(n, encryption.digest(k)) for n, k in keys)})


def test_a_fresh_checkout_is_refused_before_it_makes_a_key(inv: Inv) -> None:
    s = inv.load()
    with pytest.raises(PyinfraError) as exc:
        _plan_masters(s, {"m1": _live(("key1", K1)), "m2": _live(("key1", K1))})
    text = str(exc.value)
    assert "m1: /etc/kubernetes/encryption-config.yaml key 'key1'" in text and "m2: " in text
    assert encryption.digest(K1) in text and base64.b64encode(K1).decode() not in text
    assert not os.path.exists(s["m1"].cluster.pki_dir + "/encryption")  # nothing made locally


def test_the_checkout_that_made_the_keys_goes_on(inv: Inv) -> None:
    s = inv.load()
    keys = dict(encryption.ensure_keys(s["m1"].cluster.pki_dir, ("key1",)))
    peers = _plan_masters(s, {"m1": _live(("key1", keys["key1"])), "m2": HostFacts()})
    assert set(peers[-1]) == {"m1", "m2"}


# ------------------------------------------------------------------ rotation warnings


D = encryption.digest


def test_no_warning_along_the_documented_rotation() -> None:
    for names, live in (
        (("key1", "key2"), (LiveKey("key1", D(K1)),)),  # (a) key2 added second
        (("key2", "key1"), (LiveKey("key1", D(K1)), LiveKey("key2", D(K2)))),  # (b) key2 first
        (("key2",), (LiveKey("key2", D(K2)), LiveKey("key1", D(K1)))),  # (d) key1 removed
    ):
        assert encryption.rotation_warnings("m1", names, {"m1": live, "m2": live}, serving=True) == []


def test_warns_when_the_write_key_is_new_to_a_serving_master() -> None:
    live = (LiveKey("key1", D(K1)),)
    warnings = encryption.rotation_warnings("m1", ("key2", "key1"), {"m1": live, "m2": live}, serving=True)
    assert len(warnings) == 1 and warnings[0].startswith("m1: secrets_encryption_keys: key2 ")
    assert "m1, m2 cannot read it yet" in warnings[0]
    # Turning encryption on for a serving cluster: the same window, said the same way.
    assert encryption.rotation_warnings("m1", ("key1",), {"m1": None, "m2": None}, serving=True)
    # A first install, or one master: nothing to warn about.
    assert encryption.rotation_warnings("m1", ("key1",), {"m1": None, "m2": None}, serving=False) == []
    assert encryption.rotation_warnings("m1", ("key2",), {"m1": live}, serving=True) == []


def test_warns_when_a_key_goes_while_the_write_key_changes() -> None:
    live = (LiveKey("key1", D(K1)), LiveKey("key2", D(K2)))
    warnings = encryption.rotation_warnings("m1", ("key2",), {"m1": live, "m2": live}, serving=True)
    assert len(warnings) == 1 and "key1 removed in the same run" in warnings[0]
