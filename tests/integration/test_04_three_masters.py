"""Nothing in the deploy assumes two masters (issue 3): the same promises with vm01-vm03.

Runs last among the deploy tests and puts the lab back to two converged masters at the end.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from cryptography import x509

import lab

from .conftest import REPO, api_ok, assert_converged, assert_no_change, deploy, holders, masters, sh, wait_for

pytestmark = pytest.mark.lab


def lab_up(n: int) -> None:
    proc = subprocess.run([sys.executable, "-m", "lab", "up", "--masters", str(n)], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def three(converged):
    lab_up(3)
    first = deploy()
    second = deploy()
    yield {"first": first, "second": second}
    lab_up(2)
    assert_converged(deploy())
    wait_for(api_ok, 30, what="the API through the VIP with two masters again")


def test_three_masters_converge_and_answer_through_the_vip(three):
    assert masters() == ("vm01", "vm02", "vm03")
    assert_converged(three["first"])
    assert "@docker/vm03" in three["first"].changed().get("Certificates (/etc/kubernetes/ssl) | Install /etc/kubernetes/ssl/apiserver.pem", [])
    wait_for(api_ok, 30, what="the API through the VIP")
    assert len(holders()) == 1
    assert lab.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"


def test_three_masters_second_run_changes_nothing(three):
    assert_no_change(three["second"])


def test_every_haproxy_balances_over_three_apiservers_and_the_cert_names_vm03(three):
    for m in masters():
        cfg = sh(m, "cat /etc/haproxy/haproxy.cfg").stdout
        assert [line.split()[1] for line in cfg.splitlines() if line.strip().startswith("server ")] == \
            ["vm01", "vm02", "vm03"]
    cert = x509.load_pem_x509_certificate((lab.PKI_DIR / "apiserver.pem").read_bytes())
    ips = {str(i) for i in cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
           .get_values_for_type(x509.IPAddress)}
    assert lab.MASTERS["vm03"] in ips


def test_three_masters_fail_over_when_haproxy_dies(three):
    holder = wait_for(lambda: (h := holders()) and len(h) == 1 and h[0], 20, what="one holder")
    sh(holder, "systemctl stop haproxy")
    try:
        wait_for(lambda: (h := holders()) and len(h) == 1 and h[0] != holder and api_ok(), 10,
                 what="failover among three masters")
    finally:
        sh(holder, "systemctl start haproxy")


def test_three_masters_a_broken_binary_is_rolled_back_on_the_first_and_the_others_are_untouched(three, tmp_path):
    """Issue 8 (c): the roll stops at the first master with three, zero failed calls through the VIP."""
    from .test_07_never_worse import _broken_binary, roll_back_and_stop

    result = roll_back_and_stop(tmp_path, _broken_binary(tmp_path), "broken build: exits at once")
    assert len(masters()) == 3 and result["first"] in masters()
    assert_no_change(deploy())
