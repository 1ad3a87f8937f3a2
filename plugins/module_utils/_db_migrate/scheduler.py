# -*- coding: utf-8 -*-
# Copyright: positops.ha maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!
"""The parallel scheduler: jobs (plain dicts) run by worker processes as soon as the jobs they wait for are done.

A job names its ``kind``, the ``table`` and, where it applies, the ``slice`` and the ``schema`` it works in, the
ids of the jobs it comes ``after``, an estimate of its ``cost`` and the tables it ``locks`` against other jobs that
lock them (jobs whose PostgreSQL locks conflict would wait for each other inside the server, holding workers). Among
the ready jobs the one with the longest chain of work after it goes first (critical path list scheduling), so the
long serial tail of a big table (its keys, then its foreign keys) starts early. Each worker process keeps one
:class:`~.session.Session` (its own SQLite and PostgreSQL connections) across its jobs; with one worker the jobs run
in the calling process, one after the other, with a session of their own. A job's outcome is a plain dict: rows,
digest, the statements it ran, its warnings and timings, or the error (secrets masked).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import multiprocessing
import multiprocessing.connection

from ansible_collections.positops.ha.plugins.module_utils._db_migrate.common import MigrationError, mask
from ansible_collections.positops.ha.plugins.module_utils._db_migrate.session import Session
from ansible_collections.positops.ha.plugins.module_utils._db_migrate.sqlite_source import Slice
from ansible_collections.positops.ha.plugins.module_utils._db_migrate.stream import copy_slice
from ansible_collections.positops.ha.plugins.module_utils._db_migrate.target import (
    add_foreign_keys,
    add_index,
    add_keys,
    create_mapping,
    validate_foreign_keys,
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
    add_keys(session, session.pg.cursor(), job["schema"], session.tables()[job["table"]])
    session.add_time("keys", session.clock() - began)


def _index(session, job, outcome):
    began = session.clock()
    table = session.tables()[job["table"]]
    index = [i for i in table.indexes if i["name"] == job["index"]][0]
    add_index(session, session.pg.cursor(), job["schema"], table, index)
    session.add_time("keys", session.clock() - began)


def _foreign(session, job, outcome):
    began = session.clock()
    add_foreign_keys(session, session.pg.cursor(), job["schema"], session.tables()[job["table"]],
                     set(job["available"]))
    session.add_time("foreign_keys", session.clock() - began)


def _validate(session, job, outcome):
    began = session.clock()
    validate_foreign_keys(session, session.pg.cursor(), job["schema"], session.tables()[job["table"]])
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
    "index": _index,
    "foreign": _foreign,
    "validate": _validate,
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


def _worker_main(connection, settings):
    """A worker process: run each job the parent sends with one session, until the parent sends None."""
    die_with_parent()
    session = Session(**settings)
    try:
        for job in iter(connection.recv, None):
            connection.send(run_job(session, job))
    except EOFError:  # the parent is gone
        pass
    finally:
        session.close()


class _Worker:
    """One forked worker process, the pipe to it and the job it runs (None when idle)."""

    def __init__(self, context, settings):
        self.pipe, child_end = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child_end, settings), daemon=True)
        self.process.start()
        child_end.close()
        self.job = None

    def give(self, job):
        self.job = job
        try:
            self.pipe.send(job)
        except OSError:  # it died while idle: its sentinel is ready, and take_outcome() says so
            pass

    def take_outcome(self, ready):
        """The outcome of its job if it ended (answered or died), else None; the worker is idle afterwards."""
        if self.pipe in ready:
            try:
                outcome = self.pipe.recv()
            except EOFError:  # the process died before it answered
                outcome = self._died()
        elif self.process.sentinel in ready:
            outcome = self._died()
        else:
            return None
        self.job = None
        return outcome

    def _died(self):
        self.process.join(5)
        code = self.process.exitcode
        how = "was killed by signal %d" % -code if code is not None and code < 0 else "ended (exit code %s)" % code
        return {"ok": False, "job": self.job, "error": (
            "table %s: the worker process running its %s job %s; the run stopped with dest unchanged (the next run "
            "drops the staging schema). If the kernel log shows the OOM killer, give the host more memory or run "
            "with fewer workers" % (self.job["table"], self.job["kind"], how))}

    def stop(self):
        """End the process: an idle one when it reads None, a busy one at once (its work is staged only)."""
        if self.job is None:
            try:
                self.pipe.send(None)
            except OSError:  # already gone
                pass
        else:
            self.process.terminate()
        self.pipe.close()
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def priorities(jobs):
    """Each job's cost plus the costliest chain of jobs that wait for it (its "bottom level")."""
    waiting = dict((job["id"], []) for job in jobs)
    for job in jobs:
        for before in job["after"]:
            waiting.setdefault(before, []).append(job["id"])  # an unknown id: _stuck() reports it
    by_id = dict((job["id"], job) for job in jobs)
    levels = {}

    def level(job_id):
        if job_id not in levels:
            levels[job_id] = by_id[job_id]["cost"] + max([level(j) for j in waiting[job_id]] or [0])
        return levels[job_id]

    for job in jobs:
        level(job["id"])
    return levels


