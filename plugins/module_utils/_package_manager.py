# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!
"""Posit Package Manager's ``rspm`` CLI: the cluster sub-commands and parsers for their output.

What is known of the output (docs/CONTRACTS.md; tests/unit/plugins/cli_output/sources.yml names each sample):
- Every ``rspm`` command takes ``--output-format human|json`` (``-o``), ``human`` by default (Posit's CLI
  reference). The JSON shape of ``cluster nodes`` is not documented, so :func:`parse_cluster_nodes_json` accepts
  a list of nodes or an object holding one under ``nodes``, each node naming its host, version and mode under
  the usual spellings, and refuses anything else.
- ``rspm cluster nodes`` (human): one line per node holding the host name (``Server.HostName`` or the host's
  name), the version and the mode (online/offline) - seed 000. :func:`parse_cluster_nodes` reads it with or
  without a header line; with a header, columns are found by their titles and extra columns are ignored.
- ``rspm cluster offline|online --nodes=A,B --timeout=N``: waits, then prints the same listing and exits 0.
  Unknown node: exit 1, stderr ``Error: unknown node(s): X. Known nodes: A, B, C``. Timeout: exit 1, stderr
  ``Error: timed out after N seconds waiting for node(s) X to be <mode>`` and the listing on stdout.

:class:`PackageManagerCli` asks for JSON first and falls back to the human listing when this ``rspm`` refuses
the flag or prints something the JSON reader does not know; either way it returns node records.
"""

from __future__ import annotations

import json
import re

from ansible_collections.positops.ha.plugins.module_utils._cli import (
    CliParseError, ProductCli, header_columns, node_record, read_table)

RSPM_PATH = "/opt/rstudio-pm/bin/rspm"
MODES = ("online", "offline")
JSON_FLAG = "--output-format=json"

# Header titles a human listing may carry (case is ignored); values hold no spaces.
COLUMNS = (
    ("name", ("Host Name", "Hostname", "Host", "Node Name", "Node", "Name")),
    ("version", ("Version",)),
    ("mode", ("Mode", "Status", "State")),
)
# Keys a JSON node may use (compared in lower case without "_", "-" or spaces).
JSON_KEYS = {
    "name": ("hostname", "host", "nodename", "node", "name"),
    "version": ("version",),
    "mode": ("mode", "status", "state"),
}

_UNKNOWN_NODES = re.compile(r"^(?:Error: )?unknown node\(s\): (?P<unknown>.*?)\. Known nodes: (?P<known>.*?)\.?$",
                            re.MULTILINE | re.IGNORECASE)
_TIMED_OUT = re.compile(r"^(?:Error: )?timed out after (?P<seconds>\d+) seconds waiting for node\(s\) (?P<nodes>.+?) "
                        r"to be (?P<mode>online|offline)\.?$", re.MULTILINE | re.IGNORECASE)


def _split_names(text):
    return [name.strip() for name in text.split(",") if name.strip()]


def _mode(value, where):
    mode = (value or "").strip().lower()
    if mode not in MODES:
        raise CliParseError("%s: mode %r is neither online nor offline" % (where, value))
    return mode


def _record(name, version, mode_text, where):
    if not name:
        raise CliParseError("%s has no host name" % where)
    if not version:
        raise CliParseError("%s has no version" % where)
    return node_record(name, mode_text.strip(), _mode(mode_text, where), version=version)


def _is_header(fields):
    words = set(field.lower() for field in fields)
    return "version" in words and bool(words & {"mode", "status", "state"}) and not words & set(MODES)


def parse_cluster_nodes(text):
    """Parse the human ``rspm cluster nodes`` listing into node records, in the order printed.

    Without a header each line is ``<host name> <version> <mode>``. With a header (its first non-blank line names
    a version and a mode column), values are read under the titles, in any order, and other columns are ignored.
    """
    lines = text.splitlines()
    numbered = [(number, line.rstrip()) for number, line in enumerate(lines, start=1) if line.strip()]
    if not numbered:
        return []
    first_number, first = numbered[0]
    if _is_header(first.split()):
        table = [first] + lines[first_number:]
        found = set(key for key, title, start in header_columns(first, COLUMNS))
        missing = [key for key, titles in COLUMNS if key not in found]
        if missing:
            raise CliParseError("the header line has no %s column: %r" % (" or ".join(missing), first))
        nodes = []
        for row in read_table(table, COLUMNS, first_line=first_number, split_on_white_space=True):
            where = "line %d" % row["_line"]
            nodes.append(_record(row.get("name"), row.get("version"), row.get("mode") or "", where))
        return nodes
    nodes = []
    for number, line in numbered:
        fields = line.split()
        if len(fields) != 3:
            raise CliParseError("line %d has %d fields, expected 3 (hostname version mode) or a header line "
                                "naming the columns: %r" % (number, len(fields), line))
        nodes.append(_record(fields[0], fields[1], fields[2], "line %d" % number))
    return nodes


def _json_value(node, field):
    by_key = dict((re.sub(r"[\s_-]", "", str(key)).lower(), value) for key, value in node.items())
    for key in JSON_KEYS[field]:
        if key in by_key:
            return by_key[key]
    if field == "mode" and isinstance(by_key.get("online"), bool):
        return "online" if by_key["online"] else "offline"
    return None


