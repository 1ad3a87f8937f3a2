# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!
"""What cluster_node and cluster_node_info share: options, and the registry of product adapters.

Each adapter returns the cluster's nodes in one record shape (``_cli.node_record``), so nothing here or in the
modules asks which product printed them. The options are documented once, in
``plugins/doc_fragments/cluster_cli.py``.
"""

from __future__ import annotations

from ansible_collections.positops.ha.plugins.module_utils._package_manager import PackageManagerCli
from ansible_collections.positops.ha.plugins.module_utils._workbench import WorkbenchCli

# The products with a node CLI, and the adapter of each.
PRODUCT_CLIS = {"package_manager": PackageManagerCli, "workbench": WorkbenchCli}

CONNECT_HAS_NO_NODE_CLI = (
    "Posit Connect has no command to list or change cluster nodes: its nodes are not aware of each other. "
    "Take a Connect node out by stopping the rstudio-connect service (or draining it at the load balancer) and "
    "bring it back by starting the service; use ansible.builtin.systemd_service and your load balancer for that.")
# Products accepted as an option only to be refused, with what to do instead.
PRODUCTS_WITHOUT_NODE_CLI = {"connect": CONNECT_HAS_NO_NODE_CLI}


def cluster_argument_spec():
    """Options common to the cluster modules (documented by the positops.ha.cluster_cli doc fragment)."""
    return dict(
        product=dict(type="str", required=True, choices=list(PRODUCT_CLIS) + list(PRODUCTS_WITHOUT_NODE_CLI)),
        cli_path=dict(type="path"),
    )


def product_cli(module):
    """The adapter for ``module.params['product']``, checked to be installed; refuses a product without one."""
    product = module.params["product"]
    if product in PRODUCTS_WITHOUT_NODE_CLI:
        module.fail_json(msg=PRODUCTS_WITHOUT_NODE_CLI[product])
    cli = PRODUCT_CLIS[product](module, module.params.get("cli_path"))
    cli.ensure_available()
    return cli


def describe_nodes(records):
    """``A (online), B (offline)`` — for messages; nodes with an ID carry it, missed check-ins are named."""
    parts = []
    for record in records:
        details = [record["status"]]
        if record["id"] is not None:
            details.insert(0, "ID %s" % record["id"])
        if record.get("missed_check_in") and record["status"] != "Missed check-in":
            details.append("missed check-in, last seen %s" % record["last_seen"])
        parts.append("%s (%s)" % (record["name"] or "?", ", ".join(details)))
    return ", ".join(parts) if parts else "none"
