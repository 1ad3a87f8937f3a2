"""Verify the infrastructure roles on the lab nodes (testinfra, run by Molecule's verify step)."""

import base64
import json
import os
import re
import subprocess
import sys
import time

import pytest
import testinfra.utils.ansible_runner
import yaml

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
        # The database node is the lab's time reference (molecule.yml); the others follow it.
        if name == DB:
            assert "local stratum 10" in conf, "%s: the time reference serves no local stratum" % name
        else:
            assert "\nserver " in conf and "-db" in conf, "%s: does not follow the database node: %s" % (name, conf)
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


# ---- Load balancer ----------------------------------------------------------------------------------------------
# Every request goes through HTTPS (TLS on, self-signed certificate checked against itself), made from inside the
# load balancer with its python3 by CLIENT: it prints one JSON line (status, headers, body, start and end times on
# the load balancer's clock). Plain HTTP only reaches connect's redirect port.
CERT = "/etc/haproxy/certs/positops.pem"
CLIENT = r"""
import http.client, json, ssl, sys, time
method, url, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
headers = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
scheme, _, rest = url.partition("://")
hostport, _, path = rest.partition("/")
host, _, port = hostport.partition(":")
if scheme == "https":
    context = ssl.create_default_context(cafile="%s")
    connection = http.client.HTTPSConnection(host, int(port), timeout=timeout, context=context)
else:
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
started = time.time()
try:
    connection.request(method, "/" + path, body=b"x" if method in ("POST", "PUT") else None, headers=headers)
    response = connection.getresponse()
    result = {"status": response.status, "headers": dict((k.lower(), v) for k, v in response.getheaders()),
              "body": response.read().decode("utf-8", "replace")}
except Exception as error:
    result = {"status": 0, "headers": {}, "body": repr(error)}
result.update(started=started, ended=time.time())
result["elapsed"] = round(result["ended"] - started, 3)
print(json.dumps(result))
""" % CERT
MEASUREMENTS = {}


def request(url, method="GET", timeout=30, headers=None):
    """Make the request from the load balancer; return CLIENT's result."""
    out = host(LB).check_output("python3 -c %s %s %s %s %s", CLIENT, method, url, str(timeout),
                                json.dumps(headers or {}))
    return json.loads(out)


def request_in_background(name, url, method="GET", timeout=60, headers=None):
    """Start the request on the load balancer without waiting; collect(name) gets its result."""
    host(LB).check_output("rm -f /tmp/infra-%s.json; (python3 -c %s %s %s %s %s > /tmp/infra-%s.json 2>&1 &)",
                          name, CLIENT, method, url, str(timeout), json.dumps(headers or {}), name)


