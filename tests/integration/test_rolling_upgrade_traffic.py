"""Rolling upgrade of a 3-node Package Manager cluster under live traffic through HAProxy: a ~20 req/s client and
one slow upload held open the whole time.

The upgrade drains each node with a deadline (rolling_upgrade_drain_timeout), so the slow upload does not stop
it and the post-check counts it as cut; the load balancer's hold covers the window in which no node serves, so no
client request fails and the slowest waits about as long as that window (the drain deadline, the 2 s emulated
migration, the playbook's own steps).
"""

import pytest

from tests.lab.cluster import Cluster

pytestmark = pytest.mark.lab

REPO_NAME = "traffic-canary"
DRAIN_TIMEOUT = 5


@pytest.fixture(scope="module")
def cluster(lab, debs):
    cluster = Cluster(lab, "package_manager", nodes=3)
    cluster.up()
    cluster.nodes[0].http_ok("http://127.0.0.1:4242/__api__/repos?name=%s" % REPO_NAME, method="POST")
    return cluster


def test_no_request_fails_and_the_slow_upload_is_cut_at_the_deadline(cluster):
    result, summary, long_outcome, cut = cluster.upgrade_under_traffic(
        "run-traffic.log", "/__api__/repos",
        lambda status, body: status == 200 and ('"%s"' % REPO_NAME).encode() in body,
        rolling_upgrade_drain_timeout=DRAIN_TIMEOUT)
    cluster.assert_upgrade_under_traffic(result, summary, cut, DRAIN_TIMEOUT)
    assert long_outcome is None or long_outcome[0] != 200, long_outcome  # cut, not finished
