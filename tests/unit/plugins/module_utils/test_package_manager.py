"""Parsers of rspm output, against recorded outputs (tests/unit/plugins/cli_output/rspm/)."""

import pytest

from ansible_collections.positops.ha.plugins.module_utils._cli import CliParseError
from ansible_collections.positops.ha.plugins.module_utils._package_manager import (
    parse_cluster_error, parse_cluster_nodes)

LISTINGS = [
    ("rspm/cluster-nodes-all-online.txt",
     [("pm1", "2023.12.0-13", "online"), ("pm2", "2023.12.0-13", "online"), ("pm3", "2023.12.0-13", "online")]),
    ("rspm/cluster-nodes-mixed-versions.txt",
     [("pm1", "2023.12.0-13", "online"), ("pm2", "2023.08.4-20", "offline"), ("pm3", "2023.08.4-20", "offline")]),
]


@pytest.mark.parametrize("recorded, expected", LISTINGS, ids=[case[0] for case in LISTINGS])
def test_parse_cluster_nodes(cli_output, recorded, expected):
    nodes = parse_cluster_nodes(cli_output(recorded))
    assert [(n["name"], n["version"], n["mode"]) for n in nodes] == expected


def test_parse_cluster_nodes_skips_blank_lines_and_keeps_order():
    nodes = parse_cluster_nodes("\nb 1.0 offline\n\na 2.0 online\n")
    assert [n["name"] for n in nodes] == ["b", "a"]


def test_parse_cluster_nodes_empty_output_is_no_nodes():
    assert parse_cluster_nodes("") == []


@pytest.mark.parametrize("recorded, message", [
    ("rspm/cluster-nodes-truncated.txt", "line 1 has 2 fields, expected 3"),
    ("rspm/cluster-nodes-unknown-mode.txt", "mode 'draining' is neither online nor offline"),
])
def test_parse_cluster_nodes_rejects_unexpected_lines(cli_output, recorded, message):
    with pytest.raises(CliParseError, match=message):
        parse_cluster_nodes(cli_output(recorded))


def test_parse_unknown_nodes_error(cli_output):
    assert parse_cluster_error(cli_output("rspm/error-unknown-node.txt")) == {
        "kind": "unknown_nodes", "unknown": ["pm9"], "known": ["pm1", "pm2", "pm3"]}


def test_parse_unknown_nodes_error_several():
    error = parse_cluster_error("Error: unknown node(s): x, y. Known nodes: a, b.\n")
    assert error == {"kind": "unknown_nodes", "unknown": ["x", "y"], "known": ["a", "b"]}


def test_parse_timeout_error(cli_output):
    assert parse_cluster_error(cli_output("rspm/error-timeout.txt")) == {
        "kind": "timeout", "seconds": 5, "nodes": ["pm2"], "mode": "online"}


def test_parse_other_error_is_none(cli_output):
    assert parse_cluster_error(cli_output("rspm/error-bad-timeout.txt")) is None
    assert parse_cluster_error("") is None
