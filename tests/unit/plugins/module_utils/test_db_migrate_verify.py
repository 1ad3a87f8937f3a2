"""db_migrate's exact verification against a real throw-away PostgreSQL (tests/unit/pg_server.py).

Each tamper test migrates a small source holding every type, changes the target the way the issue did (one byte in
the middle of a blob, the 9th character of a text, two rows' texts swapped, two integers or timestamps moved by +1
and -1, ...), and checks that ``verify`` fails naming the table and the primary key (and column) of a differing
row, and that a re-run refuses to call the target complete. Sums and samples would miss most of these.
"""

import datetime
import itertools
import math
import os
import re
import sqlite3

import pytest

psycopg = pytest.importorskip("psycopg")

from ansible_collections.positops.ha.plugins.module_utils._db_migrate import sqlite_source, stream, verify  # noqa: E402
from ansible_collections.positops.ha.plugins.module_utils._db_migrate.common import MigrationError  # noqa: E402
from ansible_collections.positops.ha.plugins.module_utils._db_migrate.migration import Migration  # noqa: E402

from tests.unit.pg_server import postgres_server  # noqa: E402,F401  pylint: disable=unused-import

_databases = itertools.count()


@pytest.fixture
def dest(postgres_server):  # noqa: F811
    name = "dbm_verify_%d" % next(_databases)
    postgres_server.create_database(name)
    return postgres_server.uri(name)


def make_source(path, script, rows=()):
    if os.path.exists(str(path)):
        os.remove(str(path))
    connection = sqlite3.connect(str(path))
    connection.executescript(script)
    for statement, values in rows:
        connection.executemany(statement, values)
    connection.commit()
    connection.close()
    return str(path)


def execute(uri, statement, params=None):
    with psycopg.connect(uri) as connection:
        connection.execute("SET TIME ZONE 'UTC'")
        connection.execute(statement, params)


def query(uri, statement, params=None):
    with psycopg.connect(uri) as connection:
        return connection.execute(statement, params).fetchall()


EVERY_TYPE = """
    CREATE TABLE t (id INTEGER PRIMARY KEY, i INT, r REAL, tx TEXT, uni TEXT, b BLOB, flag BOOLEAN, ts DATETIME,
                    tstz TIMESTAMPTZ, d DATE, n NUMERIC, maybe TEXT);
"""
EVERY_TYPE_ROWS = [
    (1, 10, 0.1, "first text value", "ünïcödé 日本語 🙂 one", b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09",
     1, "2023-05-06 07:08:09.123456", "2023-05-06T07:08:09+02:00", "2023-05-06", "12.25", ""),
    (2, 20, -2.5, "second value!!", "ünïcödé 日本語 🙂 two", b"\xff" * 10,
     0, "1999-12-31 23:59:59", "1999-12-31T23:59:59Z", "1999-12-31", 7, None),
    (3, -30, 0.0, "third value ...", "ünïcödé 日本語 🙂 3", b"abcdefghij",
     "true", "2000-02-29 00:00:00.5", 1700000000, "2000-02-29", 0.5, "x"),
    (4, 9223372036854775806, 1e300, "fourth value ..", "ünïcödé 日本語 🙂 4", b"",
     "false", "2038-01-19 03:14:07", "2038-01-19T03:14:07Z", "2038-01-19", "-1.5", "y"),
]

INSERT_EVERY_TYPE = "INSERT INTO t VALUES (%s)" % ", ".join("?" * 12)

