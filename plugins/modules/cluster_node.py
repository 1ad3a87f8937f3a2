#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: cluster_node
short_description: Take Posit Package Manager or Workbench cluster nodes offline or online, or delete them
version_added: 0.1.0
description:
  - Changes the mode of cluster nodes through the product's own command line tool and waits until every node
    has reached it.
  - For Posit Package Manager it runs C(rspm cluster offline|online --nodes=... --timeout=...), which may be run on
    any node of the cluster and changes the named nodes. The node list is read as JSON
    (C(--output-format=json)) when this C(rspm) gives it, else from its human listing.
  - For Posit Workbench, C(rstudio-server offline|online) act only on the node they run on, so the task must run
    on the node it changes (use C(delegate_to)); the module refuses to change another node. O(state=absent) runs
    C(rstudio-server delete-node ID), which may be run from any node.
  - Nodes already in the requested state are left alone, without any command that changes something.
  - Every name is checked against the cluster's node list before anything is changed.
extends_documentation_fragment:
  - positops.ha.cluster_cli
  - ansible.builtin.action_common_attributes
options:
  nodes:
    description:
      - The nodes to change.
      - For O(product=package_manager), host names as printed by C(rspm cluster nodes).
      - For O(product=workbench), host names as printed by C(rstudio-server list-nodes) (compared without regard
        to case) or node IDs. When a host name appears on more than one row, give the ID.
    type: list
    elements: str
    required: true
  state:
    description:
      - V(online) and V(offline) set the node mode.
      - V(absent) removes Workbench nodes from the cluster with C(rstudio-server delete-node). It is refused for a
        node whose status is C(Online) or C(Starting) (stop the node first, since deleting a serving node loses its
        sessions), unless it has missed its check-in (then the module warns). A node missing from the list already
        is absent. Package Manager has no such command, so V(absent) is refused for O(product=package_manager).
    type: str
    choices: [online, offline, absent]
    default: online
  health_url:
    description:
      - With O(state=online), a health URL of the one node in O(nodes), as the host the task runs on reaches it
        (for example V(http://127.0.0.1:4242/__ping__) when the task runs on that node). The task returns only
        once it answers 200, so no separate health wait is needed.
      - For Package Manager it is requested every 0.25 s while C(rspm) waits for the node, and the task returns
        at the first 200 answer, without waiting for C(rspm)'s own next look (its wait then ends by itself). This
        shortens the upgrade's window in which no node serves. A failure of C(rspm) before that fails the task
        as without this option.
      - Not allowed with more than one node in O(nodes), or with another O(state).
    type: str
  timeout:
    description:
      - Seconds to wait for the nodes to reach O(state). Package Manager waits itself (C(--timeout)); for
        Workbench the module polls C(rstudio-server list-nodes) about every second until the deadline.
      - When the time is up the task fails and reports every node's actual state.
      - Use a long timeout when bringing upgraded Package Manager nodes online, since schema migrations run then.
    type: int
    default: 60
  offline_first:
    description:
      - Package Manager nodes to take offline, and wait for, before the nodes in O(nodes) come online; only with
        O(product=package_manager) and O(state=online), and no node may be in both lists.
      - "This is the order of Posit's upgrade procedure: the nodes still on the old version go offline, then the
        upgraded nodes come online, and the first of them migrates the schema. In one task, the upgrade's window in
        which no node serves does not also hold a second module start and node listing."
      - When they do not all reach offline within O(offline_timeout), the task fails without asking for O(nodes)
        to come online (RV(stage) is V(offline_first)).
    type: list
    elements: str
    default: []
  offline_timeout:
    description: Seconds to wait for the O(offline_first) nodes to be offline.
    type: int
    default: 60
attributes:
  check_mode:
    support: full
    details: In check mode the node list is read, nothing is changed and RV(changed_nodes) lists what would change.
  diff_mode:
    support: none
author:
  - positops.ha maintainers (@positops)
seealso:
  - module: positops.ha.cluster_node_info
"""

EXAMPLES = r"""
- name: Take two Package Manager nodes offline before upgrading them
  positops.ha.cluster_node:
    product: package_manager
    nodes: [pm1, pm2]
    state: offline

- name: Bring upgraded Package Manager nodes online, allowing time for schema migrations
  positops.ha.cluster_node:
    product: package_manager
    nodes: "{{ upgraded_nodes }}"
    state: online
    timeout: 300

- name: Upgrade step - the old nodes offline, then the upgraded one online and answering its health check
  positops.ha.cluster_node:
    product: package_manager
    offline_first: [pm2, pm3]
    offline_timeout: 120
    nodes: [pm1]
    state: online
    timeout: 600
    health_url: http://127.0.0.1:4242/__ping__

- name: Take this Workbench node offline (rstudio-server offline acts on the local node only)
  positops.ha.cluster_node:
    product: workbench
    nodes: ["{{ inventory_hostname }}"]
    state: offline

- name: Bring another Workbench node online by running the task on it
  positops.ha.cluster_node:
    product: workbench
    nodes: [rsw2]
    state: online
  delegate_to: rsw2

- name: Delete a stale Workbench node record by ID (it must not be Online)
  positops.ha.cluster_node:
    product: workbench
    nodes: ["1"]
    state: absent
"""

RETURN = r"""
nodes:
  description:
    - The requested nodes (those of O(offline_first) first) as listed by the product after the change (in check
      mode, before it), each with the keys
      that M(positops.ha.cluster_node_info) returns in its RV(positops.ha.cluster_node_info#module:nodes) (name, id,
      version, status, mode, ipv4, port, last_seen, health, missed_check_in) and with the same meaning.
    - Nodes deleted with O(state=absent) are no longer listed.
  returned: success
  type: list
  elements: dict
  sample:
    - {name: pm1, id: null, version: 2023.12.0-13, status: offline, mode: offline, ipv4: null, port: null,
       last_seen: null, health: null, missed_check_in: null}
changed_nodes:
  description: Names of the nodes that were changed (in check mode, that would be changed).
  returned: success
  type: list
  elements: str
  sample: [pm1]
healthy:
  description:
    - Whether O(health_url) answered 200; only with O(health_url), and then always true on success.
    - When it answered before C(rspm) returned, RV(nodes) is the listing read before the change, with the mode (and
      status) that answer proved.
  returned: success and O(health_url) given
  type: bool
  sample: true
waited:
  description: Seconds spent waiting for the nodes to reach the state (0 when nothing had to change).
  returned: success
  type: float
  sample: 4.2
stage:
  description:
    - With O(offline_first), on failure, the part of the task that failed. V(offline_first) - before C(rspm cluster
      online) ran, so the nodes in O(nodes) are as they were; V(online) - after.
  returned: failure with O(offline_first)
  type: str
  sample: offline_first
commands:
  description: Every command line the module ran, in order (reads included).
  returned: always
  type: list
  elements: str
  sample:
    - /opt/rstudio-pm/bin/rspm cluster nodes --output-format=json
    - /opt/rstudio-pm/bin/rspm cluster offline --nodes=pm1 --timeout=60 --output-format=json
"""

import re
import threading
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import mask_url

from ansible_collections.positops.ha.plugins.module_utils._cluster import (
    PRODUCT_CLIS, cluster_argument_spec, describe_nodes, product_cli)
from ansible_collections.positops.ha.plugins.module_utils._health import probe
from ansible_collections.positops.ha.plugins.module_utils._workbench import LIVE_STATUSES, is_local, local_identity

POLL_INTERVAL = 1.0
# health_url: how often it is requested, and how long one request may take.
HEALTH_DELAY = 0.25
HEALTH_REQUEST_TIMEOUT = 5


def _now():
    return time.monotonic()


def _sleep(seconds):
    time.sleep(seconds)


def _names(module, option):
    """The names given in ``option``, stripped, each once, in order; refuses empty names and lists of names."""
    names = []
    for name in module.params[option] or []:
        name = (name or "").strip()
        if not name:
            module.fail_json(msg="%s contains an empty name; list host names (or Workbench node IDs)." % option)
        if re.search(r"[\s,]", name):
            module.fail_json(msg="Node name %r in %s contains a comma or white space; give one name per list item."
                             % (name, option))
        if name not in names:
            names.append(name)
    return names


def _validate(module):
    params = module.params
    requested = _names(module, "nodes")
    if not requested:
        module.fail_json(msg="nodes is empty; list at least one node.")
    for option in ("timeout", "offline_timeout"):
        if params[option] < 1:
            module.fail_json(msg="%s must be at least 1 second, got %d." % (option, params[option]))
    if params["health_url"] and (params["state"] != "online" or len(requested) != 1):
        module.fail_json(msg="health_url is the health URL of one node coming online; got state=%s and %d node(s)"
                             " (%s). Give one node with state=online, or leave health_url out."
                         % (params["state"], len(requested), ", ".join(requested)))
    offline_first = _names(module, "offline_first")
    if offline_first and (params["product"] != "package_manager" or params["state"] != "online"):
        module.fail_json(msg="offline_first takes Package Manager nodes offline before others come online; got "
                             "product=%s and state=%s. Give product=package_manager with state=online, or take the "
                             "nodes offline in a task of their own." % (params["product"], params["state"]))
    both = [name for name in offline_first if name in requested]
    if both:
        module.fail_json(msg="%s cannot both go offline first and come online: remove %s from offline_first or "
                             "from nodes." % (", ".join(both), "it" if len(both) == 1 else "them"))
    adapter = PRODUCT_CLIS.get(params["product"])
    if params["state"] == "absent" and adapter is not None and adapter.cannot_delete_nodes:
        module.fail_json(msg=adapter.cannot_delete_nodes)
    # Cleaned once, here: the product's function reads it from the parameters.
    params["offline_first"] = offline_first
    return requested


def _finish(module, cli, records, changed_nodes, started=None, healthy=False):
    """Exit with the nodes; ``started`` is when the change began (None: nothing changed). With health_url, not in
    check mode, the node must answer it first (``healthy``: it already did)."""
    extra = {}
    if module.params["health_url"] and not module.check_mode:
        if not healthy:
            _wait_healthy(module, cli, _now() if started is None else started)
        extra["healthy"] = True
    waited = 0 if started is None else _now() - started
    module.exit_json(changed=bool(changed_nodes), nodes=records, changed_nodes=changed_nodes,
                     waited=round(waited, 1), commands=cli.commands, **extra)


def _wait_healthy(module, cli, started):
    """Request health_url every HEALTH_DELAY s until it answers 200; fail once the task's timeout has passed."""
    url = module.params["health_url"]
    deadline = started + module.params["timeout"]
    attempts = 0
    while True:
        attempts += 1
        status, error = probe(module, url, HEALTH_REQUEST_TIMEOUT)
        if status == 200:
            return
        if _now() >= deadline:
            module.fail_json(msg="%s is %s in the cluster, but %s did not answer 200 within %ss (%d attempts; last "
                                 "answer: %s). Fix: read the node's service log for why it does not serve, then run "
                                 "the task again." % (module.params["nodes"][0].strip(), module.params["state"],
                                                      mask_url(url), module.params["timeout"], attempts,
                                                      "HTTP %s" % status if status is not None else error),
                             commands=cli.commands, **cli.failure_details)
        _sleep(max(0.0, min(HEALTH_DELAY, deadline - _now())))


def _change_while_probing(module, change):
    """Run ``change`` (a CLI call that waits for the nodes itself) in a thread and request health_url meanwhile.
    Return the CLI's result, or None when health_url answered 200 first (the CLI's wait then ends by itself)."""
    outcome = {}

    def run():
        try:
            outcome["result"] = change()
        except BaseException as exc:  # pylint: disable=broad-except
            # Raised here, it would be lost: the main thread re-raises it.
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="cluster-cli")
    worker.daemon = True
    worker.start()
    while worker.is_alive():
        status, dummy = probe(module, module.params["health_url"], HEALTH_REQUEST_TIMEOUT)
        if status == 200:
            return None
        worker.join(HEALTH_DELAY)
    if "error" in outcome:
        # A SystemExit is fail_json's, which has printed the result already: raised here, it ends the module.
        raise outcome["error"]
    return outcome["result"]


def _mode_change_result(cli, result, state, names, timeout, started, context=""):
    """Fail unless ``rspm cluster <state>`` (``result``) left every node of ``names`` in ``state``; return the
    listing it printed, by name. ``context`` starts each message (which part of the task failed)."""
    waited = _now() - started
    if result.rc != 0:
        error = cli.mode_error(result)
        if error and error["kind"] == "timeout":
            by_name = dict((node["name"], node) for node in cli.listing(result))
            cli.fail_command("%sTimed out after %ss waiting for node(s) to be %s: %s." % (
                context, timeout, state, describe_nodes([by_name[name] for name in names if name in by_name])),
                result, nodes=[by_name[name] for name in names if name in by_name], waited=round(waited, 1))
        if error and error["kind"] == "unknown_nodes":
            cli.fail_command("%srspm does not know node(s) %s (known: %s); the cluster changed while this task ran."
                             % (context, ", ".join(error["unknown"]), ", ".join(error["known"])), result)
        cli.fail_command("%s`%s` failed with exit code %s: %s" % (
            context, result.command, result.rc, (result.stderr or result.stdout).strip()), result)
    after = dict((node["name"], node) for node in cli.listing(result))
    missing = [name for name in names if name not in after]
    wrong = [after[name] for name in names if name in after and after[name]["mode"] != state]
    if missing or wrong:
        cli.fail_command("%srspm reported success but the listing it printed shows %s%s." % (
            context, ("node(s) not %s: %s" % (state, describe_nodes(wrong))) if wrong else "",
            ("%smissing node(s): %s" % ("; " if wrong else "", ", ".join(missing))) if missing else ""), result)
    return after


def package_manager(module, cli, requested):
    state = module.params["state"]
    offline_first = module.params["offline_first"]
    if offline_first:
        # Until `rspm cluster online` runs, the nodes in `nodes` are as they were: a caller may undo the rest.
        cli.failure_details["stage"] = "offline_first"
    records = cli.list_nodes()
    by_name = dict((record["name"], record) for record in records)
    unknown = [name for name in offline_first + requested if name not in by_name]
    if unknown:
        module.fail_json(msg="Unknown Package Manager node(s): %s. Known nodes: %s. Use the names printed by "
                             "`rspm cluster nodes` (Server.HostName or the host name)." % (
                                 ", ".join(unknown), ", ".join(sorted(by_name)) or "none"),
                         known_nodes=sorted(by_name), commands=cli.commands, **cli.failure_details)
    take_offline = [name for name in offline_first if by_name[name]["mode"] != "offline"]
    to_change = [name for name in requested if by_name[name]["mode"] != state]
    if not (take_offline or to_change) or module.check_mode:
        _finish(module, cli, [by_name[name] for name in offline_first + requested], take_offline + to_change)

    started = _now()
    offline_rows = [by_name[name] for name in offline_first]
    if take_offline:
        timeout = module.params["offline_timeout"]
        after = _mode_change_result(
            cli, cli.set_mode("offline", take_offline, timeout), "offline", offline_first, timeout, started,
            context="Taking %s offline before bringing %s online failed (%s not changed): " % (
                ", ".join(take_offline), ", ".join(requested), "it was" if len(requested) == 1 else "they were"))
        offline_rows = [after[name] for name in offline_first]
        by_name.update((name, after[name]) for name in requested if name in after)
        to_change = [name for name in requested if by_name[name]["mode"] != state]
    if offline_first:
        # From here `rspm cluster online` may run: the nodes in `nodes` may change.
        cli.failure_details["stage"] = "online"
    if not to_change:
        _finish(module, cli, offline_rows + [by_name[name] for name in requested], take_offline, started)

    def change():
        return cli.set_mode(state, to_change, module.params["timeout"])

    if module.params["health_url"]:
        result = _change_while_probing(module, change)
        if result is None:
            # rspm's listing gives the mode as the status too.
            _finish(module, cli, offline_rows + [dict(by_name[name], mode=state, status=state) for name in requested],
                    take_offline + to_change, started, healthy=True)
    else:
        result = change()
    after = _mode_change_result(cli, result, state, requested, module.params["timeout"], started)
    _finish(module, cli, offline_rows + [after[name] for name in requested], take_offline + to_change, started)


def _resolve_workbench(module, cli, requested, records, allow_unknown):
    """Map each requested name or ID to exactly one list-nodes row."""
    by_id = dict((str(record["id"]), record) for record in records)
    targets, unknown = [], []
    for item in requested:
        if item in by_id:
            matches = [by_id[item]]
        else:
            matches = [record for record in records if (record["name"] or "").lower() == item.lower()]
        if len(matches) > 1:
            module.fail_json(msg="Workbench node name %r is on %d rows (IDs %s); give the ID of the node you mean. "
                                 "Stale rows can be removed with state=absent." % (
                                     item, len(matches), ", ".join(str(m["id"]) for m in matches)),
                             commands=cli.commands)
        if not matches:
            unknown.append(item)
        elif matches[0] not in targets:
            targets.append(matches[0])
    if unknown and not allow_unknown:
        module.fail_json(msg="Unknown Workbench node(s): %s. Known nodes: %s. Use a host name or ID printed by "
                             "`rstudio-server list-nodes`." % (", ".join(unknown), describe_nodes(records)),
                         known_nodes=[dict(id=r["id"], name=r["name"], status=r["status"]) for r in records],
                         commands=cli.commands)
    return targets


def _wait_workbench(module, cli, done, describe_pending, started):
    """Poll list-nodes until ``done(records)`` holds or the deadline passes; return the records."""
    deadline = started + module.params["timeout"]
    while True:
        records = cli.list_nodes()
        if done(records):
            return records
        if _now() >= deadline:
            module.fail_json(msg="Timed out after %ss waiting for Workbench node(s) to be %s: %s." % (
                module.params["timeout"], module.params["state"], describe_pending(records)),
                nodes=records, waited=round(_now() - started, 1), commands=cli.commands)
        _sleep(max(0.0, min(POLL_INTERVAL, deadline - _now())))


def workbench(module, cli, requested):
    state = module.params["state"]
    records = cli.list_nodes()
    targets = _resolve_workbench(module, cli, requested, records, allow_unknown=(state == "absent"))
    target_ids = [target["id"] for target in targets]

    if state == "absent":
        live = [target for target in targets if target["status"] in LIVE_STATUSES and not target["missed_check_in"]]
        if live:
            module.fail_json(msg="Refusing to delete Workbench node(s) that are still serving: %s. Stop "
                                 "rstudio-server on them first (deleting a running node loses its sessions)."
                             % describe_nodes(live), nodes=targets, commands=cli.commands)
        for target in targets:
            if target["missed_check_in"]:
                module.warn("Deleting Workbench node %s (ID %s), which has missed its check-in; make sure "
                            "rstudio-server is stopped on it." % (target["name"], target["id"]))
        changed = [target["name"] or str(target["id"]) for target in targets]
        if not targets or module.check_mode:
            _finish(module, cli, [] if not module.check_mode else targets, changed)
        started = _now()
        for target in targets:
            cli.delete_node(target["id"])

        def gone(current):
            return not [record for record in current if record["id"] in target_ids]

        def still_there(current):
            return describe_nodes([record for record in current if record["id"] in target_ids])

        _wait_workbench(module, cli, gone, still_there, started)
        _finish(module, cli, [], changed, started)

    to_change = [target for target in targets if target["mode"] != state]
    identity = local_identity()
    remote = [target for target in to_change if not is_local(target, identity)]
    if remote:
        module.fail_json(msg="`rstudio-server %s` acts only on the node it runs on, and %s is not this host "
                             "(this host is %s). Run the task on that node, e.g. with `delegate_to: %s`." % (
                                 state, describe_nodes(remote), ", ".join(sorted(identity["names"])),
                                 remote[0]["name"]),
                         nodes=targets, commands=cli.commands)
    changed = [target["name"] or str(target["id"]) for target in to_change]
    if not to_change or module.check_mode:
        _finish(module, cli, targets, changed)

    started = _now()
    cli.set_local_mode(state)

    def reached(current):
        by_id = dict((record["id"], record) for record in current)
        return all(node_id in by_id and by_id[node_id]["mode"] == state for node_id in target_ids)

    def pending(current):
        by_id = dict((record["id"], record) for record in current)
        described = [describe_nodes([by_id[node_id]]) if node_id in by_id else "ID %s (no longer listed)" % node_id
                     for node_id in target_ids]
        return ", ".join(described)

    records = _wait_workbench(module, cli, reached, pending, started)
    by_id = dict((record["id"], record) for record in records)
    _finish(module, cli, [by_id[node_id] for node_id in target_ids], changed, started)


# How each product changes nodes: Package Manager from any node, Workbench only on the node itself.
CHANGE_NODES = {"package_manager": package_manager, "workbench": workbench}


def main():
    argument_spec = cluster_argument_spec()
    argument_spec.update(
        nodes=dict(type="list", elements="str", required=True),
        state=dict(type="str", default="online", choices=["online", "offline", "absent"]),
        timeout=dict(type="int", default=60),
        health_url=dict(type="str"),
        offline_first=dict(type="list", elements="str", default=[]),
        offline_timeout=dict(type="int", default=60),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    requested = _validate(module)
    cli = product_cli(module)
    CHANGE_NODES[module.params["product"]](module, cli, requested)


if __name__ == "__main__":
    main()
