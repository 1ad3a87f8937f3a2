"""Workbench's tables in its internal database: the cluster record and the node table.

The connection, schema versions and migrations come from the shared core (``positemu.db``, ``positemu.schema``).
Workbench keeps its own ``lb_node`` table rather than the core's ``nodes`` table because its semantics differ:
a node is an address (host, port), its status is one of the documented database statuses, and its last-seen time
only moves while it is Online. Schema 11 is the 2023.09 layout; schema 12 (2023.12) adds ``lb_event``, where the
newer version records cluster events. Timestamps are DOUBLE PRECISION: PostgreSQL's REAL is a 4-byte float,
about two minutes of precision at today's epoch times.
"""

import hashlib
import os
import time
import urllib.parse

from positemu import db as dbmod

SQLITE_FILE = "rstudio.sqlite"
DatabaseError = dbmod.DatabaseError

SCHEMA_11 = (
    "CREATE TABLE IF NOT EXISTS lb_cluster (id INTEGER PRIMARY KEY, key_hash TEXT NOT NULL, "
    "protocol TEXT NOT NULL, updated DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS lb_node (id INTEGER PRIMARY KEY, host TEXT NOT NULL, ipv4 TEXT NOT NULL, "
    "port INTEGER NOT NULL, status TEXT NOT NULL, health TEXT, last_seen DOUBLE PRECISION, "
    "version TEXT NOT NULL, UNIQUE (host, port))",
    # The highest node ID ever handed out, so a deleted node's ID is never given to another node.
    "CREATE TABLE IF NOT EXISTS lb_node_seq (id INTEGER PRIMARY KEY, last INTEGER NOT NULL)",
)
SCHEMA_12 = SCHEMA_11 + (
    "CREATE TABLE IF NOT EXISTS lb_event (at DOUBLE PRECISION NOT NULL, node_id INTEGER NOT NULL, "
    "event TEXT NOT NULL)",
)
DDL = {11: SCHEMA_11, 12: SCHEMA_12}
NODE_FIELDS = ("id", "host", "ipv4", "port", "status", "health", "last_seen", "version")
HEALTHY, UNHEALTHY = "Healthy", "Unhealthy"


def key_hash(key):
    return hashlib.sha256(key.encode()).hexdigest()


def open_database(config):
    """Connect to the database database.conf names (SQLite file or PostgreSQL)."""
    options = config.db_options
    timeout = int(options.get("connection-timeout-seconds", "10"))
    if config.db_provider == "sqlite":
        try:
            os.makedirs(config.sqlite_dir, exist_ok=True)
        except OSError as error:
            raise DatabaseError("cannot create the SQLite directory %s: %s" % (config.sqlite_dir, error))
        return dbmod.connect(os.path.join(config.sqlite_dir, SQLITE_FILE), connect_timeout=timeout)
    url = options.get("connection-uri")
    if not url:
        url = "postgres://%s:%s@%s:%s/%s?sslmode=disable" % (
            urllib.parse.quote(options["username"], safe=""), urllib.parse.quote(options.get("password", ""), safe=""),
            options["host"], options.get("port", "5432"), urllib.parse.quote(options["database"], safe=""))
    return dbmod.connect(url, connect_timeout=timeout)


def cluster(db):
    return db.query_one("SELECT key_hash, protocol FROM lb_cluster WHERE id = 1")


# Key of the PostgreSQL advisory lock that serialises defining the cluster: nodes starting together on a cluster
# with no Online node all define it, and without the lock the second INSERT failed on the primary key (a node of
# site.yml died so in the lab).
CLUSTER_LOCK_KEY = 4243


def set_cluster(db, hashed_key, protocol):
    with db.transaction():
        db.lock_between_nodes(CLUSTER_LOCK_KEY)
        db.execute("DELETE FROM lb_cluster")
        db.execute("INSERT INTO lb_cluster (id, key_hash, protocol, updated) VALUES (1, ?, ?, ?)",
                   (hashed_key, protocol, time.time()))


def reset_cluster(db):
    return db.execute("DELETE FROM lb_cluster")


def nodes(db):
    rows = db.query("SELECT %s FROM lb_node ORDER BY id" % ", ".join(NODE_FIELDS))
    return [dict(zip(NODE_FIELDS, row)) for row in rows]


def node(db, node_id):
    row = db.query_one("SELECT %s FROM lb_node WHERE id = ?" % ", ".join(NODE_FIELDS), (node_id,))
    return dict(zip(NODE_FIELDS, row)) if row else None


def register_node(db, host, port, version):
    """Find this node's row by its address or add one (IDs are never reused); mark it Starting. Returns the ID."""
    with db.transaction():
        row = db.query_one("SELECT id FROM lb_node WHERE host = ? AND port = ?", (host, port))
        if row:
            db.execute("UPDATE lb_node SET status = 'Starting', version = ? WHERE id = ?", (version, row[0]))
            return row[0]
        db.execute("INSERT INTO lb_node_seq (id, last) VALUES (1, 0) ON CONFLICT (id) DO NOTHING")
        db.execute("UPDATE lb_node_seq SET last = last + 1 WHERE id = 1")
        node_id = db.query_one("SELECT last FROM lb_node_seq WHERE id = 1")[0]
        db.execute("INSERT INTO lb_node (id, host, ipv4, port, status, version) VALUES (?, ?, '', ?, 'Starting', ?)",
                   (node_id, host, port, version))
        return node_id


def set_node(db, node_id, status, ipv4=None, seen=False, health=None):
    sets, params = ["status = ?"], [status]
    if ipv4 is not None:
        sets.append("ipv4 = ?")
        params.append(ipv4)
    if health is not None:
        sets.append("health = ?")
        params.append(health)
    if seen:
        sets.append("last_seen = ?")
        params.append(time.time())
    db.execute("UPDATE lb_node SET %s WHERE id = ?" % ", ".join(sets), tuple(params) + (node_id,))


def check_in(db, node_id, healthy=True):
    """Record this node's health; an Online and healthy node also refreshes last_seen (the docs: "When a node is
    Online and healthy, it updates the last seen time"). Returns False when the row is gone (it was deleted)."""
    row = db.query_one("SELECT status FROM lb_node WHERE id = ?", (node_id,))
    if row is None:
        return False
    if healthy and row[0] == "Online":
        db.execute("UPDATE lb_node SET health = ?, last_seen = ? WHERE id = ?", (HEALTHY, time.time(), node_id))
    else:
        db.execute("UPDATE lb_node SET health = ? WHERE id = ?", (HEALTHY if healthy else UNHEALTHY, node_id))
    return True


def delete_node(db, node_id):
    return db.execute("DELETE FROM lb_node WHERE id = ?", (node_id,))


def record_event(db, node_id, event):
    """Schema 12 only: remember cluster events (the 2023.12 binary writes them)."""
    if db.table_exists("lb_event"):
        db.execute("INSERT INTO lb_event (at, node_id, event) VALUES (?, ?, ?)", (time.time(), node_id, event))