# (what is changed, SQL run on the target, the row and column verify must name)
TAMPERS = [
    ("one byte in the middle of a blob", "UPDATE t SET b = overlay(b placing '\\x77'::bytea from 5 for 1) WHERE id = 3",
     r"row with primary key \(id=3\) differs in column b"),
    ("the 9th character of a text", "UPDATE t SET tx = overlay(tx placing 'X' from 9 for 1) WHERE id = 2",
     r"row with primary key \(id=2\) differs in column tx"),
    ("the 9th character of a unicode text", "UPDATE t SET uni = overlay(uni placing 'ö' from 9 for 1) WHERE id = 1",
     r"row with primary key \(id=1\) differs in column uni"),
    ("two rows' texts swapped",
     "UPDATE t SET tx = CASE id WHEN 1 THEN 'second value!!' ELSE 'first text value' END WHERE id IN (1, 2)",
     r"row with primary key \(id=1\) differs in column tx"),
    ("two integers moved by +1 and -1", "UPDATE t SET i = i + CASE id WHEN 1 THEN 1 ELSE -1 END WHERE id IN (1, 2)",
     r"row with primary key \(id=1\) differs in column i"),
    ("a bigint near its maximum moved by -1", "UPDATE t SET i = i - 1 WHERE id = 4",
     r"row with primary key \(id=4\) differs in column i"),
    ("two timestamps moved by +1 s and -1 s",
     "UPDATE t SET ts = ts + CASE id WHEN 1 THEN interval '1 second' ELSE interval '-1 second' END WHERE id IN (1, 2)",
     r"row with primary key \(id=1\) differs in column ts"),
    ("a timestamp moved by one microsecond", "UPDATE t SET ts = ts + interval '1 microsecond' WHERE id = 3",
     r"row with primary key \(id=3\) differs in column ts"),
    ("two timestamps with time zone moved by +1 s and -1 s",
     "UPDATE t SET tstz = tstz + CASE id WHEN 3 THEN interval '1 second' ELSE interval '-1 second' END "
     "WHERE id IN (3, 4)", r"row with primary key \(id=3\) differs in column tstz"),
    ("two dates moved by +1 and -1 day", "UPDATE t SET d = d + CASE id WHEN 1 THEN 1 ELSE -1 END WHERE id IN (1, 2)",
     r"row with primary key \(id=1\) differs in column d"),
    ("two booleans swapped", "UPDATE t SET flag = NOT flag WHERE id IN (1, 2)",
     r"row with primary key \(id=1\) differs in column flag"),
    ("two numerics moved by +0.01 and -0.01",
     "UPDATE t SET n = n + CASE id WHEN 1 THEN 0.01 ELSE -0.01 END WHERE id IN (1, 2)",
     r"row with primary key \(id=1\) differs in column n"),
    ("two reals moved by +1 and -1", "UPDATE t SET r = r + CASE id WHEN 1 THEN 1 ELSE -1 END WHERE id IN (1, 2)",
     r"row with primary key \(id=1\) differs in column r"),
    ("a real's last bit", "UPDATE t SET r = %s WHERE id = 1" % repr(math.nextafter(0.1, 1)),
     r"row with primary key \(id=1\) differs in column r"),
    ("zero made negative zero", "UPDATE t SET r = '-0' WHERE id = 3",
     r"row with primary key \(id=3\) differs in column r"),
    ("an empty text made NULL", "UPDATE t SET maybe = NULL WHERE id = 1",
     r"row with primary key \(id=1\) differs in column maybe"),
    ("a NULL made an empty text", "UPDATE t SET maybe = '' WHERE id = 2",
     r"row with primary key \(id=2\) differs in column maybe"),
    ("a missing row", "DELETE FROM t WHERE id = 3", r"row with primary key \(id=3\) is missing from the target"),
    ("an extra row", "INSERT INTO t (id, i) VALUES (99, 1)",
     r"row with primary key \(id=99\) is in the target but not in the source"),
    ("a moved key", "UPDATE t SET id = 100 WHERE id = 4",
     r"row with primary key \(id=4\) is missing from the target, and row with primary key \(id=100\) is in the "
     r"target but not in the source"),
]


@pytest.mark.parametrize("what, change, named", TAMPERS, ids=[t[0] for t in TAMPERS])
def test_every_tamper_of_every_type_fails_verify_and_blocks_a_rerun(tmp_path, dest, what, change, named):
    src = make_source(tmp_path / "every.db", EVERY_TYPE, [(INSERT_EVERY_TYPE, EVERY_TYPE_ROWS)])
    first = Migration(src, dest, workers=2).run()
    assert first["verification"]["ok"] is True
    assert Migration(src, dest).run("verify")["verification"]["ok"] is True
    execute(dest, change)

    result = Migration(src, dest).run("verify")
    entry = result["verification"]["tables"]["t"]
    assert result["verification"]["ok"] is False, what
    assert entry["match"] is False
    assert entry["source_checksum"] != entry["target_checksum"] or entry["source_rows"] != entry["target_rows"]
    assert entry["difference"] is not None
    assert re.search(named, entry["difference"]), entry["difference"]
    assert result["statements"] == []
    # A re-run does not take the tampered target for a completed migration.
    with pytest.raises(MigrationError, match=r"target tables already hold rows that differ from src: t in schema "
                                             r"public; nothing was written"):
        Migration(src, dest).run()
    again = Migration(src, dest, if_exists="truncate").run()
    assert again["changed"] is True and again["verification"]["ok"] is True


COMPOSITE = """
    CREATE TABLE tags (package TEXT NOT NULL, tag TEXT NOT NULL, weight REAL, note BLOB,
                       PRIMARY KEY (package, tag)) WITHOUT ROWID;
    CREATE TABLE log (at TEXT, level INTEGER, message TEXT);
    CREATE TABLE events (at DATETIME PRIMARY KEY, what TEXT);
"""
COMPOSITE_ROWS = [
    ("INSERT INTO tags VALUES (?, ?, ?, ?)",
     [("Ålesund", "b", 0.25, b"\x01"), ("Zeta", "a", None, None), ("alpha", "Z", 1.5, b"\x00\x00"),
      ("alpha", "a", 2.5, b""), ("日本", "ü", -1.0, b"\xff"), ("alpha", "ab", 3.0, b"x")]),
    ("INSERT INTO log VALUES (?, ?, ?)",
     [("2023-01-01", 1, "same"), ("2023-01-01", 1, "same"), ("2023-01-02", 2, "other")]),
    ("INSERT INTO events VALUES (?, ?)",
     [("2023-01-01T10:00:00+02:00", "a"), ("2023-01-01 09:00:00", "b"), ("2023-01-01 08:30:00.250", "c")]),
]


