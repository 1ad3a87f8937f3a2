"""A throw-away PostgreSQL server for tests and benchmarks (no Docker).

``PostgresServer`` runs Debian's ``initdb``/``pg_ctl`` (``/usr/lib/postgresql/<version>/bin``) in a temporary
directory, listening on 127.0.0.1 on a free port; when the caller is root the server runs as the ``postgres`` user
through ``runuser``. ``postgres_server`` is a session-scoped pytest fixture over it; each test should make its own
database with ``server.create_database()``.

Command line (for the benchmark or by hand): ``python -m tests.unit.pg_server`` starts one and prints its URI.
"""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from urllib.parse import quote

try:
    import pytest
except ImportError:  # the benchmark imports this module without pytest
    pytest = None

SUPERUSER = "postgres"
# Runs beside each server: stops it and removes its directory once the process that started it is gone, even when
# that process never gets to stop() (ansible-test units runs every test in a forked child that skips session
# teardown). Bounded: gives up watching after a day.
WATCHDOG = """
import os, shutil, subprocess, sys, time
owner, pg_ctl, datadir, basedir, as_user = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
deadline = time.monotonic() + 86400
while time.monotonic() < deadline and os.path.isdir(datadir):
    try:
        os.kill(owner, 0)
    except ProcessLookupError:
        break
    time.sleep(1)
if os.path.isdir(datadir):
    prefix = ["runuser", "-u", as_user, "--"] if os.geteuid() == 0 else []
    subprocess.run(prefix + [pg_ctl, "-D", datadir, "-m", "immediate", "-w", "stop"], capture_output=True)
    shutil.rmtree(basedir, ignore_errors=True)
"""


def find_bindir():
    """Newest /usr/lib/postgresql/<version>/bin that has initdb (override with $POSITOPS_PG_BINDIR)."""
    override = os.environ.get("POSITOPS_PG_BINDIR")
    if override:
        return override
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not candidates:
        raise RuntimeError("PostgreSQL server binaries not found: apt-get install -y postgresql (scripts/setup does it)")
    return os.path.dirname(candidates[-1])


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """One PostgreSQL cluster in a temp dir; ``settings`` are passed to the server as ``-c name=value``."""

    def __init__(self, settings=None, prefix="positops-pg-"):
        self.bindir = find_bindir()
        self.settings = dict(settings or {})
        self.prefix = prefix
        self.basedir = None
        self.port = None

    def _run(self, *argv):
        command = list(argv)
        if os.geteuid() == 0:
            command = ["runuser", "-u", SUPERUSER, "--"] + command
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError("%s failed (rc=%s): %s %s" % (argv[0], result.returncode, result.stdout, result.stderr))
        return result.stdout

    @property
    def datadir(self):
        return os.path.join(self.basedir, "data")

    def start(self):
        self.basedir = tempfile.mkdtemp(prefix=self.prefix)
        os.chmod(self.basedir, 0o755)
        if os.geteuid() == 0:
            account = pwd.getpwnam(SUPERUSER)
            os.chown(self.basedir, account.pw_uid, account.pw_gid)
        self._run(os.path.join(self.bindir, "initdb"), "-D", self.datadir, "-U", SUPERUSER, "-A", "trust",
                  "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
        # Another process may take the port between free_port() and the bind: retry a few times.
        last_error = None
        for _attempt in range(5):
            self.port = free_port()
            options = ["-p", str(self.port), "-k", self.basedir, "-c", "listen_addresses=127.0.0.1"]
            for name, value in self.settings.items():
                options += ["-c", "%s=%s" % (name, value)]
            try:
                self._run(os.path.join(self.bindir, "pg_ctl"), "-D", self.datadir, "-w", "-t", "60",
                          "-l", os.path.join(self.basedir, "server.log"), "-o", " ".join(options), "start")
                # Detached on purpose: it outlives this process.
                subprocess.Popen(  # pylint: disable=consider-using-with
                    [sys.executable, "-c", WATCHDOG, str(os.getpid()), os.path.join(self.bindir, "pg_ctl"),
                     self.datadir, self.basedir, SUPERUSER],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    start_new_session=True)
                return self
            except RuntimeError as error:
                last_error = error
                time.sleep(0.5)
        raise RuntimeError("PostgreSQL did not start: %s; log: %s" % (last_error, self.log_tail()))

    def log_tail(self, lines=20):
        try:
            with open(os.path.join(self.basedir, "server.log"), encoding="utf-8", errors="replace") as handle:
                return "".join(handle.readlines()[-lines:])
        except OSError:
            return ""

    def stop(self):
        if self.basedir is None:
            return
        try:
            self._run(os.path.join(self.bindir, "pg_ctl"), "-D", self.datadir, "-m", "immediate", "-w", "stop")
        except RuntimeError:
            pass
        shutil.rmtree(self.basedir, ignore_errors=True)
        self.basedir = None

    def uri(self, database="postgres", user=SUPERUSER, password=None):
        credentials = user if password is None else "%s:%s" % (user, quote(password, safe=""))
        return "postgresql://%s@127.0.0.1:%d/%s" % (credentials, self.port, database)

    def psql(self, sql, database="postgres"):
        """Run SQL through psql as the superuser; returns stdout (unaligned, tuples only)."""
        return self._run(os.path.join(self.bindir, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                         "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "-d", database, "-c", sql)

    def create_database(self, name):
        self.psql('DROP DATABASE IF EXISTS "%s"' % name)
        self.psql('CREATE DATABASE "%s"' % name)
        return self.uri(name)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


if pytest is not None:

    @pytest.fixture(scope="session")
    def postgres_server():
        """A running throw-away PostgreSQL server shared by the session (fsync off: tests only)."""
        server = PostgresServer(settings={"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"})
        server.start()
        try:
            yield server
        finally:
            server.stop()


if __name__ == "__main__":
    with PostgresServer() as running:
        print(running.uri(), flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
