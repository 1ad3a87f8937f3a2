"""The checklist items of the product's HA documentation, proven on every node of the converged cluster."""

import json
import uuid

import pytest

from conftest import RUNNER, DB, LB, NODES, PRODUCT, SPEC, config_without_node_keys, host, lab_accounts, sha256_of


def test_the_cluster_has_three_nodes():
    assert len(NODES) == 3, NODES


def test_same_uid_and_gid_on_every_node():
    user_name, group_name = SPEC["account"]
    wanted = lab_accounts()[user_name]
    seen = {}
    for node in NODES:
        user = host(node).user(user_name)
        assert user.exists, "%s: user %s missing" % (node, user_name)
        seen[node] = (user.uid, user.gid, host(node).group(group_name).gid)
    assert set(seen.values()) == {(wanted["uid"], wanted["gid"], wanted["gid"])}, seen


def test_same_version_on_every_node():
    package = {"package_manager": "rstudio-pm", "connect": "rstudio-connect",
               "workbench": "rstudio-workbench"}[PRODUCT]
    versions = {node: host(node).package(package).version for node in NODES}
    assert len(set(versions.values())) == 1, versions


def test_same_configuration_checksum_except_per_node_keys():
    checksums = {node: config_without_node_keys(node) for node in NODES}
    assert len(set(checksums.values())) == 1, checksums


def test_per_node_keys_really_differ_where_documented():
    if PRODUCT == "workbench":
        names = {host(node).check_output("grep ^www-host-name= /etc/rstudio/load-balancer") for node in NODES}
        assert len(names) == 3, names
        for node in NODES:
            assert host(node).file("/etc/rstudio/rserver.conf").contains("^load-balancing-enabled=1$")
            assert host(node).file("/etc/rstudio/rserver.conf").contains("^server-shared-storage-path=")
            assert host(node).file("/etc/rstudio/database.conf").contains("^provider=postgresql$")
            assert host(node).file("/etc/rstudio/database.conf").mode == 0o600
            assert host(node).file("/etc/rstudio/file-locks").contains("^lock-type=linkbased$")
    elif PRODUCT == "package_manager":
        names = {host(node).check_output("grep -i '^HostName' /etc/rstudio-pm/rstudio-pm.gcfg") for node in NODES}
        assert len(names) == 3, names
    else:
        for node in NODES:
            assert host(node).file("/etc/rstudio-connect/rstudio-connect.gcfg").contains("ScheduleConcurrency = 2")


@pytest.mark.skipif(not SPEC["keys"], reason="Connect has no key file to share (its secret key is on the share)")
@pytest.mark.parametrize("path", SPEC["keys"])
def test_shared_key_is_0600_and_identical(path):
    fingerprints = {}
    for node in NODES:
        key = host(node).file(path)
        assert key.exists, "%s: %s missing" % (node, path)
        assert key.mode == 0o600, "%s: %s has mode %o" % (node, path, key.mode)
        fingerprints[node] = sha256_of(node, path)
    assert len(set(fingerprints.values())) == 1, fingerprints


def test_shared_storage_marker_is_visible_on_every_node():
    marker = "%s/.verify-%s" % (SPEC["shared_dir"], uuid.uuid4().hex)
    host(NODES[0]).check_output("echo shared > %s", marker)
    try:
        for node in NODES[1:]:
            assert host(node).file(marker).content_string.strip() == "shared", node
    finally:
        host(NODES[0]).run("rm -f %s", marker)


def test_services_are_healthy_on_every_node():
    for node in NODES:
        assert host(node).service(SPEC["service"]).is_running, node
        assert host(node).service(SPEC["service"]).is_enabled, node
        status = host(node).check_output("curl -s -o /dev/null -w '%%{http_code}' http://127.0.0.1:%s%s",
                                         str(SPEC["port"]), SPEC["health"])
        assert status == "200", (node, status)


def test_load_balancer_sees_every_node_up_and_serves():
    lb = host(LB)
    script = ("import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect('/run/haproxy/admin.sock'); "
              "s.sendall(sys.argv[1].encode()+b'\\n'); print(b''.join(iter(lambda: s.recv(65536), b'')).decode())")
    csv = lb.check_output("python3 -c %s %s", script, "show stat")
    rows = [line.split(",") for line in csv.splitlines() if line.startswith(PRODUCT + ",")]
    states = {row[1]: row[17] for row in rows if row[1] not in ("FRONTEND", "BACKEND")}
    assert states == {node: "UP" for node in NODES}, states
    status = lb.check_output("curl -s -o /dev/null -w '%%{http_code}' http://127.0.0.1:%s%s", str(SPEC["port"]),
                             SPEC["health"])
    assert status == "200"


@pytest.mark.skipif(SPEC["sticky_cookie"] is None, reason="Package Manager needs no sticky sessions")
def test_sticky_cookie_is_set_and_keeps_the_client_on_its_node():
    lb = host(LB)
    headers = lb.check_output("curl -s -D - -o /dev/null http://127.0.0.1:%s%s", str(SPEC["port"]), SPEC["health"])
    cookie = [line for line in headers.splitlines() if line.lower().startswith("set-cookie: %s=" % SPEC["sticky_cookie"].lower())]
    assert cookie, headers
    node = cookie[0].split("=", 1)[1].split(";", 1)[0]
    assert node in NODES
    # With the cookie, the balancer sends the client back to that node: no new cookie is inserted.
    again = lb.check_output("curl -s -D - -o /dev/null -b %s=%s http://127.0.0.1:%s%s", SPEC["sticky_cookie"], node,
                            str(SPEC["port"]), SPEC["health"])
    assert "set-cookie: %s=" % SPEC["sticky_cookie"].lower() not in again.lower()


@pytest.mark.skipif(PRODUCT == "connect", reason="Connect has no command that lists nodes (cluster_node_info refuses it)")
def test_every_node_is_listed_online_by_cluster_node_info():
    result = RUNNER.run_module(NODES[0], "positops.ha.cluster_node_info", "product=%s" % PRODUCT)
    listed = {item["name"]: item["mode"] for item in result["nodes"]}
    # Nodes register under Server.HostName / www-host-name, which the roles set to the inventory name.
    assert listed == {node: "online" for node in NODES}, json.dumps(result["nodes"])


def test_database_serves_the_product():
    databases = host(DB).check_output("runuser -u postgres -- psql -Atc 'select datname from pg_database'")
    wanted = {"package_manager": "rstudio_pm", "connect": "rstudio_connect", "workbench": "rstudio_workbench"}
    assert wanted[PRODUCT] in databases.split()
