"""Leaving HA for one node on a 2-node Package Manager cluster: stop everything, keep one node, move its data off
the share, keep PostgreSQL; the data is the same before and after, and a second run changes nothing.
"""

import pytest

from tests.lab.cluster import Cluster

pytestmark = pytest.mark.lab

LOCAL_DATA_DIR = "/var/lib/rstudio-pm/local-data"


@pytest.fixture(scope="module")
def cluster(lab, debs):
    cluster = Cluster(lab, "package_manager", nodes=2)
    cluster.up()
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


def test_refuses_what_the_vendor_does_not_support(cluster):
    result = cluster.playbook("ha_to_single_node.yml", extra_vars=single_node_vars(
        cluster, ha_to_single_node_database="sqlite"), log=cluster.dir / "single-refused.log")
    assert result.rc != 0
    assert "going back to SQLite is not supported" in result.output
    # Nothing was changed: both nodes still serve.
    assert [cluster.health(node) for node in cluster.nodes] == [200, 200]


def test_moves_to_one_node_with_every_file_and_row(cluster):
    rows_before = cluster.psql("rstudio_pm", "SELECT count(*) FROM repos")
    result = cluster.playbook("ha_to_single_node.yml", extra_vars=single_node_vars(cluster),
                              log=cluster.dir / "single.log")
    assert result.rc == 0, result.output[-4000:]
    kept, other = cluster.nodes
    assert cluster.health(kept) == 200
    assert not cluster.service_active(other)
    assert other.output("systemctl is-enabled rstudio-pm", check=False) == "disabled"
    # The kept node reads its data from the local directory now, with the file written on the share before.
    assert LOCAL_DATA_DIR in kept.read_file("/etc/rstudio-pm/rstudio-pm.gcfg")
    assert kept.http_ok("http://127.0.0.1:4242/__emulator__/data/canary/single.txt") == "kept"
    assert kept.read_file(LOCAL_DATA_DIR + "/canary/single.txt") == "kept"
    assert cluster.psql("rstudio_pm", "SELECT count(*) FROM repos") == rows_before
    assert "single-canary" in cluster.psql("rstudio_pm", "SELECT name FROM repos").split()
    assert cluster.lb_status() == {cluster.hosts()[0]: "UP"}
    assert "serves alone from %s" % LOCAL_DATA_DIR in result.output


def test_second_run_changes_nothing(cluster):
    result = cluster.playbook("ha_to_single_node.yml", extra_vars=single_node_vars(cluster),
                              log=cluster.dir / "single-again.log")
    assert result.rc == 0, result.output[-4000:]
    assert result.changed() == 0, result.recap()
    assert cluster.health(cluster.nodes[0]) == 200
