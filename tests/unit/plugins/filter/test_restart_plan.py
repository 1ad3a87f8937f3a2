"""The rolling restart's plan (plugins/filter/restart_plan.py): who restarts, in which batch, who is drained."""

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.positops.ha.plugins.filter.restart_plan import FilterModule, restart_plan


def lb(**admin):
    """One load balancer's status with the package_manager backend's servers in these administrative states."""
    return {"lb1": {"package_manager": {"name": "package_manager", "servers": {
        host: {"name": host, "admin": state} for host, state in admin.items()}}}}


def changed(*hosts, **extra):
    return {host: dict({"changed": True}, **extra) for host in hosts}


def plan(nodes, **options):
    """The plan without the first-build flag, checked on its own below."""
    result = restart_plan(nodes, backend="package_manager", **options)
    assert [batch.pop("fresh") for batch in result] == [all(nodes[host].get("fresh") for host in batch["hosts"])
                                                        for batch in result]
    return result


def test_nothing_changed_restarts_nothing():
    assert plan({"pm1": {}, "pm2": {"changed": False}}, lb_status=lb(pm1="ready", pm2="ready")) == []


def test_one_node_at_a_time_drained_when_in_the_pool():
    nodes = changed("pm1", "pm2", "pm3")
    assert plan(nodes, lb_status=lb(pm1="ready", pm2="ready", pm3="ready")) == [
        {"hosts": [host], "drain": [host], "back": [host]} for host in ("pm1", "pm2", "pm3")]


def test_batches_keep_the_play_order_and_only_the_changed_nodes():
    nodes = dict(changed("pm1", "pm3", "pm4", "pm5"), pm2={})
    assert [batch["hosts"] for batch in plan(nodes, batch=2)] == [["pm1", "pm3"], ["pm4", "pm5"]]


def test_first_build_restarts_together_without_draining():
    nodes = changed("pm1", "pm2", "pm3", fresh=True)
    assert plan(nodes) == [{"hosts": ["pm1", "pm2", "pm3"], "drain": [], "back": []}]


def test_a_new_node_restarts_first_and_the_serving_ones_roll():
    nodes = dict(changed("pm1", "pm2"), pm3={"changed": True, "fresh": True})
    assert plan(nodes, lb_status=lb(pm1="ready", pm2="ready")) == [
        {"hosts": ["pm3"], "drain": [], "back": []},
        {"hosts": ["pm1"], "drain": ["pm1"], "back": ["pm1"]},
        {"hosts": ["pm2"], "drain": ["pm2"], "back": ["pm2"]}]


def test_a_node_this_run_started_already_reads_the_new_configuration():
    assert plan(dict(changed("pm1"), pm2={"changed": True, "started": True})) == [
        {"hosts": ["pm1"], "drain": [], "back": []}]


def test_without_load_balancer_nodes_still_roll_without_draining():
    assert plan(changed("pm1", "pm2"), lb_status={}) == [
        {"hosts": ["pm1"], "drain": [], "back": []}, {"hosts": ["pm2"], "drain": [], "back": []}]


def test_a_node_the_operator_took_out_is_restarted_and_left_out():
    result = plan(changed("pm1", "pm2"), lb_status=lb(pm1="maint", pm2="drain"))
    assert result == [{"hosts": ["pm1"], "drain": [], "back": []}, {"hosts": ["pm2"], "drain": [], "back": []}]


def test_in_the_pool_of_any_load_balancer_is_drained():
    status = dict(lb(pm1="maint"), lb2=lb(pm1="ready")["lb1"])
    assert plan(changed("pm1"), lb_status=status)[0]["drain"] == ["pm1"]


def test_an_unknown_backend_or_server_is_not_drained():
    assert plan(changed("pm1"), lb_status={"lb1": {"connect": {"servers": {"pm1": {"admin": "ready"}}}}}) == [
        {"hosts": ["pm1"], "drain": [], "back": []}]


def test_a_node_an_earlier_run_left_half_way_restarts_and_comes_back():
    result = plan({"pm1": {"marked": True}, "pm2": {}}, lb_status=lb(pm1="maint", pm2="ready"))
    assert result == [{"hosts": ["pm1"], "drain": [], "back": ["pm1"]}]


@pytest.mark.parametrize("batch", [0, -1, "two", None])
def test_a_batch_below_one_is_refused_naming_the_variable(batch):
    with pytest.raises(AnsibleFilterError, match="product_common_restart_batch must be a number of nodes, 1 or more"):
        plan(changed("pm1"), batch=batch)


def test_the_backend_is_required():
    with pytest.raises(AnsibleFilterError, match="backend"):
        restart_plan(changed("pm1"))


def test_registered_as_a_filter():
    assert FilterModule().filters()["restart_plan"] is restart_plan
