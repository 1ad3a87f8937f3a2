"""The Workbench emulator installed from its .deb onto systemd nodes with a PostgreSQL container: every row of the
Workbench section of tests/emulator/README.md, failures included.

The tests of this module share one lab and run in file order (a cluster is built, broken and upgraded).
"""

import re
import time

import pytest

from tests.lab.lab import deb_file

OLD, NEW = "2023.09.1+494.pro2", "2023.12.0+369.pro3"
KEY = "6f1c2d3e-4a5b-4c6d-8e7f-90a1b2c3d4e5"
TUNING = ("POSITEMU_MIGRATION_SECONDS=3\nPOSITEMU_SCHEMA_CHECK_SECONDS=3\nRSTUDIO_LB_CHECKIN_SECONDS=2\n"
          "RSTUDIO_LB_MISSED_CHECKIN_SECONDS=8\n")
DATABASE_CONF = "provider=postgresql\nhost={db}\nport=5432\ndatabase=rstudio\nusername=rstudio\npassword=wb-secret\n"


def rserver_conf(lb=True, extra=""):
    return ("www-port=8787\nserver-shared-storage-path=/srv/shared/rstudio\n" +
            ("load-balancing-enabled=1\n" if lb else "") + extra)


def configure(node, db, key=KEY, key_mode="0600", lb=True, rserver_extra="", load_balancer=None):
    node.write_file("/etc/rstudio/rserver.conf", rserver_conf(lb, rserver_extra))
    node.write_file("/etc/rstudio/database.conf", DATABASE_CONF.format(db=db.name), mode="0600")
    node.write_file("/etc/rstudio/load-balancer",
                    "www-host-name=%s\nbalancer=sessions\n" % node.name if load_balancer is None else load_balancer)
    if key is None:
        node.exec("rm -f /etc/rstudio/secure-cookie-key")
    else:
        node.write_file("/etc/rstudio/secure-cookie-key", key + "\n", mode=key_mode)
    node.write_file("/etc/rstudio/file-locks", "lock-type=linkbased\nrefresh-rate=20\ntimeout-interval=30\n")
    node.write_file("/etc/default/rstudio-server", TUNING)
    # The refusal tests fail more than five starts within 10 s: systemd's start limit would then refuse the next
    # start ("Start request repeated too quickly") whatever the configuration says.
    node.exec("systemctl reset-failed rstudio-server", check=False)


def list_nodes(node):
    """list-nodes parsed by the header's column positions, as the adapters do (docs/CONTRACTS.md)."""
    lines = node.output("rstudio-server list-nodes").splitlines()
    names = ["ID", "Host", "IPv4", "Port", "Status", "Last Seen"]
    starts = [lines[0].index(name) for name in names]
    rows = []
    for line in lines[1:]:
        cells = [line[s:(starts[i + 1] if i + 1 < len(starts) else None)].strip() for i, s in enumerate(starts)]
        rows.append(dict(zip(names, cells)))
    return rows


def status_of(node, host):
    return {row["Host"]: row["Status"] for row in list_nodes(node)}.get(host)


def health(node, target="localhost"):
    return node.output("curl -s -o /dev/null -w '%%{http_code}' http://%s:8787/health-check" % target, check=False)


@pytest.fixture(scope="module")
def wb(lab, debs):
    pkgs = lab.start_package_server()
    db = lab.start_postgres()
    lab.create_database("rstudio", "rstudio", "wb-secret")
    shared = lab.volume("shared")
    nodes = {name: lab.start_node(name, volumes={shared: "/srv/shared"}) for name in ("rsw1", "rsw2", "rsw3")}
    return {"pkgs": pkgs, "db": db, **nodes}


def test_package_installs_like_the_vendor_one(wb):
    rsw1 = wb["rsw1"]
    for name in ("rsw1", "rsw2", "rsw3"):
        wb[name].install_package(wb["pkgs"], deb_file("rstudio-workbench", OLD))
    assert rsw1.output("readlink /usr/sbin/rstudio-server") == "/usr/lib/rstudio-server/bin/rstudio-server"
    assert rsw1.output("id -un rstudio-server") == "rstudio-server"
    assert rsw1.output("systemctl is-enabled rstudio-server") == "enabled"
    # Fresh install: single node on SQLite, serving.
    rsw1.wait_until("curl -fsS http://localhost:8787/health-check")
    assert rsw1.output("rstudio-server version") == OLD
    assert rsw1.output("dpkg-query -W -f '${Version}' rstudio-workbench") == OLD
    result = rsw1.exec("rstudio-server list-nodes", check=False)
    assert result.returncode == 1 and "load balancing is not enabled" in result.stderr
    result = rsw1.exec("rstudio-server bogus", check=False)
    assert result.returncode == 1 and "Usage: rstudio-server" in result.stderr


