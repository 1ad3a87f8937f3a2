"""Helpers for the local Workbench tests: a throw-away PostgreSQL on loopback and rserver run as plain processes.

Each ``LocalNode`` has its own config directory (RSTUDIO_CONFIG_DIR), server-data-dir and port, so several nodes of
one cluster run side by side on 127.0.0.1. Nothing here needs Docker.
"""

import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

SRC = pathlib.Path(__file__).resolve().parent / "src"
OLD, NEW = "2023.09.1+494.pro2", "2023.12.0+369.pro3"
FAST = {"POSITEMU_MIGRATION_SECONDS": "1", "POSITEMU_SCHEMA_CHECK_SECONDS": "1",
        "RSTUDIO_LB_CHECKIN_SECONDS": "300", "RSTUDIO_LB_MISSED_CHECKIN_SECONDS": "600"}
KEY = "0f6e5b7a-3c1d-4e2f-9a8b-7c6d5e4f3a2b"
# Stand-ins for an RSA pair: the emulator compares the files, it does not parse them.
LAUNCHER_PEM = "-----BEGIN PRIVATE KEY-----\nbG9jYWwgdGVzdCBsYXVuY2hlciBrZXk=\n-----END PRIVATE KEY-----\n"
LAUNCHER_PUB = "-----BEGIN PUBLIC KEY-----\nbG9jYWwgdGVzdCBsYXVuY2hlciBwdWI=\n-----END PUBLIC KEY-----\n"


def current_user():
    import pwd
    return pwd.getpwuid(os.geteuid()).pw_name


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout, interval=0.2, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("%s not reached in %ss" % (what, timeout))
        time.sleep(interval)


