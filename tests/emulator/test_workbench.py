"""Local tests of the Workbench emulator (no Docker): config validation, list-nodes format, and rserver run as plain
processes — SQLite for a single node, a PostgreSQL on loopback for load balancing."""

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import pytest

from positemu import workbench
from positemu import workbench_config as wconfig
from workbench_harness import SRC, KEY, NEW, OLD, LocalNode, free_port, parse_list_nodes, wait_for


# -- configuration ----------------------------------------------------------------------------------------------

def write_config(tmp_path, files):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return wconfig.WorkbenchConfig(str(tmp_path))


PG = "provider=postgresql\nhost=db\ndatabase=rstudio\nusername=rstudio\npassword=x\n"
LB_ON = "load-balancing-enabled=1\nserver-shared-storage-path=/srv/shared\n"


def test_defaults_follow_the_docs(tmp_path):
    config = write_config(tmp_path, {"rserver.conf": LB_ON, "database.conf": PG, "load-balancer": ""})
    assert config.lb_enabled and config.port == 8787
    assert (config.balancer, config.lb_timeout, config.verify_ssl_certs, config.diagnostics) == (
        "sessions", 10, True, "")
    assert (config.lock_type, config.lock_refresh_rate, config.lock_timeout_interval, config.lock_logging) == (
        "linkbased", 20, 30, False)
    assert config.secure_cookie_key_file == str(tmp_path / "secure-cookie-key")
    assert config.warnings == []


@pytest.mark.parametrize("name, text, message", [
    ("load-balancer", "balancer=round-robin\n", "balancer must be one of sessions, system-load, user-hash, custom"),
    ("load-balancer", "timeout=-1\n", "timeout must be an integer >= 0"),
    ("load-balancer", "verify-ssl-certs=yes\n", "verify-ssl-certs must be 0 or 1"),
    ("load-balancer", "diagnostics=file\n", "diagnostics must be tmp or stderr"),
    ("load-balancer", "www-hostname=a\n", "unrecognised option 'www-hostname'"),
    ("file-locks", "lock-type=posix\n", "lock-type must be linkbased or advisory"),
    ("file-locks", "refresh-rate=0\n", "refresh-rate must be an integer >= 1"),
    ("file-locks", "timeout-interval=ten\n", "timeout-interval must be an integer >= 1"),
    ("file-locks", "enable-logging=2\n", "enable-logging must be 0 or 1"),
    ("file-locks", "log-file=relative.log\n", "log-file must be an absolute path"),
    ("rserver.conf", LB_ON + "www-prot=8787\n", "unrecognised option 'www-prot'"),
    ("rserver.conf", LB_ON + "www-port=http\n", "www-port must be an integer"),
    ("database.conf", "provider=mysql\n", "provider must be sqlite or postgresql"),
    ("database.conf", "provider=postgresql\nhost=db\n", "provider=postgresql needs database, username"),
])
def test_invalid_values_are_refused_naming_file_and_option(tmp_path, name, text, message):
    files = {"rserver.conf": LB_ON, "database.conf": PG, "load-balancer": ""}
    files[name] = text
    with pytest.raises(wconfig.ConfigError) as error:
        write_config(tmp_path, files)
    assert message in str(error.value)
    assert name in str(error.value)


def test_load_balancing_refuses_sqlite_and_needs_shared_storage(tmp_path):
    with pytest.raises(wconfig.ConfigError, match="load balancing requires a PostgreSQL database"):
        write_config(tmp_path, {"rserver.conf": LB_ON, "database.conf": "provider=sqlite\n"})
    with pytest.raises(wconfig.ConfigError, match="server-shared-storage-path"):
        write_config(tmp_path, {"rserver.conf": "load-balancing-enabled=1\n", "database.conf": PG})


def test_presence_of_load_balancer_file_is_the_deprecated_trigger(tmp_path):
    config = write_config(tmp_path, {"rserver.conf": "server-shared-storage-path=/s\n", "database.conf": PG,
                                     "load-balancer": "[config]\nbalancer=user-hash\n[nodes]\nrsw1\n"})
    assert config.lb_enabled and config.balancer == "user-hash"
    assert any("deprecated" in warning and "load-balancing-enabled=1" in warning for warning in config.warnings)
    assert any("[nodes] is ignored" in warning for warning in config.warnings)
    off = write_config(tmp_path, {"rserver.conf": "load-balancing-enabled=0\n", "database.conf": "",
                                  "load-balancer": ""})
    assert not off.lb_enabled


