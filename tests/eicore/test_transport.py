"""The NodeTransport contract, run against LocalTransport and SSHTransport (a real sshd).

Both transports reach this same machine, so every effect is checked here directly: the files
with os.stat, the processes with our own Popen handles.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest

from eicore.transport import CommandResult, LocalTransport, NodeTransport, TransportError
from eicore.transport.ssh import SSHTransport


@pytest.fixture(params=["local", "ssh"])
def transport(request) -> NodeTransport:
    if request.param == "local":
        yield LocalTransport()
    else:
        yield request.getfixturevalue("ssh_transport")


# ---------------------------------------------------------------- files


def test_write_then_read_bytes_roundtrip(transport, tmp_path):
    path = str(tmp_path / "a.bin")
    data = bytes(range(256)) * 50 + b"\r\n\x00end"
    transport.write_bytes(path, data)
    assert transport.read_bytes(path) == data
    assert (tmp_path / "a.bin").read_bytes() == data


def test_read_text_decodes_utf8(transport, tmp_path):
    (tmp_path / "t.txt").write_bytes("héllo wörld\n".encode())
    assert transport.read_text(str(tmp_path / "t.txt")) == "héllo wörld\n"


def test_read_bytes_of_missing_file_raises_file_not_found(transport, tmp_path):
    with pytest.raises(FileNotFoundError):
        transport.read_bytes(str(tmp_path / "missing"))


def test_write_replaces_by_rename_and_leaves_no_temp_file(transport, tmp_path):
    target = tmp_path / "integrator.sh"
    target.write_bytes(b"old\n")
    with open(target, "rb") as reader:  # holds the old inode open, as a running reader would
        before = os.stat(target).st_ino
        transport.write_bytes(str(target), b"new\n")
        assert reader.read() == b"old\n"  # an in-place write would show the new bytes here
    assert os.stat(target).st_ino != before
    assert target.read_bytes() == b"new\n"
    assert sorted(os.listdir(tmp_path)) == ["integrator.sh"]


def test_write_keeps_the_mode_of_the_file_it_replaces(transport, tmp_path):
    target = tmp_path / "integrator.sh"
    target.write_bytes(b"#!/bin/sh\n")
    os.chmod(target, 0o750)
    transport.write_bytes(str(target), b"#!/bin/sh\necho new\n")
    assert os.stat(target).st_mode & 0o7777 == 0o750


def test_write_with_mode_sets_it_and_new_files_get_0644(transport, tmp_path):
    transport.write_bytes(str(tmp_path / "key"), b"secret", mode=0o600)
    assert os.stat(tmp_path / "key").st_mode & 0o7777 == 0o600
    transport.write_bytes(str(tmp_path / "plain"), b"x")
    assert os.stat(tmp_path / "plain").st_mode & 0o7777 == 0o644


def test_write_creates_missing_parent_folders(transport, tmp_path):
    path = tmp_path / "a" / "b" / "c.xml"
    transport.write_bytes(str(path), b"<x/>")
    assert path.read_bytes() == b"<x/>"


def test_failed_write_leaves_the_target_and_no_temp_file(transport, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "f").write_bytes(b"kept")
    os.chmod(folder, 0o555)
    try:
        if os.geteuid() == 0:  # root ignores folder modes: make the target a folder instead
            os.chmod(folder, 0o755)
            (folder / "d").mkdir()
            (folder / "d" / "inside").write_bytes(b"x")
            with pytest.raises((OSError, TransportError)):
                transport.write_bytes(str(folder / "d"), b"new")
            assert (folder / "d" / "inside").read_bytes() == b"x"
        else:
            with pytest.raises((OSError, TransportError)):
                transport.write_bytes(str(folder / "f"), b"new")
    finally:
        os.chmod(folder, 0o755)
    assert (folder / "f").read_bytes() == b"kept"
    assert not [n for n in os.listdir(folder) if n.endswith(".tmp")]


def _vhost_link(tmp_path):
    """nginx's layout: sites-enabled/ei.conf -> ../sites-available/ei.conf (a relative link)."""
    available, enabled = tmp_path / "sites-available", tmp_path / "sites-enabled"
    available.mkdir()
    enabled.mkdir()
    target = available / "ei.conf"
    target.write_bytes(b"server { listen 80; }\n")
    os.chmod(target, 0o640)
    link = enabled / "ei.conf"
    os.symlink("../sites-available/ei.conf", link)
    return link, target


