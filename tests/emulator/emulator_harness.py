"""Helpers for the local Package Manager and Connect tests: daemons from unpacked .debs run as plain processes."""

import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

# Fast tuning for tests (the defaults are the documented values).
FAST_ENV = {
    "POSITEMU_MIGRATION_SECONDS": "2",
    "POSITEMU_SCHEMA_CHECK_SECONDS": "2",
    "POSITEMU_POLL_SECONDS": "1",
    "POSITEMU_HEARTBEAT_SECONDS": "1",
    "POSITEMU_JOB_ABANDON_SECONDS": "4",
    "POSITEMU_DRAIN_SECONDS": "30",
}


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(url, method="GET", data=None, timeout=10, headers=None):
    """(status, body text) of a request; HTTP errors are returned, not raised."""
    request = urllib.request.Request(url, method=method, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


class Process:
    """A daemon started from an unpacked package, with its own run dir and log file."""

    def __init__(self, argv, env, log_path):
        self.log_path = log_path
        self.log_handle = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log_handle, stderr=subprocess.STDOUT)

    def log(self):
        return pathlib.Path(self.log_path).read_text(errors="replace")

    def wait_log(self, text, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            time.sleep(0.1)
        raise AssertionError("%r not in log within %ss:\n%s" % (text, timeout, self.log()))

    def wait_exit(self, timeout=20):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("process still running after %ss:\n%s" % (timeout, self.log())) from None

    def running(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log_handle.close()


def wait_http(url, status=200, timeout=20, process=None):
    """Wait for ``url`` to answer ``status``; fail at once when ``process`` (if given) has exited."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if process is not None and not process.running():
            raise AssertionError("process exited (%s) before %s answered:\n%s" % (
                process.proc.returncode, url, process.log()))
        try:
            last = http(url, timeout=2)
        except OSError as error:
            last = error
        if isinstance(last, tuple) and last[0] == status:
            return last
        time.sleep(0.1)
    raise AssertionError("%s did not answer %s within %ss (last: %r)" % (url, status, timeout, last))


def env_with(extra=None):
    env = dict(os.environ)
    env.pop("JOURNAL_STREAM", None)
    env.update(FAST_ENV)
    # The packaged wrappers run /usr/bin/python3; locally use this interpreter (it has psycopg).
    env["POSITEMU_PYTHON"] = sys.executable
    env.update(extra or {})
    return env
