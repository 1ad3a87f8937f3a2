"""Leaving HA for one node on a 2-node Package Manager cluster (the pooled lab cluster): refusals and check mode
change nothing. The move itself (every acknowledged write and row kept, the backup first, the removed node retired,
a second run changing nothing, the next site.yml refusing the retired node) is the Molecule story
molecule/ha_to_single_node, on a cluster of its own.
"""

import pytest

pytestmark = pytest.mark.lab

LOCAL_DATA_DIR = "/var/lib/rstudio-pm/local-data"
MARKER = "/etc/positops/retired/package_manager.json"


@pytest.fixture(scope="module")
def cluster(cluster_pool):
    return cluster_pool.get("package_manager")


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
