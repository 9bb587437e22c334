"""The testbed's central database: a real private MariaDB, the guide's databases and users, and
each node's master-datasources.xml and registry.xml pointing at it."""

from __future__ import annotations

import os
import stat
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import psutil
import pytest

from eicore import node_control
from eicore.cluster import load_cluster
from eicore.node_control import NodeStartError
from eicore.transport import LocalTransport, local_pid_alive
from loadtests.collectors.jmx import JmxConnection, ensure_jvm
from testbed import database, manager
from tests.conftest import start_testbed
from tests.sshd import free_port


def client(db, user: str, password: str, sql: str, socket: Path | None = None):
    """The `mariadb` client over TCP (or the socket), as `user` with `password`."""
    where = [f"--socket={socket}"] if socket else [f"--host={db.host}", f"--port={db.port}"]
    return subprocess.run(
        ["mariadb", "--no-defaults", *where, f"--user={user}", "--batch", "--skip-column-names",
         "-e", sql], env={**os.environ, "MYSQL_PWD": password}, capture_output=True,
        text=True, timeout=30)


def test_the_database_answers_each_user_with_its_generated_password(testbed):
    db = testbed.database
    assert db is not None and db.host == "127.0.0.1"
    assert {(d.name, d.database, d.node) for d in db.datasources} == {
        ("WSO2_SHARED_REG_DB", "REGISTRY_DB", None), ("WSO2_USER_DB", "WSO2_USER_DB", None),
        ("WSO2_CARBON_DB", "REGISTRY_LOCAL1", "node1"),
        ("WSO2_CARBON_DB", "REGISTRY_LOCAL2", "node2")}
    assert len({d.user for d in db.datasources}) == len(db.datasources)  # one user per purpose
    for ds in db.datasources:
        r = client(db, ds.user, ds.password(), "SHOW DATABASES")
        assert r.returncode == 0, r.stderr
        assert ds.database in r.stdout.split()
        assert not {"REGISTRY_DB", "WSO2_USER_DB"} - {ds.database} & set(r.stdout.split())
    ds = db.datasources[0]
    sock = database.socket_path(testbed.testbed_dir)
    assert client(db, ds.user, ds.password(), "SELECT 1", socket=sock).stdout.strip() == "1"


def test_a_wrong_password_is_refused(testbed):
    db = testbed.database
    ds = db.datasources[0]
    r = client(db, ds.user, ds.password() + "x", "SELECT 1")
    assert r.returncode != 0 and "Access denied" in r.stderr


def test_secrets_are_0600_files_inside_the_testbed_and_never_in_cluster_toml(testbed):
    folder = Path(testbed.testbed_dir) / "database"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    toml = Path(testbed.source).read_text()
    for ds in testbed.database.datasources:
        path = Path(ds.password_file)
        assert path.parent == folder and stat.S_IMODE(path.stat().st_mode) == 0o600
        assert ds.password() not in toml
    pid = database.running_pid(testbed.testbed_dir)
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert f"--datadir={folder / 'data'}".encode() in cmdline and b"--no-defaults" in cmdline


def _datasources(node) -> dict[str, dict[str, str]]:
    root = ET.parse(node.master_datasources).getroot()
    return {ds.findtext("name"): {c.tag: (c.text or "") for c in
                                  ds.find("definition/configuration")}
            for ds in root.iter("datasource")}


def test_each_node_declares_the_shared_registry_and_its_own_local_one(testbed):
    db = testbed.database
    seen = [_datasources(n) for n in testbed.nodes]
    for node, sources in zip(testbed.nodes, seen, strict=True):
        assert stat.S_IMODE(os.stat(node.master_datasources).st_mode) == 0o600  # passwords
        assert list(sources) == ["WSO2_SHARED_REG_DB", "WSO2_CARBON_DB", "WSO2_USER_DB"]
        assert sources["WSO2_SHARED_REG_DB"]["url"] == \
            f"jdbc:mysql://{db.host}:{db.port}/REGISTRY_DB"
        for conf in sources.values():
            assert {"maxActive", "maxWait", "minIdle", "testOnBorrow", "validationQuery",
                    "validationInterval"} <= set(conf)
        registry = ET.parse(node.registry_xml).getroot()
        assert registry.find("dbConfig[@name='sharedregistry']/dataSource").text == \
            "jdbc/WSO2SharedDB"
        assert registry.find("remoteInstance/dbConfig").text == "sharedregistry"
        assert [m.get("path") for m in registry.iter("mount")] == \
            ["/_system/config", "/_system/governance"]
    local = [s["WSO2_CARBON_DB"]["url"] for s in seen]
    assert local[0].endswith("/REGISTRY_LOCAL1") and local[1].endswith("/REGISTRY_LOCAL2")
    # the password a node's file holds is the one the database takes
    conf = seen[1]["WSO2_CARBON_DB"]
    assert client(db, conf["username"], conf["password"], "SELECT 1").returncode == 0


