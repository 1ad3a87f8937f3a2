"""The rolling upgrade's plan (plugins/filter/upgrade_plan.py): every procedure, every resume state, every refusal."""

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.positops.ha.plugins.filter.upgrade_plan import FilterModule, plan, read_dpkg

OLD, NEW = "2023.08.4-20", "2023.12.0-13"
PM = {"name": "package_manager", "label": "Posit Package Manager", "group": "package_manager", "package": "rstudio-pm",
      "version_var": "package_manager_version", "node_cli": "/opt/rstudio-pm/bin/rspm",
      "upgrade": {"early_batch": True, "stops_for_upgrade": False, "unhealthy_out_of_service": True}}
CONNECT = {"name": "connect", "label": "Posit Connect", "group": "connect", "package": "rstudio-connect",
           "version_var": "connect_version", "node_cli": "",
           "upgrade": {"early_batch": False, "stops_for_upgrade": True, "unhealthy_out_of_service": True}}
WORKBENCH = {"name": "workbench", "label": "Posit Workbench", "group": "workbench", "package": "rstudio-workbench",
             "version_var": "workbench_version", "node_cli": "/usr/sbin/rstudio-server",
             "upgrade": {"early_batch": False, "stops_for_upgrade": True, "unhealthy_out_of_service": True}}


def node(version=OLD, active=True, healthy=True, dpkg=None):
    return {"dpkg": dpkg if dpkg is not None else "installed|%s|ok" % version, "active": active,
            "healthy": healthy}


def listing(*rows):
    return [{"name": name, "version": version, "mode": mode} for name, version, mode in rows]


def cluster(count, prefix="pm", **states):
    return {"%s%d" % (prefix, number): states.get("%s%d" % (prefix, number), node())
            for number in range(1, count + 1)}


def online(nodes, versions=None):
    return listing(*[(host, (versions or {}).get(host, OLD), "online") for host in nodes])


def test_package_manager_first_batch_is_half_and_upgraded_while_the_others_serve():
    nodes = cluster(3)
    result = plan(nodes, PM, NEW, inventory_hosts=list(nodes), cluster_nodes=online(nodes))
    assert result["refusal"] == ""
    assert result["steps"] == {"early": ["pm1"], "stop": ["pm2", "pm3"], "first": ["pm1"], "rest": ["pm2", "pm3"]}
    assert result["rest_serial"] == 2 and result["hold"] is True
    assert result["resuming"] is False and result["early_action"] == "install" and result["hold_step"] == "stop"
    # The first batch answers 503 while offline: the load balancer admits it at its first healthy answer.
    assert result["admit"] == ["pm1"]
    # pm1's own call takes pm2 and pm3 offline just before it brings pm1 online.
    assert result["offline_with_first"] == ["pm2", "pm3"]
    assert result["summary"] == (
        "Posit Package Manager to %s: already done: none; upgraded while the others serve: pm1; out of service "
        "together: pm2, pm3; first back (schema migration): pm1; then, 2 at a time: pm2, pm3" % NEW)


def test_package_manager_batch_size_is_the_first_batch():
    nodes = cluster(4)
    result = plan(nodes, PM, NEW, batch_size=3, inventory_hosts=list(nodes), cluster_nodes=online(nodes))
    assert result["steps"]["early"] == ["pm1", "pm2", "pm3"] and result["steps"]["rest"] == ["pm4"]


@pytest.mark.parametrize("record", [CONNECT, WORKBENCH], ids=["connect", "workbench"])
def test_connect_and_workbench_take_every_node_out_and_bring_one_back_first(record):
    nodes = cluster(3, prefix="n")
    result = plan(nodes, record, NEW, inventory_hosts=list(nodes),
                  cluster_nodes=online(nodes) if record["node_cli"] else None)
    # The first node is unpacked while the others serve; it starts on the new version once they all stopped.
    assert result["steps"] == {"early": ["n1"], "stop": ["n2", "n3"], "first": ["n1"], "rest": ["n2", "n3"]}
    assert result["early_action"] == "unpack" and result["hold_step"] == "stop"
    assert result["rest_serial"] == 1 and result["hold"] is True
    # Stopped in step early, before the hold goes on: its next healthy answer comes from the new version.
    assert result["admit"] == ["n1"]


