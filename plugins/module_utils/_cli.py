# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!
"""Run a product's command line tool with a fixed environment, and parse its output in one place.

Each product adapter (``_package_manager.py``, ``_workbench.py``) subclasses :class:`ProductCli`, names its
executable once and turns sub-commands into argument lists. Every call goes through :meth:`ProductCli.run`,
which forces the C locale (the parsers read English, fixed-format output) and records the command line, so a
module can return exactly what it ran. Parsers are pure functions that raise :class:`CliParseError`; when one
does, :meth:`ProductCli.parse` fails the module with the command, its exit code, stdout and stderr.

Each adapter's ``list_nodes()`` returns the cluster's nodes as :func:`node_record` dicts, one shape for every
product, so the modules and playbooks never ask which product printed them. :func:`read_table` reads the
column-aligned listings both products print, finding columns by their header titles.
"""

from __future__ import annotations

import os
import re
import shlex

# The parsers expect untranslated messages and ASCII column alignment.
CLI_ENVIRONMENT = {"LC_ALL": "C", "LANG": "C", "LANGUAGE": "C"}


# The fields of a node record, documented as RV(nodes) in cluster_node and cluster_node_info.
NODE_FIELDS = ("name", "id", "version", "status", "mode", "ipv4", "port", "last_seen", "health", "missed_check_in")


class CliParseError(ValueError):
    """Raised by a parser when the tool printed something it does not understand."""


def node_record(name, status, mode, **fields):
    """One cluster node, in the shape every adapter returns; fields a product does not print are None."""
    unknown = sorted(set(fields) - set(NODE_FIELDS))
    if unknown:
        raise ValueError("not node record fields: %s" % ", ".join(unknown))
    record = dict.fromkeys(NODE_FIELDS)
    record.update(fields, name=name, status=status, mode=mode)
    return record


def _title_pattern(title):
    """A header title as a case-insensitive regex: whole words, any run of spaces between them."""
    return re.compile(r"(?<!\S)%s(?!\S)" % r"\s+".join(re.escape(word) for word in title.split()), re.IGNORECASE)


def _known_key(title, columns):
    """The key of the column one of whose spellings is ``title`` (case and spacing aside), else None."""
    wanted = " ".join(title.lower().split())
    for key, titles in columns:
        if wanted in (" ".join(spelling.lower().split()) for spelling in titles):
            return key
    return None


def header_columns(header, columns):
    """Find the columns of a table header by their titles.

    ``columns`` is a sequence of ``(key, titles)``: ``titles`` are the spellings a product may use, matched
    case-insensitively as whole words (longer spellings first, so ``Host Name`` wins over ``Host``). Words of the
    header that belong to no known column are extra columns (key ``None``): they are kept only so that their
    values end the column before them. Returns ``[(key, title, start)]`` in the order the header shows them;
    for a tab-separated header ``start`` is the column's index.
    """
    if "\t" in header:
        titles = [title.strip() for title in header.strip("\n").split("\t")]
        return [(_known_key(title, columns), title, index) for index, title in enumerate(titles)]
    taken = []
    found = []
    for key, titles in columns:
        for title in sorted(titles, key=len, reverse=True):
            match = next((m for m in _title_pattern(title).finditer(header)
                          if not any(m.start() < end and start < m.end() for start, end in taken)), None)
            if match:
                taken.append((match.start(), match.end()))
                found.append((key, match.group(0), match.start()))
                break
    # What is left: words of no known title; words one space apart make one title (such as "Last Seen").
    extra = []
    for match in re.finditer(r"\S+", header):
        if any(match.start() < end and start < match.end() for start, end in taken):
            continue
        if extra and extra[-1][1] == match.start() - 1:
            extra[-1] = (extra[-1][0], match.end())
        else:
            extra.append((match.start(), match.end()))
    found.extend((None, header[start:end], start) for start, end in extra)
    return sorted(found, key=lambda column: column[2])


def _cells(row, found, number, split_on_white_space, tabs):
    if tabs:
        cells = [cell.strip() for cell in row.split("\t")]
        if len(cells) != len(found):
            raise CliParseError("line %d has %d tab-separated values where the header has %d titles: %r"
                                % (number, len(cells), len(found), row))
        return cells
    starts = [start for key, title, start in found]
    if row[:starts[0]].strip():
        raise CliParseError("line %d starts before the header's first column %r: %r" % (number, found[0][1], row))
    overrun = [title for key, title, start in found[1:] if start < len(row) and row[start - 1] != " "]
    if not overrun:
        return [row[start:end].strip() for start, end in zip(starts, starts[1:] + [len(row)])]
    if split_on_white_space and len(row.split()) == len(found):
        return row.split()
    raise CliParseError("line %d is not aligned under the header: its value before column %r runs into it: %r"
                        % (number, overrun[0], row))


