#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: positops.ha maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: db_migrate
short_description: Migrate a Posit product's SQLite database to PostgreSQL, verified exactly, one run at a time
version_added: 0.1.0
description:
  - Copies the tables of a SQLite database (Package Manager, Connect or Workbench) into PostgreSQL with binary
    C(COPY), then compares both sides exactly.
  - One writer per target. Before it touches anything, a run takes a session-level advisory lock on the target
    schema (in the database of O(dest)) and holds it until it ends. A second run into the same schema waits up to
    O(lock_timeout) seconds, then fails naming the holder (backend pid, client address, since when, and its
    C(application_name)). A run that goes on on its node after the controller's connection dropped therefore
    finishes undisturbed, and running the task again afterwards verifies what it did.
  - "With O(layout=create) the load goes into a staging schema private to the run, named C(db_migrate_staging_)
    followed by 16 hex digits derived from O(schema) and the run's id. O(workers) processes copy slices of the
    tables, build keys and indexes, read every slice back to compare it and add the foreign keys; one short
    transaction then replaces the target tables by the staged ones. A failure, a difference or a killed process
    before that transaction commits leaves the target as it was; a later run drops the staging schema of a run
    that died (one whose lock nobody holds)."
  - With O(layout=existing) the data goes into tables that already exist in O(schema) (created by the product
    itself), in one transaction of the run's own connection, matching columns by name (case-insensitively when
    there is no exact match) and casting to the target's types. A column that cannot be matched or cast fails
    before anything is written.
  - "Verification is exact: per slice of each table, the SHA-256 of the binary C(COPY) stream of the source rows
    (the one a load sends) against the binary stream of the target's rows that PostgreSQL returns in key order
    (C(COPY ... TO STDOUT) of a C(SELECT ... ORDER BY) the key). Any changed, missing, extra or moved value in any
    column fails, naming the table and the primary key of a differing row with the columns that differ. Floating
    point is compared bit for bit, text and blobs byte for byte, NULL apart from empty."
  - The source is opened read-only and never changed. Stop the product first so the source does not change while
    it is copied; a source that changed during the run makes it fail.
  - "The tables are created from the SQLite schema with O(layout=create): declared types containing C(INT) become
    C(bigint), C(REAL)/C(FLOA)/C(DOUB) C(double precision), C(BLOB) C(bytea), C(CHAR)/C(CLOB)/C(TEXT)/C(JSON)/C(UUID)
    and no type C(text), C(BOOL) C(boolean), C(DATETIME)/C(TIMESTAMP) C(timestamp), C(TIMESTAMPTZ) or C(WITH TIME
    ZONE) C(timestamp with time zone), C(DATE) C(date), anything else C(numeric). An C(INTEGER PRIMARY KEY) becomes
    an identity column whose sequence is moved past the highest key. Primary keys, unique constraints, indexes and
    foreign keys are added after the data is in."
  - Values PostgreSQL cannot store as they are (NUL characters in text, invalid UTF-8, integers out of range,
    text in an integer column) make the task fail naming the table, column and row; nothing is altered silently.
  - A completed migration run again with the same source verifies the whole target exactly and reports no change.
author:
  - positops.ha maintainers (@positops)
