# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!
"""Posit Workbench's ``rstudio-server`` CLI: node listing, local online/offline, node deletion.

What is known of the output (docs/CONTRACTS.md; tests/unit/plugins/cli_output/sources.yml names each sample):
- ``rstudio-server list-nodes``: a header (``ID  Host  IPv4  Port  Status`` and, from 2021.09, ``Last Seen``;
  seed 004 adds a health column) and one row per node, aligned under the header. Status may contain spaces.
  Real releases print a ``Cluster`` / ``Protocol`` block before the table (Posit's 2021.09 announcement); lines
  before the header are skipped. Last Seen is the server's local time, ``YYYY-Mon-DD HH:MM:SS`` in the announcement,
  ``YYYY-MM-DD HH:MM:SS`` in the emulator, possibly with a zone or an offset; or empty. No machine-readable format
  is documented.
- ``rstudio-server delete-node ID``: ``Node ID deleted.``; an unknown ID exits 1 with ``Error: node ID not found``.
- ``rstudio-server offline|online``: act on the local node only.

A node that is Online but has not checked in for 10 minutes is "Missed check-in": ``list-nodes`` prints that status
itself; the parser also derives it from Last Seen and the current time, so a listing that prints Online for a
silent node is not taken at its word.
"""

from __future__ import annotations

import calendar
import datetime
import re
import socket
import time

from ansible_collections.positops.ha.plugins.module_utils._cli import (
    CliParseError, ProductCli, header_columns, node_record, read_table)

try:
    from zoneinfo import ZoneInfo  # Python 3.9+; only for a Last Seen that names an IANA zone
except ImportError:  # pragma: no cover - older Pythons read such a zone as the local time zone
    ZoneInfo = None

RSTUDIO_SERVER_PATH = "/usr/sbin/rstudio-server"
LOAD_BALANCER_CONFIG = "/etc/rstudio/load-balancer"

# Column titles list-nodes may print (case is ignored). ID, Host and Status are required; the others are read
# when present, and columns of other titles are skipped.
COLUMNS = (
    ("id", ("ID",)),
    ("name", ("Host", "Host Name", "Hostname")),
    ("ipv4", ("IPv4", "IP Address", "IP")),
    ("port", ("Port",)),
    ("status", ("Status",)),
    ("health", ("Health",)),
    ("last_seen", ("Last Seen", "Last Seen Time", "Last Check-in", "Last Check In")),
)
REQUIRED_COLUMNS = ("id", "name", "status")

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
MISSED_CHECK_IN = "Missed check-in"
# An Online node checks in every 5 minutes; Workbench calls it "Missed check-in" after 10 (seed 004).
MISSED_CHECK_IN_SECONDS = 600
# A node in one of these states is (or is about to be) serving sessions; deleting it loses data.
LIVE_STATUSES = ("Online", "Starting")

_MONTHS = dict((name, number) for number, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1))
_STAMP = re.compile(
    r"^(?P<year>\d{4})[-/](?P<month>\d{1,2}|[A-Za-z]{3})[-/](?P<day>\d{1,2})[ T]"
    r"(?P<hour>\d{1,2}):(?P<minute>\d{2}):(?P<second>\d{2})(?:[.,](?P<fraction>\d+))?"
    r"\s*(?P<zone>.*)$")
_OFFSET = re.compile(r"^(?:(?:UTC|GMT)\s*)?(?P<sign>[+-])(?P<hours>\d{1,2})(?::?(?P<minutes>\d{2}))?$",
                     re.IGNORECASE)
_ZONE_NAME = re.compile(r"^(?:[A-Za-z]{2,6}|[A-Za-z_]+(?:/[A-Za-z0-9_+-]+)+)$")
_DELETED = re.compile(r"^Node (?P<id>\d+) deleted\.?$", re.MULTILINE)

_CANONICAL_STATUS = dict((status.lower(), status) for status in STATUS_MODES)


def wall_clock():
    """Seconds since the epoch now; the module tests replace it with a fixed clock."""
    return time.time()


def parse_last_seen(text):
    """Read a Last Seen time stamp: ``(naive datetime, UTC offset in seconds or None, zone name or None)``.

    Accepts ``YYYY-MM-DD HH:MM:SS`` and ``YYYY-Mon-DD HH:MM:SS`` (English month abbreviations, as Boost prints
    them), ``T`` between date and time, a fraction of a second, and then optionally ``Z``, ``UTC``/``GMT``, an
    offset (``+01:00``, ``-0500``, ``UTC+1``) or a zone name (``CET``, ``Europe/Berlin``).
    """
    match = _STAMP.match(text.strip())
    if match is None:
        raise ValueError("not a date and time")
    month = match.group("month")
    month = int(month) if month.isdigit() else _MONTHS.get(month.lower())
    if month is None:
        raise ValueError("unknown month %r" % match.group("month"))
    fraction = (match.group("fraction") or "0")[:6].ljust(6, "0")
    stamp = datetime.datetime(int(match.group("year")), month, int(match.group("day")), int(match.group("hour")),
                              int(match.group("minute")), int(match.group("second")), int(fraction))
    zone = match.group("zone").strip()
    if not zone:
        return stamp, None, None
    if zone.upper() in ("Z", "UTC", "GMT", "UT"):
        return stamp, 0, zone
    offset = _OFFSET.match(zone)
    if offset:
        seconds = int(offset.group("hours")) * 3600 + int(offset.group("minutes") or 0) * 60
        if seconds > 14 * 3600:
            raise ValueError("offset %r is out of range" % zone)
        return stamp, -seconds if offset.group("sign") == "-" else seconds, zone
    if _ZONE_NAME.match(zone):
        return stamp, None, zone
    raise ValueError("unknown zone %r" % zone)


