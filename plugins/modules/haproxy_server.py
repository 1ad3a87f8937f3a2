#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: haproxy_server
short_description: Drain a server with a deadline, take it out of the pool, or put it back at once, through HAProxy's runtime API
version_added: 0.1.0
description:
  - Changes the administrative state of one server of one HAProxy backend through HAProxy's runtime API (the admin
    socket), with the Python standard library only, and waits where the state needs it.
  - O(state=drain) stops new sessions on the server (sessions that carry its sticky cookie still reach it), then
    waits until HAProxy counts no current session on it B(or) O(drain_timeout) has passed. The timeout is a
    deadline, not a failure; the sessions still open then are reported in RV(sessions_cut). With
    O(maint_after_drain) (the default) the server then goes to maintenance (out of the pool).
  - O(state=maint) takes the server out of the pool at once (no new request reaches it, health checks stop).
  - O(state=ready) puts it back into the pool. With O(force_up) the caller vouches that the node is healthy (it has
    just seen its health endpoint answer), and HAProxy is told so at once (C(set server B/S health up), then
    C(state ready)) instead of waiting for C(rise) passed checks. Otherwise the module waits until HAProxy's own
    health check passes, for at most O(timeout) seconds, and fails naming the last check result.
  - Unknown backend or server names fail, listing the names that exist. Nothing is changed before both are found.
  - HAProxy Management Guide 2.6, section 9.3 (C(set server), C(show stat), C(show servers state),
    C(shutdown sessions server)).
extends_documentation_fragment:
  - positops.ha.haproxy_runtime_api
  - ansible.builtin.action_common_attributes
options:
  backend:
    description: The HAProxy backend (a service name of positops.ha.load_balancer, for example V(connect)).
    type: str
    required: true
  server:
    description: The server in O(backend); positops.ha.load_balancer names servers after the inventory host names.
    type: str
    required: true
  state:
    description:
      - V(drain) - no new sessions except sticky ones; wait for the open ones to end, bounded by O(drain_timeout);
        then maintenance unless O(maint_after_drain=false).
      - V(maint) - out of the pool at once.
      - V(ready) - back in the pool (see O(force_up), O(wait), O(timeout)).
    type: str
    required: true
    choices: [drain, maint, ready]
  drain_timeout:
    description:
      - O(state=drain) - seconds to wait for the server's current sessions to reach 0. When they are still open
        at the deadline the module goes on (it does not fail) and reports them in RV(sessions_cut).
      - V(0) sets the drain state without waiting.
    type: int
    default: 30
  maint_after_drain:
    description: O(state=drain) - put the server in maintenance once it is empty or the deadline has passed.
    type: bool
    default: true
  shutdown_sessions:
    description:
      - O(state=drain) with O(maint_after_drain), or O(state=maint) - close the sessions still open on the server
        at HAProxy (C(shutdown sessions server)) right after taking it out. Without it they end when the node
        closes them (for example when its service stops).
    type: bool
    default: false
  force_up:
    description:
      - O(state=ready) - mark the server's health UP at once instead of waiting for C(rise) passed checks. Use it
        only for a node the caller has just seen healthy; HAProxy's checks go on and take it out again if it fails
        C(fall) of them.
    type: bool
    default: false
  wait:
    description: O(state=ready) - wait until HAProxy counts the server as UP (its health check passes).
    type: bool
    default: true
  timeout:
    description: O(state=ready) with O(wait) - seconds to wait for the health check to pass before failing.
    type: int
    default: 60
  poll_interval:
    description: Seconds between two reads of the server's state while waiting.
    type: float
    default: 0.5
attributes:
  check_mode:
    support: full
    details: In check mode the server's state is read, nothing is sent that changes it, and nothing is waited for;
      the result says whether the state would change.
  diff_mode:
    support: none
notes:
  - Drain and maintenance states set through the runtime API survive a reload of HAProxy only with a server-state
    file; positops.ha.load_balancer sets one up.
seealso:
  - module: positops.ha.haproxy_server_info
  - module: positops.ha.haproxy_hold
"""

EXAMPLES = r"""
- name: Drain node1 (sticky sessions may finish for 30 s), then take it out of the pool
  positops.ha.haproxy_server:
    backend: connect
    server: node1
    state: drain
    drain_timeout: 30
  delegate_to: lb1
  register: drained

