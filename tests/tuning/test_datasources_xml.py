"""`ds.<datasource>.<property>` on the session testbed: applied with a node restart, restored
byte for byte; `tune show` and the run snapshot say a password is set, never what it is. (The
editor's byte guarantees are in the shared suite, tests/tuning/test_editor_contract.py.)"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from eiperf.commands.tune_cmd import settings_table
from tuning.apply import apply_settings
from tuning.changes import edit_file
from tuning.datasources_xml import read_pools, read_secrets
from tuning.edit import EditorError
from tuning.journal import Journal
from tuning.params import ParameterError, ParamSet, Target
from tuning.restore import restore_cluster
from tuning.settings import cluster_settings

FIXTURES = Path(__file__).parent / "fixtures"


def node_files(cluster) -> dict[str, str]:
    """sha256 of every node's master-datasources.xml and registry.xml."""
    return {p: hashlib.sha256(Path(p).read_bytes()).hexdigest()
            for n in cluster.nodes for p in (n.master_datasources, n.registry_xml)}


def test_apply_restarts_the_nodes_and_restore_gives_the_bytes_back(testbed, tmp_path):
    before = node_files(testbed)
    journal = Journal.begin(tmp_path / "results", Path(testbed.source), "test")
    params = ParamSet({"ds.WSO2_CARBON_DB.max_active": 2, "ds.WSO2_SHARED_REG_DB.max_wait": 100})
    assert params.needs_node_restart and not params.needs_nginx_reload
    try:
        outcome = apply_settings(testbed, params, journal, progress=lambda m: None)
        assert outcome.restarted == [n.name for n in testbed.nodes]
        for node in testbed.nodes:
            pools = read_pools(Path(node.master_datasources).read_text())
            assert pools["ds.WSO2_CARBON_DB.max_active"] == "2"
            assert pools["ds.WSO2_SHARED_REG_DB.max_wait"] == "100"
            assert pools["ds.WSO2_USER_DB.max_active"] == "50"  # other datasources untouched
        assert node_files(testbed) != before
    finally:
        restore_cluster(testbed, journal, progress=lambda m: None)
        journal.close()
    assert node_files(testbed) == before


def test_show_and_snapshot_say_a_password_is_set_never_what_it_is(testbed):
    settings = cluster_settings(testbed)
    shown = "\n".join(settings_table(settings))
    snapshot = json.dumps(settings)
    node1 = settings["nodes"]["node1"]
    assert node1["ds.WSO2_CARBON_DB.max_active"] == "50"
    assert node1["ds.WSO2_SHARED_REG_DB.password"] == "set"
    assert "ds.WSO2_CARBON_DB.max_active" in shown
    for ds in testbed.database.datasources:
        assert ds.password() not in snapshot and ds.password() not in shown


def test_secure_vault_passwords_are_told_apart():
    text = (FIXTURES / "master-datasources-guide.xml").read_text()
    assert read_secrets(text) == {"ds.WSO2_SHARED_REG_DB.password": "secure vault",
                                  "ds.WSO2_CARBON_DB.password": "set"}


def test_a_commented_out_datasource_is_neither_read_nor_edited():
    text = (FIXTURES / "master-datasources-ei660.xml").read_text()
    assert not any("SAMPLE_DATA_SOURCE" in k for k in read_pools(text))
    with pytest.raises(EditorError, match="no datasource named SAMPLE_DATA_SOURCE"):
        edit_file("master-datasources.xml", text,
                  ParamSet({"ds.SAMPLE_DATA_SOURCE.max_active": 5}))


def test_tune_apply_file_knows_the_kind_and_notes_min_idle_above_max_active():
    text = (FIXTURES / "master-datasources-testbed.xml").read_text()
    result = edit_file("master-datasources.xml", text,
                       ParamSet({"ds.WSO2_CARBON_DB.max_active": 2}))
    assert result.kind is Target.DATASOURCES
    assert any("minIdle 5 is above maxActive 2" in n for n in result.notes)


@pytest.mark.parametrize(("name", "needle"), [
    ("ds.WSO2_CARBON_DB.password", "password is not a tuning parameter"),
    ("ds.WSO2_CARBON_DB.maxActive", "did you mean ds.WSO2_CARBON_DB.max_active"),
    ("ds.max_active", "name a datasource and a property"),
])
def test_bad_names_are_refused_in_one_line(name, needle):
    with pytest.raises(ParameterError, match=needle):
        ParamSet({name: "1"})
