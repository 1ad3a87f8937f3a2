# -*- coding: utf-8 -*-
# Copyright: positops.ha maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!
"""A session: the connections of one process (the run itself, or a worker) and the record of what it did."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.positops.ha.plugins.module_utils._db_migrate.common import (
    APPLICATION_NAME,
    uri_secrets,
)
from ansible_collections.positops.ha.plugins.module_utils._db_migrate.sqlite_source import open_source, read_schema
from ansible_collections.positops.ha.plugins.module_utils._db_migrate.target import connect


class Session:
    """Lazily opened connections to the source and the target, and what was done through them.

    ``statements`` (SQL run on PostgreSQL, data left out), ``warnings`` and ``timings`` (seconds per phase) are
    what a caller reports; a worker resets them before each job with :meth:`start_job`.
    """

    def __init__(self, src, dest, batch_size=10000, application_name=APPLICATION_NAME, staged_only=False,
                 clock=time.monotonic):
        self.src = src
        self.dest = dest
        self.secrets = uri_secrets(dest)  # masked in every message and statement reported
        self.batch_size = batch_size
        self.application_name = application_name
        self.staged_only = staged_only
        self.clock = clock
        self.statements = []
        self.warnings = []
        self.timings = {}
        self._source = None
        self._pg = None
        self._tables = None

    @property
    def source(self):
        if self._source is None:
            self._source = open_source(self.src)
        return self._source

    @property
    def pg(self):
        if self._pg is None or self._pg.closed:
            self._pg = connect(self.dest, self.secrets, self.application_name, staged_only=self.staged_only)
        return self._pg

    def tables(self):
        """The source schema by table name (read once per session)."""
        if self._tables is None:
            self._tables = dict((t.name, t) for t in read_schema(self.source))
        return self._tables

    def worker_settings(self, staged_only):
        """What a worker process needs to open a session of its own (see scheduler.run_jobs)."""
        return {"src": self.src, "dest": self.dest, "batch_size": self.batch_size,
                "application_name": self.application_name + " worker", "staged_only": staged_only,
                "clock": self.clock}

    def start_job(self):
        self.statements = []
        self.warnings = []
        self.timings = {}

    def execute(self, cursor, statement, params=None):
        """Run a statement and record it (as PostgreSQL receives it; statements carry no data)."""
        self.record(cursor, statement)
        cursor.execute(statement, params)
        return cursor

    def record(self, cursor, statement):
        self.statements.append(statement.as_string(cursor) if hasattr(statement, "as_string") else statement)

    def add_time(self, phase, seconds):
        self.timings[phase] = self.timings.get(phase, 0.0) + seconds

    def commit(self):
        if self._pg is not None:
            self._pg.commit()

    def rollback(self):
        if self._pg is not None and not self._pg.closed:
            try:
                self._pg.rollback()
            except Exception:  # a broken connection: closing it below is all that is left to do
                pass

    def close(self):
        for connection in (self._pg, self._source):
            if connection is not None:
                try:
                    connection.close()
                except Exception:  # closing after a failure must not hide the failure
                    pass
        self._pg = self._source = None