- name: Say how many sessions were cut
  ansible.builtin.debug:
    msg: "{{ drained.sessions_cut }} session(s) still open at the deadline were cut"

- name: Out of the pool at once
  positops.ha.haproxy_server:
    backend: connect
    server: node1
    state: maint
  delegate_to: lb1

- name: Back in the pool at once; the play has just seen its health endpoint answer 200
  positops.ha.haproxy_server:
    backend: connect
    server: node1
    state: ready
    force_up: true
  delegate_to: lb1

- name: Back in the pool once HAProxy's own health check passes (at most 120 s)
  positops.ha.haproxy_server:
    backend: workbench
    server: node2
    state: ready
    timeout: 120
  delegate_to: lb1
"""

RETURN = r"""
server:
  description: The server after the change (in check mode, as it is now).
  returned: success
  type: dict
  contains:
    name:
      description: Server name.
      type: str
      sample: node1
    backend:
      description: Backend name.
      type: str
      sample: connect
    status:
      description: HAProxy's status text (C(show stat)), for example C(UP), C(DOWN), C(DRAIN), C(MAINT), C(UP 1/2).
      type: str
      sample: MAINT
    admin:
      description: Administrative state, V(ready), V(drain) or V(maint).
      type: str
      sample: maint
    operational:
      description: Operational state from the health checks, V(up), V(down), V(starting) or V(stopping).
      type: str
      sample: up
    usable:
      description: Whether HAProxy sends it new requests that carry no sticky cookie.
      type: bool
      sample: false
    sessions:
      description: Current sessions on the server (C(scur)).
      type: int
      sample: 0
    queued:
      description: Requests queued for the server (C(qcur)).
      type: int
      sample: 0
    check:
      description: Last health check result (C(check_status), for example C(L7OK), C(L7STS), C(L4CON)).
      type: str
      sample: L7OK
    check_code:
      description: HTTP status of the last check, when there was one.
      type: str
      sample: "200"
    check_description:
      description: HAProxy's description of the last check.
      type: str
      sample: Layer7 check passed
    has_check:
      description: Whether the server has a health check.
      type: bool
      sample: true
    address:
      description: Address and port HAProxy sends to.
      type: str
      sample: 172.18.0.4:3939
    weight:
      description: Current weight (0 while draining or in maintenance).
      type: int
      sample: 1
previous:
  description: The server before the module did anything (same keys as RV(server)).
  returned: success
  type: dict
  sample: {name: node1, backend: connect, status: UP, admin: ready, operational: up, usable: true, sessions: 2}
sessions_cut:
  description:
    - O(state=drain) or O(state=maint) - sessions still open on the server when it was taken out (at the drain
      deadline, or at once for V(maint)). They end when the node closes them, or at once with O(shutdown_sessions).
    - V(0) for O(state=ready).
  returned: success
  type: int
  sample: 2
drain_timed_out:
  description: O(state=drain) - whether O(drain_timeout) passed with sessions still open.
  returned: success
  type: bool
  sample: false
waited:
  description: Seconds spent waiting (drain, or health check for O(state=ready)).
  returned: success
  type: float
  sample: 3.5
commands:
  description: The runtime API commands that changed something, in order (reads are left out).
  returned: always
  type: list
  elements: str
  sample: ["set server connect/node1 state drain", "set server connect/node1 state maint"]
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.positops.ha.plugins.module_utils._haproxy import (
    SOCKET_OPTIONS, RuntimeApi, RuntimeApiError, read_server)


def _now():
    return time.monotonic()


def _sleep(seconds):
    time.sleep(seconds)


