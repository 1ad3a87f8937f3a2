"""ha_to_single_node's plan (plugins/filter/single_node_plan.py): which nodes stop and retire, when the kept node
stops for the copy, every refusal; the load balancer's services; the refusal every other playbook makes."""

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.positops.ha.plugins.filter.single_node_plan import (
    FilterModule, plan, retired_refusal, single_node_services)

SHARE, LOCAL = "/mnt/shared/pm", "/var/lib/rstudio-pm/data"
PM = {"name": "package_manager", "label": "Posit Package Manager", "group": "package_manager", "data_dir": SHARE,
      "single_node": {"supported": True, "data_dir_var": "package_manager_data_dir", "local_data_dir": LOCAL}}
WORKBENCH = {"name": "workbench", "label": "Posit Workbench", "group": "workbench", "data_dir": "/mnt/shared/rsw",
             "single_node": {"supported": False}}
MARKER = {"product": "package_manager", "label": "Posit Package Manager", "retired_at": "2026-12-03T16:00:00Z",
          "run": "20261203T160000Z", "kept": "pm1", "by": "positops.ha.ha_to_single_node"}


def node(active=True, healthy=True, retired=None, data_dir=SHARE):
    return {"active": active, "healthy": healthy, "retired": retired or {}, "data_dir": data_dir}


def cluster(**states):
    return {host: states.get(host, node()) for host in ("pm1", "pm2", "pm3")}


HOSTS = ["pm1", "pm2", "pm3"]


def test_a_serving_cluster_stops_and_retires_every_other_node_and_the_kept_one_keeps_serving():
    result = plan(cluster(), PM, "pm1", HOSTS)
    assert result["refusal"] == ""
    assert (result["remove"], result["stop"], result["retire"]) == (["pm2", "pm3"],) * 3
    assert not result["move_data"] and not result["done"]
    assert result["data_dir"] == SHARE
    assert "pm1 stays and keeps serving" in result["summary"]


def test_moving_the_data_stops_the_kept_node_for_the_copy():
    result = plan(cluster(), PM, "pm2", HOSTS, move_data=True)
    assert result["move_data"] and result["data_dir"] == LOCAL
    assert result["stop"] == ["pm1", "pm3"]
    assert "stopped while the data is copied to %s" % LOCAL in result["summary"]


def test_an_explicit_local_directory_wins_over_the_record():
    result = plan(cluster(), PM, "pm1", HOSTS, move_data=True, local_data_dir="/srv/pm")
    assert result["data_dir"] == "/srv/pm" and result["move_data"]


def test_a_second_run_has_nothing_to_do():
    done = node(active=False, healthy=False, retired=MARKER)
    result = plan(cluster(pm1=node(data_dir=LOCAL), pm2=done, pm3=done), PM, "pm1", HOSTS, move_data=True)
    assert result["done"] and result["stop"] == [] and result["retire"] == []
    assert "already serves alone from %s" % LOCAL in result["summary"]


def test_a_run_that_died_after_stopping_resumes_with_the_marker_only():
    stopped = node(active=False, healthy=False)
    result = plan(cluster(pm2=stopped, pm3=node(active=False, healthy=False, retired=MARKER)), PM, "pm1", HOSTS)
    assert (result["stop"], result["retire"], result["done"]) == ([], ["pm2"], False)


def test_a_removed_node_started_again_by_hand_is_stopped_again():
    result = plan(cluster(pm2=node(retired=MARKER), pm3=node(active=False, retired=MARKER)), PM, "pm1", HOSTS)
    assert result["stop"] == ["pm2"] and result["retire"] == [] and not result["done"]


@pytest.mark.parametrize("record,nodes,keep,hosts,move,named", [
    (WORKBENCH, cluster(), "pm1", HOSTS, False, "the vendor documents no way back"),
    (PM, cluster(), "pm9", HOSTS, False, "-e ha_to_single_node_keep=<one of pm1, pm2, pm3>"),
    (PM, {"pm1": node(), "pm2": node()}, "pm1", HOSTS, False, "pm3 of the group 'package_manager' are left out"),
    (PM, cluster(pm1=node(retired=MARKER)), "pm1", HOSTS, False, "pm1 was retired from Posit Package Manager"),
    (dict(PM, single_node={"supported": True}), cluster(), "pm1", HOSTS, True,
     "Fix: leave ha_to_single_node_move_data false"),
    (PM, cluster(pm1=node(healthy=False)), "pm1", HOSTS, False,
     "pm1 does not serve (its health check failed, service running), nothing was changed. Fix: start it or repair "
     "it with site.yml first, or keep a node that serves: -e ha_to_single_node_keep=pm2"),
    (PM, cluster(pm1=node(active=False, healthy=False, data_dir=LOCAL)), "pm1", HOSTS, True, "service stopped"),
], ids=["unsupported", "keep-not-in-group", "limit", "keep-retired", "no-local-dir", "keep-unhealthy",
        "keep-stopped"])
def test_refusals_name_the_fix_and_plan_nothing(record, nodes, keep, hosts, move, named):
    result = plan(nodes, record, keep, hosts, move_data=move)
    assert named in result["refusal"]
    assert "Fix: " in result["refusal"]
    assert result["stop"] == [] and result["retire"] == [] and not result["done"]
    assert result["summary"].endswith(result["refusal"])


def test_bad_input_is_an_error():
    with pytest.raises(AnsibleFilterError):
        plan([], PM, "pm1", HOSTS)


def test_only_the_products_backend_keeps_the_kept_node():
    services = [{"name": "package_manager", "servers": ["pm1", "pm2"], "port": 4242},
                {"name": "connect", "servers": ["rsc1", "rsc2"]}]
    assert single_node_services(services, "package_manager", "pm2") == [
        {"name": "package_manager", "servers": ["pm2"], "port": 4242}, {"name": "connect", "servers": ["rsc1", "rsc2"]}]
    assert services[0]["servers"] == ["pm1", "pm2"]


def test_a_retired_node_still_in_its_group_is_refused_naming_both_fixes():
    message = retired_refusal([MARKER], "pm2", ["package_manager", "all_nodes"])
    assert message.startswith("pm2 was retired from Posit Package Manager by positops.ha.ha_to_single_node on "
                              "2026-12-03T16:00:00Z (run 20261203T160000Z; pm1 serves alone)")
    assert "remove pm2 from the inventory group 'package_manager'" in message
    assert "-e positops_allow_retired=true and delete /etc/positops/retired/package_manager.json" in message


@pytest.mark.parametrize("markers,groups,allow", [
    ([MARKER], ["connect"], False), ([], ["package_manager"], False), ([MARKER], ["package_manager"], True)],
    ids=["other-group", "no-marker", "allowed"])
def test_a_node_may_go_on(markers, groups, allow):
    assert retired_refusal(markers, "pm2", groups, allow=allow) == ""


def test_the_filters_are_registered():
    assert set(FilterModule().filters()) == {"single_node_plan", "single_node_services", "retired_refusal"}
