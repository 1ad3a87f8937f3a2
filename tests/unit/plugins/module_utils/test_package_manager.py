"""Parsers of rspm output, against recorded outputs (tests/unit/plugins/cli_output/rspm/, sources in sources.yml)."""

import pytest

from ansible_collections.positops.ha.plugins.module_utils._cli import CliParseError
from ansible_collections.positops.ha.plugins.module_utils._package_manager import (
    parse_cluster_error, parse_cluster_nodes, parse_cluster_nodes_json, parse_listing)

ON, OFF = "online", "offline"
NEW, OLD = "2023.12.0-13", "2023.08.4-20"

# Every listing variant: the recorded output and the (name, version, status, mode) of each node, in order.
LISTINGS = [
    ("rspm/cluster-nodes-all-online.txt", [("pm1", NEW, ON, ON), ("pm2", NEW, ON, ON), ("pm3", NEW, ON, ON)]),
    ("rspm/cluster-nodes-mixed-versions.txt", [("pm1", NEW, ON, ON), ("pm2", OLD, OFF, OFF), ("pm3", OLD, OFF, OFF)]),
    ("rspm/cluster-nodes-human-emulator.txt", [("pm1", NEW, ON, ON), ("pm2", NEW, OFF, OFF), ("pm3", OLD, OFF, OFF)]),
    ("rspm/cluster-nodes-header.txt", [("pm1", NEW, ON, ON), ("pm2", NEW, OFF, OFF), ("pm3", OLD, OFF, OFF)]),
    ("rspm/cluster-nodes-header-extra-columns.txt", [("pm1", NEW, ON, ON), ("pm2", NEW, OFF, OFF)]),
    ("rspm/cluster-nodes-header-single-spaced.txt", [("pm1", NEW, ON, ON), ("pm2", NEW, OFF, OFF)]),
    ("rspm/cluster-nodes-header-reordered.txt", [("pm1", NEW, "Online", ON), ("pm2", NEW, "Offline", OFF)]),
    ("rspm/cluster-nodes.json", [("pm1", NEW, ON, ON), ("pm2", NEW, OFF, OFF), ("pm3", OLD, OFF, OFF)]),
    ("rspm/cluster-nodes-exported-fields.json", [("pm1", NEW, ON, ON), ("pm2", NEW, OFF, OFF)]),
]


def summary(nodes):
    return [(n["name"], n["version"], n["status"], n["mode"]) for n in nodes]


@pytest.mark.parametrize("recorded, expected", LISTINGS, ids=[case[0] for case in LISTINGS])
def test_every_listing_variant(cli_output, recorded, expected):
    nodes = parse_listing(cli_output(recorded))
    assert summary(nodes) == expected
    # The common record shape, with the fields rspm does not print left empty.
    assert all((n["id"], n["ipv4"], n["port"], n["last_seen"], n["health"], n["missed_check_in"]) == (None,) * 6
               for n in nodes)


def test_the_human_parser_refuses_json_and_the_json_parser_refuses_text(cli_output):
    with pytest.raises(CliParseError):
        parse_cluster_nodes(cli_output("rspm/cluster-nodes.json"))
    with pytest.raises(CliParseError, match="the output is not JSON"):
        parse_cluster_nodes_json(cli_output("rspm/cluster-nodes-header.txt"))
    with pytest.raises(CliParseError, match="the JSON document is a str, not a list of nodes"):
        parse_cluster_nodes_json('"pm1 2023.12.0-13 online"')


def test_parse_cluster_nodes_skips_blank_lines_and_keeps_order():
    nodes = parse_cluster_nodes("\nb 1.0 offline\n\na 2.0 online\n")
    assert [n["name"] for n in nodes] == ["b", "a"]


def test_header_after_blank_lines_counts_lines_of_the_output():
    with pytest.raises(CliParseError, match="line 4: mode 'draining' is neither online nor offline"):
        parse_cluster_nodes("\n\nHostname  Version  Mode\npm1       1.0      draining\n")


