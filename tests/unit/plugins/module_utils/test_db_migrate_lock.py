"""One writer per target: db_migrate's advisory lock, private staging schemas, concurrent runs and a killed controller.

The runs that must overlap are real processes (the engine through a small script, or the module file itself, as
it goes on running on a node after the controller's connection dropped) against a throw-away PostgreSQL
(tests/unit/pg_server.py).
"""

import itertools
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

psycopg = pytest.importorskip("psycopg")

from ansible_collections.positops.ha.plugins.module_utils._db_migrate import lock  # noqa: E402
from ansible_collections.positops.ha.plugins.module_utils._db_migrate.common import MigrationError  # noqa: E402
from ansible_collections.positops.ha.plugins.module_utils._db_migrate.migration import Migration  # noqa: E402

from tests.unit.pg_server import postgres_server  # noqa: E402,F401  pylint: disable=unused-import

_databases = itertools.count()
ROWS = 300000
SYS_PATH = ":".join(p for p in sys.path if p)
MODULE = os.path.join(os.path.dirname(__file__), *([os.pardir] * 4), "plugins", "modules", "db_migrate.py")

RUN_SCRIPT = """
import json, sys
sys.path[:0] = sys.argv[3].split(":")
from ansible_collections.positops.ha.plugins.module_utils._db_migrate.migration import Migration
result = Migration(sys.argv[1], sys.argv[2], workers=2, batch_size=500).run()
print(json.dumps({"changed": result["changed"], "ok": result["verification"]["ok"],
                  "rows": result["totals"]["rows"]}))
"""
# The controller of an Ansible run over SSH, reduced to what matters here: it starts the module on the node (a
# process that does not die with it) and waits for it.
CONTROLLER_SCRIPT = """
import subprocess, sys
node = subprocess.Popen([sys.executable, sys.argv[1], sys.argv[2]], env={"PYTHONPATH": sys.argv[3]},
                        stdout=open(sys.argv[4], "w"), start_new_session=True)
print(node.pid, flush=True)
node.wait()
"""


@pytest.fixture
def dest(postgres_server):  # noqa: F811
    name = "dbm_lock_%d" % next(_databases)
    postgres_server.create_database(name)
    return postgres_server.uri(name)


@pytest.fixture
def big_source(tmp_path):
    path = str(tmp_path / "big.db")
    connection = sqlite3.connect(path)
    connection.executescript("""
        CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
        CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id), v TEXT, n REAL,
                            at DATETIME);
    """)
    connection.executemany("INSERT INTO parent VALUES (?, ?)", ((i, "parent %d" % i) for i in range(1, 1001)))
    connection.executemany("INSERT INTO child VALUES (?, ?, ?, ?, ?)", (
        (i, i % 1000 + 1, "x" * (i % 50), i / 7, "2021-02-03 04:05:%02d.%06d" % (i % 60, i))
        for i in range(1, ROWS + 1)))
    connection.commit()
    connection.close()
    return path


def query(uri, statement, params=None):
    with psycopg.connect(uri) as connection:
        return connection.execute(statement, params).fetchall()


def main_sessions(uri):
    """(pid, application_name) of the db_migrate runs holding a lock (their main sessions, not their workers)."""
    return query(uri, "SELECT a.pid, a.application_name FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid "
                      "WHERE l.locktype = 'advisory' AND l.granted AND a.application_name ~ %s",
                 (r"^positops\.ha\.db_migrate run [0-9a-f]{8}$",))