def collect(name, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = host(LB).run("cat /tmp/infra-%s.json", name).stdout.strip()
        if out:
            return json.loads(out)
        time.sleep(0.2)
    raise AssertionError("the request %s did not finish within %s s" % (name, timeout))


def haproxy_commands(*commands):
    """Send runtime API commands one after the other; return the load balancer's clock just before the first."""
    script = ("import socket,sys,time; print(time.time())\n"
              "for command in sys.argv[1:]:\n"
              "    s = socket.socket(socket.AF_UNIX); s.connect('/run/haproxy/admin.sock')\n"
              "    s.sendall(command.encode() + b'\\n'); reply = s.recv(65536).decode().strip()\n"
              "    assert not reply, (command, reply)\n")
    return float(host(LB).check_output("python3 -c %s" + " %s" * len(commands), script, *commands))


def server_states(backend="connect"):
    rows = [line.split(",") for line in haproxy_command("show stat").splitlines() if line and line[0] != "#"]
    return {row[1]: row[17] for row in rows if row[0] == backend and row[1] not in ("FRONTEND", "BACKEND")}


def wait_until_waiting(count, frontend="connect", timeout=20):
    """Wait until `count` requests are open on the frontend (held: their client started, nothing answered yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = [line.split(",") for line in haproxy_command("show stat").splitlines() if line and line[0] != "#"]
        if [row for row in rows if row[0] == frontend and row[1] == "FRONTEND" and int(row[4] or 0) >= count]:
            return
        time.sleep(0.2)
    raise AssertionError("%d request(s) were not waiting on %s within %s s" % (count, frontend, timeout))


def hold_map():
    return haproxy_command("show map /etc/haproxy/positops-hold.map").strip()


def measure(key, value):
    """Keep a number for the report (build/labs/<prefix>-infra-measurements.json)."""
    MEASUREMENTS[key] = value
    path = os.path.join(os.path.dirname(__file__), "..", "..", "..", "build", "labs",
                        "%s-infra-measurements.json" % os.environ.get("POSITOPS_LAB", "infra"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        json.dump(MEASUREMENTS, handle, indent=2, sort_keys=True)


def lb_play(tasks):
    """One play on the first product node whose tasks use the load balancer role's runtime entry points."""
    return [{"hosts": PRODUCT_NODES[0], "gather_facts": False, "tasks": tasks}]


def entry_point(name, **variables):
    return {"name": "Load balancer entry point %s" % name,
            "ansible.builtin.include_role": {"name": "positops.ha.load_balancer", "tasks_from": name},
            "vars": variables}


@pytest.fixture
def all_servers_back():
    """Every connect server ready and every hold off again after the test, whatever it did."""
    yield
    node1 = PRODUCT_NODES[0]
    haproxy_command("del map /etc/haproxy/positops-hold.map connect")
    for node in PRODUCT_NODES:
        haproxy_command("set server connect/%s state ready" % node)
    haproxy_command("set server connect/%s health up" % node1)
    wait_for_statuses({("connect", node1): "UP"}, timeout=10)


def test_haproxy_config_valid_and_checks_configured():
    lb = host(LB)
    assert lb.run("haproxy -c -f /etc/haproxy/haproxy.cfg -f /etc/haproxy/positops-secrets.cfg").rc == 0
    config = lb.file("/etc/haproxy/haproxy.cfg").content_string
    assert "option redispatch" in config and "retries 3" in config
    assert "default-server inter 1s fall 2 rise 2" in config
    # Health paths from the products' records: the inventory only names the services.
    assert "http-check send meth GET uri /__ping__" in config
    assert "http-check send meth GET uri /health-check" in config
    assert "cookie CONNECT_NODE insert indirect nocache httponly secure" in config
    assert "cookie WORKBENCH_NODE insert indirect nocache httponly secure" in config
    assert "server-state-file /var/lib/haproxy/server-state" in config
    # The runtime API answers on its socket (HAProxy binds it under a temporary name, so ss does not list it).
    assert lb.file("/run/haproxy/admin.sock").is_socket
    assert "Name: HAProxy" in haproxy_command("show info")
    assert lb.service("haproxy").is_running


def test_secrets_stay_out_of_the_configuration():
    lb = host(LB)
    password = lab_vars()["infra_lab_stats_password"]
    assert password not in lb.file("/etc/haproxy/haproxy.cfg").content_string
    secrets = lb.file("/etc/haproxy/positops-secrets.cfg")
    assert (secrets.user, secrets.group, secrets.mode) == ("root", "haproxy", 0o640)
    assert password in secrets.content_string
    key = lb.file(CERT + ".key")
    assert (key.user, key.mode) == ("root", 0o600)
    assert "PRIVATE KEY" not in lb.file(CERT).content_string


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


def test_https_with_forwarded_headers_and_a_secure_sticky_cookie():
    node1 = PRODUCT_NODES[0]
    # The client's own X-Forwarded-For is replaced by its real address.
    answer = request("https://127.0.0.1:3939/echo", headers={"X-Forwarded-For": "203.0.113.9"})
    assert answer["status"] == 200, answer
    seen = dict((key.lower(), value) for key, value in json.loads(answer["body"])["headers"].items())
    assert seen["x-forwarded-proto"] == "https"
    assert seen["x-forwarded-for"] == "127.0.0.1"
    cookie = answer["headers"]["set-cookie"]
    assert cookie.lower().startswith(("connect_node=%s;" % node1).lower()) and "Secure" in cookie, cookie
    # Workbench too (the port of its record); its health path is /health-check.
    answer = request("https://127.0.0.1:8787/echo")
    assert answer["status"] == 200 and answer["headers"]["set-cookie"].startswith("WORKBENCH_NODE="), answer


def test_plain_http_is_redirected_to_https():
    answer = request("http://127.0.0.1:3938/apps/x?y=1", headers={"Host": "connect.lab.example:3938"})
    assert answer["status"] == 301, answer
    assert answer["headers"]["location"] == "https://connect.lab.example:3939/apps/x?y=1"
    # The TLS port does not speak plain HTTP.
    assert request("http://127.0.0.1:3939/__ping__", timeout=5)["status"] != 200


def test_stats_page_asks_for_the_password_and_listens_on_the_host_only():
    password = lab_vars()["infra_lab_stats_password"]
    assert request("http://127.0.0.1:8404/stats")["status"] == 401
    auth = "Basic " + base64.b64encode(("admin:%s" % password).encode()).decode()
    assert request("http://127.0.0.1:8404/stats", headers={"Authorization": auth})["status"] == 200
    wrong = "Basic " + base64.b64encode(b"admin:wrong").decode()
    assert request("http://127.0.0.1:8404/stats", headers={"Authorization": wrong})["status"] == 401
    listening = host(LB).check_output("ss -Hltn")
    assert "127.0.0.1:8404" in listening and "*:8404" not in listening and "0.0.0.0:8404" not in listening


def test_a_connect_service_without_sticky_sessions_is_refused(tmp_path):
    returncode, output = run_playbook(tmp_path, [{
        "hosts": "load_balancer", "gather_facts": False,
        "roles": [{"role": "positops.ha.load_balancer", "vars": {
            "load_balancer_stats_port": 0,
            "load_balancer_services": [{"name": "connect", "sticky": False, "servers": PRODUCT_NODES}]}}]}])
    assert returncode != 0, output
    assert "service connect sets sticky: false, but Posit Connect needs cookie-based sticky sessions" in output
    assert "changed=0" in output


def test_drain_has_a_deadline_and_reports_the_sessions_cut(tmp_path, all_servers_back):
    node1 = PRODUCT_NODES[0]
    # A slow download stays open on node1 (a Workbench IDE tab or a Shiny websocket would do the same).
    request_in_background("slow", "https://127.0.0.1:3939/slow?seconds=120", timeout=150)
    time.sleep(1.5)
    try:
        returncode, output = run_playbook(tmp_path, lb_play([entry_point(
            "server", load_balancer_server_backend="connect", load_balancer_server_state="drain",
            load_balancer_server_drain_timeout=3)]))
        assert returncode == 0, output
        assert "%s: connect/%s still had 1 session(s) at the 3 s deadline, now MAINT, 1 session(s) cut when the " \
               "node stops" % (LB, node1) in output, output
        assert server_states()[node1] == "MAINT"
        # Put back at once: the play has just seen the node healthy.
        started = time.monotonic()
        returncode, output = run_playbook(tmp_path, lb_play([entry_point(
            "server", load_balancer_server_backend="connect", load_balancer_server_state="ready",
            load_balancer_server_force_up=True)]))
        assert returncode == 0, output
        assert "%s: connect/%s back in the pool at once, now UP" % (LB, node1) in output, output
        # Leaving MAINT, HAProxy starts the check counter at `rise` ("UP 1/2", up and checked again at once) until
        # the next passed check: up either way, without waiting `rise` checks.
        assert server_states()[node1].split()[0] == "UP"
        measure("ready_at_once_playbook_seconds", round(time.monotonic() - started, 1))
    finally:
        # The session the drain left open is still there; end it (also when an assertion failed, so that the next
        # test starts from an idle server).
        haproxy_command("shutdown sessions server connect/%s" % node1)
    assert collect("slow", timeout=30)["status"] == 0


def test_drain_of_an_idle_server_ends_at_once_and_unknown_names_are_listed(tmp_path, all_servers_back):
    node1 = PRODUCT_NODES[0]
    returncode, output = run_playbook(tmp_path, lb_play([
        entry_point("server", load_balancer_server_backend="connect", load_balancer_server_state="drain",
                    load_balancer_server_drain_timeout=30),
        entry_point("status", load_balancer_status_backends=["connect"]),
        entry_point("server", load_balancer_server_backend="connect", load_balancer_server_name="node9",
                    load_balancer_server_state="maint")]))
    assert returncode != 0, output
    assert re.search(r"%s: connect/%s drained in [0-9.]+ s, now MAINT" % (LB, node1), output), output
    assert "%s connect: %s MAINT (0 sessions)" % (LB, node1) in output, output
    assert "hold off" in output
    assert "Backend 'connect' has no server 'node9'. Its servers: %s." % ", ".join(PRODUCT_NODES) in output, output


def test_server_states_survive_a_reload(all_servers_back):
    node1, node2 = PRODUCT_NODES[:2]
    haproxy_command("set server connect/%s state maint" % node2)
    haproxy_command("set server workbench/%s state drain" % node1)
    try:
        host(LB).check_output("systemctl reload haproxy")
        time.sleep(2)
        assert server_states("connect")[node2] == "MAINT"
        assert server_states("workbench")[node1] == "DRAIN"
    finally:
        haproxy_command("set server workbench/%s state ready" % node1)
    assert "server states saved" in host(LB).check_output("journalctl -u haproxy --no-pager -n 50")


# ---- The hold (docs/upgrades.md) ----------------------------------------------------------------------------------
def test_hold_keeps_a_get_until_a_server_is_back_and_refuses_a_post(tmp_path, all_servers_back):
    node1, node2 = PRODUCT_NODES[:2]
    returncode, output = run_playbook(tmp_path, lb_play([entry_point(
        "hold", load_balancer_hold_state="on", load_balancer_hold_backends=["connect"],
        load_balancer_hold_expires=600)]))
    assert returncode == 0, output
    assert re.match(r"0x[0-9a-f]+ connect \d+$", hold_map()), hold_map()
    haproxy_commands("set server connect/%s state maint" % node1, "set server connect/%s state maint" % node2)
    request_in_background("held", "https://127.0.0.1:3939/echo")
    request_in_background("held-head", "https://127.0.0.1:3939/echo", method="HEAD")
    # Not safe to replay: 503 with Retry-After at once.
    post = request("https://127.0.0.1:3939/echo", method="POST")
    assert post["status"] == 503 and post["headers"]["retry-after"] == "10", post
    assert "is being upgraded" in post["body"] and post["elapsed"] < 1.0, post
    wait_until_waiting(2)
    time.sleep(2)
    ready_at = haproxy_commands("set server connect/%s health up" % node1, "set server connect/%s state ready" % node1)
    held, head = collect("held"), collect("held-head")
    assert held["status"] == 200 and json.loads(held["body"])["node"] == host(node1).check_output("hostname"), held
    assert head["status"] == 200, head
    # Both were waiting when the node came back, and were answered right after.
    released_after = round(held["ended"] - ready_at, 3)
    assert held["started"] < ready_at < held["ended"] and released_after < 1.0, (held, ready_at)
    assert head["started"] < ready_at < head["ended"], (head, ready_at)
    measure("hold_get_held_seconds", held["elapsed"])
    measure("hold_release_after_ready_seconds", released_after)
    measure("hold_post_refused_seconds", post["elapsed"])
    returncode, output = run_playbook(tmp_path, lb_play([entry_point("hold", load_balancer_hold_state="off")]))
    assert returncode == 0, output
    assert hold_map() == ""


def test_hold_runs_out_with_503_and_retry_after(all_servers_back):
    node1, node2 = PRODUCT_NODES[:2]
    haproxy_commands("add map /etc/haproxy/positops-hold.map connect %d" % (time.time() + 600),
                     "set server connect/%s state maint" % node1, "set server connect/%s state maint" % node2)
    answer = request("https://127.0.0.1:3939/echo", timeout=30)
    assert answer["status"] == 503 and answer["headers"]["retry-after"] == "10", answer
    assert "no node came back within 8 seconds" in answer["body"]
    assert 8 <= answer["elapsed"] < 10, answer
    measure("hold_timeout_seconds", answer["elapsed"])


def test_without_the_hold_every_server_down_gives_503_at_once(all_servers_back):
    node1, node2 = PRODUCT_NODES[:2]
    assert hold_map() == ""
    # Every node stopped by hand (here: out of the pool by hand): no hold, HAProxy's own 503 at once.
    haproxy_commands("set server connect/%s state maint" % node1, "set server connect/%s state maint" % node2)
    answer = request("https://127.0.0.1:3939/echo")
    assert answer["status"] == 503 and answer["elapsed"] < 1.0 and "retry-after" not in answer["headers"], answer
    measure("no_hold_503_seconds", answer["elapsed"])


def test_a_switch_runs_out_by_itself_and_a_reload_turns_it_off(all_servers_back):
    node1, node2 = PRODUCT_NODES[:2]
    haproxy_commands("add map /etc/haproxy/positops-hold.map connect %d" % (time.time() + 2),
                     "set server connect/%s state maint" % node1, "set server connect/%s state maint" % node2)
    time.sleep(3)
    answer = request("https://127.0.0.1:3939/echo")
    assert answer["status"] == 503 and answer["elapsed"] < 1.0, answer
    haproxy_commands("set map /etc/haproxy/positops-hold.map connect %d" % (time.time() + 600))
    host(LB).check_output("systemctl reload haproxy")
    time.sleep(2)
    assert hold_map() == ""
    # The maintenance states came back from the state file, the switch did not.
    assert server_states()[node1] == "MAINT"
    answer = request("https://127.0.0.1:3939/echo")
    assert answer["status"] == 503 and answer["elapsed"] < 1.0, answer


def test_hold_lets_sticky_requests_reach_a_draining_server(all_servers_back):
    node1, node2 = PRODUCT_NODES[:2]
    haproxy_commands("add map /etc/haproxy/positops-hold.map connect %d" % (time.time() + 600),
                     "set server connect/%s state drain" % node1, "set server connect/%s state maint" % node2)
    # A user with a session on node1 still reaches it while it drains; a new visitor is held.
    sticky = request("https://127.0.0.1:3939/echo", headers={"Cookie": "CONNECT_NODE=%s" % node1})
    assert sticky["status"] == 200 and sticky["elapsed"] < 1.0, sticky
    request_in_background("new", "https://127.0.0.1:3939/echo")
    wait_until_waiting(1)
    time.sleep(1)
    ready_at = haproxy_commands("set server connect/%s state ready" % node1)
    new = collect("new")
    assert new["status"] == 200 and new["started"] < ready_at < new["ended"], (new, ready_at)



def test_hold_admits_a_listed_server_at_its_first_healthy_answer(tmp_path, all_servers_back):
    """The rolling upgrade's first Connect node: not admitted while it answers from before, admitted by HAProxy
    itself at its first 200 after its stop (no runtime API call), and the held request answered there. Switched
    off, nothing is admitted."""
    node1, node2 = PRODUCT_NODES[:2]
    fake = "systemd-run --unit=infra-fake-3939 /usr/local/bin/infra-fake-product 3939"
    try:
        returncode, output = run_playbook(tmp_path, lb_play([entry_point(
            "hold", load_balancer_hold_state="on", load_balancer_hold_backends=["connect"],
            load_balancer_hold_admit=[node1], load_balancer_hold_expires=600)]))
        assert returncode == 0, output
        assert re.match(r"0x[0-9a-f]+ connect \d+:%s$" % re.escape(node1), hold_map()), hold_map()
        haproxy_commands("set server connect/%s state maint" % node1, "set server connect/%s state maint" % node2)
        request_in_background("admitted", "https://127.0.0.1:3939/echo")
        wait_until_waiting(1)
        time.sleep(0.6)
        # Healthy all along (an old version still running): asked every 100 ms, never admitted.
        assert server_states()[node1] == "MAINT"
        host(node1).check_output("systemctl stop infra-fake-3939")
        time.sleep(0.6)
        # Stopped: refused, not admitted.
        assert server_states()[node1] == "MAINT"
        host(node1).check_output(fake)
        listening_at = float(host(LB).check_output("date +%s.%N"))
        held = collect("admitted")
        assert held["status"] == 200 and json.loads(held["body"])["node"] == host(node1).check_output("hostname"), held
        admitted_after = round(held["ended"] - listening_at, 3)
        assert held["started"] < listening_at < held["ended"] and admitted_after < 2.0, (held, listening_at)
        assert server_states()[node1].startswith("UP"), server_states()
        assert "positops hold: connect/%s answered its health check, admitted" % node1 in host(LB).check_output(
            "journalctl -u haproxy --no-pager -n 100")
        measure("hold_admitted_after_listening_seconds", admitted_after)
        # Off ends the admission: node1 stopped and started again in maintenance stays out.
        returncode, output = run_playbook(tmp_path, lb_play([entry_point("hold", load_balancer_hold_state="off")]))
        assert returncode == 0, output
        assert hold_map() == ""
        haproxy_commands("set server connect/%s state maint" % node1)
        host(node1).check_output("systemctl stop infra-fake-3939")
        time.sleep(0.6)
        host(node1).check_output(fake)
        time.sleep(1)
        assert server_states()[node1] == "MAINT"
    finally:
        host(node1).run("systemctl is-active --quiet infra-fake-3939 || %s" % fake)


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
