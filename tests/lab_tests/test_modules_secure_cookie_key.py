"""secure_cookie_key inside Workbench emulator nodes (PostgreSQL-backed cluster), through Ansible.

A key generated on the first node and installed on the second lets both come Online; re-runs change nothing;
a node holding another key is refused without force and rotated with it (backup kept, mode 0600); a wrong mode
or owner is repaired; check mode changes nothing; and no key material ever shows in the module output, in
--diff or in -vvv logs (the last test greps every output of this module for every key used).

The tests of this module share one lab and run in file order.
"""

import hashlib

import pytest

from tests.lab_tests.test_modules_cluster import AnsibleRunner
from tests.lab.lab import deb_file

WB_VERSION = "2023.12.0+369.pro3"
KEY_PATH = "/etc/rstudio/secure-cookie-key"
ROTATED_KEY = "8d3f1a6c9e2b4d7f0a5c8e1b3d6f9a2c4e7b0d3f6a9c2e5b8d1f4a7c0e3b6d9f"
FOREIGN_KEY = "2c7e4a9f1b6d3e8a5c0f7b2d9e4a1c6f3b8d5e0a7c2f9b4d1e6a3c8f5b0d7e2a"
KEYS_SEEN = set()  # every key material this module put on a node; none may appear in any output


def fingerprint(text):
    return hashlib.sha256(text.strip().encode()).hexdigest()




def key_of(node):
    key = node.read_file(KEY_PATH).strip()
    KEYS_SEEN.add(key)
    return key


@pytest.fixture(scope="module")
def ansible(lab, tmp_path_factory):
    return AnsibleRunner(lab, tmp_path_factory.mktemp("ansible"))


@pytest.fixture(scope="module")
def nodes(lab, debs):
    pkgs = lab.start_package_server()
    db = lab.start_postgres()
    lab.create_database("rstudio", "rstudio", "wb-secret")
    shared = lab.volume("shared")
    found = {}
    for name in ("rsw1", "rsw2"):
        node = found[name] = lab.start_node(name, volumes={shared: "/srv/shared"})
        node.install_package(pkgs, deb_file("rstudio-workbench", WB_VERSION))
        node.exec("systemctl stop rstudio-server && rm -f %s" % KEY_PATH)
        node.write_file("/etc/rstudio/rserver.conf", "www-port=8787\nserver-shared-storage-path=/srv/shared/rstudio\n"
                                                     "load-balancing-enabled=1\n")
        node.write_file("/etc/rstudio/database.conf", "provider=postgresql\nhost=%s\nport=5432\ndatabase=rstudio\n"
                                                      "username=rstudio\npassword=wb-secret\n" % db.name, mode="0600")
        node.write_file("/etc/rstudio/load-balancer", "www-host-name=%s\n" % name)
        node.write_file("/etc/default/rstudio-server", "RSTUDIO_LB_CHECKIN_SECONDS=2\n")
        # The operator's step: Workbench does not create its shared storage path as root.
        node.exec("install -d -o rstudio-server -g rstudio-server /srv/shared/rstudio")
    return found


def test_generate_on_the_first_node_and_share_it(nodes, ansible):
    rsw1, rsw2 = nodes["rsw1"], nodes["rsw2"]
    generated = ansible.run("rsw1", "secure_cookie_key", {})
    assert not generated["failed"], generated
    assert generated["changed"] and generated["generated"] and generated["mode"] == "0600"
    key = key_of(rsw1)
    assert len(key) == 64 and generated["fingerprint"] == fingerprint(key)
    assert rsw1.output("stat -c '%a %U' " + KEY_PATH) == "600 root"

    shared = ansible.run("rsw2", "secure_cookie_key", {"content": key, "owner": "root", "group": "root"})
    assert not shared["failed"], shared
    assert shared["changed"] and not shared["generated"] and shared["fingerprint"] == generated["fingerprint"]
    assert key_of(rsw2) == key

    for node in (rsw1, rsw2):
        node.exec("systemctl start rstudio-server")
    rsw1.wait_until("rstudio-server list-nodes | grep -c ' Online ' | grep -qx 2", timeout=60)
    assert rsw1.workbench_statuses() == {"rsw1": "Online", "rsw2": "Online"}


def test_second_runs_change_nothing(nodes, ansible):
    key = key_of(nodes["rsw1"])
    assert ansible.run("rsw1", "secure_cookie_key", {})["changed"] is False
    again = ansible.run("rsw2", "secure_cookie_key", {"content": key, "owner": "root", "group": "root"})
    assert not again["failed"] and again["changed"] is False


def test_a_node_with_another_key_is_refused_without_force(nodes, ansible):
    rsw2 = nodes["rsw2"]
    cluster_key = key_of(nodes["rsw1"])
    rsw2.write_file(KEY_PATH, FOREIGN_KEY + "\n", mode="0600")
    KEYS_SEEN.add(FOREIGN_KEY)
    result = ansible.run("rsw2", "secure_cookie_key", {"content": cluster_key})
    assert result["failed"]
    assert "on this node differs from the cluster's key" in result["msg"]
    assert "this node: %s, cluster: %s" % (fingerprint(FOREIGN_KEY), fingerprint(cluster_key)) in result["msg"]
    assert key_of(rsw2) == FOREIGN_KEY
    # Put the cluster's key back (the node was never restarted with the foreign one).
    fixed = ansible.run("rsw2", "secure_cookie_key", {"content": cluster_key, "force": True})
    assert not fixed["failed"] and fixed["replaced"] and key_of(rsw2) == cluster_key