def test_secure_cookie_key_checks(tmp_path):
    key = tmp_path / "key"
    assert wconfig.read_secure_cookie_key(str(key)) == ("Missing secure cookie key", None)
    key.write_text(KEY + "\n")
    key.chmod(0o644)
    assert wconfig.read_secure_cookie_key(str(key))[0] == "Invalid permissions on secure cookie key"
    key.chmod(0o600)
    assert wconfig.read_secure_cookie_key(str(key)) == (None, KEY)
    key.write_text("fifteen-bytes!!\n")
    with pytest.raises(wconfig.ConfigError, match="15 bytes; at least 16 bytes"):
        wconfig.read_secure_cookie_key(str(key))


# -- list-nodes format --------------------------------------------------------------------------------------------

def test_list_nodes_table_orders_online_first_and_flags_missed_check_in():
    now = 1_700_000_000.0
    nodes = [
        {"id": 1, "host": "rsw-primaryyy", "ipv4": "", "port": 8787, "status": "Failed to resolve",
         "health": None, "last_seen": None},
        {"id": 2, "host": "rsw-secondary", "ipv4": "10.0.0.2", "port": 8787, "status": "Online",
         "health": "Healthy", "last_seen": now},
        {"id": 3, "host": "rsw-primary", "ipv4": "10.0.0.1", "port": 8787, "status": "Online",
         "health": "Unhealthy", "last_seen": now - 601},
        {"id": 4, "host": "rsw-third", "ipv4": "10.0.0.3", "port": 8787, "status": "Invalid permissions on "
         "secure cookie key", "health": None, "last_seen": None},
    ]
    text = workbench.list_nodes_text(nodes, 600, now=now, protocol="http")
    lines = text.splitlines()
    # Posit's published output starts with the cluster's protocol, then the node table.
    assert lines[:7] == ["Cluster", "-------", "Protocol", "Http", "", "Nodes", "-----"]
    header = lines[7]
    assert header.split() == ["ID", "Host", "IPv4", "Port", "Status", "Health", "Last", "Seen"]
    assert header.index("Host") == 4 and header.index("IPv4") == 34 and header.index("Port") == 50
    rows = parse_list_nodes(text)
    assert [(r["ID"], r["Status"], r["Health"]) for r in rows] == [
        ("2", "Online", "Healthy"), ("3", "Missed check-in", "Unhealthy"), ("1", "Failed to resolve", ""),
        ("4", "Invalid permissions on secure cookie key", "")]
    # Last Seen: 2021-Sep-20 17:08:53 as published, plus the server's time zone.
    assert rows[0]["Last Seen"] == time.strftime("%Y-%b-%d %H:%M:%S %Z", time.localtime(now))
    assert re.fullmatch(r"\d{4}-[A-Z][a-z]{2}-\d\d \d\d:\d\d:\d\d \S+", rows[0]["Last Seen"])
    assert rows[2]["IPv4"] == "" and rows[2]["Last Seen"] == ""


def test_list_nodes_shows_an_undefined_cluster_without_protocol():
    text = workbench.list_nodes_text([], 600, protocol="")
    assert text.splitlines() == ["Cluster", "-------", "Protocol", "", "", "Nodes", "-----",
                                 "ID  Host                          IPv4            Port    Status"
                                 "                                    Health      Last Seen"]


# -- single node (SQLite) -------------------------------------------------------------------------------------

def test_single_node_sqlite_serves_health_and_has_no_cluster(tmp_path):
    node = LocalNode(tmp_path, "solo").configure(lb=False).start()
    try:
        node.wait_healthy()
        assert node.http("/load-balancer/status")[0] == 404
        result = node.cli("list-nodes")
        assert result.returncode == 1 and "load balancing is not enabled" in result.stderr
        assert node.cli("offline").returncode == 0
        assert node.health() == 503
        assert node.cli("online").returncode == 0
        assert node.health() == 200
    finally:
        assert node.stop() == 0


