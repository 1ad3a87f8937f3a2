# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!
"""Posit Package Manager's ``rspm`` CLI: the cluster sub-commands and parsers for their output.

Output formats (docs/CONTRACTS.md):
- ``rspm cluster nodes``: one line per node, ``<hostname> <version> <mode>``, mode ``online`` or ``offline``.
- ``rspm cluster offline|online --nodes=A,B --timeout=N``: waits, then prints the same listing and exits 0.
  Unknown node: exit 1, stderr ``Error: unknown node(s): X. Known nodes: A, B, C``. Timeout: exit 1, stderr
  ``Error: timed out after N seconds waiting for node(s) X to be <mode>`` and the listing on stdout.
"""

from __future__ import annotations

import re

from ansible_collections.positops.ha.plugins.module_utils._cli import CliParseError, ProductCli

RSPM_PATH = "/opt/rstudio-pm/bin/rspm"
MODES = ("online", "offline")

_UNKNOWN_NODES = re.compile(r"^Error: unknown node\(s\): (?P<unknown>.*?)\. Known nodes: (?P<known>.*?)\.?$",
                            re.MULTILINE)
_TIMED_OUT = re.compile(r"^Error: timed out after (?P<seconds>\d+) seconds waiting for node\(s\) (?P<nodes>.+?) "
                        r"to be (?P<mode>online|offline)\.?$", re.MULTILINE)


def _split_names(text):
    return [name.strip() for name in text.split(",") if name.strip()]


def parse_cluster_nodes(text):
    """Parse the ``rspm cluster nodes`` listing into ``[{name, version, mode}]``, in the order printed."""
    nodes = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 3:
            raise CliParseError("line %d has %d fields, expected 3 (hostname version mode): %r"
                                % (number, len(fields), line))
        name, version, mode = fields
        if mode not in MODES:
            raise CliParseError("line %d: mode %r is neither online nor offline: %r" % (number, mode, line))
        nodes.append({"name": name, "version": version, "mode": mode})
    return nodes


def parse_cluster_error(stderr):
    """Recognise the two documented ``rspm cluster offline|online`` failures.

    Returns ``{"kind": "unknown_nodes", "unknown": [...], "known": [...]}``,
    ``{"kind": "timeout", "seconds": N, "nodes": [...], "mode": "online"}`` or ``None`` for anything else.
    """
    match = _UNKNOWN_NODES.search(stderr)
    if match:
        return {"kind": "unknown_nodes", "unknown": _split_names(match.group("unknown")),
                "known": _split_names(match.group("known"))}
    match = _TIMED_OUT.search(stderr)
    if match:
        return {"kind": "timeout", "seconds": int(match.group("seconds")),
                "nodes": _split_names(match.group("nodes")), "mode": match.group("mode")}
    return None


class PackageManagerCli(ProductCli):
    product = "Posit Package Manager"
    default_path = RSPM_PATH

    def cluster_nodes(self):
        return self.check(["cluster", "nodes"], parse_cluster_nodes)

    def set_mode(self, mode, names, timeout):
        """Start ``rspm cluster <mode>`` for ``names`` and return the raw result (the caller reads failures)."""
        if mode not in MODES:
            raise ValueError("mode must be one of %s" % ", ".join(MODES))
        return self.run(["cluster", mode, "--nodes=%s" % ",".join(names), "--timeout=%d" % timeout])
