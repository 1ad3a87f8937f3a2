"""The runtime API parsers against answers recorded from HAProxy 2.6.12 (Debian 12; cli_output/haproxy/), and the
socket client's error messages."""

import os
import socket
import tempfile
import threading

import pytest

from ansible_collections.positops.ha.plugins.module_utils import _haproxy
from ansible_collections.positops.ha.plugins.module_utils._haproxy import RuntimeApi, RuntimeApiError


class Recorded:
    """A RuntimeApi stand-in answering the recorded outputs."""

    def __init__(self, cli_output):
        self.answers = {"show stat": cli_output("haproxy/show-stat.txt"),
                        "show servers state": cli_output("haproxy/show-servers-state.txt"),
                        "show map": cli_output("haproxy/show-map.txt"),
                        "show map /etc/haproxy/positops-hold.map": cli_output("haproxy/show-map-hold.txt")}

    def read(self, command):
        return self.answers[command]


def test_recorded_servers(cli_output):
    backends = _haproxy.read_backends(Recorded(cli_output))
    connect = backends["connect"]["servers"]
    assert {name: (s["status"], s["admin"], s["operational"], s["usable"], s["check"])
            for name, s in connect.items()} == {
        "node1": ("UP", "ready", "up", True, "L7OK"),
        "node2": ("DOWN", "ready", "down", False, "L4CON"),
        "node3": ("DRAIN", "drain", "up", False, "L7OK"),
    }
    assert backends["connect"]["usable_servers"] == 1
    workbench = backends["workbench"]["servers"]
    assert (workbench["node1"]["check"], workbench["node1"]["check_code"]) == ("L7STS", "404")
    assert workbench["node1"]["check_description"] == "Layer7 wrong status"
    # A server without a health check, in maintenance.
    assert (workbench["node2"]["status"], workbench["node2"]["admin"], workbench["node2"]["has_check"]) == (
        "MAINT", "maint", False)
    assert connect["node1"]["address"] == "127.0.0.1:18481" and connect["node1"]["sessions"] == 0


def test_recorded_maps(cli_output):
    api = Recorded(cli_output)
    assert _haproxy.loaded_maps(api) == ["/etc/haproxy/positops-hold.map"]
    assert _haproxy.hold_states(api, "/etc/haproxy/positops-hold.map", ["connect", "workbench"], 1796305600) == {
        "connect": {"on": True, "expires_at": 1796305608, "expires_in": 8, "admit": [],
                    "entries": ["0x561256815400"]},
        "workbench": {"on": False, "expires_at": None, "expires_in": 0, "admit": [], "entries": []},
    }
    assert _haproxy.hold_states(api, "/etc/haproxy/positops-hold.map", ["connect"], 1796305608)["connect"]["on"] \
        is False


@pytest.mark.parametrize("value, switch", [
    ("1796305608", (1796305608, [])),
    ("1796305608:node1", (1796305608, ["node1"])),
    ("1796305608:node1,node2", (1796305608, ["node1", "node2"])),
    ("1796305608:", (1796305608, [])),
    ("soon:node1", (None, ["node1"])),
])
def test_switch_values(value, switch):
    assert _haproxy.split_switch(value) == switch
    if switch[0] is not None:
        assert _haproxy.split_switch(_haproxy.switch_value(*switch)) == switch


def test_an_expired_switch_admits_nothing(cli_output):
    api = Recorded(cli_output)
    api.answers["show map /etc/haproxy/positops-hold.map"] = "0x55 connect 1796305608:node1\n"
    before, after = (_haproxy.hold_states(api, "/etc/haproxy/positops-hold.map", ["connect"], now)["connect"]
                     for now in (1796305600, 1796305608))
    assert (before["on"], before["admit"]) == (True, ["node1"])
    assert (after["on"], after["admit"]) == (False, [])


@pytest.mark.parametrize("parser, text, fragment", [
    (_haproxy.parse_stat, "Unknown command.\n", "no '# pxname,...' header"),
    (_haproxy.parse_stat, "# pxname,svname,status\nconnect\n", "Unexpected 'show stat' line: 'connect'"),
    (_haproxy.parse_servers_state, "2\n# be_id be_name\n", "format version 1 expected"),
    (_haproxy.parse_servers_state, "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state\n"
                                   "3 connect 1 node1 10.0.0.1 up 0\n", "Unexpected 'show servers state' line"),
    (_haproxy.parse_map, "connect 123\n", "Unexpected 'show map' line: 'connect 123'"),
])
def test_parsers_quote_what_they_do_not_understand(parser, text, fragment):
    with pytest.raises(RuntimeApiError) as error:
        parser(text)
    assert fragment in str(error.value)


def test_admin_bits():
    state = {"srv_op_state": 2, "srv_admin_state": 0, "srv_check_state": "6"}
    row = {"pxname": "b", "svname": "s", "status": "UP", "weight": "1", "scur": "3"}
    assert _haproxy.server_record(row, dict(state))["admin"] == "ready"
    for bits, admin in ((0x01, "maint"), (0x02, "maint"), (0x04 | 0x01, "maint"), (0x20, "maint"),
                        (0x08, "drain"), (0x10, "drain"), (0x40, "ready"), (0x08 | 0x01, "maint")):
        assert _haproxy.server_record(row, dict(state, srv_admin_state=bits))["admin"] == admin, bits


class OneShotServer:
    """A Unix socket that answers one fixed text (or nothing, to time out)."""

    def __init__(self, answer=None):
        self.directory = tempfile.mkdtemp(prefix="hap")
        self.path = os.path.join(self.directory, "admin.sock")
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(self.path)
        self.listener.listen(1)
        self.answer = answer
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        connection = self.listener.accept()[0]
        connection.recv(1024)
        if self.answer is not None:
            connection.sendall(self.answer.encode())
            connection.close()
        else:
            self.held = connection

    def close(self):
        self.listener.close()
        os.unlink(self.path)
        os.rmdir(self.directory)


def test_send_returns_the_whole_answer():
    server = OneShotServer("# pxname,svname\n" + "x" * 200000 + "\n")
    try:
        assert len(RuntimeApi(server.path).send("show stat")) == len("# pxname,svname\n") + 200001
    finally:
        server.close()


def test_an_answer_that_never_comes_times_out():
    server = OneShotServer(None)
    try:
        with pytest.raises(RuntimeApiError) as error:
            RuntimeApi(server.path, timeout=0.2).send("show stat")
        assert "HAProxy did not answer 'show stat' on %s within 0.2 s." % server.path == str(error.value)
    finally:
        server.close()


def test_nobody_listening(tmp_path):
    directory = tempfile.mkdtemp(prefix="hap")
    path = os.path.join(directory, "admin.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.close()   # the socket file stays, nothing listens: HAProxy stopped
    try:
        with pytest.raises(RuntimeApiError) as error:
            RuntimeApi(path).send("show stat")
        assert "Nothing answers on HAProxy's socket %s" % path in str(error.value)
        assert "systemctl start haproxy" in str(error.value)
    finally:
        os.unlink(path)
        os.rmdir(directory)


def test_a_change_that_haproxy_refuses_names_the_command():
    server = OneShotServer("No such server.\n\n")
    try:
        api = RuntimeApi(server.path)
        with pytest.raises(RuntimeApiError) as error:
            api.change("set server connect/nope state maint")
        assert str(error.value) == "HAProxy refused 'set server connect/nope state maint': No such server."
        assert api.commands == ["set server connect/nope state maint"]
    finally:
        server.close()
