"""Node registration: every daemon records itself in the ``nodes`` table of the shared database.

Columns: ``id`` (small integer, assigned in registration order, never reused), ``hostname`` (unique), ``version``,
``mode`` (what the node last reported: online, offline, migrating, ...), ``requested_mode`` (what an operator asked
for through the database, or NULL), ``status`` (free text for products that have one), ``address``, ``port``,
``started_at``, ``last_seen`` (epoch seconds, refreshed by ``heartbeat``), ``extra`` (JSON text for
product-specific fields).
"""

import json
import time

DDL = ("CREATE TABLE IF NOT EXISTS nodes ("
       "id INTEGER NOT NULL, hostname TEXT PRIMARY KEY, version TEXT NOT NULL, mode TEXT NOT NULL, "
       "requested_mode TEXT, status TEXT, address TEXT, port INTEGER, started_at DOUBLE PRECISION, "
       "last_seen DOUBLE PRECISION, "
       "extra TEXT)")

FIELDS = ("id", "hostname", "version", "mode", "requested_mode", "status", "address", "port", "started_at",
          "last_seen", "extra")


def ensure_table(db):
    db.create_tables([DDL])


def _row_to_dict(row):
    node = dict(zip(FIELDS, row))
    node["extra"] = json.loads(node["extra"]) if node["extra"] else {}
    return node


def list_nodes(db, order="id"):
    ensure_table(db)
    if order not in FIELDS:
        raise ValueError("cannot order nodes by %r" % order)
    rows = db.query("SELECT %s FROM nodes ORDER BY %s, hostname" % (", ".join(FIELDS), order))
    return [_row_to_dict(row) for row in rows]


def get(db, hostname):
    ensure_table(db)
    row = db.query_one("SELECT %s FROM nodes WHERE hostname = ?" % ", ".join(FIELDS), (hostname,))
    return _row_to_dict(row) if row else None


def register(db, hostname, version, mode, status=None, address=None, port=None, extra=None):
    """Insert or refresh this node's row; keeps its id and requested_mode. Returns the row as a dict."""
    ensure_table(db)
    now = time.time()
    with db.transaction():
        existing = get(db, hostname)
        if existing is None:
            next_id = (db.query_one("SELECT COALESCE(MAX(id), 0) + 1 FROM nodes") or (1,))[0]
            db.execute("INSERT INTO nodes (id, hostname, version, mode, status, address, port, started_at, "
                       "last_seen, extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (next_id, hostname, version, mode, status, address, port, now, now,
                        json.dumps(extra or {})))
        else:
            db.execute("UPDATE nodes SET version = ?, mode = ?, status = ?, address = ?, port = ?, "
                       "started_at = ?, last_seen = ?, extra = ? WHERE hostname = ?",
                       (version, mode, status, address, port, now, now, json.dumps(extra or {}), hostname))
    return get(db, hostname)


def heartbeat(db, hostname, mode=None, status=None, extra=None):
    """Refresh last_seen, and mode/status/extra when given."""
    sets, params = ["last_seen = ?"], [time.time()]
    for column, value in (("mode", mode), ("status", status)):
        if value is not None:
            sets.append("%s = ?" % column)
            params.append(value)
    if extra is not None:
        sets.append("extra = ?")
        params.append(json.dumps(extra))
    params.append(hostname)
    return db.execute("UPDATE nodes SET %s WHERE hostname = ?" % ", ".join(sets), params)


# PostgreSQL channel on which request_mode wakes the daemons (they poll as well: SQLite has no notifications).
MODE_CHANNEL = "positemu_requested_mode"


def request_mode(db, hostnames, mode):
    """Record the operator's wish; the daemons apply it when notified (PostgreSQL) or at their next poll."""
    with db.transaction():
        for hostname in hostnames:
            db.execute("UPDATE nodes SET requested_mode = ? WHERE hostname = ?", (mode, hostname))
        db.notify(MODE_CHANNEL)


def delete(db, hostname):
    return db.execute("DELETE FROM nodes WHERE hostname = ?", (hostname,))
