"""The testbed's JMX authentication as files (nothing started): the password and access files
(the JDK agent's formats) in each EI_HOME, which integrator.sh hands to the node's own JMX
connector, the client's 0600 copy, and a cluster.toml that points at it.

A testbed started with JMX authentication is exercised in tests/loadtests/test_jmx_auth.py.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from eicore.cluster import load_cluster
from eicore.errors import EiperfError
from testbed import manager
from testbed.layout import (
    JMX_ACCESS_FILE,
    JMX_PASSWORD_FILE,
    TestbedPlan,
    render_jmx_auth,
    render_testbed,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def plan(dir: Path, jmx_auth: bool, nodes: int = 2) -> TestbedPlan:
    # ports are only written into files here; nothing binds them
    return TestbedPlan(dir=dir, nodes=nodes, port_base=31000, offset_base=5000,
                       nginx_bin="nginx", jmx_auth=jmx_auth)


def test_rendered_with_jmx_auth(tmp_path):
    cluster = render_testbed(plan(tmp_path / "tb", jmx_auth=True))
    client_file = tmp_path / "tb" / "jmx.password"
    assert mode(client_file) == 0o600
    password = client_file.read_text().strip()
    assert len(password) >= 20
    for node in cluster.nodes:
        home = Path(node.ei_home)
        script = (home / "bin" / "integrator.sh").read_text()
        assert f'-Deiperf.jmx.password.file="$CARBON_HOME/{JMX_PASSWORD_FILE}" \\\n' in script
        assert f'-Deiperf.jmx.access.file="$CARBON_HOME/{JMX_ACCESS_FILE}" \\\n' in script
        assert "-Djava.rmi.server.hostname=127.0.0.1 \\\n" in script  # still loopback
        assert "-Dcom.sun.management" not in script  # the node's connector, not the JDK's agent
        assert (home / JMX_PASSWORD_FILE).read_text() == f"admin {password}\n"
        assert (home / JMX_ACCESS_FILE).read_text() == "admin readonly\n"
        assert mode(home / JMX_PASSWORD_FILE) == mode(home / JMX_ACCESS_FILE) == 0o600
        assert (node.jmx_user, node.jmx_password_file) == ("admin", str(client_file))
        assert node.jmx_credentials() == ("admin", password)
    saved = Path(cluster.source).read_text()
    assert password not in saved and f'jmx_password_file = "{client_file}"' in saved
    assert load_cluster(cluster.source) == cluster


def test_rendered_without_jmx_auth_by_default(tmp_path):
    cluster = render_testbed(plan(tmp_path / "tb", jmx_auth=False, nodes=1))
    home = Path(cluster.nodes[0].ei_home)
    script = (home / "bin" / "integrator.sh").read_text()
    assert "password.file" not in script and "access.file" not in script
    assert "-Dcom.sun.management" not in script
    assert not (home / "conf" / "jmx").exists() and not (tmp_path / "tb" / "jmx.password").exists()
    assert cluster.nodes[0].jmx_credentials() is None
    assert "jmx_user" not in Path(cluster.source).read_text()


def test_each_testbed_gets_its_own_password(tmp_path):
    a = render_testbed(plan(tmp_path / "a", jmx_auth=True, nodes=1)).nodes[0].jmx_credentials()
    b = render_testbed(plan(tmp_path / "b", jmx_auth=True, nodes=1)).nodes[0].jmx_credentials()
    assert a and b and a[1] != b[1]


@pytest.mark.skipif(os.geteuid() != 0, reason="handing a file to another user needs root")
def test_jmx_files_can_be_handed_to_the_user_the_jvm_runs_as(tmp_path):
    render_jmx_auth(tmp_path, "monitor", "pw-123", owner_uid=65534)
    for name in (JMX_PASSWORD_FILE, JMX_ACCESS_FILE):
        st = (tmp_path / name).stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (65534, 0o600)
    assert (tmp_path / JMX_PASSWORD_FILE).read_text() == "monitor pw-123\n"


def test_up_refuses_to_switch_jmx_auth_on_an_existing_testbed(tmp_path):
    dir = tmp_path / "tb"
    render_testbed(plan(dir, jmx_auth=False, nodes=1))
    with pytest.raises(EiperfError) as err:
        manager.up(dir, jmx_auth=True, progress=lambda m: None)
    assert str(err.value) == (f"the testbed in {dir} was built without JMX authentication; run "
                              "'eiperf down --purge' first to build it again, or pass another --dir")
