# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!
"""HAProxy's runtime API (the admin socket) for the haproxy_* modules, with the Python standard library only.

:class:`RuntimeApi` sends one command per connection (HAProxy's non-interactive mode: it answers, then closes)
and turns socket problems into :class:`RuntimeApiError` messages that name the path and the fix. The parsers are
pure functions over the text HAProxy 2.6 prints (HAProxy Management Guide, section 9.3: ``show stat``,
``show servers state``, ``show map``) and raise :class:`RuntimeApiError` on anything else, quoting it.
:func:`read_backends` joins ``show stat`` (sessions, status text, last check) with ``show servers state``
(the administrative and operational state as numbers) into one record per server.
"""

from __future__ import annotations

import errno
import os
import socket
import stat

# Where positops.ha.load_balancer puts the socket (load_balancer_admin_socket); Debian's default too.
DEFAULT_SOCKET = "/run/haproxy/admin.sock"
# The hold's switch map (load_balancer_hold_map).
DEFAULT_HOLD_MAP = "/etc/haproxy/positops-hold.map"

# srv_admin_state bits (Management Guide, "show servers state"): forced, inherited, configured, resolution
# maintenance; forced and inherited drain. 0x40 (FQDN set from the socket) is no state.
ADMIN_MAINT = 0x01 | 0x02 | 0x04 | 0x20
ADMIN_DRAIN = 0x08 | 0x10
# srv_op_state values.
OPERATIONAL = {0: "down", 1: "starting", 2: "up", 3: "stopping"}
# srv_check_state bit: a health check is configured for the server.
CHECK_CONFIGURED = 0x02

# Options every haproxy_* module has (documented in each module).
SOCKET_OPTIONS = dict(
    socket=dict(type="path", default=DEFAULT_SOCKET),
    socket_timeout=dict(type="float", default=10.0),
)


class RuntimeApiError(Exception):
    """A socket problem or an answer HAProxy should not have given; ``str()`` is the message for the user."""

    def __init__(self, msg, command=None, reply=None):
        super().__init__(msg)
        self.command = command
        self.reply = reply

    def details(self):
        """Extra result keys for fail_json."""
        details = {}
        if self.command is not None:
            details["command"] = self.command
        if self.reply is not None:
            details["reply"] = self.reply
        return details


class UnknownName(RuntimeApiError):
    """A backend or server that this HAProxy does not have; ``known`` lists the ones it has."""

    def __init__(self, msg, known):
        super().__init__(msg)
        self.known = known

    def details(self):
        return {"known": self.known}


class RuntimeApi:
    """HAProxy's runtime API on the Unix socket ``path``.

    ``commands`` lists every command that changes something, in order; reads are counted in ``reads``.
    ``connect`` (tests) replaces the function that returns a connected socket.
    """

    def __init__(self, path=DEFAULT_SOCKET, timeout=10.0, connect=None):
        self.path = path
        self.timeout = timeout
        self.commands = []
        self.reads = 0
        self._connect = connect or self._connect_unix

    def _connect_unix(self):
        try:
            mode = os.stat(self.path).st_mode
        except FileNotFoundError:
            raise RuntimeApiError(
                "HAProxy's runtime API socket %s does not exist: HAProxy is not running on this host, or its "
                "configuration has no 'stats socket %s level admin'. Run the task on the load balancer "
                "(delegate_to), start HAProxy, or configure it with positops.ha.load_balancer "
                "(load_balancer_admin_socket); set socket if it lives elsewhere." % (self.path, self.path))
        except PermissionError:
            raise RuntimeApiError(
                "Permission denied reading %s: run the task as root (become: true) or as a member of the "
                "haproxy group." % self.path)
        if not stat.S_ISSOCK(mode):
            raise RuntimeApiError("%s is not a socket; set socket to HAProxy's admin socket ('stats socket' in "
                                  "haproxy.cfg)." % self.path)
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.settimeout(self.timeout)
        try:
            client.connect(self.path)
        except PermissionError:
            client.close()
            raise RuntimeApiError(
                "Permission denied on HAProxy's socket %s: run the task as root (become: true) or as a member of "
                "the haproxy group." % self.path)
        except OSError as error:
            client.close()
            if error.errno in (errno.ECONNREFUSED, errno.ENOENT):
                raise RuntimeApiError(
                    "Nothing answers on HAProxy's socket %s (HAProxy stopped, or restarting): start HAProxy "
                    "(systemctl start haproxy) and try again." % self.path)
            raise RuntimeApiError("Cannot connect to HAProxy's socket %s: %s" % (self.path, error))
        return client

    def send(self, command):
        """Send one command, return HAProxy's whole answer (text)."""
        client = self._connect()
        try:
            client.sendall(command.encode() + b"\n")
            chunks = []
            while True:
                chunk = client.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except socket.timeout:
            raise RuntimeApiError("HAProxy did not answer '%s' on %s within %s s." % (command, self.path, self.timeout),
                                  command=command)
        except OSError as error:
            raise RuntimeApiError("Talking to HAProxy on %s failed during '%s': %s" % (self.path, command, error),
                                  command=command)
        finally:
            client.close()
        reply = b"".join(chunks).decode("utf-8", "replace")
        if reply.strip() == "Permission denied":
            raise RuntimeApiError(
                "HAProxy refused '%s': the socket %s is not at level admin. Declare it with 'stats socket %s level "
                "admin' (positops.ha.load_balancer does)." % (command, self.path, self.path), command=command,
                reply=reply)
        return reply

    def read(self, command):
        self.reads += 1
        return self.send(command)

    def change(self, command):
        """Send a command that changes something; HAProxy answers nothing (an empty line) when it worked."""
        self.commands.append(command)
        reply = self.send(command)
        if reply.strip():
            raise RuntimeApiError("HAProxy refused '%s': %s" % (command, reply.strip()), command=command, reply=reply)
        return reply


