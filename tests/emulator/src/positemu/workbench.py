"""Posit Workbench emulator: the `rserver` daemon and the `rstudio-server` administration CLI.

Behaviour follows the vendor's load-balancing page (../shared/seeds/004_*) and is listed row by row in
tests/emulator/README.md (Workbench section); choices the docs leave open are written down there.

    rserver [--server-daemonize=0|1] [--version]
    rstudio-server {start|stop|restart|reload|status|offline|online|list-nodes|delete-node ID|reset-cluster|version}
"""

import hashlib
import hmac
import http.client
import json
import logging
import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import traceback

from positemu import httpd, runtime, schema
from positemu import workbench_config as wconfig
from positemu import workbench_db as wdb
from positemu.workbench_db import DatabaseError, key_hash

# Package version -> database schema version it needs (docs/CONTRACTS.md).
VERSIONS = {"2023.09.1+494.pro2": 11, "2023.12.0+369.pro3": 12}
DEFAULTS_FILE = "/etc/default/rstudio-server"
PID_FILE = "/run/rstudio-server.pid"
SERVICE = "rstudio-server.service"
DIAGNOSTICS_FILE = "/tmp/rstudio-load-balancer-diagnostics"
ADMIN_SOCKET = "rserver-admin.sock"
TUNING = ("POSITEMU_MIGRATION_SECONDS", "POSITEMU_SCHEMA_CHECK_SECONDS", "RSTUDIO_LB_CHECKIN_SECONDS",
          "RSTUDIO_LB_MISSED_CHECKIN_SECONDS")
CLOCK_SKEW_SECONDS = 60  # signed node-to-node requests older than this are refused
NODE_STATUSES = ("Offline", "Starting", "Deleting", "Failed to resolve", "Invalid secure cookie key",
                 "Invalid permissions on secure cookie key", "Missing secure cookie key", "Online")
ACTIVE_STATUSES = ("Online", "Offline")  # properly configured nodes; shown by /load-balancer/status
# The default /health-check template of the "Server Health Checks" page ends with three license lines; the emulator
# has no license and reports one that is activated.
LICENSE_LINES = "license-status: Activated\nlicense-days-left: 365\nlicense-allow-product-usage: 1\n"
LAST_SEEN_FORMAT = "%Y-%b-%d %H:%M:%S %Z"  # 2021-Sep-20 17:08:53 as in Posit's blog, plus the server's time zone
LOG = logging.getLogger("rserver")


def log(level, message):
    runtime.setup_logging("rserver")
    LOG.log(getattr(logging, level), "%s", message)


def installed_version():
    """The version this installation runs: from positemu_build.json beside the code (written by build.sh);
    local tests set POSITEMU_WORKBENCH_VERSION instead."""
    version = os.environ.get("POSITEMU_WORKBENCH_VERSION")
    if not version:
        build_file = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "positemu_build.json")
        with open(build_file, encoding="utf-8") as handle:
            version = json.load(handle)["version"]
    if version not in VERSIONS:
        raise SystemExit("unknown Workbench emulator version %r (known: %s)" % (version, ", ".join(VERSIONS)))
    return version


def load_defaults_file(path=DEFAULTS_FILE):
    """Put the tuning variables of /etc/default/rstudio-server into the environment (the environment wins).
    The daemon gets them from the unit's EnvironmentFile; the CLI does not run under the unit, so it reads them."""
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                line = line.strip()
                if line and not line.startswith("#") and "=" in line:
                    key, value = (part.strip() for part in line.split("=", 1))
                    if key in TUNING:
                        os.environ.setdefault(key, value.strip("\"'"))
    except OSError:
        pass


def tuning():
    values = {name: runtime.seconds(name) for name in TUNING}
    for name in ("POSITEMU_SCHEMA_CHECK_SECONDS", "RSTUDIO_LB_CHECKIN_SECONDS", "RSTUDIO_LB_MISSED_CHECKIN_SECONDS"):
        if values[name] <= 0:
            raise wconfig.ConfigError("%s must be a positive number of seconds, found %r" % (name, values[name]))
    return values


def normalised_load():
    """1, 5 and 15 minute load averages as a fraction of all CPUs, as the status endpoint shows them."""
    cpus = os.cpu_count() or 1
    return [value / cpus for value in os.getloadavg()]


def format_load(load):
    return ", ".join("{:.2g}".format(value) for value in load)


# -- node address ---------------------------------------------------------------------------------------------

def node_address(config):
    """(host, port) this node announces, by the documented order of strategies."""
    port = config.port
    if config.www_host_name:
        host = config.www_host_name
        if ":" in host:
            host, given = host.rsplit(":", 1)
            if given.isdigit():
                port = int(given)
        return host, port
    if config.address not in ("", "0.0.0.0", "::"):
        return config.address, port
    hostname = socket.gethostname()
    try:
        for info in socket.getaddrinfo(hostname, None, socket.AF_INET):
            address = info[4][0]
            if not address.startswith("127.") and not _multicast(address):
                return address, port
    except OSError:
        pass
    for address in reversed(_interface_addresses()):
        return address, port
    return hostname, port


def _multicast(address):
    first = int(address.split(".")[0])
    return 224 <= first <= 239


def _interface_addresses():
    try:
        output = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [a for a in output.split() if "." in a and not a.startswith("127.") and not _multicast(a)]


def resolve_ipv4(host):
    try:
        return socket.getaddrinfo(host, None, socket.AF_INET)[0][4][0]
    except (OSError, IndexError):
        return None


# -- signed node-to-node requests -----------------------------------------------------------------------------

def sign(key, method, path, stamp):
    return hmac.new(key.encode(), ("%s %s %s" % (method, path, stamp)).encode(), hashlib.sha256).hexdigest()


