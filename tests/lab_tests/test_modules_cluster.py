"""cluster_node and cluster_node_info against emulator nodes installed from their .deb, backed by PostgreSQL.

Every module runs through Ansible itself (``ansible -m positops.ha.<module>`` over the Docker connection), on
the node whose CLI it drives. Package Manager: two nodes, offline/online, online returning at the node's first
healthy answer (health_url), check mode, idempotence, an unknown node, and a timeout caused by a stopped node.
Workbench: two nodes, local offline/online, the refusal to change another node, an unknown node, delete-node of a
stopped node, and a timeout caused by a CLI whose ``online`` does nothing (through ``cli_path``).

The tests of this module share one lab and run in file order.
"""

import json
import os
import subprocess

import pytest

from tests.lab.cluster import ensure_collection_link
from tests.lab.lab import REPO, deb_file

VENV_BIN = REPO / ".venv" / "bin"
PM_VERSION = "2023.12.0-13"
WB_VERSION = "2023.12.0+369.pro3"
PM_TUNING = "POSITEMU_POLL_SECONDS=1\nPOSITEMU_HEARTBEAT_SECONDS=1\nPOSITEMU_DRAIN_SECONDS=2\n"
WB_TUNING = "RSTUDIO_LB_CHECKIN_SECONDS=2\nRSTUDIO_LB_MISSED_CHECKIN_SECONDS=600\n"
WB_KEY = "5b0e8c4f2a9d4e1b8c7a6f3d2e1c0b9a8f7e6d5c4b3a29181716151413121110"
RSPM = "/opt/rstudio-pm/bin/rspm"


class AnsibleRunner:
    """Runs one module on one lab node with ``ansible`` (JSON callback) and keeps every output it saw."""

    def __init__(self, lab, workdir):
        self.lab = lab
        self.workdir = workdir
        self.outputs = []
        self.inventory = workdir / "inventory.ini"
        self.hosts = set()

    def _write_inventory(self, host):
        self.hosts.add(host)
        lines = ["[lab]"] + ["%s ansible_host=%s" % (name, self.lab.container_name(name)) for name in sorted(self.hosts)]
        lines += ["[lab:vars]", "ansible_connection=community.docker.docker",
                  "ansible_python_interpreter=/usr/bin/python3"]
        self.inventory.write_text("\n".join(lines) + "\n")

    def env(self, json_output=True):
        env = dict(os.environ)
        env.update(ANSIBLE_COLLECTIONS_PATH=str(ensure_collection_link()), ANSIBLE_HOST_KEY_CHECKING="False",
                   ANSIBLE_RETRY_FILES_ENABLED="False", ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
                   ANSIBLE_LOCALHOST_WARNING="False", ANSIBLE_DEPRECATION_WARNINGS="False",
                   PATH="%s:%s" % (VENV_BIN, env.get("PATH", "")))
        if json_output:
            env.update(ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="json")
        return env

    def command(self, host, module, args, check=False, diff=False, verbose=False):
        self._write_inventory(host)
        command = [str(VENV_BIN / "ansible"), host, "-i", str(self.inventory), "-m", "positops.ha.%s" % module]
        if args:  # an empty "{}" would be taken for raw parameters
            command += ["-a", json.dumps(args)]
        if check:
            command.append("--check")
        if diff:
            command.append("--diff")
        if verbose:
            command.append("-vvv")
        return command

    def run(self, host, module, args, check=False, diff=False):
        """Return the module's result dict (``failed`` set when it failed)."""
        proc = subprocess.run(self.command(host, module, args, check, diff), capture_output=True, text=True,
                              env=self.env(), timeout=300, cwd=str(self.workdir), check=False)
        self.outputs.append(proc.stdout + proc.stderr)
        try:
            data = json.loads(proc.stdout)
            result = data["plays"][0]["tasks"][0]["hosts"][host]
        except (ValueError, KeyError, IndexError):
            raise AssertionError("ansible printed no result (rc=%s)\nstdout: %s\nstderr: %s"
                                 % (proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:]))
        result.setdefault("failed", False)
        return result

    def run_verbose(self, host, module, args, check=False, diff=False):
        """Run with -vvv and the default output; return everything Ansible printed."""
        proc = subprocess.run(self.command(host, module, args, check, diff, verbose=True), capture_output=True,
                              text=True, env=self.env(json_output=False), timeout=300, cwd=str(self.workdir),
                              check=False)
        output = proc.stdout + proc.stderr
        self.outputs.append(output)
        return proc.returncode, output


def modes(result):
    return dict((node["name"], node["mode"]) for node in result["nodes"])


def pm_listing(node):
    return dict((fields[0], fields[2]) for fields in
                (line.split() for line in node.output("%s cluster nodes" % RSPM).splitlines()) if fields)




