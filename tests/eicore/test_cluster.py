"""The cluster model: cluster.toml round trips and one clear error per bad key."""

from __future__ import annotations

import pytest

from eicore.cluster import Cluster, LoadBalancer, Node, dump_cluster, load_cluster, save_cluster
from eicore.errors import ConfigError

GOOD = """
schema_version = 1
name = "prod"

[load_balancer]
http_url = "http://ei.wso2.com"
https_url = "https://ei.wso2.com"
console_url = "https://ui.ei.wso2.com"

[[nodes]]
name = "ei1"
host = "10.0.0.4"
ei_home = "/opt/ei"
port_offset = 1

[[nodes]]
name = "ei2"
host = "10.0.0.5"
ei_home = "/opt/ei"
transport = "ssh"
ssh_user = "wso2"
"""


def write(tmp_path, text):
    p = tmp_path / "cluster.toml"
    p.write_text(text)
    return p


def test_load_good_file(tmp_path):
    c = load_cluster(write(tmp_path, GOOD))
    assert [n.name for n in c.nodes] == ["ei1", "ei2"]
    ei1 = c.node("ei1")
    assert (ei1.http_port, ei1.https_port, ei1.console_port) == (8281, 8244, 9444)
    assert ei1.jmx_service_url == (
        "service:jmx:rmi://10.0.0.4:11112/jndi/rmi://10.0.0.4:10000/jmxrmi")
    assert c.node("ei2").transport == "ssh"
    assert c.load_balancer.host_name == "ei.wso2.com"


def test_round_trip(tmp_path):
    c = load_cluster(write(tmp_path, GOOD))
    out = tmp_path / "again.toml"
    save_cluster(c, out)
    again = load_cluster(out)
    assert again == c
    assert dump_cluster(again) == dump_cluster(c)


def test_upstream_addr_maps_to_node():
    lb = LoadBalancer("http://a", "https://a", "https://a")
    c = Cluster("x", lb, (Node("n1", "127.0.0.1", "/a", 10), Node("n2", "127.0.0.1", "/b", 11)))
    assert c.node_for_upstream("127.0.0.1:8290") == "n1"
    assert c.node_for_upstream("127.0.0.1:8254") == "n2"
    assert c.node_for_upstream("127.0.0.1:8290, 127.0.0.1:8291") == "n2"
    assert c.node_for_upstream(None) is None


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.replace('port_offset = 1', 'port_offset = "1"'),
         "nodes[0].port_offset must be an integer"),
        (lambda s: s.replace('http_url = "http://ei.wso2.com"\n', ""),
         "load_balancer.http_url is missing"),
        (lambda s: s.replace('transport = "ssh"', 'transport = "telnet"'),
         "nodes[1].transport is 'telnet'"),
        (lambda s: s.replace('ssh_user = "wso2"', ""), 'nodes[1].ssh_user is needed'),
        (lambda s: s.replace('name = "ei2"', 'name = "ei1"'), "two nodes are named 'ei1'"),
        (lambda s: s.replace("port_offset = 1", "port_ofset = 1"), "did you mean 'port_offset'"),
        (lambda s: s.replace("schema_version = 1", "schema_version = 9"), "schema_version 9"),
        (lambda s: s + "\n[[[", "not valid TOML"),
    ],
)
def test_bad_files_get_one_clear_line(tmp_path, edit, message):
    p = write(tmp_path, edit(GOOD))
    before = p.read_bytes()
    with pytest.raises(ConfigError) as err:
        load_cluster(p)
    text = str(err.value)
    assert message in text
    assert str(p) in text and "\n" not in text
    assert p.read_bytes() == before


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cluster file not found"):
        load_cluster(tmp_path / "nope.toml")
