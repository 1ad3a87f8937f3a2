"""Posit Connect emulator: the ``connect`` daemon and ``migrate`` (SQLite to PostgreSQL only).

Modelled from the vendor's HA page (seeds/001 and its later revision seeds/002); every behaviour and the
assumptions made where the docs are silent are listed in tests/emulator/README.md.
"""

import fcntl
import hashlib
import json
import os
import pwd
import socket
import subprocess
import sys
import threading
import time
import uuid

from positemu import db as dbmod
from positemu import gcfg, httpd, nodes, runtime, schema

SERVICE = "rstudio-connect"
DEFAULT_CONFIG = "/etc/rstudio-connect/rstudio-connect.gcfg"
DEFAULT_DATA_DIR = "/var/lib/rstudio-connect"
SQLITE_FILE = "connect.db"
DEFAULT_RUN_AS = "rstudio-connect"
DEFAULT_SCHEDULE_CONCURRENCY = 2
PROVIDERS = {"sqlite": "sqlite", "postgres": "postgres"}

DDL = (
    nodes.DDL,
    "CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, name TEXT NOT NULL, duration DOUBLE PRECISION NOT NULL, "
    "state TEXT NOT NULL, node TEXT, heartbeat DOUBLE PRECISION, attempts INTEGER NOT NULL, "
    "created_at DOUBLE PRECISION NOT NULL, "
    "finished_at DOUBLE PRECISION)",
    "CREATE TABLE IF NOT EXISTS job_runs (job_id TEXT NOT NULL, attempt INTEGER NOT NULL, node TEXT NOT NULL, "
    "started_at DOUBLE PRECISION NOT NULL, finished_at DOUBLE PRECISION)",
    "CREATE TABLE IF NOT EXISTS content (name TEXT PRIMARY KEY, created_at DOUBLE PRECISION NOT NULL, created_by TEXT)",
    "CREATE TABLE IF NOT EXISTS api_keys (key_hash TEXT PRIMARY KEY, name TEXT NOT NULL, "
    "created_at DOUBLE PRECISION NOT NULL)",
)
TABLES = ("schema_version", "nodes", "jobs", "job_runs", "content", "api_keys")


class UsageError(Exception):
    pass


def node_name():
    # Connect has no HostName setting; POSITEMU_HOSTNAME lets local tests run two nodes on one host.
    return os.environ.get("POSITEMU_HOSTNAME") or socket.gethostname()


class Settings:
    def __init__(self, path):
        self.path = path
        config = gcfg.load(path)
        self.config = config
        self.data_dir = config.get("Server", "DataDir") or DEFAULT_DATA_DIR
        self.listen = config.get("HTTP", "Listen") or ":3939"
        host, sep, port = self.listen.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise gcfg.ConfigError("%s: [HTTP] Listen must be [host]:port such as :3939, got %r"
                                   % (path, self.listen))
        self.listen_address = (host.strip("[]") or "0.0.0.0", int(port))
        provider = (config.get("Database", "Provider") or "SQLite").strip().lower()
        if provider not in PROVIDERS:
            raise gcfg.ConfigError("%s: [Database] Provider must be SQLite or Postgres, got %r"
                                   % (path, config.get("Database", "Provider")))
        self.provider = provider
        self.database_dir = config.get("Database", "Dir") or os.path.join(self.data_dir, "db")
        self.sqlite_dir = config.get("SQLite", "Dir") or self.database_dir
        self.postgres_url = config.get("Postgres", "URL")
        if provider == "postgres" and not self.postgres_url:
            raise gcfg.ConfigError("%s: [Database] Provider = Postgres needs [Postgres] URL = postgres://..." % path)
        self.metrics_path = config.get("Metrics", "DataPath") or os.path.join(self.data_dir, "metrics")
        self.metrics_enabled = config.get_bool("Metrics", "Enabled", True)
        self.run_as = config.get("Applications", "RunAs") or DEFAULT_RUN_AS
        self.schedule_concurrency = config.get_int("Applications", "ScheduleConcurrency",
                                                   DEFAULT_SCHEDULE_CONCURRENCY)
        if self.schedule_concurrency < 0:
            raise gcfg.ConfigError("%s: [Applications] ScheduleConcurrency must be 0 or more, got %d"
                                   % (path, self.schedule_concurrency))

    def sqlite_path(self):
        return os.path.join(self.sqlite_dir, SQLITE_FILE)