def test_a_single_node_holds_from_the_early_step():
    result = plan(cluster(1, prefix="c"), CONNECT, NEW, inventory_hosts=["c1"])
    assert result["steps"] == {"early": ["c1"], "stop": [], "first": ["c1"], "rest": []}
    assert result["hold_step"] == "early"
    # It still serves its old version when the hold goes on: the load balancer admits it only at a healthy answer
    # after a failing one (once it has stopped).
    assert result["admit"] == ["c1"]


def test_a_node_unpacked_at_the_target_by_an_earlier_run_comes_back_first():
    nodes = cluster(2, prefix="c", c2=node(dpkg="unpacked|%s|ok" % NEW, active=False, healthy=False))
    result = plan(nodes, CONNECT, NEW, inventory_hosts=list(nodes))
    assert result["steps"]["first"] == ["c2"] and result["resuming"] is True


def test_every_node_on_the_target_and_serving_is_nothing_to_do():
    nodes = cluster(2, pm1=node(NEW), pm2=node(NEW))
    result = plan(nodes, PM, NEW, inventory_hosts=list(nodes), cluster_nodes=online(nodes, {"pm1": NEW, "pm2": NEW}))
    assert result["todo"] == [] and result["done"] == ["pm1", "pm2"] and result["hold"] is False
    assert result["resuming"] is False
    assert result["summary"].endswith("nothing to do, every node already runs it and serves")


def test_once_a_node_serves_the_target_the_others_go_straight_to_rest_and_are_drained():
    nodes = cluster(3, pm1=node(NEW))
    result = plan(nodes, PM, NEW, inventory_hosts=list(nodes), cluster_nodes=online(nodes, {"pm1": NEW}))
    assert result["done"] == ["pm1"]
    assert result["steps"] == {"early": [], "stop": ["pm2", "pm3"], "first": [], "rest": ["pm2", "pm3"]}
    assert result["hold"] is False and result["hold_step"] == "" and result["resuming"] is True
    assert result["admit"] == []


def test_a_node_on_the_target_that_is_still_migrating_comes_back_first_and_keeps_running():
    # Connect: the first node was upgraded and is migrating (running, not healthy yet) when the run stopped.
    nodes = cluster(3, prefix="c", c2=node(NEW, active=True, healthy=False))
    result = plan(nodes, CONNECT, NEW, inventory_hosts=list(nodes))
    assert result["steps"]["first"] == ["c2"] and result["steps"]["rest"] == ["c1", "c3"]
    assert result["keep_running"] == ["c2"]
    # It may answer before c1 and c3 have stopped: only the playbook puts it back, after the stop step.
    assert result["hold"] is True and result["admit"] == []


def test_a_stopped_node_on_the_target_comes_back_first_but_need_not_keep_running():
    nodes = cluster(2, prefix="w", w2=node(NEW, active=False, healthy=False))
    result = plan(nodes, WORKBENCH, NEW, inventory_hosts=list(nodes),
                  cluster_nodes=listing(("w1", None, "online"), ("w2", None, "offline")))
    assert result["steps"]["first"] == ["w2"] and result["keep_running"] == []
    assert result["admit"] == ["w2"]


def test_a_healthy_package_manager_node_that_is_offline_in_the_cluster_does_not_serve():
    nodes = cluster(2, pm1=node(NEW), pm2=node(NEW))
    result = plan(nodes, PM, NEW, inventory_hosts=list(nodes),
                  cluster_nodes=listing(("pm1", NEW, "online"), ("pm2", NEW, "offline")))
    assert result["done"] == ["pm1"] and result["todo"] == ["pm2"]
    assert result["nodes"]["pm2"]["serving"] is False


@pytest.mark.parametrize("line, installed, version, reinstall, configure, absent", [
    ("installed|1.0|ok", "1.0", "1.0", False, False, False),
    ("half-installed|1.0|reinstreq", "", "1.0", True, False, False),
    ("half-configured|1.0|reinstreq", "", "1.0", True, False, False),
    ("half-installed|1.0|ok", "", "1.0", True, False, False),
    ("unpacked|1.0|ok", "", "1.0", False, True, False),
    ("half-configured|1.0|ok", "", "1.0", False, True, False),
    ("not-installed||ok", "", "", False, False, True),
    ("config-files|1.0|ok", "", "", False, False, True),
    ("", "", "", False, False, True),
])
def test_dpkg_states(line, installed, version, reinstall, configure, absent):
    assert read_dpkg(line) == {"installed": installed, "version": version, "needs_reinstall": reinstall,
                               "needs_configure": configure, "absent": absent}


