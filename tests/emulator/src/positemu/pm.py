"""Posit Package Manager emulator: the ``rstudio-pm`` daemon, the ``rspm`` admin CLI and ``migrate``.

Modelled from the vendor's HA page (seeds/000) and its "Changing Database Provider" page; every behaviour and the
assumptions made where the docs are silent are listed in tests/emulator/README.md.
"""

import hashlib
import hmac
import json
import os
import secrets
import socket
import stat
import sys
import threading
import time

from positemu import db as dbmod
from positemu import gcfg, httpd, nodes, runtime, schema

SERVICE = "rstudio-pm"
GROUP = "rstudio-pm"
DEFAULT_CONFIG = "/etc/rstudio-pm/rstudio-pm.gcfg"
DEFAULT_DATA_DIR = "/var/lib/rstudio-pm"
DEFAULT_KEY_PATH = "/var/lib/rstudio-pm/rstudio-pm.key"
DEFAULT_SQLITE_DIR = "/var/lib/rstudio-pm/db"
SQLITE_FILE = "rstudio-pm.sqlite"
DEFAULT_TIMEOUT = 60
PROVIDERS = ("sqlite", "postgres")

# Package Manager's own tables (the emulator's stand-in for its real schema); nodes and schema_version come from
# the core. "repos" is what the API serves, so a request shows which database a node reads.
DDL = (
    nodes.DDL,
    "CREATE TABLE IF NOT EXISTS repos (name TEXT PRIMARY KEY, description TEXT, created_at DOUBLE PRECISION NOT NULL, "
    "created_by TEXT)",
)
TABLES = ("schema_version", "nodes", "repos")


class UsageError(Exception):
    """A CLI usage or precondition error: printed as ``Error: <message>`` and exit status 1."""


class Settings:
    """The settings the emulator reads from rstudio-pm.gcfg, with the product's defaults."""

    def __init__(self, path):
        self.path = path
        config = gcfg.load(path)
        self.config = config
        self.data_dir = config.get("Server", "DataDir") or DEFAULT_DATA_DIR
        self.hostname = config.get("Server", "HostName") or socket.gethostname()
        self.key_path = config.get("Server", "EncryptionKeyPath") or DEFAULT_KEY_PATH
        self.listen = config.get("HTTP", "Listen") or ":4242"
        self.listen_address = parse_listen(self.listen, path)
        provider = (config.get("Database", "Provider") or "sqlite").strip().lower()
        if provider not in PROVIDERS:
            raise gcfg.ConfigError("%s: [Database] Provider must be sqlite or postgres, got %r"
                                   % (path, config.get("Database", "Provider")))
        self.provider = provider
        self.sqlite_dir = config.get("Sqlite", "Dir") or DEFAULT_SQLITE_DIR
        self.storage = (config.get("Storage", "Default") or "file").strip().lower()
        if self.storage not in ("file", "s3"):
            raise gcfg.ConfigError("%s: [Storage] Default must be file or s3, got %r" % (path, self.storage))
        self.s3_bucket = config.get("S3Storage", "Bucket")
        self.s3_prefix = (config.get("S3Storage", "Prefix") or "").strip("/")
        if self.storage == "s3" and not self.s3_bucket:
            raise gcfg.ConfigError("%s: [Storage] Default = s3 needs [S3Storage] Bucket" % path)
        self.postgres_url = config.get("Postgres", "URL")
        if provider == "postgres" and not self.postgres_url:
            raise gcfg.ConfigError("%s: [Database] Provider = postgres needs [Postgres] URL = postgres://..." % path)

    def sqlite_path(self):
        return os.path.join(self.sqlite_dir, SQLITE_FILE)

    def database_target(self, provider=None):
        provider = provider or self.provider
        return self.postgres_url if provider == "postgres" else self.sqlite_path()


def parse_listen(value, path):
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise gcfg.ConfigError("%s: [HTTP] Listen must be [host]:port such as :4242, got %r" % (path, value))
    return (host.strip("[]") or "0.0.0.0", int(port))


