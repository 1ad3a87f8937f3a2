"""Lab tests of the Connect emulator: the .debs installed from the package server onto systemd nodes with a
PostgreSQL container, proving each Connect row of tests/emulator/README.md (failures included).

The tests of this module share one lab and run in order (a cluster is built, broken and upgraded step by step).
"""

import json

import pytest

from tests.lab.lab import deb_file, wait_for

OLD, NEW = "2023.09.0", "2023.12.0"
TUNING = ("POSITEMU_MIGRATION_SECONDS=4\nPOSITEMU_SCHEMA_CHECK_SECONDS=2\nPOSITEMU_POLL_SECONDS=1\n"
          "POSITEMU_HEARTBEAT_SECONDS=1\nPOSITEMU_JOB_ABANDON_SECONDS=4\n")
CONFIG = "/etc/rstudio-connect/rstudio-connect.gcfg"


def connect_config(provider="Postgres", url="", metrics=None, extra=""):
    text = "[Server]\nDataDir = /srv/connect/data\n[HTTP]\nListen = :3939\n[Database]\nProvider = %s\n" % provider
    if url:
        text += "[Postgres]\nURL = %s\n" % url
    if metrics:
        text += "[Metrics]\nDataPath = %s\n" % metrics
    return text + extra


def current_journal(unit="rstudio-connect"):
    return ("journalctl -o cat --no-pager _SYSTEMD_INVOCATION_ID=$(systemctl show -p InvocationID --value %s)"
            % unit)


def ping(node, host="localhost"):
    return str(node.http("http://%s:3939/__ping__" % host)[0])


def wait_serving(node, timeout=30):
    node.wait_http("http://localhost:3939/__ping__", timeout=timeout)


def wait_failed_with(node, text, timeout=30):
    node.wait_until("! systemctl is-active -q rstudio-connect", timeout=timeout)
    journal = node.output(current_journal(), check=False)
    assert text in journal, journal


def jobs(node):
    return json.loads(node.http_ok("http://localhost:3939/__emulator__/jobs"))


@pytest.fixture(scope="module")
def cluster(lab, debs):
    pkgs = lab.start_package_server()
    lab.start_postgres()
    url = lab.create_database("connect", "connect", "connect-secret")
    shared = lab.volume("connect-shared")
    one = lab.start_node("c1", volumes={shared: "/srv/connect"})
    two = lab.start_node("c2", volumes={shared: "/srv/connect"})
    # Another system account created first on c2 shifts the UID the package gets there.
    two.exec("adduser --system --group --quiet first-on-c2")
    for node in (one, two):
        node.write_file("/etc/default/rstudio-connect", TUNING)
        node.install_package(pkgs, deb_file("rstudio-connect", OLD))
    return {"lab": lab, "pkgs": pkgs, "url": url, "nodes": (one, two)}


def test_install_like_the_vendor_package(cluster):
    one, two = cluster["nodes"]
    for node in (one, two):
        assert node.output("systemctl is-enabled rstudio-connect") == "enabled"
        assert node.output("dpkg-query -W -f='${Version}' rstudio-connect") == OLD
        assert CONFIG in node.output("dpkg-query -W -f='${Conffiles}' rstudio-connect")
        node.exec("test -x /opt/rstudio-connect/bin/connect && test -x /opt/rstudio-connect/bin/migrate")
        assert node.output("id -gn rstudio-connect") == "rstudio-connect"
        wait_serving(node)
    # Install order differs, so the UIDs differ: the roles have to pin them.
    assert one.output("id -u rstudio-connect") != two.output("id -u rstudio-connect")


def test_second_node_on_sqlite_refuses(cluster):
    one, two = cluster["nodes"]
    for node in (one, two):
        node.write_file(CONFIG, connect_config("SQLite", metrics="/var/lib/rstudio-connect/metrics"))
    one.exec("systemctl restart rstudio-connect")
    wait_serving(one)
    two.exec("systemctl restart rstudio-connect")
    wait_failed_with(two, "Connect server c1 is running with the same Server.DataDir /srv/connect/data. Posit "
                          "Connect only supports HA with PostgreSQL")


def test_shared_metrics_path_fails_with_clear_log(cluster):
    one, two = cluster["nodes"]
    for node in (one, two):
        node.write_file(CONFIG, connect_config(url=cluster["url"]))  # default Metrics.DataPath: in the share
    one.exec("systemctl restart rstudio-connect")
    wait_serving(one)
    two.exec("systemctl restart rstudio-connect")
    wait_failed_with(two, "Metrics.DataPath /srv/connect/data/metrics is in use by another Connect server (host c1")
    for node in (one, two):
        node.write_file(CONFIG, connect_config(url=cluster["url"], metrics="/var/lib/rstudio-connect/metrics"))
        node.exec("systemctl restart rstudio-connect")
    for node in (one, two):
        wait_serving(node)


def test_shared_files_unreadable_when_uid_differs(cluster):
    one, two = cluster["nodes"]
    one.http_ok("http://localhost:3939/__emulator__/content?name=report", method="POST", data="hello")
    uid_one = one.output("id -u rstudio-connect")
    assert one.output("stat -c '%u %a' /srv/connect/data/apps/report/bundle") == "%s 600" % uid_one
    assert one.output("stat -c '%a' /srv/connect/data/apps/report") == "700"
    assert one.http_ok("http://localhost:3939/content/report/") == "hello"
    assert str(two.http("http://localhost:3939/content/report/")[0]) == "500"
    line = two.output(current_journal() + " | grep 'content report: cannot read'")
    assert "as rstudio-connect (uid %s)" % two.output("id -u rstudio-connect") in line
    assert "the file belongs to uid %s" % uid_one in line


