"""Verify the infrastructure roles on the lab nodes (testinfra, run by Molecule's verify step)."""

import os
import re
import subprocess
import sys
import time

import pytest
import testinfra.utils.ansible_runner
import yaml

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))
from tests.lab import probe  # noqa: E402  pylint: disable=wrong-import-position

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
ALL = RUNNER.get_hosts("all")
PRODUCT_NODES = RUNNER.get_hosts("product_nodes")
DB = RUNNER.get_hosts("database")[0]
LB = RUNNER.get_hosts("load_balancer")[0]


def host(name):
    return RUNNER.get_host(name)


def run_playbook(tmp_path, plays):
    """Run a throw-away playbook against the scenario's inventory; return the CompletedProcess."""
    playbook = tmp_path / "playbook.yml"
    playbook.write_text(yaml.safe_dump(plays, sort_keys=False))
    ansible_playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    result = subprocess.run([ansible_playbook, "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(playbook)],
                            capture_output=True, text=True, timeout=300, check=False)
    # ansible-core prints task errors on stderr and wraps long lines: compare on one whitespace-normalised text.
    return result.returncode, " ".join((result.stdout + "\n" + result.stderr).split())


def lab_vars():
    return RUNNER.get_variables(DB)


def haproxy_command(command):
    """Send a runtime API command to HAProxy's admin socket on the load balancer; return the reply."""
    script = ("import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect('/run/haproxy/admin.sock'); "
              "s.sendall(sys.argv[1].encode()+b'\\n'); print(b''.join(iter(lambda: s.recv(65536), b'')).decode())")
    return host(LB).check_output("python3 -c %s %s", script, command)


@pytest.mark.parametrize("account", ["rstudio-connect", "rstudio-server"])
def test_accounts_have_the_same_ids_on_every_node(account):
    wanted = {item["name"]: item for item in lab_vars()["infra_lab_accounts"]}[account]
    seen = {}
    for name in ALL:
        user = host(name).user(account)
        assert user.exists, "%s: user %s missing" % (name, account)
        seen[name] = (user.uid, user.gid, host(name).group(wanted["group"]).gid)
    assert set(seen.values()) == {(wanted["uid"], wanted["gid"], wanted["gid"])}, seen


def test_chronyd_runs_without_setting_the_clock():
    for name in ALL:
        node = host(name)
        assert node.service("chrony").is_running, "%s: chrony not running" % name
        assert node.service("chrony").is_enabled, "%s: chrony not enabled" % name
        args = node.check_output("ps -C chronyd -o args=")
        assert " -x" in args, "%s: chronyd runs without -x: %s" % (name, args)
        conf = node.file("/etc/chrony/chrony.conf").content_string
        assert "local stratum 10" in conf, "%s: no local stratum with an empty server list" % name
        # chronyd answers on its command socket, i.e. it is really serving time.
        assert "Stratum" in node.check_output("chronyc -n tracking"), name


def test_fstab_entry_written_and_volume_shared():
    for name in PRODUCT_NODES:
        node = host(name)
        fstab = node.file("/etc/fstab").content_string
        entry = [line.split() for line in fstab.splitlines() if " /srv/shared " in line]
        assert entry and entry[0][0] == "nfs.lab.invalid:/export/posit", fstab
        assert entry[0][2] == "nfs" and entry[0][3] not in ("", "defaults"), entry
        directory = node.file("/srv/shared/connect")
        assert directory.is_directory and directory.user == "rstudio-connect" and directory.mode == 0o750
    # What one node writes, the other reads: the sharing the role proved is still there.
    writer, reader = (host(name) for name in PRODUCT_NODES[:2])
    token = "verify-%d" % time.time_ns()
    writer.check_output("echo %s > /srv/shared/.verify-probe", token)
    try:
        assert reader.file("/srv/shared/.verify-probe").content_string.strip() == token
    finally:
        writer.run("rm -f /srv/shared/.verify-probe")
    # The role's own marker was removed.
    assert not reader.check_output("ls -A /srv/shared | grep positops-shared-marker || true")


def test_postgresql_reachable_from_product_nodes_with_the_product_password():
    password = lab_vars()["infra_lab_connect_db_password"]
    db_address = DB  # the container name resolves on the lab network
    script = ("import psycopg,sys; c=psycopg.connect(host=sys.argv[1], dbname='rstudio_connect', "
              "user='rstudio_connect', password=sys.argv[2], connect_timeout=5); "
              "print(c.execute('select current_user, current_database()').fetchone())")
    for name in PRODUCT_NODES:
        out = host(name).check_output("python3 -c %s %s %s", script, db_address, password)
        assert "rstudio_connect" in out
    # A wrong password is refused: scram-sha-256 is really checked.
    bad = host(PRODUCT_NODES[0]).run("python3 -c %s %s %s", script, db_address, "wrong")
    assert bad.rc != 0 and "password authentication failed" in bad.stderr
    hba = host(DB).file("/etc/postgresql/15/main/pg_hba.conf").content_string
    assert any(line.split()[:5] == ["host", "rstudio_connect", "rstudio_connect", "samenet", "scram-sha-256"]
               for line in hba.splitlines() if line.strip() and not line.startswith("#"))
    # The password never landed in a file on the database node in clear text.
    assert host(DB).run("grep -rl %s /etc/postgresql", password).rc == 1


def test_haproxy_config_valid_and_checks_configured():
    lb = host(LB)
    assert lb.run("haproxy -c -f /etc/haproxy/haproxy.cfg").rc == 0
    config = lb.file("/etc/haproxy/haproxy.cfg").content_string
    assert "option redispatch" in config and "retries 3" in config
    assert "default-server inter 1s fall 2 rise 2" in config
    assert "http-check send meth GET uri /__ping__" in config
    assert "http-check send meth GET uri /health-check" in config
    assert "cookie CONNECT_NODE insert indirect nocache" in config
    # The runtime API answers on its socket (HAProxy binds it under a temporary name, so ss does not list it).
    assert lb.file("/run/haproxy/admin.sock").is_socket
    assert "Name: HAProxy" in haproxy_command("show info")
    assert lb.service("haproxy").is_running


def wait_for_statuses(wanted, timeout=20):
    """Poll `show stat` until every (backend, server) -> status pair in `wanted` holds; return the last view."""
    deadline = time.monotonic() + timeout
    while True:
        rows = [line.split(",") for line in haproxy_command("show stat").splitlines() if line and line[0] != "#"]
        statuses = {(row[0], row[1]): row[17] for row in rows if len(row) > 17}
        if all(statuses.get(key) == value for key, value in wanted.items()) or time.monotonic() > deadline:
            return statuses
        time.sleep(1)


def test_health_checks_take_nodes_in_and_out():
    node1, node2 = PRODUCT_NODES[:2]
    # node1 serves the health paths (prepare step), node2 serves nothing.
    wanted = {("connect", node1): "UP", ("connect", node2): "DOWN",
              ("workbench", node1): "UP", ("workbench", node2): "DOWN"}
    statuses = wait_for_statuses(wanted)
    for key, status in wanted.items():
        assert statuses.get(key) == status, "%s/%s is %s, wanted %s" % (key[0], key[1], statuses.get(key), status)


def test_sticky_cookie_and_drain_through_the_runtime_api():
    node1 = PRODUCT_NODES[0]
    lb = host(LB)
    headers = probe.parse(lb.run(probe.command("http://127.0.0.1:3939/__ping__")).stdout)[1]
    assert headers.get("set-cookie", "").lower().startswith(("connect_node=%s" % node1).lower()), headers
    # The playbooks drain a server by its inventory host name through the admin socket.
    haproxy_command("set server connect/%s state drain" % node1)
    try:
        assert wait_for_statuses({("connect", node1): "DRAIN"}, timeout=5)[("connect", node1)] == "DRAIN"
    finally:
        haproxy_command("set server connect/%s state ready" % node1)
    assert wait_for_statuses({("connect", node1): "UP"}, timeout=10)[("connect", node1)] == "UP"


def test_a_different_uid_fails_clearly_and_renumbers_nothing(tmp_path):
    node2 = PRODUCT_NODES[1]
    returncode, output = run_playbook(tmp_path, [{
        "hosts": node2, "gather_facts": False,
        "roles": [{"role": "positops.ha.node_base", "vars": {
            "node_base_time_sync_enabled": False,
            "node_base_accounts": [{"name": "rstudio-connect", "uid": 2999, "gid": 2001}]}}]}])
    assert returncode != 0, output
    assert "%s: user rstudio-connect has UID 2001, wanted 2999" % node2 in output, output
    assert "never renumbers" in output
    assert host(node2).user("rstudio-connect").uid == 2001


def test_storage_that_is_not_shared_is_named(tmp_path):
    node1, node2 = PRODUCT_NODES[:2]
    # /var/tmp is local to each container: node1 writes the marker, node2 cannot see it.
    returncode, output = run_playbook(tmp_path, [{
        "hosts": "product_nodes", "gather_facts": False,
        "tasks": [{"ansible.builtin.include_role": {"name": "positops.ha.shared_storage", "tasks_from": "verify"},
                   "vars": {"shared_storage_mounts": [
                       {"path": "/var/tmp", "src": "local", "product": "connect"}]}}]}])
    assert returncode != 0, output
    assert "storage not shared: %s does not see the marker /var/tmp/.positops-shared-marker-" % node2 in output, output
    assert re.search(r"%s : ok=\d+ changed=0 unreachable=0 failed=0" % re.escape(node1), output), output
    # The marker is cleaned up on the node that wrote it.
    assert not host(node1).check_output("ls -A /var/tmp | grep positops-shared-marker || true")


def test_shared_storage_verify_entry_point_passes_on_the_share(tmp_path):
    returncode, output = run_playbook(tmp_path, [{
        "hosts": "product_nodes", "gather_facts": False,
        "tasks": [{"ansible.builtin.include_role": {"name": "positops.ha.shared_storage", "tasks_from": "verify"},
                   "vars": {"shared_storage_mounts": [
                       {"path": "/srv/shared", "src": "nfs.lab.invalid:/export/posit", "product": "connect"}]}}]}])
    assert returncode == 0, output
    for node in PRODUCT_NODES:
        assert re.search(r"%s : ok=\d+ changed=0 unreachable=0 failed=0" % re.escape(node), output), output