def launcher_sign(launcher, method, path, stamp):
    """Signature of a launcher request: an HMAC keyed by launcher.pem, then the fingerprint of launcher.pub. The
    node receiving it checks both against its own pair, so a node whose pair differs is refused (the emulator's
    stand-in for RSA signatures made with launcher.pem and checked with launcher.pub)."""
    pem, pub = launcher
    mac = hmac.new(hashlib.sha256(pem).digest(), ("%s %s %s" % (method, path, stamp)).encode(), hashlib.sha256)
    return "%s.%s" % (mac.hexdigest(), hashlib.sha256(pub).hexdigest()[:16])


def peer_request(key, ipv4, port, method, path, body=None, timeout=10, launcher=None):
    """Send a signed request to another node; return (status, parsed JSON or text). ``launcher`` (the key pair)
    adds the launcher signature that session and launcher requests carry."""
    stamp = str(int(time.time()))
    headers = {"X-RStudio-LB-Time": stamp, "X-RStudio-LB-Signature": sign(key, method, path, stamp)}
    if launcher is not None:
        headers["X-RStudio-Launcher-Signature"] = launcher_sign(launcher, method, path, stamp)
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn = http.client.HTTPConnection(ipv4, port, timeout=timeout or None)
    try:
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        data = response.read().decode(errors="replace")
    finally:
        conn.close()
    try:
        return response.status, json.loads(data)
    except ValueError:
        return response.status, data


# -- the daemon -----------------------------------------------------------------------------------------------

class StartupError(Exception):
    """rserver cannot start; the message says why and what to do."""


