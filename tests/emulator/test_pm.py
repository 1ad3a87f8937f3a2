"""Local tests of the Package Manager emulator: daemons from the unpacked .debs on loopback, SQLite in tmp."""

import json
import stat
import subprocess
import threading
import time

import pytest

from emulator_harness import Process, env_with, free_port, http, wait_http

OLD, NEW = "2023.08.4-20", "2023.12.0-13"


class PmNode:
    def __init__(self, tmp, name, root, shared, processes, extra_config=""):
        self.name = name
        self.root = root
        self.dir = tmp / name
        self.dir.mkdir(exist_ok=True)
        self.port = free_port()
        self.config = self.dir / "rstudio-pm.gcfg"
        self.env = env_with({"POSITEMU_RUN_DIR": str(self.dir / "run")})
        self.processes = processes
        self.process = None
        self.config.write_text(
            "[Server]\nDataDir = %s\nHostName = %s\nEncryptionKeyPath = %s\n[HTTP]\nListen = 127.0.0.1:%d\n"
            "[Database]\nProvider = sqlite\n[Sqlite]\nDir = %s\n%s"
            % (shared / "data", name, self.dir / "rstudio-pm.key", self.port, shared / "db", extra_config))

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def bin(self, tool):
        return str(self.root / "opt/rstudio-pm/bin" / tool)

    def use_postgres(self, url):
        self.config.write_text(self.config.read_text().replace("Provider = sqlite", "Provider = postgres")
                               + "[Postgres]\nURL = %s\n" % url)

    def start(self, root=None):
        self.root = root or self.root
        self.process = Process([self.bin("rstudio-pm"), "--config", str(self.config)],
                               self.env, self.dir / "journal.log")
        self.processes.append(self.process)
        return self.process

    def rspm(self, *args, env=None):
        return subprocess.run([self.bin("rspm"), "--config", str(self.config), *args],
                              capture_output=True, text=True, env=env or self.env, timeout=120)

    def migrate(self, *args):
        return subprocess.run([self.bin("migrate"), "--config", str(self.config), *args],
                              capture_output=True, text=True, env=self.env, timeout=60)


@pytest.fixture
def cluster(tmp_path, unpacked, processes):
    shared = tmp_path / "shared"
    (shared / "db").mkdir(parents=True)

    def make(name, version=OLD, extra_config=""):
        return PmNode(tmp_path, name, unpacked[("rstudio-pm", version)], shared, processes, extra_config)
    return make


def listing(result):
    return [line.split() for line in result.stdout.splitlines()]


def test_start_creates_key_and_serves_ping(cluster):
    node = cluster("pm1")
    node.start()
    wait_http(node.url + "/__ping__")
    key = node.dir / "rstudio-pm.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(key.read_text().strip()) == 64
    status = json.loads(http(node.url + "/__api__/status")[1])
    assert status["version"] == OLD and status["schema"] == 41 and status["hostname"] == "pm1"


def test_key_readable_by_others_is_refused(cluster):
    node = cluster("pm1")
    key = node.dir / "rstudio-pm.key"
    key.write_text("abc\n")
    key.chmod(0o644)
    process = node.start()
    assert process.wait_exit() == 1
    assert "encryption key %s has mode 0644; it must be 0600" % key in process.log()


def test_missing_config_is_a_clear_error(cluster):
    node = cluster("pm1")
    node.config.unlink()
    process = node.start()
    assert process.wait_exit() == 1
    assert "configuration file %s does not exist" % node.config in process.log()
    result = node.rspm("cluster", "nodes")
    assert result.returncode == 1 and "does not exist" in result.stderr


def test_bad_provider_is_a_clear_error(cluster):
    node = cluster("pm1")
    node.config.write_text(node.config.read_text().replace("Provider = sqlite", "Provider = mysql"))
    process = node.start()
    assert process.wait_exit() == 1
    assert "[Database] Provider must be sqlite or postgres, got 'mysql'" in process.log()