def test_a_half_installed_node_is_planned_not_refused():
    nodes = cluster(2, pm1=node(dpkg="half-installed|%s|reinstreq" % NEW, active=False, healthy=False))
    result = plan(nodes, PM, NEW, inventory_hosts=list(nodes), cluster_nodes=online(["pm2"]))
    assert result["refusal"] == "" and result["nodes"]["pm1"]["needs_reinstall"] is True
    assert result["resuming"] is True
    assert result["steps"]["first"] == ["pm1"]


def test_refused_when_the_product_is_not_installed():
    nodes = cluster(2, pm2=node(dpkg="", active=False, healthy=False))
    result = plan(nodes, PM, NEW, inventory_hosts=list(nodes), cluster_nodes=online(["pm1"]))
    assert "rstudio-pm is not installed on pm2" in result["refusal"]
    assert "positops.ha.site" in result["refusal"] and result["summary"].startswith(
        "Posit Package Manager to %s: refused" % NEW)


def test_refused_when_a_node_is_newer_than_the_target():
    nodes = cluster(2, pm2=node("2024.04.0-1"))
    result = plan(nodes, PM, NEW, inventory_hosts=list(nodes), cluster_nodes=online(nodes))
    assert "pm2 (2024.04.0-1)" in result["refusal"] and "package_manager_version" in result["refusal"]


def test_a_build_suffix_is_not_newer():
    nodes = cluster(1, prefix="w", w1=node("2023.12.0+369.pro3"))
    assert plan(nodes, WORKBENCH, "2023.12.0+369.pro3", inventory_hosts=["w1"],
                cluster_nodes=listing(("w1", None, "online")))["refusal"] == ""


@pytest.mark.parametrize("batch", [-1, 3])
def test_refused_when_the_first_batch_leaves_no_node_serving(batch):
    nodes = cluster(3)
    result = plan(nodes, PM, NEW, batch_size=batch, inventory_hosts=list(nodes), cluster_nodes=online(nodes))
    assert "rolling_upgrade_batch_size is %d for a cluster of 3 nodes" % batch in result["refusal"]


def test_limit_that_leaves_an_old_node_out_is_refused_naming_it():
    play = cluster(1)
    result = plan(play, PM, NEW, inventory_hosts=["pm1", "pm2"], cluster_nodes=online(["pm1", "pm2"]))
    assert result["refusal"].startswith("Posit Package Manager: pm2 would keep serving another version")
    assert "run without --limit" in result["refusal"]


def test_limit_that_leaves_out_only_nodes_the_cluster_lists_as_done_is_allowed():
    play = cluster(1)
    result = plan(play, PM, NEW, inventory_hosts=["pm1", "pm2"],
                  cluster_nodes=listing(("pm1", OLD, "online"), ("pm2", NEW, "online")))
    assert result["refusal"] == ""


def test_limit_on_connect_is_refused_since_nothing_says_the_others_are_done():
    result = plan(cluster(1, prefix="c"), CONNECT, NEW, inventory_hosts=["c1", "c2"])
    assert "c2 would keep serving" in result["refusal"]


def test_an_online_node_the_inventory_does_not_know_is_refused():
    nodes = cluster(2)
    result = plan(nodes, PM, NEW, inventory_hosts=list(nodes),
                  cluster_nodes=online(["pm1", "pm2"]) + listing(("pm9", OLD, "online")))
    assert "pm9 (listed by the cluster, not in the inventory)" in result["refusal"]


def test_an_offline_stale_row_the_inventory_does_not_know_is_ignored():
    nodes = cluster(2, prefix="w")
    result = plan(nodes, WORKBENCH, NEW, inventory_hosts=list(nodes),
                  cluster_nodes=listing(("w1", None, "online"), ("w2", None, "online"), ("old", None, "offline")))
    assert result["refusal"] == ""