# -- parsers (pure) ------------------------------------------------------------------------------------------------
def parse_stat(text):
    """``show stat`` CSV: one dict per row, keyed by the header's field names (``# pxname,svname,...``)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("# pxname,"):
        raise RuntimeApiError("Unexpected answer to 'show stat' (no '# pxname,...' header): %s" % _quote(text),
                              command="show stat", reply=text)
    header = lines[0][2:].rstrip(",").split(",")
    rows = []
    for line in lines[1:]:
        values = line.split(",")
        if len(values) < 2:
            raise RuntimeApiError("Unexpected 'show stat' line: %s" % _quote(line), command="show stat", reply=text)
        rows.append(dict(zip(header, values)))
    return rows


def parse_servers_state(text):
    """``show servers state`` (format version 1): one dict per server, fields named by the header line."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or lines[0].strip() != "1" or len(lines) < 2 or not lines[1].startswith("# be_id"):
        raise RuntimeApiError("Unexpected answer to 'show servers state' (format version 1 expected): %s"
                              % _quote(text), command="show servers state", reply=text)
    header = lines[1][2:].split()
    servers = []
    for line in lines[2:]:
        if line.startswith("#"):
            continue
        values = line.split()
        if len(values) < 7:
            raise RuntimeApiError("Unexpected 'show servers state' line: %s" % _quote(line),
                                  command="show servers state", reply=text)
        row = dict(zip(header, values))
        try:
            row["srv_op_state"] = int(row["srv_op_state"])
            row["srv_admin_state"] = int(row["srv_admin_state"])
        except (KeyError, ValueError):
            raise RuntimeApiError("Unexpected 'show servers state' line: %s" % _quote(line),
                                  command="show servers state", reply=text)
        servers.append(row)
    return servers


def parse_map_list(text):
    """``show map`` without argument: the files of the loaded maps."""
    files = []
    for line in text.splitlines():
        if line.startswith("#") or "(" not in line:
            continue
        files.append(line[line.index("(") + 1:line.index(")")] if ")" in line else line)
    return files


def parse_map(text):
    """``show map <file>``: ``[(reference, key, value)]`` (value is '' when the entry has none)."""
    entries = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split(None, 2)
        if len(fields) < 2 or not fields[0].startswith("0x"):
            raise RuntimeApiError("Unexpected 'show map' line: %s" % _quote(line), command="show map", reply=text)
        entries.append((fields[0], fields[1], fields[2].strip() if len(fields) > 2 else ""))
    return entries


