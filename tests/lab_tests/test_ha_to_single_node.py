"""Leaving HA for one node on a 2-node Package Manager cluster (the pooled lab cluster, taken for good): refusals and check mode
change nothing; the run backs up first, takes pm2 out at HAProxy and stops it while it is still being written to,
fingerprints the share once after the stop, moves the data to pm1 with every file written before the stop, marks
pm2 retired; a second run changes nothing; the next site.yml refuses pm2 until told.
"""

import json
import re
import subprocess

import pytest

pytestmark = pytest.mark.lab

LOCAL_DATA_DIR = "/var/lib/rstudio-pm/local-data"
SHARE = "/srv/shared/rstudio-pm"
MARKER = "/etc/positops/retired/package_manager.json"
FINGERPRINT = "TASK [Fingerprint the files under"
# Writes through pm2 into the share, one every 0.1 s, each acknowledged one listed in /tmp/acked, until pm2 stops
# (the bare nodes have python3, not curl).
WRITER = ("import itertools, time, urllib.request\n"
          "for i in itertools.count(1):\n"
          "    request = urllib.request.Request('http://127.0.0.1:4242/__emulator__/data/writes/w%d.txt' % i, "
          "data=b'w', method='PUT')\n"
          "    try:\n"
          "        if urllib.request.urlopen(request, timeout=2).status == 201:\n"
          "            open('/tmp/acked', 'a').write('w%d\\n' % i)\n"
          "    except OSError:\n"
          "        pass\n"
          "    time.sleep(0.1)\n")


@pytest.fixture(scope="module")
def cluster(cluster_pool):
    cluster = cluster_pool.take("package_manager")  # a node is retired here: the pool must not reset it
    first = cluster.nodes[0]
    first.http_ok("http://127.0.0.1:4242/__api__/repos?name=single-canary", method="POST")
    first.http_ok("http://127.0.0.1:4242/__emulator__/data/canary/single.txt", method="PUT", data="kept")
    return cluster


def single_node_vars(cluster, **extra):
    variables = {"ha_to_single_node_product": "package_manager", "ha_to_single_node_keep": cluster.hosts()[0],
                 "ha_to_single_node_move_data": True, "ha_to_single_node_local_data_dir": LOCAL_DATA_DIR,
                 "package_manager_version": cluster.old_version}
    variables.update(extra)
    return variables


def assert_untouched(cluster):
    assert [cluster.health(node) for node in cluster.nodes] == [200, 200]
    assert set(cluster.lb_status().values()) == {"UP"}
    assert [node.exec("test -e %s" % MARKER, check=False).returncode for node in cluster.nodes] == [1, 1]
    assert LOCAL_DATA_DIR not in cluster.nodes[0].read_file("/etc/rstudio-pm/rstudio-pm.gcfg")


@pytest.mark.parametrize("extra,named", [
    ({"ha_to_single_node_database": "sqlite"}, "going back to SQLite is not supported"),
    ({"ha_to_single_node_keep": "nosuchnode"}, "-e ha_to_single_node_keep=<one of"),
], ids=["sqlite", "keep-not-in-group"])
def test_refusals_change_nothing(cluster, extra, named):
    result = cluster.playbook("ha_to_single_node.yml", extra_vars=single_node_vars(cluster, **extra),
                              log=cluster.dir / ("single-refused-%s.log" % "-".join(extra)))
    assert result.rc != 0
    assert named in result.output
    assert_untouched(cluster)


def test_check_mode_changes_nothing(cluster):
    result = cluster.playbook("ha_to_single_node.yml", extra_vars=single_node_vars(cluster), check=True,
                              log=cluster.dir / "single-check.log")
    assert result.rc == 0, result.output[-4000:]
    assert "out of the load balancer and stopped: %s" % cluster.hosts()[1] in result.output
    assert_untouched(cluster)
    assert cluster.nodes[0].output("ls /var/backups/positops 2>/dev/null | grep -c single-node", check=False) == "0"