requirements:
  - psycopg 3 (C(python3-psycopg) on Debian, C(psycopg) on PyPI) on the managed node
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Takes the lock, reads the source and the target, compares them and reports the tables and row counts
      it would copy; writes nothing (not even the removal of a dead run's staging schema).
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
options:
  src:
    description: Path of the SQLite database file on the managed node.
    type: path
    required: true
  dest:
    description:
      - PostgreSQL connection URI, for example V(postgresql://rspm:secret@db.example.com:5432/rspm).
      - The password never appears in results or messages.
    type: str
    required: true
  schema:
    description: PostgreSQL schema of the target tables; created when missing with O(layout=create).
    type: str
    default: public
  tables:
    description: Names of the SQLite tables to migrate; all tables when omitted.
    type: list
    elements: str
  if_exists:
    description:
      - What to do when a target table already holds rows that differ from the source.
      - V(fail) refuses before anything is written; V(truncate) replaces their content (with O(layout=create) the
        tables are dropped and created again).
    type: str
    choices: [fail, truncate]
    default: fail
  batch_size:
    description: Rows read from SQLite per fetch while copying.
    type: int
    default: 10000
  verify:
    description:
      - Compare both sides exactly after loading, before the load becomes visible; a difference fails and leaves the
        target as it was.
      - Whatever this says, a run into a target that already holds the tables compares them first to tell a
        completed migration from one to do.
    type: bool
    default: true
  layout:
    description:
      - V(create) creates the tables from the SQLite schema, through a staging schema.
      - V(existing) loads into tables that already exist in O(schema), in one transaction.
    type: str
    choices: [create, existing]
    default: create
  workers:
    description:
      - Processes (each with its own connections) that copy, index, read back and compare in parallel, with
        O(layout=create) and for comparisons.
      - V(1) runs that work in the module's own process, one job after the other (still through the staging
        schema). O(layout=existing) always loads in the run's own transaction.
      - Defaults to the number of CPUs, at most 4.
    type: int
  action:
    description:
      - V(migrate) copies the data (or, when the target already equals the source, reports no change).
      - V(verify) only compares the source with the target and fails on a difference; it writes nothing.
      - O(mode) is a deprecated alias of this option (it clashed with Ansible's file mode convention).
    type: str
    choices: [migrate, verify]
    default: migrate
    aliases: [mode]
  lock_timeout:
    description:
      - Seconds to wait for another run into the same schema of O(dest) to end before failing (the lock is polled
        every second). V(0) fails at once when another run holds it.
    type: int
    default: 300
notes:
  - Every connection carries C(application_name) C(positops.ha.db_migrate run <id>) (its workers' add C(worker)), so
    a run shows in C(pg_stat_activity) and in the message of a run that waits for it.
  - "A column of an existing target table whose type differs from the one the source values are sent as is read
    back through a cast that returns every value exactly (C(integer) to C(bigint), C(varchar) to C(text),
    C(timestamptz) to C(timestamp) in UTC). For other types (C(jsonb), C(uuid), C(real), C(numeric) with a scale,
    ...) the table is compared in the target's types: the source is copied into a temporary table, cast the way the
    load casts it, and both are read back from PostgreSQL. The comparison is then exact after that documented
    conversion."
  - "Verification compares the values as converted from SQLite (booleans from 0/1 or true/false, timestamps from
    ISO 8601 text or epoch seconds in UTC); the source's row counts are checked separately with SQLite's own
    C(count(*)). Tables with a primary key (or rowid key) whose values sort alike in both engines are compared in key
    order; other tables as unordered sets of per-row digests (64-bit BLAKE2b, summed)."
  - Partial indexes, indexes on expressions and defaults that are not constants are not carried over; the task
    warns about each.
  - The user in O(dest) needs the right to create schemas in the database with O(layout=create), and to create
    temporary tables when a table is compared in the target's types.
"""

EXAMPLES = r"""
- name: Migrate Package Manager's database to PostgreSQL
  positops.ha.db_migrate:
    src: /var/lib/rstudio-pm/db/rstudio-pm.sqlite
    dest: "postgresql://rspm:{{ rspm_db_password }}@db.example.com/rspm"

- name: Load into the schema the product created on PostgreSQL, replacing what is there
  positops.ha.db_migrate:
    src: /var/lib/rstudio-connect/db/rstudio-connect.db
    dest: "postgresql://connect:{{ connect_db_password }}@db.example.com/connect"
    layout: existing
    if_exists: truncate

- name: Only compare source and target
  positops.ha.db_migrate:
    src: /var/lib/rstudio-pm/db/rstudio-pm.sqlite
    dest: "postgresql://rspm:{{ rspm_db_password }}@db.example.com/rspm"
    action: verify

- name: Wait at most a minute for a run that is still going on its node
  positops.ha.db_migrate:
    src: /var/lib/rstudio-pm/db/rstudio-pm.sqlite
    dest: "postgresql://rspm:{{ rspm_db_password }}@db.example.com/rspm"
    lock_timeout: 60
"""

RETURN = r"""
tables:
  description: Per table, the rows copied (in check mode and verify mode, the rows in the source) and the seconds
    its jobs spent copying it, building its indexes and constraints.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "packages", "rows": 120000, "seconds": 1.52}, {"name": "empty_table", "rows": 0, "seconds": 0.01}]