@pytest.mark.parametrize("table, change, named", [
    ("tags", "UPDATE tags SET weight = weight + 0.5 WHERE package = 'alpha' AND tag = 'Z'",
     r"row with primary key \(package='alpha', tag='Z'\) differs in column weight"),
    ("tags", "UPDATE tags SET note = '\\x02' WHERE package = 'Ålesund'",
     r"row with primary key \(package='Ålesund', tag='b'\) differs in column note"),
    ("tags", "DELETE FROM tags WHERE package = '日本'",
     r"row with primary key \(package='日本', tag='ü'\) is missing from the target"),
    # No key: the table is compared as a set of row digests; a duplicate row removed still shows.
    ("log", "DELETE FROM log WHERE ctid = (SELECT min(ctid) FROM log WHERE message = 'same')",
     r"a row \(at='2023-01-01', level=1, message='same'\) is missing from the target"),
    ("log", "UPDATE log SET level = 3 WHERE message = 'other'",
     r"a row \(at='2023-01-02', level=2, message='other'\) is missing from the target, and a row "
     r"\(at='2023-01-02', level=3, message='other'\) is in the target but not in the source"),
    # A timestamp key sorts differently once converted: compared unordered, still named by its key.
    ("events", "UPDATE events SET what = 'B' WHERE what = 'b'",
     r"row with primary key \(at=2023-01-01 09:00:00\) differs in column what"),
])
def test_composite_text_keys_and_tables_without_a_sortable_key(tmp_path, dest, table, change, named):
    src = make_source(tmp_path / "composite.db", COMPOSITE, COMPOSITE_ROWS)
    result = Migration(src, dest).run()
    assert result["verification"]["ok"] is True
    assert Migration(src, dest, workers=1).run()["changed"] is False
    execute(dest, change)
    result = Migration(src, dest).run("verify")
    entries = result["verification"]["tables"]
    assert [name for name, entry in entries.items() if not entry["match"]] == [table]
    assert re.search(named, entries[table]["difference"]), entries[table]["difference"]


def test_a_tamper_deep_in_a_sliced_table_is_found_in_its_slice(tmp_path, dest, monkeypatch):
    monkeypatch.setattr(sqlite_source, "SLICE_ROWS", 300)
    src = make_source(tmp_path / "sliced.db", "CREATE TABLE big (id INTEGER PRIMARY KEY, v TEXT, at DATETIME);",
                      [("INSERT INTO big VALUES (?, ?, ?)",
                        ((i, "value %d" % i, "2020-01-01 00:00:%02d" % (i % 60)) for i in range(1, 3001)))])
    result = Migration(src, dest, workers=2).run()
    copies = [s for s in result["statements"] if s.startswith("COPY")]
    assert copies == ['COPY "public"."big" ("id", "v", "at") FROM STDIN (FORMAT BINARY)']
    assert result["tables"][0]["rows"] == 3000 and result["verification"]["ok"] is True
    execute(dest, "UPDATE big SET at = at + interval '1 second' WHERE id = 2222")
    entry = Migration(src, dest, workers=2).run("verify")["verification"]["tables"]["big"]
    assert entry["difference"] == "row with primary key (id=2222) differs in column at"
    assert entry["source_rows"] == entry["target_rows"] == 3000


PRODUCT_SCHEMA = """
    CREATE TABLE users (id serial PRIMARY KEY, email varchar(200) NOT NULL UNIQUE, created timestamptz,
                        extra jsonb, token uuid, score real);
"""


def product_source(tmp_path):
    return make_source(tmp_path / "product.db", """
        CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, created DATETIME, extra TEXT, token TEXT,
                            score REAL);
    """, [("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?)", [
        (1, "a@example.com", "2023-01-01 00:00:00", '{"k": [1, 2]}', "0B7C9B4E-7D1C-4A55-9A57-8F0F4B9C2D10", 0.1),
        (2, "b@example.com", None, None, None, None),
        (3, "c@example.com", "2023-01-02 03:04:05.678", '{"z": 1, "a": 2}', "6f1d6f38-2c43-4e7e-b8a8-2f6c0c1b6a11",
         1.5)])])