@pytest.mark.parametrize("case, message", [
    ("sqlite", "load balancing requires a PostgreSQL database"),
    ("short-key", "at least 16 bytes (128 bits)"),
    ("no-shared", "requires server-shared-storage-path"),
    ("no-db", "cannot connect to PostgreSQL"),
])
def test_rserver_refuses_to_start(tmp_path, case, message):
    node = LocalNode(tmp_path, "bad")
    if case == "sqlite":
        node.configure(shared=tmp_path / "shared")
        node.write("database.conf", "provider=sqlite\ndirectory=%s\n" % (tmp_path / "db"))
    elif case == "short-key":
        node.configure(shared=tmp_path / "shared", key="tooshort")
        node.write("database.conf", "provider=postgresql\nhost=127.0.0.1\ndatabase=x\nusername=x\n")
    elif case == "no-db":
        node.configure(shared=tmp_path / "shared")
        node.write("database.conf", "provider=postgresql\nhost=127.0.0.1\nport=%d\ndatabase=x\nusername=x\n"
                   "connection-timeout-seconds=2\n" % free_port())
    else:
        node.configure()
        node.write("database.conf", "provider=postgresql\nhost=127.0.0.1\ndatabase=x\nusername=x\n")
    code, output = node.run_to_exit()
    assert code == 1
    assert message in output


def test_cli_usage_errors(tmp_path):
    node = LocalNode(tmp_path, "cli").configure(lb=False)
    for args in (["frobnicate"], [], ["delete-node"], ["list-nodes", "extra"]):
        result = node.cli(*args)
        assert result.returncode == 1, args
        assert "Usage: rstudio-server" in result.stderr
    assert "unrecognised command 'frobnicate'" in node.cli("frobnicate").stderr
    assert node.cli("help").returncode == 0
    assert node.cli("version").stdout.strip() == OLD
    result = node.cli("offline")
    assert result.returncode == 1 and "not running" in result.stderr


def test_cluster_commands_need_root(monkeypatch, capsys):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    for command in (["list-nodes"], ["delete-node", "1"], ["reset-cluster"], ["offline"], ["online"]):
        assert workbench.cli_main(command) == 1
        assert "Error: this command must be run as root (sudo rstudio-server ...)" in capsys.readouterr().err


def test_sqlite_schema_migrates_and_old_binary_stops(tmp_path):
    shared_db = tmp_path / "db"
    old = LocalNode(tmp_path, "old", version=OLD).configure(lb=False, sqlite_dir=shared_db).start().wait_healthy()
    new = LocalNode(tmp_path, "new", version=NEW, env={"POSITEMU_MIGRATION_SECONDS": "2"})
    new.configure(lb=False, sqlite_dir=shared_db).start()
    wait_for(lambda: "Migrating the database schema from version 11 to 12" in new.output(), 10, what="migration")
    assert new.health() == 503
    new.wait_healthy()
    assert old.proc.wait(timeout=30) == 1
    assert "newer than this binary supports (11)" in old.output()
    code, output = LocalNode(tmp_path, "late", version=OLD).configure(lb=False, sqlite_dir=shared_db).run_to_exit()
    assert code == 1 and "schema version 12 is newer" in output
    assert new.stop() == 0


# -- load balancing against a loopback PostgreSQL ---------------------------------------------------------------

@pytest.fixture
def cluster(postgres, tmp_path, request):
    database = postgres.fresh_database("wb_%s" % request.node.name.split("[")[0][-40:].lower())
    shared = tmp_path / "shared"
    started = []

    def make(name, version=OLD, start=True, env=None, **options):
        node = LocalNode(tmp_path, name, version=version, env=env)
        node.configure(postgres=postgres, database=database, shared=shared, **options)
        started.append(node)
        return node.start() if start else node

    yield make
    for node in started:
        node.kill()


