# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rolling restart's plan: which nodes restart, in which batch, and which ones the load balancers drain first.

Pure function (unit-tested in tests/unit/plugins/filter/test_restart_plan.py); product_common's entry point
rolling_restart reads the nodes and the load balancers, calls this filter once and runs the batches it names.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: restart_plan
short_description: Plan the rolling restart of a product's nodes after a configuration change
version_added: 0.3.0
author:
  - positops.ha maintainers (@positops)
description:
  - A node restarts when its configuration changed in this run (a handler marked it) or when an earlier run left
    it half-way (its marker file is still there), unless this run has just started it (it read the new
    configuration when it started).
  - Nodes whose package this run installed served nothing before it - a first build - and restart together, first,
    without waiting for any drain. The others restart O(batch) at a time, in the play's order.
  - A node is drained at the load balancers first, and put back after, when one of them has it in the pool
    (administrative state C(ready)) in O(backend). A node an earlier run left half-way is put back too (that run took
    it out). A node the operator took out (C(drain) or C(maint)) is restarted and left out.
options:
  _input:
    description:
      - The play's nodes in the play's order, C({host - state}). Each state has C(changed) (a handler asked for a
        restart), C(started) (this run started the service), C(fresh) (this run installed the package) and C(marked)
        (an earlier run's marker file is there); missing keys are false.
    type: dict
    required: true
  lb_status:
    description: The load balancers' servers as the load_balancer role's entry point C(status) sets them
      (C(load_balancer_status)), or C({}) when there is no load balancer or it was not read.
    type: dict
    default: {}
  backend:
    description: The product's HAProxy backend.
    type: str
    required: true
  batch:
    description: Nodes restarted at a time (C(product_common_restart_batch)), 1 or more.
    type: int
    default: 1
"""

EXAMPLES = r"""
- name: Plan
  ansible.builtin.set_fact:
    plan: >-
      {{ {'pm1': {'changed': true}, 'pm2': {'changed': true}} | positops.ha.restart_plan(backend='package_manager') }}
  # [{hosts: [pm1], drain: [], back: [], fresh: false}, {hosts: [pm2], drain: [], back: [], fresh: false}]
"""

RETURN = r"""
_value:
  description: The batches in order, each C({hosts, drain, back, fresh}) - the nodes restarted, those drained at the
    load balancers before, those put back in the pool after, and whether they are the nodes this run installed.
    Empty when nothing restarts.
  type: list
  elements: dict
"""

from ansible.errors import AnsibleFilterError


def _in_pool(host, lb_status, backend):
    """Whether any load balancer sends the host new requests (administrative state ready)."""
    for backends in (lb_status or {}).values():
        server = ((backends or {}).get(backend) or {}).get("servers", {}).get(host)
        if server and server.get("admin") == "ready":
            return True
    return False


def restart_plan(nodes, lb_status=None, backend="", batch=1):
    try:
        batch = int(batch)
    except (TypeError, ValueError):
        batch = 0
    if batch < 1:
        raise AnsibleFilterError(
            "product_common_restart_batch must be a number of nodes, 1 or more, got %r. Fix: set it to 1 (one node "
            "at a time, the default) or more." % (batch,))
    if not backend:
        raise AnsibleFilterError("restart_plan needs the product's load balancer backend (backend=...).")
    restart = [host for host, state in nodes.items()
               if state.get("marked") or (state.get("changed") and not state.get("started"))]

    def batch_of(hosts, first_build=False):
        drain = [host for host in hosts if _in_pool(host, lb_status, backend)]
        # A marked node was taken out by an earlier run of this entry point that stopped before putting it back.
        back = [host for host in hosts if host in drain or nodes[host].get("marked")]
        return {"hosts": hosts, "drain": drain, "back": back, "fresh": first_build}

    fresh = [host for host in restart if nodes[host].get("fresh")]
    serving = [host for host in restart if host not in fresh]
    plan = [batch_of(fresh, first_build=True)] if fresh else []
    plan += [batch_of(serving[start:start + batch]) for start in range(0, len(serving), batch)]
    return plan


class FilterModule:
    def filters(self):
        return {"restart_plan": restart_plan}