def test_check_mode_rotation_changes_nothing(nodes, ansible):
    before = key_of(nodes["rsw1"])
    result = ansible.run("rsw1", "secure_cookie_key", {"content": ROTATED_KEY, "force": True, "backup": True},
                         check=True, diff=True)
    assert not result["failed"] and result["changed"] and result["replaced"]
    assert "fingerprint: %s" % fingerprint(ROTATED_KEY) in result["diff"]["after"]
    assert key_of(nodes["rsw1"]) == before
    assert nodes["rsw1"].output("ls /etc/rstudio | grep -c secure-cookie-key") == "1"


def test_rotation_on_every_node_with_backup(nodes, ansible):
    old = key_of(nodes["rsw1"])
    for name in ("rsw1", "rsw2"):
        result = ansible.run(name, "secure_cookie_key", {"content": ROTATED_KEY, "force": True, "backup": True},
                             diff=True)
        assert not result["failed"], result
        assert result["changed"] and result["replaced"] and result["fingerprint"] == fingerprint(ROTATED_KEY)
        node = nodes[name]
        assert key_of(node) == ROTATED_KEY
        assert node.output("stat -c %a " + KEY_PATH) == "600"
        assert node.output("stat -c %a " + result["backup_file"]) == "600"
        assert node.read_file(result["backup_file"]).strip() == old
        assert "fingerprint: %s" % fingerprint(old) in result["diff"]["before"]
        again = ansible.run(name, "secure_cookie_key", {"content": ROTATED_KEY, "force": True, "backup": True})
        assert again["changed"] is False and "backup_file" not in again
    # The first node to come online defines the cluster's key hash: stop every node, then start them (the
    # documented way to change the cluster's key).
    for name in ("rsw1", "rsw2"):
        nodes[name].exec("systemctl stop rstudio-server")
    for name in ("rsw1", "rsw2"):
        nodes[name].exec("systemctl start rstudio-server")
    nodes["rsw1"].wait_until("rstudio-server list-nodes | grep -c ' Online ' | grep -qx 2", timeout=60)


def test_wrong_mode_and_owner_are_repaired(nodes, ansible):
    rsw2 = nodes["rsw2"]
    rsw2.exec("chmod 0644 %s && chown rstudio-server:rstudio-server %s" % (KEY_PATH, KEY_PATH))
    result = ansible.run("rsw2", "secure_cookie_key", {"content": ROTATED_KEY, "owner": "root", "group": "root"})
    assert not result["failed"] and result["changed"] and not result["replaced"]
    assert rsw2.output("stat -c '%a %U %G' " + KEY_PATH) == "600 root root"
    assert key_of(rsw2) == ROTATED_KEY
    owned = ansible.run("rsw2", "secure_cookie_key", {"content": ROTATED_KEY, "owner": "rstudio-server",
                                                      "group": "rstudio-server"})
    assert not owned["failed"] and owned["changed"] and owned["owner"] == "rstudio-server"
    assert rsw2.output("stat -c '%a %U %G' " + KEY_PATH) == "600 rstudio-server rstudio-server"
    assert ansible.run("rsw2", "secure_cookie_key", {"content": ROTATED_KEY, "owner": "rstudio-server",
                                                     "group": "rstudio-server"})["changed"] is False
    ansible.run("rsw2", "secure_cookie_key", {"content": ROTATED_KEY, "owner": "root", "group": "root"})


def test_open_mode_and_weak_key_are_refused(nodes, ansible):
    result = ansible.run("rsw1", "secure_cookie_key", {"content": ROTATED_KEY, "mode": "0640"})
    assert result["failed"] and "gives the group or others access" in result["msg"]
    result = ansible.run("rsw1", "secure_cookie_key", {"content": "0123456789abcdef", "force": True})
    assert result["failed"] and "is weak" in result["msg"]
    assert key_of(nodes["rsw1"]) == ROTATED_KEY
    assert nodes["rsw1"].output("stat -c %a " + KEY_PATH) == "600"


def test_package_manager_key_path(nodes, ansible):
    rsw1 = nodes["rsw1"]
    rsw1.exec("mkdir -p /var/lib/rstudio-pm")
    path = "/var/lib/rstudio-pm/rstudio-pm.key"
    result = ansible.run("rsw1", "secure_cookie_key", {"path": path, "owner": "nobody", "min_bits": 512})
    assert not result["failed"] and result["generated"] and result["key_file"] == path
    material = rsw1.read_file(path).strip()
    KEYS_SEEN.add(material)
    assert len(material) == 128 and rsw1.output("stat -c '%a %U' " + path) == "600 nobody"
    absent = ansible.run("rsw1", "secure_cookie_key", {"path": path, "state": "absent", "backup": True})
    assert not absent["failed"] and absent["changed"] and rsw1.exec("test -e " + path, check=False).returncode == 1
    assert ansible.run("rsw1", "secure_cookie_key", {"path": path, "state": "absent"})["changed"] is False


def test_no_key_material_in_any_output_or_vvv_log(nodes, ansible):
    key = key_of(nodes["rsw1"])
    rc, verbose = ansible.run_verbose("rsw2", "secure_cookie_key", {"content": key}, diff=True)
    assert rc == 0 and "ESTABLISH DOCKER CONNECTION" in verbose and '"changed": false' in verbose
    rc, verbose_failed = ansible.run_verbose("rsw2", "secure_cookie_key", {"content": FOREIGN_KEY})
    assert rc != 0 and "differs from the cluster's key" in verbose_failed
    rc, verbose_generated = ansible.run_verbose("rsw1", "secure_cookie_key", {"path": "/root/generated.key"},
                                                diff=True)
    assert rc == 0
    KEYS_SEEN.add(nodes["rsw1"].read_file("/root/generated.key").strip())
    assert len(ansible.outputs) >= 20
    for output in ansible.outputs:
        for secret in KEYS_SEEN:
            assert secret not in output