def local_epoch(stamp, zone=None):
    """Seconds since the epoch of a time stamp in this host's local time zone, which list-nodes prints in.

    A zone abbreviation that names this host's daylight-saving zone (``time.tzname[1]``) settles an hour that
    occurs twice when the clocks go back; any other name is taken as the local zone, as documented.
    """
    is_dst = -1
    names = [name.upper() for name in time.tzname]
    if zone and zone.upper() in names and names[0] != names[1]:
        is_dst = names.index(zone.upper())
    return time.mktime(stamp.timetuple()[:8] + (is_dst,)) + stamp.microsecond / 1e6


def last_seen_epoch(text, to_epoch=local_epoch):
    """Seconds since the epoch of a Last Seen value; ``to_epoch(stamp, zone)`` converts a local time."""
    stamp, offset, zone = parse_last_seen(text)
    if offset is not None:
        return calendar.timegm(stamp.timetuple()) + stamp.microsecond / 1e6 - offset
    if zone and "/" in zone and ZoneInfo is not None:
        try:
            return stamp.replace(tzinfo=ZoneInfo(zone)).timestamp()
        except (KeyError, ValueError, OSError):
            raise ValueError("unknown time zone %r" % zone)
    return to_epoch(stamp, zone)


def _find_header(lines):
    """The index of the header line: the first whose first word is ID (lines before it are a preamble)."""
    for index, line in enumerate(lines):
        if line.split()[:1] and line.split()[0].upper() == "ID":
            return index
    first = next((line for line in lines if line.strip()), "")
    raise CliParseError("expected a header line starting with 'ID' (ID  Host  IPv4  Port  Status ...), got %r"
                        % first)


def parse_list_nodes(text, now=None, to_epoch=local_epoch):
    """Parse ``rstudio-server list-nodes`` into node records, in the order printed.

    ``now`` (seconds since the epoch) lets the parser mark an Online node whose Last Seen is more than 10 minutes
    old as a missed check-in (``missed_check_in``, mode None), as Workbench itself does; ``to_epoch`` converts a
    Last Seen without an offset, which is in the local time zone.
    """
    lines = [line.rstrip() for line in text.splitlines()]
    index = _find_header(lines)
    header = lines[index]
    keys = set(key for key, title, start in header_columns(header, COLUMNS))
    missing = [title for key, titles in COLUMNS for title in titles[:1] if key in REQUIRED_COLUMNS and key not in keys]
    if missing:
        raise CliParseError("the header has no %s column: %r" % (" or ".join(repr(t) for t in missing), header))
    nodes = []
    for row in read_table(lines[index:], COLUMNS, first_line=index + 1):
        number, line = row["_line"], lines[row["_line"] - 1]
        node_id = row.get("id") or ""
        if not node_id.isdigit():
            raise CliParseError("line %d: node ID %r is not a number: %r" % (number, node_id, line))
        port = row.get("port")
        if port is not None and not port.isdigit():
            raise CliParseError("line %d: port %r is not a number: %r" % (number, port, line))
        status = row.get("status")
        if not status:
            raise CliParseError("line %d has no status: %r" % (number, line))
        last_seen = row.get("last_seen")
        seen_at = None
        if last_seen is not None:
            try:
                seen_at = last_seen_epoch(last_seen, to_epoch)
            except (ValueError, OverflowError) as exc:
                raise CliParseError("line %d: last seen %r is not a time stamp such as 2026-11-23 12:40:05 or "
                                    "2021-Sep-20 17:08:53, optionally with a zone (%s): %r"
                                    % (number, last_seen, exc, line))
        canonical = _CANONICAL_STATUS.get(status.lower(), status)
        missed = canonical == MISSED_CHECK_IN or (
            canonical == "Online" and now is not None and seen_at is not None
            and now - seen_at > MISSED_CHECK_IN_SECONDS)
        nodes.append(node_record(
            row.get("name"), status, None if missed else STATUS_MODES.get(canonical), id=int(node_id),
            ipv4=row.get("ipv4"), port=int(port) if port is not None else None, last_seen=last_seen,
            health=row.get("health"), missed_check_in=missed))
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
        """The cluster's nodes as records; Online nodes silent for 10 minutes are marked as missed check-ins."""
        now = wall_clock()
        return self.check(["list-nodes"], lambda text: parse_list_nodes(text, now=now))

    def set_local_mode(self, mode):
        if mode not in ("online", "offline"):
            raise ValueError("mode must be online or offline")
        return self.check([mode])

    def delete_node(self, node_id):
        return self.check(["delete-node", str(node_id)], parse_delete_node(node_id))
