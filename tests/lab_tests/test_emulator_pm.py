"""Lab tests of the Package Manager emulator: the .debs installed from the package server onto systemd nodes with
a PostgreSQL container, proving each Package Manager row of tests/emulator/README.md (failures included).

The tests of this module share one lab and run in order (a cluster is built, broken and upgraded step by step).
"""

import json

import pytest

from tests.lab.lab import deb_file

OLD, NEW = "2023.08.4-20", "2023.12.0-13"
RSPM = "/opt/rstudio-pm/bin/rspm"
TUNING = ("POSITEMU_MIGRATION_SECONDS=2\nPOSITEMU_SCHEMA_CHECK_SECONDS=2\nPOSITEMU_POLL_SECONDS=1\n"
          "POSITEMU_DRAIN_SECONDS=30\n")


def pm_config(url, hostname, provider="postgres", extra=""):
    return ("[Server]\nDataDir = /srv/rspm/data\nHostName = %s\n[HTTP]\nListen = :4242\n[Database]\n"
            "Provider = %s\n[Sqlite]\nDir = /var/lib/rstudio-pm/db\n[Postgres]\nURL = %s\n%s"
            % (hostname, provider, url, extra))


def current_journal(unit):
    """Shell: the journal of the unit's current (or last) run only."""
    return ("journalctl -o cat --no-pager _SYSTEMD_INVOCATION_ID=$(systemctl show -p InvocationID --value %s)"
            % unit)


def rows(stdout):
    return [line.split() for line in stdout.splitlines()]


def http_status(node, path, host="localhost", method="GET", data=None):
    """The status code of a request made on ``node``, as text ("0" when nothing answers)."""
    return str(node.http("http://%s:4242%s" % (host, path), method=method, data=data)[0])


@pytest.fixture(scope="module")
def pm(lab, debs):
    pkgs = lab.start_package_server()
    lab.start_postgres()
    url = lab.create_database("rspm", "rspm", "rspm-secret")
    shared = lab.volume("rspm-shared")
    one = lab.start_node("pm1", volumes={shared: "/srv/rspm"})
    two = lab.start_node("pm2", volumes={shared: "/srv/rspm"})
    # pm2 has an account with a fixed UID before the install: the package must reuse it.
    two.exec("groupadd --system -g 4242 rstudio-pm && useradd --system -u 4242 -g 4242 -M -d /var/lib/rstudio-pm "
             "-s /usr/sbin/nologin rstudio-pm")
    for node in (one, two):
        node.write_file("/etc/default/rstudio-pm", TUNING)
        node.install_package(pkgs, deb_file("rstudio-pm", OLD))
    return {"lab": lab, "pkgs": pkgs, "url": url, "nodes": (one, two)}


def test_install_like_the_vendor_package(pm):
    one, two = pm["nodes"]
    for node in (one, two):
        assert node.output("systemctl is-enabled rstudio-pm") == "enabled"
        node.wait_until("systemctl is-active rstudio-pm")
        assert node.output("dpkg-query -W -f='${Version}' rstudio-pm") == OLD
        assert "/etc/rstudio-pm/rstudio-pm.gcfg" in node.output("dpkg-query -W -f='${Conffiles}' rstudio-pm")
        for path in ("/opt/rstudio-pm/bin/rstudio-pm", RSPM, "/opt/rstudio-pm/bin/migrate"):
            node.exec("test -x %s" % path)
        node.wait_until("test -f /var/lib/rstudio-pm/rstudio-pm.key", timeout=20)
        # The service runs as rstudio-pm (set in the drop-in the installer writes), so its key is rstudio-pm's.
        assert node.output("stat -c '%a %U' /var/lib/rstudio-pm/rstudio-pm.key") == "600 rstudio-pm"
        assert node.output("cat /etc/systemd/system/rstudio-pm.service.d/user.conf") == (
            "[Service]\nUser=rstudio-pm\nGroup=rstudio-pm")
        assert node.output("ps -o user= -p $(systemctl show -p MainPID --value rstudio-pm)") == "rstudio-pm"
        assert node.output("stat -c '%a %U %G' /etc/rstudio-pm/rstudio-pm.gcfg") == "640 rstudio-pm rstudio-pm"
        node.wait_http("http://localhost:4242/__ping__", timeout=20)
    # The package reused the account that existed on pm2 and created a system account on pm1.
    assert two.output("id -u rstudio-pm") == "4242"
    uid_one = int(one.output("id -u rstudio-pm"))
    assert uid_one < 1000 and uid_one != 4242
    # Under systemd the journal gets the daemon's lines (level and message, the journal adds the time).
    assert "INFO Starting Posit Package Manager %s (emulator)" % OLD in one.journal("rstudio-pm")


