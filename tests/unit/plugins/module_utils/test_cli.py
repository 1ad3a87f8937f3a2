"""The shared pieces of the product adapters: node records and the header-driven table reader."""

import pytest

from ansible_collections.positops.ha.plugins.module_utils._cli import (
    NODE_FIELDS, CliParseError, header_columns, node_record, read_table)

COLUMNS = (("name", ("Host Name", "Host")), ("status", ("Status",)), ("seen", ("Last Seen",)))


def test_node_record_has_every_field_and_refuses_unknown_ones():
    record = node_record("n1", "Online", "online", id=3)
    assert sorted(record) == sorted(NODE_FIELDS)
    assert (record["name"], record["status"], record["mode"], record["id"], record["version"]) == (
        "n1", "Online", "online", 3, None)
    with pytest.raises(ValueError, match="not node record fields: colour"):
        node_record("n1", "Online", "online", colour="red")


@pytest.mark.parametrize("header, expected", [
    ("Host  Status  Last Seen", [("name", "Host", 0), ("status", "Status", 6), ("seen", "Last Seen", 14)]),
    # Longer spellings first; case is ignored; unknown titles are extra columns (one space joins two words).
    ("HOST NAME   HEALTH CHECK  status", [("name", "HOST NAME", 0), (None, "HEALTH CHECK", 12),
                                          ("status", "status", 26)]),
    ("Status  Host", [("status", "Status", 0), ("name", "Host", 8)]),
    ("Host\tStatus\tZone", [("name", "Host", 0), ("status", "Status", 1), (None, "Zone", 2)]),
])
def test_header_columns(header, expected):
    assert header_columns(header, COLUMNS) == expected


def test_read_table_cuts_values_at_the_titles_and_skips_extra_columns():
    lines = ["Host   Health     Status             Last Seen",
             "-----  ---------  -----------------  ---------",
             "a      Healthy    Failed to resolve  2026-11-23 12:00:00",
             "",
             "b                 Online"]
    assert read_table(lines, COLUMNS, first_line=3) == [
        {"_line": 5, "name": "a", "status": "Failed to resolve", "seen": "2026-11-23 12:00:00"},
        {"_line": 7, "name": "b", "status": "Online", "seen": None}]


def test_read_table_tab_separated():
    assert read_table(["Host\tStatus", "a\tOnline"], COLUMNS) == [{"_line": 2, "name": "a", "status": "Online"}]
    with pytest.raises(CliParseError, match="line 2 has 1 tab-separated values where the header has 2 titles"):
        read_table(["Host\tStatus", "a"], COLUMNS)


def test_read_table_single_spaced_rows_only_when_values_hold_no_spaces():
    lines = ["host status", "a-long-name online"]
    assert read_table(lines, COLUMNS, split_on_white_space=True) == [
        {"_line": 2, "name": "a-long-name", "status": "online"}]
    with pytest.raises(CliParseError, match="line 2 is not aligned under the header: its value before column "
                                            "'status' runs into it"):
        read_table(lines, COLUMNS)


def test_read_table_refuses_a_row_starting_left_of_the_first_column():
    with pytest.raises(CliParseError, match="line 2 starts before the header's first column 'Host'"):
        read_table(["  Host  Status", "a     Online"], COLUMNS)