def test_locktester_across_nodes(wb):
    rsw1, rsw2 = wb["rsw1"], wb["rsw2"]
    rsw1.exec("mkdir -p /srv/shared/locks && cd /srv/shared/locks && (nohup /usr/lib/rstudio-server/bin/locktester"
              " > /tmp/locktester.out 2>&1 & echo $! > /tmp/locktester.pid)")
    rsw1.wait_until("grep -q 'Holding the locks' /tmp/locktester.out", timeout=30)
    assert rsw1.read_file("/tmp/locktester.out").startswith("* Acquired advisory lock\n* Acquired link-based lock\n")
    second = rsw2.output("cd /srv/shared/locks && /usr/lib/rstudio-server/bin/locktester")
    assert second.splitlines() == ["* Unable to acquire advisory lock", "* Unable to acquire link-based lock", "",
                                   "Your filesystem appears to support advisory and link-based locks."]
    rsw1.exec("kill -TERM $(cat /tmp/locktester.pid)")
    rsw2.wait_until("cd /srv/shared/locks && test ! -e .rstudio-locktester-link", timeout=15)


def test_cluster_comes_online(wb):
    for name in ("rsw1", "rsw2"):
        configure(wb[name], wb["db"])
        wb[name].exec("rstudio-server restart")
    rsw1, rsw2 = wb["rsw1"], wb["rsw2"]
    rows = list_nodes(rsw1)
    assert [(r["ID"], r["Host"], r["IPv4"], r["Port"], r["Status"]) for r in rows] == [
        ("1", "rsw1", rsw1.ip(), "8787", "Online"), ("2", "rsw2", rsw2.ip(), "8787", "Online")]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", rows[0]["Last Seen"])
    status = rsw1.output("curl -fsS http://localhost:8787/load-balancer/status")
    assert re.search(r"^rsw1:8787  Load: [\d.e-]+, [\d.e-]+, [\d.e-]+$", status, re.M)
    assert re.search(r"^rsw2:8787  Load: ", status, re.M)
    # IP restricted: another node asking over the network is refused.
    assert rsw2.output("curl -s -o /dev/null -w '%{http_code}' http://rsw1:8787/load-balancer/status") == "403"
    assert "joined node 2" in rsw1.journal("rstudio-server")
    assert rsw1.output("stat -c %a /etc/rstudio/secure-cookie-key") == "600"


def test_offline_and_online_on_the_local_node(wb):
    rsw1, rsw2 = wb["rsw1"], wb["rsw2"]
    rsw2.exec("rstudio-server offline")
    assert health(rsw1, "rsw2") == "503"
    assert status_of(rsw1, "rsw2") == "Offline"
    assert re.search(r"^rsw2:8787 \(offline\)  Load: ", rsw1.output("curl -fsS localhost:8787/load-balancer/status"),
                     re.M)
    rsw2.exec("rstudio-server online")
    assert health(rsw1, "rsw2") == "200"
    assert status_of(rsw1, "rsw2") == "Online"


@pytest.mark.parametrize("case, options, status, message", [
    ("wrong key", dict(key="ffffffff-0000-4000-8000-000000000000"), "Invalid secure cookie key",
     "does not match the cluster's"),
    ("key mode", dict(key_mode="0644"), "Invalid permissions on secure cookie key", "must have mode 0600"),
    ("no key", dict(key=None), "Missing secure cookie key", "not found"),
    ("bad host", dict(load_balancer="www-host-name=rsw-primaryyy\n"), "Failed to resolve",
     "could not resolve the host name"),
])
def test_node_refused_with_documented_status(wb, case, options, status, message):
    rsw1, rsw3 = wb["rsw1"], wb["rsw3"]
    configure(rsw3, wb["db"], **options)
    result = rsw3.exec("systemctl restart rstudio-server", check=False)
    assert result.returncode != 0, case
    assert rsw3.output("systemctl is-active rstudio-server", check=False) == "failed"
    journal = rsw3.journal("rstudio-server", lines=30)
    assert status in journal and message in journal
    host = "rsw-primaryyy" if case == "bad host" else "rsw3"
    assert status_of(rsw1, host) == status


@pytest.mark.parametrize("case, options, message", [
    ("short key", dict(key="0123456789abcde"), "at least 16 bytes (128 bits)"),
    ("sqlite", dict(rserver_extra="database-config-file=/etc/rstudio/sqlite.conf\n"),
     "load balancing requires a PostgreSQL database"),
    ("balancer", dict(load_balancer="balancer=round-robin\n"), "balancer must be one of sessions, system-load"),
    ("timeout", dict(load_balancer="timeout=soon\n"), "timeout must be an integer >= 0"),
    ("file-locks", dict(), "lock-type must be linkbased or advisory"),
])
def test_server_will_not_start_on_bad_configuration(wb, case, options, message):
    rsw3 = wb["rsw3"]
    configure(rsw3, wb["db"], **options)
    rsw3.write_file("/etc/rstudio/sqlite.conf", "provider=sqlite\n")
    if case == "file-locks":
        rsw3.write_file("/etc/rstudio/file-locks", "lock-type=flock\n")
    result = rsw3.exec("systemctl restart rstudio-server", check=False)
    assert result.returncode != 0
    assert message in rsw3.journal("rstudio-server", lines=20)


