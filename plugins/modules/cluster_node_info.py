#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: cluster_node_info
short_description: List the nodes of a Posit Package Manager or Workbench cluster
version_added: 0.1.0
description:
  - Reads the cluster's node records with the product's own command line tool and returns them in one shape
    for both products.
  - Posit Package Manager C(rspm cluster nodes) gives each node's host name, version and mode. The module asks
    for its JSON output (C(--output-format=json)) and reads the human listing (with or without a header line)
    when this C(rspm) does not give JSON it can read.
  - Posit Workbench C(rstudio-server list-nodes) gives each node's ID, host, address, port, status (for example
    C(Online), C(Offline), C(Missed check-in), C(Invalid secure cookie key)), last check-in time and, in some
    releases, health. Columns are found by their titles; other columns are ignored.
  - An Online Workbench node whose last check-in is more than 10 minutes old is reported as a missed check-in
    (the rule Workbench itself applies), reading the time in the server's local time zone unless it carries a
    zone or offset.
  - Changes nothing.
extends_documentation_fragment:
  - positops.ha.cluster_cli
  - ansible.builtin.action_common_attributes
  - positops.ha.read_only
author:
  - positops.ha maintainers (@positops)
seealso:
  - module: positops.ha.cluster_node
"""

EXAMPLES = r"""
- name: List the Package Manager nodes
  positops.ha.cluster_node_info:
    product: package_manager
  register: pm_cluster

- name: Every node runs the same version
  ansible.builtin.assert:
    that: pm_cluster.nodes | map(attribute='version') | unique | length == 1
    fail_msg: "Mixed versions: {{ pm_cluster.nodes | items2dict(key_name='name', value_name='version') }}"

- name: List the Workbench nodes
  positops.ha.cluster_node_info:
    product: workbench
  register: rsw_cluster

- name: No Workbench node has a problem status
  ansible.builtin.assert:
    that: rsw_cluster.nodes | rejectattr('status', 'in', ['Online', 'Offline']) | list | length == 0
    fail_msg: "{{ rsw_cluster.nodes | rejectattr('status', 'in', ['Online', 'Offline']) | list }}"
"""

RETURN = r"""
nodes:
  description: Every node of the cluster, in the order the product lists them.
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: Host name of the node.
      type: str
      sample: rsw1
    id:
      description: Workbench node ID; V(null) for Package Manager.
      type: int
      sample: 1
    version:
      description: Product version the node runs (Package Manager only; V(null) for Workbench, whose listing has
        no version).
      type: str
      sample: 2023.12.0-13
    status:
      description: Status as the product prints it.
      type: str
      sample: Missed check-in
    mode:
      description:
        - V(online), V(offline), or V(null) for a Workbench status that is neither (such as C(Missed check-in) or
          C(Starting)).
        - V(null) also for a Workbench node that has missed its check-in (RV(nodes[].missed_check_in)), even when
          its status reads C(Online).
      type: str
      sample: online
    ipv4:
      description: Workbench node address; V(null) for Package Manager or when unresolved.
      type: str
      sample: 172.18.0.5
    port:
      description: Workbench node port; V(null) for Package Manager.
      type: int
      sample: 8787
    last_seen:
      description:
        - Workbench last check-in time as C(rstudio-server list-nodes) prints it (server local time, for example
          C(2026-11-23 12:40:05) or C(2021-Sep-20 17:08:53), possibly followed by a zone or offset).
        - V(null) when the listing has no such column or value, and for Package Manager.
      type: str
      sample: "2026-11-23 12:40:05"
    health:
      description: Workbench node health, when C(rstudio-server list-nodes) prints a Health column; else V(null).
      type: str
      sample: null
    missed_check_in:
      description:
        - Whether a Workbench node has missed its check-in, either as printed (status C(Missed check-in)) or
          because its status is C(Online) but its last check-in is more than 10 minutes old.
        - V(null) for Package Manager.
      type: bool
      sample: true
  sample:
    - {name: rsw1, id: 1, version: null, status: Online, mode: online, ipv4: 172.18.0.5, port: 8787,
       last_seen: "2026-11-23 12:40:05", health: null, missed_check_in: false}
    - {name: rsw2, id: 2, version: null, status: Missed check-in, mode: null, ipv4: 172.18.0.6, port: 8787,
       last_seen: "2026-11-23 12:20:01", health: null, missed_check_in: true}
commands:
  description:
    - The command lines the module ran. For Package Manager, C(rspm cluster nodes --output-format=json), followed
      by C(rspm cluster nodes) when this C(rspm) refuses the flag or its JSON cannot be read.
  returned: always
  type: list
  elements: str
  sample: [/usr/sbin/rstudio-server list-nodes]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.positops.ha.plugins.module_utils._cluster import cluster_argument_spec, product_cli


def main():
    module = AnsibleModule(argument_spec=cluster_argument_spec(), supports_check_mode=True)
    cli = product_cli(module)
    nodes = cli.list_nodes()
    module.exit_json(changed=False, nodes=nodes, commands=cli.commands)


if __name__ == "__main__":
    main()