def test_down_stops_it_by_pid_up_starts_it_again_and_purge_removes_it(fresh_testbed_dir):
    cluster = start_testbed(fresh_testbed_dir, nodes=1)
    pid = database.running_pid(fresh_testbed_dir)
    assert pid is not None
    manager.down(fresh_testbed_dir, progress=lambda m: None)
    assert not local_pid_alive(pid) and database.running_pid(fresh_testbed_dir) is None
    assert (fresh_testbed_dir / "database" / "data").is_dir()  # data kept without --purge
    # With the database stopped, a node does not start, and says why in one line ...
    node, t = cluster.nodes[0], LocalTransport()
    with pytest.raises(NodeStartError, match=r"datasource WSO2_SHARED_REG_DB \(jdbc:mysql://"
                       rf"127\.0\.0\.1:{cluster.database.port}/REGISTRY_DB\)"):
        node_control.start_node(t, node, timeout=30)
    node_control.stop_node(t, node)
    # ... and without datasources (a user's own layout) it needs no database.
    conf = Path(node.master_datasources)
    conf.rename(conf.with_suffix(".away"))
    node_control.start_node(t, node, timeout=30)
    assert "No datasources configured" in last_line(node, "No datasources")
    node_control.stop_node(t, node)
    conf.with_suffix(".away").rename(conf)
    manager.up(fresh_testbed_dir, progress=lambda m: None)
    assert "3 datasource(s) open" in last_line(node, "datasource(s) open")
    ds = cluster.database.datasources[0]
    assert client(cluster.database, ds.user, ds.password(), "SELECT 1").returncode == 0
    pid = database.running_pid(fresh_testbed_dir)
    manager.down(fresh_testbed_dir, purge=True, progress=lambda m: None)
    assert not local_pid_alive(pid) and not fresh_testbed_dir.exists()


def test_a_password_in_cluster_toml_is_refused(testbed, tmp_path):
    text = Path(testbed.source).read_text().replace(
        'password_file = ', 'password = "x"\npassword_file = ', 1)
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(Exception, match=r"datasources\[0\]\.password: cluster.toml does not"):
        load_cluster(tmp_path / "c.toml")


# ---------------------------------------------------------------- the nodes' pools and registry


def last_line(node, needle: str) -> str:
    """The node log's last line holding `needle` (the latest start's)."""
    lines = [ln for ln in Path(node.log_file).read_text().splitlines() if needle in ln]
    assert lines, f"{node.name} never logged {needle!r}"
    return lines[-1]


def db_connections(node, db) -> int:
    """TCP connections the node's JVM holds to the database."""
    pid = node_control.read_pid(LocalTransport(), node)
    return sum(1 for c in psutil.Process(pid).net_connections("tcp")
               if c.raddr and c.raddr.port == db.port)


def test_both_nodes_mount_the_same_shared_registry_through_open_pools(testbed):
    db = testbed.database
    ids = {row.split("\t")[0]: row.split("\t")[1] for row in database.admin_sql(
        testbed.testbed_dir, "SELECT REG_PATH_VALUE, REG_PATH_ID FROM REGISTRY_DB.REG_PATH;"
    ).splitlines()}
    shared_url = f"jdbc:mysql://{db.host}:{db.port}/REGISTRY_DB"
    for i, node in enumerate(testbed.nodes, start=1):
        for path in ("/_system/config", "/_system/governance"):
            line = last_line(node, f"Mounted {path} from")
            assert f"datasource WSO2_SHARED_REG_DB, {shared_url}, path id {ids[path]})" in line
        local = last_line(node, "Local registry:")
        assert local.endswith(f"/REGISTRY_LOCAL{i})")  # each its own local registry
        assert "3 datasource(s) open" in last_line(node, "datasource(s) open")
        assert db_connections(node, db) >= 3  # real pools, one per datasource at least
    assert not any(ds.password() in Path(n.log_file).read_text()
                   for n in testbed.nodes for ds in db.datasources)


def test_a_node_refuses_to_start_when_the_shared_registry_does_not_answer(testbed):
    node, db = testbed.nodes[-1], testbed.database
    t = LocalTransport()
    dead = free_port()  # nothing listens there
    conf = Path(node.master_datasources)
    original = conf.read_bytes()
    node_control.stop_node(t, node)
    try:
        conf.write_bytes(original.replace(f":{db.port}/REGISTRY_DB<".encode(),
                                          f":{dead}/REGISTRY_DB<".encode()))
        began = time.monotonic()
        with pytest.raises(NodeStartError) as err:
            node_control.start_node(t, node, timeout=30)
        assert time.monotonic() - began < 15  # at once, not after the readiness timeout
        text = str(err.value)
        assert "ERROR {" in text and "shared registry" in text
        assert f"datasource WSO2_SHARED_REG_DB (jdbc:mysql://{db.host}:{dead}/REGISTRY_DB)" in text
        assert "Connection refused" in text and "INFO" not in text  # the reason, one line
        assert not any(ds.password() in text for ds in db.datasources)
        node_control.stop_node(t, node)  # the JVM halts on its own; wait until it is gone
        assert not node_control.node_state(t, node).alive
    finally:
        conf.write_bytes(original)
        node_control.start_node(t, node)


def test_pool_mbeans_name_each_datasource(testbed):
    ensure_jvm()
    node = testbed.nodes[0]
    with JmxConnection.for_node(node, timeout_s=5) as conn:
        names = sorted(conn.query_names("tomcat.jdbc:type=ConnectionPool,*"))
        assert names == [f"tomcat.jdbc:type=ConnectionPool,name={n}" for n in
                         ("WSO2_CARBON_DB", "WSO2_SHARED_REG_DB", "WSO2_USER_DB")]
        values = conn.attributes(names[1], ["MaxActive", "MaxWait", "Size", "Active", "Password"])
    assert values["MaxActive"] == 50 and values["MaxWait"] == 60000  # the file's settings
    assert all(ds.password() not in str(values["Password"]) for ds in testbed.database.datasources)
    assert values["Size"] >= 1 and values["Active"] == 0
