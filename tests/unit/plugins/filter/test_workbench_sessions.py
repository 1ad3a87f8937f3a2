"""workbench_sessions: the session lines of one node of /load-balancer/status, whatever its state marker."""

import pytest

from ansible_collections.positops.ha.plugins.filter.workbench_sessions import FilterModule

workbench_sessions = FilterModule().filters()["workbench_sessions"]

STATUS = ("rsw1:8787 (offline)  Load: 0.5, 0.4, 0.3\n"
          "   4242 - alice\n"
          "   4311 - bob\n"
          "rsw2:8787  Load: 0.1, 0.1, 0.1\n"
          "   5000 - carol\n"
          "rsw3:8787 (unreachable)  Load: 0, 0, 0\n")


@pytest.mark.parametrize("node, expected", [
    ("rsw1", ["4242 - alice", "4311 - bob"]),
    ("rsw1:8787", ["4242 - alice", "4311 - bob"]),
    ("rsw2", ["5000 - carol"]),
    ("rsw3", []),
    ("rsw9", []),
])
def test_the_sessions_listed_under_the_node(node, expected):
    assert workbench_sessions(STATUS, node) == expected


def test_an_empty_or_missing_page_has_no_session():
    assert workbench_sessions("", "rsw1") == []
    assert workbench_sessions(None, "rsw1") == []