@pytest.mark.parametrize("text", ["", "\n", '{"nodes": []}', "[]"])
def test_empty_listing_is_no_nodes(text):
    assert parse_listing(text) == []


@pytest.mark.parametrize("text, message", [
    ("@rspm/cluster-nodes-truncated.txt", "line 1 has 2 fields, expected 3 (hostname version mode)"),
    ("@rspm/cluster-nodes-unknown-mode.txt", "line 1: mode 'draining' is neither online nor offline"),
    ("Hostname  Version  Mode\npm1       1.0\n", "line 2: mode '' is neither online nor offline"),
    ("Hostname  Version  Mode\n          1.0      online\n", "line 2 has no host name"),
    ("Address   Version  Mode\n10.0.0.1  1.0      online\n", "the header line has no name column"),
    ("Hostname  Version  Mode\npm1-with-a-long-name 1.0 online extra\n", "line 2 is not aligned under the header"),
    # JSON that does not list nodes is refused, never read as an empty or partial cluster.
    ("@rspm/cluster-nodes-unknown-shape.json", "the JSON object has no list of nodes under 'nodes' (its keys: "
                                               "cluster)"),
    ('{"nodes": {"pm1": "online"}}', "the JSON object has no list of nodes under 'nodes'"),
    ('{"nodes": ["pm1"]}', "JSON node 1 is not an object"),
    ('[{"hostname": "pm1", "mode": "online"}]', "JSON node 1 has no text version (its keys: hostname, mode)"),
    ('[{"hostname": "pm1", "version": "1.0", "mode": "draining"}]', "JSON node 1: mode 'draining' is neither"),
    ('[{"hostname": "pm1", "version": "1.0", "mode": null}]', "JSON node 1 has no text mode"),
    ('{"error": "database is unreachable"}', "no list of nodes under 'nodes' (its keys: error)"),
])
def test_listings_that_cannot_be_read_fail_clearly(cli_output, text, message):
    if text.startswith("@"):
        text = cli_output(text[1:])
    with pytest.raises(CliParseError) as raised:
        parse_listing(text)
    assert message in str(raised.value)


def test_json_spellings_of_the_fields():
    nodes = parse_cluster_nodes_json('{"Nodes": [{"host_name": "pm1", "VERSION": "1.0", "online": true},'
                                     ' {"node-name": "pm2", "version": "1.0", "Status": "OFFLINE"}]}')
    assert summary(nodes) == [("pm1", "1.0", ON, ON), ("pm2", "1.0", "OFFLINE", OFF)]


def test_parse_unknown_nodes_error(cli_output):
    assert parse_cluster_error(cli_output("rspm/error-unknown-node.txt")) == {
        "kind": "unknown_nodes", "unknown": ["pm9"], "known": ["pm1", "pm2", "pm3"]}


def test_parse_unknown_nodes_error_several():
    error = parse_cluster_error("Error: unknown node(s): x, y. Known nodes: a, b.\n")
    assert error == {"kind": "unknown_nodes", "unknown": ["x", "y"], "known": ["a", "b"]}


def test_parse_timeout_error(cli_output):
    assert parse_cluster_error(cli_output("rspm/error-timeout.txt")) == {
        "kind": "timeout", "seconds": 5, "nodes": ["pm2"], "mode": "online"}


def test_parse_errors_printed_as_json():
    assert parse_cluster_error('{"error": "timed out after 5 seconds waiting for node(s) pm2 to be online"}\n') == {
        "kind": "timeout", "seconds": 5, "nodes": ["pm2"], "mode": "online"}
    assert parse_cluster_error('{"message": "unknown node(s): pm9. Known nodes: pm1"}') == {
        "kind": "unknown_nodes", "unknown": ["pm9"], "known": ["pm1"]}
    assert parse_cluster_error('{"error": 3}') is None


def test_parse_other_error_is_none(cli_output):
    assert parse_cluster_error(cli_output("rspm/error-bad-timeout.txt")) is None
    assert parse_cluster_error("") is None
    assert parse_cluster_error("{not json") is None
