# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!
"""What cluster_node and cluster_node_info share: options, the product adapters, one node record shape.

The options are documented once, in ``plugins/doc_fragments/cluster_cli.py``.
"""

from __future__ import annotations

from ansible_collections.positops.ha.plugins.module_utils._package_manager import PackageManagerCli
from ansible_collections.positops.ha.plugins.module_utils._workbench import WorkbenchCli

PRODUCT_CLIS = {"package_manager": PackageManagerCli, "workbench": WorkbenchCli}

CONNECT_HAS_NO_NODE_CLI = (
    "Posit Connect has no command to list or change cluster nodes: its nodes are not aware of each other. "
    "Take a Connect node out by stopping the rstudio-connect service (or draining it at the load balancer) and "
    "bring it back by starting the service; use ansible.builtin.systemd_service and your load balancer for that.")


def cluster_argument_spec():
    """Options common to the cluster modules (documented by the positops.ha.cluster_cli doc fragment)."""
    return dict(
        product=dict(type="str", required=True, choices=["package_manager", "workbench", "connect"]),
        cli_path=dict(type="path"),
    )


def product_cli(module):
    """The adapter for ``module.params['product']``, checked to be installed; refuses Connect."""
    product = module.params["product"]
    if product == "connect":
        module.fail_json(msg=CONNECT_HAS_NO_NODE_CLI)
    cli = PRODUCT_CLIS[product](module, module.params.get("cli_path"))
    cli.ensure_available()
    return cli


def node_record(product, raw):
    """One shape for both products so playbooks can read ``name``/``mode`` without caring which one it is."""
    if product == "package_manager":
        return {"name": raw["name"], "id": None, "version": raw["version"], "status": raw["mode"],
                "mode": raw["mode"], "ipv4": None, "port": None, "last_seen": None}
    return {"name": raw["name"], "id": raw["id"], "version": None, "status": raw["status"], "mode": raw["mode"],
            "ipv4": raw["ipv4"], "port": raw["port"], "last_seen": raw["last_seen"]}


def list_nodes(cli, product):
    raw = cli.cluster_nodes() if product == "package_manager" else cli.list_nodes()
    return [node_record(product, node) for node in raw]


def describe_nodes(records):
    """``A (online), B (offline)`` — for messages; Workbench nodes carry their ID."""
    parts = []
    for record in records:
        label = record["name"] or "?"
        if record["id"] is not None:
            label = "%s (ID %s, %s)" % (label, record["id"], record["status"])
        else:
            label = "%s (%s)" % (label, record["status"])
        parts.append(label)
    return ", ".join(parts) if parts else "none"
