# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: preflight_key_source
author:
  - positops.ha maintainers (@positops)
short_description: Choose where the shared key every node of a cluster receives comes from
version_added: 0.1.0
description:
  - The key every node receives is the cluster's - the one given in the inventory (vault), or else the one held by
    the nodes that hold a key, when they all agree. A node's package can make a new key when it is installed (Package
    Manager does at first start), so the fingerprints must be read before the run touches the nodes; pre-flight does,
    and C(site.yml)'s key distribution uses its decision.
  - When the nodes disagree and no key is given, there is no safe source; the result says so with the nodes and
    their fingerprints (never the keys), and the caller stops.
  - When no node holds a key and every node of the group was read, a new key is to be made; when nodes of the group
    were not read (C(--limit)), the source is unknown.
options:
  _input:
    description:
      - Node name to the fingerprint (SHA-256 of the key without surrounding white space) of the key it holds, an
        empty string when it holds none; in inventory order (the first holder is the one copied from).
    type: dict
    required: true
  key:
    description:
      - The key file, as in the product record's C(key_files) - C(path), C(name), C(var) (the inventory variable
        that can give the key) and C(given_fingerprint) (the fingerprint of the given key, empty when none).
    type: dict
    required: true
  group_hosts:
    description: Every node of the product's inventory group; default the nodes in the input.
    type: list
    elements: str
seealso:
  - plugin: positops.ha.preflight_problems
    plugin_type: filter
    description: Reads the fingerprints this filter decides from, and stops a run on a key conflict.
  - module: positops.ha.secure_cookie_key
    description: Writes the chosen key, identical on every node, mode 0600.
"""

EXAMPLES = r"""
- name: Choose the source of the encryption key from what the nodes held before the run
  ansible.builtin.set_fact:
    key_decision: >-
      {{ {'pm1': '', 'pm2': '3b1f0c9a', 'pm3': '3b1f0c9a'}
         | positops.ha.preflight_key_source(key={'path': '/var/lib/rstudio-pm/rstudio-pm.key',
                                                 'name': 'encryption key', 'var': 'package_manager_encryption_key'}) }}
  # => source: node, node: pm2, fingerprint: 3b1f0c9a (pm1 was rebuilt; its new key, if any, is not the source)

- name: Stop when there is no safe source
  ansible.builtin.fail:
    msg: "{{ key_decision.problem }} Fix: {{ key_decision.fix }}"
  when: key_decision.source in ['conflict', 'unknown']
"""

RETURN = r"""
_value:
  description: The decision.
  type: dict
  contains:
    path:
      description: The key file.
      type: str
      sample: /var/lib/rstudio-pm/rstudio-pm.key
    source:
      description:
        - V(given) (the inventory's key), V(node) (copy it from RV(_value.node)), V(new) (no node holds a key, so
          one is made), V(conflict) (the nodes disagree and none is given) or V(unknown) (no node read holds one,
          but nodes of the group were not read).
      type: str
      sample: node
    node:
      description: The node to copy the key from (source V(node)), else empty.
      type: str
      sample: pm2
    fingerprint:
      description: The fingerprint of the cluster's key (sources V(given) and V(node)), else empty.
      type: str
      sample: 3b1f0c9a
    fingerprints:
      description: Node to fingerprint, for the nodes that hold a key.
      type: dict
      sample: {pm2: 3b1f0c9a, pm3: 3b1f0c9a}
    unread:
      description: Nodes of the group that were not read.
      type: list
      elements: str
      sample: []
    problem:
      description: Why there is no safe source (sources V(conflict) and V(unknown)), else empty.
      type: str
      sample: "the nodes hold different encryption keys in /var/lib/rstudio-pm/rstudio-pm.key (fingerprints: ...)"
    fix:
      description: What to do about RV(_value.problem), else empty.
      type: str
      sample: "find the key the cluster's data was made with ..."
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.positops.ha.plugins.module_utils._preflight import (
    PreflightError, key_source, key_source_problem)


def preflight_key_source(holders, key, group_hosts=None):
    if not isinstance(key, dict) or not key.get("path"):
        raise AnsibleFilterError("positops.ha.preflight_key_source: key must be a key file entry with a path "
                                 "(the product record's key_files item), got %r" % (key,))
    if not isinstance(holders, dict):
        raise AnsibleFilterError("positops.ha.preflight_key_source: the input must map node names to fingerprints, "
                                 "got %s" % type(holders).__name__)
    try:
        decision = key_source(key, holders, list(group_hosts or []))
        problem = key_source_problem(key, decision, key)
    except PreflightError as exc:
        raise AnsibleFilterError("positops.ha.preflight_key_source: %s" % exc)
    decision["problem"], decision["fix"] = problem or ("", "")
    return decision


class FilterModule(object):
    """Shared key source."""

    def filters(self):
        return {"preflight_key_source": preflight_key_source}