class LocalPostgres:
    """initdb + pg_ctl as the postgres user in a temporary directory, listening on 127.0.0.1 only."""

    def __init__(self, base):
        self.base = pathlib.Path(base)
        self.data = self.base / "data"
        self.port = free_port()
        self.bindir = self._bindir()

    @staticmethod
    def _bindir():
        for candidate in sorted(pathlib.Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
            if (candidate / "initdb").exists():
                return candidate
        found = shutil.which("initdb")
        if found:
            return pathlib.Path(found).resolve().parent
        raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) are needed: apt-get install postgresql")

    def _as_postgres(self, *args):
        command = [str(self.bindir / args[0])] + list(args[1:])
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--"] + command
        return subprocess.run(command, capture_output=True, text=True, check=True, timeout=120)

    def start(self):
        self.base.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
        self._as_postgres("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        return self.resume()

    def resume(self):
        """Start the server again (after pause)."""
        self._as_postgres("pg_ctl", "-D", str(self.data), "-w", "-l", str(self.base / "log"), "-o",
                          "-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off" % (self.port, self.base),
                          "start")
        return self

    def pause(self):
        """Stop the server, keeping its data (resume starts it again): an outage longer than a restart."""
        self._as_postgres("pg_ctl", "-D", str(self.data), "-w", "-m", "fast", "stop")

    def restart(self):
        # -l: the server must not inherit our captured stdout, or pg_ctl's caller would wait for it forever.
        self._as_postgres("pg_ctl", "-D", str(self.data), "-w", "-m", "fast", "-l", str(self.base / "log"), "-o",
                          "-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off" % (self.port, self.base),
                          "restart")

    def psql(self, sql, database="postgres"):
        return self._as_postgres("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d",
                                 database, "-v", "ON_ERROR_STOP=1", "-tAc", sql).stdout.strip()

    def fresh_database(self, name):
        self.psql("DROP DATABASE IF EXISTS %s" % name)
        self.psql("CREATE DATABASE %s" % name)
        return name

    def stop(self):
        try:
            self._as_postgres("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop")
        except subprocess.CalledProcessError:
            pass


class LocalNode:
    """One rserver (not daemonized) with its own /etc/rstudio stand-in."""

    def __init__(self, base, name, version=OLD, port=None, env=None):
        self.base = pathlib.Path(base) / name
        self.name = name
        self.etc = self.base / "etc"
        self.data_dir = self.base / "run"
        self.etc.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.version = version
        self.env = dict(FAST, **(env or {}))
        self.proc = None
        self.log_path = self.base / "rserver.log"

    def environ(self):
        env = dict(os.environ)
        env.update(self.env)
        env.update(PYTHONPATH=str(SRC), RSTUDIO_CONFIG_DIR=str(self.etc), POSITEMU_WORKBENCH_VERSION=self.version)
        env.pop("JOURNAL_STREAM", None)
        return env

    def write(self, name, text, mode=0o644):
        path = self.etc / name
        path.write_text(text)
        path.chmod(mode)
        return path

    def configure(self, postgres=None, database=None, lb=True, host_name="127.0.0.1", key=KEY, key_mode=0o600,
                  shared=None, extra_rserver="", load_balancer_extra="", sqlite_dir=None, health_check=True,
                  server_user=None, launcher=(LAUNCHER_PEM, LAUNCHER_PUB)):
        """Write the node's configuration. By default rserver runs as the current account (server-user), with
        its health check switched on and the shared launcher key pair, as the collection's role configures it."""
        lines = ["www-port=%d" % self.port, "www-address=127.0.0.1", "server-data-dir=%s" % self.data_dir,
                 "server-user=%s" % (server_user or current_user())]
        if health_check:
            lines.append("server-health-check-enabled=1")
        if lb:
            lines.append("load-balancing-enabled=1")
        if shared:
            lines.append("server-shared-storage-path=%s" % shared)
        self.write("rserver.conf", "\n".join(lines) + "\n" + extra_rserver)
        if postgres:
            self.write("database.conf", "provider=postgresql\nhost=127.0.0.1\nport=%d\ndatabase=%s\n"
                       "username=postgres\npassword=unused\n" % (postgres.port, database), 0o600)
        else:
            self.write("database.conf", "provider=sqlite\ndirectory=%s\n" % (sqlite_dir or self.base / "db"), 0o600)
        if lb:
            self.write("load-balancer", ("www-host-name=%s\n" % host_name if host_name else "") + load_balancer_extra)
        if key is not None:
            self.write("secure-cookie-key", key + "\n", key_mode)
        if launcher:
            self.write("launcher.pem", launcher[0], 0o600)
            self.write("launcher.pub", launcher[1], 0o644)
        return self

    def start(self):
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen([sys.executable, "-c", "import sys; from positemu.workbench import "
                                      "rserver_main; sys.exit(rserver_main(['--server-daemonize=0']))"],
                                     env=self.environ(), stdout=self.log, stderr=subprocess.STDOUT)
        return self

    def run_to_exit(self, timeout=30):
        """Start and wait for the process to end (for configurations it must refuse)."""
        self.start()
        code = self.proc.wait(timeout=timeout)
        return code, self.output()

    def output(self):
        return self.log_path.read_text() if self.log_path.exists() else ""

    def health(self):
        return self.http("/health-check")[0]

    def http(self, path):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.port, path), timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError:
            return None, ""

    def wait_healthy(self, timeout=30):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("%s exited with %s:\n%s" % (self.name, self.proc.returncode, self.output()))
            return self.health() == 200
        wait_for(ready, timeout, what="%s healthy" % self.name)
        return self

    def cli(self, *args):
        return subprocess.run([sys.executable, "-c", "import sys; from positemu.workbench import cli_main; "
                               "sys.exit(cli_main(sys.argv[1:]))"] + list(args),
                              env=self.environ(), capture_output=True, text=True, timeout=60, check=False)

    def stop(self, timeout=15):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def parse_list_nodes(text):
    """Parse list-nodes by the header's column start positions (as docs/CONTRACTS.md says adapters do), after the
    Cluster section that precedes the table."""
    lines = text.splitlines()
    lines = lines[[index for index, line in enumerate(lines) if line.startswith("ID ")][0]:]
    header = lines[0]
    names = ["ID", "Host", "IPv4", "Port", "Status", "Health", "Last Seen"]
    starts = [header.index(name) for name in names]
    rows = []
    for line in lines[1:]:
        cells = []
        for index, start in enumerate(starts):
            end = starts[index + 1] if index + 1 < len(starts) else None
            cells.append(line[start:end].strip())
        rows.append(dict(zip(names, cells)))
    return rows