def test_deprecated_trigger_and_delete_node(wb):
    rsw1, rsw3 = wb["rsw1"], wb["rsw3"]
    configure(rsw3, wb["db"], lb=False)  # no load-balancing-enabled: the file's presence switches it on
    rsw3.exec("systemctl restart rstudio-server")
    assert "this trigger is deprecated: set load-balancing-enabled=1" in rsw3.journal("rstudio-server", lines=20)
    assert status_of(rsw1, "rsw3") == "Online"
    ids = {row["Host"]: row["ID"] for row in list_nodes(rsw1)}
    assert rsw1.output("rstudio-server delete-node %s" % ids["rsw-primaryyy"]) == "Node %s deleted." % ids[
        "rsw-primaryyy"]
    assert "rsw-primaryyy" not in {row["Host"] for row in list_nodes(rsw1)}
    result = rsw1.exec("rstudio-server delete-node 99", check=False)
    assert (result.returncode, result.stderr.strip()) == (1, "Error: node 99 not found")
    rsw3.exec("rstudio-server stop")
    assert status_of(rsw1, "rsw3") == "Offline"
    # delete-node runs on an active node only
    result = rsw3.exec("rstudio-server delete-node %s" % ids["rsw1"], check=False)
    assert result.returncode == 1 and "not running" in result.stderr
    assert rsw1.output("rstudio-server delete-node %s" % ids["rsw3"]) == "Node %s deleted." % ids["rsw3"]
    assert "rsw3" not in {row["Host"] for row in list_nodes(rsw1)}


def test_reset_cluster_lets_a_new_key_define_it(wb):
    rsw1, rsw3 = wb["rsw1"], wb["rsw3"]
    other = "11111111-2222-4333-8444-555555555555"
    configure(rsw3, wb["db"], key=other)
    assert rsw3.exec("systemctl restart rstudio-server", check=False).returncode != 0
    assert status_of(rsw1, "rsw3") == "Invalid secure cookie key"
    assert "reset" in rsw1.output("rstudio-server reset-cluster")
    rsw3.exec("systemctl restart rstudio-server")
    assert status_of(rsw1, "rsw3") == "Online"
    # Put the cluster back on the shared key: stop the odd node, reset, restart the others (the first defines it).
    rsw3.exec("rstudio-server stop")
    rsw1.exec("rstudio-server reset-cluster")
    rsw1.exec("rstudio-server restart")
    wb["rsw2"].exec("rstudio-server restart")
    assert status_of(rsw1, "rsw2") == "Online"


def test_missed_check_in_and_recovery(wb):
    rsw1, rsw2 = wb["rsw1"], wb["rsw2"]
    rsw2.kill()  # the node dies without recording its shutdown
    deadline = time.monotonic() + 30
    while status_of(rsw1, "rsw2") != "Missed check-in":
        assert time.monotonic() < deadline, "rsw2 never showed Missed check-in"
        time.sleep(1)
    assert re.search(r"^rsw2:8787 \(unreachable\)$", rsw1.output("curl -fsS localhost:8787/load-balancer/status"),
                     re.M)
    rsw2.start()
    rsw2.wait_for_systemd()
    rsw2.wait_until("systemctl is-active rstudio-server", timeout=60)
    assert status_of(rsw1, "rsw2") == "Online"


def test_rolling_upgrade_migrates_and_old_node_shuts_down(wb):
    rsw1, rsw2 = wb["rsw1"], wb["rsw2"]
    started = time.monotonic()
    rsw1.install_package(wb["pkgs"], deb_file("rstudio-workbench", NEW))
    assert "Migrating the database schema from version 11 to 12" in rsw1.journal("rstudio-server", lines=40)
    assert health(rsw1) == "200"
    # The old node notices the newer schema within 30 s and shuts down.
    rsw2.wait_until("! systemctl is-active rstudio-server", timeout=30)
    assert time.monotonic() - started < 60
    assert "newer than this binary supports (11)" in rsw2.journal("rstudio-server", lines=20)
    assert rsw2.exec("systemctl start rstudio-server", check=False).returncode != 0
    rsw2.install_package(wb["pkgs"], deb_file("rstudio-workbench", NEW))
    assert [(r["Host"], r["Status"]) for r in list_nodes(rsw1)][:2] == [("rsw1", "Online"), ("rsw2", "Online")]
    assert rsw2.output("rstudio-server version") == NEW
