"""Rolling upgrade of a 2-node Workbench cluster behind HAProxy (Workbench's pooled lab
cluster): every node must run the same version, so no node serves beside an upgraded one: the first leaves service
and gets the new package unpacked (not started) while the other serves, then the other leaves too; afterwards
both serve the new version on the migrated schema, the load balancer has both back, and a second run changes
nothing. Clients without a session (the sign-in page, ~20 req/s through HAProxy) see no failure; a slow upload is
cut at the drain deadline without stopping the run; the report names the user session stopping a node ended.
"""

import json
import re

import pytest

pytestmark = pytest.mark.lab

DRAIN_TIMEOUT = 5


@pytest.fixture(scope="module")
def cluster(cluster_pool):
    return cluster_pool.get("workbench")


def test_nodes_leave_service_together_and_come_back_upgraded(cluster):
    second = cluster.nodes[1]
    second.exec("id jdoe || useradd -u 2001 -m jdoe")
    session = json.loads(second.http_ok("http://localhost:8787/__emulator__/sessions?user=jdoe", method="POST"))
    result, summary, _long_outcome, cut = cluster.upgrade_under_traffic(
        "run-workbench.log", "/", lambda status, body: status < 500, rolling_upgrade_drain_timeout=DRAIN_TIMEOUT)
    cluster.assert_upgrade_under_traffic(result, summary, cut, DRAIN_TIMEOUT)
    cluster.assert_planned_first_unpacked_then_all_out(result)
    # The post-check's line for the node that ran the session names it.
    assert re.search(r'"%s \S+ serving load balancer UP, \d+ session\(s\) cut at the drain deadline, sessions '
                     r'ended: %d - jdoe"' % (re.escape(cluster.hosts()[1]), session["pid"]), result.output), \
        result.output[-3000:]
    # Workbench's own view: both nodes Online in list-nodes.
    statuses = cluster.nodes[0].workbench_statuses()
    assert sorted(statuses.values()) == ["Online", "Online"], statuses


def test_second_run_changes_nothing(cluster):
    cluster.assert_upgrade_has_nothing_to_do("run-workbench-again.log")