def _next_jobs(pending, done, running, free):
    """Up to ``free`` ready jobs, by priority, none locking a table that a running or chosen job locks."""
    locked = set()
    for job in running:
        locked.update(job.get("locks", ()))
    chosen = []
    for job in pending:
        if len(chosen) >= free:
            break
        if set(job["after"]) <= done and not locked.intersection(job.get("locks", ())):
            chosen.append(job)
            locked.update(job.get("locks", ()))
    return chosen


def run_jobs(jobs, workers, settings):
    """Run the jobs, at most ``workers`` at a time, each once its "after" jobs are done.

    ``settings`` are the keyword arguments of each worker's Session. Returns the outcomes in the order they
    finished; the first failure stops the other jobs and is raised as MigrationError.
    """
    if not jobs:
        return []
    levels = priorities(jobs)
    pending = sorted(jobs, key=lambda job: -levels[job["id"]])
    done, outcomes = set(), []
    if workers == 1:
        session = Session(**settings)
        try:
            while pending:
                ready = _next_jobs(pending, done, [], 1)
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
        # Each worker is watched through its pipe and its process sentinel, so a worker that dies mid-job (the OOM
        # killer, a crash) ends the run with its table named instead of leaving the run waiting for ever.
        context = multiprocessing.get_context("fork")
        pool = []
        try:
            pool.extend(_Worker(context, settings) for _number in range(min(workers, len(jobs))))
            while pending or any(worker.job is not None for worker in pool):
                idle = [worker for worker in pool if worker.job is None]
                running = [worker.job for worker in pool if worker.job is not None]
                for worker, job in zip(idle, _next_jobs(pending, done, running, len(idle))):
                    pending.remove(job)
                    worker.give(job)
                busy = [worker for worker in pool if worker.job is not None]
                if not busy:
                    raise _stuck(pending)
                ready = multiprocessing.connection.wait([w.pipe for w in busy] + [w.process.sentinel for w in busy])
                for worker in busy:
                    outcome = worker.take_outcome(ready)
                    if outcome is not None:
                        outcomes.append(outcome)
                        if outcome["ok"]:
                            done.add(outcome["job"]["id"])
                if not all(outcome["ok"] for outcome in outcomes):
                    break  # the other jobs' work is staged only: stop them
        finally:
            for worker in pool:
                worker.stop()
    failures = [o for o in outcomes if not o["ok"]]
    if failures:
        raise MigrationError(failures[0]["error"])
    return outcomes


def _stuck(pending):
    return MigrationError("internal error in db_migrate: jobs %s wait for jobs that never run; dest is unchanged "
                          "(the next run drops the staging schema); please report it"
                          % ", ".join("%s %s" % (job["kind"], job["table"]) for job in pending))
