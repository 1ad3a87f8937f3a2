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


def peer_request(key, ipv4, port, method, path, body=None, timeout=10):
    """Send a signed request to another node; return (status, parsed JSON or text)."""
    stamp = str(int(time.time()))
    headers = {"X-RStudio-LB-Time": stamp, "X-RStudio-LB-Signature": sign(key, method, path, stamp)}
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
        """Checks made before daemonizing, so `systemctl start` fails on them."""
        for warning in self.config.warnings:
            log("WARNING", warning)
        if self.config.lb_enabled:
            # A weak key stops the server outright; missing/bad mode is recorded as a node status later.
            wconfig.read_secure_cookie_key(self.config.secure_cookie_key_file)
            self.check_shared_storage()
        elif self.config.db_provider == "sqlite" and on_nfs(self.config.sqlite_dir):
            log("WARNING", "the SQLite database directory %s is on NFS; SQLite must not be kept on network "
                           "storage: set directory in %s to a local path" % (
                               self.config.sqlite_dir, self.config.database_conf_path))
        db = self.open_db()
        try:
            schema.check(db, self.schema)
        except schema.SchemaTooNew as error:
            raise StartupError("%s (this is Workbench %s); this node cannot start" % (error, self.version))
        except DatabaseError as error:
            raise StartupError(str(error))
        finally:
            db.close()

    def check_shared_storage(self):
        path = self.config.shared_storage
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as error:
            raise StartupError("cannot create server-shared-storage-path %s: %s" % (path, error))
        if not os.access(path, os.W_OK):
            raise StartupError("server-shared-storage-path %s is not writable" % path)

    def open_db(self):
        try:
            return wdb.open_database(self.config)
        except DatabaseError as error:
            raise StartupError("%s; check %s" % (error, self.config.database_conf_path))

    def start(self):
        """Bind, migrate, join the cluster. Raises StartupError with the reason on failure."""
        self.db = self.open_db()
        self.start_http()
        self.start_admin()
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
        problem, key = wconfig.read_secure_cookie_key(config.secure_cookie_key_file)
        if problem == "Missing secure cookie key":
            self.fail_node(problem, "secure cookie key file %s not found: copy the cluster's key to every node "
                           "(mode 0600)" % config.secure_cookie_key_file)
        if problem:
            self.fail_node(problem, "secure cookie key file %s must have mode 0600: chmod 0600 %s" % (
                config.secure_cookie_key_file, config.secure_cookie_key_file))
        self.key = key
        self.claim_cluster()
        wdb.set_node(self.db, self.node_id, "Online", seen=True)
        wdb.record_event(self.db, self.node_id, "online")
        self.state = "online"
        self.lb_log("node %d online at %s:%d (%s)" % (self.node_id, self.host, self.lb_port, ipv4))
        self.broadcast("joined")

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
            try:
                if not wdb.check_in(self.db, self.node_id):
                    log("ERROR", "this node (ID %d) is no longer in the cluster database: it was deleted; "
                                 "restart rstudio-server to add it again" % self.node_id)
            except DatabaseError as error:
                log("ERROR", "could not update the last seen time: %s" % error)

    def set_offline(self, offline):
        if self.state not in ("online", "offline"):
            return "the server is %s" % self.state
        self.state = "offline" if offline else "online"
        if self.node_id is not None:
            wdb.set_node(self.db, self.node_id, "Offline" if offline else "Online", seen=not offline)
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
            self.httpd = httpd.HttpServer((self.config.address, self.config.port), LOG, server_header="RStudio")
        except OSError as error:
            raise StartupError("cannot listen on %s:%d (www-address/www-port in %s): %s" % (
                self.config.address, self.config.port, self.config.rserver_path, error))
        self.httpd.route("GET", "/health-check", self.health_check)
        self.httpd.route("GET", "/load-balancer/status", self.lb_status)
        self.httpd.route("GET", "/load-balancer/node-info", self.lb_node_info)
        self.httpd.route("POST", "/load-balancer/notify", self.lb_notify)
        self.httpd.route("GET", "/", self.sign_in_page)
        self.httpd.start()

    def health_check(self, request):
        if not self.config.health_check_enabled:
            return httpd.Response(404, "Not Found\n")
        if self.state != "online":
            return httpd.Response(503, "Service Unavailable: server is %s\n" % self.state)
        return httpd.Response(200, "active-sessions: 0\nidle-seconds: %d\ncpu-percent: 0.0\nmemory-percent: 0.0\n"
                                   "swap-percent: 0.0\nload-average: %.2f\n" % (
                                       int(time.time() - self.started), os.getloadavg()[0]))

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
        return httpd.Response(200, json.dumps({"state": self.state, "node": self.node_id, "load": normalised_load()}),
                              "application/json")

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
        """The /load-balancer/status body: every configured node, its load, and (offline)/(unreachable)."""
        lines = []
        for node in wdb.nodes(self.db):
            if node["status"] not in ACTIVE_STATUSES:
                continue
            address = "%s:%d" % (node["host"], node["port"])
            if node["id"] == self.node_id:
                info = {"state": self.state, "load": normalised_load()}
            else:
                try:
                    code, info = peer_request(self.key, node["ipv4"], node["port"], "GET",
                                              "/load-balancer/node-info", timeout=self.config.lb_timeout)
                    if code != 200 or not isinstance(info, dict):
                        info = None
                except OSError:
                    info = None
            if info is None:
                lines.append("%s (unreachable)" % address)
            elif info.get("state") == "offline":
                lines.append("%s (offline)  Load: %s" % (address, format_load(info["load"])))
            elif info.get("state") != "online":
                lines.append("%s (unreachable)" % address)
            else:
                lines.append("%s  Load: %s" % (address, format_load(info["load"])))
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
        try:
            with open(PID_FILE, "w", encoding="utf-8") as handle:
                handle.write("%d\n" % os.getpid())
        except OSError as error:
            log("WARNING", "cannot write %s: %s" % (PID_FILE, error))
        ready_pipe.write("ready\n")
        ready_pipe.close()
    threading.Thread(target=server.monitor, daemon=True).start()
    server.stop_event.wait()
    server.shutdown()
    if ready_pipe:
        try:
            os.unlink(PID_FILE)
        except OSError:
            pass
    return server.exit_code


