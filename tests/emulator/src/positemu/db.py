"""One small database API over SQLite (a file path) or PostgreSQL (a postgres:// URL).

    db = connect("postgres://user:pw@host:5432/name?sslmode=disable")   # or connect("/var/lib/x/db/x.sqlite")
    db.execute("INSERT INTO t (a) VALUES (?)", (1,))     # -> rowcount; placeholders are always ?
    rows = db.query("SELECT a FROM t WHERE a > ?", (0,)) # -> list of tuples
    row = db.query_one("SELECT count(*) FROM t")         # -> tuple or None
    with db.transaction():                               # BEGIN IMMEDIATE on SQLite, BEGIN on PostgreSQL
        ...
    db.close()

SQL is written in the common subset (TEXT, INTEGER, REAL, ``INSERT ... ON CONFLICT``). The connection is shared by
the threads of a daemon behind a lock, which is plenty for an emulator. Errors surface as ``DatabaseError`` with
the provider and a readable message.
"""

import os
import sqlite3
import threading
import time
from contextlib import contextmanager

try:
    import psycopg
except ImportError:  # only PostgreSQL needs it; SQLite-only nodes work without it
    psycopg = None


# Key of the PostgreSQL advisory lock that serialises table and schema creation between nodes.
DDL_LOCK_KEY = 4242


class DatabaseError(Exception):
    pass


def is_postgres_url(url):
    return str(url).startswith(("postgres://", "postgresql://"))


def redact(url):
    """A URL with its password hidden, for log lines."""
    import re
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1****@", str(url))


def connect(url_or_path, connect_timeout=10):
    if is_postgres_url(url_or_path):
        return Database("postgres", url_or_path, connect_timeout)
    return Database("sqlite", url_or_path, connect_timeout)


