"""The Workbench emulator installed from its .deb onto systemd nodes with a PostgreSQL container: every row of the
Workbench section of tests/emulator/README.md, failures included.

The tests of this module share one lab and run in file order (a cluster is built, broken and upgraded).
"""

import json
import re
import time

import pytest

from tests.lab.lab import deb_file

OLD, NEW = "2023.09.1+494.pro2", "2023.12.0+369.pro3"
KEY = "6f1c2d3e-4a5b-4c6d-8e7f-90a1b2c3d4e5"
TUNING = ("POSITEMU_MIGRATION_SECONDS=3\nPOSITEMU_SCHEMA_CHECK_SECONDS=3\nRSTUDIO_LB_CHECKIN_SECONDS=2\n"
          "RSTUDIO_LB_MISSED_CHECKIN_SECONDS=8\n")
DATABASE_CONF = "provider=postgresql\nhost={db}\nport=5432\ndatabase=rstudio\nusername=rstudio\npassword=wb-secret\n"


def rserver_conf(lb=True, extra="", health_check=True, shared="/srv/shared/rstudio"):
    """rserver.conf as the collection's role writes it: the health check is switched on explicitly."""
    return ("www-port=8787\nserver-shared-storage-path=%s\n" % shared +
            ("server-health-check-enabled=1\n" if health_check else "") +
            ("load-balancing-enabled=1\n" if lb else "") + extra)


def configure(node, db, key=KEY, key_mode="0600", lb=True, rserver_extra="", load_balancer=None, health_check=True,
              shared="/srv/shared/rstudio", launcher=None):
    """Configure a node as the role does. ``launcher``: the (pem, pub) pair to install (owned by rstudio-server);
    None keeps the node's own pair (the one its package generated)."""
    node.write_file("/etc/rstudio/rserver.conf", rserver_conf(lb, rserver_extra, health_check, shared))
    node.write_file("/etc/rstudio/database.conf", DATABASE_CONF.format(db=db.name), mode="0600")
    node.write_file("/etc/rstudio/load-balancer",
                    "www-host-name=%s\nbalancer=sessions\n" % node.name if load_balancer is None else load_balancer)
    if key is None:
        node.exec("rm -f /etc/rstudio/secure-cookie-key")
    else:
        node.write_file("/etc/rstudio/secure-cookie-key", key + "\n", mode=key_mode)
    node.write_file("/etc/rstudio/file-locks", "lock-type=linkbased\nrefresh-rate=20\ntimeout-interval=30\n")
    node.write_file("/etc/default/rstudio-server", TUNING)
    if launcher is not None:
        install_launcher_pair(node, launcher)
    # The refusal tests fail more than five starts within 10 s: systemd's start limit would then refuse the next
    # start ("Start request repeated too quickly") whatever the configuration says.
    node.exec("systemctl reset-failed rstudio-server", check=False)


def install_launcher_pair(node, pair):
    node.write_file("/etc/rstudio/launcher.pem", pair[0], mode="0600")
    node.write_file("/etc/rstudio/launcher.pub", pair[1], mode="0644")
    node.exec("chown rstudio-server:rstudio-server /etc/rstudio/launcher.pem /etc/rstudio/launcher.pub")


def launcher_pair(node):
    return node.read_file("/etc/rstudio/launcher.pem"), node.read_file("/etc/rstudio/launcher.pub")


def list_nodes(node):
    return node.workbench_nodes()


def status_of(node, host):
    return {row["Host"]: row["Status"] for row in list_nodes(node)}.get(host)


