"""db_migrate's scheduler: critical-path priorities, lock conflicts between jobs, failures, in one process or several.

The jobs here are fakes registered in scheduler.EXECUTORS; no database is touched.
"""

import os
import signal
import time

import pytest

from ansible_collections.positops.ha.plugins.module_utils._db_migrate import scheduler
from ansible_collections.positops.ha.plugins.module_utils._db_migrate.common import MigrationError

SETTINGS = {"src": "/nonexistent.db", "dest": "postgresql://user:secret@127.0.0.1:1/none", "batch_size": 10}


def job(job_id, cost, after=(), locks=(), kind="fake", table="t"):
    return {"id": job_id, "kind": kind, "table": table, "cost": cost, "after": list(after), "locks": list(locks)}


@pytest.fixture
def fake_kinds(monkeypatch):
    def fake(session, job_, outcome):
        outcome["rows"] = job_["id"]
        session.add_time("keys", 0.5)
        session.statements.append("statement of job %d" % job_["id"])

    def failing(session, job_, outcome):
        raise MigrationError("table %s: job %d failed with %s" % (job_["table"], job_["id"], SETTINGS["dest"]))

    def killed(session, job_, outcome):
        os.kill(os.getpid(), signal.SIGKILL)  # what the OOM killer does

    def slow(session, job_, outcome):
        with open(job_["pid_file"], "w") as handle:
            handle.write(str(os.getpid()))
        time.sleep(60)

    def after_slow_started(session, job_, outcome):
        deadline = time.monotonic() + 30
        while not os.path.exists(job_["pid_file"]) and time.monotonic() < deadline:
            time.sleep(0.05)

    monkeypatch.setitem(scheduler.EXECUTORS, "fake", fake)
    monkeypatch.setitem(scheduler.EXECUTORS, "failing", failing)
    monkeypatch.setitem(scheduler.EXECUTORS, "killed", killed)
    monkeypatch.setitem(scheduler.EXECUTORS, "slow", slow)
    monkeypatch.setitem(scheduler.EXECUTORS, "after_slow_started", after_slow_started)


def test_priorities_are_the_costliest_chain_after_each_job():
    jobs = [job(0, 10), job(1, 1), job(2, 5, after=[0]), job(3, 1, after=[0, 1]), job(4, 2, after=[2, 3])]
    assert scheduler.priorities(jobs) == {0: 17, 1: 4, 2: 7, 3: 3, 4: 2}


def test_ready_jobs_go_by_priority_and_never_two_holding_one_table():
    pending = [job(0, 9, locks=["a", "b"]), job(1, 8, locks=["b"]), job(2, 7, after=[5]), job(3, 6, locks=["c"]),
               job(4, 5)]
    assert [j["id"] for j in scheduler._next_jobs(pending, set(), [], 3)] == [0, 3, 4]
    running = [job(9, 1, locks=["c"])]
    assert [j["id"] for j in scheduler._next_jobs(pending, {5}, running, 2)] == [0, 2]


@pytest.mark.parametrize("workers", [1, 2])
def test_jobs_run_once_each_after_their_inputs(fake_kinds, workers):
    jobs = [job(0, 3), job(1, 1), job(2, 2, after=[0]), job(3, 1, after=[1, 2], locks=["x"]),
            job(4, 1, after=[1], locks=["x"])]
    outcomes = scheduler.run_jobs(jobs, workers, SETTINGS)
    finished = [o["job"]["id"] for o in outcomes]
    assert sorted(finished) == [0, 1, 2, 3, 4]
    assert finished.index(0) < finished.index(2) < finished.index(3)
    assert all(o["ok"] and o["rows"] == o["job"]["id"] for o in outcomes)
    assert all(o["statements"] == ["statement of job %d" % o["job"]["id"]] for o in outcomes)
    assert all(o["timings"] == {"keys": 0.5} for o in outcomes)


@pytest.mark.parametrize("workers", [1, 2])
def test_the_first_failure_stops_the_run_with_the_secret_masked(fake_kinds, workers):
    jobs = [job(0, 5, kind="failing", table="big"), job(1, 1, after=[0]), job(2, 1, after=[1])]
    with pytest.raises(MigrationError, match=r"^table big: job 0 failed with \*\*\*\*\*\*\*\*$"):
        scheduler.run_jobs(jobs, workers, SETTINGS)


def test_jobs_waiting_for_jobs_that_never_come_are_an_internal_error(fake_kinds):
    with pytest.raises(MigrationError, match=r"internal error in db_migrate: jobs fake t wait for jobs that never "
                                             r"run; dest is unchanged"):
        scheduler.run_jobs([job(0, 1, after=[7])], 1, SETTINGS)


def test_a_worker_killed_mid_job_ends_the_run_naming_its_table(fake_kinds):
    jobs = [job(0, 1), job(1, 5, kind="killed", table="big"), job(2, 1, after=[1])]
    began = time.monotonic()
    with pytest.raises(MigrationError, match=r"^table big: the worker process running its killed job was killed by "
                                             r"signal 9; the run stopped with dest unchanged"):
        scheduler.run_jobs(jobs, 2, SETTINGS)
    assert time.monotonic() - began < 30


def test_a_failure_stops_the_jobs_still_running_at_once(fake_kinds, tmp_path):
    pid_file = tmp_path / "slow.pid"
    slow = dict(job(0, 9, kind="slow", table="long"), pid_file=str(pid_file))
    waits = dict(job(2, 1, kind="after_slow_started"), pid_file=str(pid_file))
    jobs = [slow, job(1, 1, kind="failing", table="bad", after=[2]), waits]
    began = time.monotonic()
    with pytest.raises(MigrationError, match=r"^table bad: job 1 failed"):
        scheduler.run_jobs(jobs, 2, SETTINGS)
    assert time.monotonic() - began < 30  # not the slow job's 60 s
    slow_pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(slow_pid, 0)