def test_node_names_map_hosts_to_cluster_rows():
    nodes = {"host-a": dict(node(), node_name="PM-A"), "host-b": dict(node(), node_name="pm-b")}
    result = plan(nodes, PM, NEW, inventory_hosts=list(nodes),
                  cluster_nodes=listing(("pm-a", OLD, "online"), ("PM-B", OLD, "offline")))
    assert result["nodes"]["host-a"]["serving"] is True and result["nodes"]["host-b"]["serving"] is False


def test_a_record_without_upgrade_traits_is_a_clear_error():
    with pytest.raises(AnsibleFilterError, match="has no upgrade.stops_for_upgrade"):
        plan(cluster(1), {"name": "x", "upgrade": {"early_batch": True}}, NEW)
    with pytest.raises(AnsibleFilterError, match="expects {host: state}"):
        plan([], PM, NEW)


def test_the_filter_is_registered():
    assert FilterModule().filters()["upgrade_plan"](cluster(1), PM, NEW, 0, ["pm1"], online(["pm1"]))["todo"] == [
        "pm1"]


def test_dpkg_status_filter_names_each_need():
    dpkg_status = FilterModule().filters()["dpkg_status"]
    expected = {"installed": "1.0", "version": "1.0", "needs_reinstall": False, "needs_configure": False,
                "absent": False}
    assert dpkg_status("installed|1.0|ok") == expected
    assert dpkg_status("half-configured|1.0|reinstreq")["needs_reinstall"] is True
    assert dpkg_status("unpacked|1.0|ok")["needs_configure"] is True
    assert dpkg_status("")["absent"] is True


def restore(upgrade, step, installed_now, unreachable=(), play_hosts=(), record=None, stages=None):
    record = PM if record is None else record
    return FilterModule().filters()["upgrade_restore"](upgrade, step, installed_now, list(unreachable),
                                                       list(play_hosts), record, NEW, stages)


def test_a_failed_take_out_step_puts_back_the_nodes_that_served_and_are_unchanged():
    nodes = cluster(3)
    upgrade = plan(nodes, PM, NEW, inventory_hosts=list(nodes), cluster_nodes=online(nodes))
    assert restore(upgrade, "early", {"pm1": OLD}, play_hosts=["pm1"]) == ["pm1"]
    # pm1 got the new version before the failure: it cannot go back on the old one.
    assert restore(upgrade, "early", {"pm1": NEW}, play_hosts=["pm1"]) == []
    assert restore(upgrade, "stop", {"pm2": OLD, "pm3": OLD}, unreachable=["pm3"], play_hosts=["pm2", "pm3"]) == [
        "pm2"]


def test_after_package_managers_first_step_nothing_goes_back_the_schema_may_have_moved():
    nodes = cluster(2)
    upgrade = plan(nodes, PM, NEW, inventory_hosts=list(nodes), cluster_nodes=online(nodes))
    assert restore(upgrade, "first", {"pm1": NEW, "pm2": OLD}, play_hosts=["pm1"]) == []
    assert restore(upgrade, "first", {"pm1": NEW, "pm2": OLD}, play_hosts=["pm1"], stages={"pm1": "online"}) == []
    assert restore(upgrade, "rest", {"pm1": NEW, "pm2": OLD}, play_hosts=["pm2"]) == []


def test_package_managers_first_step_failing_while_taking_the_others_offline_puts_them_back():
    nodes = cluster(4)
    upgrade = plan(nodes, PM, NEW, inventory_hosts=list(nodes), cluster_nodes=online(nodes))
    assert upgrade["steps"]["first"] == ["pm1", "pm2"] and upgrade["offline_with_first"] == ["pm3", "pm4"]
    installed = {"pm1": NEW, "pm2": NEW, "pm3": OLD, "pm4": OLD}
    both_before_online = {"pm1": "offline_first", "pm2": "offline_first"}
    assert restore(upgrade, "first", installed, play_hosts=["pm1", "pm2"], stages=both_before_online) == [
        "pm3", "pm4"]
    # pm2 got past it (asked to come online, it may have migrated), or another task failed, or pm2 stopped
    # answering: nothing can be known of the schema.
    for stages, unreachable in (({"pm1": "offline_first", "pm2": "online"}, ()),
                                ({"pm1": "offline_first", "pm2": ""}, ()),
                                ({"pm1": "offline_first"}, ["pm2"])):
        assert restore(upgrade, "first", installed, unreachable=unreachable, play_hosts=["pm1", "pm2"],
                       stages=stages) == [], stages
    # A node that no longer runs its old version does not go back.
    assert restore(upgrade, "first", dict(installed, pm4=""), play_hosts=["pm1", "pm2"],
                   stages=both_before_online) == ["pm3"]


