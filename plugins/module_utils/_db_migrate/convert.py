# -*- coding: utf-8 -*-
# Copyright: positops.ha maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!
"""Value conversion: the kind of each SQLite declared type and how its values become PostgreSQL values.

A kind (``integer``, ``real``, ``text``, ``blob``, ``boolean``, ``timestamp``, ``timestamptz``, ``date``,
``numeric``) fixes the PostgreSQL type of a column in the "create" layout and the binary COPY type its values are
sent as. Integers, reals, text and blobs go to psycopg's C dumpers as SQLite returns them; booleans, timestamps,
dates and numerics are converted in Python first. Everything here is pure: no database is touched.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import decimal
import re

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
# Kinds whose order in SQLite (BINARY collation) is the order of the PostgreSQL values they become (C collation
# for text), so both sides can stream a table in primary key order. Converted kinds (a timestamp written with an
# offset, a numeric stored as text) may sort differently once converted.
ORDERED_KINDS = ("integer", "real", "text", "blob")


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


def to_boolean(value):
    if value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in TRUTHY:
            return True
        if lowered in FALSY:
            return False
    raise ValueError("%r is not a boolean (0/1, true/false)" % (value,))


def to_timestamp(value, aware):
    """A timestamp from ISO 8601 text (an offset is converted to UTC) or from epoch seconds."""
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


def to_date(value):
    if isinstance(value, str):
        try:
            return datetime.date.fromisoformat(value.strip()[:10])
        except ValueError:
            raise ValueError("%r is not an ISO 8601 date" % (value,))
    return to_timestamp(value, False).date()


def to_numeric(value):
    if isinstance(value, float):
        return decimal.Decimal(repr(value))
    try:
        return decimal.Decimal(value if isinstance(value, (int, str)) else str(value))
    except decimal.InvalidOperation:
        raise ValueError("%r is not a number" % (value,))


CONVERTERS = {
    "boolean": to_boolean,
    "timestamp": lambda v: to_timestamp(v, False),
    "timestamptz": lambda v: to_timestamp(v, True),
    "date": to_date,
    "numeric": to_numeric,
}


# Fast mode reads text as bytes (UTF-8, as SQLite stores it), which saves decoding it into str and encoding it
# again for a text column (measured 25% of the client CPU of a table with four text columns). Its converters take
# the common shapes only; anything else raises and the table goes to careful mode, which reads str.


def _fast_timestamp(value):
    # An offset makes an aware datetime, which psycopg refuses for a timestamp column: careful mode converts it.
    return datetime.datetime.fromisoformat(value.decode("ascii"))


def _fast_date(value):
    return datetime.date.fromisoformat(value.decode("ascii"))


def _fast_numeric(value):
    return to_numeric(value.decode("ascii") if isinstance(value, bytes) else value)


FAST_CONVERTERS = dict(CONVERTERS, timestamp=_fast_timestamp, date=_fast_date, numeric=_fast_numeric)
# What a fast converter raises for a value it does not take (an integer has no decode()).
NOT_FAST = (TypeError, ValueError, OverflowError, AttributeError)


def copy_type(kind, fast):
    """The binary COPY type values of a kind are sent as: text travels as bytes in fast mode (the same bytes)."""
    return "bytea" if fast and kind == "text" else COPY_TYPES[kind]


def row_converter(kinds, fast=False):
    """A function converting a fetched row for binary COPY, or None when every value goes as it is."""
    functions = FAST_CONVERTERS if fast else CONVERTERS
    plan = [(i, functions[k]) for i, k in enumerate(kinds) if k in functions]
    if not plan:
        return None
    if len(plan) == 1:  # the usual case (one timestamp column), without the loop
        index, function = plan[0]

        def convert_one(row):
            values = list(row)
            value = values[index]
            if value is not None:
                values[index] = function(value)
            return values

        return convert_one

    def convert(row):
        values = list(row)
        for position, function in plan:
            value = values[position]
            if value is not None:
                values[position] = function(value)
        return values

    return convert


def locate_conversion_error(columns, row):
    """The column of a row whose value the careful converters refuse, and why."""
    for position, column in enumerate(columns):
        function = CONVERTERS.get(column.kind)
        value = row[position]
        if function and value is not None:
            try:
                function(value)
            except ValueError as error:
                return column.name, str(error)
    return "?", "unconvertible value"
