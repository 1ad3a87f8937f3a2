# -*- coding: utf-8 -*-
# Copyright: positops.ha maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!
"""One writer per target: a session-level advisory lock on the target schema, and staging schemas private to a run.

A run takes the lock before it touches anything and holds it, on its main connection, until it ends; when that
process dies, PostgreSQL drops the connection and the lock with it. A second run polls until ``lock_timeout``
and then fails naming the holder. A run's staging schema is named after the target schema (the same 16 hex digits
as the lock key) and the run's own id, so a run can tell a staging schema whose run is dead (nobody holds that
key) from one in use, and drop only the former.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import re

from ansible_collections.positops.ha.plugins.module_utils._db_migrate.common import MigrationError, psycopg, sql

LOCK_NAMESPACE = "positops.ha.db_migrate"
STAGING_PREFIX = "db_migrate_staging_"
STAGING_PATTERN = re.compile(r"^db_migrate_staging_([0-9a-f]{16})_[0-9a-f]+$")
POLL_SECONDS = 1.0


def lock_key(schema):
    """The advisory lock key of a target schema (advisory locks are per database already)."""
    digest = hashlib.sha256((LOCK_NAMESPACE + ":" + schema).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _tag(key):
    return "%016x" % (key % (1 << 64))


def staging_schema_name(schema, run_id):
    """The staging schema of one run for a target schema (44 characters with an 8-digit run id)."""
    return STAGING_PREFIX + _tag(lock_key(schema)) + "_" + run_id


def legacy_staging_name(schema):
    """The one staging schema name earlier versions used for every run into a schema."""
    return STAGING_PREFIX + hashlib.sha256(schema.encode("utf-8")).hexdigest()[:12]


def staging_lock_key(name):
    """The lock key of the target a staging schema belongs to, or None for a name not made by this version."""
    match = STAGING_PATTERN.match(name)
    if not match:
        return None
    key = int(match.group(1), 16)
    return key - (1 << 64) if key >= 1 << 63 else key


def holder(cursor, key):
    """Who holds an advisory lock key in this database: a dict, or None when nobody does."""
    cursor.execute(
        "SELECT l.pid, host(a.client_addr), a.client_port, a.backend_start, a.application_name, a.usename "
        "FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND l.classid::bigint = %s AND l.objid::bigint = %s",
        ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF))
    row = cursor.fetchone()
    if row is None:
        return None
    pid, address, port, since, application_name, user = row
    return {"pid": pid, "client_addr": address, "client_port": port,
            "since": since.isoformat(" ", "seconds") if since is not None else None,
            "application_name": application_name, "user": user}


def describe_holder(found):
    if found is None:
        return "a session that has just ended"
    if found["client_addr"]:
        client = "client %s port %s" % (found["client_addr"], found["client_port"])
    elif found["since"]:
        client = "a local socket client"
    else:
        client = "client not visible to this user"
    return "backend pid %s, %s, connected since %s, application_name %r, user %s" % (
        found["pid"], client, found["since"] or "?", found["application_name"] or "", found["user"] or "?")


def acquire(connection, schema, timeout, clock, sleep):
    """Take the target schema's lock, polling until ``timeout`` seconds have passed; return the seconds waited."""
    key = lock_key(schema)
    started = clock()
    deadline = started + timeout
    cursor = connection.cursor()
    while True:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", (key,))
        taken = cursor.fetchone()[0]
        connection.rollback()  # a session-level lock outlives the transaction; stay idle, not idle in transaction
        if taken:
            return clock() - started
        now = clock()
        if now >= deadline:
            found = holder(cursor, key)
            connection.rollback()
            terminate = (" if that session is stuck, end it with SELECT pg_terminate_backend(%s) and run again"
                         % found["pid"]) if found else " run again"
            raise MigrationError(
                "another db_migrate run is writing schema %s of dest (%s); waited %d s (lock_timeout). Fix: wait "
                "until that run ends (a run goes on on its node when the controller's connection drops) and run "
                "again, or give a longer lock_timeout;%s" % (schema, describe_holder(found), timeout, terminate))
        sleep(min(POLL_SECONDS, deadline - now))


def drop_dead_staging(session, connection, schema):
    """Drop the staging schemas of runs that died before their swap; return their names.

    Called with the target's lock held: every staging schema of this target is then from a dead run. A staging
    schema of another target is dropped only when nobody holds that target's lock.
    """
    own_key = lock_key(schema)
    cursor = connection.cursor()
    cursor.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s ORDER BY nspname",
                   (STAGING_PREFIX.replace("_", "\\_") + "%",))
    dropped = []
    for (name,) in cursor.fetchall():
        key = staging_lock_key(name)
        if key is None and name != legacy_staging_name(schema):
            continue  # not made by this version for another target: its run cannot be judged
        if key is not None and key != own_key and holder(cursor, key) is not None:
            continue  # a live run into another schema
        cursor.execute("SAVEPOINT db_migrate_drop")
        try:
            session.execute(cursor, sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))
        except psycopg.Error as error:
            cursor.execute("ROLLBACK TO SAVEPOINT db_migrate_drop")
            session.warnings.append("staging schema %s, left by a run that ended before its swap, could not be "
                                    "dropped (%s); drop it as its owner" % (name, error.diag.message_primary or error))
            continue
        cursor.execute("RELEASE SAVEPOINT db_migrate_drop")
        dropped.append(name)
    connection.commit()
    return dropped