class Server:
    def __init__(self, config, version, tune):
        self.config = config
        self.version = version
        self.schema = VERSIONS[version]
        self.tune = tune
        self.state = "starting"  # starting, migrating, online, offline, stopping
        self.node_id = None
        self.key = None
        self.host = None
        self.lb_port = None
        self.started = time.time()
        self.stop_event = threading.Event()
        self.exit_code = 0
        self.db = None
        self.httpd = None
        self.admin = None
        self.account = None  # (name, uid, gid, home) of server-user
        self.cookie = (None, None)  # (problem status or None, key) read as root at start
        self.launcher = None  # (launcher.pem, launcher.pub) bytes, read as server-user
        self.health_problem = None  # why this node is Unhealthy, or None
        self.sessions = {}  # pid -> {"user", "process", "started"}
        self.sessions_lock = threading.Lock()
        self.known_loads = {}  # node id -> last load another node reported (status endpoint)

    # logging of load-balancer events also goes to the diagnostics destination when enabled
    def lb_log(self, message):
        log("INFO", message)
        if self.config.diagnostics == "tmp":
            try:
                with open(DIAGNOSTICS_FILE, "a", encoding="utf-8") as handle:
                    handle.write("%s %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"), message))
            except OSError as error:
                log("WARNING", "cannot write %s: %s" % (DIAGNOSTICS_FILE, error))
        elif self.config.diagnostics == "stderr":
            sys.stderr.write("[load-balancer-diagnostics] %s\n" % message)
            sys.stderr.flush()

    def preflight(self):
        """Checks made as root before daemonizing. Everything else (storage, launcher keys, database) is checked
        after rserver has dropped to server-user; the parent waits for that, so `systemctl start` fails on both."""
        for warning in self.config.warnings:
            log("WARNING", warning)
        try:
            self.account = runtime.account(self.config.server_user)
        except runtime.AccountError as error:
            raise StartupError("server-user %s (%s): %s; the package creates rstudio-server, or set server-user "
                               "to an existing system account" % (
                                   self.config.server_user, self.config.rserver_path, error))
        if os.geteuid() != 0 and self.account[1] != os.geteuid():
            raise StartupError("rserver must be started as root: it drops to server-user %s itself (this process "
                               "runs as %s)" % (self.config.server_user, runtime.current_user()))
        if self.config.lb_enabled:
            # Read as root, as rserver does at start. A weak key stops the server outright; a missing key or a
            # bad mode becomes the node's database status when it joins.
            self.cookie = wconfig.read_secure_cookie_key(self.config.secure_cookie_key_file)
        elif self.config.db_provider == "sqlite" and on_nfs(self.config.sqlite_dir):
            log("WARNING", "the SQLite database directory %s is on NFS; SQLite must not be kept on network "
                           "storage: set directory in %s to a local path" % (
                               self.config.sqlite_dir, self.config.database_conf_path))

    def user(self):
        return self.account[0] if self.account else runtime.current_user()

    def check_shared_storage(self):
        """server-shared-storage-path must be usable by server-user (rserver works there without root)."""
        path = self.config.shared_storage
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as error:
            raise StartupError("cannot create server-shared-storage-path %s as %s (server-user): %s; create it "
                               "on the shared storage owned by %s" % (path, self.user(), error.strerror or error,
                                                                     self.user()))
        problem = self.shared_storage_problem()
        if problem:
            raise StartupError(problem)

    def shared_storage_problem(self):
        """None when server-user can write in server-shared-storage-path, else the reason."""
        path = self.config.shared_storage
        probe = os.path.join(path, ".rstudio-write-check-%s" % socket.gethostname())
        try:
            with open(probe, "w", encoding="utf-8") as handle:
                handle.write("%d\n" % os.getpid())
            os.unlink(probe)
        except OSError as error:
            return ("server-shared-storage-path %s is not writable by %s (server-user): %s; it must be owned by "
                    "(or writable for) %s on every node" % (path, self.user(), error.strerror or error,
                                                            self.user()))
        return None

    def health_check_problems(self):
        """The node's own health: what the check-in records in the Health column (None when healthy)."""
        if self.config.lb_enabled:
            problem = self.shared_storage_problem()
            if problem:
                return problem
        if self.config.launcher_enabled:
            try:
                current = wconfig.read_launcher_keys(self.config, self.user())
            except wconfig.ConfigError as error:
                return str(error)
            if current != self.launcher:
                return ("the launcher key pair changed on disk since rserver started: restart rstudio-server to use "
                        "it")
        return None

    def prepare_run_dir(self):
        """server-data-dir (default /var/run/rstudio-server): created as root and given to server-user."""
        path = self.config.server_data_dir
        try:
            os.makedirs(path, exist_ok=True)
            if os.geteuid() == 0:
                os.chown(path, self.account[1], self.account[2])
        except OSError as error:
            raise StartupError("cannot prepare server-data-dir %s: %s" % (path, error))

    def open_db(self):
        try:
            return wdb.open_database(self.config)
        except DatabaseError as error:
            raise StartupError("%s; check %s" % (error, self.config.database_conf_path))

    def start(self):
        """Bind (as root), drop to server-user, check storage and launcher keys, migrate, join the cluster. Raises
        StartupError with the reason on failure."""
        self.start_http()
        self.prepare_run_dir()
        try:
            runtime.drop_privileges(self.config.server_user)
        except (runtime.AccountError, OSError) as error:
            raise StartupError("cannot run as server-user %s: %s" % (self.config.server_user, error))
        log("INFO", "running as %s (server-user)" % self.user())
        self.start_admin()
        if self.config.lb_enabled:
            self.check_shared_storage()
        if self.config.launcher_enabled:
            try:
                self.launcher = wconfig.read_launcher_keys(self.config, self.user())
            except wconfig.ConfigError as error:
                raise StartupError(str(error))
        self.db = self.open_db()
        self.migrate()
        if self.config.lb_enabled:
            self.join()
        else:
            self.state = "online"
        log("INFO", "RStudio Workbench %s (emulator) listening on %s:%d" % (
            self.version, self.config.address, self.config.port))

    def migrate(self):
        def migrating(active):
            self.state = "migrating" if active else "starting"
        try:
            schema.ensure(self.db, self.schema, wdb.DDL[self.schema], "rstudio-workbench %s" % self.version, LOG,
                          on_migrating=migrating)
        except schema.SchemaTooNew as error:
            raise StartupError("%s (this is Workbench %s)" % (error, self.version))
        except DatabaseError as error:
            raise StartupError("schema migration failed: %s" % error)
        self.state = "starting"

    def join(self):
        """Register this node and bring it Online, or record the documented failure status and stop."""
        config = self.config
        self.host, self.lb_port = node_address(config)
        self.node_id = wdb.register_node(self.db, self.host, self.lb_port, self.version)
        self.lb_log("node %d (%s:%d) starting; balancer=%s" % (
            self.node_id, self.host, self.lb_port, config.balancer))
        ipv4 = resolve_ipv4(self.host)
        if ipv4 is None:
            self.fail_node("Failed to resolve", "could not resolve the host name %r to an IPv4 address: set "
                           "www-host-name in %s" % (self.host, config.lb_path))
        wdb.set_node(self.db, self.node_id, "Starting", ipv4=ipv4)
        problem, key = self.cookie
        if problem == "Missing secure cookie key":
            self.fail_node(problem, "secure cookie key file %s not found: copy the cluster's key to every node "
                           "(mode 0600)" % config.secure_cookie_key_file)
        if problem:
            self.fail_node(problem, "secure cookie key file %s must have mode 0600: chmod 0600 %s" % (
                config.secure_cookie_key_file, config.secure_cookie_key_file))
        self.key = key
        self.claim_cluster()
        self.health_problem = self.health_check_problems()
        healthy = self.health_problem is None
        wdb.set_node(self.db, self.node_id, "Online", seen=healthy, health=wdb.HEALTHY if healthy else wdb.UNHEALTHY)
        if not healthy:
            log("ERROR", "node %d is unhealthy: %s" % (self.node_id, self.health_problem))
        wdb.record_event(self.db, self.node_id, "online")
        self.state = "online"
        self.lb_log("node %d online at %s:%d (%s)" % (self.node_id, self.host, self.lb_port, ipv4))
        self.broadcast("joined")
        self.check_launcher_with_peers()

    def check_launcher_with_peers(self):
        """Launcher requests between nodes are signed with launcher.pem and checked with launcher.pub; a node whose
        pair differs cannot reach the sessions of the others (nor they its). Say so on both sides."""
        if self.launcher is None or self.node_id is None:
            return
        for node in wdb.nodes(self.db):
            if node["id"] == self.node_id or node["status"] != "Online" or not node["ipv4"]:
                continue
            try:
                code, reply = peer_request(self.key, node["ipv4"], node["port"], "POST",
                                           "/load-balancer/launcher-check", {"from": self.node_id},
                                           timeout=self.config.lb_timeout, launcher=self.launcher)
            except OSError:
                continue  # unreachable: the status endpoint shows that
            if code == 401 and isinstance(reply, dict) and reply.get("error") == "launcher key mismatch":
                log("ERROR", "node %d (%s) refused this node's launcher signature: launcher.pem/launcher.pub "
                             "differ between the nodes, so sessions started on one node cannot be reached from the "
                             "other; copy %s and %s from one node to every node and restart rstudio-server" % (
                                 node["id"], node["host"], self.config.launcher_pem, self.config.launcher_pub))

    def claim_cluster(self):
        """The first node online defines the cluster; later nodes must match its key hash and protocol."""
        mine = (key_hash(self.key), self.config.protocol())
        cluster = wdb.cluster(self.db)
        others_online = [n for n in self.live_nodes() if n["id"] != self.node_id and n["status"] == "Online"]
        if cluster is None or not others_online:
            if cluster is None or tuple(cluster) != mine:
                wdb.set_cluster(self.db, *mine)
                self.lb_log("cluster data defined by node %d (protocol %s)" % (self.node_id, mine[1]))
            return
        if cluster[0] != mine[0]:
            self.fail_node("Invalid secure cookie key", "this node's secure cookie key (%s) does not match the "
                           "cluster's: copy the key from an online node, or run `rstudio-server reset-cluster`"
                           % self.config.secure_cookie_key_file)
        if cluster[1] != mine[1]:
            self.fail_node("Offline", "this node's protocol %s does not match the cluster's (%s): configure SSL "
                           "identically on every node" % (mine[1], cluster[1]))

    def live_nodes(self):
        """Nodes whose status is Online and that checked in recently (not "Missed check-in")."""
        horizon = time.time() - self.tune["RSTUDIO_LB_MISSED_CHECKIN_SECONDS"]
        return [n for n in wdb.nodes(self.db) if n["status"] != "Online" or (n["last_seen"] or 0) >= horizon]

    def fail_node(self, status, message):
        wdb.set_node(self.db, self.node_id, status)
        self.lb_log("node %d status: %s" % (self.node_id, status))
        raise StartupError("%s: %s" % (status, message))

    def broadcast(self, event, subject=None):
        """Tell the other online nodes about an event (joined, left, deleted, online, offline)."""
        subject = self.node_id if subject is None else subject
        for node in wdb.nodes(self.db):
            if node["id"] in (self.node_id, subject) or node["status"] != "Online" or not node["ipv4"]:
                continue
            try:
                status = peer_request(self.key, node["ipv4"], node["port"], "POST", "/load-balancer/notify",
                                      {"event": event, "node": subject, "from": self.node_id},
                                      timeout=self.config.lb_timeout)[0]
                self.lb_log("notified node %d (%s) of %s node %d: HTTP %d" % (
                    node["id"], node["host"], event, subject, status))
            except OSError as error:
                self.lb_log("could not notify node %d (%s:%d): %s" % (node["id"], node["host"], node["port"],
                                                                      error))

    # -- running ----------------------------------------------------------------------------------------------

    def monitor(self):
        """Watch the schema (core SchemaWatcher) and check in every RSTUDIO_LB_CHECKIN_SECONDS."""
        def newer_schema(error):
            log("ERROR", "%s; shutting down (this is Workbench %s)" % (error, self.version))
            self.exit_code = 1
            self.stop_event.set()
        schema.SchemaWatcher(self.db, self.schema, newer_schema, LOG, self.stop_event).start()
        if self.node_id is None:
            return
        while not self.stop_event.wait(self.tune["RSTUDIO_LB_CHECKIN_SECONDS"]):
            problem = self.health_check_problems()
            if problem and problem != self.health_problem:
                log("ERROR", "node %d is unhealthy, its last seen time is no longer updated: %s" % (
                    self.node_id, problem))
            elif self.health_problem and not problem:
                log("INFO", "node %d is healthy again" % self.node_id)
            self.health_problem = problem
            try:
                if not wdb.check_in(self.db, self.node_id, healthy=problem is None):
                    log("ERROR", "this node (ID %d) is no longer in the cluster database: it was deleted; "
                                 "restart rstudio-server to add it again" % self.node_id)
                    continue
            except DatabaseError as error:
                log("ERROR", "could not update the last seen time: %s" % error)
                continue
            self.check_launcher_with_peers()

    def set_offline(self, offline):
        if self.state not in ("online", "offline"):
            return "the server is %s" % self.state
        self.state = "offline" if offline else "online"
        if self.node_id is not None:
            wdb.set_node(self.db, self.node_id, "Offline" if offline else "Online",
                         seen=not offline and self.health_problem is None)
            self.broadcast(self.state)
        log("INFO", "server is now %s" % self.state)
        return None

    def delete_node(self, node_id):
        if self.node_id is None or self.state != "online":
            return "delete-node must be run on an active (online) node of the cluster"
        if node_id == self.node_id:
            return "node %d is this node; run delete-node from another active node" % node_id
        if wdb.node(self.db, node_id) is None:
            return "node %d not found" % node_id
        wdb.set_node(self.db, node_id, "Deleting")
        self.lb_log("deleting node %d" % node_id)
        self.broadcast("deleted", subject=node_id)
        wdb.delete_node(self.db, node_id)
        self.lb_log("node %d deleted" % node_id)
        return None

    def shutdown(self):
        previous = self.state
        self.state = "stopping"
        if self.node_id is not None and previous in ("online", "offline"):
            try:
                still_ours = wdb.node(self.db, self.node_id)
                if still_ours and still_ours["status"] in ("Online", "Offline"):
                    wdb.set_node(self.db, self.node_id, "Offline")
                    self.broadcast("left")
            except DatabaseError as error:
                log("ERROR", "could not record the shutdown: %s" % error)
        self.end_sessions()
        if self.httpd is not None:
            self.httpd.stop()
        if self.admin is not None:
            self.admin.shutdown()
            self.admin.server_close()
        if self.admin is not None:
            try:
                os.unlink(self.admin_path())
            except OSError:
                pass
        if self.db is not None:
            self.db.close()
        log("INFO", "RStudio Workbench stopped")

    # -- HTTP -------------------------------------------------------------------------------------------------

    def start_http(self):
        try:
            # Workbench's HTTP front is nginx (rserver-http), which listens with nginx's default backlog.
            self.httpd = httpd.HttpServer((self.config.address, self.config.port), LOG, server_header="RStudio",
                                          backlog=httpd.NGINX_BACKLOG)
        except OSError as error:
            raise StartupError("cannot listen on %s:%d (www-address/www-port in %s): %s" % (
                self.config.address, self.config.port, self.config.rserver_path, error))
        self.httpd.route("GET", "/health-check", self.health_check)
        self.httpd.route("GET", "/load-balancer/status", self.lb_status)
        self.httpd.route("GET", "/load-balancer/node-info", self.lb_node_info)
        self.httpd.route("POST", "/load-balancer/notify", self.lb_notify)
        self.httpd.route("POST", "/load-balancer/launcher-check", self.lb_launcher_check)
        self.httpd.route("GET", "/load-balancer/session/", self.lb_session, prefix=True)
        self.httpd.route("GET", "/s/", self.session_page, prefix=True)
        self.httpd.route("GET", "/__emulator__/sessions", self.emulator_sessions)
        self.httpd.route("POST", "/__emulator__/sessions", self.emulator_sessions)
        self.httpd.route("DELETE", "/__emulator__/sessions", self.emulator_sessions)
        self.httpd.route("GET", "/", self.sign_in_page)
        self.httpd.start()

    def health_check(self, request):
        # Off unless server-health-check-enabled=1: the URL is then unknown to the server (404).
        if not self.config.health_check_enabled:
            return httpd.Response(404, "Not Found\n")
        if self.state != "online":
            return httpd.Response(503, "Service Unavailable: server is %s\n" % self.state)
        with self.sessions_lock:
            active = len(self.sessions)
        return httpd.Response(200, "active-sessions: %d\nidle-seconds: %d\ncpu-percent: 0.0\nmemory-percent: 0.0\n"
                                   "swap-percent: 0.0\nload-average: %.1f\n%s" % (
                                       active, 0 if active else int(time.time() - self.started),
                                       os.getloadavg()[0], LICENSE_LINES))

    # -- sessions (emulated: a process run as the user; no IDE) -----------------------------------------------

    def session_list(self):
        with self.sessions_lock:
            for pid in [pid for pid, info in self.sessions.items() if info["process"].poll() is not None]:
                del self.sessions[pid]
            return [{"pid": pid, "user": info["user"]} for pid, info in sorted(self.sessions.items())]

    def emulator_sessions(self, request):
        """Emulator route: POST ?user=NAME starts a session on this node (a process running as that user, started
        with root taken back for the instant, as rserver does); GET lists them; DELETE ?pid=N ends one."""
        if request.method == "GET":
            return httpd.Response(200, json.dumps(self.session_list()) + "\n", "application/json")
        if self.state != "online":
            return httpd.Response(503, "Service Unavailable: server is %s\n" % self.state)
        if request.method == "DELETE":
            pid = request.query.get("pid", "")
            with self.sessions_lock:
                info = self.sessions.pop(int(pid), None) if pid.isdigit() else None
            if info is None:
                return httpd.Response(404, "no session %s on this node\n" % pid)
            self.end_session(info)
            return httpd.Response(200, "session %s ended\n" % pid)
        name = request.query.get("user", "")
        try:
            user, uid, gid, home = runtime.account(name)
        except runtime.AccountError as error:
            return httpd.Response(400, "cannot start a session for %r: %s (user accounts must exist on every "
                                       "node)\n" % (name, error))
        minimum = minimum_user_id(self.config)
        if uid < minimum:
            return httpd.Response(403, "%s (uid %d) is below the minimum user id %d (auth-minimum-user-id, else "
                                       "UID_MIN in /etc/login.defs, else 1000)\n" % (user, uid, minimum))
        try:
            with runtime.privileged():
                process = subprocess.Popen(["sleep", "infinity"], user=uid, group=gid, extra_groups=[], cwd="/",
                                           env={"USER": user, "HOME": home}, stdin=subprocess.DEVNULL,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                           start_new_session=True)
        except (OSError, subprocess.SubprocessError) as error:
            log("ERROR", "cannot start a session for %s: %s" % (user, error))
            return httpd.Response(500, "cannot start a session for %s: %s\n" % (user, error))
        with self.sessions_lock:
            self.sessions[process.pid] = {"user": user, "process": process, "started": time.time()}
        log("INFO", "session %d started for %s" % (process.pid, user))
        return httpd.Response(201, json.dumps({"pid": process.pid, "user": user, "node": self.node_id}) + "\n",
                              "application/json")

    def end_session(self, info):
        process = info["process"]
        if process.poll() is None:
            try:
                with runtime.privileged():
                    process.terminate()
            except OSError:
                pass
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def end_sessions(self):
        with self.sessions_lock:
            sessions, self.sessions = list(self.sessions.values()), {}
        for info in sessions:
            self.end_session(info)

    def session_page(self, request):
        """GET /s/<pid>/: a session, wherever it runs. A session on another node is reached through that node's
        launcher, with a request signed by this node's launcher key pair."""
        if self.state not in ("online", "offline"):
            return httpd.Response(503, "Service Unavailable\n")
        pid = request.path[len("/s/"):].split("/", 1)[0]
        if not pid.isdigit():
            return httpd.Response(404, "Not Found\n")
        local = {item["pid"]: item["user"] for item in self.session_list()}
        if int(pid) in local:
            return httpd.Response(200, "session %s of %s on node %s\n" % (pid, local[int(pid)], self.node_id))
        if not self.config.lb_enabled or self.key is None:
            return httpd.Response(404, "no session %s\n" % pid)
        for node in wdb.nodes(self.db):
            if node["id"] == self.node_id or node["status"] != "Online" or not node["ipv4"]:
                continue
            try:
                code, info = peer_request(self.key, node["ipv4"], node["port"], "GET", "/load-balancer/node-info",
                                          timeout=self.config.lb_timeout)
            except OSError:
                continue
            if code != 200 or not isinstance(info, dict):
                continue
            if int(pid) not in [item["pid"] for item in info.get("sessions", [])]:
                continue
            path = "/load-balancer/session/%s" % pid
            try:
                code, body = peer_request(self.key, node["ipv4"], node["port"], "GET", path,
                                          timeout=self.config.lb_timeout, launcher=self.launcher)
            except OSError as error:
                return httpd.Response(502, "cannot reach node %d for session %s: %s\n" % (node["id"], pid, error))
            if code == 200:
                return httpd.Response(200, body if isinstance(body, str) else json.dumps(body))
            log("ERROR", "cannot reach session %s on node %d (%s): its launcher refused this node's launcher "
                         "signature (HTTP %d): launcher.pem/launcher.pub must be identical on every node" % (
                             pid, node["id"], node["host"], code))
            return httpd.Response(502, "Bad Gateway: session %s runs on node %d, which refused this node's launcher "
                                       "key\n" % (pid, node["id"]))
        return httpd.Response(404, "no session %s\n" % pid)

    def sign_in_page(self, request):
        if self.state not in ("online", "offline"):
            return httpd.Response(503, "Service Unavailable\n")
        return httpd.Response(200, "<html><title>RStudio Workbench</title><body>Sign in</body></html>\n",
                              "text/html; charset=utf-8")

    def lb_status(self, request):
        if not self.config.lb_enabled:
            return httpd.Response(404, "Not Found\n")
        if not (request.client[0].startswith("127.") or request.client[0] == "::1"):
            return httpd.Response(403, "Forbidden: the load balancer status is only served to localhost\n")
        return httpd.Response(200, self.status_text())

    def lb_node_info(self, request):
        if not self.config.lb_enabled:
            return httpd.Response(404, "Not Found\n")
        if not self.verified(request):
            return httpd.Response(401, "Unauthorized: bad or missing node signature\n")
        return httpd.Response(200, json.dumps({"state": self.state, "node": self.node_id, "load": normalised_load(),
                                               "sessions": self.session_list()}), "application/json")

    def launcher_refused(self, request):
        """None when the request carries a launcher signature made with this node's pair, else the reason."""
        if self.launcher is None:
            return "launcher sessions are not enabled on this node"
        stamp = request.headers.get("X-RStudio-LB-Time", "")
        given = request.headers.get("X-RStudio-Launcher-Signature", "")
        if hmac.compare_digest(given, launcher_sign(self.launcher, request.method, request.path, stamp)):
            return None
        return "launcher key mismatch"

    def lb_launcher_check(self, request):
        if not self.config.lb_enabled:
            return httpd.Response(404, "Not Found\n")
        if not self.verified(request):
            return httpd.Response(401, "Unauthorized: bad or missing node signature\n")
        refused = self.launcher_refused(request)
        if refused:
            try:
                sender = json.loads(request.body or b"{}").get("from")
            except ValueError:
                sender = None
            if refused == "launcher key mismatch":
                log("ERROR", "node %s signed a launcher request with another launcher key pair: %s and %s differ "
                             "between the nodes, so sessions cannot be reached across them; copy the pair from one "
                             "node to every node" % (sender, self.config.launcher_pem, self.config.launcher_pub))
            return httpd.Response(401, json.dumps({"error": refused}), "application/json")
        return httpd.Response(200, "{}", "application/json")

    def lb_session(self, request):
        """A session of this node asked for by another node on a user's behalf (launcher-signed)."""
        if not self.config.lb_enabled:
            return httpd.Response(404, "Not Found\n")
        if not self.verified(request):
            return httpd.Response(401, "Unauthorized: bad or missing node signature\n")
        refused = self.launcher_refused(request)
        if refused:
            log("ERROR", "refused a session request from another node: %s (%s and %s must be identical on every "
                         "node)" % (refused, self.config.launcher_pem, self.config.launcher_pub))
            return httpd.Response(401, json.dumps({"error": refused}), "application/json")
        pid = request.path[len("/load-balancer/session/"):]
        local = {item["pid"]: item["user"] for item in self.session_list()}
        if not pid.isdigit() or int(pid) not in local:
            return httpd.Response(404, "no session %s\n" % pid)
        return httpd.Response(200, "session %s of %s on node %s\n" % (pid, local[int(pid)], self.node_id))

    def lb_notify(self, request):
        if not self.config.lb_enabled:
            return httpd.Response(404, "Not Found\n")
        if not self.verified(request):
            return httpd.Response(401, "Unauthorized: bad or missing node signature\n")
        try:
            event = json.loads(request.body or b"{}")
        except ValueError:
            return httpd.Response(400, "Bad Request: expected JSON\n")
        self.lb_log("node %s reports: %s node %s" % (event.get("from"), event.get("event"), event.get("node")))
        return httpd.Response(200, "{}", "application/json")

    def verified(self, request):
        if self.key is None:
            return False
        stamp = request.headers.get("X-RStudio-LB-Time", "")
        given = request.headers.get("X-RStudio-LB-Signature", "")
        if not stamp.isdigit() or abs(time.time() - int(stamp)) > CLOCK_SKEW_SECONDS:
            self.lb_log("refused a node request stamped %r: are the clocks of the nodes in sync?" % stamp)
            return False
        return hmac.compare_digest(given, sign(self.key, request.method, request.path, stamp))

    def status_text(self):
        """The /load-balancer/status body (seed 004): each configured node as ``address[ (unreachable|offline)]
        Load: 1m, 5m, 15m`` (the last known load when unreachable, 0, 0, 0 when never known), then one
        ``   PID - user`` line per session running there."""
        lines = []
        for node in wdb.nodes(self.db):
            if node["status"] not in ACTIVE_STATUSES:
                continue
            address = "%s:%d" % (node["host"], node["port"])
            if node["id"] == self.node_id:
                info = {"state": self.state, "load": normalised_load(), "sessions": self.session_list()}
            else:
                try:
                    code, info = peer_request(self.key, node["ipv4"], node["port"], "GET",
                                              "/load-balancer/node-info", timeout=self.config.lb_timeout)
                    if code != 200 or not isinstance(info, dict):
                        info = None
                except OSError:
                    info = None
            if info is not None and info.get("state") in ("online", "offline"):
                self.known_loads[node["id"]] = info["load"]
                marker = " (offline)" if info["state"] == "offline" else ""
                lines.append("%s%s  Load: %s" % (address, marker, format_load(info["load"])))
                lines.extend("   %d - %s" % (item["pid"], item["user"]) for item in info.get("sessions", []))
            else:
                load = self.known_loads.get(node["id"], [0, 0, 0])
                lines.append("%s (unreachable)  Load: %s" % (address, format_load(load)))
        return "\n".join(lines) + "\n"

    # -- local administration socket (rstudio-server offline/online/delete-node) --------------------------------

    def admin_path(self):
        return os.path.join(self.config.server_data_dir, ADMIN_SOCKET)

    def start_admin(self):
        server = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                try:
                    request = json.loads(self.rfile.readline() or b"{}")
                    reply = server.admin_command(request)
                except Exception as error:
                    reply = {"error": "internal error: %s" % error}
                    traceback.print_exc()
                self.wfile.write((json.dumps(reply) + "\n").encode())

        class AdminServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        path = self.admin_path()
        os.makedirs(self.config.server_data_dir, exist_ok=True)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        old_umask = os.umask(0o077)  # only root may drive the server
        try:
            self.admin = AdminServer(path, Handler)
        finally:
            os.umask(old_umask)
        threading.Thread(target=self.admin.serve_forever, daemon=True).start()

    def admin_command(self, request):
        command = request.get("command")
        if command == "state":
            return {"state": self.state, "node": self.node_id, "version": self.version}
        if command in ("offline", "online"):
            error = self.set_offline(command == "offline")
            return {"error": error} if error else {"state": self.state}
        if command == "delete-node":
            try:
                error = self.delete_node(int(request.get("node")))
            except DatabaseError as db_error:
                error = str(db_error)
            return {"error": error} if error else {"deleted": request.get("node")}
        return {"error": "unknown admin command %r" % command}


