# -*- coding: utf-8 -*-
# Copyright: positops.ha maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!
"""Reading a slice of a source table and writing it as a binary COPY stream, digested on the way.

One loop serves the load and the verification: the rows of a slice, in key order, go through psycopg's binary COPY
formatter either to PostgreSQL (``COPY ... FROM STDIN``) or to no one; in both cases the bytes of the stream are
digested (:class:`StreamDigest`), so a load knows the digest of exactly what it sent and a verification computes
the same digest without sending anything. PostgreSQL's ``COPY (SELECT ... ORDER BY key) TO STDOUT (FORMAT BINARY)``
gives back the very same bytes for the same rows (see verify.py).

Fast mode sends values as SQLite returns them (booleans, dates and timestamps of the common shapes converted) and
gives up at the first value that does not fit; careful mode then plans a cast for each column holding other
storage classes, converts every shape the converters know, and names the row of a value PostgreSQL cannot store.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import gc
import hashlib
import sqlite3
import struct

from ansible_collections.positops.ha.plugins.module_utils._db_migrate.common import (
    LibpqWriter,
    MigrationError,
    Writer,
    psycopg,
    sql,
)
from ansible_collections.positops.ha.plugins.module_utils._db_migrate.convert import (
    NOT_FAST,
    PG_TYPES,
    copy_type,
    locate_conversion_error,
    row_converter,
)
from ansible_collections.positops.ha.plugins.module_utils._db_migrate.sqlite_source import (
    describe_row,
    foreign_storage_classes,
    locate_bad_utf8,
    plan_storage_classes,
    read_query,
)
from ansible_collections.positops.ha.plugins.module_utils._db_migrate.target import copy_error, qualified

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
HEADER_SIZE = 19  # signature, flags (int32), header extension length (int32)
HEADER = SIGNATURE + b"\x00" * 8
TRAILER = b"\xff\xff"
ROW_DIGEST_MODULUS = 1 << 64
_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")


class NotFast(Exception):
    """A value did not fit the fast path: read the slice again in careful mode."""


# ---- digests of a stream


class RowSplitter:
    """Cuts a binary COPY stream, fed in pieces of any size, into the bytes of each row (header and trailer off)."""

    def __init__(self, on_row):
        self.on_row = on_row
        self.pending = bytearray()
        self.in_header = True

    def feed(self, data):
        buf = self.pending
        buf += data
        size = len(buf)
        pos = 0
        if self.in_header:
            if size < HEADER_SIZE:
                return
            if bytes(buf[:len(SIGNATURE)]) != SIGNATURE:
                raise MigrationError("internal error in db_migrate: a COPY stream without the binary signature")
            pos = HEADER_SIZE + _INT32.unpack_from(buf, 15)[0]
            if size < pos:
                return
            self.in_header = False
        while size - pos >= 2:
            fields = _INT16.unpack_from(buf, pos)[0]
            if fields < 0:  # the trailer
                pos += 2
                break
            end = pos + 2
            for _field in range(fields):
                if size - end < 4:
                    end = size + 1
                    break
                length = _INT32.unpack_from(buf, end)[0]
                end += 4 + (length if length > 0 else 0)
            if end > size:
                break
            self.on_row(bytes(buf[pos:end]))
            pos = end
        del buf[:pos]


def split_fields(row):
    """The fields of one row of a binary COPY stream: bytes, or None for NULL."""
    fields = []
    pos = 2
    for _field in range(_INT16.unpack_from(row, 0)[0]):
        length = _INT32.unpack_from(row, pos)[0]
        pos += 4
        if length < 0:
            fields.append(None)
        else:
            fields.append(bytes(row[pos:pos + length]))
            pos += length
    return fields


class StreamDigest:
    """The digest of a binary COPY stream.

    Ordered (the rows come in key order on both sides): SHA-256 of every byte, header and trailer included.
    Unordered (no key both engines sort alike): the sum modulo 2**64 of a 64-bit BLAKE2b digest of each row's
    bytes, so the order of the rows does not matter but every value of every row does. ``keep`` (a list) also
    collects each row's bytes, for finding the first differing row.
    """

    def __init__(self, ordered, keep=None):
        self.ordered = ordered
        self.rows = 0
        self._sha = hashlib.sha256() if ordered else None
        self._sum = 0
        self._keep = keep
        self._splitter = RowSplitter(self._add_row) if (keep is not None or not ordered) else None

    @property
    def sink(self):
        """What to hand each piece of the stream to: SHA-256's own update() when that is all there is to do (a
        Python call less a row of a read-back, which arrives one message a row)."""
        return self._sha.update if self._splitter is None else self.update

    def update(self, data):
        if self._sha is not None:
            self._sha.update(data)
        if self._splitter is not None:
            self._splitter.feed(data)

    def _add_row(self, row):
        self.rows += 1
        if self._keep is not None:
            self._keep.append(row)
        if not self.ordered:
            self._sum = (self._sum + int.from_bytes(hashlib.blake2b(row, digest_size=8).digest(), "big")) \
                % ROW_DIGEST_MODULUS

    def hexdigest(self):
        return self._sha.hexdigest() if self.ordered else "%016x" % self._sum


class _DigestOnlyWriter(Writer):
    """A COPY writer that digests the stream and sends it nowhere."""

    def __init__(self, digest):
        self.digest = digest

    def write(self, data):
        self.digest.update(data)


class _SendingWriter(LibpqWriter):
    """psycopg's writer to the server, digesting every buffer it sends."""

    def __init__(self, cursor, digest):
        super(_SendingWriter, self).__init__(cursor)
        self.digest = digest

    def write(self, data):
        self.digest.update(data)
        super(_SendingWriter, self).write(data)


