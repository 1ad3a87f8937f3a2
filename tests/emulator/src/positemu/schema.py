"""Schema version logic shared by the products.

The database holds one row in ``schema_version`` (version, updated_at, updated_by). A binary knows the schema it
was built for:
- empty database: the binary creates its tables and records its version (fresh install, no delay);
- older schema: the binary migrates (takes ``POSITEMU_MIGRATION_SECONDS``) and records its version;
- newer schema: ``SchemaTooNew`` — the binary refuses to start;
- while running, ``SchemaWatcher`` re-reads the version every ``POSITEMU_SCHEMA_CHECK_SECONDS`` (< 30 s) and calls
  back when a newer schema appeared, so the node shuts down "within 30 seconds" as the vendors document.
"""

import threading
import time

from positemu import db as dbmod
from positemu import runtime
from positemu.db import DDL_LOCK_KEY

CREATE_TABLE = ("CREATE TABLE IF NOT EXISTS schema_version ("
                "id INTEGER PRIMARY KEY, version INTEGER NOT NULL, updated_at DOUBLE PRECISION NOT NULL, "
                "updated_by TEXT)")


class SchemaTooNew(Exception):
    def __init__(self, database_version, binary_version):
        self.database_version = database_version
        self.binary_version = binary_version
        super().__init__("the database schema version %d is newer than this binary supports (%d): upgrade this "
                         "node to the version the other nodes run" % (database_version, binary_version))


def read_version(db):
    if not db.table_exists("schema_version"):
        return None
    row = db.query_one("SELECT version FROM schema_version WHERE id = 1")
    return row[0] if row else None


def write_version(db, version, by):
    db.execute(CREATE_TABLE)
    db.execute("INSERT INTO schema_version (id, version, updated_at, updated_by) VALUES (1, ?, ?, ?) "
               "ON CONFLICT (id) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at, "
               "updated_by = excluded.updated_by", (version, time.time(), by))


def copy_database(source, target, ddl, tables, out):
    """The products' ``migrate`` tools: create the schema in ``target`` and copy every table, in one transaction."""
    with target.transaction():
        target.execute(CREATE_TABLE)
        target.create_tables(ddl)
        for table in tables:
            if not source.table_exists(table):
                continue
            columns = source.columns(table)
            rows = source.query("SELECT %s FROM %s" % (", ".join(columns), table))
            placeholders = ", ".join("?" for _ in columns)
            for row in rows:
                target.execute("INSERT INTO %s (%s) VALUES (%s)" % (table, ", ".join(columns), placeholders), row)
            out.write("  %s: %d row(s)\n" % (table, len(rows)))


def open_and_serve(daemon, open_database):
    """The start-up both product daemons share: open the configured database, check its schema, listen on HTTP.

    Sets ``daemon.db`` and ``daemon.server`` (started) and returns the schema state, or logs why it cannot start
    and returns None.
    """
    settings = daemon.settings
    try:
        daemon.db = daemon_db = open_database(settings)
        state = check(daemon_db, daemon.info["schema"])
    except dbmod.DatabaseError as error:
        daemon.log.error("Error: database: %s", error)
        return None
    except SchemaTooNew as error:
        daemon.log.error("Error: %s. Refusing to start.", error)
        return None
    daemon.log.info("Using %s (schema %s)", daemon_db.describe(), state)
    try:
        daemon.server = daemon._build_server()
    except OSError as error:
        daemon.log.error("Error: cannot listen on %s: %s", settings.listen, error.strerror)
        return None
    daemon.server.start()
    return state


def check(db, binary_version):
    """'empty', 'current', 'older' (binary must migrate) or raise SchemaTooNew."""
    current = read_version(db)
    if current is None:
        return "empty"
    if current > binary_version:
        raise SchemaTooNew(current, binary_version)
    return "current" if current == binary_version else "older"


def ensure(db, binary_version, ddl, by, log, on_migrating=None):
    """Bring the database to ``binary_version``: create, migrate or accept it; raise SchemaTooNew when newer.

    ``on_migrating(True/False)`` brackets a migration so the caller can answer 503 meanwhile. Returns what was
    done: 'created', 'migrated' or 'current'.
    """
    state = check(db, binary_version)
    if state == "empty":
        # Nodes installed together start together: without a lock, concurrent CREATE TABLE on one PostgreSQL
        # database fails in all but one of them. Real servers hold a migration lock; so does this one.
        with db.transaction():
            db.lock_between_nodes(DDL_LOCK_KEY)
            if read_version(db) is None:
                db.create_tables(ddl)
                write_version(db, binary_version, by)
                log.info("Created the database schema version %d in %s", binary_version, db.describe())
                return "created"
        state = check(db, binary_version)
    if state == "current":
        db.create_tables(ddl)
        return "current"
    old = read_version(db)
    duration = runtime.seconds("POSITEMU_MIGRATION_SECONDS")
    log.info("Migrating the database schema from version %d to %d (%s)", old, binary_version, db.describe())
    if on_migrating:
        on_migrating(True)
    try:
        time.sleep(duration)
        db.create_tables(ddl)
        # Another node may have finished the same migration meanwhile; never move the version backwards.
        with db.transaction():
            again = read_version(db)
            if again is not None and again > binary_version:
                raise SchemaTooNew(again, binary_version)
            write_version(db, binary_version, by)
    finally:
        if on_migrating:
            on_migrating(False)
    log.info("Database schema migration to version %d finished", binary_version)
    return "migrated"


class SchemaWatcher(threading.Thread):
    """Re-reads the schema version periodically; calls ``on_newer(SchemaTooNew)`` once when it is newer."""

    def __init__(self, db, binary_version, on_newer, log, stop_event):
        super().__init__(name="schema-watcher", daemon=True)
        self.db = db
        self.binary_version = binary_version
        self.on_newer = on_newer
        self.log = log
        self.stop_event = stop_event
        self.interval = runtime.seconds("POSITEMU_SCHEMA_CHECK_SECONDS")

    def run(self):
        while not self.stop_event.wait(self.interval):
            try:
                version = read_version(self.db)
            except Exception as error:  # a database hiccup is logged, the next round tries again
                self.log.warning("Schema check failed: %s", error)
                continue
            if version is not None and version > self.binary_version:
                self.on_newer(SchemaTooNew(version, self.binary_version))
                return
