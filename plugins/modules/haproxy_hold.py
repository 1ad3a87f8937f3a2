#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: haproxy_hold
short_description: Switch HAProxy's hold on or off for backends, at run time, without a reload
version_added: 0.1.0
description:
  - The hold (positops.ha.load_balancer, C(docs/upgrades.md)) makes HAProxy keep requests that are safe to replay
    while a backend has no server that can take them, for up to the configured hold timeout, instead of answering
    503 at once, and releases them the moment a server is back. It applies only to backends whose switch is on.
  - This module sets the switches, through HAProxy's runtime API (the admin socket), in the hold's map
    (O(map)) - C(add map) / C(set map) / C(del map), Management Guide 2.6 section 9.3. Each switch holds the Unix
    time at which it turns itself off (O(expires) from now), so a run that dies without switching it off cannot
    leave it on for long.
  - The switches live in HAProxy's memory only; a reload or restart of HAProxy reads the map file again, which
    positops.ha.load_balancer keeps empty - every switch is off after a reload.
  - O(state=on) for a backend that is on already extends its expiry; that is not reported as a change.
  - With O(admit), HAProxy itself puts those servers back into the pool at their first healthy answer, while the
    switch is on, the server is in maintenance and no server of the backend is usable (the hold's Lua task asks
    each one's health check path every C(load_balancer_hold_poll_interval) ms). Only a 200 that follows an answer
    that was not 200 (refused, say) under the same switch counts, so a server that answered all along, such as an
    old version still running, is never admitted. That saves the round trip of a playbook that waits for the node
    and then readies it. Name only servers whose next healthy answer means they may serve, such as the first node
    of a product stopped for its upgrade, which answers only once its new version has migrated the schema.
extends_documentation_fragment:
  - positops.ha.haproxy_runtime_api
  - ansible.builtin.action_common_attributes
options:
  backends:
    description:
      - Backends (service names of positops.ha.load_balancer) to switch. An unknown name fails, listing the
        backends there are.
      - Required for O(state=on). With O(state=off) and no backends, every switch in the map goes off.
    type: list
    elements: str
    default: []
  state:
    description: V(on) or V(off).
    type: str
    default: "on"
    choices: ["on", "off"]
  admit:
    description:
      - O(state=on) - servers that HAProxy puts back into the pool by itself at their first healthy answer after
        one that was not, while the switch is on and no server of the backend is usable (see the description).
      - Each must be a server of every backend in O(backends); an unknown name fails, listing the servers there are.
      - Replaces the list the switch had. Switching the hold off ends every admission.
    type: list
    elements: str
    default: []
  expires:
    description: O(state=on) - seconds after which the switch turns itself off if nothing switched it off before.
    type: int
    default: 3600
  map:
    description: The hold's switch map file, as loaded by HAProxy (positops.ha.load_balancer C(load_balancer_hold_map)).
    type: path
    default: /etc/haproxy/positops-hold.map
attributes:
  check_mode:
    support: full
    details: In check mode the switches are read and nothing is sent that changes them.
  diff_mode:
    support: none
notes:
  - Fails when HAProxy has not loaded O(map), that is when the hold is not configured on this load balancer.
seealso:
  - module: positops.ha.haproxy_server
  - module: positops.ha.haproxy_server_info
"""

EXAMPLES = r"""
- name: Hold Connect's requests while the upgrade has every node out
  positops.ha.haproxy_hold:
    backends: [connect]
    state: "on"
    expires: 1800
  delegate_to: lb1

- name: Hold Connect's requests, and let HAProxy admit the first upgraded node at its first healthy answer
  positops.ha.haproxy_hold:
    backends: [connect]
    admit: [connect1]
    expires: 1800
  delegate_to: lb1

- name: Release the hold (rescue, or right after the window)
  positops.ha.haproxy_hold:
    backends: [connect]
    state: "off"
  delegate_to: lb1

- name: Every hold off
  positops.ha.haproxy_hold:
    state: "off"
  delegate_to: lb1
"""

RETURN = r"""
holds:
  description: The switch of every backend named (every backend found in the map for O(state=off) without backends), after the change.
  returned: success
  type: dict
  sample: {connect: {"on": true, expires_at: 1764771234, expires_in: 1800, admit: [connect1]}}
  contains:
    "on":
      description: Whether the hold is on.
      type: bool
    expires_at:
      description: Unix time at which the switch turns itself off; V(null) when off.
      type: int
    expires_in:
      description: Seconds left; V(0) when off.
      type: int
    admit:
      description: The servers HAProxy admits at their first healthy answer (O(admit)); empty when off.
      type: list
      elements: str
commands:
  description: The runtime API commands that changed something, in order (reads are left out).
  returned: always
  type: list
  elements: str
  sample: ["add map /etc/haproxy/positops-hold.map connect 1764771234:connect1"]
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.positops.ha.plugins.module_utils._haproxy import (
    DEFAULT_HOLD_MAP, SOCKET_OPTIONS, RuntimeApi, RuntimeApiError, hold_states, loaded_maps, read_backends, read_map,
    switch_value)


def _time():
    return int(time.time())


def switch(module, api):
    params = module.params
    path = params["map"]
    if path not in loaded_maps(api):
        module.fail_json(
            msg="HAProxy has not loaded the hold map %s: the hold is not configured on this load balancer. Configure "
                "it with positops.ha.load_balancer (load_balancer_hold_enabled: true), or set map to the file its "
                "configuration loads." % path, commands=api.commands)
    backends = params["backends"]
    admit = params["admit"]
    if backends:
        found = read_backends(api, backends)
        for backend in backends:
            unknown = [name for name in admit if name not in found[backend]["servers"]]
            if unknown:
                module.fail_json(
                    msg="admit names %s, not a server of backend '%s'. Its servers: %s. Name servers of every "
                        "backend in backends." % (", ".join("'%s'" % name for name in unknown), backend,
                                                  ", ".join(sorted(found[backend]["servers"])) or "none"),
                    commands=api.commands)
    else:
        backends = sorted(set(key for reference, key, value in read_map(api, path)))
    now = _time()
    before = hold_states(api, path, backends, now)
    changed = False
    for backend in backends:
        current = before[backend]
        if params["state"] == "on":
            changed = changed or not current["on"] or current["admit"] != admit
            if module.check_mode:
                continue
            expires_at = switch_value(now + params["expires"], admit)
            if current["entries"]:
                # set map changes every row of the key (add map would add a second row).
                api.change("set map %s %s %s" % (path, backend, expires_at))
            else:
                api.change("add map %s %s %s" % (path, backend, expires_at))
        elif current["entries"]:
            changed = True
            if not module.check_mode:
                api.change("del map %s %s" % (path, backend))
    after = before if module.check_mode else hold_states(api, path, backends, _time())
    holds = dict((backend, dict((key, state[key]) for key in ("on", "expires_at", "expires_in", "admit")))
                 for backend, state in after.items())
    if module.check_mode:
        for backend in backends:
            holds[backend] = ({"on": True, "expires_at": now + params["expires"], "expires_in": params["expires"],
                               "admit": admit}
                              if params["state"] == "on" else {"on": False, "expires_at": None, "expires_in": 0,
                                                               "admit": []})
    module.exit_json(changed=changed, holds=holds, commands=api.commands)


def main():
    argument_spec = dict(
        backends=dict(type="list", elements="str", default=[]),
        admit=dict(type="list", elements="str", default=[]),
        state=dict(type="str", default="on", choices=["on", "off"]),
        expires=dict(type="int", default=3600),
        map=dict(type="path", default=DEFAULT_HOLD_MAP),
    )
    argument_spec.update(SOCKET_OPTIONS)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    if params["state"] == "on" and not params["backends"]:
        module.fail_json(msg="state=on needs backends: name the backends whose requests are held.")
    if params["state"] == "off" and params["admit"]:
        module.fail_json(msg="admit is for state=on (switching the hold off ends every admission); leave it out "
                             "with state=off.")
    if params["expires"] < 1:
        module.fail_json(msg="expires must be at least 1 second, got %d." % params["expires"])
    api = RuntimeApi(params["socket"], params["socket_timeout"])
    try:
        switch(module, api)
    except RuntimeApiError as error:
        module.fail_json(msg=str(error), commands=api.commands, **error.details())


if __name__ == "__main__":
    main()
