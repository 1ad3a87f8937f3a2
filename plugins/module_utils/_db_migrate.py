# -*- coding: utf-8 -*-
# Copyright: positops.ha maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!
"""SQLite to PostgreSQL migration used by the db_migrate module.

The whole load runs in one PostgreSQL transaction: tables are created (or the existing ones emptied), filled with
binary COPY, indexes and constraints are added after the data, identity sequences are moved past the highest key
and both sides are compared before COMMIT. A failure or a killed process therefore leaves the target as it was,
and a re-run starts from scratch. The source is opened read-only (``mode=ro``) inside one read transaction, so the
schema, the checksums and the copied rows come from the same snapshot.

Verification compares, per table, the row count and a checksum made of per-column aggregates that SQLite and
PostgreSQL compute the same way: non-NULL counts; for integers and booleans the sum of the values modulo a prime;
for text the sums of the lengths and of the first and second characters' code points; for blobs the sum of lengths;
for timestamps and dates the sum of epoch seconds or days; for floating point and numeric values the sum, compared
with a relative tolerance because the two engines add in different precision.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import decimal
import hashlib
import json
import multiprocessing
import os
import queue
import re
import sqlite3
import time

try:
    import psycopg
    from psycopg import sql
    from psycopg.adapt import PyFormat
    from psycopg.conninfo import conninfo_to_dict

    HAS_PSYCOPG = True
    PSYCOPG_IMPORT_ERROR = None
except ImportError as import_error:  # reported by the module with missing_required_lib()
    HAS_PSYCOPG = False
    PSYCOPG_IMPORT_ERROR = import_error

# Rows per chunk a worker copies in one transaction when a table is split over several connections.
CHUNK_ROWS = 250000
# Modulus for integer checksums: keeps a sum of millions of rows far inside 64 bits on both sides.
INTEGER_MODULUS = 1000000007
FLOAT_TOLERANCE = 1e-9
MASK = "********"
TRUTHY = ("1", "true", "t", "yes", "y", "on")
FALSY = ("0", "false", "f", "no", "n", "off")

# PostgreSQL type used for each kind in the "create" layout, and the binary COPY type name.
PG_TYPES = {
    "integer": "bigint",
    "real": "double precision",
    "text": "text",
    "blob": "bytea",
    "boolean": "boolean",
    "timestamp": "timestamp without time zone",
    "timestamptz": "timestamp with time zone",
    "date": "date",
    "numeric": "numeric",
}
COPY_TYPES = {
    "integer": "int8",
    "real": "float8",
    "text": "text",
    "blob": "bytea",
    "boolean": "bool",
    "timestamp": "timestamp",
    "timestamptz": "timestamptz",
    "date": "date",
    "numeric": "numeric",
}
# SQLite storage classes a kind accepts as they are, and those it converts (SQL cast or Python converter).
NATIVE_CLASSES = {
    "integer": ("integer",),
    "real": ("real",),
    "text": ("text",),
    "blob": ("blob",),
    "boolean": ("integer", "text"),
    "timestamp": ("text", "integer", "real"),
    "timestamptz": ("text", "integer", "real"),
    "date": ("text", "integer", "real"),
    "numeric": ("integer", "real", "text"),
}
CONVERTIBLE_CLASSES = {
    "real": {"integer": "CAST({0} AS REAL)"},
    "text": {"integer": "CAST({0} AS TEXT)", "real": "CAST({0} AS TEXT)"},
    "blob": {"text": "CAST({0} AS BLOB)"},
}
# PostgreSQL type families for the checksum of a target column (from pg_type.typname).
PG_FAMILIES = {
    "int2": "integer", "int4": "integer", "int8": "integer",
    "float4": "real", "float8": "real", "numeric": "numeric",
    "text": "text", "varchar": "text", "bpchar": "text", "name": "text", "citext": "text",
    "bytea": "blob", "bool": "boolean",
    "timestamp": "timestamp", "timestamptz": "timestamptz", "date": "date",
}


class MigrationError(Exception):
    """A refusal or failure; the message names what is wrong and what to do."""


class _NotFast(Exception):
    """A value did not fit the fast path of a table's copy: copy it again in careful mode."""


# --------------------------------------------------------------------------------------------------------------
# Secrets in the destination URI


def uri_secrets(uri):
    """The strings that must never appear in output: the password (decoded and as written) and the URI."""
    secrets = []
    try:
        password = conninfo_to_dict(uri).get("password") if HAS_PSYCOPG else None
    except Exception:  # an unparsable URI still must not leak: the regex below covers it
        password = None
    if password:
        secrets.append(password)
    match = re.search(r"://[^:/@]*:([^@/]*)@", uri or "")
    if match and match.group(1):
        secrets.append(match.group(1))
    if secrets and uri:
        secrets.append(uri)
    return secrets


def mask(text, secrets):
    text = str(text)
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return text


# --------------------------------------------------------------------------------------------------------------
# SQLite schema


def sqlite_quote(name):
    return '"%s"' % name.replace('"', '""')


def kind_for_declared_type(declared):
    """Map a SQLite declared column type to a kind (see PG_TYPES), following SQLite's affinity rules.

    Booleans, timestamps, dates and JSON/UUID are recognised by name first because SQLite gives them numeric
    affinity while their values are really booleans, timestamps or text.
    """
    upper = (declared or "").upper().strip()
    if not upper:
        return "text"  # no declared type: SQLite keeps any value; numbers are cast to text
    if "BOOL" in upper:
        return "boolean"
    if "TIMESTAMPTZ" in upper or "WITH TIME ZONE" in upper:
        return "timestamptz"
    if "DATETIME" in upper or "TIMESTAMP" in upper:
        return "timestamp"
    if re.match(r"^DATE\b", upper):
        return "date"
    if "INT" in upper:
        return "integer"
    if "CHAR" in upper or "CLOB" in upper or "TEXT" in upper or "JSON" in upper or "UUID" in upper:
        return "text"
    if "BLOB" in upper:
        return "blob"
    if "REAL" in upper or "FLOA" in upper or "DOUB" in upper:
        return "real"
    return "numeric"


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
        self.where = ""  # a rowid range when a worker copies one chunk of the table

    def column(self, name):
        for column in self.columns:
            if column.name == name:
                return column
        return None

    @property
    def order_by(self):
        if self.without_rowid:
            return ", ".join(sqlite_quote(name) for name in self.primary_key)
        return "_rowid_"


