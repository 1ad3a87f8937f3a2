# -*- coding: utf-8 -*-
# Copyright: positops.ha maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!
"""The PostgreSQL target: connections, what the target holds, DDL, the COPY of a slice, and sequences.

Functions take the :class:`~.session.Session` whose statements they record and the schema they work in (the run's
staging schema or the target schema), so the same code serves the run and its workers.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.positops.ha.plugins.module_utils._db_migrate.common import (
    MigrationError,
    PyFormat,
    mask,
    psycopg,
    sql,
)
from ansible_collections.positops.ha.plugins.module_utils._db_migrate.convert import COPY_TYPES, PG_TYPES
from ansible_collections.positops.ha.plugins.module_utils._db_migrate.sqlite_source import describe_row

# How verification reads a target column back into the binary type its source values were sent as, per kind and
# target type (pg_type.typname): None when the types are the same, else a cast that gives every value back exactly
# (a widening integer, varchar to text, timestamptz to timestamp in the UTC session). A target type not listed
# (jsonb, uuid, float4, numeric with a scale...) is compared in the target's type instead: the source is staged in
# a temporary table and cast the way the load casts it.
EXACT_READBACK = {
    "integer": {"int8": None, "int4": "int8", "int2": "int8"},
    "real": {"float8": None},
    "text": {"text": None, "varchar": "text"},
    "blob": {"bytea": None},
    "boolean": {"bool": None},
    "timestamp": {"timestamp": None, "timestamptz": "timestamp"},
    "timestamptz": {"timestamptz": None, "timestamp": "timestamptz"},
    "date": {"date": None},
    "numeric": {"numeric": None},
}


def connect(dest, secrets, application_name, staged_only=False):
    try:
        connection = psycopg.connect(dest, autocommit=False, application_name=application_name)
    except psycopg.Error as error:
        raise MigrationError("cannot connect to dest: %s" % mask(error, secrets))
    connection.execute("SET TIME ZONE 'UTC'")
    connection.execute("SET maintenance_work_mem = '256MB'")
    # Verification sorts a table whose text key the index cannot order in the C collation: in memory when it fits.
    connection.execute("SET work_mem = '64MB'")
    if staged_only:
        # This session commits only into the staging schema; the swap's COMMIT, synchronous, flushes the WAL
        # up to and including this work before the target changes, so not waiting here loses no guarantee.
        connection.execute("SET synchronous_commit = off")
    connection.commit()
    # COPY's set_types("bytea") would pick psycopg's Python dumper of the DB-API Binary wrapper (the last one
    # registered for that OID): make the C dumper of bytes the one for bytea (measured 12% less client CPU on
    # a table with a blob in every row).
    connection.adapters.register_dumper(bytes, connection.adapters.get_dumper(bytes, PyFormat.BINARY))
    return connection


STAGED_OPTIONS = "autovacuum_enabled = false, toast.autovacuum_enabled = false"
STAGED_OPTION_NAMES = "autovacuum_enabled, toast.autovacuum_enabled"


def qualified(schema, name):
    return sql.Identifier(schema, name)


# ---- what the target holds


def target_tables(cursor, schema):
    """Names of the tables (or partitioned tables) in a schema."""
    cursor.execute("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                   "WHERE n.nspname = %s AND c.relkind IN ('r', 'p')", (schema,))
    return set(row[0] for row in cursor.fetchall())


def target_columns(cursor, schema, name):
    """(name, typname, format_type, notnull, has a default, collatable) of each column of a target table."""
    cursor.execute(
        "SELECT a.attname, t.typname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
        "a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '', a.attcollation <> 0, a.atttypmod "
        "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_type t ON t.oid = a.atttypid "
        "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (schema, name))
    return cursor.fetchall()


def count_target_rows(cursor, schema, name):
    cursor.execute(sql.SQL("SELECT count(*) FROM {}").format(qualified(schema, name)))
    return cursor.fetchone()[0]


def has_rows(cursor, schema, name):
    cursor.execute(sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} LIMIT 1) AS probe").format(
        qualified(schema, name)))
    return cursor.fetchone()[0] > 0


class MappedColumn:
    """A source column and the target column it goes to."""

    def __init__(self, column, target_name, target_type, collatable, readback, exact):
        self.column = column
        self.target_name = target_name
        self.target_type = target_type  # format_type(), e.g. "character varying(200)"
        self.collatable = collatable
        self.readback = readback  # None or the type the target column is cast to when read back
        self.exact = exact  # read back exactly in the source's binary type (False: compare in the target's type)

    @property
    def copy_type(self):
        return COPY_TYPES[self.column.kind]


class Mapping:
    """How one source table reaches its target table."""

    def __init__(self, table, target_name, columns):
        self.table = table
        self.target_name = target_name
        self.columns = columns  # MappedColumn per source column, in source order

    @property
    def exact(self):
        """Every column reads back as the very binary values the load sends (else: compared in target types)."""
        return all(c.exact for c in self.columns)

    def by_source(self, name):
        for mapped in self.columns:
            if mapped.column.name == name:
                return mapped
        return None


def create_mapping(table):
    return Mapping(table, table.name, [MappedColumn(c, c.name, PG_TYPES[c.kind], c.kind == "text", None, True)
                                       for c in table.columns])


def existing_mapping(cursor, schema, table, target_names):
    """Match source columns to an existing target table's columns by name (exact, else case-insensitive)."""
    target_name = table.name if table.name in target_names else None
    if target_name is None:
        folded = [n for n in target_names if n.lower() == table.name.lower()]
        target_name = folded[0] if len(folded) == 1 else None
    if target_name is None:
        raise MigrationError("table %s does not exist in schema %s of dest; create it first (start the product "
                             "against PostgreSQL once) or use layout=create" % (table.name, schema))
    target = target_columns(cursor, schema, target_name)
    by_name = dict((row[0], row) for row in target)
    columns, used = [], set()
    for column in table.columns:
        row = by_name.get(column.name)
        if row is None:
            folded = [r for r in target if r[0].lower() == column.name.lower()]
            row = folded[0] if len(folded) == 1 else None
        if row is None:
            raise MigrationError("table %s: source column %s has no column of that name in %s.%s (columns: %s); "
                                 "nothing was written" % (table.name, column.name, schema, target_name,
                                                          ", ".join(r[0] for r in target)))
        used.add(row[0])
        name, typname, formatted, _notnull, _default, collatable, typmod = row
        readbacks = EXACT_READBACK[column.kind]
        # numeric(p, s) rounds what it stores: only an unconstrained numeric gives every value back.
        exact = typname in readbacks and not (typname == "numeric" and typmod != -1)
        columns.append(MappedColumn(column, name, formatted, collatable, readbacks.get(typname), exact))
    missing = [r[0] for r in target if r[0] not in used and r[3] and not r[4]]
    if missing:
        raise MigrationError("table %s: target columns %s are NOT NULL without a default and have no source "
                             "column; nothing was written" % (table.name, ", ".join(missing)))
    return Mapping(table, target_name, columns)


