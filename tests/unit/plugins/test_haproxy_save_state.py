"""The server-state saver of the load_balancer role (roles/load_balancer/files/positops_haproxy_save_state.py): which
lines of a recorded `show servers state` (HAProxy 2.6.12) it keeps for the configuration about to be loaded."""

import importlib.util
import pathlib
import socket
import sys
import threading
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
SPEC = importlib.util.spec_from_file_location(
    "positops_haproxy_save_state", str(ROOT / "roles" / "load_balancer" / "files" / "positops_haproxy_save_state.py"))
saver = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(saver)

CONFIG = """
global
    stats socket /run/haproxy/admin.sock mode 660 level admin
backend connect
    server node1 127.0.0.1:18481 check cookie node1   # unchanged
    server node2 127.0.0.1:19999 check cookie node2   # port changed since the state was saved
frontend workbench
    bind :8787
backend workbench
    server node1 127.0.0.1:18481 check
listen other
    server node1 10.0.0.1 check
"""


def test_keeps_only_servers_still_configured_on_the_same_port(tmp_path, cli_output):
    config = tmp_path / "haproxy.cfg"
    config.write_text(CONFIG)
    ports = saver.configured_ports(str(config))
    assert ports == {("connect", "node1"): "18481", ("connect", "node2"): "19999",
                     ("workbench", "node1"): "18481", ("other", "node1"): None}
    content, dropped = saver.keep(cli_output("haproxy/show-servers-state.txt"), ports)
    lines = content.splitlines()
    assert lines[0] == "1" and lines[1].startswith("# be_id be_name srv_id srv_name")
    assert [line.split()[1:4:2] for line in lines[2:]] == [["connect", "node1"], ["workbench", "node1"]]
    # node2 moved to another port, node3 and workbench/node2 are gone from the configuration.
    assert dropped == ["connect/node2", "connect/node3", "workbench/node2"]


def test_refuses_an_answer_it_does_not_know():
    with pytest.raises(ValueError):
        saver.keep("Unknown command.\n", {})


def serve_once(path, answer, pieces=3):
    """A stand-in for HAProxy's runtime socket: reads one command, answers in ``pieces`` writes, then closes."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    received = []

    def answer_one():
        connection, unused = server.accept()
        with connection:
            received.append(connection.makefile("rb").readline())
            size = len(answer) // pieces + 1
            for start in range(0, len(answer), size):
                connection.sendall(answer[start:start + size])
                time.sleep(0.05)
        server.close()

    thread = threading.Thread(target=answer_one, daemon=True)
    thread.start()
    return thread, received


def test_saves_the_whole_answer_for_the_next_process(tmp_path, cli_output, capsys, monkeypatch):
    config = tmp_path / "haproxy.cfg"
    config.write_text(CONFIG)
    output = tmp_path / "server-state"
    output.write_text("old\n")
    sock = str(tmp_path / "admin.sock")
    thread, received = serve_once(sock, cli_output("haproxy/show-servers-state.txt").encode())
    monkeypatch.setattr(sys, "argv", ["save", "--socket", sock, "--config", str(config), "--output", str(output)])
    assert saver.main() == 0
    thread.join(5)
    assert received == [b"show servers state\n"]
    saved = output.read_text().splitlines()
    assert [line.split()[1:4:2] for line in saved[2:]] == [["connect", "node1"], ["workbench", "node1"]]
    assert oct(output.stat().st_mode & 0o777) == "0o644"
    assert "2 server states saved to %s" % output in capsys.readouterr().out


def test_leaves_the_old_file_when_haproxy_does_not_answer(tmp_path, capsys, monkeypatch):
    output = tmp_path / "server-state"
    output.write_text("old\n")
    sock = str(tmp_path / "nobody.sock")
    monkeypatch.setattr(sys, "argv", ["save", "--socket", sock, "--config", "/nonexistent", "--output", str(output)])
    assert saver.main() == 0  # the reload goes on
    assert output.read_text() == "old\n"
    assert "HAProxy does not answer on %s" % sock in capsys.readouterr().err
