# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sessions Workbench's /load-balancer/status lists for one node."""

from __future__ import annotations

DOCUMENTATION = r"""
name: workbench_sessions
short_description: The sessions running on one Workbench node, from its load balancing status page
version_added: 0.2.0
author:
  - positops.ha maintainers (@positops)
description:
  - "Workbench's C(GET /load-balancer/status) (answered on loopback only) prints one line per node,
    C(host:port[ (offline|unreachable)]  Load: a, b, c), followed by one line per session running there,
    C(   <pid> - <user>). This filter returns the session lines of the node named O(node)."
  - The rolling upgrade reads them just before it stops a node (stopping rserver ends them) to name them in its
    report.
options:
  _input:
    description: The body of C(/load-balancer/status).
    type: str
    required: true
  node:
    description: The node's name as Workbench shows it (its C(www-host-name)); a port in it is ignored.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Name the sessions stopping this node ends
  ansible.builtin.debug:
    msg: "{{ status.content | positops.ha.workbench_sessions('rsw1') }}"
  # ['4242 - alice', '4311 - bob']
"""

RETURN = r"""
_value:
  description: C(<pid> - <user>) of each session on the node, in the page's order; empty when it has none or is
    not listed.
  type: list
  elements: str
"""


def _host(address):
    host, _sep, port = address.rpartition(":")
    return host if _sep and port.isdigit() else address


def workbench_sessions(text, node):
    wanted = _host(str(node).strip())
    sessions, current = [], None
    for line in ("" if text is None else str(text)).splitlines():
        if not line.strip():
            continue
        if line.startswith(" "):
            if current == wanted:
                sessions.append(line.strip())
        else:
            current = _host(line.split()[0])
    return sessions


class FilterModule:
    def filters(self):
        return {"workbench_sessions": workbench_sessions}