@pytest.fixture(scope="module")
def ansible(lab, tmp_path_factory):
    return AnsibleRunner(lab, tmp_path_factory.mktemp("ansible"))


@pytest.fixture(scope="module")
def cluster(lab, debs):
    pkgs = lab.start_package_server()
    db = lab.start_postgres()
    pm_url = lab.create_database("rspm", "rspm", "pm-secret")
    lab.create_database("rstudio", "rstudio", "wb-secret")
    shared = lab.volume("shared")
    nodes = {}
    for name in ("pm1", "pm2", "rsw1", "rsw2", "rsw3"):
        nodes[name] = lab.start_node(name, volumes={shared: "/srv/shared"})
    for name in ("pm1", "pm2"):
        node = nodes[name]
        node.install_package(pkgs, deb_file("rstudio-pm", PM_VERSION))
        node.write_file("/etc/rstudio-pm/rstudio-pm.gcfg",
                        "[Server]\nHostName = %s\n[HTTP]\nListen = :4242\n"
                        "[Database]\nProvider = postgres\n[Postgres]\nURL = %s\n" % (name, pm_url))
        node.write_file("/etc/default/rstudio-pm", PM_TUNING)
        node.exec("systemctl restart rstudio-pm")
    for name in ("rsw1", "rsw2", "rsw3"):
        node = nodes[name]
        node.install_package(pkgs, deb_file("rstudio-workbench", WB_VERSION))
        node.write_file("/etc/rstudio/rserver.conf", "www-port=8787\nserver-shared-storage-path=/srv/shared/rstudio\n"
                                                     "load-balancing-enabled=1\n")
        node.write_file("/etc/rstudio/database.conf", "provider=postgresql\nhost=%s\nport=5432\ndatabase=rstudio\n"
                                                      "username=rstudio\npassword=wb-secret\n" % db.name, mode="0600")
        node.write_file("/etc/rstudio/load-balancer", "www-host-name=%s\nbalancer=sessions\n" % name)
        node.write_file("/etc/rstudio/secure-cookie-key", WB_KEY + "\n", mode="0600")
        node.write_file("/etc/default/rstudio-server", WB_TUNING)
        # Workbench does not create its shared storage path as root: the operator makes it, owned by the service
        # account (the package created it with the same UID on every node of this lab).
        node.exec("install -d -o rstudio-server -g rstudio-server /srv/shared/rstudio")
        node.exec("rstudio-server restart")
    nodes["pm1"].wait_until("%s cluster nodes | grep -c ' online$' | grep -qx 2" % RSPM, timeout=90)
    nodes["rsw1"].wait_until("rstudio-server list-nodes | grep -c ' Online ' | grep -qx 3", timeout=90)
    return nodes


# ---- Package Manager ---------------------------------------------------------------------------------------------

def test_pm_info_lists_both_nodes(cluster, ansible):
    for host in ("pm1", "pm2"):
        result = ansible.run(host, "cluster_node_info", {"product": "package_manager"})
        assert not result["failed"], result
        assert result["changed"] is False
        assert [(n["name"], n["version"], n["mode"]) for n in result["nodes"]] == [
            ("pm1", PM_VERSION, "online"), ("pm2", PM_VERSION, "online")]
        assert result["commands"] == ["%s cluster nodes --output-format=json" % RSPM]


def test_pm_offline_then_idempotent(cluster, ansible):
    args = {"product": "package_manager", "nodes": ["pm2"], "state": "offline", "timeout": 30}
    result = ansible.run("pm1", "cluster_node", args)
    assert not result["failed"], result
    assert result["changed"] is True and result["changed_nodes"] == ["pm2"]
    assert modes(result) == {"pm2": "offline"}
    assert result["commands"][-1] == "%s cluster offline --nodes=pm2 --timeout=30 --output-format=json" % RSPM
    assert 0 < result["waited"] < 30
    assert pm_listing(cluster["pm1"]) == {"pm1": "online", "pm2": "offline"}
    # Offline mode refuses traffic, which is what takes the node out of the load balancer.
    assert cluster["pm2"].http("http://localhost:4242/__ping__")[0] == 503

    again = ansible.run("pm1", "cluster_node", args)
    assert not again["failed"] and again["changed"] is False and again["changed_nodes"] == []
    assert again["commands"] == ["%s cluster nodes --output-format=json" % RSPM]


def test_pm_check_mode_changes_nothing(cluster, ansible):
    result = ansible.run("pm2", "cluster_node", {"product": "package_manager", "nodes": ["pm1", "pm2"],
                                                 "state": "online"}, check=True)
    assert not result["failed"] and result["changed"] is True and result["changed_nodes"] == ["pm2"]
    assert result["commands"] == ["%s cluster nodes --output-format=json" % RSPM]
    assert pm_listing(cluster["pm1"]) == {"pm1": "online", "pm2": "offline"}


