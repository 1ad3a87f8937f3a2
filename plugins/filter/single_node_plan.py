# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Leaving high availability for one node: what ha_to_single_node does to which node, and what later runs refuse.

Pure functions (unit-tested in tests/unit/plugins/filter/test_single_node_plan.py); the playbook reads the nodes, calls
single_node_plan once, and runs the steps it names. retired_refusal is what every other playbook asks a node first.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: single_node_plan
short_description: Plan the move of a Posit product cluster to one node from the state of every node
version_added: 0.2.0
author:
  - positops.ha maintainers (@positops)
description:
  - Decides which nodes C(ha_to_single_node.yml) takes out of the load balancer, stops and marks retired, whether the
    kept node stops for the copy of the shared data, and whether the run must be refused before any change.
  - The run is refused, naming the fix, when the product's record does not support a single node, when the kept
    node is not in the product's inventory group, when nodes of the group are left out of the play (C(--limit)),
    when the kept node was itself retired or does not serve, or when the data should move but the record names no
    local directory.
  - Nothing is left to do when the kept node serves, every other node is stopped and marked retired, and the kept
    node already uses the local data directory (when the data moves).
options:
  _input:
    description:
      - The play's nodes, C({host - state}). Each state has C(active) (the service runs), C(healthy) (the health
        endpoint answered 200), C(retired) (the node's retired marker for this product, empty when none) and
        C(data_dir) (the data directory its configuration names, empty when unknown).
    type: dict
    required: true
  record:
    description: The product record (C(<product>_record) of the product role), C(name), C(label), C(group) and
      C(single_node).
    type: dict
    required: true
  keep:
    description: The node that stays.
    type: str
    required: true
  inventory_hosts:
    description: Every host of the product's inventory group (not only the play's hosts).
    type: list
    elements: str
    required: true
  move_data:
    description: Move the shared data to the kept node's local directory.
    type: bool
    default: false
  local_data_dir:
    description: That directory; the record's C(single_node.local_data_dir) when empty.
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: Plan the move to one node
  ansible.builtin.set_fact:
    ha_to_single_node_plan: >-
      {{ dict(ansible_play_hosts_all | zip(ansible_play_hosts_all | map('extract', hostvars, 'ha_to_single_node_state')))
         | positops.ha.single_node_plan(record=package_manager_record, keep='pm1',
                                        inventory_hosts=groups['package_manager'], move_data=true) }}
  run_once: true
"""

RETURN = r"""
_value:
  description: What the move to one node does to each node, and whether it may start.
  type: dict
  contains:
    refusal:
      description: Why the run must stop before any change, and the fix (empty when it may go on).
      type: str
    keep:
      description: The node that stays.
      type: str
    remove:
      description: The other nodes of the group.
      type: list
      elements: str
    stop:
      description: Removed nodes whose service still runs; taken out of the load balancer and stopped.
      type: list
      elements: str
    retire:
      description: Removed nodes not marked retired yet.
      type: list
      elements: str
    move_data:
      description: True when the data is copied to the kept node in this run (the kept node stops for the copy).
      type: bool
    data_dir:
      description: The data directory of the kept node at the end.
      type: str
    done:
      description: True when nothing is left to change.
      type: bool
    summary:
      description: The plan in one sentence, for the run's output.
      type: str