def test_cluster_nodes_come_online_and_share_status(cluster):
    one = cluster("one").wait_healthy()
    two = cluster("two").wait_healthy()
    rows = parse_list_nodes(one.cli("list-nodes").stdout)
    assert [(r["ID"], r["Host"], r["IPv4"], r["Port"], r["Status"]) for r in rows] == [
        ("1", "127.0.0.1", "127.0.0.1", str(one.port), "Online"),
        ("2", "127.0.0.1", "127.0.0.1", str(two.port), "Online")]
    assert all(r["Last Seen"] for r in rows)
    status = one.http("/load-balancer/status")
    assert status[0] == 200
    lines = status[1].splitlines()
    assert lines[0].startswith("127.0.0.1:%d  Load: " % one.port)
    assert lines[1].startswith("127.0.0.1:%d  Load: " % two.port)
    assert "joined node 2" in one.output()

    assert two.cli("offline").returncode == 0
    assert two.health() == 503
    status = one.http("/load-balancer/status")[1]
    assert "127.0.0.1:%d (offline)  Load: " % two.port in status
    assert parse_list_nodes(one.cli("list-nodes").stdout)[1]["Status"] == "Offline"
    assert two.cli("online").returncode == 0 and two.health() == 200

    two.kill()  # no clean shutdown: the database still says Online
    assert "127.0.0.1:%d (unreachable)" % two.port in one.http("/load-balancer/status")[1]
    assert one.stop() == 0
    statuses = {r["ID"]: r["Status"] for r in parse_list_nodes(two.cli("list-nodes").stdout)}
    assert statuses == {"1": "Offline", "2": "Online"}  # stopped cleanly / killed (shows Online until missed)


def test_node_statuses_for_bad_keys_and_hosts(cluster, tmp_path):
    cluster("first").wait_healthy()
    cases = [
        ("wrongkey", dict(key="ffffffff-ffff-ffff-ffff-ffffffffffff"), "Invalid secure cookie key"),
        ("badmode", dict(key_mode=0o644), "Invalid permissions on secure cookie key"),
        ("nokey", dict(key=None), "Missing secure cookie key"),
        ("typo", dict(host_name="rsw-primaryyy.invalid"), "Failed to resolve"),
    ]
    for name, options, status in cases:
        node = cluster(name, start=False, **options)
        code, output = node.run_to_exit()
        assert code == 1, name
        assert status in output
    rows = parse_list_nodes(cluster("viewer", start=False).cli("list-nodes").stdout)
    assert [r["Status"] for r in rows] == [
        "Online", "Invalid secure cookie key", "Invalid permissions on secure cookie key",
        "Missing secure cookie key", "Failed to resolve"]
    assert rows[-1]["Host"] == "rsw-primaryyy.invalid" and rows[-1]["IPv4"] == ""


def test_delete_node_and_reset_cluster(cluster):
    one = cluster("one").wait_healthy()
    typo = cluster("typo", start=False, host_name="rsw-primaryyy.invalid")
    assert typo.run_to_exit()[0] == 1
    result = one.cli("delete-node", "2")
    assert (result.returncode, result.stdout) == (0, "Node 2 deleted.\n")
    assert [r["ID"] for r in parse_list_nodes(one.cli("list-nodes").stdout)] == ["1"]
    result = one.cli("delete-node", "2")
    assert result.returncode == 1 and result.stderr == "Error: node 2 not found\n"
    result = one.cli("delete-node", "two")
    assert result.returncode == 1 and "node ID must be a number" in result.stderr
    # delete-node must run on an active node: the stopped typo node is not one
    result = typo.cli("delete-node", "1")
    assert result.returncode == 1 and "not running" in result.stderr

    # a different key is refused while the cluster stands, accepted after reset-cluster
    other = cluster("other", start=False, key="aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")
    assert other.run_to_exit()[0] == 1
    result = one.cli("reset-cluster")
    assert result.returncode == 0 and "reset" in result.stdout
    one.proc.send_signal(signal.SIGHUP)  # a reloaded node redefines the cluster data
    wait_for(lambda: one.output().count("cluster data defined by node 1") == 2, 10, what="reload")
    assert other.run_to_exit()[0] == 1
    assert one.cli("reset-cluster").returncode == 0
    other.start().wait_healthy()
    statuses = {r["ID"]: r["Status"] for r in parse_list_nodes(one.cli("list-nodes").stdout)}
    assert statuses == {"1": "Online", "3": "Online"}