def test_moves_to_one_node_while_written_to_with_every_file_and_row(cluster):
    kept, other = cluster.nodes
    rows_before = cluster.psql("rstudio_pm", "SELECT count(*) FROM repos")
    subprocess.run(["docker", "exec", "-d", other.container, "python3", "-c", WRITER], check=True)
    result = cluster.playbook("ha_to_single_node.yml", extra_vars=single_node_vars(cluster),
                              log=cluster.dir / "single.log")
    assert result.rc == 0, result.output[-4000:]
    other.exec("pkill -f __emulator__/data/writes || true", check=False)
    acked = other.output("cat /tmp/acked", check=False).split()
    assert acked, "no write reached the share before pm2 stopped"

    # The share is fingerprinted once, after the removed node stopped (writes before that cannot fail the copy).
    assert result.output.count("%s %s" % (FINGERPRINT, SHARE)) == 1
    assert result.output.index("TASK [Stop the product]") < result.output.index("%s %s" % (FINGERPRINT, SHARE))
    # Every acknowledged write is in the kept node's local copy.
    copied = set(kept.output("ls %s/writes" % LOCAL_DATA_DIR).split())
    assert {name + ".txt" for name in acked} <= copied

    assert cluster.health(kept) == 200
    assert not cluster.service_active(other)
    assert other.output("systemctl is-enabled rstudio-pm", check=False) == "disabled"
    assert LOCAL_DATA_DIR in kept.read_file("/etc/rstudio-pm/rstudio-pm.gcfg")
    assert kept.http_ok("http://127.0.0.1:4242/__emulator__/data/canary/single.txt") == "kept"
    assert cluster.psql("rstudio_pm", "SELECT count(*) FROM repos") == rows_before
    assert "single-canary" in cluster.psql("rstudio_pm", "SELECT name FROM repos").split()
    assert cluster.lb_status() == {cluster.hosts()[0]: "UP"}
    assert "serves alone from %s" % LOCAL_DATA_DIR in result.output

    # The backup was made before anything changed, and the report names it.
    backup = re.search(r"Backup: (/\S+?)\. ", result.output).group(1)
    assert result.output.index("Dump the database with pg_dump") < result.output.index("Take the node out")
    manifest = json.loads(kept.read_file(backup + "/manifest.json"))
    assert manifest["product"] == "package_manager" and manifest["reason"].startswith("single-node-")
    assert kept.exec("test -s %s/database.dump" % backup, check=False).returncode == 0
    assert other.exec("test -s %s/config-%s.tar.gz" % (backup, cluster.hosts()[1]), check=False).returncode == 0

    marker = json.loads(other.read_file(MARKER))
    assert marker["product"] == "package_manager" and marker["kept"] == cluster.hosts()[0]
    assert marker["run"] and marker["retired_at"]


def test_second_run_changes_nothing(cluster):
    result = cluster.playbook("ha_to_single_node.yml", extra_vars=single_node_vars(cluster),
                              log=cluster.dir / "single-again.log")
    assert result.rc == 0, result.output[-4000:]
    assert result.changed() == 0, result.recap()
    assert "already serves alone from %s; nothing to change" % LOCAL_DATA_DIR in result.output
    assert FINGERPRINT not in result.output
    assert cluster.health(cluster.nodes[0]) == 200


def test_the_next_site_refuses_the_retired_node_until_told(cluster):
    other = cluster.nodes[1]
    result = cluster.playbook("site.yml", extra_vars={"package_manager_version": cluster.old_version},
                              log=cluster.dir / "site-retired.log")
    assert result.rc != 0
    assert ("%s was retired from Posit Package Manager by positops.ha.ha_to_single_node" % cluster.hosts()[1]
            in result.output)
    assert "-e positops_allow_retired=true" in result.output
    assert not cluster.service_active(other)

    # Both fixes get past the refusal (the platform play is the first play of site.yml).
    allowed = cluster.playbook("platform.yml", extra_vars={"positops_allow_retired": True},
                               log=cluster.dir / "platform-allowed.log")
    assert allowed.rc == 0, allowed.output[-4000:]
    hosts = json.loads((cluster.inventory / "hosts.yml").read_text())
    del hosts["all"]["children"]["package_manager"]["hosts"][cluster.hosts()[1]]
    (cluster.inventory / "single.yml").write_text(json.dumps(hosts))
    (cluster.inventory / "hosts.yml").rename(cluster.dir / "hosts-cluster.yml")
    try:
        reduced = cluster.playbook("platform.yml", log=cluster.dir / "platform-reduced.log")
    finally:
        (cluster.dir / "hosts-cluster.yml").rename(cluster.inventory / "hosts.yml")
        (cluster.inventory / "single.yml").unlink()
    assert reduced.rc == 0, reduced.output[-4000:]