"""

from ansible.errors import AnsibleFilterError


def _names(hosts):
    return ", ".join(hosts) or "none"


def refusal(nodes, record, keep, inventory_hosts, move_data, local_data_dir):
    label, group = record.get("label", record["name"]), record.get("group", record["name"])
    single = record.get("single_node") or {}
    if not single.get("supported"):
        why_not = single.get("why_not", "the vendor documents no way back from a cluster to one node")
        return ("%s: %s. Fix: keep the cluster; ha_to_single_node supports products whose record says "
                "single_node.supported." % (label, why_not))
    if keep not in inventory_hosts:
        return ("ha_to_single_node_keep is '%s', which is not a node of the inventory group '%s' (%s). Fix: "
                "-e ha_to_single_node_keep=<one of %s>."
                % (keep, group, _names(inventory_hosts), _names(inventory_hosts)))
    left_out = [host for host in inventory_hosts if host not in nodes]
    if left_out:
        return ("the run reads only %s, but %s of the group '%s' are left out (--limit): they would keep serving "
                "as a cluster. Fix: run without --limit." % (_names(sorted(nodes)), _names(left_out), group))
    marker = nodes[keep].get("retired") or {}
    if marker:
        return ("%s was retired from %s on %s (run %s): it cannot be the kept node. Fix: -e "
                "ha_to_single_node_keep=<the node that serves>." % (
                    keep, label, marker.get("retired_at", "?"), marker.get("run", "?")))
    if move_data and not (local_data_dir or single.get("local_data_dir")):
        return ("%s keeps its data where it is (its record names no local data directory). Fix: leave "
                "ha_to_single_node_move_data false." % label)
    if not nodes[keep].get("healthy"):
        serving = [host for host in inventory_hosts if nodes[host].get("healthy") and host != keep]
        return ("%s does not serve (its health check failed, service %s), nothing was changed. Fix: start it or "
                "repair it with site.yml first%s." % (
                    keep, "running" if nodes[keep].get("active") else "stopped",
                    ", or keep a node that serves: -e ha_to_single_node_keep=%s" % serving[0] if serving else ""))
    return ""


def plan(nodes, record, keep, inventory_hosts, move_data=False, local_data_dir=""):
    if not isinstance(nodes, dict) or not isinstance(record, dict) or "name" not in record:
        raise AnsibleFilterError("single_node_plan needs {host: state} and the product record")
    inventory_hosts = list(inventory_hosts or [])
    local_data_dir = local_data_dir or (record.get("single_node") or {}).get("local_data_dir", "")
    result = {"refusal": refusal(nodes, record, keep, inventory_hosts, bool(move_data), local_data_dir),
              "keep": keep, "remove": [], "stop": [], "retire": [], "move_data": False,
              "data_dir": record.get("data_dir", ""), "done": False}
    if result["refusal"]:
        result["summary"] = "%s to one node: refused: %s" % (record.get("label", record["name"]), result["refusal"])
        return result
    remove = [host for host in inventory_hosts if host != keep]
    result["remove"] = remove
    result["stop"] = [host for host in remove if nodes[host].get("active")]
    result["retire"] = [host for host in remove if not nodes[host].get("retired")]
    if move_data:
        result["data_dir"] = local_data_dir
        result["move_data"] = nodes[keep].get("data_dir") != local_data_dir
    result["done"] = not (result["stop"] or result["retire"] or result["move_data"])
    result["summary"] = summary(result, record)
    return result


def summary(result, record):
    label = record.get("label", record["name"])
    if result["done"]:
        return "%s: %s already serves alone from %s; nothing to change" % (label, result["keep"], result["data_dir"])
    return ("%s to one node: %s stays%s; out of the load balancer and stopped: %s; marked retired: %s" % (
        label, result["keep"],
        " (stopped while the data is copied to %s, then started)" % result["data_dir"] if result["move_data"]
        else " and keeps serving", _names(result["stop"]), _names(result["retire"])))


def single_node_plan(nodes, record, keep, inventory_hosts, move_data=False, local_data_dir=""):
    return plan(nodes, record, keep, inventory_hosts, move_data, local_data_dir)


def single_node_services(services, backend, keep):
    """The load balancer's services with the kept node alone in the product's backend."""
    return [dict(service, servers=[keep]) if service.get("name") == backend else service for service in services]


def retired_refusal(markers, host, group_names, allow=False, marker_dir="/etc/positops/retired"):
    """Why a run must not touch this node: it holds a retired marker of a product whose inventory group still
    lists it. Empty when it may go on (no such marker, or the operator allowed it)."""
    if allow:
        return ""
    lines = []
    for marker in markers or []:
        product = marker.get("product", "")
        if product not in (group_names or []):
            continue
        lines.append(
            "%s was retired from %s by %s on %s (run %s; %s serves alone). This run would install and start it "
            "again as a node of the cluster. Fix: remove %s from the inventory group '%s'; or, to bring it back "
            "on purpose, run again with -e positops_allow_retired=true and delete %s/%s.json on it." % (
                host, marker.get("label", product), marker.get("by", "ha_to_single_node"),
                marker.get("retired_at", "?"), marker.get("run", "?"), marker.get("kept", "another node"), host,
                product, marker_dir, product))
    return " ".join(lines)


class FilterModule:
    def filters(self):
        return {"single_node_plan": single_node_plan, "single_node_services": single_node_services,
                "retired_refusal": retired_refusal}