def test_check_in_and_missed_check_in(cluster):
    fast = {"RSTUDIO_LB_CHECKIN_SECONDS": "1", "RSTUDIO_LB_MISSED_CHECKIN_SECONDS": "3"}
    if os.path.exists(workbench.DIAGNOSTICS_FILE):
        os.unlink(workbench.DIAGNOSTICS_FILE)
    alive = cluster("alive", env=fast, load_balancer_extra="diagnostics=tmp\n").wait_healthy()
    with open(workbench.DIAGNOSTICS_FILE) as diagnostics:
        assert "node 1 online at 127.0.0.1:" in diagnostics.read()
    stuck = cluster("stuck", env=dict(fast, RSTUDIO_LB_CHECKIN_SECONDS="300")).wait_healthy()
    time.sleep(4)
    rows = {r["ID"]: r for r in parse_list_nodes(stuck.cli("list-nodes").stdout)}
    assert rows["1"]["Status"] == "Online"
    assert rows["2"]["Status"] == "Missed check-in"
    alive.kill()
    os.unlink(workbench.DIAGNOSTICS_FILE)


def test_check_in_resumes_after_a_postgres_restart(cluster, postgres):
    fast = {"RSTUDIO_LB_CHECKIN_SECONDS": "1", "RSTUDIO_LB_MISSED_CHECKIN_SECONDS": "3"}
    node = cluster("steady", env=fast).wait_healthy()
    postgres.restart()
    wait_for(lambda: "terminating connection" in node.output(), 10, what="a statement meeting the restart")
    time.sleep(4)  # longer than the missed check-in time: only fresh check-ins keep it Online
    assert parse_list_nodes(node.cli("list-nodes").stdout)[0]["Status"] == "Online"
    assert node.health() == 200


def test_rolling_schema_upgrade_in_a_cluster(cluster):
    old = cluster("old", version=OLD).wait_healthy()
    new = cluster("new", version=NEW, env={"POSITEMU_MIGRATION_SECONDS": "2"})
    wait_for(lambda: "Migrating the database schema from version 11 to 12" in new.output(), 15, what="migration")
    new.wait_healthy()
    start = time.monotonic()
    assert old.proc.wait(timeout=30) == 1
    assert time.monotonic() - start < 30
    late = cluster("late", version=OLD, start=False)
    code, output = late.run_to_exit()
    assert code == 1 and "schema version 12 is newer than this binary supports (11)" in output


def test_status_endpoint_is_localhost_only_and_node_requests_are_signed(cluster):
    one = cluster("one").wait_healthy()
    request = urllib.request.Request("http://127.0.0.1:%d/load-balancer/node-info" % one.port)
    try:
        urllib.request.urlopen(request, timeout=5)
        raise AssertionError("unsigned node request was accepted")
    except urllib.error.HTTPError as error:
        assert error.code == 401
    stamp = str(int(time.time()))
    signed = urllib.request.Request("http://127.0.0.1:%d/load-balancer/node-info" % one.port, headers={
        "X-RStudio-LB-Time": stamp,
        "X-RStudio-LB-Signature": workbench.sign(KEY, "GET", "/load-balancer/node-info", stamp)})
    with urllib.request.urlopen(signed, timeout=5) as response:
        assert json.loads(response.read())["state"] == "online"


def test_locktester_first_holds_second_reports_supported_locks(tmp_path):
    code = "import sys; from positemu.workbench_locktester import main; sys.exit(main())"
    env = dict(os.environ, PYTHONPATH=str(SRC))
    first = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline() == "* Acquired advisory lock\n"
        assert first.stdout.readline() == "* Acquired link-based lock\n"
        second = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                                check=False, text=True, timeout=30)
        assert second.returncode == 0
        assert second.stdout == ("* Unable to acquire advisory lock\n* Unable to acquire link-based lock\n\n"
                                 "Your filesystem appears to support advisory and link-based locks.\n")
    finally:
        first.terminate()
        assert first.wait(timeout=10) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [".rstudio-locktester-advisory"]