def test_data_route_reads_the_data_dir(cluster):
    one, two = cluster("pm1"), cluster("pm2")
    one.start(), two.start()
    wait_http(one.url + "/__ping__"), wait_http(two.url + "/__ping__")
    assert http(one.url + "/__emulator__/data/pkgs/a.txt", "PUT", b"shared bytes")[0] == 201
    assert http(two.url + "/__emulator__/data/pkgs/a.txt") == (200, "shared bytes")
    assert http(two.url + "/__emulator__/data/../../etc/passwd")[0] == 400
    assert http(one.url + "/__api__/repos", "POST")[0] == 400
    assert http(one.url + "/__api__/repos?name=cran", "POST")[0] == 201
    assert json.loads(http(two.url + "/__api__/repos")[1]) == [{"name": "cran", "description": ""}]


def test_cluster_nodes_offline_online_and_errors(cluster):
    one, two = cluster("pm1"), cluster("pm2")
    one.start(), two.start()
    wait_http(one.url + "/__ping__"), wait_http(two.url + "/__ping__")
    result = one.rspm("cluster", "nodes")
    assert result.returncode == 0 and result.stderr == ""
    assert listing(result) == [["pm1", OLD, "online"], ["pm2", OLD, "online"]]

    started = time.monotonic()
    result = one.rspm("cluster", "offline", "--nodes=pm2", "--timeout=20")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 10
    assert listing(result) == [["pm1", OLD, "online"], ["pm2", OLD, "offline"]]
    assert http(two.url + "/__ping__")[0] == 503
    assert http(two.url + "/__emulator__/data/x")[0] == 503
    assert http(one.url + "/__ping__")[0] == 200

    result = one.rspm("cluster", "offline", "--nodes=pm2,ghost")
    assert result.returncode == 1
    assert result.stderr == "Error: unknown node(s): ghost. Known nodes: pm1, pm2\n"

    for bad in ("--timeout=abc", "--timeout=0", "--timeout=-5"):
        result = one.rspm("cluster", "online", "--nodes=pm2", bad)
        assert result.returncode == 1 and "flag --timeout" in result.stderr, result.stderr

    result = one.rspm("cluster", "online")
    assert result.returncode == 1 and "--nodes is required" in result.stderr

    result = one.rspm("--output-format=json", "cluster", "online", "--nodes", "pm2")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"nodes": [{"hostname": "pm1", "version": OLD, "mode": "online"},
                                                   {"hostname": "pm2", "version": OLD, "mode": "online"}]}
    wait_http(two.url + "/__ping__")


def test_timeout_when_node_does_not_answer(cluster):
    one, two = cluster("pm1"), cluster("pm2")
    one.start(), two.start()
    wait_http(one.url + "/__ping__"), wait_http(two.url + "/__ping__")
    two.process.stop()
    started = time.monotonic()
    result = one.rspm("cluster", "offline", "--nodes=pm2", "--timeout=2")
    assert 2 <= time.monotonic() - started < 6
    assert result.returncode == 1
    assert result.stderr == "Error: timed out after 2 seconds waiting for node(s) pm2 to be offline\n"
    assert listing(result) == [["pm1", OLD, "online"], ["pm2", OLD, "online"]]


def test_offline_lets_in_flight_requests_finish(cluster):
    node = cluster("pm1")
    node.start()
    wait_http(node.url + "/__ping__")
    results = []
    slow = threading.Thread(target=lambda: results.append(http(node.url + "/__emulator__/slow?seconds=3")))
    slow.start()
    time.sleep(0.5)
    started = time.monotonic()
    result = node.rspm("offline")
    took = time.monotonic() - started
    slow.join(10)
    assert result.returncode == 0, result.stderr
    assert results and results[0][0] == 200
    assert took >= 2, "offline returned before the in-flight request finished"
    assert http(node.url + "/__ping__")[0] == 503
    assert "waiting for 1 in-flight request(s)" in node.process.log()


def test_mode_survives_restart(cluster):
    node = cluster("pm1")
    node.start()
    wait_http(node.url + "/__ping__")
    assert node.rspm("offline").returncode == 0
    node.process.stop()
    node.start()
    node.process.wait_log("starts offline")
    wait_http(node.url + "/__ping__", status=503)
    assert listing(node.rspm("cluster", "nodes")) == [["pm1", OLD, "offline"]]
    assert node.rspm("online").returncode == 0
    wait_http(node.url + "/__ping__")