totals:
  description: Number of tables, rows, the whole run's seconds and rows per second (0 when nothing was copied).
  returned: always
  type: dict
  sample: {"tables": 2, "rows": 120000, "seconds": 2.1, "rows_per_second": 57142}
verification:
  description:
    - The comparison of source and target; null when O(verify=false) or in check mode before anything was copied.
    - Per table the target table's name, the row counts, the first 16 hex digits of each side's digest (null when
      the row counts alone settled it), whether they match and, when not, a difference in words (the primary key
      of a differing row and the columns that differ, or a row on one side only).
  returned: always
  type: dict
  sample:
    ok: false
    tables:
      packages:
        target: packages
        source_rows: 120000
        target_rows: 120000
        source_checksum: 4f1c2a9e0b7d3c11
        target_checksum: 9a0e55c1d2b3f470
        match: false
        difference: "row with primary key (id=4711) differs in column name"
sequences:
  description: Sequences moved past the highest value loaded, with the value set.
  returned: always
  type: list
  elements: dict
  sample: [{"table": "packages", "column": "id", "sequence": "public.packages_id_seq", "last_value": 120000}]
statements:
  description: The SQL statements run on PostgreSQL, in order (DDL and the COPY statements; no data).
  returned: always
  type: list
  elements: str
  sample: ['CREATE SCHEMA "db_migrate_staging_3f0c9d2a61b7e845_1a2b3c4d"',
           'ALTER TABLE "public"."packages" ADD PRIMARY KEY ("id")']
timings:
  description:
    - Seconds per phase. C(lock_wait) is the wait for another run; C(read) (SQLite fetches), C(convert) (values
      converted in Python), C(copy) (formatting and sending the COPY stream), C(keys) (primary keys, unique
      constraints, indexes), C(foreign_keys), C(verify) (reading back and digesting) and C(swap) are summed over the
      processes that did them, so they overlap when several O(workers) run; C(total) is the run's wall time.
    - Phases that did not happen are left out.
  returned: always
  type: dict
  sample: {"lock_wait": 0.0, "read": 4.1, "convert": 0.6, "copy": 3.2, "keys": 2.9, "foreign_keys": 0.8, "verify": 2.4,
           "swap": 0.05, "total": 8.7}
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.positops.ha.plugins.module_utils._db_migrate.common import (
    HAS_PSYCOPG,
    PSYCOPG_IMPORT_ERROR,
    MigrationError,
)
from ansible_collections.positops.ha.plugins.module_utils._db_migrate.migration import Migration


def argument_spec():
    return dict(
        src=dict(type="path", required=True),
        dest=dict(type="str", required=True, no_log=True),
        schema=dict(type="str", default="public"),
        tables=dict(type="list", elements="str"),
        if_exists=dict(type="str", choices=["fail", "truncate"], default="fail"),
        batch_size=dict(type="int", default=10000),
        verify=dict(type="bool", default=True),
        layout=dict(type="str", choices=["create", "existing"], default="create"),
        action=dict(type="str", choices=["migrate", "verify"], default="migrate", aliases=["mode"],
                    deprecated_aliases=[dict(name="mode", version="1.0.0", collection_name="positops.ha")]),
        workers=dict(type="int"),
        lock_timeout=dict(type="int", default=300),
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if not HAS_PSYCOPG:
        module.fail_json(msg=missing_required_lib("psycopg (psycopg 3; Debian package python3-psycopg)"),
                         exception=str(PSYCOPG_IMPORT_ERROR))
    params = module.params
    try:
        migration = Migration(
            src=params["src"], dest=params["dest"], schema=params["schema"], tables=params["tables"],
            if_exists=params["if_exists"], batch_size=params["batch_size"], verify=params["verify"],
            layout=params["layout"], check_mode=module.check_mode, workers=params["workers"],
            lock_timeout=params["lock_timeout"])
        result = migration.run(params["action"])
    except MigrationError as error:
        module.fail_json(msg=str(error))
    for warning in result.pop("warnings"):
        module.warn(warning)
    if params["action"] == "verify" and not result["verification"]["ok"]:
        different = sorted((n, e) for n, e in result["verification"]["tables"].items() if not e["match"])
        module.fail_json(msg="src and dest differ: %s" % "; ".join("table %s: %s" % (n, e["difference"])
                                                                   for n, e in different), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