def health(node, target="localhost"):
    return str(node.http("http://%s:8787/health-check" % target)[0])


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
    # Fresh install: single node on SQLite, serving its sign-in page; the health check is off by default.
    rsw1.wait_http("http://localhost:8787/")
    assert health(rsw1) == "404"
    # rserver started as root and works as rstudio-server; its SQLite database belongs to that account.
    assert rsw1.output("ps -o user= -p $(cat /run/rstudio-server.pid)") == "rstudio-server"
    assert rsw1.output("stat -c %U /var/lib/rstudio-server/rstudio.sqlite") == "rstudio-server"
    # Each node's package generated its own launcher key pair (so the pairs differ until one is copied).
    assert rsw1.output("stat -c '%a %U' /etc/rstudio/launcher.pem /etc/rstudio/launcher.pub").splitlines() == [
        "600 rstudio-server", "644 rstudio-server"]
    assert launcher_pair(rsw1) != launcher_pair(wb["rsw2"])
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
    rsw1, rsw2 = wb["rsw1"], wb["rsw2"]
    # The shared storage path must belong to the server user (rserver works there as rstudio-server).
    rsw1.exec("install -d -o rstudio-server -g rstudio-server /srv/shared/rstudio")
    wb["pair"] = launcher_pair(rsw1)
    for name in ("rsw1", "rsw2"):
        configure(wb[name], wb["db"], launcher=wb["pair"])
        wb[name].exec("rstudio-server restart")
    output = rsw1.output("rstudio-server list-nodes")
    assert output.splitlines()[:7] == ["Cluster", "-------", "Protocol", "Http", "", "Nodes", "-----"]
    rows = list_nodes(rsw1)
    assert [(r["ID"], r["Host"], r["IPv4"], r["Port"], r["Status"], r["Health"]) for r in rows] == [
        ("1", "rsw1", rsw1.ip(), "8787", "Online", "Healthy"), ("2", "rsw2", rsw2.ip(), "8787", "Online", "Healthy")]
    # Last Seen as Posit published it (2021-Sep-20 17:08:53) with the server's time zone.
    assert re.fullmatch(r"\d{4}-[A-Z][a-z]{2}-\d\d \d\d:\d\d:\d\d [A-Z]+", rows[0]["Last Seen"])
    status = rsw1.http_ok("http://localhost:8787/load-balancer/status")
    assert re.search(r"^rsw1:8787  Load: [\d.e-]+, [\d.e-]+, [\d.e-]+$", status, re.M)
    assert re.search(r"^rsw2:8787  Load: ", status, re.M)
    # IP restricted: another node asking over the network is refused.
    assert str(rsw2.http("http://rsw1:8787/load-balancer/status")[0]) == "403"
    assert "joined node 2" in rsw1.journal("rstudio-server")
    assert rsw1.output("stat -c %a /etc/rstudio/secure-cookie-key") == "600"


def test_offline_and_online_on_the_local_node(wb):
    rsw1, rsw2 = wb["rsw1"], wb["rsw2"]
    rsw2.exec("rstudio-server offline")
    assert health(rsw1, "rsw2") == "503"
    assert status_of(rsw1, "rsw2") == "Offline"
    assert re.search(r"^rsw2:8787 \(offline\)  Load: ", rsw1.http_ok("http://localhost:8787/load-balancer/status"),
                     re.M)
    rsw2.exec("rstudio-server online")
    assert health(rsw1, "rsw2") == "200"
    assert status_of(rsw1, "rsw2") == "Online"


def test_health_check_needs_the_rserver_conf_key(wb):
    rsw1, rsw2 = wb["rsw1"], wb["rsw2"]
    configure(rsw2, wb["db"], launcher=wb["pair"], health_check=False)
    rsw2.exec("rstudio-server restart")
    assert status_of(rsw1, "rsw2") == "Online"  # the node serves ...
    assert health(rsw1, "rsw2") == "404"  # ... but a load balancer checking /health-check would mark it DOWN
    configure(rsw2, wb["db"], launcher=wb["pair"])
    rsw2.exec("rstudio-server restart")
    assert health(rsw1, "rsw2") == "200"


