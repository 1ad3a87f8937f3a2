"""Rolling upgrade of a 2-node Connect cluster behind HAProxy (its own lab, so it runs beside the other modules):
every node leaves service (drained with a deadline, out of the pool, stopped), one is upgraded and migrates the
schema, then the other; content deployed before the upgrade is served by every node after it, and a second run
changes nothing. A ~20 req/s client reads the content through HAProxy the whole time (the hold covers the window
no node serves: no request fails) beside a slow upload the drain deadline cuts without stopping the run.
"""

import pytest

from tests.lab.cluster import Cluster

pytestmark = pytest.mark.lab

CONTENT = "upgrade-canary"
BUNDLE = "bundle deployed before the upgrade"
DRAIN_TIMEOUT = 5


@pytest.fixture(scope="module")
def cluster(lab, debs):
    cluster = Cluster(lab, "connect", nodes=2)
    cluster.up()
    cluster.nodes[0].http_ok("http://127.0.0.1:3939/__emulator__/content?name=%s" % CONTENT, method="POST",
                             data=BUNDLE)
    return cluster


def test_every_node_stops_then_one_migrates_and_the_other_follows(cluster):
    result, summary, _long_outcome, cut = cluster.upgrade_under_traffic(
        "run-connect.log", "/content/%s/" % CONTENT,
        lambda status, body: status == 200 and body == BUNDLE.encode(), rolling_upgrade_drain_timeout=DRAIN_TIMEOUT)
    cluster.assert_upgrade_under_traffic(result, summary, cut, DRAIN_TIMEOUT)
    cluster.assert_planned_all_out_together(result)
    # Only the first node migrated: the other started on the schema it found current.
    journals = [node.journal(cluster.spec["service"], lines=None) for node in cluster.nodes]
    assert ["Migrating the database schema" in journal for journal in journals] == [True, False]
    for node in cluster.nodes:
        assert node.http_ok("http://127.0.0.1:3939/content/%s/" % CONTENT) == BUNDLE


def test_second_run_changes_nothing(cluster):
    cluster.assert_upgrade_has_nothing_to_do("run-connect-again.log")
