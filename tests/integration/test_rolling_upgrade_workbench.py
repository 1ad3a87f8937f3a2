"""Rolling upgrade of a 2-node Workbench cluster behind HAProxy (its own lab, so it runs beside the Package Manager
modules): every node must run the same version, so every node leaves service before any is upgraded; afterwards
both serve the new version on the migrated schema, the load balancer has both back, and a second run changes
nothing.
"""

import pytest

from tests.lab.cluster import Cluster

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def cluster(lab, debs):
    cluster = Cluster(lab, "workbench", nodes=2)
    cluster.up()
    return cluster


def test_nodes_leave_service_together_and_come_back_upgraded(cluster):
    cluster.upgrade_all_out_together("run-workbench.log")
    cluster.assert_upgraded_and_serving()
    # Workbench's own view: both nodes Online in list-nodes.
    statuses = cluster.nodes[0].workbench_statuses()
    assert sorted(statuses.values()) == ["Online", "Online"], statuses


def test_second_run_changes_nothing(cluster):
    cluster.assert_upgrade_has_nothing_to_do("run-workbench-again.log")
