# -*- coding: utf-8 -*-
# Copyright: positops.ha maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!
"""The SQLite source: its schema, the slices a table is read in, the storage classes present, and row names.

The file is opened read-only (``mode=ro``: SQLite refuses every write) inside one read transaction per connection.
A table is read in its key order: the rowid for a table whose ``INTEGER PRIMARY KEY`` is the rowid, else its primary
key (BINARY collation), which PostgreSQL reproduces with ``ORDER BY`` (C collation for text); tables of that first
kind are cut into rowid ranges ("slices") that PostgreSQL can select by the same column.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import sqlite3

from ansible_collections.positops.ha.plugins.module_utils._db_migrate.common import MigrationError, sql
from ansible_collections.positops.ha.plugins.module_utils._db_migrate.convert import (
    CONVERTIBLE_CLASSES,
    NATIVE_CLASSES,
    ORDERED_KINDS,
    PG_TYPES,
    kind_for_declared_type,
)

# Rows per slice of a table with a rowid key: the unit of a worker's copy and of a digest.
SLICE_ROWS = 250000


def sqlite_quote(name):
    return '"%s"' % name.replace('"', '""')


class Column:
    def __init__(self, name, declared, notnull, default, pk_position):
        self.name = name
        self.declared = declared or ""
        self.kind = kind_for_declared_type(declared)
        self.notnull = bool(notnull)
        self.default = default
        self.pk_position = pk_position
        self.identity = False  # INTEGER PRIMARY KEY (the rowid alias) becomes an identity column
        self.select_cast = None  # SQLite expression template converting another storage class, e.g. CAST AS TEXT

    @property
    def pg_type(self):
        return PG_TYPES[self.kind]

    def select_expression(self):
        ref = sqlite_quote(self.name)
        return self.select_cast.format(ref) if self.select_cast else ref


class Table:
    def __init__(self, name, create_sql):
        self.name = name
        self.create_sql = create_sql or ""
        self.without_rowid = bool(re.search(r"\)\s*WITHOUT\s+ROWID\s*;?\s*$", self.create_sql, re.I))
        self.columns = []
        self.primary_key = []
        self.uniques = []  # lists of column names
        self.indexes = []  # dicts: name, unique, columns [(name, descending)]
        self.foreign_keys = []  # dicts: columns, table, ref_columns, on_update, on_delete
        self.skipped = []  # what could not be carried over (warnings)
        self.autoincrement_seq = None

    def column(self, name):
        for column in self.columns:
            if column.name == name:
                return column
        return None

    @property
    def identity_column(self):
        """The INTEGER PRIMARY KEY that is the rowid, or None."""
        for column in self.columns:
            if column.identity:
                return column
        return None

    @property
    def ordered(self):
        """Whether both engines can list the rows in the same order: by the rowid key or a primary key whose
        kinds sort alike in SQLite and PostgreSQL. Other tables are compared as unordered sets of row digests."""
        if self.identity_column is not None:
            return True
        return bool(self.primary_key) and all(self.column(n).kind in ORDERED_KINDS for n in self.primary_key)

    def order_by(self):
        """The ORDER BY list reading the table in key order (by what is selected, so casts sort as they are sent)."""
        if self.identity_column is not None or (not self.without_rowid and not self.ordered):
            return "_rowid_"
        terms = []
        for name in self.primary_key:
            column = self.column(name)
            collate = " COLLATE BINARY" if column.kind in ("text", "blob") else ""
            terms.append(column.select_expression() + collate)
        return ", ".join(terms)


class Slice:
    """A part of a source table: all of it, or the rows whose rowid key lies in a range (None: unbounded).

    The first and last slices are open-ended so that every row belongs to exactly one slice.
    """

    def __init__(self, index=0, low=None, high=None, rows=0):
        self.index = index
        self.low = low
        self.high = high
        self.rows = rows

    @property
    def whole(self):
        return self.low is None and self.high is None

    def sqlite_condition(self):
        """A WHERE clause on the rowid and its parameters."""
        parts, params = [], []
        if self.low is not None:
            parts.append("_rowid_ >= ?")
            params.append(self.low)
        if self.high is not None:
            parts.append("_rowid_ <= ?")
            params.append(self.high)
        return (" WHERE " + " AND ".join(parts) if parts else ""), params

    def pg_condition(self, column_name):
        """The same range on the PostgreSQL column the rowid became."""
        parts = []
        if self.low is not None:
            parts.append(sql.SQL("{} >= {}").format(sql.Identifier(column_name), sql.Literal(self.low)))
        if self.high is not None:
            parts.append(sql.SQL("{} <= {}").format(sql.Identifier(column_name), sql.Literal(self.high)))
        return (sql.SQL(" WHERE ") + sql.SQL(" AND ").join(parts)) if parts else sql.SQL("")

    def as_dict(self):
        return {"index": self.index, "low": self.low, "high": self.high, "rows": self.rows}

    @classmethod
    def from_dict(cls, data):
        return cls(data["index"], data["low"], data["high"], data["rows"])


def open_source(path):
    """Open the SQLite file read-only (mode=ro: SQLite refuses every write) inside one read transaction."""
    if not os.path.isfile(path):
        raise MigrationError("src %s does not exist or is not a file: give the path of the SQLite database" % path)
    if not os.access(path, os.R_OK):
        raise MigrationError("src %s is not readable by this user: run as the product's user or with become" % path)
    try:
        connection = sqlite3.connect(source_uri(path), uri=True, isolation_level=None, check_same_thread=False)
        connection.execute("BEGIN")
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as error:
        raise MigrationError("src %s is not a readable SQLite database: %s" % (path, error))
    return connection


def source_uri(path):
    return "file:%s?mode=ro" % path.replace("?", "%3f").replace("#", "%23")


def parse_default(text):
    """A SQLite column default as a PostgreSQL expression, or None when it cannot be carried over."""
    if text is None:
        return None
    value = text.strip()
    while value.startswith("(") and value.endswith(")"):
        value = value[1:-1].strip()
    upper = value.upper()
    if upper == "NULL":
        return None
    if upper in ("CURRENT_TIMESTAMP", "CURRENT_DATE", "CURRENT_TIME", "TRUE", "FALSE"):
        return sql.SQL(upper)
    if re.match(r"^[-+]?\d+$", value):
        return sql.Literal(int(value))
    if re.match(r"^[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?$", value):
        return sql.Literal(float(value))
    if len(value) >= 2 and value[0] == "'" and value[-1] == "'":
        return sql.Literal(value[1:-1].replace("''", "'"))
    raise ValueError(value)


def read_schema(connection):
    """Tables of the SQLite database with columns, keys, unique constraints, indexes and foreign keys."""
    tables = []
    rows = connection.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
        "ORDER BY name").fetchall()
    sequences = {}
    if connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchone():
        sequences = dict(connection.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
    for name, create_sql in rows:
        if (create_sql or "").upper().startswith("CREATE VIRTUAL"):
            raise MigrationError("table %s is a SQLite virtual table (%s): it cannot be migrated; "
                                 "leave it out with the tables option" % (name, create_sql.split("(")[0]))
        table = Table(name, create_sql)
        quoted = sqlite_quote(name)
        for _cid, col_name, declared, notnull, default, pk in connection.execute("PRAGMA table_info(%s)" % quoted):
            table.columns.append(Column(col_name, declared, notnull, default, pk))
        table.primary_key = [c.name for c in sorted((c for c in table.columns if c.pk_position),
                                                    key=lambda c: c.pk_position)]
        if len(table.primary_key) == 1 and not table.without_rowid:
            key = table.column(table.primary_key[0])
            if key.declared.upper() == "INTEGER":
                key.identity = True
                table.autoincrement_seq = sequences.get(name)
        for column in table.columns:
            if column.pk_position:
                column.notnull = True
            try:
                column.default = parse_default(column.default)
            except ValueError as error:
                table.skipped.append("default %s of column %s" % (error, column.name))
                column.default = None
        for _seq, index_name, unique, origin, partial in connection.execute("PRAGMA index_list(%s)" % quoted):
            if origin == "pk":
                continue
            info = connection.execute("PRAGMA index_xinfo(%s)" % sqlite_quote(index_name)).fetchall()
            key_columns = [(r[2], bool(r[3])) for r in info if r[5]]
            if partial or any(name_ is None for name_, _desc in key_columns):
                table.skipped.append("index %s (partial or on an expression)" % index_name)
                continue
            if origin == "u":
                table.uniques.append([name_ for name_, _desc in key_columns])
            else:
                table.indexes.append({"name": index_name, "unique": bool(unique), "columns": key_columns})
        foreign = {}
        for row in connection.execute("PRAGMA foreign_key_list(%s)" % quoted):
            fk_id, _seq, ref_table, from_col, to_col, on_update, on_delete, _match = row
            entry = foreign.setdefault(fk_id, {"columns": [], "table": ref_table, "ref_columns": [],
                                               "on_update": on_update, "on_delete": on_delete})
            entry["columns"].append(from_col)
            entry["ref_columns"].append(to_col)
        table.foreign_keys = [foreign[key] for key in sorted(foreign)]
        tables.append(table)
    by_name = dict((t.name, t) for t in tables)
    for table in tables:
        for fk in table.foreign_keys:
            if any(c is None for c in fk["ref_columns"]) and fk["table"] in by_name:
                fk["ref_columns"] = list(by_name[fk["table"]].primary_key)
    return tables


def select_tables(tables, wanted):
    if not wanted:
        return tables
    by_name = dict((t.name, t) for t in tables)
    unknown = [name for name in wanted if name not in by_name]
    if unknown:
        raise MigrationError("tables %s not found in src; tables in src: %s"
                             % (", ".join(unknown), ", ".join(sorted(by_name)) or "(none)"))
    unique = []
    for name in wanted:  # a name listed twice is migrated once
        if by_name[name] not in unique:
            unique.append(by_name[name])
    return unique


def count_rows(connection, table):
    try:
        return connection.execute("SELECT count(*) FROM %s" % sqlite_quote(table.name)).fetchone()[0]
    except sqlite3.OperationalError as error:
        raise MigrationError("reading table %s from src failed: %s" % (table.name, error))


def table_slices(connection, table, rows, slice_rows=None):
    """Rowid ranges of about ``slice_rows`` rows for a table keyed by its rowid; one slice for any other table."""
    slice_rows = slice_rows or SLICE_ROWS
    if table.identity_column is None or rows <= slice_rows:
        return [Slice(0, None, None, rows)]
    # Two queries: SQLite reads a lone min() or max() of the rowid from the b-tree's end, but scans for both at once.
    low = connection.execute("SELECT min(_rowid_) FROM %s" % sqlite_quote(table.name)).fetchone()[0]
    high = connection.execute("SELECT max(_rowid_) FROM %s" % sqlite_quote(table.name)).fetchone()[0]
    count = -(-rows // slice_rows)
    step = -(-(high - low + 1) // count)
    starts = list(range(low, high + 1, step))
    slices = []
    for index, start in enumerate(starts):
        first = index == 0
        last = index == len(starts) - 1
        slices.append(Slice(index, None if first else start, None if last else start + step - 1, rows // count))
    return slices


def read_query(table, columns, source_slice):
    """The SELECT reading ``columns`` of one slice of ``table`` in key order, and its parameters."""
    condition, params = source_slice.sqlite_condition()
    expressions = ", ".join(c.select_expression() for c in columns)
    query = "SELECT %s FROM %s%s ORDER BY %s" % (expressions, sqlite_quote(table.name), condition, table.order_by())
    return query, params


def describe_row(connection, table, offset, source_slice=None):
    """How to find the source row at a position of a slice's read order: its rowid or primary key."""
    condition, params = (source_slice or Slice()).sqlite_condition()
    if table.without_rowid:
        names = table.primary_key
        row = connection.execute("SELECT %s FROM %s%s ORDER BY %s LIMIT 1 OFFSET %d" % (
            ", ".join(sqlite_quote(n) for n in names), sqlite_quote(table.name), condition, table.order_by(),
            offset), params).fetchone()
        if row is None:
            return "row %d" % (offset + 1)
        return "row with primary key (%s)" % ", ".join("%s=%r" % pair for pair in zip(names, row))
    row = connection.execute("SELECT _rowid_ FROM %s%s ORDER BY %s LIMIT 1 OFFSET %d"
                             % (sqlite_quote(table.name), condition, table.order_by(), offset), params).fetchone()
    return "rowid %s" % (row[0] if row else "?")


