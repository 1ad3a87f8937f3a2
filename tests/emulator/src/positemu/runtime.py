"""Process plumbing shared by every emulated daemon and CLI: logging, tuning variables, signals, service lock.

Logging goes to stderr; under systemd (``JOURNAL_STREAM`` set) the journal adds the timestamp, so lines carry only
the level and the message, like the real products' journal output.
"""

import fcntl
import logging
import os
import signal
import sys
import threading

# Tuning variables (emulator only; see docs/CONTRACTS.md). Defaults are the documented product values.
DEFAULTS = {
    "POSITEMU_MIGRATION_SECONDS": 5.0,
    "POSITEMU_SCHEMA_CHECK_SECONDS": 10.0,
    "POSITEMU_POLL_SECONDS": 5.0,
    "POSITEMU_HEARTBEAT_SECONDS": 5.0,
    "POSITEMU_JOB_ABANDON_SECONDS": 30.0,
    "POSITEMU_DRAIN_SECONDS": 60.0,
    "RSTUDIO_LB_CHECKIN_SECONDS": 300.0,
    "RSTUDIO_LB_MISSED_CHECKIN_SECONDS": 600.0,
}
SCHEMA_CHECK_LIMIT = 29.0  # the products promise to notice a newer schema "within 30 seconds"


def seconds(name):
    """A tuning variable in seconds (float). A bad value stops the process with a message naming it."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return DEFAULTS[name]
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit("%s must be a number of seconds, got %r" % (name, raw)) from None
    if value < 0:
        raise SystemExit("%s must not be negative, got %r" % (name, raw))
    if name == "POSITEMU_SCHEMA_CHECK_SECONDS":
        value = min(value, SCHEMA_CHECK_LIMIT)
    return value


def setup_logging(name, level=logging.INFO):
    logger = logging.getLogger(name)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        if os.environ.get("JOURNAL_STREAM"):
            handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        else:
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
    return logger


class StopSignal:
    """An Event set by SIGTERM/SIGINT, so the main loop shuts down cleanly (systemctl stop)."""

    def __init__(self):
        self.event = threading.Event()
        self.reason = None
        self.exit_code = 0

    def install(self):
        def handler(signum, _frame):
            self.stop("received %s" % signal.Signals(signum).name, 0)
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
        return self

    def stop(self, reason, exit_code=0):
        if not self.event.is_set():
            self.reason = reason
            self.exit_code = exit_code
            self.event.set()

    def is_set(self):
        return self.event.is_set()

    def wait(self, timeout):
        return self.event.wait(timeout)


def run_dir(service):
    """Where the service lock lives: /run/<service> (systemd RuntimeDirectory), or $POSITEMU_RUN_DIR."""
    return os.environ.get("POSITEMU_RUN_DIR") or "/run/%s" % service


class ServiceLock:
    """An exclusive lock held by the running daemon; tools that need the service stopped probe it."""

    def __init__(self, service):
        self.service = service
        self.path = os.path.join(run_dir(service), "%s.pid" % service)
        self._handle = None

    def acquire(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write("%d\n" % os.getpid())
        handle.flush()
        self._handle = handle
        return True

    def release(self):
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def held_by_other(self):
        """True when a running daemon holds the lock (the service is running on this host)."""
        if not os.path.exists(self.path):
            return False
        try:
            handle = open(self.path)
        except OSError:
            return False
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False


def build_info():
    """What this installed binary is: {"package", "version", "schema"} from <LIB_DIR>/positemu_build.json."""
    import json
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "positemu_build.json")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise SystemExit("%s is missing: run the emulator from a package built by tests/emulator/build.sh"
                         % path) from None


def user_may_administer(group):
    """The products' admin tools run as root or as a member of the product's group."""
    import grp
    if os.geteuid() == 0:
        return True
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        return False
    return gid in os.getgroups() or gid == os.getegid()


# -- accounts ---------------------------------------------------------------------------------------------------
# The products start as root and then work as their service account (Workbench: rserver drops to server-user and
# takes root back for an instant when it must, e.g. to start a session as its user). These helpers do the same.

class AccountError(Exception):
    """The service account is missing or the process cannot become it."""


def account(name):
    """(name, uid, gid, home) of a local account, or AccountError naming the setting to fix."""
    import pwd
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise AccountError("the account %r does not exist on this host" % name) from None
    return entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir


def current_user():
    import pwd
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def drop_privileges(name):
    """Become ``name`` for normal operation, keeping root as the saved set-user-ID so that ``privileged()`` can
    take it back for an instant (as rserver does). Without root, only the current account is possible."""
    user, uid, gid, _home = account(name)
    if os.geteuid() != 0:
        if uid != os.geteuid():
            raise AccountError("only root can run as %s (this process runs as %s)" % (user, current_user()))
        return uid, gid
    if uid == 0:
        return uid, gid
    os.setgroups(os.getgrouplist(user, gid))
    os.setresgid(gid, gid, 0)
    os.setresuid(uid, uid, 0)
    return uid, gid


class privileged:
    """``with privileged():`` — root for the duration of the block when the process dropped privileges and kept
    root as its saved set-user-ID; a no-op otherwise. Process-wide (all threads), so keep the block short."""

    def __enter__(self):
        self.saved = None
        try:
            ruid, euid, suid = os.getresuid()
            rgid, egid, sgid = os.getresgid()
        except AttributeError:
            return self
        if euid != 0 and suid == 0:
            self.saved = (euid, egid)
            os.seteuid(0)
            os.setegid(0)
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            euid, egid = self.saved
            os.setegid(egid)
            os.seteuid(euid)
        return False
