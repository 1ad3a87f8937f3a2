"""Connect and Workbench rolling upgrades interrupted at their worst moments, then resumed by running the same command:
the first node killed while dpkg installs it, and PostgreSQL restarted while it migrates the schema. The re-run that
starts while the first node still migrates is Connect's (test_rolling_upgrade_connect.py); Package Manager's own
fault tests are in test_rolling_upgrade_faults.py.

After every re-run: every node on the new version and healthy, UP at HAProxy, the schema migrated once, no node
serving with a binary older than the schema, and (Connect) content deployed before the upgrade served by every node.
"""

import pytest

from tests.lab.cluster import FAST_TUNING

pytestmark = pytest.mark.lab

PRODUCTS = ["connect", "workbench"]
CONTENT, BUNDLE = "resume-canary", "deployed before the upgrade"


@pytest.fixture(scope="module", params=PRODUCTS)
def cluster(request, cluster_pool):
    return cluster_pool.get(request.param)


def deploy_canary(cluster):
    if cluster.product == "connect":
        cluster.nodes[0].http_ok("http://127.0.0.1:3939/__emulator__/content?name=%s" % CONTENT, method="POST",
                                 data=BUNDLE)


def assert_resumed(cluster, rerun_log):
    result = cluster.playbook("rolling_upgrade.yml", extra_vars=cluster.upgrade_vars(), log=cluster.dir / rerun_log)
    assert result.rc == 0, result.output[-4000:]
    cluster.assert_upgraded_and_serving()
    if cluster.product == "connect":
        for node in cluster.nodes:
            assert node.http_ok("http://127.0.0.1:3939/content/%s/" % CONTENT) == BUNDLE
    return result


def test_first_node_killed_while_dpkg_installs_it(cluster):
    cluster.reset()
    deploy_canary(cluster)
    first = cluster.nodes[0]
    run = cluster.start_playbook("rolling_upgrade.yml", cluster.upgrade_vars(), "run-kill.log")
    cluster.wait_until_dpkg_installs(first, run)
    assert run.running(), run.output()[-3000:]
    first.kill()
    assert run.finish() != 0
    assert "UNREACHABLE" in run.output()
    assert cluster.serving_nodes_older_than_schema() == []
    first.start()
    first.wait_for_systemd(timeout=120)
    assert_resumed(cluster, "run-kill-rerun.log")


def test_database_restarted_while_the_first_node_migrates(cluster):
    cluster.reset()
    deploy_canary(cluster)
    cluster.tuning = dict(FAST_TUNING, POSITEMU_MIGRATION_SECONDS="6")
    for node in cluster.nodes:
        cluster.write_tuning(node)
    first = cluster.nodes[0]
    try:
        run = cluster.start_playbook("rolling_upgrade.yml", cluster.upgrade_vars(), "run-db.log")
        cluster.wait_until_migrating(first, run)
        assert run.running(), run.output()[-3000:]
        cluster.db.exec("systemctl restart postgresql@15-main")
        if run.finish() != 0:
            assert "stopped in step" in run.output() and "run the same command again" in run.output()
        assert cluster.serving_nodes_older_than_schema() == []
        assert_resumed(cluster, "run-db-rerun.log")
    finally:
        cluster.tuning = dict(FAST_TUNING)
        for node in cluster.nodes:
            cluster.write_tuning(node)