def open_source(path):
    """Open the SQLite file read-only (mode=ro: SQLite refuses every write) inside one read transaction."""
    if not os.path.isfile(path):
        raise MigrationError("src %s does not exist or is not a file: give the path of the SQLite database" % path)
    if not os.access(path, os.R_OK):
        raise MigrationError("src %s is not readable by this user: run as the product's user or with become" % path)
    uri = "file:%s?mode=ro" % path.replace("?", "%3f").replace("#", "%23")
    try:
        connection = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        connection.execute("BEGIN")
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as error:
        raise MigrationError("src %s is not a readable SQLite database: %s" % (path, error))
    return connection


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


# --------------------------------------------------------------------------------------------------------------
# Source statistics: checksums and storage classes in one scan per table


# Whole epoch seconds of a SQLite date/time text: unixepoch() (SQLite 3.38+) gives the same value as strftime('%s')
# about four times faster (measured on the benchmark's timestamps).
EPOCH_SECONDS = ("unixepoch(%s)" if sqlite3.sqlite_version_info >= (3, 38, 0)
                 else "CAST(strftime('%%s', %s) AS INTEGER)")


def source_checksum_terms(column, family):
    """SQLite aggregate expressions of a column's checksum for a PostgreSQL type family."""
    ref = sqlite_quote(column.name)
    terms = ["count(%s)" % ref]
    if family == "integer":
        terms.append("sum(CASE WHEN typeof(%s) = 'integer' THEN %s %% %d END)" % (ref, ref, INTEGER_MODULUS))
    elif family == "boolean":
        # Integers (the usual 0/1) skip lower(), which costs a text conversion per value.
        terms.append("sum(CASE WHEN typeof(%s) = 'integer' THEN %s = 1 ELSE lower(%s) IN (%s) END)"
                     % (ref, ref, ref, ", ".join("'%s'" % v for v in TRUTHY)))
    elif family in ("real", "numeric"):
        terms.append("total(%s)" % ref)
    elif family == "text":
        terms.append("sum(length(%s))" % ref)
        terms.append("sum(unicode(%s))" % ref)
        # The second character rather than the last: substr(x, -1) counts every character of every value.
        terms.append("sum(unicode(substr(%s, 2, 1)))" % ref)
    elif family == "blob":
        terms.append("sum(length(CAST(%s AS BLOB)))" % ref)
    elif family in ("timestamp", "timestamptz"):
        terms.append("sum(CASE WHEN typeof(%s) IN ('integer', 'real') THEN CAST(%s AS INTEGER) "
                     "ELSE %s END)" % (ref, ref, EPOCH_SECONDS % ref))
    elif family == "date":
        terms.append("sum(CASE WHEN typeof(%s) IN ('integer', 'real') THEN CAST(%s AS INTEGER) / 86400 "
                     "ELSE %s / 86400 END)" % (ref, ref, EPOCH_SECONDS % ("date(%s)" % ref)))
    return terms


def target_checksum_terms(name, family):
    """PostgreSQL aggregate expressions matching source_checksum_terms."""
    ref = sql.Identifier(name)
    terms = [sql.SQL("count({})").format(ref)]
    if family == "integer":
        terms.append(sql.SQL("sum({} % {})").format(ref, sql.Literal(INTEGER_MODULUS)))
    elif family == "boolean":
        terms.append(sql.SQL("sum({}::int)").format(ref))
    elif family in ("real", "numeric"):
        terms.append(sql.SQL("sum({}::float8)").format(ref))
    elif family == "text":
        terms.append(sql.SQL("sum(length({}))").format(ref))
        terms.append(sql.SQL("sum(ascii({}))").format(ref))
        terms.append(sql.SQL("sum(ascii(substr({}, 2, 1)))").format(ref))
    elif family == "blob":
        terms.append(sql.SQL("sum(length({}))").format(ref))
    elif family in ("timestamp", "timestamptz"):
        # SQLite rounds fractional seconds to milliseconds, then truncates to whole seconds: do the same.
        terms.append(sql.SQL("sum(floor(floor(extract(epoch FROM {}) * 1000 + 0.5) / 1000)::bigint)").format(ref))
    elif family == "date":
        terms.append(sql.SQL("sum({} - DATE '1970-01-01')").format(ref))
    return terms


def normalise_aggregates(values):
    """Aggregates as JSON-friendly numbers; NULL sums (no rows) count as 0."""
    result = []
    for value in values:
        if value is None:
            value = 0
        if isinstance(value, decimal.Decimal):
            value = int(value) if value == value.to_integral_value() else float(value)
        if isinstance(value, float) and value.is_integer() and abs(value) < 2 ** 53:
            value = float(value)
        result.append(value)
    return result


def aggregates_match(left, right):
    if len(left) != len(right):
        return False
    for a, b in zip(left, right):
        if isinstance(a, float) or isinstance(b, float):
            if abs(float(a) - float(b)) > FLOAT_TOLERANCE * max(1.0, abs(float(a)), abs(float(b))):
                return False
        elif a != b:
            return False
    return True


def checksum_digest(aggregates):
    """A short, stable digest of the aggregates for reports (floats at 9 significant digits)."""
    canonical = [("%.9g" % v) if isinstance(v, float) else v for v in aggregates]
    return hashlib.sha256(json.dumps(canonical).encode("utf-8")).hexdigest()[:16]


def source_checksum(connection, table, families):
    """One scan of a source table: (row count, checksum aggregates).

    ``families`` gives, per column, the checksum family of its target column (columns without one are counted
    only through the row count).
    """
    terms = ["count(*)"]
    for column in table.columns:
        if column.name in families:
            terms.extend(source_checksum_terms(column, families[column.name]))
    query = "SELECT %s FROM %s" % (", ".join(terms), sqlite_quote(table.name))
    try:
        row = connection.execute(query).fetchone()
    except sqlite3.OperationalError as error:
        raise MigrationError("reading table %s from src failed: %s" % (table.name, error))
    aggregates = normalise_aggregates(row)
    return aggregates[0], aggregates


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


def describe_row(connection, table, offset):
    """How to find the source row at a position of the copy order: its rowid or primary key."""
    if table.without_rowid:
        names = table.primary_key
        row = connection.execute("SELECT %s FROM %s%s ORDER BY %s LIMIT 1 OFFSET %d" % (
            ", ".join(sqlite_quote(n) for n in names), sqlite_quote(table.name), table.where, table.order_by,
            offset)).fetchone()
        if row is None:
            return "row %d" % (offset + 1)
        return "row with primary key (%s)" % ", ".join("%s=%r" % pair for pair in zip(names, row))
    row = connection.execute("SELECT _rowid_ FROM %s%s ORDER BY _rowid_ LIMIT 1 OFFSET %d"
                             % (sqlite_quote(table.name), table.where, offset)).fetchone()
    return "rowid %s" % (row[0] if row else "?")


