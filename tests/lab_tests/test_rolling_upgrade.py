"""Rolling upgrade of a 2-node Package Manager cluster behind HAProxy, with three faults on the way.

The product's pooled lab cluster (tests/lab_tests/conftest.py), in order: a package URL that 404s (stops before any
node leaves service), an old node that cannot go offline in time (stops before the first node comes online, and the
old node serves again), a migration timeout too short (stops in the online step), a re-run that resumes and
finishes, then a run that changes nothing.
After every run: no node serves with a binary older than the database schema, and the data written before the
upgrade (a repository in PostgreSQL, a file on the share) is still there. Last, on the same cluster, site.yml
applies a setting that needs a restart: the nodes restart one at a time under traffic, and a re-run restarts none.
"""

import json
import shlex
import threading
import time

import pytest

from tests.lab.traffic import Traffic

pytestmark = pytest.mark.lab

REPO_NAME = "upgrade-canary"
SHARED_FILE = "canary/before-upgrade.txt"
SHARED_CONTENT = "written before the upgrade\n"


@pytest.fixture(scope="module")
def cluster(cluster_pool):
    cluster = cluster_pool.get("package_manager")
    first = cluster.nodes[0]
    first.http_ok("http://127.0.0.1:4242/__api__/repos?name=%s" % REPO_NAME, method="POST")
    first.http_ok("http://127.0.0.1:4242/__emulator__/data/%s" % SHARED_FILE, method="PUT", data=SHARED_CONTENT)
    return cluster


def assert_safe_and_intact(cluster):
    assert cluster.serving_nodes_older_than_schema() == []
    repos = cluster.psql("rstudio_pm", "SELECT name FROM repos ORDER BY name").split()
    assert REPO_NAME in repos
    assert cluster.nodes[1].read_file("/srv/shared/rstudio-pm/" + SHARED_FILE) == SHARED_CONTENT


def versions(cluster):
    return {node.name: cluster.installed_version(node) for node in cluster.nodes}


def test_package_url_404_stops_before_any_node_leaves_service(cluster):
    result = cluster.playbook("rolling_upgrade.yml", extra_vars=cluster.upgrade_vars(
        package_manager_package_base_url="http://%s/no-such-directory" % cluster.lab.container_name("pkgs")),
        log=cluster.dir / "run-404.log")
    assert result.rc != 0
    assert "step 'download' failed" in result.output
    assert "HTTP Error 404" in result.output
    assert "No node was taken out of service" in result.output
    assert set(versions(cluster).values()) == {cluster.old_version}
    assert [cluster.health(node) for node in cluster.nodes] == [200, 200]
    assert set(cluster.lb_status().values()) == {"UP"}
    assert_safe_and_intact(cluster)


def test_an_old_node_slow_to_go_offline_is_put_back_before_any_node_comes_online(cluster):
    """The first node's call takes the second offline, then would bring the first online: a request still running
    on the second keeps it from going offline within the timeout, so the first is never asked online (the schema
    cannot have moved) and the rescue puts the second back into service on its old version."""
    first, second = cluster.nodes
    # Started once the first node leaves service: it lasts through step stop into step first (about 10 s later,
    # more on a busy host), and its end lets the second node go offline and then, put back, online again.
    in_flight = threading.Thread(target=second.exec, kwargs=dict(
        command="python3 -c %s" % shlex.quote(
            "import urllib.request; urllib.request.urlopen('http://127.0.0.1:%d/__emulator__/slow?seconds=45', "
            "timeout=90).read()" % cluster.spec["port"]), check=False))
    run = cluster.start_playbook("rolling_upgrade.yml", cluster.upgrade_vars(rolling_upgrade_offline_timeout=3),
                                 "run-offline-timeout.log")
    deadline = time.monotonic() + 600
    while "(4/7) Rolling upgrade" not in run.output():
        assert run.running() and time.monotonic() < deadline, run.output()[-3000:]
        time.sleep(0.2)
    in_flight.start()
    try:
        rc = run.finish()
    finally:
        in_flight.join(120)
    output = run.output()
    assert rc != 0
    assert "stopped in step 'first'" in output
    first_host, second_host = cluster.hosts()
    assert "Taking %s offline before bringing %s online failed" % (second_host, first_host) in output
    assert "Put back into service on their old version: %s" % second_host in output
    assert versions(cluster) == {first.name: cluster.new_version, second.name: cluster.old_version}
    modes = dict(line.split()[::2] for line in second.output("/opt/rstudio-pm/bin/rspm cluster nodes").splitlines())
    assert modes == {first_host: "offline", second_host: "online"}
    assert [cluster.health(node) for node in cluster.nodes] == [503, 200]
    assert cluster.lb_status()[second_host] == "UP" and not cluster.lb_hold_on()
    assert cluster.migrations_started() == 0
    assert_safe_and_intact(cluster)


