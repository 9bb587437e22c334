"""The cluster model: cluster.toml round trips and one clear error per bad key."""

from __future__ import annotations

from dataclasses import replace

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


# ---------------------------------------------------------------- JMX credentials

JMX_ENV_NODE = GOOD.replace('port_offset = 1\n', 'port_offset = 1\njmx_user = "admin"\n'
                            'jmx_password_env = "EIPERF_TEST_JMX_PW"\n')


def jmx_file_node(pw_file) -> str:
    return GOOD.replace('port_offset = 1\n', f'port_offset = 1\njmx_user = "monitor"\n'
                        f'jmx_password_file = "{pw_file}"\n')


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.replace('jmx_user = "admin"', 'jmx_user = "admin"\njmx_password = "s3cret"'),
         "nodes[0].jmx_password: cluster.toml does not hold passwords; name an environment "
         "variable with jmx_password_env or a 0600 file with jmx_password_file"),
        (lambda s: s.replace('jmx_user = "admin"\n', ""), "names a JMX password but no jmx_user"),
        (lambda s: s.replace('jmx_password_env = "EIPERF_TEST_JMX_PW"\n', ""),
         "nodes[0].jmx_user needs a password source"),
        (lambda s: s.replace('jmx_user = "admin"', 'jmx_user = "admin"\njmx_password_file = "/p"'),
         "sets both jmx_password_env and jmx_password_file; keep one"),
        (lambda s: s.replace('jmx_password_env = "EIPERF_TEST_JMX_PW"',
                             'jmx_password_file = "secrets/jmx.pw"'),
         "jmx_password_file 'secrets/jmx.pw' must be an absolute path"),
        (lambda s: s.replace('jmx_user = "admin"', 'jmx_user = 7'),
         "nodes[0].jmx_user must be a string"),
    ],
)
def test_bad_jmx_credential_keys_get_one_clear_line(tmp_path, edit, message):
    p = write(tmp_path, edit(JMX_ENV_NODE))
    with pytest.raises(ConfigError) as err:
        load_cluster(p)
    text = str(err.value)
    assert message in text and str(p) in text and "\n" not in text
    assert "s3cret" not in text


def test_jmx_password_from_the_environment_is_read_at_connect_time(tmp_path, monkeypatch):
    monkeypatch.delenv("EIPERF_TEST_JMX_PW", raising=False)
    c = load_cluster(write(tmp_path, JMX_ENV_NODE))  # loading needs no password yet
    ei1 = c.node("ei1")
    assert c.node("ei2").jmx_credentials() is None  # no jmx_user: no credentials
    with pytest.raises(ConfigError) as err:
        ei1.jmx_credentials()
    assert str(err.value) == ("ei1: JMX user 'admin': environment variable EIPERF_TEST_JMX_PW "
                              "is not set; export the password in it before running eiperf")
    monkeypatch.setenv("EIPERF_TEST_JMX_PW", "")
    with pytest.raises(ConfigError, match="EIPERF_TEST_JMX_PW is empty"):
        ei1.jmx_credentials()
    monkeypatch.setenv("EIPERF_TEST_JMX_PW", "pa ss#word")
    assert ei1.jmx_credentials() == ("admin", "pa ss#word")
    assert ei1.jmx_password_source == "environment variable EIPERF_TEST_JMX_PW (jmx_password_env)"


def test_jmx_password_file_must_be_readable_by_its_owner_only(tmp_path):
    pw_file = tmp_path / "jmx.pw"
    node = load_cluster(write(tmp_path, jmx_file_node(pw_file))).node("ei1")
    with pytest.raises(ConfigError, match=f"ei1: JMX user 'monitor': password file {pw_file} "
                                          "does not exist"):
        node.jmx_credentials()
    pw_file.write_text("s3cret-Pw\nsecond line is ignored\n")
    for mode in (0o640, 0o604, 0o620, 0o644):
        pw_file.chmod(mode)
        with pytest.raises(ConfigError) as err:
            node.jmx_credentials()
        assert str(err.value) == (f"ei1: JMX user 'monitor': password file {pw_file} has mode "
                                  f"{mode:04o}; others than its owner may read it: "
                                  f"chmod 600 {pw_file}")
    for mode in (0o600, 0o400):
        pw_file.chmod(mode)
        assert node.jmx_credentials() == ("monitor", "s3cret-Pw")
    # a symlink to it (a mounted secret) is judged by the file it points to
    link = tmp_path / "link.pw"
    link.symlink_to(pw_file)
    linked = replace(node, jmx_password_file=str(link))
    assert linked.jmx_credentials() == ("monitor", "s3cret-Pw")
    pw_file.chmod(0o644)
    with pytest.raises(ConfigError, match="has mode 0644"):
        linked.jmx_credentials()
    pw_file.chmod(0o600)
    pw_file.write_text("\n")
    with pytest.raises(ConfigError, match="is empty; put the password on its first line"):
        node.jmx_credentials()


def test_the_model_and_its_snapshot_hold_no_password(tmp_path, monkeypatch):
    monkeypatch.setenv("EIPERF_TEST_JMX_PW", "s3cret-in-env")
    c = load_cluster(write(tmp_path, JMX_ENV_NODE))
    assert c.node("ei1").jmx_credentials() == ("admin", "s3cret-in-env")
    text = dump_cluster(c)
    assert 'jmx_password_env = "EIPERF_TEST_JMX_PW"' in text and 'jmx_user = "admin"' in text
    assert "s3cret" not in text and "s3cret" not in repr(c)
    out = tmp_path / "again.toml"
    save_cluster(c, out)
    assert load_cluster(out) == c


GENERATORS = GOOD + """
[[generators]]
name = "load1"
host = "10.0.0.20"
ssh_user = "load"
ssh_key = "~/.ssh/id_ed25519"
python = "/opt/eiperf/.venv/bin/python"
master_host = "10.0.0.2"

[[generators]]
host = "127.0.0.1"
transport = "local"
workers = 2
"""


def test_generators_load_validated_and_round_trip(tmp_path):
    c = load_cluster(write(tmp_path, GENERATORS))
    load1, here = c.generators
    assert (load1.name, load1.transport, load1.python, load1.master_host, load1.workers) == (
        "load1", "ssh", "/opt/eiperf/.venv/bin/python", "10.0.0.2", None)
    assert (here.name, here.transport, here.python, here.workers) == (
        "127.0.0.1", "local", None, 2)  # the name defaults to the host
    out = tmp_path / "again.toml"
    save_cluster(c, out)
    assert load_cluster(out) == c
    assert "generators" not in dump_cluster(load_cluster(write(tmp_path, GOOD)))


def test_two_generators_of_one_name_are_refused(tmp_path):
    text = GOOD + '\n[[generators]]\nname = "g"\nhost = "a"\ntransport = "local"\n' * 2
    with pytest.raises(ConfigError, match="two generators are named 'g'"):
        load_cluster(write(tmp_path, text))