def ensure_encryption_key(path, log):
    """Create the key (0600) on first start; refuse a key other users can read, as the docs require 0600."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        try:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except PermissionError:
            raise RuntimeError("cannot create encryption key %s as %s: permission denied; its directory must be "
                               "writable by the service account" % (path, whoami())) from None
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
        log.info("Created a new encryption key at %s", path)
        return read_key(path)
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise RuntimeError("encryption key %s has mode %04o; it must be 0600 (chmod 600 %s)" % (path, mode, path))
    key = read_key(path)
    if not key:
        raise RuntimeError("encryption key %s is empty: copy the key file from the first node" % path)
    return key


def read_key(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except PermissionError:
        raise RuntimeError("cannot read encryption key %s as %s: permission denied; Package Manager runs as its "
                           "account, so the key must be owned by it with mode 0600 (chown %s %s)"
                           % (path, whoami(), runtime.current_user(), path)) from None


def whoami():
    return "%s (uid %d)" % (runtime.current_user(), os.geteuid())


def writable_dir(path, setting):
    """Create ``path`` if needed and check the service account can write there (it runs as rstudio-pm)."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise RuntimeError("cannot create %s %s as %s: %s; create it owned by %s"
                           % (setting, path, whoami(), error.strerror or error, runtime.current_user())) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise RuntimeError("%s %s is not writable by %s: Package Manager runs as its account; chown -R %s %s"
                           % (setting, path, whoami(), runtime.current_user(), path))


# S3 stand-in: a bucket is the directory $POSITEMU_S3_DIR/<bucket> (default /srv/s3), shared by the nodes. Objects
# are sealed with the node's encryption key (SHA-256 counter keystream + HMAC-SHA256 tag), so a node whose key
# differs cannot read what another node wrote, as with real S3 storage.
SEAL_MAGIC = b"PEMU-S3-1"


class KeyMismatch(Exception):
    pass