def minimum_user_id(config, login_defs="/etc/login.defs"):
    """auth-minimum-user-id, else UID_MIN from /etc/login.defs, else 1000 (Restricting Access page)."""
    value = config.rserver.get("auth-minimum-user-id", "")
    if value.isdigit():
        return int(value)
    try:
        with open(login_defs, encoding="utf-8") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) >= 2 and fields[0] == "UID_MIN" and fields[1].isdigit():
                    return int(fields[1])
    except OSError:
        pass
    return 1000


def on_nfs(path):
    """True when ``path`` lives on an NFS mount (longest matching mount point in /proc/mounts)."""
    try:
        with open("/proc/mounts", encoding="utf-8") as handle:
            mounts = [line.split()[1:3] for line in handle if len(line.split()) > 2]
    except OSError:
        return False
    path = os.path.realpath(path)
    best, fstype = "", ""
    for point, kind in mounts:
        if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) > len(best):
            best, fstype = point, kind
    return fstype.startswith("nfs")


def rserver_main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    daemonize = True
    for arg in argv:
        if arg == "--version":
            print(installed_version())
            return 0
        if arg.startswith("--server-daemonize"):
            value = arg.split("=", 1)[1] if "=" in arg else "1"
            if value not in ("0", "1"):
                log("ERROR", "--server-daemonize must be 0 or 1, found %r" % value)
                return 1
            daemonize = value == "1"
        else:
            log("ERROR", "unrecognised option '%s' (options: --server-daemonize=0|1, --version)" % arg)
            return 1
    runtime.setup_logging("rserver")
    load_defaults_file()
    try:
        server = Server(wconfig.WorkbenchConfig(), installed_version(), tuning())
        server.preflight()
    except (wconfig.ConfigError, StartupError) as error:
        log("ERROR", "%s" % error)
        return 1
    ready_pipe = None
    if daemonize:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid:
            os.close(write_end)
            with os.fdopen(read_end) as pipe:
                message = pipe.read().strip()
            if message == "ready":
                # The parent is still root: it writes the PID file systemd reads (PIDFile=).
                try:
                    with open(PID_FILE, "w", encoding="utf-8") as handle:
                        handle.write("%d\n" % pid)
                except OSError as error:
                    log("WARNING", "cannot write %s: %s" % (PID_FILE, error))
                return 0
            os.waitpid(pid, 0)
            return 1
        os.close(read_end)
        os.setsid()
        ready_pipe = os.fdopen(write_end, "w")
        with open(os.devnull) as devnull:
            os.dup2(devnull.fileno(), 0)
    return run_server(server, ready_pipe)


