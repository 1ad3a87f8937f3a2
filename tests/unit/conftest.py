"""Shared fixtures for the module and module_utils unit tests.

- ``run_module(main, args, check_mode=False, diff=False)`` runs a module's ``main()`` the way Ansible does (real
  ``exit_json`` / ``fail_json``, so ``no_log`` masking is exercised) and returns ``(failed, result)``; the result
  also holds ``_raw_output`` (what the module printed) and ``_warnings`` (warning texts).
- ``fake_cli`` replaces ``AnsibleModule.run_command`` with a script of expected command lines and their answers,
  checked in order, and gives a real executable file to pass as ``cli_path``.
- ``cli_output(name)`` reads a recorded CLI output from ``plugins/cli_output/``.

Under ``ansible-test units`` the collection is importable as ``ansible_collections.positops.ha``; under plain
pytest this file makes it so through ``build/collections/ansible_collections/positops/ha`` (a symlink to the
repository, created when missing).
"""

import faulthandler
import io
import json
import os
import pathlib
import signal
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
CLI_OUTPUT = pathlib.Path(__file__).resolve().parent / "plugins" / "cli_output"
# A unit test takes seconds; in CI the checks run at a low priority beside the lab tests and may take minutes. One
# that passes this bound is stuck: it fails with the traceback of where it waits, instead of holding the run until
# CI's own limit.
HANG_SECONDS = int(os.environ.get("POSITOPS_UNIT_HANG_SECONDS", "900"))


class StuckTest(Exception):
    """Raised in a test still running after HANG_SECONDS."""


def _make_collection_importable():
    try:
        import ansible_collections.positops.ha  # noqa: F401  pylint: disable=unused-import
        return
    except ImportError:
        pass
    root = REPO / "build" / "collections"
    link = root / "ansible_collections" / "positops" / "ha"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(REPO)
    sys.path.insert(0, str(root))


_make_collection_importable()

from ansible.module_utils import _internal as ansible_internal  # noqa: E402
from ansible.module_utils import basic  # noqa: E402
from ansible.module_utils.common import warnings as ansible_warnings  # noqa: E402
from ansible.module_utils.testing import patch_module_args  # noqa: E402


@pytest.fixture(autouse=True)
def fail_a_stuck_test():
    def stuck(signum, frame):
        raise StuckTest("still running after %d s: stuck where this traceback ends" % HANG_SECONDS)

    previous = signal.signal(signal.SIGALRM, stuck)
    signal.alarm(HANG_SECONDS)
    # Last resort, for a wait the alarm cannot interrupt: print every thread's stack and end the process.
    faulthandler.dump_traceback_later(HANG_SECONDS + 60, exit=True)
    try:
        yield
    finally:
        signal.alarm(0)
        faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGALRM, previous)


def read_cli_output(name):
    return (CLI_OUTPUT / name).read_text()


@pytest.fixture
def cli_output():
    return read_cli_output


@pytest.fixture
def run_module():
    """Run ``main`` with ``args``; return ``(failed, result)`` parsed from what the module printed."""

    def run(main, args, check_mode=False, diff=False):
        full_args = dict(args)
        full_args["_ansible_check_mode"] = check_mode
        full_args["_ansible_diff"] = diff
        # Module warnings live in a process-wide registry; start each run with none.
        getattr(ansible_warnings, "_global_warnings", {}).clear()
        stdout = io.StringIO()
        saved_stdout, sys.stdout = sys.stdout, stdout
        # Modules run on a managed node. Once a controller module is imported (the filter tests import
        # ansible.errors), ansible-core sends module warnings to the controller's display instead of the result.
        saved_is_controller = getattr(ansible_internal, "is_controller", False)
        ansible_internal.is_controller = False
        try:
            with patch_module_args(full_args):
                with pytest.raises(SystemExit) as exited:
                    main()
        finally:
            sys.stdout = saved_stdout
            ansible_internal.is_controller = saved_is_controller
        output = stdout.getvalue()
        result = json.loads(output)
        result["_raw_output"] = output
        # ansible-core 2.19 prints warnings as WarningSummary objects; older releases as strings.
        result["_warnings"] = [w["event"]["msg"] if isinstance(w, dict) else w for w in result.get("warnings", [])]
        return exited.value.code != 0, result

    return run


class Call:
    """One expected CLI call: ``args`` after the executable, and what the fake tool answers."""

    def __init__(self, args, rc=0, stdout="", stderr="", duration=0.0):
        self.args = list(args)
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.duration = duration

    def __repr__(self):
        return "Call(%r, rc=%r)" % (self.args, self.rc)


class FakeCli:
    """A scripted CLI: each run_command must be the next expected call, with the C locale forced."""

    def __init__(self, path, clock):
        self.path = path
        self.clock = clock
        self.expected = []
        self.seen = []

    def script(self, calls):
        self.expected = list(calls)

    def run_command(self, module, args, **kwargs):
        assert isinstance(args, list), "the CLI must be run with an argument list, not a shell string"
        assert kwargs.get("environ_update", {}).get("LC_ALL") == "C", "LC_ALL=C must be forced"
        assert args[0] == self.path, "ran %r instead of the CLI at %s" % (args[0], self.path)
        self.seen.append(args[1:])
        assert self.expected, "unexpected extra CLI call: %r" % (args[1:],)
        call = self.expected.pop(0)
        assert args[1:] == call.args, "expected CLI call %r, got %r" % (call.args, args[1:])
        self.clock.advance(call.duration)
        return call.rc, call.stdout, call.stderr

    def assert_done(self):
        assert not self.expected, "expected CLI calls that were not made: %r" % (self.expected,)


class FakeClock:
    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def monotonic(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds

    def sleep(self, seconds):
        assert seconds >= 0, "negative sleep"
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_clock():
    return FakeClock()


@pytest.fixture
def fake_cli(tmp_path, monkeypatch, fake_clock):
    tool = tmp_path / "bin" / "cli"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\nexit 99\n")
    os.chmod(str(tool), 0o755)
    fake = FakeCli(str(tool), fake_clock)

    def run_command(module, args, **kwargs):
        return fake.run_command(module, args, **kwargs)

    monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
    return fake


@pytest.fixture
def call_factory():
    return Call