def renumber_account(node, uid):
    """What an operator does when the UIDs differ: stop, give rstudio-pm the cluster's UID/GID, re-own its files."""
    node.exec("systemctl stop rstudio-pm && groupmod -g {0} rstudio-pm && usermod -u {0} -g {0} rstudio-pm && "
              "chown -R rstudio-pm:rstudio-pm /var/lib/rstudio-pm /etc/rstudio-pm/rstudio-pm.gcfg".format(uid))


def test_cluster_on_postgres_and_shared_data_dir(pm):
    one, two = pm["nodes"]
    for node in (one, two):
        node.write_file("/etc/rstudio-pm/rstudio-pm.gcfg", pm_config(pm["url"], node.name.upper()))
    # The shared DataDir does not exist and its parent belongs to root: rstudio-pm cannot create it.
    result = one.exec("systemctl restart rstudio-pm", check=False)
    one.wait_until(current_journal("rstudio-pm") + " | grep -q 'cannot create Server.DataDir /srv/rspm/data as "
                   "rstudio-pm'", timeout=20)
    one.wait_until("! systemctl is-active -q rstudio-pm", timeout=20)
    one.exec("install -d -o rstudio-pm -g rstudio-pm /srv/rspm/data")
    one.exec("systemctl restart rstudio-pm")
    # pm2's rstudio-pm has another UID (4242, created before the install): the shared directory is not its own.
    two.exec("systemctl restart rstudio-pm", check=False)
    two.wait_until(current_journal("rstudio-pm") + " | grep -q 'Server.DataDir /srv/rspm/data is not writable by "
                   "rstudio-pm (uid 4242)'", timeout=20)
    # The fix: the same UID/GID everywhere (the collection's node_base pins them before the install).
    renumber_account(one, 4242)
    one.exec("chown -R rstudio-pm:rstudio-pm /srv/rspm/data && systemctl start rstudio-pm")
    two.exec("systemctl restart rstudio-pm")
    for node in (one, two):
        node.wait_http("http://localhost:4242/__ping__", timeout=20)
    assert rows(one.output("%s cluster nodes" % RSPM)) == [["PM1", OLD, "online"], ["PM2", OLD, "online"]]
    listing = json.loads(two.output("%s -o json cluster nodes" % RSPM))
    assert [node["hostname"] for node in listing["nodes"]] == ["PM1", "PM2"]
    # One node writes into the shared data dir, the other serves it.
    assert http_status(one, "/__emulator__/data/check.txt", method="PUT", data="from pm1") == "201"
    assert two.http_ok("http://localhost:4242/__emulator__/data/check.txt") == "from pm1"
    assert http_status(one, "/__api__/repos?name=cran", method="POST") == "201"
    assert json.loads(two.http_ok("http://localhost:4242/__api__/repos"))[0]["name"] == "cran"


def test_cli_failures_are_clear(pm):
    one, two = pm["nodes"]
    result = one.exec("%s cluster offline --nodes=PM2,ghost" % RSPM, check=False)
    assert result.returncode == 1
    assert result.stderr == "Error: unknown node(s): ghost. Known nodes: PM1, PM2\n"
    result = one.exec("%s cluster online --nodes=PM2 --timeout=soon" % RSPM, check=False)
    assert result.returncode == 1 and "flag --timeout" in result.stderr
    result = one.exec("%s -c /etc/rstudio-pm/missing.gcfg cluster nodes" % RSPM, check=False)
    assert result.returncode == 1
    assert "configuration file /etc/rstudio-pm/missing.gcfg does not exist" in result.stderr
    result = one.exec("%s cluster nodes" % RSPM, user="nobody", check=False)
    assert result.returncode == 1
    assert "rspm must be run as root or by a member of the rstudio-pm group" in result.stderr
    # A stopped node never reports the requested mode: the command times out and still lists the nodes.
    two.exec("systemctl stop rstudio-pm")
    result = one.exec("%s cluster offline --nodes=PM2 --timeout=2" % RSPM, check=False)
    assert result.returncode == 1
    assert result.stderr == "Error: timed out after 2 seconds waiting for node(s) PM2 to be offline\n"
    assert rows(result.stdout) == [["PM1", OLD, "online"], ["PM2", OLD, "online"]]
    # The request stays in the database: the node starts offline and is brought back explicitly.
    two.exec("systemctl start rstudio-pm")
    two.wait_until("%s cluster nodes | grep -q 'PM2 .* offline'" % RSPM, timeout=20)
    assert http_status(two, "/__ping__") == "503"
    assert rows(two.output("%s online" % RSPM))[1] == ["PM2", OLD, "online"]