class Database:
    def __init__(self, provider, target, connect_timeout=10):
        self.provider = provider
        self.target = str(target)
        self._lock = threading.RLock()
        self._in_transaction = False
        self._created = set()
        if provider == "postgres":
            if psycopg is None:
                raise DatabaseError("PostgreSQL needs the python3-psycopg package")
            try:
                self._conn = psycopg.connect(self.target, autocommit=True, connect_timeout=connect_timeout)
            except psycopg.Error as error:
                raise DatabaseError("cannot connect to PostgreSQL at %s: %s"
                                    % (redact(self.target), str(error).strip())) from None
        else:
            directory = os.path.dirname(os.path.abspath(self.target))
            if not os.path.isdir(directory):
                raise DatabaseError("SQLite directory %s does not exist" % directory)
            try:
                self._conn = sqlite3.connect(self.target, timeout=30, isolation_level=None,
                                             check_same_thread=False)
                self._conn.execute("PRAGMA busy_timeout = 30000")
            except sqlite3.Error as error:
                raise DatabaseError("cannot open SQLite database %s: %s" % (self.target, error)) from None

    def describe(self):
        return "PostgreSQL %s" % redact(self.target) if self.provider == "postgres" else "SQLite %s" % self.target

    def _sql(self, sql):
        if self.provider == "postgres":
            return sql.replace("%", "%%").replace("?", "%s")
        return sql

    def _run(self, sql, params):
        # A PostgreSQL connection broken by a server restart is replaced before the next statement (outside a
        # transaction), as the products' connection pools do; the statement that met the break still fails.
        if (self.provider == "postgres" and not self._in_transaction
                and (getattr(self._conn, "broken", False) or self._conn.closed)):
            try:
                self._conn = psycopg.connect(self.target, autocommit=True, connect_timeout=10)
            except psycopg.Error as error:
                raise DatabaseError("cannot reconnect to PostgreSQL at %s: %s"
                                    % (redact(self.target), str(error).strip())) from None
        try:
            cursor = self._conn.execute(self._sql(sql), tuple(params))
        except (sqlite3.Error, *(() if psycopg is None else (psycopg.Error,))) as error:
            raise DatabaseError("%s: %s (while running: %s)" % (self.provider, str(error).strip(),
                                                                 " ".join(sql.split()))) from None
        return cursor

    def execute(self, sql, params=()):
        with self._lock:
            cursor = self._run(sql, params)
            return cursor.rowcount

    def query(self, sql, params=()):
        with self._lock:
            cursor = self._run(sql, params)
            return [tuple(row) for row in cursor.fetchall()]

    def query_one(self, sql, params=()):
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def table_exists(self, name):
        if self.provider == "postgres":
            row = self.query_one("SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() "
                                 "AND table_name = ?", (name,))
        else:
            row = self.query_one("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
        return row is not None

    def tables(self):
        if self.provider == "postgres":
            rows = self.query("SELECT table_name FROM information_schema.tables "
                              "WHERE table_schema = current_schema() ORDER BY table_name")
        else:
            rows = self.query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        return [row[0] for row in rows]

    def columns(self, table):
        if self.provider == "postgres":
            rows = self.query("SELECT column_name FROM information_schema.columns WHERE table_schema = "
                              "current_schema() AND table_name = ? ORDER BY ordinal_position", (table,))
            return [row[0] for row in rows]
        return [row[1] for row in self.query("PRAGMA table_info(%s)" % table)]

    @contextmanager
    def transaction(self):
        """Serialise a read-modify-write: other threads wait on the lock, other nodes on the database."""
        with self._lock:
            if self._in_transaction:
                yield self
                return
            self._in_transaction = True
            try:
                if self.provider == "postgres":
                    try:
                        with self._conn.transaction():
                            yield self
                    except psycopg.Error as error:
                        raise DatabaseError("postgres: %s" % str(error).strip()) from None
                else:
                    self._run("BEGIN IMMEDIATE", ())
                    try:
                        yield self
                    except BaseException:
                        self._conn.execute("ROLLBACK")
                        raise
                    self._run("COMMIT", ())
            finally:
                self._in_transaction = False

    def lock_between_nodes(self, key):
        """Inside a transaction: wait until no other node holds ``key`` (PostgreSQL advisory lock, released at the
        transaction's end). SQLite needs none: BEGIN IMMEDIATE already serialises writers."""
        if self.provider == "postgres":
            self.execute("SELECT pg_advisory_xact_lock(?)", (key,))

    def create_tables(self, statements):
        """Run CREATE TABLE IF NOT EXISTS statements, serialised between nodes on PostgreSQL.

        Two sessions creating the same table at once make one fail on a unique index of the catalog (IF NOT
        EXISTS only sees committed tables), so nodes started together on an empty database hold an advisory lock.
        """
        # Callers ensure their tables on every poll: once created and committed here, a statement is not run again.
        missing = [statement for statement in statements if statement not in self._created]
        if not missing:
            return
        outermost = not self._in_transaction  # an enclosing transaction may still roll the tables back
        with self.transaction():
            self.lock_between_nodes(DDL_LOCK_KEY)
            for statement in missing:
                self.execute(statement)
        if outermost:
            self._created.update(missing)

    def notify(self, channel):
        """PostgreSQL: wake the daemons listening on ``channel`` (delivered when the transaction commits). SQLite
        has no notifications: its daemons only poll."""
        if self.provider == "postgres":
            self.execute("SELECT pg_notify(?, '')", (channel,))

    def close(self):
        with self._lock:
            try:
                self._conn.close()
            except Exception:  # closing a broken connection must not hide the real error
                pass


class Listener:
    """A PostgreSQL connection that LISTENs on one channel; ``wait(timeout)`` returns True when a notification
    came, False when the timeout passed. A broken connection is replaced at the next wait; until then (the server
    down) waits just sleep, so the caller's poll still runs.

        listener = Listener(url, nodes.MODE_CHANNEL)
        if listener.wait(0.5): ...
    """

    def __init__(self, target, channel):
        self.target = str(target)
        self.channel = channel
        self._conn = None

    def _connect(self):
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return True
        try:
            self._conn = psycopg.connect(self.target, autocommit=True, connect_timeout=5)
            self._conn.execute("LISTEN %s" % self.channel)
        except psycopg.Error:
            self._conn = None
            return False
        return True

    def wait(self, timeout):
        if not self._connect():
            time.sleep(timeout)
            return False
        try:
            for _notification in self._conn.notifies(timeout=timeout, stop_after=1):
                return True
        except psycopg.Error:
            self.close()
        return False

    def close(self):
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # closing a broken connection must not hide the real error
                pass
            self._conn = None