# ---- DDL for the create layout


def create_table(session, cursor, schema, table):
    parts = []
    for column in table.columns:
        piece = [sql.Identifier(column.name), sql.SQL(column.pg_type)]
        if column.identity:
            piece.append(sql.SQL("GENERATED BY DEFAULT AS IDENTITY"))
        elif column.default is not None:
            piece += [sql.SQL("DEFAULT"), column.default]
        if column.notnull:
            piece.append(sql.SQL("NOT NULL"))
        parts.append(sql.SQL(" ").join(piece))
    # No autovacuum while a table is staged: it would vacuum and analyze a table still being loaded (measured: a
    # VACUUM and an ANALYZE of the benchmark's biggest table half-way through its load). The swap resets it.
    session.execute(cursor, sql.SQL("CREATE TABLE {} ({}) WITH ({})").format(
        qualified(schema, table.name), sql.SQL(", ").join(parts), sql.SQL(STAGED_OPTIONS)))


def add_keys(session, cursor, schema, table):
    """The primary key and the unique constraints (the keys foreign keys can reference)."""
    name = qualified(schema, table.name)
    if table.primary_key:
        session.execute(cursor, sql.SQL("ALTER TABLE {} ADD PRIMARY KEY ({})").format(
            name, sql.SQL(", ").join(sql.Identifier(c) for c in table.primary_key)))
    for unique in table.uniques:
        session.execute(cursor, sql.SQL("ALTER TABLE {} ADD UNIQUE ({})").format(
            name, sql.SQL(", ").join(sql.Identifier(c) for c in unique)))


def add_index(session, cursor, schema, table, index):
    keys = sql.SQL(", ").join(sql.SQL("{}{}").format(sql.Identifier(c), sql.SQL(" DESC" if desc else ""))
                              for c, desc in index["columns"])
    session.execute(cursor, sql.SQL("CREATE {}INDEX {} ON {} ({})").format(
        sql.SQL("UNIQUE " if index["unique"] else ""), sql.Identifier(index["name"]), qualified(schema, table.name),
        keys))