# ---- the loop


def _direct_formatter(copy, width):
    """psycopg's C row formatter and the copy's transformer, or None when this psycopg does not offer them.

    Copy.write_row() makes this very call through two Python methods; calling it directly saves them (175 ns a row
    measured, about a tenth of the client's work on the benchmark). Both are psycopg internals, so they are probed
    once with a row of NULLs, whose bytes the binary COPY format fixes, before being trusted.
    """
    try:
        from psycopg import _copy_base

        formatter = _copy_base.format_row_binary
        transformer = copy.formatter.transformer
        probe = bytearray()
        formatter([None] * width, transformer, probe)
    except Exception:  # any other psycopg: write_row() it is
        return None
    if bytes(probe) != _INT16.pack(width) + b"\xff\xff\xff\xff" * width:
        return None
    return formatter, transformer


def copy_types(columns, careful):
    return [copy_type(c.kind, not careful) for c in columns]


def write_slice(copy, session, table, columns, source_slice, careful):
    """Write one slice's rows of ``columns`` to ``copy`` (a psycopg Copy with copy_types() set); return the row count.

    Raises NotFast in fast mode at the first value that does not fit; MigrationError in careful mode.
    """
    source = session.source
    if careful:
        plan_storage_classes(source, table, foreign_storage_classes(source, table))
    else:
        for column in table.columns:
            column.select_cast = None
    try:
        source.text_factory = str if careful else bytes
        return _write_rows(copy, session, table, columns, source_slice, careful)
    finally:
        source.text_factory = str


def _write_rows(copy, session, table, columns, source_slice, careful):
    source = session.source
    query, params = read_query(table, columns, source_slice)
    convert = row_converter([c.kind for c in columns], fast=not careful)
    direct = _direct_formatter(copy, len(columns))
    if direct is not None:
        format_row, transformer = direct
        buffer = bytearray(HEADER)  # block mode: Copy.write() sends what it is given, signature and trailer included

        def write_row(row):
            format_row(row, transformer, buffer)
    else:
        write_row = copy.write_row
    clock = session.clock
    batch_size = session.batch_size
    position = 0
    read_seconds = convert_seconds = 0.0
    collecting = gc.isenabled()
    gc.disable()  # rows hold no reference cycles; the collector's passes over them only slow the loop
    try:
        cursor = source.execute(query, params)
        while True:
            began = clock()
            try:
                rows = cursor.fetchmany(batch_size)
            except sqlite3.OperationalError as error:
                raise decode_error(session, table, source_slice, position, error)
            fetched = clock()
            read_seconds += fetched - began
            if not rows:
                break
            if convert is not None:
                try:
                    rows = list(map(convert, rows))
                except NOT_FAST:
                    if not careful:
                        raise NotFast()
                    raise conversion_error(session, table, columns, source_slice, position, rows, convert)
                convert_seconds += clock() - fetched
            if careful:
                for offset, row in enumerate(rows):
                    try:
                        write_row(row)
                    except (TypeError, ValueError, OverflowError) as error:
                        raise MigrationError("table %s: %s cannot be stored in PostgreSQL: %s" % (
                            table.name, describe_row(source, table, position + offset, source_slice), error))
            elif direct is not None:
                try:
                    for row in rows:
                        format_row(row, transformer, buffer)
                except NOT_FAST:
                    raise NotFast()
            else:
                try:
                    for row in rows:
                        write_row(row)
                except NOT_FAST:
                    raise NotFast()
            if direct is not None:
                copy.write(buffer)
                buffer = bytearray()
            position += len(rows)
        if direct is not None:
            copy.write(buffer + TRAILER)
    finally:
        if collecting:
            gc.enable()
    session.add_time("read", read_seconds)
    session.add_time("convert", convert_seconds)
    return position


