"""Rolling upgrade of a 2-node Connect cluster behind HAProxy (its own lab, so it runs beside the other modules):
every node leaves service (out of the pool, stopped), one is upgraded and migrates the schema, then the other;
content deployed before the upgrade is served by every node after it, and a second run changes nothing.
"""

import pytest

from tests.lab.cluster import Cluster

pytestmark = pytest.mark.lab

CONTENT = "upgrade-canary"
BUNDLE = "bundle deployed before the upgrade"


@pytest.fixture(scope="module")
def cluster(lab, debs):
    cluster = Cluster(lab, "connect", nodes=2)
    cluster.up()
    cluster.nodes[0].http_ok("http://127.0.0.1:3939/__emulator__/content?name=%s" % CONTENT, method="POST",
                             data=BUNDLE)
    return cluster


def test_every_node_stops_then_one_migrates_and_the_other_follows(cluster):
    cluster.upgrade_all_out_together("run-connect.log")
    cluster.assert_upgraded_and_serving()
    # Only the first node migrated: the other started on the schema it found current.
    journals = [node.journal(cluster.spec["service"], lines=None) for node in cluster.nodes]
    assert ["Migrating the database schema" in journal for journal in journals] == [True, False]
    for node in cluster.nodes:
        assert node.http_ok("http://127.0.0.1:3939/content/%s/" % CONTENT) == BUNDLE


def test_second_run_changes_nothing(cluster):
    cluster.assert_upgrade_has_nothing_to_do("run-connect-again.log")