def _quote(text, limit=300):
    text = text.strip()
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def server_record(stat_row, state_row):
    """One server as the modules return it, from its ``show stat`` row and ``show servers state`` row."""
    admin_bits = state_row["srv_admin_state"] if state_row else 0
    admin = "maint" if admin_bits & ADMIN_MAINT else "drain" if admin_bits & ADMIN_DRAIN else "ready"
    operational = OPERATIONAL.get(state_row["srv_op_state"], "unknown") if state_row else "unknown"
    status = stat_row.get("status", "")
    has_check = bool(_int(state_row.get("srv_check_state")) & CHECK_CONFIGURED) if state_row else status != "no check"
    if not has_check and operational == "unknown":
        operational = "up"
    return {
        "name": stat_row["svname"],
        "backend": stat_row["pxname"],
        "status": status,
        "admin": admin,
        "operational": operational,
        # Takes new requests that carry no sticky cookie (what HAProxy's nbsrv counts).
        "usable": admin == "ready" and operational in ("up", "starting") and _int(stat_row.get("weight")) > 0,
        "sessions": _int(stat_row.get("scur")),
        "queued": _int(stat_row.get("qcur")),
        "check": stat_row.get("check_status", ""),
        "check_code": stat_row.get("check_code", ""),
        "check_description": stat_row.get("check_desc", ""),
        "has_check": has_check,
        "address": stat_row.get("addr", ""),
        "weight": _int(stat_row.get("weight")),
    }


def read_backends(api, names=None):
    """``{backend: {'name', 'servers': {server: record}, 'usable_servers': n}}`` for every backend (or ``names``).

    Unknown names raise :class:`UnknownName` listing the backends there are.
    """
    rows = parse_stat(api.read("show stat"))
    backends = {}
    for row in rows:
        if row.get("svname") == "BACKEND":
            backends[row["pxname"]] = {"name": row["pxname"], "servers": {}, "usable_servers": 0}
    if names:
        unknown = [name for name in names if name not in backends]
        if unknown:
            raise UnknownName("This HAProxy has no backend %s. Its backends: %s." % (
                ", ".join("'%s'" % name for name in unknown), ", ".join(sorted(backends)) or "none"),
                sorted(backends))
        backends = dict((name, backends[name]) for name in names)
    states = dict(((row.get("be_name"), row.get("srv_name")), row)
                  for row in parse_servers_state(api.read("show servers state")))
    for row in rows:
        if row.get("svname") in ("FRONTEND", "BACKEND") or row.get("pxname") not in backends:
            continue
        record = server_record(row, states.get((row["pxname"], row["svname"])))
        backend = backends[row["pxname"]]
        backend["servers"][record["name"]] = record
        backend["usable_servers"] += 1 if record["usable"] else 0
    return backends


def read_server(api, backend, server):
    """The record of ``backend/server``; :class:`UnknownName` lists what exists when either name is wrong."""
    servers = read_backends(api, [backend])[backend]["servers"]
    if server not in servers:
        raise UnknownName("Backend '%s' has no server '%s'. Its servers: %s. Server names are the inventory host "
                          "names of the nodes (positops.ha.load_balancer)." % (
                              backend, server, ", ".join(servers) or "none"), list(servers))
    return servers[server]


def loaded_maps(api):
    return parse_map_list(api.read("show map"))


def read_map(api, path):
    return parse_map(api.read("show map %s" % path))


def split_switch(value):
    """A hold switch's map value, ``<Unix time>`` or ``<Unix time>:<server>,<server>``: ``(expires_at or None,
    [servers HAProxy admits at their first healthy answer])``."""
    expires, _sep, servers = value.partition(":")
    return (int(expires) if expires.isdigit() else None), [name for name in servers.split(",") if name]


def switch_value(expires_at, admit):
    """The map value that :func:`split_switch` reads."""
    return "%d:%s" % (expires_at, ",".join(admit)) if admit else "%d" % expires_at


def hold_states(api, path, backends, now):
    """``{backend: {'on', 'expires_at', 'expires_in', 'admit', 'entries'}}`` from the hold map ``path`` at Unix time
    ``now``.

    The map holds, per backend name, the Unix time at which its switch turns itself off (the Lua action ignores a
    switch whose time has passed), then optionally the servers HAProxy admits at their first healthy answer while
    the switch is on (positops-hold.lua). ``entries`` are the map references of the backend's rows (normally one).
    """
    rows = read_map(api, path)
    states = {}
    for backend in backends:
        mine = [(reference, split_switch(value)) for reference, key, value in rows if key == backend]
        readable = [switch for reference, switch in mine if switch[0] is not None]
        expires_at, admit = max(readable) if readable else (None, [])
        on = expires_at is not None and expires_at > now
        states[backend] = {
            "on": on,
            "expires_at": expires_at,
            "expires_in": max(0, expires_at - now) if expires_at is not None else 0,
            "admit": admit if on else [],
            "entries": [reference for reference, switch in mine],
        }
    return states
