#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: haproxy_server_info
short_description: Read the servers of HAProxy backends, and whether the hold is on, through the runtime API
version_added: 0.1.0
description:
  - Reads C(show stat) and C(show servers state) through HAProxy's runtime API (the admin socket) and returns every
    server of the chosen backends in one shape - administrative state (ready, drain, maint), operational state from
    the health checks, current sessions, last check.
  - Also reads the hold's switch map (see M(positops.ha.haproxy_hold)) when HAProxy has it loaded, and says per
    backend whether the hold is on and until when.
  - Changes nothing.
extends_documentation_fragment:
  - positops.ha.haproxy_runtime_api
  - ansible.builtin.action_common_attributes
  - positops.ha.read_only
options:
  backends:
    description: Backends to read; all of them when empty. An unknown name fails, listing the backends there are.
    type: list
    elements: str
    default: []
  hold_map:
    description: The hold's switch map file (positops.ha.load_balancer C(load_balancer_hold_map)).
    type: path
    default: /etc/haproxy/positops-hold.map
seealso:
  - module: positops.ha.haproxy_server
  - module: positops.ha.haproxy_hold
"""

EXAMPLES = r"""
- name: Read the Connect backend
  positops.ha.haproxy_server_info:
    backends: [connect]
  delegate_to: lb1
  register: lb

- name: Every Connect node is in the pool and UP
  ansible.builtin.assert:
    that: lb.backends.connect.servers.values() | rejectattr('usable') | list | length == 0
    fail_msg: "{{ lb.backends.connect.servers.values() | rejectattr('usable') | map(attribute='name') | list }}"
"""

RETURN = r"""
backends:
  description: The backends read, by name.
  returned: success
  type: dict
  contains:
    name:
      description: Backend name.
      type: str
      sample: connect
    servers:
      description: Its servers by name, each as M(positops.ha.haproxy_server) returns RV(positops.ha.haproxy_server#module:server).
      type: dict
      sample: {node1: {name: node1, backend: connect, status: UP, admin: ready, operational: up, usable: true,
                       sessions: 0, queued: 0, check: L7OK, check_code: "200",
                       check_description: Layer7 check passed, has_check: true, address: "172.18.0.4:3939",
                       weight: 1}}
    usable_servers:
      description: Servers that take new requests without a sticky cookie (what HAProxy's C(nbsrv) counts).
      type: int
      sample: 2
    hold:
      description: The hold's switch for this backend; V(null) when HAProxy has not loaded O(hold_map).
      type: dict
      contains:
        "on":
          description: Whether the hold is on now.
          type: bool
          sample: false
        expires_at:
          description: Unix time at which the switch turns itself off; V(null) when there is no switch.
          type: int
          sample: 1764771234
        expires_in:
          description: Seconds left before it does; V(0) when off.
          type: int
          sample: 0
  sample:
    connect: {name: connect, servers: {}, usable_servers: 0, hold: {"on": false, expires_at: null, expires_in: 0}}
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.positops.ha.plugins.module_utils._haproxy import (
    DEFAULT_HOLD_MAP, SOCKET_OPTIONS, RuntimeApi, RuntimeApiError, hold_states, loaded_maps, read_backends)


def main():
    argument_spec = dict(
        backends=dict(type="list", elements="str", default=[]),
        hold_map=dict(type="path", default=DEFAULT_HOLD_MAP),
    )
    argument_spec.update(SOCKET_OPTIONS)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    api = RuntimeApi(params["socket"], params["socket_timeout"])
    try:
        backends = read_backends(api, params["backends"] or None)
        holds = None
        if params["hold_map"] in loaded_maps(api):
            holds = hold_states(api, params["hold_map"], list(backends), int(time.time()))
        for name, backend in backends.items():
            hold = holds[name] if holds is not None else None
            backend["hold"] = dict((key, hold[key]) for key in ("on", "expires_at", "expires_in")) if hold else None
    except RuntimeApiError as error:
        module.fail_json(msg=str(error), **error.details())
    module.exit_json(changed=False, backends=backends)


if __name__ == "__main__":
    main()
