#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: wait_for_health
short_description: Wait until a health URL answers, and stop at once when the product's systemd unit has failed
version_added: 0.1.0
description:
  - Requests O(url) with GET every O(delay) seconds until it answers O(status_code), or fails when O(timeout) seconds
    have passed.
  - Given O(service), it also reads the unit's state (C(systemctl show -p ActiveState --value)) after each poll that
    did not answer. When systemd reports the unit C(failed) on 3 polls in a row, systemd is no longer restarting it,
    nothing will answer, and the module fails at once instead of waiting out O(timeout). A unit that is
    C(activating) (restarting after a crash, C(Restart=)) is still waited for. Without C(systemctl) on the node the
    unit is not read.
  - Response bodies are never read or returned.
  - Changes nothing.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - positops.ha.read_only
options:
  url:
    description: The health URL as seen from the node the module runs on, for example C(http://127.0.0.1:4242/__ping__).
    type: str
    required: true
  status_code:
    description: The HTTP status that means healthy.
    type: int
    default: 200
  timeout:
    description: Seconds to wait in all before the task fails.
    type: int
    default: 180
  delay:
    description: Seconds between two polls.
    type: float
    default: 1
  request_timeout:
    description: Seconds one request may take.
    type: int
    default: 5
  service:
    description:
      - The product's systemd unit, for example C(rstudio-connect). When it is C(failed) on 3 polls in a row the
        module fails at once.
      - Not given, only the URL is polled.
    type: str
attributes:
  platform:
    platforms: posix
notes:
  - Run it on the node that serves O(url) (C(delegate_to)), so that O(service) is that node's unit.
author:
  - positops.ha maintainers (@positops)
seealso:
  - module: ansible.builtin.uri
"""

EXAMPLES = r"""
- name: Wait until Connect answers its health check, stopping early if its unit has failed
  positops.ha.wait_for_health:
    url: http://127.0.0.1:3939/__ping__
    service: rstudio-connect
    timeout: 300

- name: Wait for another node's health URL, polled on that node
  positops.ha.wait_for_health:
    url: http://127.0.0.1:4242/__ping__
    service: rstudio-pm
  delegate_to: pm2
"""

RETURN = r"""
status:
  description: The HTTP status of the answer, equal to O(status_code).
  returned: success
  type: int
  sample: 200
elapsed:
  description: Seconds waited, rounded to a tenth.
  returned: always
  type: float
  sample: 4.2
attempts:
  description: Requests made.
  returned: always
  type: int
  sample: 5
last_status:
  description: The HTTP status of the last answer; V(null) when the last request got no answer (see RV(last_error)).
  returned: failure
  type: int
  sample: 503
last_error:
  description: Why the last request got no answer (connection refused, timed out, ...); V(null) when it got one.
  returned: failure
  type: str
  sample: "Request failed: <connection refused>"
unit_state:
  description: The last C(ActiveState) read of O(service); V(null) when not read (no O(service), no C(systemctl)).
  returned: failure
  type: str
  sample: failed
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import mask_url

from ansible_collections.positops.ha.plugins.module_utils._health import probe

# Consecutive `failed` readings of the unit after which waiting stops.
FAILED_READINGS = 3


def _now():
    return time.monotonic()


def _sleep(seconds):
    time.sleep(seconds)


def _unit_state(module, systemctl, service):
    rc, out, dummy = module.run_command([systemctl, "show", "-p", "ActiveState", "--value", service],
                                        environ_update=dict(LC_ALL="C"))
    return out.strip() if rc == 0 and out.strip() else None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type="str", required=True),
            status_code=dict(type="int", default=200),
            timeout=dict(type="int", default=180),
            delay=dict(type="float", default=1),
            request_timeout=dict(type="int", default=5),
            service=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    url, code, service = params["url"], params["status_code"], params["service"]
    if params["timeout"] < 0 or params["delay"] < 0 or params["request_timeout"] < 1:
        module.fail_json(msg="timeout and delay must be 0 or more, request_timeout 1 or more.")
    systemctl = module.get_bin_path("systemctl") if service else None
    shown = mask_url(url)

    start = _now()
    deadline = start + params["timeout"]
    attempts = failed_readings = 0
    unit_state = None
    while True:
        attempts += 1
        status, error = probe(module, url, params["request_timeout"])
        if status == code:
            module.exit_json(changed=False, status=status, elapsed=round(_now() - start, 1), attempts=attempts)
        if systemctl:
            unit_state = _unit_state(module, systemctl, service)
            failed_readings = failed_readings + 1 if unit_state == "failed" else 0
        now = _now()
        elapsed = round(now - start, 1)
        result = dict(elapsed=elapsed, attempts=attempts, last_status=status, last_error=error, unit_state=unit_state)
        if failed_readings >= FAILED_READINGS:
            module.fail_json(msg="%s has failed (systemd is no longer restarting it) and %s did not answer %s in %s s;"
                                 " waiting longer cannot help. Fix: read `journalctl -u %s`, remove the cause, then"
                                 " run the playbook again." % (service, shown, code, elapsed, service), **result)
        if now >= deadline:
            check = ("check the service with `systemctl status %s` and its log" % service if service
                     else "check the service and its log")
            last = "HTTP %s" % status if status is not None else error
            module.fail_json(msg="%s did not answer %s within %s s (%s attempts; last answer: %s). Fix: %s, or raise"
                                 " the timeout." % (shown, code, params["timeout"], attempts, last, check), **result)
        _sleep(min(params["delay"], deadline - now))


if __name__ == "__main__":
    main()