def run_server(server, ready_pipe):
    signal.signal(signal.SIGTERM, lambda *_: server.stop_event.set())
    signal.signal(signal.SIGINT, lambda *_: server.stop_event.set())
    signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=reload, args=(server,), daemon=True).start())
    try:
        server.start()
    except (StartupError, DatabaseError) as error:
        log("ERROR", "%s" % error)
        server.shutdown()
        if ready_pipe:
            ready_pipe.write("failed\n")
            ready_pipe.close()
        return 1
    if ready_pipe:
        ready_pipe.write("ready\n")
        ready_pipe.close()
    threading.Thread(target=server.monitor, daemon=True).start()
    server.stop_event.wait()
    server.shutdown()
    if ready_pipe:
        try:
            with runtime.privileged():
                os.unlink(PID_FILE)
        except OSError:
            pass
    return server.exit_code


def reload(server):
    """SIGHUP: re-read the load-balancer configuration and rejoin (this is when a reset cluster is redefined)."""
    if not server.config.lb_enabled or server.state not in ("online", "offline"):
        return
    try:
        # rserver takes root back for an instant to read its root-only files (database.conf, the cookie key).
        with runtime.privileged():
            fresh = wconfig.WorkbenchConfig(server.config.directory)
            cookie = wconfig.read_secure_cookie_key(fresh.secure_cookie_key_file)
    except wconfig.ConfigError as error:
        log("ERROR", "reload refused, keeping the running configuration: %s" % error)
        return
    launcher = None
    if fresh.launcher_enabled:
        try:
            launcher = wconfig.read_launcher_keys(fresh, server.user())
        except wconfig.ConfigError as error:
            log("ERROR", "reload refused, keeping the running configuration: %s" % error)
            return
    offline = server.state == "offline"
    server.config = fresh
    server.cookie = cookie
    server.launcher = launcher
    try:
        server.join()
        if offline:
            server.set_offline(True)
        log("INFO", "configuration reloaded")
    except (StartupError, DatabaseError) as error:
        log("ERROR", "%s; shutting down" % error)
        server.exit_code = 1
        server.stop_event.set()