def add_keys_and_indexes(session, cursor, schema, table):
    add_keys(session, cursor, schema, table)
    for index in table.indexes:
        add_index(session, cursor, schema, table, index)


def add_foreign_keys(session, cursor, schema, table, available):
    """Add the table's foreign keys NOT VALID: no scan, and a lock on the referenced tables held only briefly.

    validate_foreign_keys() checks the rows afterwards; that takes a lock the referenced table's own index builds
    and other validations do not wait for.
    """
    for fk in table.foreign_keys:
        if fk["table"] not in available or any(c is None for c in fk["ref_columns"]):
            session.warnings.append("table %s: foreign key to %s not created (table not migrated)"
                                    % (table.name, fk["table"]))
            continue
        actions = []
        for clause, action in (("ON UPDATE", fk["on_update"]), ("ON DELETE", fk["on_delete"])):
            if action and action.upper() in ("CASCADE", "SET NULL", "SET DEFAULT", "RESTRICT"):
                actions.append(sql.SQL("%s %s" % (clause, action.upper())))
        session.execute(cursor, sql.SQL("ALTER TABLE {} ADD FOREIGN KEY ({}) REFERENCES {} ({}){} NOT VALID").format(
            qualified(schema, table.name), sql.SQL(", ").join(sql.Identifier(c) for c in fk["columns"]),
            qualified(schema, fk["table"]), sql.SQL(", ").join(sql.Identifier(c) for c in fk["ref_columns"]),
            sql.SQL("").join(sql.SQL(" ") + a for a in actions)))


def validate_foreign_keys(session, cursor, schema, table):
    """Check every row against the table's foreign keys added NOT VALID (a violation fails naming the key)."""
    cursor.execute("SELECT k.conname FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid "
                   "JOIN pg_namespace n ON n.oid = c.relnamespace "
                   "WHERE n.nspname = %s AND c.relname = %s AND k.contype = 'f' AND NOT k.convalidated "
                   "ORDER BY k.conname", (schema, table.name))
    for (name,) in cursor.fetchall():
        try:
            session.execute(cursor, sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
                qualified(schema, table.name), sql.Identifier(name)))
        except psycopg.errors.ForeignKeyViolation as error:
            raise MigrationError("table %s: %s; fix the rows in the source (SQLite does not enforce foreign keys "
                                 "unless told to) or leave the table out with the tables option"
                                 % (table.name, error.diag.message_detail or error.diag.message_primary or error))


def reset_sequences(session, cursor, schema, mapping, floor=None):
    """Move every sequence feeding a column of the table past the highest value loaded."""
    done = []
    table_text = qualified(schema, mapping.target_name).as_string(cursor)
    for mapped in mapping.columns:
        cursor.execute("SELECT pg_get_serial_sequence(%s, %s)", (table_text, mapped.target_name))
        sequence = cursor.fetchone()[0]
        if not sequence:
            continue
        low = int(floor or 0)
        statement = sql.SQL("SELECT setval({seq}, GREATEST(max({col}), {low}, 1), "
                            "max({col}) IS NOT NULL OR {low} > 0) FROM {table}").format(
            seq=sql.Literal(sequence), col=sql.Identifier(mapped.target_name), low=sql.Literal(low),
            table=qualified(schema, mapping.target_name))
        session.execute(cursor, statement)
        done.append({"table": mapping.target_name, "column": mapped.target_name, "sequence": sequence,
                     "last_value": cursor.fetchone()[0]})
    return done


# ---- errors of a COPY


def copy_error(session, table, source_slice, error):
    """A COPY failure as a message naming the table, the column and the source row PostgreSQL refused."""
    context = getattr(error.diag, "context", None) or ""
    message = getattr(error.diag, "message_primary", None) or str(error)
    match = re.search(r"line (\d+)(?:, column ([^:]+))?", context)
    if match:
        where = describe_row(session.source, table, int(match.group(1)) - 1, source_slice)
        column = match.group(2) or "?"
        if "0x00" in message:
            message = "text contains a NUL character (0x00), which PostgreSQL text cannot hold"
        return MigrationError("table %s, column %s, %s: %s; fix the row in the source"
                              % (table.name, column, where, message))
    return MigrationError("copying table %s failed: %s" % (table.name, mask(message, session.secrets)))
