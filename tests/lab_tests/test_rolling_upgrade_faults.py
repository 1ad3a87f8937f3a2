"""Faults in the middle of a Package Manager rolling upgrade: a node killed during its install, PostgreSQL restarted
while the first batch comes online, a node left needing a reinstall by a kill in its package's prerm. Each: the run
stops with a clear message (or rides the fault out), no node serves with a binary older than the schema, no data is
lost, and a re-run finishes.
"""

import pytest

pytestmark = pytest.mark.lab

REPO_NAME = "fault-canary"


@pytest.fixture(scope="module")
def cluster(cluster_pool):
    return cluster_pool.get("package_manager")


def write_canary(cluster):
    cluster.nodes[0].http_ok("http://127.0.0.1:4242/__api__/repos?name=%s" % REPO_NAME, method="POST")
    cluster.nodes[0].http_ok("http://127.0.0.1:4242/__emulator__/data/canary/fault.txt", method="PUT", data="canary")


def assert_safe_and_intact(cluster):
    assert cluster.serving_nodes_older_than_schema() == []
    assert REPO_NAME in cluster.psql("rstudio_pm", "SELECT name FROM repos").split()
    assert cluster.nodes[1].read_file("/srv/shared/rstudio-pm/canary/fault.txt") == "canary"


def rerun(cluster, log_name):
    result = cluster.playbook("rolling_upgrade.yml", extra_vars=cluster.upgrade_vars(), log=cluster.dir / log_name)
    assert result.rc == 0, result.output[-4000:]
    assert {cluster.installed_version(node) for node in cluster.nodes} == {cluster.new_version}
    assert [cluster.health(node) for node in cluster.nodes] == [200, 200]
    assert set(cluster.lb_status().values()) == {"UP"}
    assert cluster.schema_version() == 42


def test_node_killed_during_its_install(cluster):
    write_canary(cluster)
    first, second = cluster.nodes
    run = cluster.start_playbook("rolling_upgrade.yml", cluster.upgrade_vars(), "run-kill.log")
    # The first batch (first node) goes offline, then installs: kill it as soon as dpkg unpacks the package on it.
    cluster.wait_until_dpkg_installs(first, run)
    assert run.running(), run.output()[-3000:]
    first.kill()
    rc = run.finish()
    output = run.output()
    assert rc != 0
    assert "fatal: [%s]: UNREACHABLE!" % cluster.hosts()[0] in output
    assert "first batch out of service and upgraded while the others serve" in output
    # The other node was never touched: it still serves the old version, and the schema did not move.
    assert cluster.health(second) == 200
    assert cluster.installed_version(second) == cluster.old_version
    assert cluster.schema_version() == 41

    first.start()
    first.wait_for_systemd(timeout=120)
    assert_safe_and_intact(cluster)
    rerun(cluster, "run-kill-rerun.log")
    assert_safe_and_intact(cluster)


def test_database_restarted_while_the_first_batch_comes_online(cluster):
    cluster.reset()
    write_canary(cluster)
    first = cluster.nodes[0]
    run = cluster.start_playbook("rolling_upgrade.yml", cluster.upgrade_vars(), "run-db.log")
    cluster.wait_until_migrating(first, run)
    # Not vacuous: the playbook is still waiting for the first batch when the database goes away.
    assert run.running(), run.output()[-3000:]
    cluster.db.exec("systemctl restart postgresql@15-main")
    rc = run.finish()
    output = run.output()
    if rc != 0:
        # Stopped: the message names the step and the node, and tells to run again.
        assert "stopped in step" in output
        assert "run the same command again" in output
    assert_safe_and_intact(cluster)
    rerun(cluster, "run-db-rerun.log")
    assert_safe_and_intact(cluster)


def test_node_left_needing_a_reinstall_by_a_kill_in_its_prerm(cluster):
    """A node killed while its package's prerm ran is left 'reinstreq half-configured' (seen in CI under load),
    which dpkg --configure -a refuses: the re-run reinstalls the package from the target .deb it downloaded.
    The state is forced on the first node of the upgraded cluster, so only that node has work to do."""
    first = cluster.nodes[0]
    # What the upgrade does before dpkg runs, then what the prerm did before the kill: offline, service stopped.
    first.exec("/opt/rstudio-pm/bin/rspm offline")
    first.exec("systemctl stop rstudio-pm")
    first.exec("sed -i '/^Package: rstudio-pm$/,/^$/ s/^Status: install ok installed$/Status: install reinstreq "
               "half-configured/' /var/lib/dpkg/status")
    assert first.output("dpkg-query --show --showformat='${db:Status-Status}|${db:Status-Eflag}' rstudio-pm") == \
        "half-configured|reinstreq"
    assert first.exec("dpkg --configure -a", check=False).returncode != 0

    rerun(cluster, "run-reinstreq.log")
    output = (cluster.dir / "run-reinstreq.log").read_text()
    assert "Reinstall a package dpkg marks as needing it" in output
    # rerun() checked the version; dpkg must also no longer flag the package.
    assert first.output("dpkg-query --show --showformat='${db:Status-Abbrev}' rstudio-pm") == "ii"
    assert cluster.serving_nodes_older_than_schema() == []
