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
"""

from __future__ import annotations

import os
import shlex

# The parsers expect untranslated messages and ASCII column alignment.
CLI_ENVIRONMENT = {"LC_ALL": "C", "LANG": "C", "LANGUAGE": "C"}


class CliParseError(ValueError):
    """Raised by a parser when the tool printed something it does not understand."""


class CliResult:
    """What one command returned."""

    def __init__(self, argv, rc, stdout, stderr):
        self.argv = list(argv)
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr

    @property
    def command(self):
        return " ".join(shlex.quote(part) for part in self.argv)


class ProductCli:
    """A product's CLI on this host. Subclasses set ``product`` (a human name) and ``default_path``."""

    product = None
    default_path = None

    def __init__(self, module, path=None):
        self.module = module
        self.path = path or self.default_path
        # Every command run, in order; modules return it as ``commands``.
        self.commands = []

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
        rc, stdout, stderr = self.module.run_command(argv, environ_update=dict(CLI_ENVIRONMENT))
        result = CliResult(argv, rc, stdout or "", stderr or "")
        self.commands.append(result.command)
        return result

    def fail_command(self, msg, result, **extra):
        """Fail the module with everything needed to understand what the CLI did."""
        self.module.fail_json(msg=msg, cmd=result.command, rc=result.rc, stdout=result.stdout,
                              stderr=result.stderr, commands=self.commands, **extra)

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