def wait_for(condition, what, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting for %s" % what)


def every_row_once(uri):
    return query(uri, "SELECT count(*), count(DISTINCT id) FROM child") == [(ROWS, ROWS)]


def start_run(src, uri):
    return subprocess.Popen([sys.executable, "-c", RUN_SCRIPT, src, uri, SYS_PATH], stdout=subprocess.PIPE,
                            text=True)


def test_a_second_run_waits_for_the_first_and_finds_the_target_complete(big_source, dest):
    first = start_run(big_source, dest)
    try:
        wait_for(lambda: main_sessions(dest), "the first run to hold the lock")
        second = Migration(big_source, dest, lock_timeout=120).run()
    finally:
        output = first.communicate(timeout=120)[0]
    assert first.returncode == 0
    assert json.loads(output) == {"changed": True, "ok": True, "rows": ROWS + 1000}
    assert second["changed"] is False and second["verification"]["ok"] is True
    assert second["timings"]["lock_wait"] > 0
    assert every_row_once(dest)
    assert query(dest, "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'db\\_migrate%%'") == []


def test_a_second_run_with_a_short_lock_timeout_refuses_naming_the_holder(big_source, dest):
    first = start_run(big_source, dest)
    try:
        pid, application_name = wait_for(lambda: main_sessions(dest), "the first run to hold the lock")[0]
        with pytest.raises(MigrationError) as refused:
            Migration(big_source, dest, lock_timeout=0).run()
    finally:
        output = first.communicate(timeout=120)[0]
    message = str(refused.value)
    assert message.startswith("another db_migrate run is writing schema public of dest (backend pid %d, client "
                              "127.0.0.1 port " % pid)
    assert re.search(r"connected since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+00:00, application_name '%s', user postgres\); "
                     r"waited 0 s \(lock_timeout\)\. Fix: wait until that run ends" % re.escape(application_name),
                     message), message
    assert "SELECT pg_terminate_backend(%d)" % pid in message
    assert json.loads(output)["ok"] is True
    assert every_row_once(dest)


def test_the_lock_is_polled_every_second_until_lock_timeout(tmp_path, dest, fake_clock):
    src = str(tmp_path / "small.db")
    connection = sqlite3.connect(src)
    connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    connection.commit()
    connection.close()
    with psycopg.connect(dest, application_name="positops.ha.db_migrate run feedbeef", autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (lock.lock_key("public"),))
        with pytest.raises(MigrationError, match=r"backend pid %d, .*application_name 'positops.ha.db_migrate run "
                                                 r"feedbeef'.*waited 3 s" % holder.info.backend_pid):
            Migration(src, dest, lock_timeout=3, clock=fake_clock.monotonic, sleep=fake_clock.sleep).run()
        assert fake_clock.sleeps == [1.0, 1.0, 1.0]
        assert query(dest, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'db\\_migrate%%'") == [(0,)]
        # Another schema has its own lock.
        assert Migration(src, dest, schema="other").run()["changed"] is True


def test_staging_schemas_of_dead_runs_are_dropped_and_live_ones_kept(tmp_path, dest):
    src = str(tmp_path / "small.db")
    connection = sqlite3.connect(src)
    connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    connection.commit()
    connection.close()
    dead_here = lock.staging_schema_name("public", "deadbeef")
    dead_legacy = lock.legacy_staging_name("public")
    dead_elsewhere = lock.staging_schema_name("third", "0badf00d")
    live_elsewhere = lock.staging_schema_name("other", "cafebabe")
    with psycopg.connect(dest, autocommit=True) as holder:
        for name in (dead_here, dead_legacy, dead_elsewhere, live_elsewhere):
            holder.execute('CREATE SCHEMA "%s"' % name)
            holder.execute('CREATE TABLE "%s".t (id bigint)' % name)
        holder.execute("SELECT pg_advisory_lock(%s)", (lock.lock_key("other"),))  # a live run into "other"
        result = Migration(src, dest).run()
    dropped = sorted([dead_here, dead_legacy, dead_elsewhere])
    assert sorted(w.split()[3].rstrip(",") for w in result["warnings"]) == dropped
    assert ['DROP SCHEMA "%s" CASCADE' % name for name in dropped] == sorted(
        s for s in result["statements"] if s.startswith("DROP SCHEMA") and "CASCADE" in s)
    assert query(dest, "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'db\\_migrate%%'") == [(live_elsewhere,)]


def test_staging_names_are_private_to_a_run_and_tell_their_target():
    first = lock.staging_schema_name("public", "0000abcd")
    second = lock.staging_schema_name("public", "0000abce")
    assert first != second and len(first) == 44
    assert lock.staging_lock_key(first) == lock.staging_lock_key(second) == lock.lock_key("public")
    assert lock.staging_lock_key(lock.legacy_staging_name("public")) is None
    assert lock.staging_lock_key("db_migrate_staging_x") is None


def test_kill_of_the_controller_lets_the_module_finish_and_a_rerun_verifies(big_source, dest, tmp_path, run_module):
    from ansible_collections.positops.ha.plugins.modules import db_migrate

    args = tmp_path / "args.json"
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {"src": big_source, "dest": dest, "batch_size": 500}}))
    node_output = tmp_path / "node.out"
    controller = subprocess.Popen([sys.executable, "-c", CONTROLLER_SCRIPT, os.path.abspath(MODULE), str(args),
                                   SYS_PATH, str(node_output)], stdout=subprocess.PIPE, text=True)
    node_pid = int(controller.stdout.readline())
    try:
        wait_for(lambda: query(dest, "SELECT 1 FROM pg_stat_progress_copy"), "the module to copy")
        controller.send_signal(signal.SIGKILL)  # the controller is gone; the module goes on on its node
        controller.wait()
        os.kill(node_pid, 0)  # still running
        failed, rerun = run_module(db_migrate.main, {"src": big_source, "dest": dest, "lock_timeout": 120})
    finally:
        wait_for(lambda: not os.path.exists("/proc/%d" % node_pid) or open(
            "/proc/%d/stat" % node_pid).read().split(")")[1].split()[0] == "Z", "the module to end")
    assert not failed, rerun.get("msg")
    assert rerun["changed"] is False and rerun["verification"]["ok"] is True
    assert rerun["timings"]["lock_wait"] > 0
    node = json.loads(node_output.read_text().strip().splitlines()[-1])
    assert node["changed"] is True and node["verification"]["ok"] is True
    assert every_row_once(dest)


def test_kill_of_the_module_mid_load_then_a_rerun_verifies(big_source, dest, tmp_path, run_module):
    """A kill on the node itself: the staging schema stays behind, unlocked; the re-run drops it and completes."""
    from ansible_collections.positops.ha.plugins.modules import db_migrate

    args = tmp_path / "args.json"
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {"src": big_source, "dest": dest, "batch_size": 500}}))
    node = subprocess.Popen([sys.executable, os.path.abspath(MODULE), str(args)], env={"PYTHONPATH": SYS_PATH},
                            stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: query(dest, "SELECT 1 FROM pg_stat_progress_copy WHERE tuples_processed > 1000"),
                 "the module to copy")
    finally:
        node.send_signal(signal.SIGKILL)
        node.wait()
    staging = wait_for(lambda: query(dest, "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'db\\_migrate%%'"),
                       "the staging schema")
    wait_for(lambda: not main_sessions(dest), "the killed run's lock to go")
    assert query(dest, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]
    failed, rerun = run_module(db_migrate.main, {"src": big_source, "dest": dest})
    assert not failed, rerun.get("msg")
    assert rerun["changed"] is True and rerun["verification"]["ok"] is True
    assert "dropped staging schema %s, left by a run that ended before its swap" % staging[0][0] in rerun["_warnings"]
    assert every_row_once(dest)
    assert query(dest, "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'db\\_migrate%%'") == []