def parse_cluster_nodes_json(text):
    """Parse ``rspm cluster nodes --output-format=json`` into node records.

    Accepts a JSON list of nodes, or an object with such a list under ``nodes`` (any case). Each node must give a
    host name, a version and a mode (``online``/``offline``, or a boolean ``online``) as text; anything else is
    refused, so a JSON document of another shape is never read as nodes.
    """
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CliParseError("the output is not JSON (%s)" % exc)
    if isinstance(data, dict):
        lists = [value for key, value in data.items() if str(key).lower() == "nodes"]
        if len(lists) != 1 or not isinstance(lists[0], list):
            raise CliParseError("the JSON object has no list of nodes under 'nodes' (its keys: %s)"
                                % (", ".join(sorted(str(key) for key in data)) or "none"))
        data = lists[0]
    if not isinstance(data, list):
        raise CliParseError("the JSON document is a %s, not a list of nodes" % type(data).__name__)
    nodes = []
    for index, node in enumerate(data):
        where = "JSON node %d" % (index + 1)
        if not isinstance(node, dict):
            raise CliParseError("%s is not an object: %r" % (where, node))
        values = dict((field, _json_value(node, field)) for field in JSON_KEYS)
        wrong = [field for field, value in values.items() if not isinstance(value, str)]
        if wrong:
            raise CliParseError("%s has no text %s (its keys: %s)" % (
                where, " or ".join(wrong), ", ".join(sorted(str(key) for key in node)) or "none"))
        nodes.append(_record(values["name"].strip(), values["version"].strip(), values["mode"], where))
    return nodes


def parse_listing(text):
    """A listing in either format: JSON when the output starts like a JSON document, else the human format."""
    if text.lstrip()[:1] in ("{", "["):
        return parse_cluster_nodes_json(text)
    return parse_cluster_nodes(text)


def _error_text(stderr):
    """The message of an error, also when ``rspm -o json`` prints it as a JSON object."""
    stripped = stderr.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except ValueError:
            return stderr
        if isinstance(data, dict):
            for key, value in data.items():
                if str(key).lower() in ("error", "message", "msg") and isinstance(value, str):
                    return value
    return stderr


def parse_cluster_error(stderr):
    """Recognise the two documented ``rspm cluster offline|online`` failures.

    Returns ``{"kind": "unknown_nodes", "unknown": [...], "known": [...]}``,
    ``{"kind": "timeout", "seconds": N, "nodes": [...], "mode": "online"}`` or ``None`` for anything else.
    """
    text = _error_text(stderr)
    match = _UNKNOWN_NODES.search(text)
    if match:
        return {"kind": "unknown_nodes", "unknown": _split_names(match.group("unknown")),
                "known": _split_names(match.group("known"))}
    match = _TIMED_OUT.search(text)
    if match:
        return {"kind": "timeout", "seconds": int(match.group("seconds")),
                "nodes": _split_names(match.group("nodes")), "mode": match.group("mode").lower()}
    return None


class PackageManagerCli(ProductCli):
    product = "Posit Package Manager"
    default_path = RSPM_PATH
    cannot_delete_nodes = ("state=absent is only for Workbench: Package Manager has no command to remove a node from "
                           "its cluster. Stop the node's rstudio-pm service and remove it from the load balancer "
                           "instead.")

    def __init__(self, module, path=None):
        super(PackageManagerCli, self).__init__(module, path)
        # Whether this rspm answered the JSON listing; set by list_nodes, used by set_mode.
        self.json_output = False

    def list_nodes(self):
        """The cluster's nodes: from the JSON listing when this rspm gives one we can read, else the human one."""
        result = self.run(["cluster", "nodes", JSON_FLAG])
        if result.rc == 0:
            if result.stdout.lstrip()[:1] not in ("{", "["):
                # This rspm ignored the flag and printed its human listing.
                return self.parse(result, parse_cluster_nodes)
            try:
                nodes = parse_cluster_nodes_json(result.stdout)
            except CliParseError as exc:
                self.module.warn("Could not read the JSON listing of `%s` (%s); reading its human listing instead. "
                                 "Please report this with the output of that command." % (result.command, exc))
            else:
                self.json_output = True
                return nodes
        # rc != 0: an rspm without --output-format, or a real failure that the human listing reports again.
        return self.check(["cluster", "nodes"], parse_cluster_nodes)

    def set_mode(self, mode, names, timeout):
        """Start ``rspm cluster <mode>`` for ``names`` and return the raw result (the caller reads failures)."""
        if mode not in MODES:
            raise ValueError("mode must be one of %s" % ", ".join(MODES))
        args = ["cluster", mode, "--nodes=%s" % ",".join(names), "--timeout=%d" % timeout]
        return self.run(args + ([JSON_FLAG] if self.json_output else []))

    def mode_error(self, result):
        """What went wrong in a failed ``rspm cluster offline|online``: see :func:`parse_cluster_error`."""
        return parse_cluster_error(result.stderr)

    def listing(self, result):
        """The node records of the listing ``rspm cluster offline|online`` printed (JSON or human)."""
        return self.parse(result, parse_listing)
