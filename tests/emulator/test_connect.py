"""Local tests of the Connect emulator: daemons from the unpacked .debs on loopback, SQLite in tmp."""

import json
import os
import subprocess
import time

import pytest

from emulator_harness import Process, env_with, free_port, http, wait_http

OLD, NEW = "2023.09.0", "2023.12.0"


class ConnectNode:
    def __init__(self, tmp, name, root, processes, data_dir, sqlite_dir, metrics=None, extra=""):
        self.name = name
        self.root = root
        self.dir = tmp / name
        self.dir.mkdir(exist_ok=True)
        self.port = free_port()
        self.config = self.dir / "rstudio-connect.gcfg"
        self.env = env_with({"POSITEMU_RUN_DIR": str(self.dir / "run"), "POSITEMU_HOSTNAME": name})
        self.processes = processes
        self.process = None
        self.config.write_text(
            "[Server]\nDataDir = %s\n[HTTP]\nListen = 127.0.0.1:%d\n[Database]\nProvider = SQLite\n"
            "[SQLite]\nDir = %s\n[Metrics]\nDataPath = %s\n[Applications]\nRunAs = nobody\n%s"
            % (data_dir, self.port, sqlite_dir, metrics or self.dir / "metrics", extra))

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def bin(self, tool):
        return str(self.root / "opt/rstudio-connect/bin" / tool)

    def start(self, root=None):
        self.root = root or self.root
        self.process = Process([self.bin("connect"), "--config", str(self.config)], self.env,
                               self.dir / "journal.log")
        self.processes.append(self.process)
        return self.process

    def migrate(self, *args):
        return subprocess.run([self.bin("migrate"), "--config", str(self.config), *args],
                              capture_output=True, text=True, env=self.env, timeout=60)


@pytest.fixture
def make_node(tmp_path, unpacked, processes):
    # Content is read as other users: let them traverse the test's directories.
    for path in [tmp_path, *tmp_path.parents]:
        if str(path) in ("/", "/tmp"):
            break
        os.chmod(path, 0o755)

    def make(name, version=OLD, data_dir=None, sqlite_dir=None, **kwargs):
        data_dir = data_dir or tmp_path / ("data-" + name)
        sqlite_dir = sqlite_dir or tmp_path / "db"
        return ConnectNode(tmp_path, name, unpacked[("rstudio-connect", version)], processes, data_dir, sqlite_dir,
                           **kwargs)
    return make


def test_start_creates_schema_and_serves(make_node):
    node = make_node("c1")
    node.start()
    wait_http(node.url + "/__ping__")
    settings = json.loads(http(node.url + "/__api__/server_settings")[1])
    assert settings["version"] == OLD and settings["schema"] == 71 and settings["database"] == "sqlite"
    assert "Created the database schema version 71" in node.process.log()


def test_upgrade_migrates_with_503_then_old_binaries_stop_and_refuse(make_node, unpacked):
    # Separate data dirs, one SQLite database: two old nodes and the schema they share.
    one, two = make_node("c1"), make_node("c2")
    one.start(), two.start()
    wait_http(one.url + "/__ping__"), wait_http(two.url + "/__ping__")
    one.process.stop()
    one.start(unpacked[("rstudio-connect", NEW)])
    wait_http(one.url + "/__ping__", status=503)
    one.process.wait_log("Migrating the database schema from version 71 to 72")
    assert http(one.url + "/__ping__")[0] == 503
    wait_http(one.url + "/__ping__", timeout=10)
    assert two.process.wait_exit(timeout=10) == 1
    assert "the database schema version 72 is newer than this binary supports (71)" in two.process.log()
    again = two.start()
    assert again.wait_exit() == 1
    assert "Refusing to start" in again.log()


def test_second_sqlite_node_on_shared_data_dir_refuses(make_node, tmp_path):
    shared = tmp_path / "shared"
    one = make_node("c1", data_dir=shared, sqlite_dir=tmp_path / "db1")
    two = make_node("c2", data_dir=shared, sqlite_dir=tmp_path / "db2")
    one.start()
    wait_http(one.url + "/__ping__")
    process = two.start()
    assert process.wait_exit() == 1
    assert "Connect server c1 is running with the same Server.DataDir" in process.log()
    assert "only supports HA with PostgreSQL" in process.log()
    # Once the first server stops, the second may use the data dir alone.
    one.process.stop()
    two.start()
    wait_http(two.url + "/__ping__")


def test_shared_metrics_path_fails_with_clear_log(make_node, tmp_path):
    metrics = tmp_path / "metrics-shared"
    one, two = make_node("c1", metrics=metrics), make_node("c2", metrics=metrics)
    one.start()
    wait_http(one.url + "/__ping__")
    process = two.start()
    assert process.wait_exit() == 1
    assert "Metrics.DataPath %s is in use by another Connect server (host c1" % metrics in process.log()