def conversion_error(session, table, columns, source_slice, position, rows, convert):
    for offset, row in enumerate(rows):
        try:
            convert(row)
        except (TypeError, ValueError, OverflowError):
            name, why = locate_conversion_error(columns, row)
            kind = dict((c.name, c.kind) for c in columns).get(name)
            return MigrationError("table %s, column %s, %s: %s; PostgreSQL cannot store it as %s; fix the row in "
                                  "the source" % (table.name, name, describe_row(session.source, table,
                                                                                 position + offset, source_slice),
                                                  why, PG_TYPES.get(kind, "declared")))
    return MigrationError("table %s: a value could not be converted" % table.name)


def decode_error(session, table, source_slice, position, error):
    if "decode" not in str(error).lower():
        return MigrationError("reading table %s from src failed: %s" % (table.name, error))
    row_position, column, why = locate_bad_utf8(session.source, table, position, source_slice)
    where = describe_row(session.source, table, row_position, source_slice) if row_position is not None else "a row"
    return MigrationError("table %s, column %s, %s: text is not valid UTF-8 (%s); PostgreSQL cannot store it "
                          "as text: fix the row in the source" % (table.name, column, where, why))


# ---- the two uses: COPY into PostgreSQL, or the digest alone


def copy_slice(session, cursor, mapping, schema, source_slice, ordered):
    """COPY one slice of a source table into ``schema``; return (rows, digest of the stream sent).

    Each attempt runs in a savepoint, so a fast attempt that gives up leaves nothing behind.
    """
    table = mapping.table
    columns = [m.column for m in mapping.columns]
    names = sql.SQL(", ").join(sql.Identifier(m.target_name) for m in mapping.columns)
    target = qualified(schema, mapping.target_name)
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(target, names)
    session.record(cursor, statement)
    began = session.clock()
    client = session.timings.get("read", 0.0) + session.timings.get("convert", 0.0)
    for careful in (False, True):
        cursor.execute("SAVEPOINT db_migrate_copy")
        digest = StreamDigest(ordered)
        try:
            with cursor.copy(statement, writer=_SendingWriter(cursor, digest)) as copy:
                copy.set_types(copy_types(columns, careful))
                rows = write_slice(copy, session, table, columns, source_slice, careful)
        except NotFast:
            cursor.execute("ROLLBACK TO SAVEPOINT db_migrate_copy")
            continue
        except psycopg.Error as error:
            cursor.execute("ROLLBACK TO SAVEPOINT db_migrate_copy")
            if not careful:
                continue
            raise copy_error(session, table, source_slice, error)
        cursor.execute("RELEASE SAVEPOINT db_migrate_copy")
        client = session.timings.get("read", 0.0) + session.timings.get("convert", 0.0) - client
        session.add_time("copy", session.clock() - began - client)
        return rows, digest.hexdigest()
    raise MigrationError("table %s could not be copied" % table.name)  # careful mode raises first


def source_digest(session, mapping, source_slice, ordered, keep=None):
    """The digest of the stream a load of this slice would send, computed without sending it: (rows, digest)."""
    table = mapping.table
    columns = [m.column for m in mapping.columns]
    cursor = session.pg.cursor()  # for its adapters only: nothing is sent
    for careful in (False, True):
        kept = [] if keep is not None else None
        digest = StreamDigest(ordered, kept)
        try:
            with psycopg.Copy(cursor, binary=True, writer=_DigestOnlyWriter(digest)) as copy:
                copy.set_types(copy_types(columns, careful))
                rows = write_slice(copy, session, table, columns, source_slice, careful)
        except NotFast:
            continue
        if keep is not None:
            keep.extend(kept)
        return rows, digest.hexdigest()
    raise MigrationError("table %s could not be read" % table.name)  # careful mode raises first