def test_offline_answers_503_and_survives_restart(pm):
    one, two = pm["nodes"]
    result = one.exec("%s cluster offline --nodes=PM2" % RSPM)
    assert rows(result.stdout) == [["PM1", OLD, "online"], ["PM2", OLD, "offline"]]
    assert http_status(one, "/__ping__", host="pm2") == "503"
    assert http_status(one, "/__ping__", host="pm1") == "200"
    two.exec("systemctl restart rstudio-pm")
    two.wait_until(current_journal("rstudio-pm") + " | grep -q 'starts offline'", timeout=20)
    assert http_status(two, "/__ping__") == "503"
    one.exec("%s cluster online --nodes=PM2" % RSPM)
    assert http_status(two, "/__ping__") == "200"


def test_rolling_upgrade_as_documented(pm):
    one, two = pm["nodes"]
    # 1-2: offline a subset and upgrade it; it restarts offline and does not migrate yet.
    one.exec("%s cluster offline --nodes=PM1" % RSPM)
    one.install_package(pm["pkgs"], deb_file("rstudio-pm", NEW))
    one.wait_until(current_journal("rstudio-pm") + " | grep -q 'starts offline'", timeout=20)
    assert "Migrating" not in one.journal("rstudio-pm")
    # 3: the rest goes offline; 4: the upgraded node comes online, migrating the schema first.
    one.exec("%s cluster offline --nodes=PM2" % RSPM)
    result = one.exec("%s cluster online --nodes=PM1 --timeout=120" % RSPM)
    assert rows(result.stdout) == [["PM1", NEW, "online"], ["PM2", OLD, "offline"]]
    assert "Migrating the database schema from version 41 to 42" in one.journal("rstudio-pm")
    # The old binary notices the newer schema within the check interval and shuts down with a clear line.
    two.wait_until("! systemctl is-active -q rstudio-pm", timeout=30)
    assert "the database schema version 42 is newer than this binary supports (41)" in two.journal("rstudio-pm")
    # An old binary refuses to start on the newer schema.
    two.exec("systemctl start rstudio-pm")
    two.wait_until(current_journal("rstudio-pm") + " | grep -q 'Refusing to start'", timeout=20)
    two.wait_until("! systemctl is-active -q rstudio-pm", timeout=20)
    # 5: upgrade the rest and bring it online.
    two.install_package(pm["pkgs"], deb_file("rstudio-pm", NEW))
    result = one.exec("%s cluster online --nodes=PM2 --timeout=120" % RSPM)
    assert rows(result.stdout) == [["PM1", NEW, "online"], ["PM2", NEW, "online"]]
    assert two.http_ok("http://localhost:4242/__emulator__/data/check.txt") == "from pm1"