def test_pm_online_from_the_other_node(cluster, ansible):
    args = {"product": "package_manager", "nodes": ["pm1", "pm2"], "state": "online", "timeout": 30}
    result = ansible.run("pm2", "cluster_node", args)
    assert not result["failed"], result
    assert result["changed_nodes"] == ["pm2"] and modes(result) == {"pm1": "online", "pm2": "online"}
    assert ansible.run("pm2", "cluster_node", args)["changed"] is False
    assert pm_listing(cluster["pm2"]) == {"pm1": "online", "pm2": "online"}


def test_pm_online_with_health_url_returns_once_the_node_serves(cluster, ansible):
    cluster["pm1"].exec("%s cluster offline --nodes=pm2 --timeout=30" % RSPM)
    args = {"product": "package_manager", "nodes": ["pm2"], "state": "online", "timeout": 30,
            "health_url": "http://127.0.0.1:4242/__ping__"}
    result = ansible.run("pm2", "cluster_node", args)
    assert not result["failed"], result
    assert result["healthy"] is True and result["changed_nodes"] == ["pm2"] and modes(result) == {"pm2": "online"}
    assert result["commands"][-1] == "%s cluster online --nodes=pm2 --timeout=30 --output-format=json" % RSPM
    # It returned at the node's first healthy answer, which rspm's listing then confirms.
    assert cluster["pm2"].http("http://localhost:4242/__ping__")[0] == 200
    cluster["pm1"].wait_until("%s cluster nodes | grep -c ' online$' | grep -qx 2" % RSPM, timeout=30)

    # A URL that never answers 200 fails the task at its timeout, naming the URL.
    result = ansible.run("pm2", "cluster_node", dict(args, timeout=2, health_url="http://127.0.0.1:4242/missing"))
    assert result["failed"]
    assert ("pm2 is online in the cluster, but http://127.0.0.1:4242/missing did not answer 200 within 2s"
            in result["msg"])
    assert "last answer: HTTP 404" in result["msg"]

    refused = ansible.run("pm1", "cluster_node", dict(args, nodes=["pm1", "pm2"]))
    assert refused["failed"] and "health_url is the health URL of one node coming online" in refused["msg"]


def test_pm_unknown_node_fails_before_any_change(cluster, ansible):
    result = ansible.run("pm1", "cluster_node", {"product": "package_manager", "nodes": ["pm2", "pm9"],
                                                 "state": "offline"})
    assert result["failed"]
    assert "Unknown Package Manager node(s): pm9. Known nodes: pm1, pm2." in result["msg"]
    assert result["commands"] == ["%s cluster nodes --output-format=json" % RSPM]
    assert pm_listing(cluster["pm1"]) == {"pm1": "online", "pm2": "online"}


def test_pm_timeout_reports_each_node_state(cluster, ansible):
    # A stopped node never answers a mode change: rspm waits out the timeout.
    cluster["pm2"].exec("systemctl stop rstudio-pm")
    try:
        result = ansible.run("pm1", "cluster_node", {"product": "package_manager", "nodes": ["pm1", "pm2"],
                                                     "state": "offline", "timeout": 3})
        assert result["failed"]
        assert "Timed out after 3s waiting for node(s) to be offline" in result["msg"]
        assert "pm1 (offline)" in result["msg"] and "pm2 (online)" in result["msg"]
        assert modes(result) == {"pm1": "offline", "pm2": "online"}
        assert 3 <= result["waited"] < 20
    finally:
        cluster["pm2"].exec("systemctl start rstudio-pm")
    result = ansible.run("pm1", "cluster_node", {"product": "package_manager", "nodes": ["pm1", "pm2"],
                                                 "state": "online", "timeout": 60})
    assert not result["failed"], result
    assert modes(result) == {"pm1": "online", "pm2": "online"}


def test_connect_is_refused(cluster, ansible):
    result = ansible.run("pm1", "cluster_node_info", {"product": "connect"})
    assert result["failed"] and "Posit Connect has no command to list or change cluster nodes" in result["msg"]


# ---- Workbench ---------------------------------------------------------------------------------------------------

def test_wb_info_lists_every_node(cluster, ansible):
    result = ansible.run("rsw1", "cluster_node_info", {"product": "workbench"})
    assert not result["failed"], result
    assert [(n["id"], n["name"], n["status"], n["mode"], n["port"]) for n in result["nodes"]] == [
        (1, "rsw1", "Online", "online", 8787), (2, "rsw2", "Online", "online", 8787),
        (3, "rsw3", "Online", "online", 8787)]
    assert result["nodes"][1]["ipv4"] == cluster["rsw2"].ip()
    assert result["commands"] == ["/usr/sbin/rstudio-server list-nodes"]