def reload(server):
    """SIGHUP: re-read the load-balancer configuration and rejoin (this is when a reset cluster is redefined)."""
    if not server.config.lb_enabled or server.state not in ("online", "offline"):
        return
    try:
        fresh = wconfig.WorkbenchConfig(server.config.directory)
    except wconfig.ConfigError as error:
        log("ERROR", "reload refused, keeping the running configuration: %s" % error)
        return
    offline = server.state == "offline"
    server.config = fresh
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


def list_nodes_text(nodes, missed_after, now=None):
    """The list-nodes table: online first, then by ID; "Missed check-in" for stale Online nodes."""
    now = time.time() if now is None else now
    rows = []
    for node in nodes:
        status = node["status"]
        if status == "Online" and (node["last_seen"] is None or now - node["last_seen"] > missed_after):
            status = "Missed check-in"
        seen = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(node["last_seen"])) if node["last_seen"] else ""
        rows.append((node["status"] != "Online", node["id"],
                     [str(node["id"]), node["host"], node["ipv4"] or "", str(node["port"]), status, seen]))
    rows.sort(key=lambda row: (row[0], row[1]))
    header = ["ID", "Host", "IPv4", "Port", "Status", "Last Seen"]
    widths = [4, 30, 16, 8, 42]
    for index in range(len(widths)):
        longest = max([len(row[2][index]) for row in rows] + [0])
        widths[index] = max(widths[index], longest + 2)
    lines = []
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
                sys.stdout.write(list_nodes_text(wdb.nodes(db), tuning()["RSTUDIO_LB_MISSED_CHECKIN_SECONDS"]))
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
