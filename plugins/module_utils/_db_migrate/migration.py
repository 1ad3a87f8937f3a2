# -*- coding: utf-8 -*-
# Copyright: positops.ha maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!
"""One run of db_migrate: migrate (or only verify) a SQLite database into a PostgreSQL schema.

Every run first takes the target schema's advisory lock (lock.py), so runs into one schema never overlap; a run
that finds the staging schema of a dead run drops it. It then compares what the target holds with the source
exactly (verify.py): a target equal to the source is a completed migration, reported unchanged.

With ``layout=create`` the load goes into a staging schema private to the run: worker processes copy slices of
the tables (digesting the stream they send), build keys and indexes, read every slice back to compare digests and
add the foreign keys, each job as soon as the jobs it needs are done (scheduler.py). One short transaction then
moves the staged tables into the target schema, replacing the tables of the same names, and moves the identity
sequences past the highest key. A failure, a difference or a kill before that transaction commits leaves the
target as it was.

With ``layout=existing`` the rows go into tables that already exist, in one transaction on the run's own
connection: each table is copied into a temporary table, cast into the target table, compared and committed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii
import os
import sqlite3
import time

from ansible_collections.positops.ha.plugins.module_utils._db_migrate.common import (
    APPLICATION_NAME,
    MigrationError,
    mask,
    psycopg,
    sql,
)
from ansible_collections.positops.ha.plugins.module_utils._db_migrate.lock import (
    acquire,
    drop_dead_staging,
    staging_schema_name,
)
from ansible_collections.positops.ha.plugins.module_utils._db_migrate.scheduler import run_jobs
from ansible_collections.positops.ha.plugins.module_utils._db_migrate.session import Session
from ansible_collections.positops.ha.plugins.module_utils._db_migrate.sqlite_source import (
    Slice,
    count_rows,
    read_schema,
    select_tables,
    sqlite_quote,
    table_slices,
)
from ansible_collections.positops.ha.plugins.module_utils._db_migrate.stream import copy_slice
from ansible_collections.positops.ha.plugins.module_utils._db_migrate.target import (
    STAGED_OPTION_NAMES,
    count_target_rows,
    create_mapping,
    create_table,
    existing_mapping,
    has_rows,
    qualified,
    reset_sequences,
    target_tables,
)
from ansible_collections.positops.ha.plugins.module_utils._db_migrate.verify import (
    combine,
    compare_in_target_types,
    comparison_plan,
    create_source_table,
    slice_difference,
    stage_source,
    table_entry,
    target_digest,
)

ACTIONS = ("migrate", "verify")
# Costs of the jobs of a load relative to copying a row (client and server CPU, measured on the benchmark): an
# index over a row, the foreign key check of a row, reading a row back.
KEYS_COST = 0.2
FOREIGN_COST = 0.3
DIGEST_COST = 0.4


class Migration:
    """One run of db_migrate; ``run`` returns what was done so callers (and tests) can see it exactly."""

    def __init__(self, src, dest, schema="public", tables=None, if_exists="fail", batch_size=10000, verify=True,
                 layout="create", check_mode=False, clock=time.monotonic, workers=None, lock_timeout=300,
                 sleep=time.sleep):
        if batch_size < 1:
            raise MigrationError("batch_size must be a positive number of rows, got %s" % batch_size)
        self.workers = workers if workers is not None else min(4, os.cpu_count() or 1)
        if self.workers < 1:
            raise MigrationError("workers must be at least 1, got %s" % self.workers)
        if lock_timeout < 0:
            raise MigrationError("lock_timeout must be 0 or more seconds, got %s" % lock_timeout)
        self.schema = schema
        self.wanted = list(tables or [])
        self.if_exists = if_exists
        self.verify = verify
        self.layout = layout
        self.check_mode = check_mode
        self.clock = clock
        self.sleep = sleep
        self.lock_timeout = lock_timeout
        # The run's id names its staging schema and its sessions (application_name), so a holder can be told apart.
        self.run_id = binascii.hexlify(os.urandom(4)).decode("ascii")
        self.application_name = "%s run %s" % (APPLICATION_NAME, self.run_id)
        self.session = Session(src, dest, batch_size, self.application_name, clock=clock)
        self.secrets = self.session.secrets
        self.timings = {}

    @property
    def statements(self):
        return self.session.statements

    @property
    def warnings(self):
        return self.session.warnings

    # ---- the run

    def run(self, action="migrate"):
        """Migrate (or only verify); returns the result dict; raises MigrationError with secrets masked."""
        if action not in ACTIONS:
            raise MigrationError("action must be one of %s, got %s" % (", ".join(ACTIONS), action))
        try:
            return self._run(action)
        except MigrationError as error:
            self.session.rollback()
            raise MigrationError(mask(error, self.secrets))
        except (psycopg.Error, sqlite3.Error) as error:
            self.session.rollback()
            raise MigrationError("migration failed, dest is unchanged: %s" % mask(error, self.secrets))
        finally:
            self.session.close()

    def _run(self, action):
        started = self.clock()
        session = self.session
        tables = select_tables(read_schema(session.source), self.wanted)
        for table in tables:
            for what in table.skipped:
                self.warnings.append("table %s: %s not carried over" % (table.name, what))
        connection = session.pg
        self.timings["lock_wait"] = acquire(connection, self.schema, self.lock_timeout, self.clock, self.sleep)
        if action == "migrate" and not self.check_mode:
            for name in drop_dead_staging(session, connection, self.schema):
                self.warnings.append("dropped staging schema %s, left by a run that ended before its swap" % name)
        cursor = connection.cursor()
        existing = target_tables(cursor, self.schema)
        counts = dict((t.name, count_rows(session.source, t)) for t in tables)

        # What is in the target now: mappings by the target's own columns wherever the tables exist.
        mappings = {}
        for table in tables:
            if self.layout == "existing" or action == "verify":
                mappings[table.name] = existing_mapping(cursor, self.schema, table, existing)
            elif table.name in existing:
                try:
                    mappings[table.name] = existing_mapping(cursor, self.schema, table, existing)
                except MigrationError:
                    mappings[table.name] = None  # a different table under that name: replaced below
            else:
                mappings[table.name] = None
        connection.rollback()

        if action == "verify":
            verification = self.compare(tables, mappings, counts, settle_on_counts=False)
            return self.result(False, tables, counts, verification, started, copied={}, sequences=[])

        # A previous complete run: the target equal to the source means nothing to do.
        if all(mappings[t.name] is not None for t in tables):
            verification = self.compare(tables, mappings, counts, settle_on_counts=True)
            if verification["ok"]:
                return self.result(False, tables, counts, verification, started, copied={}, sequences=[])
        current = sorted(t.name for t in tables if mappings[t.name] is not None
                         and has_rows(cursor, self.schema, mappings[t.name].target_name))
        connection.rollback()
        if current and self.if_exists == "fail":
            raise MigrationError(
                "target tables already hold rows that differ from src: %s in schema %s; nothing was written. Use "
                "if_exists=truncate to replace them, or migrate into an empty schema"
                % (", ".join(current), self.schema))
        if self.check_mode:
            return self.result(True, tables, counts, None, started, copied={}, sequences=[])
        if self.layout == "existing":
            copied, sequences, verification = self.load_existing(tables, mappings)
        else:
            copied, sequences, verification = self.load_staged(tables, existing, counts)
        return self.result(True, tables, counts, verification, started, copied=copied, sequences=sequences)

    # ---- comparing source and target

    def compare(self, tables, mappings, counts, settle_on_counts):
        """Compare every table of the source with its target table, exactly.

        ``settle_on_counts``: a table whose row counts differ is reported as different without reading its rows
        (enough for a re-run to know the target is not complete).
        """
        session = self.session
        cursor = session.pg.cursor()
        entries = {}
        direct, in_target_types = [], []
        for table in tables:
            mapping = mappings[table.name]
            if settle_on_counts:
                target_rows = count_target_rows(cursor, self.schema, mapping.target_name)
                if counts[table.name] != target_rows:
                    entries[table.name] = table_entry(mapping.target_name, counts[table.name], target_rows, None,
                                                      None)
                    continue
            (direct if mapping.exact else in_target_types).append(table)
        session.rollback()  # idle while the workers read

        plans = dict((t.name, comparison_plan(mappings[t.name])) for t in direct)
        slices = dict((t.name, table_slices(session.source, t, counts[t.name])) for t in direct)
        jobs = []
        for table in direct:
            for part in slices[table.name]:
                common = {"table": table.name, "slice": part.as_dict(), "cost": part.rows, "after": []}
                jobs.append(dict(common, id=len(jobs), kind="source_digest", ordered=plans[table.name]["ordered"]))
                jobs.append(dict(common, id=len(jobs), kind="target_digest", plan=plans[table.name],
                                 schema=self.schema))
        source_parts, target_parts = self.collect(self.run_jobs(jobs, staged_only=False))[1:]
        entries.update(self.entries(direct, plans, mappings, slices, source_parts, target_parts, self.schema))

        for index, table in enumerate(in_target_types):
            mapping = mappings[table.name]
            temp_name = "db_migrate_source_%d" % index
            stage_source(session, cursor, mapping, temp_name)
            plan = comparison_plan(mapping, in_target_types=True)
            source_rows, source, target_rows, target, difference = compare_in_target_types(
                session, plan, self.schema, temp_name)
            entries[table.name] = table_entry(mapping.target_name, source_rows, target_rows, source, target,
                                              difference)
        session.rollback()
        ordered = dict((t.name, entries[t.name]) for t in tables)
        return {"ok": all(e["match"] for e in ordered.values()), "tables": ordered}

    def entries(self, tables, plans, mappings, slices, source_parts, target_parts, schema):
        """Verification entries from the digests of each slice of each side; names a differing row."""
        entries = {}
        for table in tables:
            plan = plans[table.name]
            indexes = [part.index for part in slices[table.name]]
            sources = [source_parts[table.name][i] for i in indexes]
            targets = [target_parts[table.name][i] for i in indexes]
            difference = None
            for part, source, target in zip(slices[table.name], sources, targets):
                if source != target:
                    difference = slice_difference(self.session, mappings[table.name], plan, schema, part)
                    break
            entries[table.name] = table_entry(
                plan["target"], sum(s[0] for s in sources), sum(t[0] for t in targets),
                combine([s[1] for s in sources], plan["ordered"]), combine([t[1] for t in targets], plan["ordered"]),
                difference)
        return entries

    def run_jobs(self, jobs, staged_only, staging=None):
        outcomes = run_jobs(jobs, self.workers, self.session.worker_settings(staged_only))
        if staging is not None:
            # The identifiers as the statements were rendered (PostgreSQL quotes them as SQLite does). Not
            # sql.Identifier.as_string(None): psycopg before 3.2 (Debian 12 ships 3.1.7) needs a connection for it.
            renamed = (sqlite_quote(staging) + ".", sqlite_quote(self.schema) + ".")
        for outcome in outcomes:
            for statement in outcome.get("statements", []):
                if staging is not None:  # report statements with the schema they end up in
                    statement = statement.replace(*renamed)
                if statement not in self.statements:
                    self.statements.append(statement)
            self.warnings.extend(w for w in outcome.get("warnings", []) if w not in self.warnings)
            for phase, seconds in outcome.get("timings", {}).items():
                self.timings[phase] = self.timings.get(phase, 0.0) + seconds
        return outcomes

    @staticmethod
    def collect(outcomes):
        """Rows and seconds per table, and the (rows, digest) of each slice of each side, from job outcomes."""
        copied, source_parts, target_parts = {}, {}, {}
        for outcome in outcomes:
            job = outcome["job"]
            name = job["table"]
            if job["kind"] in ("copy", "source_digest"):
                source_parts.setdefault(name, {})[job["slice"]["index"]] = (outcome["rows"], outcome["digest"])
            elif job["kind"] == "target_digest":
                target_parts.setdefault(name, {})[job["slice"]["index"]] = (outcome["rows"], outcome["digest"])
            if job["kind"] in ("copy", "keys", "foreign"):
                entry = copied.setdefault(name, {"rows": 0, "seconds": 0.0})
                entry["rows"] += outcome["rows"] if job["kind"] == "copy" else 0
                entry["seconds"] += outcome["seconds"]
        return copied, source_parts, target_parts

    # ---- loading through a staging schema (layout=create)

    def load_staged(self, tables, existing, counts):
        session = self.session
        connection = session.pg
        cursor = connection.cursor()
        staging = staging_schema_name(self.schema, self.run_id)
        session.execute(cursor, sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(staging)))
        for table in tables:
            create_table(session, cursor, staging, table)
        connection.commit()
        try:
            return self._load_staged(tables, existing, counts, staging)
        except BaseException:
            self.drop_staging(staging)
            raise

    def drop_staging(self, staging):
        """Best effort after a failure; a run that cannot drop it leaves it to the next run."""
        try:
            self.session.rollback()
            cursor = self.session.pg.cursor()
            cursor.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(staging)))
            self.session.commit()
        except Exception:  # the failure being raised matters more
            pass

    def _load_staged(self, tables, existing, counts, staging):
        session = self.session
        plans = dict((t.name, comparison_plan(create_mapping(t))) for t in tables)
        slices = dict((t.name, table_slices(session.source, t, counts[t.name])) for t in tables)
        outcomes = self.run_jobs(self.staged_jobs(tables, plans, slices, staging), staged_only=True,
                                 staging=staging)
        copied, source_parts, target_parts = self.collect(outcomes)
        for table in tables:
            copied.setdefault(table.name, {"rows": 0, "seconds": 0.0})
            if copied[table.name]["rows"] != counts[table.name]:
                raise MigrationError(
                    "table %s: src changed while it was read (%d rows counted, %d copied): stop the product that "
                    "writes it and run again; dest is unchanged" % (table.name, counts[table.name],
                                                                    copied[table.name]["rows"]))
        verification = None
        if self.verify:
            mappings = dict((t.name, create_mapping(t)) for t in tables)
            entries = self.entries(tables, plans, mappings, slices, source_parts, target_parts, staging)
            verification = {"ok": all(e["match"] for e in entries.values()), "tables": entries}
            if not verification["ok"]:
                raise MigrationError("verification failed, %s; the staged copy was dropped and dest is unchanged"
                                     % self.differences(verification))
        began = self.clock()
        sequences = self.swap(tables, existing, staging)
        self.timings["swap"] = self.clock() - began
        return copied, sequences, verification

    def staged_jobs(self, tables, plans, slices, staging):
        """The work of a staged load as jobs, each with the ids of the jobs it must wait for ("after").

        A table's keys (primary key, unique constraints) start as soon as its own slices are in; then, each in a job
        of its own, its other indexes, its read-back (the primary key orders it) and its foreign keys, added NOT
        VALID once the keys they reference exist and validated afterwards. ``locks`` keeps apart the jobs whose
        PostgreSQL locks conflict: an index build on a table, the validation of its foreign keys and the addition
        of a foreign key to or from it. ``cost`` estimates each job in rows copied, from which the scheduler puts
        the longest chains first.
        """
        rows = dict((t.name, sum(part.rows for part in slices[t.name])) for t in tables)
        jobs, keys, added = [], {}, {}

        def add(**fields):
            fields.setdefault("locks", [])
            jobs.append(dict(fields, id=len(jobs), schema=staging))
            return len(jobs) - 1

        for table in tables:
            copies = [add(kind="copy", table=table.name, slice=part.as_dict(), ordered=plans[table.name]["ordered"],
                          cost=part.rows, after=[]) for part in slices[table.name]]
            keys[table.name] = add(kind="keys", table=table.name, locks=[table.name], after=copies,
                                   cost=KEYS_COST * rows[table.name] * (bool(table.primary_key) + len(table.uniques)))
            if self.verify:
                for part in slices[table.name]:
                    add(kind="target_digest", table=table.name, slice=part.as_dict(), plan=plans[table.name],
                        cost=DIGEST_COST * part.rows, after=[keys[table.name]])
        available = [t.name for t in tables]
        for table in tables:
            if table.foreign_keys:
                parents = set(fk["table"] for fk in table.foreign_keys if fk["table"] in keys)
                added[table.name] = add(kind="foreign", table=table.name, available=available, cost=1,
                                        after=sorted(set([keys[table.name]] + [keys[p] for p in parents])),
                                        locks=sorted(parents | {table.name}))
                add(kind="validate", table=table.name, cost=FOREIGN_COST * rows[table.name],
                    after=[added[table.name]], locks=[table.name])
        for table in tables:
            # After the foreign keys to and from the table are added, so that no addition waits for the build.
            children = [added[t.name] for t in tables if t.name in added and table.name in
                        set(fk["table"] for fk in t.foreign_keys)]
            own = [added[table.name]] if table.name in added else []
            for index in table.indexes:
                add(kind="index", table=table.name, index=index["name"], locks=[table.name],
                    cost=KEYS_COST * rows[table.name] * len(index["columns"]),
                    after=sorted(set([keys[table.name]] + children + own)))
        return jobs

    def swap(self, tables, existing, staging):
        """One transaction: replace the target tables by the staged ones and move the sequences on."""
        session = self.session
        connection = session.pg
        cursor = connection.cursor()
        session.execute(cursor, sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
        replaced = [t.name for t in tables if t.name in existing]
        if replaced:
            session.execute(cursor, sql.SQL("DROP TABLE {}").format(
                sql.SQL(", ").join(qualified(self.schema, n) for n in replaced)))
        for table in tables:
            session.execute(cursor, sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(
                qualified(staging, table.name), sql.Identifier(self.schema)))
            session.execute(cursor, sql.SQL("ALTER TABLE {} RESET ({})").format(
                qualified(self.schema, table.name), sql.SQL(STAGED_OPTION_NAMES)))
        session.execute(cursor, sql.SQL("DROP SCHEMA {}").format(sql.Identifier(staging)))
        sequences = []
        for table in tables:
            if table.identity_column is not None:
                sequences += reset_sequences(session, cursor, self.schema, create_mapping(table),
                                             table.autoincrement_seq)
        connection.commit()
        return sequences

    # ---- loading into the product's own tables (layout=existing)

    def load_existing(self, tables, mappings):
        """Copy into temporary tables typed like the source, then INSERT ... SELECT with casts to the target's types.

        Planning every INSERT before the TRUNCATE makes a column that cannot be cast fail before anything is
        written; the comparison runs before the COMMIT.
        """
        session = self.session
        connection = session.pg
        cursor = connection.cursor()
        staged = []
        for index, table in enumerate(tables):
            mapping = mappings[table.name]
            temp_name = "db_migrate_%d" % index
            temp_mapping = create_source_table(session, cursor, mapping, temp_name)
            targets = sql.SQL(", ").join(sql.Identifier(m.target_name) for m in mapping.columns)
            casts = sql.SQL(", ").join(sql.SQL("CAST({} AS {})").format(sql.Identifier(m.target_name),
                                                                        sql.SQL(m.target_type))
                                       for m in mapping.columns)
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
            staged.append((table, mapping, temp_mapping, insert))
        session.execute(cursor, sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(
            qualified(self.schema, mappings[t.name].target_name) for t in tables)))
        copied, digests = {}, {}
        for table, mapping, temp_mapping, _insert in staged:
            began = self.clock()
            ordered = comparison_plan(mapping)["ordered"]
            rows, digest = copy_slice(session, cursor, temp_mapping, "pg_temp", Slice(), ordered)
            copied[table.name] = {"rows": rows, "seconds": self.clock() - began}
            digests[table.name] = (rows, digest)
        for table, mapping, _temp, insert in self.parents_first(cursor, staged):
            began = self.clock()
            try:
                session.execute(cursor, insert)
            except psycopg.Error as error:
                raise MigrationError("table %s: loading into %s.%s failed: %s; nothing was written"
                                     % (table.name, self.schema, mapping.target_name,
                                        error.diag.message_primary or error))
            copied[table.name]["seconds"] += self.clock() - began
        sequences = []
        for table, mapping, _temp, _insert in staged:
            sequences += reset_sequences(session, cursor, self.schema, mapping, table.autoincrement_seq)
        verification = None
        if self.verify:
            entries = {}
            for table, mapping, temp_mapping, _insert in staged:
                if mapping.exact:
                    plan = comparison_plan(mapping)
                    target_rows, target = target_digest(session, plan, self.schema, Slice())
                    source_rows, source = digests[table.name]
                    difference = None
                    if (source_rows, source) != (target_rows, target):
                        difference = slice_difference(session, mapping, plan, self.schema, Slice())
                else:
                    plan = comparison_plan(mapping, in_target_types=True)
                    source_rows, source, target_rows, target, difference = compare_in_target_types(
                        session, plan, self.schema, temp_mapping.target_name)
                entries[table.name] = table_entry(mapping.target_name, source_rows, target_rows, source, target,
                                                  difference)
            verification = {"ok": all(e["match"] for e in entries.values()), "tables": entries}
            if not verification["ok"]:
                connection.rollback()
                raise MigrationError("verification failed, %s; the transaction was rolled back and dest is "
                                     "unchanged" % self.differences(verification))
        connection.commit()
        return copied, sequences, verification

    def parents_first(self, cursor, staged):
        """Order the inserts so tables referenced by foreign keys are filled before the tables referencing them."""
        cursor.execute("SELECT c.relname, p.relname FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid "
                       "JOIN pg_class p ON p.oid = k.confrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                       "WHERE k.contype = 'f' AND n.nspname = %s", (self.schema,))
        parents = {}
        for child, parent in cursor.fetchall():
            if child != parent:
                parents.setdefault(child, set()).add(parent)
        ordered, placed, pending = [], set(), list(staged)
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

    # ---- the result

    @staticmethod
    def differences(verification):
        bad = [(name, entry) for name, entry in verification["tables"].items() if not entry["match"]]
        return "; ".join("table %s: %s" % (name, entry["difference"]) for name, entry in sorted(bad))

    def result(self, changed, tables, counts, verification, started, copied, sequences):
        per_table = []
        for table in tables:
            entry = {"name": table.name, "rows": counts[table.name]}
            if table.name in copied:
                entry["rows"] = copied[table.name]["rows"]
                entry["seconds"] = round(copied[table.name]["seconds"], 3)
            per_table.append(entry)
        seconds = self.clock() - started
        total_rows = sum(e["rows"] for e in per_table)
        timings = dict((phase, round(value, 3)) for phase, value in self.timings.items())
        for phase, value in self.session.timings.items():
            timings[phase] = round(timings.get(phase, 0.0) + value, 3)
        timings["total"] = round(seconds, 3)
        return {
            "changed": changed,
            "tables": per_table,
            "totals": {"tables": len(per_table), "rows": total_rows, "seconds": round(seconds, 3),
                       "rows_per_second": int(total_rows / seconds) if copied and seconds > 0 else 0},
            "verification": verification,
            "sequences": sequences,
            "statements": [mask(s, self.secrets) for s in self.statements],
            "warnings": self.warnings,
            "timings": timings,
        }