def test_sessions_and_a_node_with_another_launcher_pair(wb):
    rsw1, rsw2, rsw3 = wb["rsw1"], wb["rsw2"], wb["rsw3"]
    for node in (rsw1, rsw2, rsw3):  # user accounts identical on every node
        node.exec("id jdoe || useradd -u 2001 -m jdoe")
    session = json.loads(rsw2.http_ok("http://localhost:8787/__emulator__/sessions?user=jdoe", method="POST"))
    assert rsw2.output("ps -o user= -p %d" % session["pid"]) == "jdoe"
    status = rsw1.http_ok("http://localhost:8787/load-balancer/status")
    assert re.search(r"^rsw2:8787  Load: [\d.e-]+, [\d.e-]+, [\d.e-]+\n   %d - jdoe$" % session["pid"], status, re.M)
    assert rsw1.http_ok("http://localhost:8787/s/%d/" % session["pid"]).startswith("session %d of jdoe" %
                                                                                     session["pid"])
    # rsw3 joins with the cluster's cookie key but the launcher pair its own package generated.
    configure(rsw3, wb["db"])
    rsw3.exec("rstudio-server restart")
    assert status_of(rsw1, "rsw3") == "Online"
    rsw3.wait_until("journalctl -u rstudio-server -o cat | grep -q 'launcher.pem/launcher.pub differ'", timeout=20)
    assert "signed a launcher request with another launcher key pair" in rsw1.journal("rstudio-server", lines=40)
    odd = json.loads(rsw3.http_ok("http://localhost:8787/__emulator__/sessions?user=jdoe", method="POST"))
    code = str(rsw1.http("http://localhost:8787/s/%d/" % odd["pid"])[0])
    assert code == "502"
    # The fix: copy the pair from another node and restart.
    configure(rsw3, wb["db"], launcher=wb["pair"])
    rsw3.exec("rstudio-server restart")
    odd = json.loads(rsw3.http_ok("http://localhost:8787/__emulator__/sessions?user=jdoe", method="POST"))
    assert rsw1.http_ok("http://localhost:8787/s/%d/" % odd["pid"]).startswith("session %d of jdoe" % odd["pid"])
    rsw3.exec("rstudio-server stop")


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
    configure(rsw3, wb["db"], launcher=wb["pair"], **options)
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
    ("storage owner", dict(shared="/srv/shared/root-owned"),
     "server-shared-storage-path /srv/shared/root-owned is not writable by rstudio-server (server-user)"),
    ("launcher owner", dict(), "cannot read /etc/rstudio/launcher.pem as rstudio-server (server-user): permission "
                               "denied"),
    ("no launcher", dict(), "launcher.pem not found"),
])
def test_server_will_not_start_on_bad_configuration(wb, case, options, message):
    rsw3 = wb["rsw3"]
    configure(rsw3, wb["db"], launcher=wb["pair"], **options)
    rsw3.write_file("/etc/rstudio/sqlite.conf", "provider=sqlite\n")
    if case == "file-locks":
        rsw3.write_file("/etc/rstudio/file-locks", "lock-type=flock\n")
    if case == "storage owner":
        rsw3.exec("mkdir -p /srv/shared/root-owned && chmod 0755 /srv/shared/root-owned")
    if case == "launcher owner":  # written by root for root, as a role that does not know the server user would
        rsw3.exec("chown root:root /etc/rstudio/launcher.pem")
    if case == "no launcher":
        rsw3.exec("rm /etc/rstudio/launcher.pem")
    result = rsw3.exec("systemctl restart rstudio-server", check=False)
    assert result.returncode != 0
    assert message in rsw3.journal("rstudio-server", lines=20)


def test_deprecated_trigger_and_delete_node(wb):
    rsw1, rsw3 = wb["rsw1"], wb["rsw3"]
    configure(rsw3, wb["db"], lb=False, launcher=wb["pair"])  # no load-balancing-enabled: the file switches it on
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
    configure(rsw3, wb["db"], key=other, launcher=wb["pair"])
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
    # Still listed with its last known load (seed 004: "(unreachable)  Load: 0, 0, 0"). The page waits for each
    # node up to the load balancer's timeout (10 s by default, seed 004), so the client waits longer than that.
    assert re.search(r"^rsw2:8787 \(unreachable\)  Load: [\d.e-]+, [\d.e-]+, [\d.e-]+$",
                     rsw1.http_ok("http://localhost:8787/load-balancer/status", timeout=40), re.M)
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
