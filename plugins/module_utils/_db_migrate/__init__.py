# -*- coding: utf-8 -*-
# Copyright: positops.ha maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!
"""SQLite to PostgreSQL migration used by the db_migrate module, one module per concern.

- ``common``: the psycopg import guard, the error type and the masking of the destination URI's secrets.
- ``convert``: the kind of each SQLite declared type and how its values become PostgreSQL values.
- ``sqlite_source``: reading the SQLite schema, slicing tables by key and naming source rows in messages.
- ``stream``: reading a slice of a source table and writing it as a binary COPY stream.
- ``target``: the PostgreSQL side: connections, inspection of the target, DDL, COPY and sequences.
- ``verify``: exact verification by digests of the binary COPY streams of both sides.
- ``lock``: one writer per target (an advisory lock) and the staging schemas private to a run.
- ``session``: the connections and the record (statements, warnings, timings) of one process's work.
- ``scheduler``: the jobs of a load or a comparison, run by worker processes as soon as their inputs exist.
- ``migration``: one run of the module (migrate or verify), which ties the above together.
"""
