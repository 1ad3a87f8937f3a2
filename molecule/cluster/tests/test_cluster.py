"""The checklist items of each product's HA documentation, proven on every node of its converged cluster."""

import json
import uuid

import pytest

from conftest import RUNNER, DB, LB, config_without_node_keys, host, http, lab_accounts, products, sha256_of


def test_the_cluster_has_two_nodes(product):
    assert len(product.nodes) == 2, product.nodes


def test_same_uid_and_gid_on_every_node(product):
    user_name, group_name = product.spec["account"]
    wanted = lab_accounts()[user_name]
    seen = {}
    for node in product.nodes:
        user = host(node).user(user_name)
        assert user.exists, "%s: user %s missing" % (node, user_name)
        seen[node] = (user.uid, user.gid, host(node).group(group_name).gid)
    assert set(seen.values()) == {(wanted["uid"], wanted["gid"], wanted["gid"])}, seen


def test_same_version_on_every_node(product):
    package = {"package_manager": "rstudio-pm", "connect": "rstudio-connect",
               "workbench": "rstudio-workbench"}[product.name]
    versions = {node: host(node).package(package).version for node in product.nodes}
    assert len(set(versions.values())) == 1, versions


def test_same_configuration_checksum_except_per_node_keys(product):
    checksums = {node: config_without_node_keys(node, product.spec) for node in product.nodes}
    assert len(set(checksums.values())) == 1, checksums


def test_per_node_keys_really_differ_where_documented(product):
    if product.name == "workbench":
        names = {host(node).check_output("grep ^www-host-name= /etc/rstudio/load-balancer") for node in product.nodes}
        assert len(names) == len(product.nodes), names
        for node in product.nodes:
            assert host(node).file("/etc/rstudio/rserver.conf").contains("^load-balancing-enabled=1$")
            assert host(node).file("/etc/rstudio/rserver.conf").contains("^server-shared-storage-path=")
            assert host(node).file("/etc/rstudio/database.conf").contains("^provider=postgresql$")
            assert host(node).file("/etc/rstudio/database.conf").mode == 0o600
            assert host(node).file("/etc/rstudio/file-locks").contains("^lock-type=linkbased$")
    elif product.name == "package_manager":
        names = {host(node).check_output("grep -i '^HostName' /etc/rstudio-pm/rstudio-pm.gcfg")
                 for node in product.nodes}
        assert len(names) == len(product.nodes), names
    else:
        for node in product.nodes:
            assert host(node).file("/etc/rstudio-connect/rstudio-connect.gcfg").contains("ScheduleConcurrency = 2")


# Connect has no key file to share: its secret key lives on the shared storage.
@pytest.mark.parametrize("product, path", [(product, path) for product in products() for path in product.spec["keys"]],
                         ids=str)
def test_shared_key_is_0600_and_identical(product, path):
    fingerprints = {}
    for node in product.nodes:
        key = host(node).file(path)
        assert key.exists, "%s: %s missing" % (node, path)
        assert key.mode == 0o600, "%s: %s has mode %o" % (node, path, key.mode)
        fingerprints[node] = sha256_of(node, path)
    assert len(set(fingerprints.values())) == 1, fingerprints


def test_shared_storage_marker_is_visible_on_every_node(product):
    marker = "%s/.verify-%s" % (product.spec["shared_dir"], uuid.uuid4().hex)
    first, others = product.nodes[0], product.nodes[1:]
    host(first).check_output("echo shared > %s", marker)
    try:
        for node in others:
            assert host(node).file(marker).content_string.strip() == "shared", node
    finally:
        host(first).run("rm -f %s", marker)


def test_services_are_healthy_on_every_node(product):
    spec = product.spec
    for node in product.nodes:
        assert host(node).service(spec["service"]).is_running, node
        assert host(node).service(spec["service"]).is_enabled, node
        status = http(node, "http://127.0.0.1:%s%s" % (spec["port"], spec["health"]))[0]
        assert status == 200, (node, status)


def test_load_balancer_sees_every_node_up_and_serves(product):
    lb = host(LB)
    script = ("import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect('/run/haproxy/admin.sock'); "
              "s.sendall(sys.argv[1].encode()+b'\\n'); print(b''.join(iter(lambda: s.recv(65536), b'')).decode())")
    csv = lb.check_output("python3 -c %s %s", script, "show stat")
    rows = [line.split(",") for line in csv.splitlines() if line.startswith(product.name + ",")]
    states = {row[1]: row[17] for row in rows if row[1] not in ("FRONTEND", "BACKEND")}
    assert states == {node: "UP" for node in product.nodes}, states
    assert http(LB, "http://127.0.0.1:%s%s" % (product.spec["port"], product.spec["health"]))[0] == 200


# Package Manager needs no sticky sessions.
@pytest.mark.parametrize("product", products(having="sticky_cookie"), ids=str)
def test_sticky_cookie_is_set_and_keeps_the_client_on_its_node(product):
    spec = product.spec
    url = "http://127.0.0.1:%s%s" % (spec["port"], spec["health"])
    headers = http(LB, url)[1]
    cookie = headers.get("set-cookie", "")
    assert cookie.lower().startswith(spec["sticky_cookie"].lower() + "="), headers
    node = cookie.split("=", 1)[1].split(";", 1)[0]
    assert node in product.nodes
    # With the cookie, the balancer sends the client back to that node: no new cookie is inserted.
    again = http(LB, url, headers={"Cookie": "%s=%s" % (spec["sticky_cookie"], node)})[1]
    assert "set-cookie" not in again, again


@pytest.mark.parametrize("product", products(having="lists_nodes"), ids=str)
def test_every_node_is_listed_online_by_cluster_node_info(product):
    result = RUNNER.run_module(product.nodes[0], "positops.ha.cluster_node_info", "product=%s" % product.name)
    listed = {item["name"]: item["mode"] for item in result["nodes"]}
    # Nodes register under Server.HostName / www-host-name, which the roles set to the inventory name.
    assert listed == {node: "online" for node in product.nodes}, json.dumps(result["nodes"])


def test_database_serves_the_product(product):
    databases = host(DB).check_output("runuser -u postgres -- psql -Atc 'select datname from pg_database'")
    assert product.spec["database"] in databases.split()