def read_table(lines, columns, first_line=1, split_on_white_space=False):
    """Read the rows of a table whose header is ``lines[0]``; return one ``{key: value or None}`` per row.

    Values are cut at the start positions of the header's titles, so a value may contain spaces (a Workbench
    status such as ``Failed to resolve``) and may be empty. A row whose value runs into the next column is
    refused, unless ``split_on_white_space`` is set (no value can contain a space) and the row has exactly one
    word per column, as when a header and its rows are separated by single spaces. A tab-separated header means
    tab-separated rows. Blank rows and a line of dashes right under the header are skipped. Each row also gets
    ``_line``, its line number in the output (``first_line`` is the header's), for messages.
    """
    header = lines[0]
    found = header_columns(header, columns)
    tabs = "\t" in header
    rows = []
    for offset, row in enumerate(lines[1:], start=1):
        number = first_line + offset
        if not row.strip() or (offset == 1 and re.match(r"^[\s\-=+|]+$", row)):
            continue
        values = {"_line": number}
        for (key, title, start), cell in zip(found, _cells(row, found, number, split_on_white_space, tabs)):
            if key is not None:
                values[key] = cell or None
        rows.append(values)
    return rows


def command_line(argv):
    """``argv`` as one shell-quoted line, as the modules report commands."""
    return " ".join(shlex.quote(part) for part in argv)


class CliResult:
    """What one command returned."""

    def __init__(self, argv, rc, stdout, stderr):
        self.argv = list(argv)
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr

    @property
    def command(self):
        return command_line(self.argv)


class ProductCli:
    """A product's CLI on this host. Subclasses set ``product`` (a human name) and ``default_path``."""

    product = None
    default_path = None
    # When the product has no command that removes a node from its cluster: why, and what to do instead.
    cannot_delete_nodes = None

    def __init__(self, module, path=None):
        self.module = module
        self.path = path or self.default_path
        # Every command run, in order; modules return it as ``commands``.
        self.commands = []
        # Returned with any failure of a command, besides what the command did (cluster_node's ``stage``).
        self.failure_details = {}

    def list_nodes(self):
        """The cluster's nodes as :func:`node_record` dicts, in the order the product lists them."""
        raise NotImplementedError("%s has no node listing" % self.product)

    def ensure_available(self):
        """Fail early, and clearly, when the CLI is not installed where we expect it."""
        if not os.path.isfile(self.path) or not os.access(self.path, os.X_OK):
            self.module.fail_json(
                msg="%s's command line tool was not found or is not executable at %s. Run this task on a node "
                    "where %s is installed, or set cli_path to the tool's location." % (
                        self.product, self.path, self.product),
                commands=self.commands)

    def run(self, args):
        """Run the CLI with ``args``; return a :class:`CliResult` whatever the exit code."""
        argv = [self.path] + [str(arg) for arg in args]
        # Listed before it runs: a caller may return while it still runs (cluster_node's health_url).
        self.commands.append(command_line(argv))
        rc, stdout, stderr = self.module.run_command(argv, environ_update=dict(CLI_ENVIRONMENT))
        return CliResult(argv, rc, stdout or "", stderr or "")

    def fail_command(self, msg, result, **extra):
        """Fail the module with everything needed to understand what the CLI did."""
        self.module.fail_json(msg=msg, cmd=result.command, rc=result.rc, stdout=result.stdout,
                              stderr=result.stderr, commands=self.commands, **dict(self.failure_details, **extra))

    def parse(self, result, parser):
        """Apply a pure parser to a result's stdout; a parse failure fails the module with the raw output."""
        try:
            return parser(result.stdout)
        except CliParseError as exc:
            self.fail_command("Could not understand the output of `%s`: %s" % (result.command, exc), result)

    def check(self, args, parser=None):
        """Run, require exit code 0, and parse stdout when a parser is given."""
        result = self.run(args)
        if result.rc != 0:
            self.fail_command("`%s` failed with exit code %s: %s" % (
                result.command, result.rc, (result.stderr or result.stdout).strip()), result)
        if parser is None:
            return result
        return self.parse(result, parser)
