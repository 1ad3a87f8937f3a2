# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Options of the modules that talk to HAProxy's runtime API
    # (plugins/module_utils/_haproxy.py, SOCKET_OPTIONS).
    DOCUMENTATION = r"""
options:
  socket:
    description: Path of HAProxy's runtime API socket (C(stats socket ... level admin)) on the managed host.
    type: path
    default: /run/haproxy/admin.sock
  socket_timeout:
    description: Seconds to wait for HAProxy's answer to one runtime API command.
    type: float
    default: 10.0
attributes:
  platform:
    platforms: posix
seealso:
  - name: HAProxy 2.6 management guide, the runtime API
    description: The commands these modules send (C(show servers state), C(show stat), C(set server), C(show map),
      C(add map), C(set map), C(del map)).
    link: https://docs.haproxy.org/2.6/management.html#9.3
author:
  - positops.ha maintainers (@positops)
notes:
  - Run it on the load balancer host (C(delegate_to)), as root or as a member of the C(haproxy) group.
"""