# -- the rstudio-server CLI -----------------------------------------------------------------------------------

USAGE = """Usage: rstudio-server COMMAND

Service:       start | stop | restart | reload | status
Local node:    offline | online
Cluster:       list-nodes | delete-node ID | reset-cluster
Information:   version | help
"""


class CliError(Exception):
    pass


def admin_call(config, request):
    path = os.path.join(config.server_data_dir, ADMIN_SOCKET)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(120)
            sock.connect(path)
            sock.sendall((json.dumps(request) + "\n").encode())
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except (FileNotFoundError, ConnectionRefusedError):
        raise CliError("rstudio-server is not running on this node (start it with `rstudio-server start`)")
    except PermissionError:
        raise CliError("permission denied: run this command as root (sudo rstudio-server ...)")
    return json.loads(data or b"{}")


def cluster_db(config):
    if not config.lb_enabled:
        raise CliError("load balancing is not enabled on this node: set load-balancing-enabled=1 in %s" %
                       config.rserver_path)
    try:
        db = wdb.open_database(config)
        if schema.read_version(db) is None:
            raise CliError("the database has no Workbench data yet: start rstudio-server on a node first")
    except DatabaseError as error:
        raise CliError(str(error))
    return db


PROTOCOL_NAMES = {"http": "Http", "https": "Https", "https no verify": "Https no verify"}