def first_row_with_class(connection, table, column, storage_class):
    key = ", ".join(sqlite_quote(n) for n in table.primary_key) if table.without_rowid else "_rowid_"
    row = connection.execute("SELECT %s, %s FROM %s WHERE typeof(%s) = ? ORDER BY %s LIMIT 1" % (
        key, sqlite_quote(column.name), sqlite_quote(table.name), sqlite_quote(column.name), table.order_by),
        (storage_class,)).fetchone()
    if row is None:
        return "?", None
    label = ("primary key %r" % (tuple(row[:-1]),)) if table.without_rowid else "rowid %s" % row[0]
    return label, row[-1]


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


# --------------------------------------------------------------------------------------------------------------
# Value converters for kinds that binary COPY needs as Python objects


def _to_boolean(value):
    if value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in TRUTHY:
            return True
        if lowered in FALSY:
            return False
    raise ValueError("%r is not a boolean (0/1, true/false)" % (value,))


def _to_timestamp(value, aware):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        moment = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(seconds=value)
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError("%r is not an ISO 8601 timestamp" % (value,))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.timezone.utc)
    else:
        raise ValueError("%r is not a timestamp" % (value,))
    moment = moment.astimezone(datetime.timezone.utc)
    return moment if aware else moment.replace(tzinfo=None)


def _to_date(value):
    if isinstance(value, str):
        try:
            return datetime.date.fromisoformat(value.strip()[:10])
        except ValueError:
            raise ValueError("%r is not an ISO 8601 date" % (value,))
    return _to_timestamp(value, False).date()


def _to_numeric(value):
    if isinstance(value, float):
        return decimal.Decimal(repr(value))
    try:
        return decimal.Decimal(value if isinstance(value, (int, str)) else str(value))
    except decimal.InvalidOperation:
        raise ValueError("%r is not a number" % (value,))


CONVERTERS = {
    "boolean": _to_boolean,
    "timestamp": lambda v: _to_timestamp(v, False),
    "timestamptz": lambda v: _to_timestamp(v, True),
    "date": _to_date,
    "numeric": _to_numeric,
}


def _fast_timestamp(value):
    """ISO text without offset straight through fromisoformat (measured 5x cheaper than SQLite's strftime)."""
    moment = datetime.datetime.fromisoformat(value)  # TypeError/ValueError: careful mode takes over
    if moment.tzinfo is not None:
        raise ValueError("offset")
    return moment


def _fast_date(value):
    return datetime.date.fromisoformat(value)


# Fast mode: converters for the common shapes only; anything else raises and the table goes to careful mode.
FAST_CONVERTERS = dict(CONVERTERS, timestamp=_fast_timestamp, date=_fast_date)


def row_converter(kinds, fast=False):
    """A function converting a fetched row for binary COPY, or None when every value goes as it is."""
    table = FAST_CONVERTERS if fast else CONVERTERS
    plan = [(i, table[k]) for i, k in enumerate(kinds) if k in table]
    if not plan:
        return None

    def convert(row):
        values = list(row)
        for index, function in plan:
            value = values[index]
            if value is not None:
                values[index] = function(value)
        return values

    return convert


def locate_conversion_error(table, columns, row):
    for column in columns:
        function = CONVERTERS.get(column.kind)
        value = row[columns.index(column)]
        if function and value is not None:
            try:
                function(value)
            except ValueError as error:
                return column.name, str(error)
    return "?", "unconvertible value"


def locate_bad_utf8(connection, table, offset):
    """After SQLite could not decode a batch starting at offset: the first row and column with invalid UTF-8."""
    reader = sqlite3.connect(connection_path(connection), uri=True, check_same_thread=False)
    reader.text_factory = bytes
    try:
        names = [c.name for c in table.columns]
        cursor = reader.execute("SELECT %s FROM %s%s ORDER BY %s LIMIT -1 OFFSET %d" % (
            ", ".join(sqlite_quote(n) for n in names), sqlite_quote(table.name), table.where, table.order_by,
            offset))
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


def connection_path(connection):
    path = connection.execute("PRAGMA database_list").fetchone()[2]
    return "file:%s?mode=ro" % path.replace("?", "%3f").replace("#", "%23")


# --------------------------------------------------------------------------------------------------------------
# PostgreSQL side


def qualified(schema, name):
    return sql.Identifier(schema, name)


class Mapping:
    """How one source table reaches its target: per source column the target column name and checksum family."""

    def __init__(self, table, target_name, columns):
        self.table = table
        self.target_name = target_name
        self.columns = columns  # list of (Column, target column name, family or None, target type or None)

    def families(self):
        return dict((c.name, family) for c, _target, family, _type in self.columns if family)


def create_mapping(table):
    return Mapping(table, table.name, [(c, c.name, c.kind, c.pg_type) for c in table.columns])