def test_migration_timeout_too_short_stops_in_the_online_step(cluster):
    result = cluster.playbook("rolling_upgrade.yml", extra_vars=cluster.upgrade_vars(
        rolling_upgrade_migration_timeout=1), log=cluster.dir / "run-timeout.log")
    assert result.rc != 0
    assert "stopped in step 'first'" in result.output
    assert "%s failed at" % cluster.hosts()[0] in result.output
    assert "Timed out after 1s waiting for node(s) to be online" in result.output
    assert "run the same command again" in result.output
    # The second node was never upgraded: it must not serve once the schema moved.
    assert versions(cluster)[cluster.node_names[1]] == cluster.old_version
    assert_safe_and_intact(cluster)


def test_rerun_resumes_and_finishes(cluster):
    result = cluster.playbook("rolling_upgrade.yml", extra_vars=cluster.upgrade_vars(),
                              log=cluster.dir / "run-resume.log")
    assert result.rc == 0, result.output[-4000:]
    assert set(versions(cluster).values()) == {cluster.new_version}
    assert [cluster.health(node) for node in cluster.nodes] == [200, 200]
    assert set(cluster.lb_status().values()) == {"UP"}
    assert cluster.schema_version() == 42
    assert_safe_and_intact(cluster)


def test_second_run_changes_nothing(cluster):
    cluster.assert_upgrade_has_nothing_to_do("run-idempotent.log")


def test_restore_puts_the_cluster_back_on_the_old_version_from_the_backup(cluster):
    """Every run backed up before any node left service; the first backup holds the old version's database."""
    first = cluster.nodes[0]
    backups = sorted(first.output("ls -d /var/backups/positops/package_manager-*").split())
    manifests = {path: json.loads(first.read_file(path + "/manifest.json")) for path in backups}
    assert all(manifest["database"] == "database.dump" for manifest in manifests.values())
    old = [path for path, manifest in manifests.items() if manifest["version"] == cluster.old_version]
    assert old, manifests
    for node in cluster.nodes:
        assert node.exec("test -s %s/config-%s.tar.gz" % (old[0], cluster.lab.container_name(node.name)),
                         check=False).returncode == 0
    result = cluster.playbook("restore.yml", extra_vars={"restore_product": "package_manager",
                                                         "restore_backup": old[0]}, log=cluster.dir / "restore.log")
    assert result.rc == 0, result.output[-4000:]
    assert set(versions(cluster).values()) == {cluster.old_version}
    assert [cluster.health(node) for node in cluster.nodes] == [200, 200]
    assert set(cluster.lb_status().values()) == {"UP"}
    assert cluster.schema_version() == 41
    assert_safe_and_intact(cluster)


def restart_window(cluster, node):
    """``(stop began, active again)`` of the service's last (re)start, in microseconds of the kernel's monotonic clock,
    which the lab's containers share."""
    text = node.output("systemctl show -p ActiveExitTimestampMonotonic -p ActiveEnterTimestampMonotonic %s"
                       % cluster.spec["service"])
    values = dict(line.split("=", 1) for line in text.splitlines())
    return int(values["ActiveExitTimestampMonotonic"]), int(values["ActiveEnterTimestampMonotonic"])


def test_a_setting_that_needs_a_restart_rolls_through_the_nodes(cluster):
    """site.yml with a changed setting: each node drained, restarted, healthy and back before the next one stops."""
    setting = dict(cluster.version_vars(cluster.old_version),
                   package_manager_config={"HTTP": {"NoWarning": "true"}})
    before = [restart_window(cluster, node) for node in cluster.nodes]
    traffic = Traffic(cluster.lb_url(), "/__api__/repos", lambda status, body: status == 200).start()
    time.sleep(2)
    result = cluster.playbook("site.yml", extra_vars=setting, log=cluster.dir / "site-setting.log")
    time.sleep(2)
    summary = traffic.stop()
    assert result.rc == 0, result.output[-4000:]
    assert summary["sent"] > 0 and summary["failed"] == 0, summary
    after = [restart_window(cluster, node) for node in cluster.nodes]
    assert all(new[1] > old[1] for old, new in zip(before, after)), (before, after)
    # One at a time, in the inventory's order: a node is active again before the next one begins to stop.
    assert all(previous[1] < following[0] for previous, following in zip(after, after[1:])), after
    for node in cluster.nodes:
        assert "NoWarning = true" in node.read_file("/etc/rstudio-pm/rstudio-pm.gcfg")
    assert set(cluster.lb_status().values()) == {"UP"}
    # The same settings again: nothing to apply, no node restarts.
    result = cluster.playbook("site.yml", extra_vars=setting, log=cluster.dir / "site-setting-again.log")
    assert result.rc == 0, result.output[-4000:]
    assert [restart_window(cluster, node) for node in cluster.nodes] == after