def open_database(settings, provider=None, must_exist=False):
    provider = provider or settings.provider
    if provider == "sqlite":
        target = settings.sqlite_path()
        if must_exist and not os.path.exists(target):
            raise dbmod.DatabaseError("the SQLite database %s does not exist" % target)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        return dbmod.connect(target)
    if not settings.postgres_url:
        raise dbmod.DatabaseError("[Postgres] URL is not set in %s" % settings.path)
    return dbmod.connect(settings.postgres_url)


class MetricsLock:
    """Each server keeps its own RRD files: a second server on the same Metrics.DataPath must not start."""

    def __init__(self, path, hostname):
        self.path = path
        self.hostname = hostname
        self.handle = None

    def acquire(self):
        os.makedirs(self.path, exist_ok=True)
        lock_path = os.path.join(self.path, ".lock")
        handle = open(lock_path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise RuntimeError("Metrics.DataPath %s is in use by another Connect server (%s): each server needs "
                               "its own [Metrics] DataPath" % (self.path, holder))
        handle.seek(0)
        handle.truncate()
        handle.write("host %s, pid %d\n" % (self.hostname, os.getpid()))
        handle.flush()
        self.handle = handle

    def release(self):
        if self.handle:
            self.handle.close()
            self.handle = None


class Daemon:
    def __init__(self, config_path, log):
        self.config_path = config_path
        self.log = log
        self.info = runtime.build_info()
        self.stop = runtime.StopSignal()
        self.state = "starting"
        self.hostname = node_name()
        self.settings = None
        self.db = None
        self.server = None
        self.metrics = None
        self.running_jobs = {}
        self.jobs_lock = threading.Lock()
        self.wake_scheduler = threading.Event()

    # -- shared data directory ----------------------------------------------------------------------------------
    def servers_dir(self):
        return os.path.join(self.settings.data_dir, ".servers")

    def write_marker(self):
        os.makedirs(self.servers_dir(), exist_ok=True)
        path = os.path.join(self.servers_dir(), self.hostname + ".json")
        with open(path + ".tmp", "w") as handle:
            json.dump({"hostname": self.hostname, "provider": self.settings.provider, "last_seen": time.time()},
                      handle)
        os.replace(path + ".tmp", path)

    def remove_marker(self):
        try:
            os.unlink(os.path.join(self.servers_dir(), self.hostname + ".json"))
        except OSError:
            pass

    def other_live_servers(self):
        """Servers that use the same Server.DataDir and were seen recently (the HA check for SQLite)."""
        fresh_after = time.time() - max(3 * runtime.seconds("POSITEMU_HEARTBEAT_SECONDS"), 3.0)
        found = []
        try:
            names = sorted(os.listdir(self.servers_dir()))
        except FileNotFoundError:
            return found
        for name in names:
            if not name.endswith(".json") or name == self.hostname + ".json":
                continue
            try:
                with open(os.path.join(self.servers_dir(), name)) as handle:
                    marker = json.load(handle)
            except (OSError, ValueError):
                continue
            if marker.get("last_seen", 0) >= fresh_after:
                found.append(marker)
        return found

    def run_as_account(self):
        return pwd.getpwnam(self.settings.run_as)

    # -- HTTP ---------------------------------------------------------------------------------------------------
    def serving(self):
        return self.state == "online"

    def ping(self, _request):
        if not self.serving():
            return httpd.Response(503, "Connect is %s\n" % self.state)
        return httpd.Response(200, "{}\n", "application/json")

    def server_settings(self, _request):
        body = {"version": self.info["version"], "hostname": self.hostname, "schema": self.info["schema"],
                "state": self.state, "database": self.settings.provider,
                "schedule_concurrency": self.settings.schedule_concurrency}
        return httpd.Response(200 if self.serving() else 503, json.dumps(body) + "\n", "application/json")

    def content_dir(self, name):
        return os.path.join(self.settings.data_dir, "apps", name)

    def deploy(self, request):
        """Emulator route: store a bundle in the shared data dir, owned by the RunAs account, 0700/0600."""
        if not self.serving():
            return httpd.Response(503, "Connect is %s\n" % self.state)
        name = request.query.get("name", "")
        if not name or "/" in name or name.startswith("."):
            return httpd.Response(400, "the name query parameter must be a plain name\n")
        account = self.run_as_account()
        directory = self.content_dir(name)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        bundle = os.path.join(directory, "bundle")
        descriptor = os.open(bundle, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(request.body)
        if os.geteuid() == 0:
            for path in (os.path.dirname(directory), directory, bundle):
                os.chown(path, account.pw_uid, account.pw_gid)
        os.chmod(directory, 0o700)
        os.chmod(bundle, 0o600)
        self.db.execute("INSERT INTO content (name, created_at, created_by) VALUES (?, ?, ?) "
                        "ON CONFLICT (name) DO UPDATE SET created_at = excluded.created_at, "
                        "created_by = excluded.created_by", (name, time.time(), self.hostname))
        return httpd.Response(201, "deployed %s\n" % name)

    def serve_content(self, request):
        """GET /content/<name>/: the content runs as Applications.RunAs and reads its bundle from the share."""
        if not self.serving():
            return httpd.Response(503, "Connect is %s\n" % self.state)
        name = request.path[len("/content/"):].strip("/")
        if not name or "/" in name:
            return httpd.Response(404, "Not Found\n")
        bundle = os.path.join(self.content_dir(name), "bundle")
        account = self.run_as_account()
        if os.geteuid() == 0:
            result = subprocess.run(["cat", bundle], user=account.pw_uid, group=account.pw_gid, extra_groups=[],
                                    capture_output=True, timeout=30)
            ok, data, error = result.returncode == 0, result.stdout, result.stderr.decode(errors="replace")
        else:
            try:
                with open(bundle, "rb") as handle:
                    ok, data, error = True, handle.read(), ""
            except OSError as exc:
                ok, data, error = False, b"", str(exc)
        if ok:
            return httpd.Response(200, data, "application/octet-stream")
        if not os.path.exists(bundle) and "No such file" in error:
            return httpd.Response(404, "content %s not found\n" % name)
        try:
            owner = os.stat(bundle).st_uid
        except OSError:
            owner = "unknown"
        self.log.error("Error: content %s: cannot read %s as %s (uid %d): %s; the file belongs to uid %s. Every "
                       "node must give %s the same UID/GID", name, bundle, self.settings.run_as, account.pw_uid,
                       error.strip().split(": ")[-1] or "permission denied", owner, self.settings.run_as)
        return httpd.Response(500, "content %s could not be read by %s\n" % (name, self.settings.run_as))

    def mint_api_key(self, request):
        """Emulator route: an API key, as an administrator creates one in Connect's dashboard (stored hashed)."""
        if not self.serving():
            return httpd.Response(503, "Connect is %s\n" % self.state)
        key = uuid.uuid4().hex
        self.db.execute("INSERT INTO api_keys (key_hash, name, created_at) VALUES (?, ?, ?)",
                        (hashlib.sha256(key.encode()).hexdigest(), request.query.get("name", "key"), time.time()))
        return httpd.Response(201, json.dumps({"key": key}) + "\n", "application/json")

    def authorized(self, request):
        """``Authorization: Key <api key>`` naming a key of the database (Connect's API authentication)."""
        scheme, _, key = (request.headers.get("Authorization") or "").partition(" ")
        if scheme != "Key" or not key.strip():
            return False
        digest = hashlib.sha256(key.strip().encode()).hexdigest()
        return self.db.query_one("SELECT 1 FROM api_keys WHERE key_hash = ?", (digest,)) is not None

    def api_content(self, request):
        """GET /__api__/v1/content: the content items the database lists (Connect Server API, an API key needed)."""
        if not self.serving():
            return httpd.Response(503, "Connect is %s\n" % self.state)
        if not self.authorized(request):
            body = {"code": 3, "error": "The requested operation requires authentication.", "payload": None}
            return httpd.Response(401, json.dumps(body) + "\n", "application/json")
        items = [{"guid": str(uuid.uuid5(uuid.NAMESPACE_URL, "content/" + name)), "name": name,
                  "created_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created))}
                 for name, created in self.db.query("SELECT name, created_at FROM content ORDER BY name")]
        return httpd.Response(200, json.dumps(items) + "\n", "application/json")

    def jobs_route(self, request):
        """Emulator route: POST schedules a job (?name=&seconds=); GET lists jobs and their runs."""
        if request.method == "POST":
            if not self.serving():
                return httpd.Response(503, "Connect is %s\n" % self.state)
            name = request.query.get("name", "report")
            seconds = float(request.query.get("seconds", "1"))
            job_id = uuid.uuid4().hex
            self.db.execute("INSERT INTO jobs (id, name, duration, state, attempts, created_at) "
                            "VALUES (?, ?, ?, 'pending', 0, ?)", (job_id, name, seconds, time.time()))
            return httpd.Response(201, json.dumps({"id": job_id}) + "\n", "application/json")
        jobs = []
        for row in self.db.query("SELECT id, name, state, node, attempts FROM jobs ORDER BY created_at"):
            runs = self.db.query("SELECT node, attempt, started_at, finished_at FROM job_runs WHERE job_id = ? "
                                 "ORDER BY started_at", (row[0],))
            jobs.append({"id": row[0], "name": row[1], "state": row[2], "node": row[3], "attempts": row[4],
                         "runs": [{"node": r[0], "attempt": r[1], "finished": r[3] is not None} for r in runs]})
        return httpd.Response(200, json.dumps(jobs) + "\n", "application/json")

    def _build_server(self):
        # Connect is a Go server: it listens with the kernel's somaxconn, as Go does (assumption, README).
        server = httpd.HttpServer(self.settings.listen_address, self.log, "rstudio-connect/" + self.info["version"],
                                  backlog=httpd.SOMAXCONN)
        server.route("GET", "/__ping__", self.ping)
        server.route("GET", "/__api__/server_settings", self.server_settings)
        server.route("POST", "/__emulator__/content", self.deploy)
        server.route("GET", "/content/", self.serve_content, prefix=True)
        server.route("GET", "/__api__/v1/content", self.api_content)
        server.route("POST", "/__emulator__/api_keys", self.mint_api_key)
        server.route("GET", "/__emulator__/jobs", self.jobs_route)
        server.route("POST", "/__emulator__/jobs", self.jobs_route)
        return server

    # -- scheduled jobs -----------------------------------------------------------------------------------------
    def claim_job(self):
        now = time.time()
        abandoned_before = now - runtime.seconds("POSITEMU_JOB_ABANDON_SECONDS")
        candidates = self.db.query("SELECT id, name, duration, state, node, heartbeat FROM jobs WHERE "
                                   "state = 'pending' OR (state = 'running' AND heartbeat < ?) "
                                   "ORDER BY created_at LIMIT 5", (abandoned_before,))
        for job_id, name, duration, state, previous, heartbeat in candidates:
            # The claim and its run record in one transaction: a node killed between them left a claimed job
            # without the record of its run (seen in the suite).
            with self.db.transaction():
                claimed = self.db.execute(
                    "UPDATE jobs SET state = 'running', node = ?, heartbeat = ?, attempts = attempts + 1 "
                    "WHERE id = ? AND (state = 'pending' OR (state = 'running' AND heartbeat < ?))",
                    (self.hostname, now, job_id, abandoned_before))
                if claimed != 1:
                    continue  # another node was faster
                attempt = self.db.query_one("SELECT attempts FROM jobs WHERE id = ?", (job_id,))[0]
                self.db.execute("INSERT INTO job_runs (job_id, attempt, node, started_at) VALUES (?, ?, ?, ?)",
                                (job_id, attempt, self.hostname, now))
            if state == "running":
                self.log.warning("Claimed abandoned job %s (%s): its heartbeat from %s stopped %.0f s ago; it runs "
                                 "again here", job_id, name, previous, now - heartbeat)
            return job_id, name, duration, attempt
        return None

    def run_job(self, job_id, name, duration, attempt):
        self.log.info("Running scheduled job %s (%s), attempt %d", job_id, name, attempt)
        interval = runtime.seconds("POSITEMU_HEARTBEAT_SECONDS")
        deadline = time.monotonic() + duration
        try:
            while time.monotonic() < deadline:
                if self.stop.wait(min(interval, max(0.0, deadline - time.monotonic()))):
                    return  # shut down mid-job: the heartbeat stops, another node will take the job over
                self.db.execute("UPDATE jobs SET heartbeat = ? WHERE id = ? AND node = ?",
                                (time.time(), job_id, self.hostname))
            now = time.time()
            self.db.execute("UPDATE job_runs SET finished_at = ? WHERE job_id = ? AND attempt = ? AND node = ?",
                            (now, job_id, attempt, self.hostname))
            self.db.execute("UPDATE jobs SET state = 'done', finished_at = ? WHERE id = ? AND node = ?",
                            (now, job_id, self.hostname))
            self.log.info("Finished scheduled job %s (%s)", job_id, name)
        except dbmod.DatabaseError as error:
            self.log.error("Error: scheduled job %s: %s", job_id, error)
        finally:
            with self.jobs_lock:
                self.running_jobs.pop(job_id, None)
            self.wake_scheduler.set()  # nodes poll again after every completed job

    def scheduler(self):
        concurrency = self.settings.schedule_concurrency
        if concurrency == 0:
            self.log.info("Scheduled jobs are disabled on this node (Applications.ScheduleConcurrency = 0)")
            return
        poll = runtime.seconds("POSITEMU_POLL_SECONDS")
        while not self.stop.is_set():
            if self.serving():
                try:
                    while len(self.running_jobs) < concurrency:
                        job = self.claim_job()
                        if job is None:
                            break
                        worker = threading.Thread(target=self.run_job, args=job, name="job-" + job[0][:8],
                                                  daemon=True)
                        with self.jobs_lock:
                            self.running_jobs[job[0]] = worker
                        worker.start()
                except dbmod.DatabaseError as error:
                    self.log.warning("Scheduler cannot reach the database: %s", error)
            self.wake_scheduler.wait(poll)
            self.wake_scheduler.clear()

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def shutdown_for_schema(self, error):
        self.log.error("Error: %s. Shutting down.", error)
        self.state = "stopping"
        self.stop.stop("newer database schema", 1)
        self.wake_scheduler.set()

    def run(self):
        self.stop.install()
        try:
            self.settings = Settings(self.config_path)
            self.run_as_account()
        except gcfg.ConfigError as error:
            self.log.error("Error: %s", error)
            return 1
        except KeyError:
            self.log.error("Error: Applications.RunAs user %r does not exist on this host", self.settings.run_as)
            return 1
        lock = runtime.ServiceLock(SERVICE)
        if not lock.acquire():
            self.log.error("Error: another Connect process is running on this host (lock %s)", lock.path)
            return 1
        try:
            return self._run()
        finally:
            lock.release()
            if self.metrics:
                self.metrics.release()

    def _run(self):
        settings = self.settings
        self.log.info("Starting Posit Connect %s (emulator) on %s, config %s", self.info["version"], self.hostname,
                      self.config_path)
        try:
            os.makedirs(settings.data_dir, exist_ok=True)
        except OSError as error:
            self.log.error("Error: Server.DataDir %s: %s", settings.data_dir, error.strerror)
            return 1
        others = self.other_live_servers()
        clash = [m for m in others if settings.provider == "sqlite" or m.get("provider") == "sqlite"]
        if clash:
            self.log.error("Error: Connect server %s is running with the same Server.DataDir %s. Posit Connect only "
                           "supports HA with PostgreSQL: migrate to PostgreSQL ([Database] Provider = Postgres) on "
                           "every node", clash[0]["hostname"], settings.data_dir)
            return 1
        if settings.metrics_enabled:
            self.metrics = MetricsLock(settings.metrics_path, self.hostname)
            try:
                self.metrics.acquire()
            except (RuntimeError, OSError) as error:
                self.metrics = None
                self.log.error("Error: %s", error)
                return 1
        state = schema.open_and_serve(self, open_database)
        if state is None:
            return 1
        try:
            self.write_marker()
            try:
                schema.ensure(self.db, self.info["schema"], DDL, self.hostname, self.log,
                              on_migrating=lambda busy: setattr(self, "state", "migrating" if busy else "starting"))
            except schema.SchemaTooNew as error:
                self.log.error("Error: %s. Refusing to start.", error)
                return 1
            nodes.register(self.db, self.hostname, self.info["version"], "online", status="online",
                           port=settings.listen_address[1])
            self.state = "online"
            self.log.info("Connect %s is serving on %s (schema %d)", self.info["version"], settings.listen,
                          self.info["schema"])
            schema.SchemaWatcher(self.db, self.info["schema"], self.shutdown_for_schema, self.log,
                                 self.stop.event).start()
            threading.Thread(target=self.scheduler, name="scheduler", daemon=True).start()
            heartbeat = runtime.seconds("POSITEMU_HEARTBEAT_SECONDS")
            while not self.stop.wait(heartbeat):
                try:
                    self.write_marker()
                    nodes.heartbeat(self.db, self.hostname)
                except (OSError, dbmod.DatabaseError) as error:
                    self.log.warning("Heartbeat failed: %s", error)
        finally:
            self.state = "stopping"
            self.wake_scheduler.set()
            self.remove_marker()
            self.server.stop()
            self.log.info("Stopped (%s)", self.stop.reason or "shutdown")
        return self.stop.exit_code


def daemon_main(argv):
    log = runtime.setup_logging("rstudio-connect")
    config = DEFAULT_CONFIG
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--config" and args:
            config = args.pop(0)
        elif arg.startswith("--config="):
            config = arg.split("=", 1)[1]
        else:
            log.error("Error: unknown argument %r (usage: connect [--config FILE])", arg)
            return 1
    return Daemon(config, log).run()


# --------------------------------------------------------------------------------------------------------------
# migrate

MIGRATE_USAGE = "Usage: migrate [--config FILE] db   (copies the SQLite database to PostgreSQL)"


def migrate_main(argv, out=None, err=None):
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        config = DEFAULT_CONFIG
        words = []
        args = list(argv)
        while args:
            arg = args.pop(0)
            if arg == "--config":
                if not args:
                    raise UsageError("--config needs a file path\n" + MIGRATE_USAGE)
                config = args.pop(0)
            elif arg.startswith("--config="):
                config = arg.split("=", 1)[1]
            elif arg.startswith("-"):
                raise UsageError("unknown flag %s; migrate only copies SQLite to PostgreSQL\n%s"
                                 % (arg, MIGRATE_USAGE))
            else:
                words.append(arg)
        if words != ["db"]:
            raise UsageError(MIGRATE_USAGE)
        if os.geteuid() != 0:
            raise UsageError("migrate must be run as root (sudo /opt/rstudio-connect/bin/migrate db)")
        settings = Settings(config)
        missing = [name for name in ("SQLite", "Postgres") if not settings.config.has_section(name)]
        if missing:
            raise UsageError("%s needs both a [SQLite] and a [Postgres] section to migrate; add [%s]"
                             % (settings.path, "] and [".join(missing)))
        if not settings.postgres_url:
            raise UsageError("%s: [Postgres] URL is not set" % settings.path)
        if runtime.ServiceLock(SERVICE).held_by_other():
            raise UsageError("the rstudio-connect service is running on this host: stop it first "
                             "(systemctl stop rstudio-connect)")
        return _migrate(settings, out)
    except (UsageError, gcfg.ConfigError, dbmod.DatabaseError) as error:
        err.write("Error: %s\n" % error)
        return 1


def _migrate(settings, out):
    info = runtime.build_info()
    source = open_database(settings, "sqlite", must_exist=True)
    target = open_database(settings, "postgres")
    source_version = schema.read_version(source)
    if source_version is None:
        raise UsageError("the SQLite database %s holds no Connect data" % settings.sqlite_path())
    if source_version != info["schema"]:
        raise UsageError("the SQLite schema is version %d but this Connect expects %d: start Connect once on "
                         "SQLite so it migrates the schema, stop it, then run migrate"
                         % (source_version, info["schema"]))
    target_version = schema.read_version(target)
    if target_version is not None:
        raise UsageError("the PostgreSQL database (%s) already holds Connect data (schema %d): migrate into an "
                         "empty database" % (target.describe(), target_version))
    out.write("Migrating %s to %s\n" % (source.describe(), target.describe()))
    schema.copy_database(source, target, DDL, TABLES, out)
    out.write("Migration complete. Set [Database] Provider = Postgres in %s, then start rstudio-connect.\n"
              % settings.path)
    return 0