class Migration:
    """One run of db_migrate; ``result`` collects what was done so callers (and tests) can see it exactly."""

    def __init__(self, src, dest, schema="public", tables=None, if_exists="fail", batch_size=10000, verify=True,
                 layout="create", check_mode=False, clock=time.monotonic, workers=None):
        if batch_size < 1:
            raise MigrationError("batch_size must be a positive number of rows, got %s" % batch_size)
        self.src = src
        self.dest = dest
        self.schema = schema
        self.wanted = list(tables or [])
        self.if_exists = if_exists
        self.batch_size = batch_size
        self.verify = verify
        self.layout = layout
        self.check_mode = check_mode
        self.clock = clock
        self.workers = workers if workers is not None else min(4, os.cpu_count() or 1)
        if self.workers < 1:
            raise MigrationError("workers must be at least 1, got %s" % self.workers)
        self.secrets = uri_secrets(dest)
        self.statements = []
        self.warnings = []
        self.source = None
        self.pg = None

    # ---- plumbing

    def execute(self, cursor, statement, params=None):
        self.statements.append(statement.as_string(cursor) if hasattr(statement, "as_string") else statement)
        cursor.execute(statement, params)
        return cursor

    def connect(self, staged_only=False):
        try:
            connection = psycopg.connect(self.dest, autocommit=False)
        except psycopg.Error as error:
            raise MigrationError("cannot connect to dest: %s" % mask(error, self.secrets))
        connection.execute("SET TIME ZONE 'UTC'")
        connection.execute("SET maintenance_work_mem = '256MB'")
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

    def close(self):
        for connection in (self.pg, self.source):
            if connection is not None:
                try:
                    connection.close()
                except Exception:  # closing after a failure must not hide the failure
                    pass

    # ---- target inspection

    def target_tables(self, cursor):
        """Names of the tables (or partitioned tables) in the target schema."""
        cursor.execute("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                       "WHERE n.nspname = %s AND c.relkind IN ('r', 'p')", (self.schema,))
        return set(row[0] for row in cursor.fetchall())

    def target_columns(self, cursor, name):
        cursor.execute(
            "SELECT a.attname, t.typname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
            "a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '' "
            "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_type t ON t.oid = a.atttypid "
            "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (self.schema, name))
        return cursor.fetchall()

    def existing_mapping(self, cursor, table, target_names):
        """Match source columns to the target table's columns by name (exact, else case-insensitive)."""
        target_name = table.name if table.name in target_names else None
        if target_name is None:
            folded = [n for n in target_names if n.lower() == table.name.lower()]
            target_name = folded[0] if len(folded) == 1 else None
        if target_name is None:
            raise MigrationError("table %s does not exist in schema %s of dest; create it first (start the product "
                                 "against PostgreSQL once) or use layout=create" % (table.name, self.schema))
        target = self.target_columns(cursor, target_name)
        by_name = dict((row[0], row) for row in target)
        columns, used = [], set()
        for column in table.columns:
            row = by_name.get(column.name)
            if row is None:
                folded = [r for r in target if r[0].lower() == column.name.lower()]
                row = folded[0] if len(folded) == 1 else None
            if row is None:
                raise MigrationError("table %s: source column %s has no column of that name in %s.%s (columns: %s); "
                                     "nothing was written" % (table.name, column.name, self.schema, target_name,
                                                              ", ".join(r[0] for r in target)))
            used.add(row[0])
            family = PG_FAMILIES.get(row[1])
            columns.append((column, row[0], family if family == column.kind else None, row[2]))
        missing = [r[0] for r in target if r[0] not in used and r[3] and not r[4]]
        if missing:
            raise MigrationError("table %s: target columns %s are NOT NULL without a default and have no source "
                                 "column; nothing was written" % (table.name, ", ".join(missing)))
        return Mapping(table, target_name, columns)

    def target_stats(self, cursor, mapping):
        terms = [sql.SQL("count(*)")]
        for column, target_name, family, _type in mapping.columns:
            if family:
                terms.extend(target_checksum_terms(target_name, family))
        cursor.execute(sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(terms),
                                                           qualified(self.schema, mapping.target_name)))
        return normalise_aggregates(cursor.fetchone())

    def has_rows(self, cursor, name):
        cursor.execute(sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} LIMIT 1) AS probe").format(
            qualified(self.schema, name)))
        return cursor.fetchone()[0] > 0

    # ---- DDL for the create layout

    def create_table(self, cursor, table, schema=None):
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
        statement = sql.SQL("CREATE TABLE {} ({})").format(
            qualified(schema or self.schema, table.name), sql.SQL(", ").join(parts))
        self.execute(cursor, statement)

    def add_keys_and_indexes(self, cursor, table):
        name = qualified(self.schema, table.name)
        if table.primary_key:
            self.execute(cursor, sql.SQL("ALTER TABLE {} ADD PRIMARY KEY ({})").format(
                name, sql.SQL(", ").join(sql.Identifier(c) for c in table.primary_key)))
        for unique in table.uniques:
            self.execute(cursor, sql.SQL("ALTER TABLE {} ADD UNIQUE ({})").format(
                name, sql.SQL(", ").join(sql.Identifier(c) for c in unique)))
        for index in table.indexes:
            keys = sql.SQL(", ").join(sql.SQL("{}{}").format(sql.Identifier(c), sql.SQL(" DESC" if desc else ""))
                                      for c, desc in index["columns"])
            self.execute(cursor, sql.SQL("CREATE {}INDEX {} ON {} ({})").format(
                sql.SQL("UNIQUE " if index["unique"] else ""), sql.Identifier(index["name"]), name, keys))

    def add_foreign_keys(self, cursor, table, available):
        for fk in table.foreign_keys:
            if fk["table"] not in available or any(c is None for c in fk["ref_columns"]):
                self.warnings.append("table %s: foreign key to %s not created (table not migrated)"
                                     % (table.name, fk["table"]))
                continue
            actions = []
            for clause, action in (("ON UPDATE", fk["on_update"]), ("ON DELETE", fk["on_delete"])):
                if action and action.upper() in ("CASCADE", "SET NULL", "SET DEFAULT", "RESTRICT"):
                    actions.append(sql.SQL("%s %s" % (clause, action.upper())))
            self.execute(cursor, sql.SQL("ALTER TABLE {} ADD FOREIGN KEY ({}) REFERENCES {} ({}){}").format(
                qualified(self.schema, table.name), sql.SQL(", ").join(sql.Identifier(c) for c in fk["columns"]),
                qualified(self.schema, fk["table"]), sql.SQL(", ").join(sql.Identifier(c) for c in fk["ref_columns"]),
                sql.SQL("").join(sql.SQL(" ") + a for a in actions)))

    def reset_sequences(self, cursor, mapping, floor=None):
        """Move every sequence feeding a column of the table past the highest value loaded."""
        done = []
        table_text = qualified(self.schema, mapping.target_name).as_string(cursor)
        for _column, target_name, _family, _type in mapping.columns:
            cursor.execute("SELECT pg_get_serial_sequence(%s, %s)", (table_text, target_name))
            sequence = cursor.fetchone()[0]
            if not sequence:
                continue
            low = int(floor or 0)
            statement = sql.SQL("SELECT setval({seq}, GREATEST(max({col}), {low}, 1), "
                                "max({col}) IS NOT NULL OR {low} > 0) FROM {table}").format(
                seq=sql.Literal(sequence), col=sql.Identifier(target_name), low=sql.Literal(low),
                table=qualified(self.schema, mapping.target_name))
            self.execute(cursor, statement)
            done.append({"table": mapping.target_name, "column": target_name, "sequence": sequence,
                         "last_value": cursor.fetchone()[0]})
        return done

    # ---- the copy

    def copy_table(self, cursor, mapping, target, create=None):
        """Copy one table; first fast, and when a value does not fit the fast path, again in careful mode.

        Each attempt runs in a savepoint. ``create`` (a callable) creates the target table inside the savepoint so
        that COPY FREEZE applies (the table is new in the same subtransaction).
        """
        for careful in (False, True):
            cursor.execute("SAVEPOINT db_migrate_copy")
            try:
                if create is not None:
                    create()
                rows = self._copy_attempt(cursor, mapping, target, careful, freeze=create is not None)
            except _NotFast:
                cursor.execute("ROLLBACK TO SAVEPOINT db_migrate_copy")
                continue
            cursor.execute("RELEASE SAVEPOINT db_migrate_copy")
            return rows
        raise MigrationError("table %s could not be copied" % mapping.table.name)  # careful mode raises first

    def _copy_attempt(self, cursor, mapping, target, careful, freeze):
        table = mapping.table
        columns = [c for c, _n, _f, _t in mapping.columns]
        if careful:
            plan_storage_classes(self.source, table, foreign_storage_classes(self.source, table))
        expressions = []
        for column in columns:
            ref = sqlite_quote(column.name)
            expressions.append(column.select_cast.format(ref) if column.select_cast else ref)
        copy_types = [COPY_TYPES[column.kind] for column in columns]
        select = "SELECT %s FROM %s%s ORDER BY %s" % (", ".join(expressions), sqlite_quote(table.name), table.where,
                                                      table.order_by)
        names = [name for _c, name, _f, _t in mapping.columns]
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY{})").format(
            target, sql.SQL(", ").join(sql.Identifier(n) for n in names), sql.SQL(", FREEZE" if freeze else ""))
        if not careful:
            self.statements.append(statement.as_string(cursor))
        convert = row_converter([column.kind for column in columns], fast=not careful)
        position = 0
        try:
            with cursor.copy(statement) as copy:
                copy.set_types(copy_types)
                write_row = copy.write_row
                source_cursor = self.source.execute(select)
                while True:
                    try:
                        rows = source_cursor.fetchmany(self.batch_size)
                    except sqlite3.OperationalError as error:
                        raise self.decode_error(table, position, error)
                    if not rows:
                        break
                    if convert is None:
                        try:
                            for row in rows:
                                write_row(row)
                        except (TypeError, ValueError, OverflowError) as error:
                            if not careful:
                                raise _NotFast()
                            raise MigrationError("table %s: %s cannot be stored in PostgreSQL: %s" % (
                                table.name, describe_row(self.source, table, position), error))
                    else:
                        for offset, row in enumerate(rows):
                            try:
                                values = convert(row)
                                write_row(values)
                            except (TypeError, ValueError, OverflowError):
                                if not careful:
                                    raise _NotFast()
                                name, why = locate_conversion_error(table, columns, row)
                                kind = dict((c.name, c.kind) for c in columns).get(name)
                                raise MigrationError(
                                    "table %s, column %s, %s: %s; PostgreSQL cannot store it as %s; fix the row "
                                    "in the source" % (table.name, name, describe_row(
                                        self.source, table, position + offset), why, PG_TYPES.get(kind, "declared")))
                    position += len(rows)
        except psycopg.Error as error:
            if not careful:
                raise _NotFast()
            raise self.copy_error(table, error)
        return position

    def decode_error(self, table, position, error):
        if "decode" not in str(error).lower():
            return MigrationError("reading table %s from src failed: %s" % (table.name, error))
        row_position, column, why = locate_bad_utf8(self.source, table, position)
        where = describe_row(self.source, table, row_position) if row_position is not None else "a row"
        return MigrationError("table %s, column %s, %s: text is not valid UTF-8 (%s); PostgreSQL cannot store it "
                              "as text: fix the row in the source" % (table.name, column, where, why))

    def copy_error(self, table, error):
        context = getattr(error.diag, "context", None) or ""
        message = getattr(error.diag, "message_primary", None) or str(error)
        match = re.search(r"line (\d+)(?:, column ([^:]+))?", context)
        if match:
            where = describe_row(self.source, table, int(match.group(1)) - 1)
            column = match.group(2) or "?"
            if "0x00" in message:
                message = "text contains a NUL character (0x00), which PostgreSQL text cannot hold"
            return MigrationError("table %s, column %s, %s: %s; fix the row in the source"
                                  % (table.name, column, where, message))
        return MigrationError("copying table %s failed: %s" % (table.name, mask(message, self.secrets)))

    # ---- the run

    def run(self, mode="migrate"):
        """Migrate (or only verify); returns the result dict; raises MigrationError with secrets masked."""
        try:
            return self._run(mode)
        except MigrationError as error:
            if self.pg is not None:
                self.pg.rollback()
            raise MigrationError(mask(error, self.secrets))
        except (psycopg.Error, sqlite3.Error) as error:
            if self.pg is not None and not self.pg.closed:
                self.pg.rollback()
            raise MigrationError("migration failed, nothing was changed in dest: %s" % mask(error, self.secrets))
        finally:
            self.close()

    def _run(self, mode):
        started = self.clock()
        self.source = open_source(self.src)
        tables = select_tables(read_schema(self.source), self.wanted)
        for table in tables:
            for what in table.skipped:
                self.warnings.append("table %s: %s not carried over" % (table.name, what))
        self.pg = self.connect()
        cursor = self.pg.cursor()
        existing = self.target_tables(cursor)

        # What is in the target now: mappings by the target's own columns wherever the tables exist.
        mappings = {}
        for table in tables:
            if self.layout == "existing" or mode == "verify":
                mappings[table.name] = self.existing_mapping(cursor, table, existing)
            elif table.name in existing:
                try:
                    mappings[table.name] = self.existing_mapping(cursor, table, existing)
                except MigrationError:
                    mappings[table.name] = None  # a different table under that name: replaced below
            else:
                mappings[table.name] = None

        # Full source checksums now only when they are needed before loading (verify mode, a possible re-run,
        # the existing layout); otherwise the parallel load computes them in its workers alongside the copy.
        parallel = self.layout == "create" and mode == "migrate" and self.workers > 1 and not self.check_mode
        needed_now = not parallel or all(mappings[t.name] is not None for t in tables)
        source_stats = {}
        for table in tables:
            families = (mappings[table.name] or create_mapping(table)).families()
            if not needed_now:
                families = {}  # the row count only: an existing, non-matching target still needs counting
            if needed_now or mappings[table.name] is not None:
                rows, aggregates = source_checksum(self.source, table, families)
                source_stats[table.name] = (rows, aggregates, families)

        if mode == "verify":
            verification = self.compare(cursor, tables, mappings, source_stats)
            self.pg.rollback()
            return self.result(False, tables, source_stats, verification, started, copied={}, sequences=[])

        # A previous complete run: same rows and checksums everywhere means nothing to do.
        current = {}
        for table in tables:
            mapping = mappings[table.name]
            if mapping is not None and self.has_rows(cursor, mapping.target_name):
                current[table.name] = mapping
        if all(mappings[t.name] is not None for t in tables):
            verification = self.compare(cursor, tables, mappings, source_stats)
            if verification["ok"]:
                self.pg.rollback()
                return self.result(False, tables, source_stats, verification, started, copied={}, sequences=[])
        if current and self.if_exists == "fail":
            raise MigrationError(
                "target tables already hold rows that differ from src: %s in schema %s; nothing was written. Use "
                "if_exists=truncate to replace them, or migrate into an empty schema"
                % (", ".join(sorted(current)), self.schema))
        self.pg.rollback()

        if self.check_mode:
            return self.result(True, tables, source_stats, None, started, copied={}, sequences=[])
        if self.layout == "existing":
            copied, sequences = self.load_existing(cursor, tables, mappings)
            mappings_after = mappings
        elif parallel:
            copied, sequences, verification = self.load_parallel(tables, existing, source_stats)
            return self.result(True, tables, source_stats, verification, started, copied=copied, sequences=sequences)
        else:
            copied, sequences = self.load_create(cursor, tables, existing)
            mappings_after = dict((t.name, create_mapping(t)) for t in tables)
        verification = None
        if self.verify:
            verification = self.compare(cursor, tables, mappings_after, source_stats)
            if not verification["ok"]:
                bad = [name for name, entry in verification["tables"].items() if not entry["match"]]
                self.pg.rollback()
                raise MigrationError("verification failed for tables %s (row counts or checksums differ); the "
                                     "transaction was rolled back and dest is unchanged" % ", ".join(sorted(bad)))
        self.pg.commit()
        return self.result(True, tables, source_stats, verification, started, copied=copied, sequences=sequences)

    def load_parallel(self, tables, existing, source_stats):
        """Load through a staging schema with several connections, then swap it in with one short transaction.

        Workers (processes) copy chunks of the tables into the staging schema, compute the source checksums, build
        keys, indexes and foreign keys and the target checksums; each commits its own work, which stays invisible
        in the target schema. The swap (drop replaced tables, move the staged ones, reset sequences) is one
        transaction, so a failure or a kill before its COMMIT leaves the target as it was; the next run drops the
        leftover staging schema first.
        """
        staging = staging_schema_name(self.schema)
        cursor = self.pg.cursor()
        self.execute(cursor, sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(staging)))
        self.execute(cursor, sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(staging)))
        for table in tables:
            self.create_table(cursor, table, schema=staging)
        self.pg.commit()
        copied = dict((t.name, {"rows": 0, "seconds": 0.0}) for t in tables)
        jobs = self.parallel_jobs(tables, source_stats, staging)
        # Nothing open may cross the fork: the workers open their own connections.
        self.pg.close()
        self.source.close()
        self.pg = self.source = None
        target_stats = {}
        for outcome in self.run_jobs(jobs):
            job = outcome["job"]
            if job["kind"] == "checksum":
                source_stats[job["table"]] = (outcome["rows"], outcome["aggregates"], job["families"])
            elif job["kind"] == "target_checksum":
                target_stats[job["table"]] = outcome["aggregates"]
            else:
                copied[job["table"]]["rows"] += outcome["rows"]
                copied[job["table"]]["seconds"] += outcome["seconds"]
        self.source = open_source(self.src)
        self.pg = self.connect()
        cursor = self.pg.cursor()
        verification = None
        if self.verify:
            verification = self.verification(tables, source_stats, target_stats)
            if not verification["ok"]:
                bad = sorted(n for n, e in verification["tables"].items() if not e["match"])
                self.execute(cursor, sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(staging)))
                self.pg.commit()
                raise MigrationError("verification failed for tables %s (row counts or checksums differ); the "
                                     "staged copy was dropped and dest is unchanged" % ", ".join(bad))
        # The swap: one short transaction.
        self.execute(cursor, sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
        replaced = [t.name for t in tables if t.name in existing]
        if replaced:
            self.execute(cursor, sql.SQL("DROP TABLE {}").format(
                sql.SQL(", ").join(qualified(self.schema, n) for n in replaced)))
        for table in tables:
            self.execute(cursor, sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
                qualified(staging, table.name), sql.Identifier(self.schema)))
        self.execute(cursor, sql.SQL("DROP SCHEMA {}").format(sql.Identifier(staging)))
        sequences = []
        for table in tables:
            if any(c.identity for c in table.columns):
                sequences += self.reset_sequences(cursor, create_mapping(table), table.autoincrement_seq)
        self.pg.commit()
        return copied, sequences, verification

    def chunks(self, table):
        """Rowid ranges of about CHUNK_ROWS rows (one range for small tables and tables without rowid)."""
        rows = self.source.execute("SELECT count(*) FROM %s" % sqlite_quote(table.name)).fetchone()[0]
        if table.without_rowid or rows <= CHUNK_ROWS:
            return [("", rows)]
        low, high = self.source.execute("SELECT min(_rowid_), max(_rowid_) FROM %s"
                                        % sqlite_quote(table.name)).fetchone()
        count = -(-rows // CHUNK_ROWS)
        step = -(-(high - low + 1) // count)
        return [(" WHERE _rowid_ BETWEEN %d AND %d" % (start, min(start + step - 1, high)), rows // count)
                for start in range(low, high + 1, step)]

    def parallel_jobs(self, tables, source_stats, staging):
        """The work of a parallel load as jobs, each with the ids of the jobs it must wait for ("after").

        A table's keys and target checksum start as soon as its own chunks are in, and its foreign keys as soon as
        its keys and those of the tables it references exist, rather than after every table: on a few cores the
        last big table's index build otherwise runs alone while the other workers wait. ``size`` orders the ready
        jobs: a table's rows plus those of the tables whose foreign keys wait for its keys, so parents and big
        tables go first; the source checksums, which nothing waits for, fill the gaps at the end.
        """
        base = {"src": self.src, "dest": self.dest, "schema": self.schema, "staging": staging,
                "batch_size": self.batch_size}
        chunks = dict((t.name, self.chunks(t)) for t in tables)
        rows = dict((name, sum(size for _where, size in parts)) for name, parts in chunks.items())
        weight = dict(rows)
        for table in tables:
            for parent in set(fk["table"] for fk in table.foreign_keys):
                if parent in weight and parent != table.name:
                    weight[parent] += rows[table.name]
        jobs, keys = [], {}

        def add(**fields):
            jobs.append(dict(base, id=len(jobs), **fields))
            return len(jobs) - 1

        for table in tables:
            copies = [add(kind="copy", table=table.name, where=where, size=weight[table.name], after=[])
                      for where, _rows in chunks[table.name]]
            known = source_stats.get(table.name)
            if self.verify and (known is None or known[2] != create_mapping(table).families()):
                add(kind="checksum", table=table.name, size=0, after=[], families=create_mapping(table).families())
            # Finishing a table before copying more of the others shortens the chain to the foreign keys.
            keys[table.name] = add(kind="keys", table=table.name, size=weight[table.name] + 1, after=copies)
            if self.verify:
                add(kind="target_checksum", table=table.name, size=rows[table.name], after=copies)
        available = [t.name for t in tables]
        for table in tables:
            if table.foreign_keys:
                parents = [keys[fk["table"]] for fk in table.foreign_keys if fk["table"] in keys]
                add(kind="foreign", table=table.name, available=available, size=weight[table.name] + 1,
                    after=sorted(set([keys[table.name]] + parents)))
        return jobs

    def run_jobs(self, jobs):
        """Run the jobs in worker processes, at most ``workers`` at a time, each once its "after" jobs are done.

        Returns the outcomes in the order they finished; the first failure stops the other jobs (their work is
        staged only) and is raised.
        """
        if not jobs:
            return []
        context = multiprocessing.get_context("fork")
        pool = context.Pool(min(self.workers, len(jobs)), initializer=die_with_parent)
        finished = queue.Queue()
        pending = sorted(jobs, key=lambda job: -job["size"])
        done, outcomes, running = set(), [], 0
        try:
            while pending or running:
                ready = [job for job in pending if set(job["after"]) <= done]
                for job in ready[:max(0, self.workers - running)]:
                    pending.remove(job)
                    running += 1
                    pool.apply_async(run_job, (job,), callback=finished.put,
                                     error_callback=lambda error, job=job: finished.put(
                                         {"ok": False, "job": job, "error": "table %s: %s: %s" % (
                                             job["table"], type(error).__name__, mask(error, self.secrets))}))
                if not running:
                    raise MigrationError("internal error in db_migrate: jobs %s wait for jobs that never run; dest "
                                         "is unchanged (the next run drops the staging schema); please report it"
                                         % ", ".join("%s %s" % (job["kind"], job["table"]) for job in pending))
                outcome = finished.get()
                running -= 1
                outcomes.append(outcome)
                if not outcome["ok"]:
                    break  # the other jobs' work is staged only: stop them
                done.add(outcome["job"]["id"])
        finally:
            pool.terminate()
            pool.join()
        failures = [o for o in outcomes if not o["ok"]]
        for outcome in outcomes:
            self.statements.extend(s for s in outcome.get("statements", []) if s not in self.statements)
            self.warnings.extend(w for w in outcome.get("warnings", []) if w not in self.warnings)
        if failures:
            raise MigrationError(failures[0]["error"])
        return outcomes

    def verification(self, tables, source_stats, target_stats):
        entries = {}
        for table in tables:
            source_rows, source_aggregates, _families = source_stats[table.name]
            target = target_stats[table.name]
            entries[table.name] = {
                "target": table.name, "source_rows": source_rows, "target_rows": target[0],
                "source_checksum": checksum_digest(source_aggregates), "target_checksum": checksum_digest(target),
                "match": aggregates_match(source_aggregates, target)}
        return {"ok": all(e["match"] for e in entries.values()), "tables": entries}

    def load_create(self, cursor, tables, existing):
        self.execute(cursor, sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
        replaced = [t.name for t in tables if t.name in existing]
        if replaced:
            self.execute(cursor, sql.SQL("DROP TABLE {}").format(
                sql.SQL(", ").join(qualified(self.schema, n) for n in replaced)))
        copied = {}
        for table in tables:
            began = self.clock()
            rows = self.copy_table(cursor, create_mapping(table), qualified(self.schema, table.name),
                                   create=lambda table=table: self.create_table(cursor, table))
            copied[table.name] = {"rows": rows, "seconds": self.clock() - began}
        available = set(t.name for t in tables)
        for table in tables:
            began = self.clock()
            self.add_keys_and_indexes(cursor, table)
            copied[table.name]["seconds"] += self.clock() - began
        for table in tables:
            began = self.clock()
            self.add_foreign_keys(cursor, table, available)
            copied[table.name]["seconds"] += self.clock() - began
        sequences = []
        for table in tables:
            if any(c.identity for c in table.columns):
                sequences += self.reset_sequences(cursor, create_mapping(table), table.autoincrement_seq)
        return copied, sequences

    def load_existing(self, cursor, tables, mappings):
        """Copy into temporary tables typed like the source, then INSERT ... SELECT with casts to the target's types.

        Planning every INSERT before the TRUNCATE makes a column that cannot be cast fail before anything is written.
        """
        statements = []
        for index, table in enumerate(tables):
            mapping = mappings[table.name]
            temp_name = "db_migrate_%d" % index
            parts = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(column.pg_type))
                                       for column, name, _f, _t in mapping.columns)
            self.execute(cursor, sql.SQL("CREATE TEMPORARY TABLE {} ({}) ON COMMIT DROP").format(
                sql.Identifier(temp_name), parts))
            targets = sql.SQL(", ").join(sql.Identifier(name) for _c, name, _f, _t in mapping.columns)
            casts = sql.SQL(", ").join(sql.SQL("CAST({} AS {})").format(sql.Identifier(name), sql.SQL(target_type))
                                       for _c, name, _f, target_type in mapping.columns)
            insert = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
                qualified(self.schema, mapping.target_name), targets, casts, sql.Identifier(temp_name))
            cursor.execute("SAVEPOINT db_migrate_plan")
            try:
                cursor.execute(sql.SQL("EXPLAIN ") + insert)
            except psycopg.Error as error:
                cursor.execute("ROLLBACK TO SAVEPOINT db_migrate_plan")
                raise MigrationError("table %s: the source columns cannot be cast to the target's types: %s; "
                                     "nothing was written" % (table.name, error.diag.message_primary or error))
            cursor.execute("RELEASE SAVEPOINT db_migrate_plan")
            statements.append((table, mapping, temp_name, insert))
        self.execute(cursor, sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(
            qualified(self.schema, mappings[t.name].target_name) for t in tables)))
        copied = {}
        for table, mapping, temp_name, _insert in statements:
            began = self.clock()
            temp_mapping = Mapping(table, temp_name, list(mapping.columns))
            rows = self.copy_table(cursor, temp_mapping, sql.Identifier(temp_name))
            copied[table.name] = {"rows": rows, "seconds": self.clock() - began}
        for table, mapping, temp_name, insert in self.parents_first(cursor, statements):
            began = self.clock()
            try:
                self.execute(cursor, insert)
            except psycopg.Error as error:
                raise MigrationError("table %s: loading into %s.%s failed: %s; nothing was written"
                                     % (table.name, self.schema, mapping.target_name,
                                        error.diag.message_primary or error))
            copied[table.name]["seconds"] += self.clock() - began
        sequences = []
        for table, mapping, _temp, _insert in statements:
            sequences += self.reset_sequences(cursor, mapping, table.autoincrement_seq)
        return copied, sequences

    def parents_first(self, cursor, statements):
        """Order the inserts so tables referenced by foreign keys are filled before the tables referencing them."""
        cursor.execute("SELECT c.relname, p.relname FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid "
                       "JOIN pg_class p ON p.oid = k.confrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                       "WHERE k.contype = 'f' AND n.nspname = %s", (self.schema,))
        parents = {}
        for child, parent in cursor.fetchall():
            if child != parent:
                parents.setdefault(child, set()).add(parent)
        ordered, placed, pending = [], set(), list(statements)
        for _round in range(len(pending) + 1):
            if not pending:
                break
            waiting = []
            names = set(s[1].target_name for s in pending)
            for entry in pending:
                if parents.get(entry[1].target_name, set()) & (names - placed - {entry[1].target_name}):
                    waiting.append(entry)
                else:
                    ordered.append(entry)
                    placed.add(entry[1].target_name)
            if len(waiting) == len(pending):  # a cycle: keep the given order
                ordered += waiting
                waiting = []
            pending = waiting
        return ordered

    def compare(self, cursor, tables, mappings, source_stats):
        entries = {}
        for table in tables:
            mapping = mappings[table.name]
            source_rows, source_aggregates, families = source_stats[table.name]
            target = self.target_stats(cursor, mapping)
            if families != mapping.families():  # scanned for another layout of the target: scan again
                source_aggregates = source_checksum(self.source, table, mapping.families())[1]
            match = aggregates_match(source_aggregates, target)
            entries[table.name] = {
                "target": mapping.target_name,
                "source_rows": source_rows,
                "target_rows": target[0],
                "source_checksum": checksum_digest(source_aggregates),
                "target_checksum": checksum_digest(target),
                "match": match,
            }
        return {"ok": all(e["match"] for e in entries.values()), "tables": entries}

    def result(self, changed, tables, source_stats, verification, started, copied, sequences):
        per_table = []
        for table in tables:
            known = source_stats.get(table.name)
            entry = {"name": table.name, "rows": known[0] if known else 0}
            if table.name in copied:
                entry["rows"] = copied[table.name]["rows"]
                entry["seconds"] = round(copied[table.name]["seconds"], 3)
            per_table.append(entry)
        seconds = self.clock() - started
        total_rows = sum(e["rows"] for e in per_table)
        return {
            "changed": changed,
            "tables": per_table,
            "totals": {"tables": len(per_table), "rows": total_rows, "seconds": round(seconds, 3),
                       "rows_per_second": int(total_rows / seconds) if copied and seconds > 0 else 0},
            "verification": verification,
            "sequences": sequences,
            "statements": [mask(s, self.secrets) for s in self.statements],
            "warnings": self.warnings,
        }


def die_with_parent():
    """Pool initializer: a worker gets SIGKILL when the module process dies (Linux), so a killed run stops."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux/glibc: the workers end at their next task instead
        pass


def staging_schema_name(schema):
    """The staging schema of a target schema: stable, so a re-run finds and drops what a killed run left."""
    return "db_migrate_staging_" + hashlib.sha256(schema.encode("utf-8")).hexdigest()[:12]


def run_job(job):
    """One unit of a parallel load, run in a worker process with its own connections; returns a plain dict."""
    migration = Migration(job["src"], job["dest"], schema=job["staging"], batch_size=job["batch_size"], workers=1)
    began = time.monotonic()
    try:
        migration.source = open_source(job["src"])
        table = dict((t.name, t) for t in read_schema(migration.source))[job["table"]]
        outcome = {"ok": True, "job": job, "rows": 0}
        if job["kind"] == "checksum":
            outcome["rows"], outcome["aggregates"] = source_checksum(migration.source, table, job["families"])
            return outcome
        migration.pg = migration.connect(staged_only=True)
        cursor = migration.pg.cursor()
        if job["kind"] == "copy":
            table.where = job["where"]
            outcome["rows"] = migration.copy_table(cursor, create_mapping(table), qualified(job["staging"], table.name))
        elif job["kind"] == "keys":
            migration.add_keys_and_indexes(cursor, table)
        elif job["kind"] == "foreign":
            migration.add_foreign_keys(cursor, table, set(job["available"]))
        elif job["kind"] == "target_checksum":
            outcome["aggregates"] = migration.target_stats(cursor, create_mapping(table))
        migration.pg.commit()
        staging = sql.Identifier(job["staging"]).as_string(cursor)
        target = sql.Identifier(job["schema"]).as_string(cursor)
        # Report statements with the schema they end up in.
        outcome["statements"] = [s.replace(staging + ".", target + ".") for s in migration.statements]
        outcome["warnings"] = migration.warnings
        outcome["seconds"] = time.monotonic() - began
        return outcome
    except MigrationError as error:
        return {"ok": False, "job": job, "error": mask(error, migration.secrets)}
    except Exception as error:  # anything else still comes back masked, never as a traceback holding dest
        return {"ok": False, "job": job, "error": "table %s: %s: %s" % (
            job["table"], type(error).__name__, mask(error, migration.secrets))}
    finally:
        migration.close()
