"""The testbed's central database: a real private MariaDB, the guide's databases and users, and
each node's master-datasources.xml and registry.xml pointing at it."""

from __future__ import annotations

import os
import stat
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from eicore.cluster import load_cluster
from eicore.transport import local_pid_alive
from testbed import database, manager
from tests.conftest import start_testbed


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
    manager.up(fresh_testbed_dir, progress=lambda m: None)
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
