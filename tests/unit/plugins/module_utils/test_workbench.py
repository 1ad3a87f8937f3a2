"""Parsers of rstudio-server output, against recorded outputs (tests/unit/plugins/cli_output/rstudio-server/),
and the local-node identity used to refuse changing another node."""

import pytest

from ansible_collections.positops.ha.plugins.module_utils import _workbench as workbench
from ansible_collections.positops.ha.plugins.module_utils._cli import CliParseError
from ansible_collections.positops.ha.plugins.module_utils._workbench import (
    is_local, parse_delete_node, parse_list_nodes, read_www_host_name)


def rows(nodes):
    return [(n["id"], n["name"], n["ipv4"], n["port"], n["status"], n["mode"], n["last_seen"]) for n in nodes]


def test_list_nodes_every_documented_status(cli_output):
    nodes = parse_list_nodes(cli_output("rstudio-server/list-nodes-mixed.txt"))
    assert rows(nodes) == [
        (2, "rsw2", "172.18.0.6", 8787, "Online", "online", "2026-11-23 12:39:30"),
        (3, "rsw3", "172.18.0.7", 8787, "Missed check-in", None, "2026-11-23 12:25:00"),
        (1, "rsw-primaryyy", None, 8787, "Failed to resolve", None, None),
        (4, "rsw4", "172.18.0.8", 8787, "Invalid permissions on secure cookie key", None, "2026-11-23 12:39:30"),
        (5, "rsw5", "172.18.0.9", 8787, "Offline", "offline", "2026-11-23 12:39:30"),
        (6, "rsw6", "172.18.0.10", 8787, "Invalid secure cookie key", None, "2026-11-23 12:39:30"),
    ]


def test_list_nodes_documentation_example_without_last_seen_column(cli_output):
    nodes = parse_list_nodes(cli_output("rstudio-server/list-nodes-docs-example.txt"))
    assert rows(nodes) == [
        (1, "rsw-primaryyy", None, 8787, "Failed to resolve", None, None),
        (2, "rsw-secondary", "123.456.78.100", 8787, "Online", "online", None),
        (3, "rsw-primary", "123.456.78.101", 8787, "Online", "online", None),
    ]


def test_list_nodes_header_only_is_no_nodes(cli_output):
    assert parse_list_nodes(cli_output("rstudio-server/list-nodes-header-only.txt")) == []


@pytest.mark.parametrize("text, message", [
    ("@rstudio-server/list-nodes-misaligned.txt", "line 2 is not aligned under the header"),
    ("", "expected a header line starting with 'ID'"),
    ("@rstudio-server/error-lb-disabled.txt", "expected a header line"),
    ("ID  Host  IPv4  Port\n1   a     b     1\n", "the header has no 'Status' column"),
    ("ID  Host  IPv4  Port  Status\nx   a           1     Online\n", "node ID 'x' is not a number"),
    ("ID  Host  IPv4  Port  Status\n1   a           p     Online\n", "port 'p' is not a number"),
    ("ID  Host  IPv4  Port  Status\n1   a           1\n", "line 2 has no status"),
    ("ID  Host  IPv4  Port  Status  Last Seen\n1   a           1     Online  yesterday\n",
     "last seen 'yesterday' is not YYYY-MM-DD HH:MM:SS"),
])
def test_list_nodes_rejects_what_it_does_not_understand(cli_output, text, message):
    if text.startswith("@"):  # a recorded output
        text = cli_output(text[1:])
    with pytest.raises(CliParseError, match=message):
        parse_list_nodes(text)


def test_delete_node_parser(cli_output):
    assert parse_delete_node(1)(cli_output("rstudio-server/delete-node-1.txt")) == 1
    with pytest.raises(CliParseError, match="expected 'Node 2 deleted.'"):
        parse_delete_node(2)(cli_output("rstudio-server/delete-node-1.txt"))
    with pytest.raises(CliParseError):
        parse_delete_node(1)("")


@pytest.mark.parametrize("content, expected", [
    ("www-host-name=rsw1.example.com\n", "rsw1.example.com"),
    ("balancer=sessions\nwww-host-name = https://rsw1.example.com:8787/\n", "rsw1.example.com"),
    ("[config]\nbalancer=sessions\n", None),
    ("www-host-name=\n", None),
])
def test_read_www_host_name(tmp_path, content, expected):
    path = tmp_path / "load-balancer"
    path.write_text(content)
    assert read_www_host_name(str(path)) == expected


def test_read_www_host_name_missing_file(tmp_path):
    assert read_www_host_name(str(tmp_path / "none")) is None


def test_local_identity_includes_host_name_and_load_balancer_name(monkeypatch, tmp_path):
    config = tmp_path / "load-balancer"
    config.write_text("www-host-name=rsw-public.example.com:8787\n")
    monkeypatch.setattr(workbench, "LOAD_BALANCER_CONFIG", str(config))
    monkeypatch.setattr(workbench.socket, "gethostname", lambda: "RSW1.lab")
    monkeypatch.setattr(workbench.socket, "getfqdn", lambda: "rsw1.lab")
    monkeypatch.setattr(workbench.socket, "getaddrinfo",
                        lambda name, port, family: [(family, 1, 6, "", ("172.18.0.5", 0))])
    identity = workbench.local_identity()
    assert identity == {"names": {"rsw1.lab", "rsw1", "rsw-public.example.com"}, "addresses": {"172.18.0.5"}}


def test_local_identity_survives_unresolvable_host(monkeypatch):
    def fail(*args):
        raise workbench.socket.gaierror("no")
    monkeypatch.setattr(workbench.socket, "gethostname", lambda: "lonely")
    monkeypatch.setattr(workbench.socket, "getfqdn", lambda: "lonely")
    monkeypatch.setattr(workbench.socket, "getaddrinfo", fail)
    monkeypatch.setattr(workbench, "read_www_host_name", lambda path=None: None)
    assert workbench.local_identity() == {"names": {"lonely"}, "addresses": set()}


@pytest.mark.parametrize("record, local", [
    ({"name": "RSW1", "ipv4": "10.0.0.9"}, True),
    ({"name": "rsw1:8787", "ipv4": None}, True),
    ({"name": "172.18.0.5", "ipv4": "172.18.0.5"}, True),
    ({"name": "rsw2", "ipv4": "172.18.0.6"}, False),
    ({"name": None, "ipv4": None}, False),
])
def test_is_local(record, local):
    assert is_local(record, {"names": {"rsw1"}, "addresses": {"172.18.0.5"}}) is local
