"""Workbench configuration files in /etc/rstudio: reading and validating them the way rserver does.

Every file is `key=value` lines; `#` starts a comment. rserver refuses to start on an unknown option or a bad
value, naming the file and the option, so the emulator does the same (see tests/emulator/README.md, Workbench).
"""

import os
import re
import stat

DEFAULT_CONFIG_DIR = "/etc/rstudio"
DEFAULT_SECURE_COOKIE_KEY = "secure-cookie-key"
DEFAULT_SQLITE_DIR = "/var/lib/rstudio-server"
DEFAULT_SERVER_DATA_DIR = "/var/run/rstudio-server"
DEFAULT_PORT = 8787
DEFAULT_SERVER_USER = "rstudio-server"
LAUNCHER_PEM = "launcher.pem"
LAUNCHER_PUB = "launcher.pub"
BALANCERS = ("sessions", "system-load", "user-hash", "custom")
DIAGNOSTICS = ("tmp", "stderr")
LOCK_TYPES = ("linkbased", "advisory")
MIN_KEY_BYTES = 16  # 128 bits

# rserver.conf options the emulator knows. Real rserver has many more; these are the ones a cluster uses plus the
# common ones an operator sets. Anything else is refused as rserver refuses an unrecognised option.
RSERVER_OPTIONS = {
    "www-port", "www-address", "www-root-path", "www-frame-origin", "www-same-site", "www-enable-origin-check",
    "www-thread-pool-size", "www-verify-user-agent", "www-url-path-prefix",
    "server-shared-storage-path", "load-balancing-enabled", "secure-cookie-key-file", "server-user",
    "server-data-dir", "server-health-check-enabled", "server-project-sharing", "server-daemonize",
    "server-app-armor-enabled", "server-set-umask", "server-access-log", "database-config-file",
    "auth-pam-sessions-enabled", "auth-required-user-group", "auth-minimum-user-id", "auth-timeout-minutes",
    "auth-stay-signed-in-days", "auth-encrypt-password", "auth-proxy", "auth-openid", "auth-saml",
    "admin-enabled", "admin-group", "admin-superuser-group", "admin-monitor-log-use-server-time-zone",
    "rsession-which-r", "rsession-ld-library-path", "rsession-path", "r-versions-scan",
    "launcher-sessions-enabled", "launcher-address", "launcher-port", "launcher-default-cluster",
    "launcher-sessions-callback-address", "launcher-use-ssl",
    "ssl-enabled", "ssl-certificate", "ssl-certificate-key", "ssl-protocols",
    "monitor-interval-seconds", "logging-level",
}
DATABASE_OPTIONS = {"provider", "directory", "host", "port", "database", "username", "password",
                    "connection-timeout-seconds", "pool-size", "connection-uri"}
LOAD_BALANCER_OPTIONS = {"www-host-name", "balancer", "diagnostics", "timeout", "verify-ssl-certs"}
FILE_LOCKS_OPTIONS = {"lock-type", "refresh-rate", "timeout-interval", "enable-logging", "log-file"}


class ConfigError(Exception):
    """A configuration problem that stops rserver from starting; the message names the file and the fix."""


def config_dir():
    # RSTUDIO_CONFIG_DIR is the real variable Workbench honours to move /etc/rstudio.
    return os.environ.get("RSTUDIO_CONFIG_DIR") or DEFAULT_CONFIG_DIR