def test_write_through_a_symlink_replaces_its_target_and_keeps_the_link(transport, tmp_path):
    link, target = _vhost_link(tmp_path)
    with open(target, "rb") as reader:  # the old target stays readable: replaced by rename
        transport.write_bytes(str(link), b"server { listen 8080; }\n")
        assert reader.read() == b"server { listen 80; }\n"
    assert os.readlink(link) == "../sites-available/ei.conf"  # still the same link
    assert target.read_bytes() == b"server { listen 8080; }\n"
    assert os.stat(target).st_mode & 0o7777 == 0o640
    assert transport.read_bytes(str(link)) == b"server { listen 8080; }\n"
    # the temp file went to the target's folder and is gone; nothing new beside the link
    assert sorted(os.listdir(link.parent)) == ["ei.conf"]
    assert sorted(os.listdir(target.parent)) == ["ei.conf"]


def test_write_through_a_chain_of_links_and_a_dangling_link(transport, tmp_path):
    link, target = _vhost_link(tmp_path)
    outer = tmp_path / "conf.d-ei.conf"
    os.symlink(str(link), outer)  # absolute link -> relative link -> file
    transport.write_bytes(str(outer), b"chain\n")
    assert os.path.islink(outer) and os.path.islink(link)
    assert target.read_bytes() == b"chain\n"
    dangling = tmp_path / "sites-enabled" / "new.conf"
    os.symlink("../sites-available/new.conf", dangling)
    transport.write_bytes(str(dangling), b"new\n")
    assert os.path.islink(dangling)
    assert (tmp_path / "sites-available" / "new.conf").read_bytes() == b"new\n"


