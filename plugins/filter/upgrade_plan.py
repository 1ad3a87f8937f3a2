# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rolling upgrade's plan: which nodes go in which step, decided from every node's state and the product record.

Pure functions (unit-tested in tests/unit/plugins/filter/test_upgrade_plan.py); the role only reads states, calls
this filter once, and runs the steps it names.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: upgrade_plan
short_description: Plan a rolling upgrade of a Posit product cluster from the state of every node
version_added: 0.2.0
author:
  - positops.ha maintainers (@positops)
description:
  - Decides which nodes a rolling upgrade takes out, upgrades and brings back in each step, following the product's
    documented procedure (the upgrade traits of its record), and whether the run must be refused.
  - "Steps: V(early) (the first nodes out of service and upgraded, or for Connect and Workbench unpacked, while the
    other nodes serve), V(stop) (out of service together; no node serves afterwards), V(first) (upgraded first
    and back; the schema migrates), V(rest) (upgraded after the schema moved, RV(_value.rest_serial) at a time)."
  - A node already on the target version that serves is done. A node on the target version that does not serve yet
    (an earlier run stopped after installing it, or it is still migrating) comes back first and is never stopped
    again. Once any node serves the target version the schema has moved, so every other node goes to V(rest).
  - The run is refused, naming the nodes, when the installed version of a node is newer than the target, when the
    product is not installed on a node, when the batch size leaves no node serving, or when nodes of the cluster
    are left out of the play (C(--limit)) while they do not run the target version, since they would then serve
    an older binary than the schema.
options:
  _input:
    description:
      - "The play's nodes, C({host: state}). Each state has C(dpkg) (the output of C(dpkg-query --show
        --showformat='${db:Status-Status}|${Version}|${db:Status-Eflag}') or empty when the package is unknown),
        C(active) (the service runs), C(healthy) (the health endpoint answered 200), and for products with a node
        command line C(node_name) (the node's name in the cluster's own list)."
    type: dict
    required: true
  record:
    description:
      - The product record (C(<product>_record) of the product role), with C(name), C(label), C(node_cli),
        C(upgrade.early_batch) and C(upgrade.stops_for_upgrade), and optionally C(upgrade.unhealthy_out_of_service)
        (false when missing, and the load balancer then admits no node by itself).
    type: dict
    required: true
  target:
    description: The version to upgrade to.
    type: str
    required: true
  batch_size:
    description: Package Manager's first batch, or how many nodes the V(rest) step upgrades at a time for the other
      products; 0 means half the nodes (at least one).
    type: int
    default: 0
  inventory_hosts:
    description: Every host of the product's inventory group (not only the play's hosts).
    type: list
    elements: str
  cluster_nodes:
    description:
      - The cluster's own node list (RV(positops.ha.cluster_node_info#module:nodes)), or V(null) when the product has none
        or no node could list it. Nodes are matched to hosts by their C(node_name), case-insensitively.
    type: list
    elements: dict
"""

EXAMPLES = r"""
- name: Plan the upgrade
  ansible.builtin.set_fact:
    rolling_upgrade_plan: >-
      {{ dict(ansible_play_hosts_all | zip(ansible_play_hosts_all | map('extract', hostvars, 'rolling_upgrade_state')))
         | positops.ha.upgrade_plan(record=package_manager_record, target='2023.12.0-13',
                                    inventory_hosts=groups['package_manager'],
                                    cluster_nodes=rolling_upgrade_cluster.nodes) }}
  run_once: true
