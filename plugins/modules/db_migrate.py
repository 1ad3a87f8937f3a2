#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: positops.ha maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: db_migrate
short_description: Migrate a Posit product's SQLite database to PostgreSQL, verified and all or nothing
version_added: 0.1.0
description:
  - Copies the tables of a SQLite database (Package Manager, Connect or Workbench) into PostgreSQL with binary
    C(COPY), then compares row counts and per-table checksums of both sides.
  - All or nothing. The load is one PostgreSQL transaction, or with several O(workers) a staging schema swapped in
    by one transaction. A failure, a mismatch or a killed process leaves the target as it was; running the task
    again starts over and completes.
  - The source is opened read-only and never changed. Stop the product first so the source does not change while
    it is copied.
  - "With O(layout=create) the tables are created from the SQLite schema: declared types containing C(INT) become
    C(bigint), C(REAL)/C(FLOA)/C(DOUB) C(double precision), C(BLOB) C(bytea), C(CHAR)/C(CLOB)/C(TEXT)/C(JSON)/C(UUID)
    and no type C(text), C(BOOL) C(boolean), C(DATETIME)/C(TIMESTAMP) C(timestamp), C(TIMESTAMPTZ) or C(WITH TIME
    ZONE) C(timestamp with time zone), C(DATE) C(date), anything else C(numeric). An C(INTEGER PRIMARY KEY) becomes
    an identity column whose sequence is moved past the highest key. Primary keys, unique constraints, indexes and
    foreign keys are added after the data is in."
  - With O(layout=existing) the data goes into tables that already exist in O(schema) (created by the product
    itself), matching columns by name (case-insensitively when there is no exact match) and casting to the
    target's types. A column that cannot be matched or cast fails before anything is written.
  - Values PostgreSQL cannot store as they are (NUL characters in text, invalid UTF-8, integers out of range,
    text in an integer column) make the task fail naming the table, column and row; nothing is altered silently.
  - A completed migration run again with the same source verifies and reports no change.
author:
  - positops.ha maintainers (@positops)
requirements:
  - psycopg 3 (C(python3-psycopg) on Debian, C(psycopg) on PyPI) on the managed node
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Reads the source and the target and reports the tables and row counts it would copy; writes nothing.
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
    description: Compare row counts and checksums of both sides before committing; a mismatch fails and rolls back.
    type: bool
    default: true
  layout:
    description:
      - V(create) creates the tables from the SQLite schema.
      - V(existing) loads into tables that already exist in O(schema).
    type: str
    choices: [create, existing]
    default: create
  workers:
    description:
      - Processes (each with its own connections) that copy, index and checksum in parallel with O(layout=create).
        They load into a staging schema that one short transaction then swaps in; a run that fails or is killed
        before that leaves the target as it was, and the next run drops the leftover staging schema.
      - V(1) loads in a single transaction instead. O(layout=existing) always uses a single transaction.
      - Defaults to the number of CPUs, at most 4.
    type: int
  mode:
    description:
      - V(migrate) copies the data.
      - V(verify) only compares the source with the target (row counts and checksums) and fails on a difference;
        it writes nothing.
    type: str
    choices: [migrate, verify]
    default: migrate
notes:
  - Checksums are per-column aggregates computed by SQLite and by PostgreSQL the same way; floating point sums are
    compared with a relative tolerance of 1e-9.
  - Partial indexes, indexes on expressions and defaults that are not constants are not carried over; the task
    warns about each.
  - With several O(workers) the staging schema is named C(db_migrate_staging_) followed by 12 hex digits derived
    from O(schema); the user in O(dest) needs the right to create schemas in the database.
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
    mode: verify
"""

RETURN = r"""
tables:
  description: Per table, the rows copied (in check mode and verify mode, the rows in the source) and the seconds
    spent copying it, building its indexes and constraints.
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
    - Per table the target table's name, the row counts, a digest of each side's checksum and whether they match.
  returned: always
  type: dict
  sample:
    ok: true
    tables:
      packages:
        target: packages
        source_rows: 120000
        target_rows: 120000
        source_checksum: 4f1c2a9e0b7d3c11
        target_checksum: 4f1c2a9e0b7d3c11
        match: true
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
  sample: ['CREATE SCHEMA IF NOT EXISTS "public"', 'CREATE TABLE "public"."packages" ("id" bigint NOT NULL)']
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.positops.ha.plugins.module_utils._db_migrate import (
    HAS_PSYCOPG,
    PSYCOPG_IMPORT_ERROR,
    Migration,
    MigrationError,
)


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
        mode=dict(type="str", choices=["migrate", "verify"], default="migrate"),
        workers=dict(type="int"),
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
            layout=params["layout"], check_mode=module.check_mode, workers=params["workers"])
        result = migration.run(params["mode"])
    except MigrationError as error:
        module.fail_json(msg=str(error))
    for warning in result.pop("warnings"):
        module.warn(warning)
    if params["mode"] == "verify" and not result["verification"]["ok"]:
        different = sorted(n for n, e in result["verification"]["tables"].items() if not e["match"])
        module.fail_json(msg="src and dest differ in tables %s (row counts or checksums)" % ", ".join(different),
                         **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