def test_rolling_upgrade_migrates_on_online_and_old_nodes_shut_down(cluster, unpacked):
    one, two = cluster("pm1"), cluster("pm2")
    one.start(), two.start()
    wait_http(one.url + "/__ping__"), wait_http(two.url + "/__ping__")
    assert one.rspm("cluster", "offline", "--nodes=pm1").returncode == 0
    one.process.stop()
    one.start(unpacked[("rstudio-pm", NEW)])  # "upgrade" pm1 while offline: it restarts offline, no migration
    one.process.wait_log("starts offline")
    time.sleep(1.5)
    assert "Migrating" not in one.process.log()
    assert two.process.running()
    started = time.monotonic()
    result = one.rspm("cluster", "online", "--nodes=pm1", "--timeout=30")
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert took >= 2, "online returned before the 2 s migration"
    assert listing(result)[0] == ["pm1", NEW, "online"]
    assert "Migrating the database schema from version 41 to 42" in one.process.log()
    # pm2 still runs the old binary: it notices the newer schema within the check interval and stops.
    assert two.process.wait_exit(timeout=10) == 1
    assert "the database schema version 42 is newer than this binary supports (41)" in two.process.log()
    assert "Shutting down" in two.process.log()
    # An old binary refuses to start on the newer schema.
    again = two.start()
    assert again.wait_exit() == 1
    assert "Refusing to start" in again.log()