"""

RETURN = r"""
_value:
  description: Which nodes the upgrade takes, in which steps, and whether it may start.
  type: dict
  contains:
    refusal:
      description: Why the run must stop before any change (empty when it may go on).
      type: str
    done:
      description: Nodes already on the target version and serving; left alone.
      type: list
      elements: str
    todo:
      description: Nodes to upgrade.
      type: list
      elements: str
    steps:
      description: "C({early, stop, first, rest}), each a list of hosts."
      type: dict
    keep_running:
      description: Nodes on the target version whose service runs but does not serve yet (starting or migrating);
        the V(early) and V(stop) steps do not take them offline or stop them.
      type: list
      elements: str
    rest_serial:
      description: How many nodes of the V(rest) step are upgraded at a time.
      type: int
    resuming:
      description: True when an earlier run got somewhere (some nodes already hold the target version, or a package
        was left half-installed); the playbook then skips the pre-flight checks, which ran before that run.
      type: bool
    early_action:
      description:
        - What the V(early) step does after taking its nodes out of service, V(install) (Package Manager, whose new
          version starts offline) or V(unpack) (products that stop for an upgrade; the package is unpacked and
          configured, which starts it, in the V(first) step once every other node stopped).
      type: str
    hold_step:
      description: The step that takes the last serving node out (V(stop), or V(early) for a single node), where the
        load balancer's hold goes on; empty without a hold.
      type: str
    hold:
      description: True when the V(stop) step leaves no node serving, so the load balancer should hold requests until
        the V(first) nodes are back.
      type: bool
    admit:
      description:
        - With the hold, the V(first) nodes that the load balancer may put back into the pool by itself at their
          first healthy answer (M(positops.ha.haproxy_hold) O(positops.ha.haproxy_hold#module:admit)), half a second
          before the playbook would (it admits a node only at a 200 that follows an answer that was not, so an
          old version still answering is never admitted). Only for products whose record says
          C(upgrade.unhealthy_out_of_service) - a node out of service fails its health check (stopped; a Package
          Manager node offline answers 503 to every request), so the first node's next healthy answer comes from
          its new version, online, once the schema has migrated.
        - Never a node still running from an earlier run, which may answer before the other nodes have left.
      type: list
      elements: str
    offline_with_first:
      description:
        - Package Manager's V(stop) nodes whose service runs. The V(stop) step only drains them at the load balancer;
          the V(first) nodes take them offline in the cluster in the same M(positops.ha.cluster_node) task that
          brings the first nodes online (O(positops.ha.cluster_node#module:offline_first)), which keeps a module
          start and a node listing out of the window in which no node serves.
      type: list
      elements: str
    nodes:
      description: Per host, what the plan read (C(installed), C(needs_reinstall), C(needs_configure), C(serving),
        C(node_name)).
      type: dict
    summary:
      description: The plan in one sentence, for the run's output.
      type: str
"""

import re

from ansible.errors import AnsibleFilterError

from ansible.module_utils.compat.version import LooseVersion

STEPS = ("early", "stop", "first", "rest")


def read_dpkg(line):
    """The package's state from the dpkg-query line: ``{installed, version, needs_reinstall, needs_configure,
    absent}``. ``installed`` is the version only when fully installed; ``version`` is dpkg's version whatever the
    state (an unpacked package already has its new version there)."""
    fields = (line or "").strip().split("|")
    status = fields[0] if fields else ""
    version = fields[1] if len(fields) > 1 else ""
    eflag = fields[2] if len(fields) > 2 else "ok"
    state = {"installed": "", "version": version, "needs_reinstall": False, "needs_configure": False,
             "absent": False}
    if status in ("", "not-installed", "config-files"):
        state.update(version="", absent=True)
    elif status == "half-installed" or eflag == "reinstreq":
        state["needs_reinstall"] = True
    elif status == "installed":
        state["installed"] = version
    else:
        # unpacked, half-configured, triggers-awaited/-pending: dpkg --configure -a finishes them.
        state["needs_configure"] = True
    return state


def _newer(installed, target):
    try:
        return LooseVersion(_comparable(installed)) > LooseVersion(_comparable(target))
    except TypeError:
        return False


def _comparable(version):
    # Debian versions compare as loose versions once the revision separators are dots ("2023.12.0-13").
    return re.sub(r"[-+~]", ".", version)


def _cluster_rows(cluster_nodes, name):
    wanted = (name or "").lower()
    return [row for row in cluster_nodes or [] if (row.get("name") or "").lower() == wanted]


def _serving_in_cluster(rows):
    return any(row.get("mode") == "online" for row in rows)


def read_nodes(nodes, record, cluster_nodes):
    """Per host: installed version, repair needs, and whether it serves (healthy, and online where the product
    keeps node modes)."""
    has_modes = bool(record.get("node_cli")) and cluster_nodes is not None
    read = {}
    for host, state in nodes.items():
        package = read_dpkg(state.get("dpkg"))
        serving = bool(state.get("healthy"))
        if has_modes:
            serving = serving and _serving_in_cluster(_cluster_rows(cluster_nodes, state.get("node_name") or host))
        read[host] = dict(package, active=bool(state.get("active")), serving=serving,
                          node_name=state.get("node_name") or host)
    return read


def refusal(read, record, target, batch_size, play_hosts, inventory_hosts, cluster_nodes, node_names):
    """Why the run must not start (empty string when it may)."""
    label = record.get("label", record.get("name", "the product"))
    version_var = record.get("version_var", "%s_version" % record.get("name", "product"))
    absent = sorted(host for host, node in read.items() if node["absent"])
    if absent:
        return ("%s is not installed on %s. Build the cluster with positops.ha.site first; the rolling upgrade only "
                "upgrades nodes that run the product." % (record.get("package", label), ", ".join(absent)))
    newer = sorted("%s (%s)" % (host, node["installed"]) for host, node in read.items()
                   if node["installed"] and _newer(node["installed"], target))
    if newer:
        return ("%s runs a version newer than the target %s: %s. Downgrades are not supported (the schema only "
                "moves forward); set %s to the version to upgrade to, or restore a backup with positops.ha.restore."
                % (label, target, ", ".join(newer), version_var))
    size = len(play_hosts)
    if batch_size < 0 or (record["upgrade"]["early_batch"] and size > 1 and batch_size >= size):
        return ("rolling_upgrade_batch_size is %s for a cluster of %d nodes: give 0 (half the nodes) or a number of "
                "nodes smaller than the cluster, so that the other nodes keep serving while the first batch is "
                "upgraded." % (batch_size, size))
    # Nodes of the cluster outside this run would go on serving an older binary than the schema.
    left_out = []
    for host in inventory_hosts or []:
        if host in play_hosts:
            continue
        rows = _cluster_rows(cluster_nodes, node_names.get(host, host))
        if not (rows and all(row.get("version") == target for row in rows) and _serving_in_cluster(rows)):
            left_out.append(host)
    known = {(node_names.get(host) or host).lower() for host in play_hosts}
    known |= {(node_names.get(host) or host).lower() for host in inventory_hosts or []}
    for row in cluster_nodes or []:
        name = (row.get("name") or "").lower()
        if name and name not in known and row.get("mode") == "online" and row.get("version") not in (target,):
            left_out.append("%s (listed by the cluster, not in the inventory)" % row.get("name"))
    if left_out:
        return ("%s: %s would keep serving another version than %s while the schema moves: the run covers only %s. "
                "Fix: run without --limit so every node of the cluster is upgraded, or remove the nodes that no "
                "longer belong to the cluster from the inventory group '%s' (and, for Workbench, with "
                "positops.ha.cluster_node state=absent)." % (label, ", ".join(left_out), target,
                                                             ", ".join(play_hosts) or "no node",
                                                             record.get("group", record.get("name"))))
    return ""


def plan(nodes, record, target, batch_size=0, inventory_hosts=None, cluster_nodes=None):
    """The whole plan (see DOCUMENTATION)."""
    if not isinstance(nodes, dict):
        raise AnsibleFilterError("upgrade_plan expects {host: state}, got %s" % type(nodes).__name__)
    upgrade = record.get("upgrade") or {}
    for key in ("early_batch", "stops_for_upgrade"):
        if key not in upgrade:
            raise AnsibleFilterError("upgrade_plan: the record of %s has no upgrade.%s" % (record.get("name"), key))
    batch_size = int(batch_size or 0)
    hosts = list(nodes)
    node_names = {host: (state.get("node_name") or host) for host, state in nodes.items()}
    read = read_nodes(nodes, record, cluster_nodes)
    result = {"refusal": refusal(read, record, target, batch_size, hosts, inventory_hosts, cluster_nodes,
                                 node_names),
              "nodes": read, "done": [], "todo": [], "keep_running": [],
              "steps": {step: [] for step in STEPS}, "rest_serial": 1,
              "hold": False, "hold_step": "", "admit": [], "offline_with_first": [], "early_action": "install"}
    done = [host for host in hosts if read[host]["installed"] == target and read[host]["serving"]]
    todo = [host for host in hosts if host not in done]
    # An earlier run got these to the target: installed, or unpacked and waiting for their start (step first).
    staged = [host for host in todo if read[host]["installed"] == target
              or (read[host]["needs_configure"] and read[host]["version"] == target)]
    # Nodes already holding the target version come back first: they are where an earlier run stopped.
    ordered = staged + [host for host in todo if host not in staged]
    half = max(len(hosts) // 2, 1)
    batch = batch_size if batch_size > 0 else half
    steps = result["steps"]
    if not todo:
        pass
    elif done:
        # The schema has moved: no old node may serve again, every other node is upgraded batch by batch.
        steps.update(stop=todo, rest=todo)
    elif upgrade["early_batch"]:
        steps.update(early=ordered[:batch], stop=ordered[batch:], first=ordered[:batch], rest=ordered[batch:])
    else:
        # The first node leaves service and gets the new package unpacked while the others serve: its start (step
        # first, after every other node stopped) is then all that the outage waits for besides the migration.
        steps.update(early=ordered[:1], stop=ordered[1:], first=ordered[:1], rest=ordered[1:])
    result["early_action"] = "install" if upgrade["early_batch"] else "unpack"
    result["keep_running"] = [host for host in staged if read[host]["active"]]
    if upgrade["early_batch"] and not done:
        result["rest_serial"] = max(len(steps["rest"]), 1)
    else:
        result["rest_serial"] = max(batch, 1)
    # From the step that takes the last serving node out until the first ones are back, no node serves: the load
    # balancer holds requests then (the early step, when the cluster has no other node).
    result["hold"] = bool(todo) and not done and bool(steps["first"])
    result["hold_step"] = ("stop" if steps["stop"] else "early") if result["hold"] else ""
    # Admitted by the load balancer at their first healthy answer after a failing one: first nodes whose health
    # check fails out of service (stopped, or Package Manager's offline 503), so that their next healthy answer can
    # only come from their new version, online (see RETURN).
    if result["hold"] and upgrade.get("unhealthy_out_of_service"):
        result["admit"] = [host for host in steps["first"] if host not in result["keep_running"]]
    # Package Manager: the stop step only drains these nodes at the load balancer, and the first nodes' own
    # cluster_node call takes them offline right before it brings the first nodes online (the documented order),
    # which spares the window a module start and a node listing. Only nodes whose service runs can go offline.
    if result["hold"] and upgrade["early_batch"] and record.get("node_cli"):
        result["offline_with_first"] = [host for host in steps["stop"]
                                        if read[host]["active"] and host not in result["keep_running"]]
    # An earlier run got somewhere (versions mixed, a package left half-installed): pre-flight ran before it.
    result["resuming"] = bool(staged or done and todo or any(
        read[host]["needs_reinstall"] or read[host]["needs_configure"] for host in hosts))
    result.update(done=done, todo=todo)
    result["summary"] = summary(result, record, target)
    return result


def summary(result, record, target):
    label = record.get("label", record.get("name"))
    if result["refusal"]:
        return "%s to %s: refused: %s" % (label, target, result["refusal"])
    if not result["todo"]:
        return "%s to %s: nothing to do, every node already runs it and serves" % (label, target)
    steps = result["steps"]

    def names(hosts):
        return ", ".join(hosts) or "none"

    return ("%s to %s: already done: %s; upgraded while the others serve: %s; out of service together: %s; first "
            "back (schema migration): %s; then, %d at a time: %s" % (
                label, target, names(result["done"]), names(steps["early"]), names(steps["stop"]),
                names(steps["first"]), result["rest_serial"], names(steps["rest"])))


def upgrade_plan(nodes, record, target, batch_size=0, inventory_hosts=None, cluster_nodes=None):
    return plan(nodes, record, target, batch_size, inventory_hosts, cluster_nodes)


def upgrade_restore(upgrade, step, installed_now, unreachable=None, play_hosts=None, record=None, target=None,
                    stages=None):
    """The nodes a failed step puts back into service (the upgrade_restore filter, documented in upgrade_restore.yml).

    Only while the schema cannot have moved: no node serves the target version yet, and the failed step is one
    that takes nodes out (early, stop), or the first step before any first node could migrate: for products
    without an early batch while no first node holds the target version, for Package Manager while every first
    node failed before it was asked to come online (its cluster_node ``stage`` is ``offline_first``). Only nodes
    that served before the run, answer, and still run the version they had then go back.
    """
    unreachable = set(unreachable or [])
    record = record or {}
    target = target or upgrade.get("target")
    first = upgrade["steps"]["first"]
    first_untouched = all(installed_now.get(host) != target for host in first) and not unreachable & set(first)
    early_batch = (record.get("upgrade") or {}).get("early_batch", True)
    stages = stages or {}
    # Every first node failed while taking the others offline: none was asked to come online (and migrate).
    never_asked_online = bool(play_hosts) and not unreachable & set(play_hosts) and all(
        stages.get(host) == "offline_first" for host in play_hosts)
    schema_safe = not upgrade["done"] and (
        step in ("early", "stop")
        or (step == "first" and (first_untouched if not early_batch else never_asked_online)))
    if not schema_safe:
        return []
    candidates = upgrade["steps"]["stop"] if step == "first" else list(play_hosts or [])
    return [host for host in candidates
            if upgrade["nodes"].get(host, {}).get("serving") and host not in unreachable
            and installed_now.get(host) == upgrade["nodes"][host]["installed"]]


def dpkg_status(line):
    """The dpkg_status filter (documented in dpkg_status.yml)."""
    return read_dpkg(line)


class FilterModule:
    def filters(self):
        return {"upgrade_plan": upgrade_plan, "dpkg_status": dpkg_status, "upgrade_restore": upgrade_restore}