def test_write_keeps_the_owner_of_the_file_it_replaces(transport, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("only root can give a file to another user")
    link, target = _vhost_link(tmp_path)
    os.chown(target, 65534, 65534)
    transport.write_bytes(str(link), b"owned\n")
    st = os.stat(target)
    assert (st.st_uid, st.st_gid) == (65534, 65534) and st.st_mode & 0o7777 == 0o640


def test_readlink_symlink_and_mode(transport, tmp_path):
    link, target = _vhost_link(tmp_path)
    assert transport.readlink(str(link)) == "../sites-available/ei.conf"
    assert transport.readlink(str(target)) is None
    assert transport.readlink(str(tmp_path / "missing")) is None
    assert transport.mode(str(link)) == 0o640 == transport.mode(str(target))
    with pytest.raises(FileNotFoundError):
        transport.mode(str(tmp_path / "missing"))
    # a link replaced by a regular file (what an editor that ignores links leaves) comes back
    link.unlink()
    link.write_bytes(b"a copy\n")
    transport.symlink("../sites-available/ei.conf", str(link))
    assert os.readlink(link) == "../sites-available/ei.conf"
    transport.symlink("../sites-available/other.conf", str(link))  # a link over a link
    assert os.readlink(link) == "../sites-available/other.conf"
    transport.symlink("/etc/hostname", str(tmp_path / "new" / "dir" / "l"))
    assert os.readlink(tmp_path / "new" / "dir" / "l") == "/etc/hostname"
    assert not [n for n in os.listdir(link.parent) if n.startswith(".")]
    transport.remove(str(link))  # the link goes, not its target
    assert not os.path.lexists(link) and target.exists()


def test_read_from_returns_bytes_from_offset_to_end(transport, tmp_path):
    log = tmp_path / "wso2carbon.log"
    log.write_bytes(b"line 1\nline 2\n")
    assert transport.read_from(str(log), 0) == b"line 1\nline 2\n"
    assert transport.read_from(str(log), 7) == b"line 2\n"
    with open(log, "ab") as f:  # the log grows: following it from the old end sees just that
        f.write(b"line 3\n")
    assert transport.read_from(str(log), 14) == b"line 3\n"
    assert transport.read_from(str(log), 100) == b""
    assert transport.read_from(str(tmp_path / "missing.log"), 0) == b""


def test_exists_size_listdir_remove(transport, tmp_path):
    (tmp_path / "b.xml").write_bytes(b"12345")
    (tmp_path / "a.xml").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    assert transport.exists(str(tmp_path / "b.xml"))
    assert transport.exists(str(tmp_path / "sub"))
    assert not transport.exists(str(tmp_path / "nope"))
    assert transport.size(str(tmp_path / "b.xml")) == 5
    assert transport.size(str(tmp_path / "nope")) == 0
    assert transport.listdir(str(tmp_path)) == ["a.xml", "b.xml", "sub"]
    transport.remove(str(tmp_path / "b.xml"))
    assert not (tmp_path / "b.xml").exists()
    transport.remove(str(tmp_path / "b.xml"))  # already gone: not an error
    with pytest.raises(FileNotFoundError):
        transport.listdir(str(tmp_path / "nope"))


# ---------------------------------------------------------------- commands


def test_run_returns_output_and_non_zero_exit_without_raising(transport):
    r = transport.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert r == CommandResult(3, "out\n", "err\n")
    assert not r.ok
    assert transport.run(["true"]).ok


def test_run_passes_every_argument_unchanged(transport):
    args = ["a b", "it's", '"q"', "$HOME", "`id`", "x;y", "*", "", "tab\there", "ü"]
    r = transport.run([sys.executable, "-c", "import sys, json; print(json.dumps(sys.argv[1:]))",
                       *args])
    assert r.ok, r.stderr
    import json

    assert json.loads(r.stdout) == args


def test_run_with_env_and_cwd(transport, tmp_path):
    folder = tmp_path / "with space"
    folder.mkdir()
    r = transport.run(["sh", "-c", 'printf "%s|%s" "$EIPERF_T" "$(pwd)"'],
                      env={"EIPERF_T": "a b'c$d"}, cwd=str(folder))
    assert r.ok, r.stderr
    assert r.stdout == f"a b'c$d|{folder}"


def test_run_missing_command_is_exit_127(transport):
    r = transport.run(["eiperf-no-such-command-xyz"])
    assert r.returncode == 127


def test_run_stdin_is_empty(transport):
    r = transport.run(["cat"], timeout=10)
    assert r == CommandResult(0, "", "")


def test_run_timeout_raises_transport_error_and_kills_the_command(transport, tmp_path):
    script = f"echo $$ > {tmp_path / 'pid'}; exec sleep 20"
    with pytest.raises(TransportError, match="no answer in 1 s"):
        transport.run(["sh", "-c", script], timeout=1)
    pid = int((tmp_path / "pid").read_text())
    assert not _alive_here(pid)


def _alive_here(pid: int, wait_s: float = 5.0) -> bool:
    """True if `pid` still runs (not a zombie) after up to `wait_s` seconds."""
    import time

    from eicore.transport import local_pid_alive

    deadline = time.monotonic() + wait_s
    while local_pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return local_pid_alive(pid)


def test_run_returns_when_a_background_child_holds_no_output(transport, tmp_path):
    # integrator.sh start: nohup ... > stdout.log 2>&1 &  then exit 0 at once
    pidfile = tmp_path / "pid"
    r = transport.run(["sh", "-c", f"nohup sleep 30 > /dev/null 2>&1 & echo $! > {pidfile}; "
                                   "echo started"], timeout=10)
    pid = int(pidfile.read_text())
    try:
        assert r == CommandResult(0, "started\n", "")
        assert transport.pid_alive(pid)
    finally:
        transport.kill(pid, signal.SIGKILL)


# ---------------------------------------------------------------- processes


def test_pid_alive_for_running_exited_and_zombie(transport):
    p = subprocess.Popen(["sleep", "30"])
    try:
        assert transport.pid_alive(p.pid)
    finally:
        p.kill()
    _wait_zombie(p.pid)  # not reaped yet: a zombie
    assert not transport.pid_alive(p.pid)
    p.wait()
    assert not transport.pid_alive(p.pid)
    assert not transport.pid_alive(0)
    assert not transport.pid_alive(-1)


def test_kill_sends_the_signal_and_a_gone_process_is_not_an_error(transport):
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        transport.kill(p.pid, signal.SIGTERM)
        assert p.wait(10) == -signal.SIGTERM
        transport.kill(p.pid, signal.SIGTERM)  # gone: quiet
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    q = subprocess.Popen(["sleep", "30"])
    try:
        transport.kill(q.pid, signal.SIGKILL)
        assert q.wait(10) == -signal.SIGKILL
    finally:
        if q.poll() is None:
            q.kill()
            q.wait()


def test_close_then_use_again(transport, tmp_path):
    assert transport.run(["true"]).ok
    transport.close()
    transport.close()  # twice is fine
    assert transport.run(["echo", "again"]).stdout == "again\n"
    transport.write_bytes(str(tmp_path / "f"), b"after close")
    assert transport.read_bytes(str(tmp_path / "f")) == b"after close"


def test_concurrent_use_from_threads(transport, tmp_path):
    """node_control restarts nodes in parallel threads through one transport each."""
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            path = str(tmp_path / f"f{i}")
            transport.write_bytes(path, str(i).encode() * 1000)
            assert transport.read_bytes(path) == str(i).encode() * 1000
            assert transport.run(["echo", str(i)]).stdout == f"{i}\n"
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not [t for t in threads if t.is_alive()], "a thread hung"
    assert not errors


def _wait_zombie(pid: int) -> None:
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat", "rb") as f:
            if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                return
        time.sleep(0.01)
    raise AssertionError(f"{pid} did not become a zombie")


# ---------------------------------------------------------------- SSH only


def test_ssh_unknown_host_key_is_refused_with_how_to_add_it(sshd, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    t = SSHTransport("127.0.0.1", sshd.user, port=sshd.port, key_file=str(sshd.client_key),
                     known_hosts=str(empty))
    with pytest.raises(TransportError) as e, t:
        t.run(["true"])
    msg = str(e.value)
    assert "\n" not in msg
    assert f"[127.0.0.1]:{sshd.port}" in msg and str(empty) in msg
    assert f"ssh-keyscan -p {sshd.port} -t ssh-ed25519 127.0.0.1 >> {empty}" in msg
    fp = subprocess.run(["ssh-keygen", "-lf", f"{sshd.host_key}.pub"], capture_output=True,
                        text=True, check=True).stdout.split()[1]
    assert fp in msg  # the fingerprint to check, as ssh-keygen shows it
    assert empty.read_text() == ""  # never accepted, never written


def test_ssh_changed_host_key_is_refused(sshd, tmp_path):
    from tests.sshd import keygen

    other = keygen(tmp_path / "other_host", "other")
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} "
                     + " ".join((tmp_path / "other_host.pub").read_text().split()[:2]) + "\n")
    assert other.exists()
    t = SSHTransport("127.0.0.1", sshd.user, port=sshd.port, key_file=str(sshd.client_key),
                     known_hosts=str(known))
    with pytest.raises(TransportError, match="does not match the one in"), t:
        t.exists("/")