class Job:
    def __init__(self, module, api):
        self.module = module
        self.api = api
        params = module.params
        self.backend = params["backend"]
        self.server = params["server"]
        self.target = "%s/%s" % (self.backend, self.server)
        self.changed = False
        self.waited = 0.0

    def read(self):
        return read_server(self.api, self.backend, self.server)

    def set(self, what):
        """Send ``set server B/S <what>`` (nothing in check mode)."""
        self.changed = True
        if not self.module.check_mode:
            self.api.change("set server %s %s" % (self.target, what))

    def poll(self, done, seconds):
        """Read the server until ``done(record)`` or ``seconds`` have passed; return the last record."""
        params = self.module.params
        started = _now()
        deadline = started + seconds
        record = self.read()
        while not done(record) and _now() < deadline:
            _sleep(max(0.0, min(params["poll_interval"], deadline - _now())))
            record = self.read()
        self.waited += _now() - started
        return record

    def finish(self, previous, record, sessions_cut=0, drain_timed_out=False):
        self.module.exit_json(changed=self.changed, server=record, previous=previous, sessions_cut=sessions_cut,
                              drain_timed_out=drain_timed_out, waited=round(self.waited, 1),
                              commands=self.api.commands)

    def take_out(self, record):
        """Maintenance (if not yet), then the optional shutdown of what is left; return the sessions cut."""
        if record["admin"] != "maint":
            self.set("state maint")
        open_sessions = record["sessions"]
        if open_sessions and self.module.params["shutdown_sessions"] and not self.module.check_mode:
            self.changed = True
            self.api.change("shutdown sessions server %s" % self.target)
        return open_sessions

    def maint(self):
        previous = self.read()
        cut = self.take_out(previous)
        self.finish(previous, previous if self.module.check_mode else self.read(), sessions_cut=cut)

    def drain(self):
        params = self.module.params
        previous = self.read()
        if previous["admin"] == "maint" and params["maint_after_drain"]:
            # Already out of the pool: nothing to drain.
            self.finish(previous, previous, sessions_cut=previous["sessions"])
        if previous["admin"] != "drain":
            self.set("state drain")
        if self.module.check_mode:
            self.finish(previous, previous, sessions_cut=previous["sessions"] if params["maint_after_drain"] else 0)
        record = self.poll(lambda current: current["sessions"] == 0, max(0, params["drain_timeout"]))
        timed_out = record["sessions"] > 0 and params["drain_timeout"] > 0
        if not params["maint_after_drain"]:
            self.finish(previous, record, drain_timed_out=timed_out)
        cut = self.take_out(record)
        self.finish(previous, self.read(), sessions_cut=cut, drain_timed_out=timed_out)

    def ready(self):
        params = self.module.params
        previous = self.read()
        if params["force_up"] and previous["has_check"] and previous["operational"] != "up":
            self.set("health up")
        if previous["admin"] != "ready":
            self.set("state ready")
        if self.module.check_mode:
            self.finish(previous, previous)
        if not params["wait"]:
            self.finish(previous, self.read())
        record = self.poll(lambda current: current["operational"] == "up" and current["admin"] == "ready",
                           params["timeout"])
        if record["operational"] != "up" or record["admin"] != "ready":
            self.module.fail_json(
                msg="%s did not pass HAProxy's health check within %s s: it is %s; last check %s%s. Check the node "
                    "(its service, its health endpoint) or give it a longer timeout." % (
                        self.target, params["timeout"], record["status"] or record["operational"],
                        record["check"] or "none", (" (%s)" % record["check_description"])
                        if record["check_description"] else ""),
                server=record, previous=previous, waited=round(self.waited, 1), commands=self.api.commands)
        self.finish(previous, record)


def main():
    argument_spec = dict(
        backend=dict(type="str", required=True),
        server=dict(type="str", required=True),
        state=dict(type="str", required=True, choices=["drain", "maint", "ready"]),
        drain_timeout=dict(type="int", default=30),
        maint_after_drain=dict(type="bool", default=True),
        shutdown_sessions=dict(type="bool", default=False),
        force_up=dict(type="bool", default=False),
        wait=dict(type="bool", default=True),
        timeout=dict(type="int", default=60),
        poll_interval=dict(type="float", default=0.5),
    )
    argument_spec.update(SOCKET_OPTIONS)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    for name in ("backend", "server"):
        if not params[name].strip() or any(char.isspace() for char in params[name]):
            module.fail_json(msg="%s must be a name without white space, got %r." % (name, params[name]))
    if params["drain_timeout"] < 0 or params["timeout"] < 0:
        module.fail_json(msg="drain_timeout and timeout are seconds, 0 or more.")
    if params["poll_interval"] <= 0:
        module.fail_json(msg="poll_interval must be more than 0 seconds.")

    api = RuntimeApi(params["socket"], params["socket_timeout"])
    job = Job(module, api)
    try:
        getattr(job, params["state"])()
    except RuntimeApiError as error:
        module.fail_json(msg=str(error), commands=api.commands, **error.details())


if __name__ == "__main__":
    main()