def first_row_with_class(connection, table, column, storage_class):
    key = ", ".join(sqlite_quote(n) for n in table.primary_key) if table.without_rowid else "_rowid_"
    row = connection.execute("SELECT %s, %s FROM %s WHERE typeof(%s) = ? ORDER BY %s LIMIT 1" % (
        key, sqlite_quote(column.name), sqlite_quote(table.name), sqlite_quote(column.name), table.order_by()),
        (storage_class,)).fetchone()
    if row is None:
        return "?", None
    label = ("primary key %r" % (tuple(row[:-1]),)) if table.without_rowid else "rowid %s" % row[0]
    return label, row[-1]


def foreign_storage_classes(connection, table):
    """Per column, the SQLite storage classes present that are not native to the column's kind."""
    terms = []
    for column in table.columns:
        native = ", ".join("'%s'" % c for c in NATIVE_CLASSES[column.kind] + ("null",))
        terms.append("sum(typeof(%s) NOT IN (%s))" % (sqlite_quote(column.name), native))
    if not terms:
        return {}
    row = connection.execute("SELECT %s FROM %s" % (", ".join(terms), sqlite_quote(table.name))).fetchone()
    foreign = {}
    for column, count in zip(table.columns, row):
        if count:
            classes = [r[0] for r in connection.execute(
                "SELECT DISTINCT typeof(%s) FROM %s" % (sqlite_quote(column.name), sqlite_quote(table.name)))]
            foreign[column.name] = [c for c in classes if c not in NATIVE_CLASSES[column.kind] + ("null",)]
    return foreign