def format_last_seen(stamp):
    """Last Seen in the server's local time zone: ``2021-Sep-20 17:08:53`` (Posit's published output) followed by
    the zone abbreviation, since the docs say the time is shown in the server's local time zone."""
    return time.strftime(LAST_SEEN_FORMAT, time.localtime(stamp)) if stamp else ""


def list_nodes_text(nodes, missed_after, now=None, protocol="http"):
    """The list-nodes output: a Cluster section (protocol), then the node table, online first, then by ID, with
    Status ("Missed check-in" for stale Online nodes), Health and Last Seen."""
    now = time.time() if now is None else now
    rows = []
    for node in nodes:
        status = node["status"]
        if status == "Online" and (node["last_seen"] is None or now - node["last_seen"] > missed_after):
            status = "Missed check-in"
        rows.append((node["status"] != "Online", node["id"],
                     [str(node["id"]), node["host"], node["ipv4"] or "", str(node["port"]), status,
                      node.get("health") or "", format_last_seen(node["last_seen"])]))
    rows.sort(key=lambda row: (row[0], row[1]))
    header = ["ID", "Host", "IPv4", "Port", "Status", "Health", "Last Seen"]
    widths = [4, 30, 16, 8, 42, 12]
    for index in range(len(widths)):
        longest = max([len(row[2][index]) for row in rows] + [0])
        widths[index] = max(widths[index], longest + 2)
    lines = ["Cluster", "-------", "Protocol", PROTOCOL_NAMES.get(protocol, protocol or ""), "", "Nodes", "-----"]
    for cells in [header] + [row[2] for row in rows]:
        lines.append("".join(cell.ljust(width) for cell, width in zip(cells, widths)) + cells[-1])
    return "\n".join(line.rstrip() for line in lines) + "\n"


