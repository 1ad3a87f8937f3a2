# -*- coding: utf-8 -*-
# Copyright: positops.ha maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!
"""The parallel scheduler: jobs (plain dicts) run by worker processes as soon as the jobs they wait for are done.

A job names its ``kind``, the ``table`` and, where it applies, the ``slice`` and the ``schema`` it works in, the
ids of the jobs it comes ``after`` and a ``size`` (bigger first among the ready ones). Each worker process keeps one
:class:`~.session.Session` (its own SQLite and PostgreSQL connections) across its jobs; with one worker the jobs run
in the calling process, one after the other, with a session of their own. A job's outcome is a plain dict: rows,
digest, the statements it ran, its warnings and timings, or the error (secrets masked).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import multiprocessing
import queue

from ansible_collections.positops.ha.plugins.module_utils._db_migrate.common import MigrationError, mask
from ansible_collections.positops.ha.plugins.module_utils._db_migrate.session import Session
from ansible_collections.positops.ha.plugins.module_utils._db_migrate.sqlite_source import Slice
from ansible_collections.positops.ha.plugins.module_utils._db_migrate.stream import copy_slice
from ansible_collections.positops.ha.plugins.module_utils._db_migrate.target import (
    add_foreign_keys,
    add_keys_and_indexes,
    create_mapping,
)
from ansible_collections.positops.ha.plugins.module_utils._db_migrate.verify import (
    slice_source_digest,
    target_digest,
)


def _copy(session, job, outcome):
    table = session.tables()[job["table"]]
    cursor = session.pg.cursor()
    outcome["rows"], outcome["digest"] = copy_slice(session, cursor, create_mapping(table), job["schema"],
                                                    Slice.from_dict(job["slice"]), job["ordered"])


def _keys(session, job, outcome):
    began = session.clock()
    add_keys_and_indexes(session, session.pg.cursor(), job["schema"], session.tables()[job["table"]])
    session.add_time("keys", session.clock() - began)


def _foreign(session, job, outcome):
    began = session.clock()
    add_foreign_keys(session, session.pg.cursor(), job["schema"], session.tables()[job["table"]],
                     set(job["available"]))
    session.add_time("foreign_keys", session.clock() - began)


def _source_digest(session, job, outcome):
    table = session.tables()[job["table"]]
    outcome["rows"], outcome["digest"] = slice_source_digest(session, create_mapping(table),
                                                             Slice.from_dict(job["slice"]), job["ordered"])


def _target_digest(session, job, outcome):
    outcome["rows"], outcome["digest"] = target_digest(session, job["plan"], job["schema"],
                                                       Slice.from_dict(job["slice"]))


EXECUTORS = {
    "copy": _copy,
    "keys": _keys,
    "foreign": _foreign,
    "source_digest": _source_digest,
    "target_digest": _target_digest,
}


def run_job(session, job):
    """Run one job with a session; commit its work; return its outcome (never raises)."""
    session.start_job()
    began = session.clock()
    try:
        outcome = {"ok": True, "job": job, "rows": 0}
        EXECUTORS[job["kind"]](session, job, outcome)
        session.commit()
        outcome.update(statements=session.statements, warnings=session.warnings, timings=session.timings,
                       seconds=session.clock() - began)
        return outcome
    except MigrationError as error:
        session.rollback()
        return {"ok": False, "job": job, "error": mask(error, session.secrets)}
    except Exception as error:  # anything else still comes back masked, never as a traceback holding dest
        session.rollback()
        return {"ok": False, "job": job, "error": "table %s: %s: %s" % (
            job["table"], type(error).__name__, mask(error, session.secrets))}


def die_with_parent():
    """A worker gets SIGKILL when the module process dies (Linux), so a killed run stops all its work."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux/glibc: the workers end at their next task instead
        pass


_WORKER_SESSION = None


def _start_worker(settings):
    global _WORKER_SESSION  # pylint: disable=global-statement
    die_with_parent()
    _WORKER_SESSION = Session(**settings)


def _run_in_worker(job):
    return run_job(_WORKER_SESSION, job)


def run_jobs(jobs, workers, settings, secrets):
    """Run the jobs, at most ``workers`` at a time, each once its "after" jobs are done.

    ``settings`` are the keyword arguments of each worker's Session. Returns the outcomes in the order they
    finished; the first failure stops the other jobs and is raised as MigrationError.
    """
    if not jobs:
        return []
    pending = sorted(jobs, key=lambda job: -job["size"])
    done, outcomes = set(), []
    if workers == 1:
        session = Session(**settings)
        try:
            while pending:
                ready = [job for job in pending if set(job["after"]) <= done]
                if not ready:
                    raise _stuck(pending)
                pending.remove(ready[0])
                outcome = run_job(session, ready[0])
                outcomes.append(outcome)
                if not outcome["ok"]:
                    break
                done.add(outcome["job"]["id"])
        finally:
            session.close()
    else:
        # fork: the workers start with the schema and code already loaded. The parent's open connections are
        # inherited but never used by a worker, and a worker ends with os._exit, which closes none of them.
        context = multiprocessing.get_context("fork")
        pool = context.Pool(min(workers, len(jobs)), initializer=_start_worker, initargs=(settings,))
        finished = queue.Queue()
        running = 0
        try:
            while pending or running:
                ready = [job for job in pending if set(job["after"]) <= done]
                for job in ready[:max(0, workers - running)]:
                    pending.remove(job)
                    running += 1
                    pool.apply_async(_run_in_worker, (job,), callback=finished.put,
                                     error_callback=lambda error, job=job: finished.put(
                                         {"ok": False, "job": job, "error": "table %s: %s: %s" % (
                                             job["table"], type(error).__name__, mask(error, secrets))}))
                if not running:
                    raise _stuck(pending)
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
    if failures:
        raise MigrationError(failures[0]["error"])
    return outcomes


def _stuck(pending):
    return MigrationError("internal error in db_migrate: jobs %s wait for jobs that never run; dest is unchanged "
                          "(the next run drops the staging schema); please report it"
                          % ", ".join("%s %s" % (job["kind"], job["table"]) for job in pending))
