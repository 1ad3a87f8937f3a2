"""Single nodes on SQLite: one node per product beside PostgreSQL and the package server, no load balancer, the
inventory's database host emptied at build time so that the roles configure SQLite, as a single node starts out.
The lab in which ``positops.ha.migrate_database`` moves a node to PostgreSQL (the Molecule scenario
migrate_database and tests/lab_tests/test_migrate_database.py).

    clusters = build(Lab("mig"), ["package_manager"])    # containers, inventory and site.yml on SQLite

    python -m tests.lab.single_nodes create package_manager connect   # containers and inventory (Molecule create)
    python -m tests.lab.single_nodes down                             # prefix from $POSITOPS_LAB
"""

import argparse
import json
import sys

from tests.lab.cluster import PRODUCTS, Cluster, ensure_collection_link
from tests.lab.lab import Lab, LabError

DEFAULT_PRODUCTS = ("package_manager", "connect")


def sqlite_vars(products):
    """site.yml's variables for a build on SQLite: the new version of each product, no database host."""
    variables = {}
    for product in products:
        variables["%s_version" % product] = PRODUCTS[product]["new"]
        variables["%s_database_host" % product] = ""
    return variables


def start(lab, products=DEFAULT_PRODUCTS):
    """The containers and the inventory of one node per product; ``{product: Cluster}`` (all share one lab)."""
    clusters = {product: Cluster(lab, product, nodes=1, load_balancer=False) for product in products}
    first, *others = clusters.values()
    first.start_containers()  # PostgreSQL, the package server and the first product's node
    shared = lab.volume("shared")
    for cluster in others:
        for name in cluster.node_names:
            cluster.write_tuning(lab.start_node(name, volumes={shared: "/srv/shared"}))
    first.write_inventory()
    hosts = first.inventory / "hosts.yml"
    inventory = json.loads(hosts.read_text())
    for product, cluster in clusters.items():
        inventory["all"]["children"][product] = {"hosts": {host: None for host in cluster.hosts()}}
    hosts.write_text(json.dumps(inventory, indent=2) + "\n")
    return clusters


def build(lab, products=DEFAULT_PRODUCTS):
    """start(), then site.yml with every product on SQLite; ``{product: Cluster}``."""
    clusters = start(lab, products)
    first = next(iter(clusters.values()))
    result = first.playbook("site.yml", extra_vars=sqlite_vars(products), log=first.dir / "site.log")
    if result.rc != 0:
        raise LabError("site.yml failed (rc=%s), log in %s:\n%s" % (
            result.rc, first.dir / "site.log", result.output[-6000:]))
    return clusters


def main(argv=None):
    parser = argparse.ArgumentParser(description="single nodes on SQLite beside PostgreSQL: create or remove them")
    parser.add_argument("action", choices=["create", "down"],
                        help="create: containers and inventory (build the nodes with site.yml and "
                             "<product>_database_host=''); down: remove everything of the lab")
    # No choices=: argparse (3.11) checks an empty list against them.
    parser.add_argument("products", nargs="*", metavar="product", help="%s; one node each (default: %s)" % (
        ", ".join(sorted(PRODUCTS)), " ".join(DEFAULT_PRODUCTS)))
    args = parser.parse_args(argv)
    unknown = sorted(set(args.products) - set(PRODUCTS))
    if unknown:
        parser.error("unknown product(s): %s" % ", ".join(unknown))
    lab = Lab()
    if args.action == "down":
        lab.destroy()
        return 0
    ensure_collection_link()
    clusters = start(lab, args.products or DEFAULT_PRODUCTS)
    print("inventory: %s" % next(iter(clusters.values())).inventory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
