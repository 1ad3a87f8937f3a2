"""The README's demo: for each product, a lab cluster built by ``positops.ha.site``, then a rolling upgrade.

    python -m tests.lab.demo [--nodes N] [PRODUCT ...]     # default: package_manager
    python -m tests.lab.demo --down                        # remove the demo labs

Each product gets its own small lab (prefix ``demo-<product>``: package server, PostgreSQL, HAProxy and N nodes),
left running afterwards so it can be explored; the inventory path is printed.
"""

import argparse
import json
import subprocess
import sys
import time

from tests.lab.cluster import PRODUCTS, VENV_BIN, Cluster
from tests.lab.lab import Lab, LabError

SHORT = {"package_manager": "pm", "connect": "connect", "workbench": "workbench"}


def lab_for(product):
    return Lab("demo-%s" % SHORT[product])


def node_table(cluster):
    """The cluster as the product itself lists it (cluster_node_info), or per-node health for Connect."""
    if cluster.product == "connect":
        rows = [(node.name, cluster.installed_version(node), "healthy" if cluster.health(node) == 200 else
                 "not serving") for node in cluster.nodes]
        return "\n".join("  %-24s %-22s %s" % row for row in rows)
    first = cluster.hosts()[0]
    args = [str(VENV_BIN / "ansible"), first, "-i", str(cluster.inventory), "-o",
            "-m", "positops.ha.cluster_node_info", "-a", "product=%s" % cluster.product]
    proc = subprocess.run(args, capture_output=True, text=True, env=cluster.env())
    _, _, payload = proc.stdout.partition("=>")
    try:
        nodes = json.loads(payload)["nodes"]
    except (ValueError, KeyError):
        return "  cluster_node_info failed:\n%s%s" % (proc.stdout, proc.stderr)
    lines = []
    for node in nodes:
        state = node.get("mode") or node.get("status")
        lines.append("  %-4s %-24s %-22s %s" % (node.get("id") or "", node["name"], node["version"], state))
    return "\n".join(lines)


def show(cluster, title):
    lb_ip = cluster.lb.ip()
    print("\n--- %s: %s" % (cluster.product, title))
    print("  load balancer: http://%s:%d/   (HAProxy stats: http://%s:8404/stats)" % (
        lb_ip, cluster.spec["port"], lb_ip))
    print(node_table(cluster))


def demo(product, nodes):
    cluster = Cluster(lab_for(product), product, nodes=nodes)
    started = time.monotonic()
    print("\n=== %s: %d nodes, site.yml with %s" % (product, nodes, cluster.old_version), flush=True)
    site = cluster.up()
    show(cluster, "provisioned in %.0f s (log: %s)" % (site.seconds, cluster.dir / "site.log"))
    print("\n=== %s: rolling upgrade to %s" % (product, cluster.new_version), flush=True)
    upgrade = cluster.playbook("rolling_upgrade.yml", extra_vars=cluster.upgrade_vars(),
                               log=cluster.dir / "rolling_upgrade.log")
    if upgrade.rc != 0:
        raise LabError("rolling_upgrade.yml failed (rc=%s), log in %s:\n%s" % (
            upgrade.rc, cluster.dir / "rolling_upgrade.log", upgrade.output[-4000:]))
    show(cluster, "upgraded in %.0f s (log: %s)" % (upgrade.seconds, cluster.dir / "rolling_upgrade.log"))
    print("  inventory: %s   (total %.0f s)" % (cluster.inventory, time.monotonic() - started))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("products", nargs="*", metavar="PRODUCT",
                        help="%s (default: package_manager)" % " | ".join(sorted(PRODUCTS)))
    parser.add_argument("--nodes", type=int, default=3, help="nodes per product (default 3)")
    parser.add_argument("--down", action="store_true", help="remove the demo labs and exit")
    args = parser.parse_args(argv)
    # Package Manager shows the richest procedure (batches, offline/online, migration window); the others on request.
    products = args.products or ["package_manager"]
    unknown = sorted(set(products) - set(PRODUCTS))
    if unknown:
        parser.error("unknown product(s) %s: choose from %s" % (", ".join(unknown), ", ".join(sorted(PRODUCTS))))
    if args.down:
        for product in PRODUCTS:
            lab_for(product).destroy()
        return 0
    if args.nodes < 2:
        parser.error("--nodes must be at least 2: a cluster of one node shows nothing of HA")
    for product in products:
        demo(product, args.nodes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