def test_online_retries_a_migration_the_database_restart_broke(cluster, unpacked, postgres):
    url = "postgres://postgres@127.0.0.1:%d/%s" % (postgres.port, postgres.fresh_database("pm_retry"))
    node = cluster("pm1")
    node.use_postgres(url)
    node.start()
    wait_http(node.url + "/__ping__")
    assert node.rspm("cluster", "offline", "--nodes=pm1").returncode == 0
    node.process.stop()
    node.env["POSITEMU_MIGRATION_SECONDS"] = "4"
    node.start(unpacked[("rstudio-pm", NEW)])
    node.process.wait_log("starts offline")
    online = subprocess.Popen([node.bin("rspm"), "--config", str(node.config), "cluster", "online", "--nodes=pm1",
                               "--timeout=30"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=node.env)
    node.process.wait_log("Migrating the database schema from version 41 to 42")
    postgres.pause()  # down until the migration has failed: its connection broke before the version was written
    node.process.wait_log("cannot go online, the database failed", timeout=20)
    postgres.resume()
    online.communicate(timeout=60)
    # Online is still requested: the daemon migrates again once the database answers, without a restart.
    result = node.rspm("cluster", "online", "--nodes=pm1", "--timeout=30")
    assert result.returncode == 0, result.stderr
    assert listing(result)[0] == ["pm1", NEW, "online"]
    assert json.loads(http(node.url + "/__api__/status")[1])["schema"] == 42


def test_on_postgres_a_mode_request_wakes_the_nodes_without_waiting_for_their_poll(cluster, postgres):
    url = "postgres://postgres@127.0.0.1:%d/%s" % (postgres.port, postgres.fresh_database("pm_notify"))
    one, two = cluster("pm1"), cluster("pm2")
    for node in (one, two):
        node.use_postgres(url)
        node.env["POSITEMU_POLL_SECONDS"] = "30"  # a poll alone would make every command below take seconds
        node.start()
    wait_http(one.url + "/__ping__"), wait_http(two.url + "/__ping__")

    def timed(*args):
        started = time.monotonic()
        result = one.rspm(*args)
        assert result.returncode == 0, result.stderr
        return time.monotonic() - started
    assert timed("cluster", "offline", "--nodes=pm1,pm2", "--timeout=25") < 5
    assert http(one.url + "/__ping__")[0] == 503 and http(two.url + "/__ping__")[0] == 503
    assert timed("cluster", "online", "--nodes=pm2", "--timeout=25") < 5
    assert http(two.url + "/__ping__")[0] == 200 and http(one.url + "/__ping__")[0] == 503

    # The listening connection breaks with the database; the nodes listen again once it is back.
    postgres.restart()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and one.rspm("cluster", "nodes").returncode != 0:
        time.sleep(0.2)
    time.sleep(1.5)  # a wait slice: each node reconnects at its next one
    assert timed("cluster", "online", "--nodes=pm1", "--timeout=25") < 5
    assert http(one.url + "/__ping__")[0] == 200


def test_online_with_invalid_config_stays_offline(cluster):
    node = cluster("pm1")
    node.start()
    wait_http(node.url + "/__ping__")
    assert node.rspm("offline").returncode == 0
    text = node.config.read_text()
    node.config.write_text(text + "[Broken\n")
    # rspm itself cannot read the broken file either; use a copy of the good config for the CLI.
    good = node.dir / "good.gcfg"
    good.write_text(text)
    result = subprocess.run([node.bin("rspm"), "--config", str(good), "online",
                             "--timeout=3"], capture_output=True, text=True, env=node.env)
    assert result.returncode == 1 and "timed out after 3 seconds" in result.stderr
    assert "cannot go online, the configuration is invalid" in node.process.log()


def test_migrate_preconditions_and_both_directions(cluster, tmp_path):
    node = cluster("pm1")
    node.start()
    wait_http(node.url + "/__ping__")
    http(node.url + "/__api__/repos?name=cran", "POST")
    result = node.migrate("--from", "sqlite", "--to", "postgres")
    assert result.returncode == 1 and "needs both a [Sqlite] and a [Postgres] section" in result.stderr
    node.config.write_text(node.config.read_text() + "[Postgres]\nURL = postgres://u:pw@127.0.0.1:1/x\n")
    result = node.migrate("--from", "sqlite", "--to", "postgres")
    assert result.returncode == 1 and "the rstudio-pm service is running" in result.stderr
    node.process.stop()
    result = node.migrate("--from", "sqlite", "--to", "sqlite")
    assert result.returncode == 1 and "nothing to migrate" in result.stderr
    result = node.migrate("--to", "postgres")
    assert result.returncode == 1 and "--from must be sqlite or postgres" in result.stderr
    result = node.migrate("--from", "sqlite", "--to", "postgres")
    assert result.returncode == 1 and "cannot connect to PostgreSQL at postgres://u:****@" in result.stderr
    assert "pw@" not in result.stderr


def test_s3_objects_need_the_same_encryption_key(cluster, tmp_path):
    s3 = "[Storage]\nDefault = s3\n[S3Storage]\nBucket = rspm-bucket\n"
    one, two = cluster("pm1", extra_config=s3), cluster("pm2", extra_config=s3)
    for node in (one, two):
        node.env["POSITEMU_S3_DIR"] = str(tmp_path / "s3")
        node.start()
        wait_http(node.url + "/__ping__", process=node.process)
    assert http(one.url + "/__emulator__/data/packages/x.tar.gz", "PUT", b"package bytes")[0] == 201
    stored = (tmp_path / "s3" / "rspm-bucket" / "packages" / "x.tar.gz").read_bytes()
    assert b"package bytes" not in stored
    assert http(one.url + "/__emulator__/data/packages/x.tar.gz") == (200, "package bytes")
    # Each node created its own key on first start: pm2 cannot read what pm1 wrote.
    assert http(two.url + "/__emulator__/data/packages/x.tar.gz")[0] == 500
    two.process.wait_log("cannot decrypt")
    assert "the object was encrypted with another key" in two.process.log()
    # The documented fix: copy the key file from the first node (mode 0600) and restart.
    (two.dir / "rstudio-pm.key").write_bytes((one.dir / "rstudio-pm.key").read_bytes())
    two.process.stop()
    two.start()
    wait_http(two.url + "/__ping__", process=two.process)
    assert http(two.url + "/__emulator__/data/packages/x.tar.gz") == (200, "package bytes")


def test_s3_without_bucket_is_refused(cluster):
    node = cluster("pm1", extra_config="[Storage]\nDefault = s3\n")
    process = node.start()
    assert process.wait_exit() == 1
    assert "[Storage] Default = s3 needs [S3Storage] Bucket" in process.log()