def plan_storage_classes(connection, table, foreign):
    """Decide how each column's foreign storage classes reach PostgreSQL, or refuse before anything is written."""
    for column in table.columns:
        classes = foreign.get(column.name)
        if not classes:
            continue
        casts = CONVERTIBLE_CLASSES.get(column.kind, {})
        refused = [c for c in classes if c not in casts]
        if refused:
            where, value = first_row_with_class(connection, table, column, refused[0])
            shown = value if not isinstance(value, bytes) else "x'%s'" % value[:16].hex()
            if column.kind == "integer" and refused[0] == "real":
                problem = "a value out of the integer range or with a fraction (%r)" % (shown,)
            else:
                problem = "a %s value (%r)" % (refused[0], shown)
            raise MigrationError(
                "table %s, column %s, %s: %s in a column declared %r (PostgreSQL %s) cannot be stored without "
                "changing it; fix the row in the source or declare the column's type accordingly"
                % (table.name, column.name, where, problem, column.declared, column.pg_type))
        column.select_cast = casts[classes[0]]


def locate_bad_utf8(connection, table, offset, source_slice):
    """After SQLite could not decode a batch starting at offset: the first row and column with invalid UTF-8."""
    path = connection.execute("PRAGMA database_list").fetchone()[2]
    reader = sqlite3.connect(source_uri(path), uri=True, check_same_thread=False)
    reader.text_factory = bytes
    try:
        names = [c.name for c in table.columns]
        condition, params = source_slice.sqlite_condition()
        cursor = reader.execute("SELECT %s FROM %s%s ORDER BY %s LIMIT -1 OFFSET %d" % (
            ", ".join(sqlite_quote(n) for n in names), sqlite_quote(table.name), condition, table.order_by(),
            offset), params)
        for position, row in enumerate(cursor, start=offset):
            for name, value in zip(names, row):
                if isinstance(value, bytes):
                    try:
                        value.decode("utf-8")
                    except UnicodeDecodeError as error:
                        return position, name, error
    finally:
        reader.close()
    return None, None, None