def _keystream(key, nonce, length):
    blocks = []
    for counter in range((length + 31) // 32):
        blocks.append(hashlib.sha256(key + nonce + counter.to_bytes(8, "big")).digest())
    return b"".join(blocks)[:length]


def seal(key_text, data):
    key = key_text.encode()
    nonce = os.urandom(16)
    cipher = bytes(a ^ b for a, b in zip(data, _keystream(key, nonce, len(data))))
    tag = hmac.new(key, nonce + cipher, hashlib.sha256).digest()
    return SEAL_MAGIC + nonce + tag + cipher


def unseal(key_text, blob):
    key = key_text.encode()
    if not blob.startswith(SEAL_MAGIC):
        raise KeyMismatch("the object was not written by Package Manager")
    nonce, tag, cipher = blob[9:25], blob[25:57], blob[57:]
    if not hmac.compare_digest(tag, hmac.new(key, nonce + cipher, hashlib.sha256).digest()):
        raise KeyMismatch("the object was encrypted with another key")
    return bytes(a ^ b for a, b in zip(cipher, _keystream(key, nonce, len(cipher))))


def s3_root(settings):
    root = os.path.join(os.environ.get("POSITEMU_S3_DIR") or "/srv/s3", settings.s3_bucket)
    return os.path.join(root, settings.s3_prefix) if settings.s3_prefix else root


def open_database(settings, provider=None, must_exist=False):
    provider = provider or settings.provider
    target = settings.database_target(provider)
    if provider == "sqlite":
        if must_exist and not os.path.exists(target):
            raise dbmod.DatabaseError("the SQLite database %s does not exist: start rstudio-pm first" % target)
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
        except OSError as error:
            raise dbmod.DatabaseError("cannot create the SQLite directory %s as %s: %s"
                                      % (os.path.dirname(target), whoami(), error.strerror or error)) from None
    elif not target:
        raise dbmod.DatabaseError("[Postgres] URL is not set in %s" % settings.path)
    return dbmod.connect(target)


# --------------------------------------------------------------------------------------------------------------
# The daemon

class Daemon:
    def __init__(self, config_path, log):
        self.config_path = config_path
        self.log = log
        self.info = runtime.build_info()
        self.stop = runtime.StopSignal()
        self.state = "starting"  # starting, migrating, online, draining, offline, stopping
        self.state_lock = threading.Lock()
        self.settings = None
        self.db = None
        self.server = None
        self.key = None
        self.listener = None  # PostgreSQL: wakes the mode loop at an operator's request (wait_for_mode_request)

    # -- HTTP ---------------------------------------------------------------------------------------------------
    def serving(self):
        return self.state == "online"

    def _unavailable(self):
        return httpd.Response(503, "Package Manager is %s\n" % self.state)

    def ping(self, _request):
        if not self.serving():
            return self._unavailable()
        return httpd.Response(200, "{}\n", "application/json")

    def api_status(self, _request):
        body = {"version": self.info["version"], "hostname": self.settings.hostname, "mode": self.state,
                "schema": self.info["schema"], "database": self.settings.provider,
                "data_dir": self.settings.data_dir}
        return httpd.Response(200 if self.serving() else 503, json.dumps(body) + "\n", "application/json")

    def api_repos(self, request):
        if not self.serving():
            return self._unavailable()
        if request.method == "POST":
            name = request.query.get("name")
            if not name:
                return httpd.Response(400, "the name query parameter is required\n")
            self.db.execute("INSERT INTO repos (name, description, created_at, created_by) VALUES (?, ?, ?, ?) "
                            "ON CONFLICT (name) DO NOTHING",
                            (name, request.query.get("description", ""), time.time(), self.settings.hostname))
            return httpd.Response(201, json.dumps({"name": name}) + "\n", "application/json")
        rows = self.db.query("SELECT name, description FROM repos ORDER BY name")
        return httpd.Response(200, json.dumps([{"name": n, "description": d} for n, d in rows]) + "\n",
                              "application/json")

    def _data_path(self, request, prefix):
        relative = request.path[len(prefix):]
        base = s3_root(self.settings) if self.settings.storage == "s3" else self.settings.data_dir
        root = os.path.realpath(base)
        path = os.path.realpath(os.path.join(root, relative))
        if not relative or not (path == root or path.startswith(root + os.sep)):
            return None
        return path

    def data(self, request):
        """Emulator route: read or write <DataDir>/<path> (or the S3 bucket), so a request proves which storage
        the node sees."""
        if not self.serving():
            return self._unavailable()
        path = self._data_path(request, "/__emulator__/data/")
        if path is None:
            return httpd.Response(400, "a relative path inside the data directory is required\n")
        try:
            if request.method == "PUT":
                os.makedirs(os.path.dirname(path), exist_ok=True)
                body = seal(self.key, request.body) if self.settings.storage == "s3" else request.body
                with open(path, "wb") as handle:
                    handle.write(body)
                return httpd.Response(201, "stored %s\n" % path)
            with open(path, "rb") as handle:
                body = handle.read()
            if self.settings.storage == "s3":
                try:
                    body = unseal(self.key, body)
                except KeyMismatch as error:
                    self.log.error("Error: cannot decrypt %s from S3 bucket %s: %s. Every node needs the same "
                                   "encryption key file (%s, mode 0600): copy it from the first node",
                                   path, self.settings.s3_bucket, error, self.settings.key_path)
                    return httpd.Response(500, "cannot decrypt %s\n" % path)
            return httpd.Response(200, body, "application/octet-stream")
        except FileNotFoundError:
            return httpd.Response(404, "%s does not exist\n" % path)
        except PermissionError as error:
            self.log.error("Error: cannot access %s in the data directory: %s", path, error.strerror)
            return httpd.Response(500, "permission denied: %s\n" % path)

    def slow(self, request):
        """Emulator route: a request that takes ?seconds=N, to show offline mode lets in-flight work finish."""
        if not self.serving():
            return self._unavailable()
        seconds = min(float(request.query.get("seconds", "1")), 120.0)
        time.sleep(seconds)
        return httpd.Response(200, "finished after %.1f s on %s\n" % (seconds, self.settings.hostname))

    def _build_server(self):
        # Package Manager is a Go server: it listens with the kernel's somaxconn, as Go does (assumption, README).
        server = httpd.HttpServer(self.settings.listen_address, self.log, "rstudio-pm/" + self.info["version"],
                                  backlog=httpd.SOMAXCONN)
        server.route("GET", "/__ping__", self.ping)
        server.route("GET", "/__api__/status", self.api_status)
        server.route("GET", "/__api__/repos", self.api_repos)
        server.route("POST", "/__api__/repos", self.api_repos)
        server.route("GET", "/__emulator__/data/", self.data, prefix=True)
        server.route("PUT", "/__emulator__/data/", self.data, prefix=True)
        server.route("GET", "/__emulator__/slow", self.slow)
        return server

    # -- modes --------------------------------------------------------------------------------------------------
    def _set_state(self, state):
        with self.state_lock:
            self.state = state

    def _record_mode(self, mode):
        nodes.heartbeat(self.db, self.settings.hostname, mode=mode, status=self.state)

    def go_offline(self):
        """Refuse new requests (503), let in-flight ones finish, then report offline."""
        self._set_state("draining")
        self.log.info("Going offline: waiting for %d in-flight request(s) to finish", self.server.in_flight())
        if not self.server.wait_idle(runtime.seconds("POSITEMU_DRAIN_SECONDS")):
            self.log.warning("In-flight requests still running after %.0f s; going offline anyway",
                             runtime.seconds("POSITEMU_DRAIN_SECONDS"))
        self._set_state("offline")
        self._record_mode("offline")
        self.log.info("Node %s is offline", self.settings.hostname)

    def go_online(self, initial=False):
        """Re-read the configuration (network settings aside), migrate when this binary is newer, then serve."""
        if not initial:
            try:
                fresh = Settings(self.config_path)
            except gcfg.ConfigError as error:
                self.log.error("Error: cannot go online, the configuration is invalid: %s", error)
                return False
            if fresh.listen != self.settings.listen or fresh.hostname != self.settings.hostname:
                self.log.warning("HTTP.Listen and Server.HostName changes need a restart; keeping %s as %s",
                                 self.settings.listen, self.settings.hostname)
                fresh.listen, fresh.listen_address = self.settings.listen, self.settings.listen_address
                fresh.hostname = self.settings.hostname
            if fresh.database_target() != self.settings.database_target():
                self.log.warning("Database settings changes need a restart; keeping %s", self.db.describe())
                fresh.provider, fresh.postgres_url, fresh.sqlite_dir = (
                    self.settings.provider, self.settings.postgres_url, self.settings.sqlite_dir)
            self.settings = fresh
            try:
                self.key = ensure_encryption_key(self.settings.key_path, self.log)
            except (OSError, RuntimeError) as error:
                self.log.error("Error: cannot go online: %s", error)
                return False
        try:
            schema.ensure(self.db, self.info["schema"], DDL, self.settings.hostname, self.log,
                          on_migrating=lambda busy: self._set_state("migrating" if busy else "starting"))
        except schema.SchemaTooNew as error:
            self.shutdown_for_schema(error)
            return False
        except dbmod.DatabaseError as error:
            if initial:  # at start-up the server does not start at all
                raise
            # The version is written in one transaction at the end, so a lost database leaves the old schema.
            # The node stays offline and the daemon's poll tries again while online is still requested.
            self._set_state("offline")
            self.log.error("Error: cannot go online, the database failed: %s. Retrying.", error)
            return False
        self._set_state("online")
        self._record_mode("online")
        self.log.info("Node %s is online (version %s, schema %d)", self.settings.hostname, self.info["version"],
                      self.info["schema"])
        return True

    def shutdown_for_schema(self, error):
        self.log.error("Error: %s. Shutting down.", error)
        self._set_state("stopping")
        self.stop.stop("newer database schema", 1)

    def apply_requested_mode(self):
        row = nodes.get(self.db, self.settings.hostname)
        if row is None:  # deleted by someone: register again
            nodes.register(self.db, self.settings.hostname, self.info["version"], self.current_mode(),
                           status=self.state, port=self.settings.listen_address[1])
            return
        wanted = row["requested_mode"]
        if wanted == "offline" and self.state == "online":
            self.go_offline()
        elif wanted == "online" and self.state == "offline":
            self.log.info("Going online as requested")
            self.go_online()
        else:
            nodes.heartbeat(self.db, self.settings.hostname, mode=self.current_mode(), status=self.state)

    def wait_for_mode_request(self, poll):
        """Wait until the next look at the requested mode; True when the daemon is stopping instead.

        On PostgreSQL the server "listens for notifications to enter online or offline mode" (Posit's Server
        Management page), so it looks as soon as an operator's request is committed; the poll stays as the only way
        on SQLite and as the fallback while the listening connection is down."""
        if self.listener is None:
            return self.stop.wait(poll)
        deadline = time.monotonic() + poll
        while not self.stop.is_set():
            remaining = deadline - time.monotonic()
            # Short slices: a stop (SIGTERM) must not wait for the whole poll period.
            if remaining <= 0 or self.listener.wait(min(0.5, remaining)):
                return False
        return True

    def current_mode(self):
        return "online" if self.state == "online" else "offline"

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def run(self):
        self.stop.install()
        try:
            self.settings = Settings(self.config_path)
        except gcfg.ConfigError as error:
            self.log.error("Error: %s", error)
            return 1
        lock = runtime.ServiceLock(SERVICE)
        if not lock.acquire():
            self.log.error("Error: another rstudio-pm process is running on this host (lock %s)", lock.path)
            return 1
        try:
            return self._run()
        finally:
            lock.release()

    def _run(self):
        settings = self.settings
        self.log.info("Starting Posit Package Manager %s (emulator), config %s", self.info["version"],
                      self.config_path)
        self.log.info("Running as %s", whoami())
        try:
            writable_dir(settings.data_dir, "Server.DataDir")
            self.key = ensure_encryption_key(settings.key_path, self.log)
            if settings.storage == "s3":
                os.makedirs(s3_root(settings), exist_ok=True)
        except (OSError, RuntimeError) as error:
            self.log.error("Error: %s", error)
            return 1
        state = schema.open_and_serve(self, open_database)
        if state is None:
            return 1
        try:
            nodes.ensure_table(self.db)
            existing = nodes.get(self.db, settings.hostname)
            # The mode survives a restart: it lives in the database as the last requested mode.
            wanted = (existing or {}).get("requested_mode") or "online"
            nodes.register(self.db, settings.hostname, self.info["version"], "offline", status="starting",
                           port=settings.listen_address[1])
            if wanted == "offline":
                if state == "empty":
                    schema.ensure(self.db, self.info["schema"], DDL, settings.hostname, self.log)
                self._set_state("offline")
                self._record_mode("offline")
                self.log.info("Node %s starts offline, as it was when it stopped (rspm online brings it back)",
                              settings.hostname)
            else:
                self.go_online(initial=True)
            watcher = schema.SchemaWatcher(self.db, self.info["schema"], self.shutdown_for_schema, self.log,
                                           self.stop.event)
            watcher.start()
            poll = runtime.seconds("POSITEMU_POLL_SECONDS")
            if self.db.provider == "postgres":
                self.listener = dbmod.Listener(self.db.target, nodes.MODE_CHANNEL)
            while not self.wait_for_mode_request(poll):
                try:
                    self.apply_requested_mode()
                except dbmod.DatabaseError as error:
                    self.log.warning("Cannot reach the database: %s", error)
        finally:
            self._set_state("stopping")
            if self.listener is not None:
                self.listener.close()
            self.server.stop()
            self.log.info("Stopped (%s)", self.stop.reason or "shutdown")
        return self.stop.exit_code


def _parse_daemon_args(argv):
    config = DEFAULT_CONFIG
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg in ("--config", "-config"):
            if index + 1 >= len(argv):
                raise UsageError("--config needs a file path")
            config = argv[index + 1]
            index += 2
        elif arg.startswith("--config="):
            config = arg.split("=", 1)[1]
            index += 1
        else:
            raise UsageError("unknown argument %r (usage: rstudio-pm [--config FILE])" % arg)
    return config


def daemon_main(argv):
    log = runtime.setup_logging("rstudio-pm")
    try:
        config = _parse_daemon_args(argv)
    except UsageError as error:
        log.error("Error: %s", error)
        return 1
    return Daemon(config, log).run()


# --------------------------------------------------------------------------------------------------------------
# rspm

RSPM_USAGE = """Usage: rspm [--config FILE] [--output-format human|json] COMMAND
Commands:
  cluster nodes                                  list the nodes of the cluster
  cluster offline --nodes=A,B [--timeout=SECS]   take nodes offline and wait (default timeout 60)
  cluster online --nodes=A,B [--timeout=SECS]    bring nodes online and wait
  offline [--timeout=SECS]                       take this node offline
  online [--timeout=SECS]                        bring this node online
"""


def _parse_rspm_args(argv):
    options = {"config": DEFAULT_CONFIG, "format": "human", "nodes": None, "timeout": None}
    flags = {"-c": "config", "--config": "config", "-o": "format", "--output-format": "format",
             "--nodes": "nodes", "--timeout": "timeout"}
    words = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg in ("-h", "--help"):
            options["help"] = True
            index += 1
            continue
        name, eq, value = arg.partition("=")
        if arg.startswith("-") and name in flags:
            if not eq:
                if index + 1 >= len(argv):
                    raise UsageError("flag %s needs a value" % name)
                value = argv[index + 1]
                index += 1
            options[flags[name]] = value
        elif arg.startswith("-"):
            raise UsageError("unknown flag: %s\n%s" % (name, RSPM_USAGE.rstrip()))
        else:
            words.append(arg)
        index += 1
    if options["format"] not in ("human", "json"):
        raise UsageError("invalid value %r for flag --output-format: use human or json" % options["format"])
    timeout = options["timeout"]
    if timeout is None:
        options["timeout"] = DEFAULT_TIMEOUT
    else:
        if not timeout.strip().isdigit() or int(timeout) <= 0:
            raise UsageError("invalid value %r for flag --timeout: give a whole number of seconds greater than 0"
                             % timeout)
        options["timeout"] = int(timeout)
    return words, options


def format_listing(rows, output_format):
    if output_format == "json":
        return json.dumps({"nodes": [{"hostname": r["hostname"], "version": r["version"], "mode": r["mode"]}
                                     for r in rows]}, indent=2) + "\n"
    if not rows:
        return ""
    widths = [max(len(str(r[key])) for r in rows) for key in ("hostname", "version")]
    return "".join("%s  %s  %s\n" % (r["hostname"].ljust(widths[0]), r["version"].ljust(widths[1]), r["mode"])
                   for r in rows)


def _listing(db):
    rows = nodes.list_nodes(db, order="hostname")
    for row in rows:
        row["mode"] = "online" if row["mode"] == "online" else "offline"
    return rows


def wait_for_mode(db, hostnames, mode, timeout, interval=0.5):
    """Wait until every named node reports ``mode``; return the names still pending (empty on success)."""
    deadline = time.monotonic() + timeout
    while True:
        current = {row["hostname"]: row["mode"] for row in nodes.list_nodes(db)}
        pending = [name for name in hostnames if current.get(name) != mode]
        if not pending or time.monotonic() >= deadline:
            return pending
        time.sleep(min(interval, max(0.05, deadline - time.monotonic())))


def change_mode(db, hostnames, mode, timeout, output_format, out, err):
    known = [row["hostname"] for row in nodes.list_nodes(db, order="hostname")]
    unknown = [name for name in hostnames if name not in known]
    if unknown:
        raise UsageError("unknown node(s): %s. Known nodes: %s" % (", ".join(unknown), ", ".join(known) or "none"))
    nodes.request_mode(db, hostnames, mode)
    pending = wait_for_mode(db, hostnames, mode, timeout)
    listing = format_listing(_listing(db), output_format)
    if pending:
        err.write("Error: timed out after %d seconds waiting for node(s) %s to be %s\n"
                  % (timeout, ", ".join(pending), mode))
        out.write(listing)
        return 1
    out.write(listing)
    return 0


def cli_main(argv, out=None, err=None):
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        words, options = _parse_rspm_args(argv)
        if options.get("help") or not words:
            out.write(RSPM_USAGE)
            return 0 if options.get("help") else 1
        if not runtime.user_may_administer(GROUP):
            raise UsageError("rspm must be run as root or by a member of the %s group (uid %d is neither)"
                             % (GROUP, os.geteuid()))
        settings = Settings(options["config"])
        command = words[0]
        if command == "cluster":
            sub = words[1] if len(words) > 1 else None
            if sub not in ("nodes", "offline", "online") or len(words) > 2:
                raise UsageError("use `rspm cluster nodes`, `rspm cluster offline --nodes=...` or "
                                 "`rspm cluster online --nodes=...`")
            db = open_database(settings, must_exist=True)
            if sub == "nodes":
                out.write(format_listing(_listing(db), options["format"]))
                return 0
            if not options["nodes"]:
                raise UsageError("--nodes is required: name the nodes to change, e.g. --nodes=Node1,Node2")
            names = [name.strip() for name in options["nodes"].split(",") if name.strip()]
            if not names:
                raise UsageError("--nodes is empty: name the nodes to change, e.g. --nodes=Node1,Node2")
            return change_mode(db, names, sub, options["timeout"], options["format"], out, err)
        if command in ("offline", "online"):
            if len(words) > 1:
                raise UsageError("`rspm %s` acts on this node only and takes no node names" % command)
            db = open_database(settings, must_exist=True)
            if nodes.get(db, settings.hostname) is None:
                raise UsageError("this node (%s) is not registered in the cluster database: start rstudio-pm "
                                 "first" % settings.hostname)
            return change_mode(db, [settings.hostname], command, options["timeout"], options["format"], out, err)
        raise UsageError("unknown command %r\n%s" % (command, RSPM_USAGE.rstrip()))
    except (UsageError, gcfg.ConfigError, dbmod.DatabaseError) as error:
        err.write("Error: %s\n" % error)
        return 1


# --------------------------------------------------------------------------------------------------------------
# migrate

MIGRATE_USAGE = "Usage: migrate [--config FILE] --from sqlite|postgres --to postgres|sqlite"


def migrate_main(argv, out=None, err=None):
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        options = {"config": DEFAULT_CONFIG, "from": None, "to": None}
        index = 0
        while index < len(argv):
            name, eq, value = argv[index].partition("=")
            key = {"--config": "config", "-c": "config", "--from": "from", "--to": "to"}.get(name)
            if key is None:
                raise UsageError("unknown argument %r\n%s" % (argv[index], MIGRATE_USAGE))
            if not eq:
                if index + 1 >= len(argv):
                    raise UsageError("%s needs a value\n%s" % (name, MIGRATE_USAGE))
                value = argv[index + 1]
                index += 1
            options[key] = value.strip().lower() if key != "config" else value
            index += 1
        for key in ("from", "to"):
            if options[key] not in PROVIDERS:
                raise UsageError("--%s must be sqlite or postgres, got %r\n%s" % (key, options[key], MIGRATE_USAGE))
        if options["from"] == options["to"]:
            raise UsageError("--from and --to are both %s: nothing to migrate" % options["from"])
        if not runtime.user_may_administer(GROUP):
            raise UsageError("migrate must be run as root or by a member of the %s group (uid %d is neither)"
                             % (GROUP, os.geteuid()))
        settings = Settings(options["config"])
        missing = [name for name in ("Sqlite", "Postgres") if not settings.config.has_section(name)]
        if missing:
            raise UsageError("%s needs both a [Sqlite] and a [Postgres] section to migrate; add [%s]"
                             % (settings.path, "] and [".join(missing)))
        if not settings.postgres_url:
            raise UsageError("%s: [Postgres] URL is not set" % settings.path)
        if runtime.ServiceLock(SERVICE).held_by_other():
            raise UsageError("the rstudio-pm service is running on this host: stop it first "
                             "(systemctl stop rstudio-pm)")
        return _migrate(settings, options["from"], options["to"], out)
    except (UsageError, gcfg.ConfigError, dbmod.DatabaseError) as error:
        err.write("Error: %s\n" % error)
        return 1


def _migrate(settings, source_provider, target_provider, out):
    info = runtime.build_info()
    source = open_database(settings, source_provider, must_exist=True)
    target = open_database(settings, target_provider)
    source_version = schema.read_version(source)
    if source_version is None:
        raise UsageError("the source database (%s) holds no Package Manager data" % source.describe())
    if source_version > info["schema"]:
        raise UsageError("the source database schema %d is newer than this migrate tool (%d): use the migrate of "
                         "the version that wrote it" % (source_version, info["schema"]))
    target_version = schema.read_version(target)
    if target_version is not None:
        raise UsageError("the destination database (%s) already holds Package Manager data (schema %d): "
                         "migrate into an empty database" % (target.describe(), target_version))
    out.write("Migrating %s to %s\n" % (source.describe(), target.describe()))
    schema.copy_database(source, target, DDL, TABLES, out)
    out.write("Migration complete. Set [Database] Provider = %s in %s, then start rstudio-pm.\n"
              % (target_provider, settings.path))
    return 0