def test_wb_offline_on_the_node_itself_then_idempotent(cluster, ansible):
    args = {"product": "workbench", "nodes": ["rsw2"], "state": "offline"}
    result = ansible.run("rsw2", "cluster_node", args)
    assert not result["failed"], result
    assert result["changed"] is True and result["changed_nodes"] == ["rsw2"]
    assert [(n["id"], n["status"]) for n in result["nodes"]] == [(2, "Offline")]
    assert result["commands"][1] == "/usr/sbin/rstudio-server offline"
    assert cluster["rsw1"].workbench_statuses()["rsw2"] == "Offline"
    again = ansible.run("rsw2", "cluster_node", args)
    assert not again["failed"] and again["changed"] is False
    assert again["commands"] == ["/usr/sbin/rstudio-server list-nodes"]


def test_wb_refuses_to_change_another_node(cluster, ansible):
    result = ansible.run("rsw1", "cluster_node", {"product": "workbench", "nodes": ["rsw2"], "state": "online"})
    assert result["failed"]
    assert "acts only on the node it runs on" in result["msg"] and "delegate_to: rsw2" in result["msg"]
    assert cluster["rsw1"].workbench_statuses()["rsw2"] == "Offline"


def test_wb_online_by_id_on_the_node_itself(cluster, ansible):
    result = ansible.run("rsw2", "cluster_node", {"product": "workbench", "nodes": ["2"], "state": "online"})
    assert not result["failed"], result
    assert result["changed_nodes"] == ["rsw2"] and modes(result) == {"rsw2": "online"}
    assert cluster["rsw1"].workbench_statuses()["rsw2"] == "Online"


def test_wb_unknown_node(cluster, ansible):
    result = ansible.run("rsw1", "cluster_node", {"product": "workbench", "nodes": ["rsw9"], "state": "offline"})
    assert result["failed"]
    assert "Unknown Workbench node(s): rsw9. Known nodes: rsw1 (ID 1, Online), rsw2 (ID 2, Online), " \
           "rsw3 (ID 3, Online)." in result["msg"]
    assert set(cluster["rsw1"].workbench_statuses().values()) == {"Online"}


def test_wb_timeout_when_the_node_never_comes_online(cluster, ansible):
    rsw3 = cluster["rsw3"]
    rsw3.exec("rstudio-server offline")
    # A CLI whose `online` is accepted but does nothing; list-nodes is the real one.
    rsw3.write_file("/usr/local/bin/stuck-rstudio-server",
                    "#!/bin/sh\n[ \"$1\" = online ] && exit 0\nexec /usr/sbin/rstudio-server \"$@\"\n", mode="0755")
    result = ansible.run("rsw3", "cluster_node", {"product": "workbench", "nodes": ["rsw3"], "state": "online",
                                                  "timeout": 3, "cli_path": "/usr/local/bin/stuck-rstudio-server"})
    assert result["failed"]
    assert "Timed out after 3s waiting for Workbench node(s) to be online: rsw3 (ID 3, Offline)." in result["msg"]
    assert 3 <= result["waited"] < 10
    polls = result["commands"].count("/usr/local/bin/stuck-rstudio-server list-nodes")
    # Polled again after the request, and no busier than about once a second. Fewer polls fit in 3 s under load,
    # where each `list-nodes` takes longer: the CI run with all three Molecule clusters beside it saw 2.
    assert 2 <= polls <= result["waited"] + 3


def test_wb_delete_refused_while_online_then_deleted_when_stopped(cluster, ansible):
    args = {"product": "workbench", "nodes": ["rsw3"], "state": "absent"}
    cluster["rsw3"].exec("rstudio-server online")
    refused = ansible.run("rsw1", "cluster_node", args)
    assert refused["failed"] and "still serving: rsw3 (ID 3, Online)" in refused["msg"]

    cluster["rsw3"].exec("rstudio-server stop")
    cluster["rsw1"].wait_until("rstudio-server list-nodes | grep -q '^3 .* Offline'", timeout=30)
    checked = ansible.run("rsw1", "cluster_node", args, check=True)
    assert not checked["failed"] and checked["changed"] is True
    assert "rsw3" in cluster["rsw1"].workbench_statuses()

    result = ansible.run("rsw1", "cluster_node", args)
    assert not result["failed"], result
    assert result["changed"] is True and result["changed_nodes"] == ["rsw3"] and result["nodes"] == []
    assert "/usr/sbin/rstudio-server delete-node 3" in result["commands"]
    assert "rsw3" not in cluster["rsw1"].workbench_statuses()
    again = ansible.run("rsw1", "cluster_node", args)
    assert not again["failed"] and again["changed"] is False