def test_s3_storage_needs_the_same_encryption_key(pm):
    one, two = pm["nodes"]
    s3 = "[Storage]\nDefault = s3\n[S3Storage]\nBucket = rspm-bucket\n"
    # The S3 stand-in: a directory any account may write, as a bucket is for whoever holds the credentials.
    one.exec("install -d -m 1777 /srv/rspm/s3")
    for node in (one, two):
        node.exec("echo POSITEMU_S3_DIR=/srv/rspm/s3 >> /etc/default/rstudio-pm")
        node.write_file("/etc/rstudio-pm/rstudio-pm.gcfg", pm_config(pm["url"], node.name.upper(), extra=s3))
        node.exec("systemctl restart rstudio-pm")
    for node in (one, two):
        node.wait_http("http://localhost:4242/__ping__", timeout=20)
    assert http_status(one, "/__emulator__/data/pkg.tar.gz", method="PUT", data="package bytes") == "201"
    one.exec("test -s /srv/rspm/s3/rspm-bucket/pkg.tar.gz && ! grep -q 'package bytes' "
             "/srv/rspm/s3/rspm-bucket/pkg.tar.gz")
    # Each node created its own key at first start: pm2 cannot decrypt what pm1 stored.
    assert http_status(two, "/__emulator__/data/pkg.tar.gz") == "500"
    assert "the object was encrypted with another key" in two.journal("rstudio-pm")
    # The documented fix: copy the key from the first node, mode 0600 -- and owned by rstudio-pm, which reads it.
    two.write_file("/var/lib/rstudio-pm/rstudio-pm.key", one.read_file("/var/lib/rstudio-pm/rstudio-pm.key"),
                   mode="0600")
    two.exec("chown root:root /var/lib/rstudio-pm/rstudio-pm.key && systemctl restart rstudio-pm", check=False)
    two.wait_until(current_journal("rstudio-pm") + " | grep -q 'cannot read encryption key "
                   "/var/lib/rstudio-pm/rstudio-pm.key as rstudio-pm (uid 4242): permission denied'", timeout=20)
    two.exec("chown rstudio-pm:rstudio-pm /var/lib/rstudio-pm/rstudio-pm.key && systemctl restart rstudio-pm")
    two.wait_http("http://localhost:4242/__ping__", timeout=20)
    assert two.http_ok("http://localhost:4242/__emulator__/data/pkg.tar.gz") == "package bytes"


def test_migrate_both_directions_with_preconditions(pm):
    lab = pm["lab"]
    url = lab.create_database("rspm_single", "rspm_single", "single-secret")
    node = lab.start_node("pm3")
    node.write_file("/etc/default/rstudio-pm", TUNING)
    node.install_package(pm["pkgs"], deb_file("rstudio-pm", NEW))
    node.wait_http("http://localhost:4242/__ping__", timeout=20)
    assert http_status(node, "/__api__/repos?name=local-repo", method="POST") == "201"
    migrate = "/opt/rstudio-pm/bin/migrate --from sqlite --to postgres"
    result = node.exec(migrate, check=False)
    assert result.returncode == 1 and "needs both a [Sqlite] and a [Postgres] section" in result.stderr
    node.write_file("/etc/rstudio-pm/rstudio-pm.gcfg",
                    "[Server]\n[HTTP]\nListen = :4242\n[Database]\nProvider = sqlite\n[Sqlite]\n"
                    "Dir = /var/lib/rstudio-pm/db\n[Postgres]\nURL = %s\n" % url)
    result = node.exec(migrate, check=False)
    assert result.returncode == 1 and "the rstudio-pm service is running on this host" in result.stderr
    node.exec("systemctl stop rstudio-pm")
    result = node.exec(migrate, user="nobody", check=False)
    assert result.returncode == 1 and "must be run as root or by a member of the rstudio-pm group" in result.stderr
    # A member of the group may run it.
    node.exec("useradd -m -G rstudio-pm pmadmin")
    result = node.exec(migrate, user="pmadmin")
    assert "repos: 1 row(s)" in result.stdout and "single-secret" not in result.stdout
    node.exec("sed -i 's/Provider = sqlite/Provider = postgres/' /etc/rstudio-pm/rstudio-pm.gcfg "
              "&& rm /var/lib/rstudio-pm/db/rstudio-pm.sqlite && systemctl start rstudio-pm")
    node.wait_http("http://localhost:4242/__ping__", timeout=20)
    assert json.loads(node.http_ok("http://localhost:4242/__api__/status"))["database"] == "postgres"
    assert json.loads(node.http_ok("http://localhost:4242/__api__/repos"))[0]["name"] == "local-repo"
    # And back to SQLite (Package Manager's migrate goes both ways).
    node.exec("systemctl stop rstudio-pm")
    result = node.exec("/opt/rstudio-pm/bin/migrate --from postgres --to sqlite")
    assert "repos: 1 row(s)" in result.stdout
    result = node.exec("/opt/rstudio-pm/bin/migrate --from postgres --to sqlite", check=False)
    assert result.returncode == 1 and "already holds Package Manager data" in result.stderr