def test_node_address_follows_the_documented_order(tmp_path):
    base = {"rserver.conf": LB_ON + "www-port=8080\n", "database.conf": PG}
    config = write_config(tmp_path, dict(base, **{"load-balancer": "www-host-name=rsw1\n"}))
    assert workbench.node_address(config) == ("rsw1", 8080)  # no port given: www-port is used
    config = write_config(tmp_path, dict(base, **{"load-balancer": "www-host-name=rsw1:9000\n"}))
    assert workbench.node_address(config) == ("rsw1", 9000)
    config = write_config(tmp_path, dict(base, **{"rserver.conf": base["rserver.conf"] + "www-address=10.1.2.3\n",
                                                  "load-balancer": ""}))
    assert workbench.node_address(config) == ("10.1.2.3", 8080)


# -- health check switch, server-user, node health, sessions, launcher keys --------------------------------------

def test_health_check_is_off_unless_enabled(tmp_path):
    node = LocalNode(tmp_path, "nocheck").configure(lb=False, health_check=False).start()
    try:
        wait_for(lambda: node.http("/")[0] == 200, 30, what="sign-in page")
        assert node.health() == 404  # server-health-check-enabled defaults to 0
    finally:
        assert node.stop() == 0
    node.configure(lb=False, health_check=True)
    node.start()
    try:
        node.wait_healthy()
        body = node.http("/health-check")[1]
        assert body.startswith("active-sessions: 0\nidle-seconds: ")
        assert body.endswith("license-status: Activated\nlicense-days-left: 365\nlicense-allow-product-usage: 1\n")
    finally:
        assert node.stop() == 0


