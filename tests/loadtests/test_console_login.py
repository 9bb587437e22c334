"""The `console` scenario signs in against the user store database (WSO2_USER_DB) once per user
and keeps its session; a wrong password is refused and a visitor without a session gets the
sign-in form (the session testbed, runs of a few seconds)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

import pandas as pd

from eicore.lbclient import LbClient
from tests.loadtests.conftest import ROOT

USERS = 4
# loadtests.scenarios.CONSOLE_LOGIN (not imported: importing Locust patches this process)
CONSOLE_LOGIN = "/carbon/admin/login_action.jsp"


def signed_in_lines(node) -> int:
    return Path(node.log_file).read_text().count("'admin@carbon.super [-1234]' logged in at")


def test_console_users_sign_in_once_and_keep_their_session(testbed, tmp_path):
    console_node = testbed.nodes[0]  # the ui vhost's node
    before = signed_in_lines(console_node)
    out = tmp_path / "parts"
    r = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "locustfile.py"),
         "--headless", "-u", str(USERS), "-r", str(USERS), "-t", "3s", "--cluster",
         testbed.source, "--eiperf-out", str(out), "--weights", "console=1", "--only-summary"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = pd.concat(pd.read_parquet(p) for p in out.glob("requests-*.parquet"))
    assert rows.ok.all(), rows[~rows.ok].error.unique()  # every page came with the session
    by_name = rows.groupby("name").size()
    assert by_name["console_login"] == USERS and by_name["console"] >= 2 * USERS  # pages after it
    assert signed_in_lines(console_node) - before == USERS  # one sign-in per user, checked by the node


def test_a_wrong_password_is_refused_and_a_visitor_gets_the_sign_in_form(testbed):
    node = testbed.nodes[0]
    log = Path(node.log_file)
    size = log.stat().st_size
    form = urlencode({"username": "admin", "password": "not-the-password"}).encode()
    with LbClient(testbed) as client:
        refused = client.request("console", "POST", CONSOLE_LOGIN, form,
                                 content_type="application/x-www-form-urlencoded")
        page = client.request("console", "GET", "/carbon/")
    assert refused.status == 302
    assert "Failed Administrator login attempt 'admin[-1234]'" in log.read_text()[size:]
    assert page.status == 200 and b'<form id="login"' in page.body
    assert b"Signed-in as" not in page.body and b"Proxy services" not in page.body