def test_content_written_0600_by_runas_and_unreadable_for_another_uid(make_node, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to write files as the RunAs user")
    shared = tmp_path / "shared"
    one = make_node("c1", data_dir=shared, extra="[Applications]\nRunAs = nobody\n")
    two = make_node("c2", data_dir=shared, extra="[Applications]\nRunAs = daemon\n")
    one.start()
    wait_http(one.url + "/__ping__")
    assert http(one.url + "/__emulator__/content?name=app", "POST", b"bundle bytes")[0] == 201
    bundle = shared / "apps" / "app" / "bundle"
    assert (bundle.stat().st_uid, oct(bundle.stat().st_mode & 0o777)) == (65534, "0o600")
    assert oct((shared / "apps" / "app").stat().st_mode & 0o777) == "0o700"
    assert http(one.url + "/content/app/") == (200, "bundle bytes")
    one.process.stop()
    two.start()
    wait_http(two.url + "/__ping__")
    status, _ = http(two.url + "/content/app/")
    assert status == 500
    two.process.wait_log("cannot read %s as daemon (uid 1)" % bundle)
    assert "the file belongs to uid 65534" in two.process.log()


def test_unknown_runas_user_refuses_to_start(make_node):
    node = make_node("c1", extra="[Applications]\nRunAs = no-such-user\n")
    process = node.start()
    assert process.wait_exit() == 1
    assert "Applications.RunAs user 'no-such-user' does not exist" in process.log()


def wait_jobs(node, predicate, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = json.loads(http(node.url + "/__emulator__/jobs")[1])
        if predicate(jobs):
            return jobs
        time.sleep(0.3)
    raise AssertionError("jobs never matched: %s" % jobs)


def test_schedule_concurrency_limits_and_zero_disables(make_node):
    busy = make_node("c1", extra="[Applications]\nScheduleConcurrency = 1\n")
    idle = make_node("c2", extra="[Applications]\nScheduleConcurrency = 0\n")
    idle.start()
    wait_http(idle.url + "/__ping__")
    for index in range(2):
        assert http(idle.url + "/__emulator__/jobs?name=r%d&seconds=1.5" % index, "POST")[0] == 201
    time.sleep(2.5)  # more than two polls: the node with concurrency 0 never takes a job
    assert [job["state"] for job in json.loads(http(idle.url + "/__emulator__/jobs")[1])] == ["pending"] * 2
    assert "Scheduled jobs are disabled on this node" in idle.process.log()
    busy.start()
    wait_http(busy.url + "/__ping__")
    jobs = wait_jobs(busy, lambda jobs: any(job["state"] == "running" for job in jobs))
    assert [job["state"] for job in jobs].count("running") == 1
    jobs = wait_jobs(busy, lambda jobs: all(job["state"] == "done" for job in jobs))
    assert all(job["node"] == "c1" and job["attempts"] == 1 for job in jobs)


def test_abandoned_job_is_taken_over_and_runs_twice(make_node):
    first = make_node("c1")
    second = make_node("c2", extra="[Applications]\nScheduleConcurrency = 0\n")
    first.start()
    wait_http(first.url + "/__ping__")
    http(first.url + "/__emulator__/jobs?name=long&seconds=6", "POST")
    wait_jobs(first, lambda jobs: jobs[0]["state"] == "running")
    first.process.proc.kill()  # the node dies mid-job: its heartbeat stops
    first.process.wait_exit()
    second.config.write_text(second.config.read_text().replace("ScheduleConcurrency = 0",
                                                               "ScheduleConcurrency = 2"))
    second.start()
    wait_http(second.url + "/__ping__")
    # Loose: the takeover waits out the heartbeat window, then the 6 s job runs again (slow on a loaded host).
    jobs = wait_jobs(second, lambda jobs: jobs[0]["state"] == "done", timeout=120)
    assert jobs[0]["node"] == "c2" and jobs[0]["attempts"] == 2
    assert [(run["node"], run["finished"]) for run in jobs[0]["runs"]] == [("c1", False), ("c2", True)]
    assert "Claimed abandoned job" in second.process.log()


def test_migrate_preconditions(make_node):
    node = make_node("c1")
    node.start()
    wait_http(node.url + "/__ping__")
    result = node.migrate("db")
    assert result.returncode == 1 and "needs both a [SQLite] and a [Postgres] section" in result.stderr
    node.config.write_text(node.config.read_text() + "[Postgres]\nURL = postgres://u:pw@127.0.0.1:1/x\n")
    result = node.migrate("db")
    assert result.returncode == 1 and "the rstudio-connect service is running" in result.stderr
    node.process.stop()
    result = node.migrate("db", "--to", "sqlite")
    assert result.returncode == 1 and "migrate only copies SQLite to PostgreSQL" in result.stderr
    result = node.migrate()
    assert result.returncode == 1 and "Usage: migrate" in result.stderr
    result = node.migrate("db")
    assert result.returncode == 1 and "cannot connect to PostgreSQL at postgres://u:****@" in result.stderr


def test_content_api_needs_an_api_key_of_the_database(make_node):
    node = make_node("c1")
    node.start()
    wait_http(node.url + "/__ping__")
    assert http(node.url + "/__emulator__/content?name=report", method="POST", data=b"bundle")[0] == 201
    status, body = http(node.url + "/__api__/v1/content")
    assert status == 401 and "requires authentication" in body
    key = json.loads(http(node.url + "/__emulator__/api_keys?name=ops", method="POST")[1])["key"]
    assert http(node.url + "/__api__/v1/content", headers={"Authorization": "Key " + key})[1].count('"name": "report"') == 1
    assert http(node.url + "/__api__/v1/content", headers={"Authorization": "Key not-" + key})[0] == 401