def test_ssh_wrong_key_is_refused(sshd, tmp_path):
    from tests.sshd import keygen

    wrong = keygen(tmp_path / "wrong", "wrong")
    t = SSHTransport("127.0.0.1", sshd.user, port=sshd.port, key_file=str(wrong),
                     known_hosts=str(sshd.known_hosts))
    with pytest.raises(TransportError) as e, t:
        t.read_bytes("/etc/hostname")
    msg = str(e.value)
    assert "\n" not in msg
    assert f"{sshd.user}@127.0.0.1:{sshd.port} refused key {wrong}" in msg
    assert "authorized_keys" in msg


def test_ssh_nothing_listening_is_a_transport_error(sshd):
    from tests.sshd import free_port

    t = SSHTransport("127.0.0.1", sshd.user, port=free_port(), key_file=str(sshd.client_key),
                     known_hosts=str(sshd.known_hosts), connect_timeout=3)
    with pytest.raises(TransportError, match="cannot reach .* over SSH .*is sshd running"), t:
        t.run(["true"])


def test_ssh_missing_key_or_known_hosts_file_is_a_config_error(sshd, tmp_path):
    from eicore.errors import ConfigError

    with pytest.raises(ConfigError, match="SSH key .*nokey.* not found; fix ssh_key"):
        SSHTransport("127.0.0.1", "root", key_file=str(tmp_path / "nokey"))
    with pytest.raises(ConfigError, match="known_hosts file .* not found; fix known_hosts"):
        SSHTransport("127.0.0.1", "root", key_file=str(sshd.client_key),
                     known_hosts=str(tmp_path / "nohosts"))


def test_ssh_transport_for_a_cluster_node(sshd, tmp_path):
    from eicore.cluster import Node
    from eicore.transport import transport_for

    node = Node(name="n1", host="127.0.0.1", ei_home=str(tmp_path), transport="ssh",
                ssh_user=sshd.user, ssh_port=sshd.port, ssh_key=str(sshd.client_key),
                known_hosts=str(sshd.known_hosts))
    t = transport_for(node)
    try:
        assert isinstance(t, SSHTransport)
        assert t.run(["echo", "via ssh"]).stdout == "via ssh\n"
    finally:
        t.close()