def read_key_values(path, allowed, allow_sections=False):
    """Parse a key=value file. Returns (options, sections_seen). A missing file gives ({}, [])."""
    options = {}
    sections = []
    section = None
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return options, sections
    except PermissionError:
        raise ConfigError("%s: permission denied reading the file (rserver reads its configuration as root at "
                          "start and as server-user on reload; check its owner and mode)" % path)
    for number, raw in enumerate(lines, start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        header = re.fullmatch(r"\[(\w+)\]", line)
        if header and allow_sections:
            section = header.group(1).lower()
            sections.append(section)
            continue
        if section == "nodes":
            continue  # pre-2023 list of node host names; ignored, www-host-name replaces it
        if "=" not in line:
            raise ConfigError("%s line %d: expected key=value, found %r" % (path, number, raw.strip()))
        key, value = (part.strip() for part in line.split("=", 1))
        if key not in allowed:
            raise ConfigError("%s line %d: unrecognised option '%s' (valid options: %s)" % (
                path, number, key, ", ".join(sorted(allowed))))
        options[key] = value
    return options, sections


def _flag(path, key, value):
    if value in ("1", "true", "True", "TRUE"):
        return True
    if value in ("0", "false", "False", "FALSE"):
        return False
    raise ConfigError("%s: %s must be 0 or 1, found %r" % (path, key, value))


def _integer(path, key, value, minimum):
    if not re.fullmatch(r"\d+", value or "") or int(value) < minimum:
        raise ConfigError("%s: %s must be an integer >= %d, found %r" % (path, key, minimum, value))
    return int(value)


class WorkbenchConfig:
    """Everything rserver reads from the config directory, validated."""

    def __init__(self, directory=None):
        self.directory = directory or config_dir()
        self.warnings = []
        self._read_rserver()
        self._read_database()
        self._read_load_balancer()
        self._read_file_locks()
        self._check_cluster_requirements()

    def path(self, name):
        return os.path.join(self.directory, name)

    def _read_rserver(self):
        path = self.path("rserver.conf")
        self.rserver_path = path
        options = read_key_values(path, RSERVER_OPTIONS)[0]
        self.rserver = options
        self.port = _integer(path, "www-port", options.get("www-port", str(DEFAULT_PORT)), 1)
        if self.port > 65535:
            raise ConfigError("%s: www-port must be between 1 and 65535, found %d" % (path, self.port))
        self.address = options.get("www-address", "0.0.0.0")
        self.shared_storage = options.get("server-shared-storage-path", "")
        self.server_data_dir = options.get("server-data-dir", DEFAULT_SERVER_DATA_DIR)
        # Off unless switched on: Posit's "Server Health Checks" page enables it with server-health-check-enabled=1.
        self.health_check_enabled = _flag(path, "server-health-check-enabled",
                                          options.get("server-health-check-enabled", "0"))
        self.server_user = options.get("server-user", "") or DEFAULT_SERVER_USER
        # A fresh installation comes with the Job Launcher and the Local plugin enabled (Launcher Configuration
        # page), so the emulator treats launcher sessions as on unless launcher-sessions-enabled=0.
        self.launcher_enabled = _flag(path, "launcher-sessions-enabled",
                                      options.get("launcher-sessions-enabled", "1"))
        self.launcher_pem = self.path(LAUNCHER_PEM)
        self.launcher_pub = self.path(LAUNCHER_PUB)
        if _flag(path, "ssl-enabled", options.get("ssl-enabled", "0")):
            raise ConfigError("%s: ssl-enabled=1 is not modelled by the emulator; terminate TLS at the load "
                              "balancer or remove the option" % path)
        key_file = options.get("secure-cookie-key-file", "")
        self.secure_cookie_key_file = key_file or self.path(DEFAULT_SECURE_COOKIE_KEY)
        self.lb_switch = None
        if "load-balancing-enabled" in options:
            self.lb_switch = _flag(path, "load-balancing-enabled", options["load-balancing-enabled"])
        database_conf = options.get("database-config-file", "")
        self.database_conf_path = database_conf or self.path("database.conf")

    def _read_database(self):
        path = self.database_conf_path
        options = read_key_values(path, DATABASE_OPTIONS)[0]
        provider = options.get("provider", "sqlite").lower()
        if provider not in ("sqlite", "postgresql"):
            raise ConfigError("%s: provider must be sqlite or postgresql, found %r" % (path, options["provider"]))
        self.db_provider = provider
        self.db_options = options
        self.sqlite_dir = options.get("directory", DEFAULT_SQLITE_DIR)
        if "port" in options:
            _integer(path, "port", options["port"], 1)
        if "connection-timeout-seconds" in options:
            _integer(path, "connection-timeout-seconds", options["connection-timeout-seconds"], 1)
        if provider == "postgresql" and not options.get("connection-uri"):
            missing = [key for key in ("host", "database", "username") if not options.get(key)]
            if missing:
                raise ConfigError("%s: provider=postgresql needs %s (or connection-uri)" % (
                    path, ", ".join(missing)))

    def _read_load_balancer(self):
        path = self.path("load-balancer")
        self.lb_path = path
        present = os.path.exists(path)
        if self.lb_switch is None:
            self.lb_enabled = present
            if present:
                self.warnings.append(
                    "load balancing was enabled by the presence of %s; this trigger is deprecated: set "
                    "load-balancing-enabled=1 in %s" % (path, self.rserver_path))
        else:
            self.lb_enabled = self.lb_switch
        options, sections = read_key_values(path, LOAD_BALANCER_OPTIONS, allow_sections=True)
        if sections:
            self.warnings.append("%s uses the old [config]/[nodes] layout; [nodes] is ignored: set "
                                 "www-host-name on each node instead" % path)
        self.lb = options
        self.www_host_name = options.get("www-host-name", "")
        self.balancer = options.get("balancer", "sessions")
        if self.balancer not in BALANCERS:
            raise ConfigError("%s: balancer must be one of %s, found %r" % (
                path, ", ".join(BALANCERS), self.balancer))
        self.diagnostics = options.get("diagnostics", "")
        if self.diagnostics and self.diagnostics not in DIAGNOSTICS:
            raise ConfigError("%s: diagnostics must be tmp or stderr, found %r" % (path, self.diagnostics))
        self.lb_timeout = _integer(path, "timeout", options.get("timeout", "10"), 0)
        self.verify_ssl_certs = _flag(path, "verify-ssl-certs", options.get("verify-ssl-certs", "1"))

    def _read_file_locks(self):
        path = self.path("file-locks")
        options = read_key_values(path, FILE_LOCKS_OPTIONS)[0]
        self.lock_type = options.get("lock-type", "linkbased")
        if self.lock_type not in LOCK_TYPES:
            raise ConfigError("%s: lock-type must be linkbased or advisory, found %r" % (path, self.lock_type))
        self.lock_refresh_rate = _integer(path, "refresh-rate", options.get("refresh-rate", "20"), 1)
        self.lock_timeout_interval = _integer(path, "timeout-interval", options.get("timeout-interval", "30"), 1)
        self.lock_logging = _flag(path, "enable-logging", options.get("enable-logging", "0"))
        self.lock_log_file = options.get("log-file", "")
        if self.lock_log_file and not os.path.isabs(self.lock_log_file):
            raise ConfigError("%s: log-file must be an absolute path, found %r" % (path, self.lock_log_file))

    def _check_cluster_requirements(self):
        if not self.lb_enabled:
            return
        if self.db_provider != "postgresql":
            raise ConfigError("load balancing requires a PostgreSQL database but %s selects %s: set "
                              "provider=postgresql (migrate the SQLite data first)" % (
                                  self.database_conf_path, self.db_provider))
        if not self.shared_storage:
            raise ConfigError("load balancing requires server-shared-storage-path in %s (a directory on storage "
                              "shared by every node)" % self.rserver_path)

    def protocol(self):
        # The emulator serves plain HTTP only (ssl-enabled is refused above).
        return "http"


def read_secure_cookie_key(path):
    """Return (status, key). status is None when usable, else the node status the docs name for the problem.

    A key shorter than 128 bits raises ConfigError: rserver does not start at all then.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return "Missing secure cookie key", None
    if stat.S_IMODE(info.st_mode) != 0o600:
        return "Invalid permissions on secure cookie key", None
    with open(path, encoding="utf-8", errors="replace") as handle:
        key = handle.read().strip()
    if len(key.encode()) < MIN_KEY_BYTES:
        raise ConfigError("%s: the secure cookie key is %d bytes; at least %d bytes (128 bits) are required: "
                          "generate one with `uuid` and copy it to every node" % (
                              path, len(key.encode()), MIN_KEY_BYTES))
    return None, key


def read_launcher_keys(config, user):
    """The launcher key pair (launcher.pem, launcher.pub) as bytes, read as ``user`` (the server-user rserver
    runs as). Missing or unreadable files stop the server with the fix; nodes compare the pair when they talk."""
    pair = []
    for path in (config.launcher_pem, config.launcher_pub):
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            raise ConfigError("%s not found: launcher sessions are enabled (launcher-sessions-enabled defaults to 1) "
                              "and need the launcher key pair; copy launcher.pem and launcher.pub from another node, "
                              "or set launcher-sessions-enabled=0" % path) from None
        except PermissionError:
            raise ConfigError("cannot read %s as %s (server-user): permission denied; the launcher key pair must "
                              "be readable by the server user (chown %s %s)" % (path, user, user, path)) from None
        if not data.strip():
            raise ConfigError("%s is empty: copy the launcher key pair from another node" % path)
        pair.append(data)
    return tuple(pair)
