"""Rolling upgrade of a 2-node Connect cluster behind HAProxy (Connect's pooled lab cluster): the first node leaves
service (drained with a deadline, out of the pool, stopped) and gets the new package unpacked while the other serves;
then the other leaves, the first starts and migrates the schema, then the other is upgraded; content deployed before the upgrade is served by every node after it, and a second run
changes nothing. A ~20 req/s client reads the content through HAProxy the whole time (the hold covers the window
no node serves: no request fails) beside a slow upload the drain deadline cuts without stopping the run. Last, a run
stopped by a timeout too short for the migration is run again while the first node still migrates.
"""

import pytest

from tests.lab.cluster import FAST_TUNING

pytestmark = pytest.mark.lab

CONTENT = "upgrade-canary"
BUNDLE = "bundle deployed before the upgrade"
DRAIN_TIMEOUT = 5


@pytest.fixture(scope="module")
def cluster(cluster_pool):
    cluster = cluster_pool.get("connect")
    cluster.nodes[0].http_ok("http://127.0.0.1:3939/__emulator__/content?name=%s" % CONTENT, method="POST",
                             data=BUNDLE)
    return cluster


def test_every_node_stops_then_one_migrates_and_the_other_follows(cluster):
    result, summary, _long_outcome, cut = cluster.upgrade_under_traffic(
        "run-connect.log", "/content/%s/" % CONTENT,
        lambda status, body: status == 200 and body == BUNDLE.encode(), rolling_upgrade_drain_timeout=DRAIN_TIMEOUT)
    cluster.assert_upgrade_under_traffic(result, summary, cut, DRAIN_TIMEOUT)
    cluster.assert_planned_first_unpacked_then_all_out(result)
    # Only the first node migrated: the other started on the schema it found current.
    journals = [node.journal(cluster.spec["service"], lines=None) for node in cluster.nodes]
    assert ["Migrating the database schema" in journal for journal in journals] == [True, False]
    for node in cluster.nodes:
        assert node.http_ok("http://127.0.0.1:3939/content/%s/" % CONTENT) == BUNDLE


def test_second_run_changes_nothing(cluster):
    cluster.assert_upgrade_has_nothing_to_do("run-connect-again.log")


def test_rerun_while_the_first_node_still_migrates_lets_it_finish(cluster):
    """The bug this guards: the re-run's plan put the migrating node into the stop step and stopped it, then skipped
    its start (a stale 'active' fact): a whole-cluster outage with an interrupted migration. Connect only: Workbench
    migrates inside its start, which dpkg's configure waits for, so no timeout of the run can expire mid-migration."""
    cluster.reset()
    cluster.nodes[0].http_ok("http://127.0.0.1:3939/__emulator__/content?name=%s" % CONTENT, method="POST",
                             data=BUNDLE)
    # Long enough to outlast the short run's own turns between the package's postinst (which starts the node and
    # its migration) and its end: ~20 s on a quiet 2-CPU host, over 45 s when CI runs three labs beside the checks.
    cluster.tuning = dict(FAST_TUNING, POSITEMU_MIGRATION_SECONDS="150")
    for node in cluster.nodes:
        cluster.write_tuning(node)
    first = cluster.nodes[0]
    try:
        short = cluster.playbook("rolling_upgrade.yml", extra_vars=cluster.upgrade_vars(
            rolling_upgrade_migration_timeout=3), log=cluster.dir / "run-short-timeout.log")
        assert short.rc != 0
        assert "stopped in step 'first'" in short.output and "run the same command again" in short.output
        # Still migrating when the re-run starts: running, not healthy yet.
        assert cluster.service_active(first) and cluster.health(first) == 503
        assert cluster.migrations_started() == 1
        result = cluster.playbook("rolling_upgrade.yml", extra_vars=cluster.upgrade_vars(),
                                  log=cluster.dir / "run-while-migrating.log")
        assert result.rc == 0, result.output[-4000:]
        assert "first back (schema migration): %s" % cluster.hosts()[0] in result.output
        cluster.assert_upgraded_and_serving()
        # One migration, run to its end: a stopped or restarted node would have started it again.
        assert cluster.migrations_started() == 1
        assert "schema migration to version" in first.journal(cluster.spec["service"], lines=None)
        for node in cluster.nodes:
            assert node.http_ok("http://127.0.0.1:3939/content/%s/" % CONTENT) == BUNDLE
    finally:
        cluster.tuning = dict(FAST_TUNING)
        for node in cluster.nodes:
            cluster.write_tuning(node)
