# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!
"""Posit Workbench's ``rstudio-server`` CLI: node listing, local online/offline, node deletion.

Output formats (docs/CONTRACTS.md):
- ``rstudio-server list-nodes``: a header ``ID  Host  IPv4  Port  Status  Last Seen`` and one fixed-width row per
  node, aligned under the header. Status may contain spaces; Last Seen is ``YYYY-MM-DD HH:MM:SS`` or empty.
- ``rstudio-server delete-node ID``: ``Node ID deleted.``; an unknown ID exits 1 with ``Error: node ID not found``.
- ``rstudio-server offline|online``: act on the local node only.
"""

from __future__ import annotations

import re
import socket

from ansible_collections.positops.ha.plugins.module_utils._cli import CliParseError, ProductCli

RSTUDIO_SERVER_PATH = "/usr/sbin/rstudio-server"
LOAD_BALANCER_CONFIG = "/etc/rstudio/load-balancer"

# Column titles in the order list-nodes prints them; "Last Seen" is absent from older releases.
COLUMNS = (("id", "ID"), ("name", "Host"), ("ipv4", "IPv4"), ("port", "Port"), ("status", "Status"),
           ("last_seen", "Last Seen"))
OPTIONAL_COLUMNS = ("last_seen",)

# Statuses documented by Posit, and the mode each one means (None: neither serving nor cleanly offline).
STATUS_MODES = {
    "Online": "online",
    "Offline": "offline",
    "Starting": None,
    "Deleting": None,
    "Failed to resolve": None,
    "Invalid secure cookie key": None,
    "Invalid permissions on secure cookie key": None,
    "Missing secure cookie key": None,
    # Online in the database but silent for 10 minutes: not a node to count on.
    "Missed check-in": None,
}
# A node in one of these states is (or is about to be) serving sessions; deleting it loses data.
LIVE_STATUSES = ("Online", "Starting")

_LAST_SEEN = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
_DELETED = re.compile(r"^Node (?P<id>\d+) deleted\.?$", re.MULTILINE)


def _column_starts(header):
    starts = []
    position = 0
    for key, title in COLUMNS:
        match = re.search(r"(?:^|(?<= ))%s(?= |$)" % re.escape(title), header[position:])
        if match is None:
            if key in OPTIONAL_COLUMNS:
                continue
            raise CliParseError("the header has no %r column: %r" % (title, header))
        starts.append((key, position + match.start()))
        position += match.end()
    return starts


def parse_list_nodes(text):
    """Parse ``rstudio-server list-nodes`` into records ``{id, name, ipv4, port, status, last_seen, mode}``."""
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines or not lines[0].lstrip().startswith("ID"):
        raise CliParseError("expected a header line starting with 'ID', got %r" % (lines[0] if lines else ""))
    starts = _column_starts(lines[0])
    nodes = []
    for number, row in enumerate(lines[1:], start=2):
        if not row.strip():
            continue
        record = {"last_seen": None}
        for index, (key, start) in enumerate(starts):
            end = starts[index + 1][1] if index + 1 < len(starts) else len(row)
            # A value that runs into the next column means the row is not aligned under the header.
            if index and start < len(row) and row[start - 1] != " ":
                raise CliParseError("line %d is not aligned under the header (column %r): %r"
                                    % (number, dict(COLUMNS)[key], row))
            record[key] = row[start:end].strip() or None
        node_id = record["id"] or ""
        if not node_id.isdigit():
            raise CliParseError("line %d: node ID %r is not a number: %r" % (number, node_id, row))
        record["id"] = int(node_id)
        if record["port"] is not None:
            if not record["port"].isdigit():
                raise CliParseError("line %d: port %r is not a number: %r" % (number, record["port"], row))
            record["port"] = int(record["port"])
        if not record["status"]:
            raise CliParseError("line %d has no status: %r" % (number, row))
        if record["last_seen"] is not None and not _LAST_SEEN.match(record["last_seen"]):
            raise CliParseError("line %d: last seen %r is not YYYY-MM-DD HH:MM:SS: %r"
                                % (number, record["last_seen"], row))
        record["mode"] = STATUS_MODES.get(record["status"])
        nodes.append(record)
    return nodes


def parse_delete_node(node_id):
    """Return a parser that accepts ``Node <node_id> deleted.`` and nothing else."""
    def parser(text):
        match = _DELETED.search(text)
        if match is None or int(match.group("id")) != int(node_id):
            raise CliParseError("expected 'Node %s deleted.', got %r" % (node_id, text.strip()))
        return int(match.group("id"))
    return parser


def read_www_host_name(path=None):
    """The ``www-host-name`` of /etc/rstudio/load-balancer without scheme or port, or None."""
    try:
        with open(path or LOAD_BALANCER_CONFIG) as handle:
            lines = handle.read().splitlines()
    except (IOError, OSError):
        return None
    for line in lines:
        key, sep, value = line.partition("=")
        if sep and key.strip() == "www-host-name" and value.strip():
            host = re.sub(r"^[a-z]+://", "", value.strip()).split("/")[0]
            return re.sub(r":\d+$", "", host)
    return None


def local_identity():
    """Names and IPv4 addresses under which this host can appear in the Host / IPv4 columns (lower case)."""
    names = set()
    hostname = socket.gethostname()
    for name in (hostname, hostname.split(".")[0], socket.getfqdn(), read_www_host_name()):
        if name:
            names.add(name.lower())
    addresses = set()
    for name in (hostname, socket.getfqdn()):
        try:
            for info in socket.getaddrinfo(name, None, socket.AF_INET):
                addresses.add(info[4][0])
        except (socket.error, UnicodeError):
            continue
    return {"names": names, "addresses": addresses}


def is_local(record, identity):
    name = (record.get("name") or "").lower()
    return (re.sub(r":\d+$", "", name) in identity["names"]
            or (record.get("ipv4") or "") in identity["addresses"])


class WorkbenchCli(ProductCli):
    product = "Posit Workbench"
    default_path = RSTUDIO_SERVER_PATH

    def list_nodes(self):
        return self.check(["list-nodes"], parse_list_nodes)

    def set_local_mode(self, mode):
        if mode not in ("online", "offline"):
            raise ValueError("mode must be online or offline")
        return self.check([mode])

    def delete_node(self, node_id):
        return self.check(["delete-node", str(node_id)], parse_delete_node(node_id))