@pytest.mark.parametrize("change, named", [
    ("UPDATE users SET extra = '{\"k\": [1, 3]}' WHERE id = 1", r"\(id=1\) differs in column extra"),
    ("UPDATE users SET token = '6f1d6f38-2c43-4e7e-b8a8-2f6c0c1b6a12' WHERE id = 3", r"\(id=3\) differs in column token"),
    ("UPDATE users SET score = 0.2 WHERE id = 1", r"\(id=1\) differs in column score"),
    ("UPDATE users SET email = 'B@example.com' WHERE id = 2", r"\(id=2\) differs in column email"),
    ("UPDATE users SET created = created + interval '1 second' WHERE id = 3", r"\(id=3\) differs in column created"),
])
def test_existing_tables_of_other_types_are_compared_exactly_in_the_target_types(tmp_path, dest, change, named):
    execute(dest, PRODUCT_SCHEMA)
    src = product_source(tmp_path)
    result = Migration(src, dest, layout="existing").run()
    assert result["verification"]["ok"] is True, result["verification"]
    # jsonb normalises the text and uuid lower-cases it: equal after the documented conversion, so complete.
    assert Migration(src, dest, layout="existing").run()["changed"] is False
    execute(dest, change)
    entry = Migration(src, dest).run("verify")["verification"]["tables"]["users"]
    assert entry["match"] is False
    assert re.search(named, entry["difference"]), entry["difference"]


def test_a_difference_found_while_loading_rolls_back(tmp_path, dest, monkeypatch):
    """A load whose staged copy does not read back as sent fails and leaves the target as it was."""
    src = make_source(tmp_path / "load.db", EVERY_TYPE, [(INSERT_EVERY_TYPE, EVERY_TYPE_ROWS)])
    real = verify.copy_out_statement

    def tampered(plan, relation, source_slice, domain):
        statement = real(plan, relation, source_slice, domain)
        # Read the staged table back with one value changed, as a broken load would have stored it.
        return psycopg.sql.SQL(statement.as_string(None).replace('"tx"', "replace(\"tx\", 'second', 'secnod')", 1))

    monkeypatch.setattr(verify, "copy_out_statement", tampered)
    with pytest.raises(MigrationError, match=r"verification failed, table t: row with primary key \(id=2\) differs "
                                             r"in column tx; the staged copy was dropped and dest is unchanged"):
        Migration(src, dest, workers=1).run()
    assert query(dest, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]
    assert query(dest, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'db\\_migrate%%'") == [(0,)]


# ---- the pieces, without a database


def test_row_splitter_cuts_a_stream_fed_in_any_pieces():
    rows = [b"\x00\x02\x00\x00\x00\x01a\xff\xff\xff\xff", b"\x00\x01\x00\x00\x00\x03xyz", b"\x00\x00"]
    data = stream.SIGNATURE + b"\x00" * 8 + b"".join(rows) + b"\xff\xff"
    for size in (1, 2, 5, len(data)):
        seen = []
        splitter = stream.RowSplitter(seen.append)
        for start in range(0, len(data), size):
            splitter.feed(data[start:start + size])
        assert seen == rows
    assert stream.split_fields(rows[0]) == [b"a", None]


def test_unordered_digest_ignores_order_but_not_values():
    rows = [b"\x00\x01\x00\x00\x00\x01a", b"\x00\x01\x00\x00\x00\x01b", b"\x00\x01\x00\x00\x00\x01c"]

    def digest(ordered_rows):
        result = stream.StreamDigest(ordered=False)
        result.update(stream.SIGNATURE + b"\x00" * 8 + b"".join(ordered_rows) + b"\xff\xff")
        return result.rows, result.hexdigest()

    assert digest(rows) == digest(list(reversed(rows)))
    assert digest(rows) != digest(rows[:2] + [b"\x00\x01\x00\x00\x00\x01d"])
    assert digest(rows) != digest(rows + rows[:1])


def test_difference_decodes_keys_and_values():
    plan = {"columns": [{"source": "id", "type": "int8"}, {"source": "at", "type": "timestamp"}], "key": [0]}

    def row(key, micros):
        return (b"\x00\x02\x00\x00\x00\x08" + key.to_bytes(8, "big", signed=True) + b"\x00\x00\x00\x08"
                + micros.to_bytes(8, "big", signed=True))

    assert verify.describe_difference(plan, "source", [row(1, 0), row(2, 5)], [row(1, 0), row(2, 6)]) == \
        "row with primary key (id=2) differs in column at"
    assert verify.describe_difference(plan, "source", [row(1, 0)], []) == \
        "row with primary key (id=1) is missing from the target"
    plan["key"] = []
    assert verify.describe_difference(plan, "source", [], [row(7, 1000000)]) == \
        "a row (id=7, at=2000-01-01 00:00:01) is in the target but not in the source"
    assert datetime.datetime(2000, 1, 1) == verify.PG_EPOCH