def require_root():
    if os.geteuid() != 0:
        raise CliError("this command must be run as root (sudo rstudio-server ...)")


def cli_main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        sys.stderr.write(USAGE)
        return 1
    command, args = argv[0], argv[1:]
    try:
        if command in ("help", "--help", "-h"):
            sys.stdout.write(USAGE)
            return 0
        if command in ("start", "stop", "restart", "reload", "status"):
            if args:
                raise CliError("`%s` takes no arguments" % command)
            return subprocess.call(["systemctl", command, SERVICE])
        if command == "version":
            print(installed_version())
            return 0
        expected = 1 if command == "delete-node" else 0
        if command not in ("offline", "online", "list-nodes", "delete-node", "reset-cluster"):
            sys.stderr.write("rstudio-server: unrecognised command '%s'\n\n%s" % (command, USAGE))
            return 1
        if len(args) != expected:
            sys.stderr.write("rstudio-server: `%s` expects %s\n\n%s" % (
                command, "a node ID (see list-nodes)" if expected else "no arguments", USAGE))
            return 1
        require_root()
        load_defaults_file()
        config = wconfig.WorkbenchConfig()
        if command in ("offline", "online"):
            reply = admin_call(config, {"command": command})
            if reply.get("error"):
                raise CliError(reply["error"])
            return 0
        if command == "list-nodes":
            db = cluster_db(config)
            try:
                cluster = wdb.cluster(db)
                sys.stdout.write(list_nodes_text(wdb.nodes(db), tuning()["RSTUDIO_LB_MISSED_CHECKIN_SECONDS"],
                                                 protocol=cluster[1] if cluster else ""))
            finally:
                db.close()
            return 0
        if command == "reset-cluster":
            db = cluster_db(config)
            try:
                wdb.reset_cluster(db)
            finally:
                db.close()
            print("Cluster data reset. The next node that is started, restarted or reloaded will define it.")
            return 0
        # delete-node
        if not args[0].isdigit():
            raise CliError("node ID must be a number (see rstudio-server list-nodes), found %r" % args[0])
        node_id = int(args[0])
        cluster_db(config).close()
        reply = admin_call(config, {"command": "delete-node", "node": node_id})
        if reply.get("error"):
            if reply["error"] == "node %d not found" % node_id:
                raise CliError("node %d not found" % node_id)
            raise CliError(reply["error"])
        print("Node %d deleted." % node_id)
        return 0
    except (CliError, wconfig.ConfigError, DatabaseError) as error:
        sys.stderr.write("Error: %s\n" % error)
        return 1


if __name__ == "__main__":
    sys.exit(cli_main())
