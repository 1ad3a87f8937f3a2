# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running the ansible tools of the virtualenv from the install tests."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent


def tool(name):
    """Path of a tool installed in the virtualenv running the tests."""
    path = BIN / name
    if not path.exists():
        pytest.fail('%s not found next to %s: run scripts/setup first' % (name, sys.executable))
    return str(path)


def run(command, env=None, cwd=None):
    """Run a command and return the completed process, with stdout and stderr captured as text."""
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, check=False)


def describe(process):
    """Command, exit code and output of a finished process, for assertion messages."""
    return 'command: %s\nrc: %s\nstdout:\n%s\nstderr:\n%s' % (
        ' '.join(str(part) for part in process.args), process.returncode, process.stdout, process.stderr)
