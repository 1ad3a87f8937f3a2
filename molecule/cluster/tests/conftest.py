"""Shared helpers of the cluster scenario's verifiers (testinfra, run by Molecule's verify step)."""

import hashlib
import os
import subprocess
import sys

import pytest
import testinfra.utils.ansible_runner
import yaml

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
LB = RUNNER.get_hosts("load_balancer")[0]
DB = RUNNER.get_hosts("database")[0]
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, REPO)
from tests.lab import probe  # noqa: E402  pylint: disable=wrong-import-position

# What the lab inventory (inventories/lab) sets up for each product.
PRODUCTS = {
    "package_manager": {
        "database": "rstudio_pm",
        "lists_nodes": True,
        "account": ("rstudio-pm", "rstudio-pm"),
        "service": "rstudio-pm",
        "port": 4242,
        "health": "/__ping__",
        "sticky_cookie": None,
        "config_files": ["/etc/rstudio-pm/rstudio-pm.gcfg"],
        "node_keys": ["HostName"],
        "keys": ["/var/lib/rstudio-pm/rstudio-pm.key"],
        "shared_dir": "/srv/shared/rstudio-pm",
    },
    "connect": {
        "database": "rstudio_connect",
        # Connect has no command that lists nodes (cluster_node_info refuses it).
        "lists_nodes": False,
        "account": ("rstudio-connect", "rstudio-connect"),
        "service": "rstudio-connect",
        "port": 3939,
        "health": "/__ping__",
        "sticky_cookie": "CONNECT_NODE",
        "config_files": ["/etc/rstudio-connect/rstudio-connect.gcfg"],
        "node_keys": ["DataPath", "ScheduleConcurrency"],
        "keys": [],
        "shared_dir": "/srv/shared/rstudio-connect",
    },
    "workbench": {
        "database": "rstudio_workbench",
        "lists_nodes": True,
        "account": ("rstudio-server", "rstudio-server"),
        "service": "rstudio-server",
        "port": 8787,
        "health": "/health-check",
        "sticky_cookie": "WORKBENCH_NODE",
        "config_files": ["/etc/rstudio/rserver.conf", "/etc/rstudio/load-balancer", "/etc/rstudio/file-locks",
                         "/etc/rstudio/database.conf"],
        "node_keys": ["www-host-name", "www-address", "www-port"],
        "keys": ["/etc/rstudio/secure-cookie-key", "/etc/rstudio/launcher.pem"],
        "shared_dir": "/srv/shared/rstudio-server/shared-storage",
    },
}


class Product:
    """One product of the lab: its name, what the lab inventory sets up for it, and its nodes."""

    def __init__(self, name):
        self.name = name
        self.spec = PRODUCTS[name]
        self.nodes = sorted(RUNNER.get_hosts(name))

    def __repr__(self):
        return self.name


def products(having=None):
    """Every product, or those whose spec has a true value for ``having``."""
    return [Product(name) for name in sorted(PRODUCTS) if having is None or PRODUCTS[name][having]]


@pytest.fixture(params=sorted(PRODUCTS))
def product(request):
    return Product(request.param)


def host(name):
    return RUNNER.get_host(name)


def http(node, url, headers=None):
    """``(status, {header: value}, body)`` of a request made on a lab node with its own python3 (no curl there)."""
    return probe.parse(host(node).run(probe.command(url, headers=headers)).stdout)


def sha256_of(node, path):
    return host(node).check_output("sha256sum %s | cut -d' ' -f1", path)


def config_without_node_keys(node, spec):
    """The node's configuration files joined, minus the documented per-node keys: what must be identical."""
    kept = []
    for path in spec["config_files"]:
        for line in host(node).check_output("cat %s", path).splitlines():
            key = line.split("=", 1)[0].strip()
            if line.strip() and not line.lstrip().startswith(("#", ";")) and key not in spec["node_keys"]:
                kept.append("%s: %s" % (path, line.strip()))
    return hashlib.sha256("\n".join(kept).encode()).hexdigest()


def run_playbook(playbook, *extra, timeout=900):
    """Run a playbook of the collection against the scenario's inventory; return the CompletedProcess."""
    ansible_playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    return subprocess.run([ansible_playbook, "-i", INVENTORY, os.path.join(REPO, "playbooks", playbook)] + list(extra),
                          capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO)


def lab_accounts():
    with open(os.path.join(REPO, "inventories", "lab", "group_vars", "all.yml"), encoding="utf-8") as handle:
        return {item["name"]: item for item in yaml.safe_load(handle)["node_base_accounts"]}
