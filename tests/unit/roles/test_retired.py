"""product_common's retire and retired entry points on this machine: the marker ha_to_single_node leaves makes the
next run refuse the node, naming the run, the kept node and both fixes; the override and another group go on.
Run with `-i localhost,`, whose only group is 'ungrouped': the record's name stands for the product's group."""

import json

from .conftest import failure_messages

RECORD = {"name": "ungrouped", "label": "Posit Test Product"}


def retire_then_check(run_playbook, tmp_path, **check_vars):
    marker_dir = str(tmp_path / "retired")
    retire = {"name": "Retire", "ansible.builtin.include_role": {"name": "positops.ha.product_common",
                                                                 "tasks_from": "retire"},
              "vars": {"product_common_record": RECORD, "product_common_retired_run": "20261203T160000Z",
                       "product_common_retired_kept": "node1", "product_common_retired_dir": marker_dir}}
    check = {"name": "Check", "ansible.builtin.include_role": {"name": "positops.ha.product_common",
                                                               "tasks_from": "retired"},
             "vars": dict({"product_common_retired_dir": marker_dir}, **check_vars)}
    show = {"name": "Show", "ansible.builtin.debug": {"var": "product_common_retired"}}
    return run_playbook([retire, check, show]), marker_dir


def test_a_retired_node_still_in_its_group_is_refused(run_playbook, tmp_path):
    result, marker_dir = retire_then_check(run_playbook, tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    [message] = failure_messages(result.json)
    assert message.startswith("localhost was retired from Posit Test Product by positops.ha.ha_to_single_node on ")
    assert "(run 20261203T160000Z; node1 serves alone)" in message
    assert "remove localhost from the inventory group 'ungrouped'" in message
    assert "-e positops_allow_retired=true and delete %s/ungrouped.json" % marker_dir in message
    marker = json.loads((tmp_path / "retired" / "ungrouped.json").read_text())
    assert (marker["product"], marker["kept"], marker["run"]) == ("ungrouped", "node1", "20261203T160000Z")


def test_the_override_goes_on_and_the_markers_are_read(run_playbook, tmp_path):
    result = retire_then_check(run_playbook, tmp_path, product_common_allow_retired=True)[0]
    assert result.returncode == 0, result.stdout + result.stderr
    assert failure_messages(result.json) == []
    shown = [task["hosts"]["localhost"] for play in result.json["plays"] for task in play["tasks"]
             if task["task"]["name"] == "Show"][0]
    assert shown["product_common_retired"][0]["kept"] == "node1"


def test_no_marker_goes_on(run_playbook, tmp_path):
    check = {"name": "Check", "ansible.builtin.include_role": {"name": "positops.ha.product_common",
                                                               "tasks_from": "retired"},
             "vars": {"product_common_retired_dir": str(tmp_path / "none")}}
    result = run_playbook([check])
    assert result.returncode == 0, result.stdout + result.stderr