@pytest.fixture
def system_account():
    """A throw-away system account (the stand-in for rstudio-server on this host), removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("creating an account needs root")
    name = "positemu-rs%d" % os.getpid()
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=False)
        subprocess.run(["groupdel", name], check=False, stderr=subprocess.DEVNULL)


@pytest.fixture
def open_dir():
    """A temporary directory other accounts can traverse (pytest's own tmp dir is private to root)."""
    base = tempfile.mkdtemp(prefix="positemu-wb-")
    os.chmod(base, 0o755)
    yield pathlib.Path(base)
    shutil.rmtree(base, ignore_errors=True)


def process_uid(pid):
    with open("/proc/%d/status" % pid, encoding="utf-8") as handle:
        return int(next(line for line in handle if line.startswith("Uid:")).split()[1])


def test_rserver_drops_to_server_user_and_needs_its_files(postgres, open_dir, system_account):
    import pwd
    uid, gid = pwd.getpwnam(system_account).pw_uid, pwd.getpwnam(system_account).pw_gid
    database = postgres.fresh_database("wb_server_user")
    shared = open_dir / "shared"
    shared.mkdir(mode=0o755)  # owned by root: server-user cannot write there
    node = LocalNode(open_dir, "dropper", env={"RSTUDIO_LB_CHECKIN_SECONDS": "1"})
    node.configure(postgres=postgres, database=database, shared=shared, server_user=system_account)
    code, output = node.run_to_exit()
    assert code == 1
    assert "server-shared-storage-path %s is not writable by %s (server-user)" % (shared, system_account) in output
    os.chown(shared, uid, gid)
    code, output = node.run_to_exit()
    assert code == 1  # launcher.pem is root's and 0600: server-user cannot read it
    assert "cannot read %s as %s (server-user): permission denied" % (node.etc / "launcher.pem",
                                                                      system_account) in output
    for name in ("launcher.pem", "launcher.pub"):
        os.chown(node.etc / name, uid, gid)
    node.start()
    try:
        node.wait_healthy()
        assert "running as %s (server-user)" % system_account in node.output()
        assert process_uid(node.proc.pid) == uid
        assert (node.data_dir.stat().st_uid, (node.data_dir / workbench.ADMIN_SOCKET).stat().st_uid) == (uid, uid)
        row = parse_list_nodes(node.cli("list-nodes").stdout)[0]
        assert (row["Status"], row["Health"]) == ("Online", "Healthy")
        # The shared storage stops being writable: the node turns Unhealthy and stops updating Last Seen.
        shared.chmod(0o555)
        wait_for(lambda: parse_list_nodes(node.cli("list-nodes").stdout)[0]["Health"] == "Unhealthy", 15,
                 what="Unhealthy")
        seen = parse_list_nodes(node.cli("list-nodes").stdout)[0]["Last Seen"]
        assert "is unhealthy, its last seen time is no longer updated" in node.output()
        time.sleep(2.5)
        assert parse_list_nodes(node.cli("list-nodes").stdout)[0]["Last Seen"] == seen
        shared.chmod(0o755)
        wait_for(lambda: parse_list_nodes(node.cli("list-nodes").stdout)[0]["Health"] == "Healthy", 15,
                 what="Healthy again")
    finally:
        shared.chmod(0o755)
        assert node.stop() == 0


def test_server_user_must_exist(tmp_path):
    node = LocalNode(tmp_path, "ghost").configure(lb=False, server_user="no-such-account-here")
    code, output = node.run_to_exit()
    assert code == 1 and "server-user no-such-account-here" in output and "does not exist" in output


def test_launcher_keys_are_needed_unless_launcher_sessions_are_off(tmp_path):
    node = LocalNode(tmp_path, "nolauncher").configure(lb=False, launcher=None)
    code, output = node.run_to_exit()
    assert code == 1 and "launcher.pem not found" in output and "launcher-sessions-enabled" in output
    node.configure(lb=False, launcher=None, extra_rserver="launcher-sessions-enabled=0\n")
    node.start()
    try:
        node.wait_healthy()
    finally:
        assert node.stop() == 0


def start_session(node, user="nobody"):
    request = urllib.request.Request("http://127.0.0.1:%d/__emulator__/sessions?user=%s" % (node.port, user),
                                     method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_status_lists_sessions_and_keeps_the_load_of_unreachable_nodes(cluster):
    one = cluster("one").wait_healthy()
    two = cluster("two").wait_healthy()
    session = start_session(two)
    assert session["user"] == "nobody"
    assert process_uid(session["pid"]) == 65534  # the session runs as its user
    assert "active-sessions: 1" in two.http("/health-check")[1]
    lines = one.http("/load-balancer/status")[1].splitlines()
    assert lines[0].startswith("127.0.0.1:%d  Load: " % one.port)
    assert lines[1].startswith("127.0.0.1:%d  Load: " % two.port)
    assert lines[2] == "   %d - nobody" % session["pid"]
    assert one.http("/s/%d/" % session["pid"]) == (200, "session %d of nobody on node 2\n" % session["pid"])
    load = lines[1].split("Load: ")[1]
    two.kill()  # no clean shutdown: still Online in the database, unreachable over the network
    assert "127.0.0.1:%d (unreachable)  Load: %s" % (two.port, load) in one.http("/load-balancer/status")[1]
    # A node never seen answering shows 0, 0, 0, as in the docs' example.
    assert workbench.format_load([0, 0, 0]) == "0, 0, 0"
    # A user that does not exist, or a system account, gets no session.
    with pytest.raises(urllib.error.HTTPError) as error:
        start_session(one, "no-such-user-here")
    assert error.value.code == 400
    with pytest.raises(urllib.error.HTTPError) as error:
        start_session(one, "daemon")
    assert error.value.code == 403


def test_a_node_with_another_launcher_pair_cannot_reach_sessions(cluster):
    one = cluster("one").wait_healthy()
    other = ("-----BEGIN PRIVATE KEY-----\nb3RoZXI=\n-----END PRIVATE KEY-----\n",
             "-----BEGIN PUBLIC KEY-----\nb3RoZXI=\n-----END PUBLIC KEY-----\n")
    two = cluster("two", launcher=other).wait_healthy()
    wait_for(lambda: "launcher.pem/launcher.pub differ between the nodes" in two.output(), 15,
             what="mismatch reported by the joining node")
    assert "signed a launcher request with another launcher key pair" in one.output()
    session = start_session(two)
    code, body = one.http("/s/%d/" % session["pid"])
    assert code == 502 and "refused this node's launcher key" in body
    assert "its launcher refused this node's launcher signature" in one.output()
    assert two.http("/s/%d/" % session["pid"])[0] == 200  # where it was started it still works
