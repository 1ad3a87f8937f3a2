# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running the ansible tools of the virtualenv from the install tests."""

from __future__ import annotations

import os
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


def collection_source():
    """Root of the collection source under test and its files (relative paths).

    scripts/checks passes its copy of the tracked files in POSITOPS_CHECKS_COLLECTION; otherwise it is the
    repository, restricted to the files git tracks (untracked work in progress is not part of the collection).
    """
    given = os.environ.get('POSITOPS_CHECKS_COLLECTION')
    if given:
        root = pathlib.Path(given)
        return root, {str(path.relative_to(root)) for path in root.rglob('*') if path.is_file()}
    listing = run(['git', 'ls-files', '-z'], cwd=REPO)
    assert listing.returncode == 0, describe(listing)
    return REPO, {name for name in listing.stdout.split('\0') if name and (REPO / name).exists()}