def test_scheduled_jobs_concurrency_and_abandoned_takeover(cluster):
    one, two = cluster["nodes"]
    two.exec("printf '[Applications]\\nScheduleConcurrency = 0\\n' >> %s && systemctl restart rstudio-connect"
             % CONFIG)
    wait_serving(two)
    for name in ("a", "b"):
        two.http_ok("http://localhost:3939/__emulator__/jobs?name=%s&seconds=1" % name, method="POST")
    wait_for(lambda: all(job["state"] == "done" for job in jobs(one)), timeout=30, what="both jobs to finish")
    assert {(job["node"], job["attempts"]) for job in jobs(one)} == {("c1", 1)}
    assert "Scheduled jobs are disabled on this node" in two.output(current_journal())
    # A job whose node dies mid-run is claimed by another node after its heartbeat stops, and runs again.
    one.http_ok("http://localhost:3939/__emulator__/jobs?name=long&seconds=6", method="POST")
    wait_for(lambda: any(job["state"] == "running" for job in jobs(one)), timeout=30, what="the long job to run")
    one.exec("systemctl kill -s KILL rstudio-connect")
    two.exec("sed -i 's/ScheduleConcurrency = 0/ScheduleConcurrency = 2/' %s && systemctl restart rstudio-connect"
             % CONFIG)
    wait_serving(two)
    wait_for(lambda: any(job["name"] == "long" and job["state"] == "done" for job in jobs(two)), timeout=40,
             what="the long job to be done by the other node")
    long_job = [job for job in jobs(two) if job["name"] == "long"][0]
    assert long_job["node"] == "c2" and long_job["attempts"] == 2
    assert [(run["node"], run["finished"]) for run in long_job["runs"]] == [("c1", False), ("c2", True)]
    assert "Claimed abandoned job" in two.output(current_journal())
    one.exec("systemctl start rstudio-connect")
    wait_serving(one)


def test_upgrade_migrates_and_old_binaries_shut_down_or_refuse(cluster):
    one, two = cluster["nodes"]
    # The operator forgot to stop c2: it keeps running the old binary while c1 is upgraded.
    one.exec("systemctl stop rstudio-connect")
    one.install_package(cluster["pkgs"], deb_file("rstudio-connect", NEW))
    wait_for(lambda: one.http("http://localhost:3939/__ping__")[0] == 503, timeout=20, what="503 while migrating")
    wait_serving(one)
    assert "Migrating the database schema from version 71 to 72" in one.output(current_journal())
    wait_failed_with(two, "the database schema version 72 is newer than this binary supports (71)")
    two.exec("systemctl start rstudio-connect")
    wait_failed_with(two, "Refusing to start")
    two.install_package(cluster["pkgs"], deb_file("rstudio-connect", NEW))
    wait_serving(two)
    for node in (one, two):
        settings = json.loads(node.http_ok("http://localhost:3939/__api__/server_settings"))
        assert (settings["version"], settings["schema"]) == (NEW, 72)


def test_migrate_sqlite_to_postgres_only(cluster):
    lab = cluster["lab"]
    url = lab.create_database("connect_single", "connect_single", "single-secret")
    node = lab.start_node("c3")
    node.write_file("/etc/default/rstudio-connect", TUNING)
    node.install_package(cluster["pkgs"], deb_file("rstudio-connect", NEW))
    node.write_file(CONFIG, "[Server]\nDataDir = /var/lib/rstudio-connect\n[Database]\nProvider = SQLite\n"
                            "[Applications]\nScheduleConcurrency = 0\n")
    node.exec("systemctl restart rstudio-connect")
    wait_serving(node)
    node.http_ok("http://localhost:3939/__emulator__/jobs?name=kept", method="POST")
    result = node.exec("/opt/rstudio-connect/bin/migrate db", check=False)
    assert result.returncode == 1 and "needs both a [SQLite] and a [Postgres] section" in result.stderr
    node.exec("printf '[SQLite]\\nDir = /var/lib/rstudio-connect/db\\n[Postgres]\\nURL = %s\\n' >> %s"
              % (url, CONFIG))
    result = node.exec("/opt/rstudio-connect/bin/migrate db", check=False)
    assert result.returncode == 1 and "the rstudio-connect service is running on this host" in result.stderr
    node.exec("systemctl stop rstudio-connect")
    result = node.exec("/opt/rstudio-connect/bin/migrate db", user="nobody", check=False)
    assert result.returncode == 1 and "migrate must be run as root" in result.stderr
    result = node.exec("/opt/rstudio-connect/bin/migrate db --from postgres --to sqlite", check=False)
    assert result.returncode == 1 and "migrate only copies SQLite to PostgreSQL" in result.stderr
    result = node.exec("/opt/rstudio-connect/bin/migrate db")
    assert "jobs: 1 row(s)" in result.stdout and "single-secret" not in result.stdout
    node.exec("sed -i 's/Provider = SQLite/Provider = Postgres/' %s && systemctl start rstudio-connect" % CONFIG)
    wait_serving(node)
    settings = json.loads(node.http_ok("http://localhost:3939/__api__/server_settings"))
    assert settings["database"] == "postgres"
    assert [job["name"] for job in jobs(node)] == ["kept"]
