# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: preflight_problems
author:
  - positops.ha maintainers (@positops)
short_description: Judge whether a Posit product's cluster is fit, from what pre-flight read on each node
version_added: 0.1.0
description:
  - The verdicts of the collection's pre-flight checks, one Python function per checklist item (clock offset, time
    sync, version mix, UID/GID, configuration drift minus the documented per-node keys, inventory drift, shared key
    mode, mismatch and source, storage not shared, database unreachable, Connect's Metrics.DataPath and
    ScheduleConcurrency, Workbench's lock type on EFS and lock test).
  - Each finding names the node (empty for the whole cluster), the check, the problem and the fix, and has a level
    C(stop) (the cluster is unfit), C(repair) (C(site.yml) repairs it itself), C(warn) (only reported) or
    C(skipped) (the check does not apply yet, with the reason).
  - Secret configuration values never reach the result, since they are masked before (see
    P(positops.ha.preflight_config#filter)). Key material never enters, only fingerprints.
  - The role C(positops.ha.product_common) gathers the readings (entry points C(preflight) and C(preflight_clock))
    and only prints the result; C(docs/preflight.md) describes every reading.
options:
  _input:
    description:
      - What was read on each node, as a mapping of node name to reading, in inventory order.
      - Product scope keys of a reading are C(version), C(accounts), C(config) and C(planned.config) (outputs of
        P(positops.ha.preflight_config#filter)), C(planned.settings), C(planned.mounts), C(planned.storage_type),
        C(keys), C(dirs), C(mounts), C(database) and C(locktest); time scope keys are C(clock) and C(time_sync).
    type: dict
    required: true
  record:
    description:
      - The product record, C(<product>_record) of the product role's C(record) entry point (package, service,
        accounts, configuration files and directory, per-node and secret keys, key files, shared directories,
        database, and the C(preflight) settings of the product-specific checks).
      - Required with O(scope=product).
    type: dict
  scope:
    description: V(product) runs a product's checks; V(time) the clock offset and time sync checks of any node.
    type: str
    choices: [product, time]
    default: product
  site_repairs:
    description:
      - V(true) when the caller goes on to repair what site.yml repairs (C(site.yml) itself). Findings of level
        C(repair) are then reported, not stopping. V(false) (C(preflight.yml), the upgrades) stops on them.
    type: bool
    default: false
  group_hosts:
    description:
      - Every node of the product's inventory group. A shared key is never made anew while nodes of the group
        were not read (C(--limit)), since one of them may hold the cluster's key.
    type: list
    elements: str
  accounts:
    description: C(node_base_accounts); the UID/GID check compares against it where it names the account.
    type: list
    elements: dict
  max_clock_offset:
    description: Largest accepted clock offset in seconds (between nodes, and between a node and its NTP source).
    type: float
    default: 1.0
seealso:
  - plugin: positops.ha.preflight_config
    plugin_type: filter
    description: Makes the masked configuration entries that the drift checks compare.
  - plugin: positops.ha.preflight_key_source
    plugin_type: filter
    description: Chooses where a shared key comes from, from what the nodes hold.
"""

EXAMPLES = r"""
- name: Judge the Package Manager nodes from their readings
  ansible.builtin.set_fact:
    pf_result: >-
      {{ dict(ansible_play_hosts_all | zip(ansible_play_hosts_all | map('extract', hostvars, 'pf_reading')))
         | positops.ha.preflight_problems(record=package_manager_record, group_hosts=groups['package_manager']) }}

- name: Stop when this node is not fit
  ansible.builtin.fail:
    msg: "{{ pf_result.stop | selectattr('node', 'equalto', inventory_hostname) | map(attribute='message') }}"
  when: pf_result.stop | selectattr('node', 'equalto', inventory_hostname) | length > 0

# A minimal input: one node runs another version than the others.
- name: Show why the nodes are not fit
  ansible.builtin.debug:
    msg: >-
      {{ ({'pm1': {'version': '2023.12.0-13'}, 'pm2': {'version': '2023.12.0-13'}, 'pm3': {'version': '2023.08.4-20'}}
          | positops.ha.preflight_problems(record={'name': 'package_manager', 'package': 'rstudio-pm',
                                                   'service': 'rstudio-pm', 'version_var': 'package_manager_version'})
         ).stop | map(attribute='message') }}
  # => ["[version mix] pm3: rstudio-pm 2023.08.4-20 is installed while 2 of 3 installed node(s) run 2023.12.0-13
  #     ... Fix: bring every node to one version, the newest the nodes run (2023.12.0-13): ..."]
"""

RETURN = r"""
_value:
  description: The verdict.
  type: dict
  contains:
    fit:
      description: Whether nothing stops this run.
      type: bool
      sample: false
    findings:
      description: Every finding, in node order, each C({node, check, problem, fix, level, message}).
      type: list
      elements: dict
      sample:
        - node: pm2
          check: key mode
          problem: encryption key /var/lib/rstudio-pm/rstudio-pm.key has mode 0644, expected 0600.
          fix: run playbooks/site.yml, which sets it (or chmod 0600 /var/lib/rstudio-pm/rstudio-pm.key).
          level: repair
          message: "[key mode] pm2: encryption key ... Fix: run playbooks/site.yml, which sets it ..."
    stop:
      description: The findings that stop this run (level C(stop), and C(repair) unless O(site_repairs)).
      type: list
      elements: dict
    report:
      description: The findings only reported (level C(warn), and C(repair) with O(site_repairs)).
      type: list
      elements: dict
    skipped:
      description: The checks that do not apply yet, with the reason (level C(skipped)).
      type: list
      elements: dict
    key_sources:
      description:
        - For each key file of the record, where the key every node receives comes from, decided from what the nodes
          held when read (before the run changed anything); see P(positops.ha.preflight_key_source#filter).
      type: dict
      sample:
        /var/lib/rstudio-pm/rstudio-pm.key:
          path: /var/lib/rstudio-pm/rstudio-pm.key
          source: node
          node: pm2
          fingerprint: 3b1f0c...
          fingerprints: {pm2: 3b1f0c..., pm3: 3b1f0c...}
          unread: []
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.positops.ha.plugins.module_utils._preflight import PreflightError, judge


def preflight_problems(readings, record=None, scope="product", site_repairs=False, group_hosts=None, accounts=None,
                       max_clock_offset=1.0):
    try:
        return judge(readings, record=record, scope=scope, site_repairs=bool(site_repairs),
                     group_hosts=list(group_hosts or []), accounts=list(accounts or []),
                     max_clock_offset=float(max_clock_offset))
    except (PreflightError, TypeError, ValueError, KeyError) as exc:
        raise AnsibleFilterError("positops.ha.preflight_problems: %s" % exc)


class FilterModule(object):
    """Pre-flight verdicts."""

    def filters(self):
        return {"preflight_problems": preflight_problems}