def test_only_package_managers_running_stop_nodes_go_offline_with_the_first_call():
    nodes = cluster(3, pm3=node(active=False, healthy=False))
    result = plan(nodes, PM, NEW, inventory_hosts=list(nodes), cluster_nodes=online(nodes))
    assert result["steps"]["stop"] == ["pm2", "pm3"] and result["offline_with_first"] == ["pm2"]
    # Connect and Workbench stop every node in the stop step; a single node has no stop step; a resumed run after
    # the schema moved has no first step.
    assert plan(cluster(3, prefix="w"), WORKBENCH, NEW, inventory_hosts=["w1", "w2", "w3"])["offline_with_first"] == []
    assert plan(cluster(1), PM, NEW, inventory_hosts=["pm1"], cluster_nodes=online(["pm1"]))["offline_with_first"] == []
    moved = cluster(3, pm1=node(NEW))
    assert plan(moved, PM, NEW, inventory_hosts=list(moved),
                cluster_nodes=online(moved, {"pm1": NEW}))["offline_with_first"] == []


def test_connects_first_step_puts_the_stopped_nodes_back_while_no_first_node_has_the_target():
    nodes = cluster(3, prefix="c")
    upgrade = plan(nodes, CONNECT, NEW, inventory_hosts=list(nodes))
    # c1 only unpacked (not configured, so not started): the schema did not move, the stopped c2 and c3 go back.
    assert restore(upgrade, "first", {"c1": "", "c2": OLD, "c3": OLD}, play_hosts=["c1"], record=CONNECT) == [
        "c2", "c3"]
    assert restore(upgrade, "first", {"c1": NEW, "c2": OLD, "c3": OLD}, play_hosts=["c1"], record=CONNECT) == []
    assert restore(upgrade, "first", {"c1": "", "c2": OLD, "c3": OLD}, unreachable=["c1"], play_hosts=["c1"],
                   record=CONNECT) == []
    # A failed unpack leaves c1 unable to serve the old version: nothing goes back from the early step.
    assert restore(upgrade, "early", {"c1": ""}, play_hosts=["c1"], record=CONNECT) == []


def test_nothing_goes_back_once_a_node_serves_the_target():
    nodes = cluster(3, pm1=node(NEW))
    upgrade = plan(nodes, PM, NEW, inventory_hosts=list(nodes), cluster_nodes=online(nodes, {"pm1": NEW}))
    assert restore(upgrade, "stop", {"pm2": OLD, "pm3": OLD}, play_hosts=["pm2", "pm3"]) == []


def test_a_node_that_did_not_serve_before_the_run_is_not_put_back():
    nodes = cluster(3, prefix="c", c3=node(active=False, healthy=False))
    upgrade = plan(nodes, CONNECT, NEW, inventory_hosts=list(nodes))
    assert restore(upgrade, "stop", {"c2": OLD, "c3": OLD}, play_hosts=["c2", "c3"], record=CONNECT) == ["c2"]


def test_package_manager_first_batch_left_running_by_an_earlier_run_is_not_admitted():
    # pm1 got the target version and runs (offline) when the run stopped: the playbook alone brings it back.
    nodes = cluster(3, pm1=node(NEW, healthy=False))
    result = plan(nodes, PM, NEW, inventory_hosts=list(nodes),
                  cluster_nodes=listing(("pm1", NEW, "offline"), ("pm2", OLD, "online"), ("pm3", OLD, "online")))
    assert result["steps"]["first"] == ["pm1"] and result["keep_running"] == ["pm1"]
    assert result["hold"] is True and result["admit"] == []


def test_a_record_that_does_not_say_its_nodes_fail_their_health_check_out_of_service_gets_no_admission():
    record = dict(CONNECT, upgrade={"early_batch": False, "stops_for_upgrade": True})
    result = plan(cluster(2, prefix="c"), record, NEW, inventory_hosts=["c1", "c2"])
    assert result["hold"] is True and result["steps"]["first"] == ["c1"]
    assert result["admit"] == []
