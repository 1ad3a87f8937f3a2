"""Generate a SQLite database shaped like a Posit product's: several tables, realistic types, NULLs.

Tables (share of the rows): packages 30%, downloads 55%, users 5%, package_tags 10% (WITHOUT ROWID, composite key).
Types: INTEGER keys and counters, TEXT names and unicode descriptions, REAL scores, BLOB checksums, DATETIME
timestamps as ISO text, BOOLEAN flags, NULLs in optional columns. Deterministic for a given seed.
"""

import datetime
import os
import random
import sqlite3

SCHEMA = """
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    display_name TEXT,
    active BOOLEAN NOT NULL,
    created DATETIME NOT NULL,
    avatar BLOB
);
CREATE TABLE packages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    size INTEGER NOT NULL,
    score REAL,
    description TEXT,
    sha256 BLOB NOT NULL,
    owner_id INTEGER REFERENCES users(id),
    published DATETIME NOT NULL
);
CREATE INDEX packages_name ON packages(name, version);
CREATE TABLE downloads (
    id INTEGER PRIMARY KEY,
    package_id INTEGER NOT NULL REFERENCES packages(id),
    ts DATETIME NOT NULL,
    bytes INTEGER NOT NULL,
    duration REAL,
    client TEXT
);
CREATE INDEX downloads_package ON downloads(package_id);
CREATE TABLE package_tags (
    package_id INTEGER NOT NULL REFERENCES packages(id),
    tag TEXT NOT NULL,
    weight REAL,
    PRIMARY KEY (package_id, tag)
) WITHOUT ROWID;
"""

SHARES = (("users", 0.05), ("packages", 0.30), ("package_tags", 0.10), ("downloads", 0.55))
WORDS = ("data", "plot", "tidy", "shiny", "stats", "model", "fast", "geo", "text", "web", "cloud", "r", "py",
         "Ålesund", "naïve", "日本", "μ", "🙂")
CLIENTS = ("R/4.3.2 (x86_64-pc-linux-gnu)", "pip/23.3", "curl/8.4.0", None)
TAGS = ("cran", "bioc", "internal", "finance", "genomics", "viz", "ml", "io", "db", "web", "deprecated", "beta")
EPOCH = datetime.datetime(2020, 1, 1)


def counts_for(rows):
    counts = dict((name, max(1, int(rows * share))) for name, share in SHARES)
    counts["downloads"] += rows - sum(counts.values())
    return counts


def _timestamp(rnd):
    return (EPOCH + datetime.timedelta(seconds=rnd.randrange(0, 4 * 365 * 86400),
                                       microseconds=rnd.randrange(0, 1000000))).isoformat(sep=" ")


def generate(path, rows, seed=20231201):
    """Write the database to path (replacing it); returns {table: rows}."""
    if os.path.exists(path):
        os.remove(path)
    rnd = random.Random(seed)
    counts = counts_for(rows)
    connection = sqlite3.connect(path)
    connection.executescript("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;" + SCHEMA)
    users, packages = counts["users"], counts["packages"]
    connection.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?)", (
        (i, "user%d@example.com" % i, None if i % 7 == 0 else "User %s %d" % (rnd.choice(WORDS), i),
         i % 3 != 0, _timestamp(rnd), rnd.randbytes(rnd.randrange(16, 64)) if i % 4 == 0 else None)
        for i in range(1, users + 1)))
    connection.executemany("INSERT INTO packages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (
        (i, "%s%s%d" % (rnd.choice(WORDS), rnd.choice(WORDS), i % 5000), "%d.%d.%d" % (i % 5, i % 13, i % 7),
         rnd.randrange(1000, 50000000), None if i % 11 == 0 else rnd.random() * 100,
         None if i % 3 == 0 else " ".join(rnd.choice(WORDS) for _word in range(rnd.randrange(3, 12))),
         rnd.randbytes(32), rnd.randrange(1, users + 1) if i % 5 else None, _timestamp(rnd))
        for i in range(1, packages + 1)))
    tag_rows, seen = [], set()
    while len(tag_rows) < counts["package_tags"]:
        key = (rnd.randrange(1, packages + 1), rnd.choice(TAGS) + str(rnd.randrange(0, 50)))
        if key not in seen:
            seen.add(key)
            tag_rows.append(key + (None if len(tag_rows) % 4 == 0 else rnd.random(),))
    connection.executemany("INSERT INTO package_tags VALUES (?, ?, ?)", tag_rows)
    connection.executemany("INSERT INTO downloads VALUES (?, ?, ?, ?, ?, ?)", (
        (i, rnd.randrange(1, packages + 1), _timestamp(rnd), rnd.randrange(100, 10000000),
         None if i % 9 == 0 else rnd.random() * 30, rnd.choice(CLIENTS))
        for i in range(1, counts["downloads"] + 1)))
    connection.commit()
    connection.close()
    return counts
