"""Rolling upgrade under live traffic: the playbook beside the naive way (the doc's commands in order, no load
balancer draining, no pre-fetch), measured in the same run.

Brings up a 4-node Package Manager cluster and a 3-node Connect cluster, each behind HAProxy (site.yml, old
version), runs a bounded constant-rate client through the load balancer during each upgrade and prints, per product
and way: requests sent, failed requests (connection errors, 5xx, wrong content), failures outside the longest
outage, the longest window with no successful request (no healthy node), the schema-migration time and the total
upgrade time. Run by hand (minutes; needs Docker and root):

    POSITOPS_LAB=bench .venv/bin/python benchmarks/rolling_upgrade/bench.py [--products package_manager,connect]
"""

import argparse
import json
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from tests.lab.cluster import Cluster, Traffic
from tests.lab.lab import Lab, deb_file

RATE = 20.0

WORKLOADS = {
    # Package Manager: the repository list, which must hold the canary repository.
    "package_manager": {"nodes": 4, "port": 4242, "path": "/__api__/repos",
                        "seed": ("http://127.0.0.1:4242/__api__/repos?name=bench-canary", ""),
                        "check": lambda status, body: status == 200 and b'"bench-canary"' in body},
    # Connect: a deployed content item, read from the share by the node.
    "connect": {"nodes": 3, "port": 3939, "path": "/content/bench-canary/",
                "seed": ("http://127.0.0.1:3939/__emulator__/content?name=bench-canary", "bench-canary-bundle"),
                "check": lambda status, body: status == 200 and body == b"bench-canary-bundle"},
}


def naive_install(cluster, node):
    """What the doc shows: fetch the package on the node and install it, right when the step comes."""
    node.install_package(cluster.lab.node("pkgs"), deb_file(cluster.spec["package"], cluster.new_version),
                         apt_options="-o Dpkg::Options::=--force-confold")


def naive_package_manager(cluster):
    nodes = cluster.nodes
    half = len(nodes) // 2
    first, rest = nodes[:half], nodes[half:]
    names = lambda group: ",".join(cluster.lab.container_name(node.name) for node in group)
    rspm = "/opt/rstudio-pm/bin/rspm"
    nodes[0].exec("%s cluster offline --nodes=%s" % (rspm, names(first)))
    for node in first:
        naive_install(cluster, node)
    rest[0].exec("%s cluster offline --nodes=%s" % (rspm, names(rest)))
    first[0].exec("%s cluster online --nodes=%s --timeout=300" % (rspm, names(first)))
    for node in reversed(rest):
        naive_install(cluster, node)
    rest[0].exec("%s cluster online --nodes=%s" % (rspm, names(rest)))


def naive_connect(cluster):
    for node in cluster.nodes:
        node.exec("systemctl stop rstudio-connect")
    first, rest = cluster.nodes[0], cluster.nodes[1:]
    naive_install(cluster, first)
    first.wait_http("http://127.0.0.1:3939/__ping__", timeout=300)
    for node in rest:
        naive_install(cluster, node)
    for node in rest:
        node.wait_http("http://127.0.0.1:3939/__ping__", timeout=300)


NAIVE = {"package_manager": naive_package_manager, "connect": naive_connect}


def measure(cluster, workload, upgrade):
    seed_url, seed_data = workload["seed"]
    cluster.nodes[0].http_ok(seed_url, method="POST", data=seed_data)
    traffic = Traffic(cluster.lb_address(), workload["port"], workload["path"], workload["check"], rate=RATE)
    traffic.start()
    time.sleep(3)
    started = time.monotonic()
    ok, note = upgrade()
    total = time.monotonic() - started
    time.sleep(5)
    summary = traffic.stop()
    summary.update({"upgrade_s": round(total, 1), "migration_s": cluster.migration_seconds(), "ok": ok,
                    "note": note, "versions": sorted({cluster.installed_version(node) for node in cluster.nodes})})
    summary.pop("longest_window")
    return summary


def run_product(product, prefix, log):
    workload = WORKLOADS[product]
    cluster = Cluster(Lab("%s-%s" % (prefix, product.replace("_", ""))), product, nodes=workload["nodes"],
                      tuning={"POSITEMU_MIGRATION_SECONDS": "5", "POSITEMU_SCHEMA_CHECK_SECONDS": "5",
                              "POSITEMU_POLL_SECONDS": "1", "POSITEMU_HEARTBEAT_SECONDS": "2",
                              "POSITEMU_DRAIN_SECONDS": "10"})
    cluster.destroy()
    results = {}
    try:
        print("[%s] lab up (site.yml, %d nodes)" % (product, workload["nodes"]), file=log, flush=True)
        cluster.up()

        def playbook():
            result = cluster.playbook("rolling_upgrade.yml", extra_vars=cluster.upgrade_vars(),
                                      log=cluster.dir / "bench-upgrade.log")
            return result.rc == 0, "rc=%d" % result.rc

        def naive():
            try:
                NAIVE[product](cluster)
                return True, ""
            except Exception as error:  # the measurement still reports what the client saw
                return False, str(error)[:300]

        print("[%s] playbook upgrade under traffic" % product, file=log, flush=True)
        results["playbook"] = measure(cluster, workload, playbook)
        print("[%s] reset to the old version" % product, file=log, flush=True)
        cluster.reset()
        print("[%s] naive upgrade under traffic" % product, file=log, flush=True)
        results["naive"] = measure(cluster, workload, naive)
    finally:
        if not os.environ.get("POSITOPS_KEEP_LAB"):
            cluster.destroy()
    return results


def print_table(all_results, out):
    rows = [("requests sent", "sent"), ("failed requests", "failed"),
            ("failed outside the longest outage", "failed_outside_longest"),
            ("longest window with no healthy node (s)", "longest_window_s"), ("schema migration (s)", "migration_s"),
            ("total upgrade time (s)", "upgrade_s")]
    for product, results in all_results.items():
        print("\n%s (%d req/s through HAProxy)" % (product, RATE), file=out)
        print("%-42s %12s %12s" % ("", "playbook", "naive"), file=out)
        for label, key in rows:
            print("%-42s %12s %12s" % (label, results["playbook"][key], results["naive"][key]), file=out)
        for way in ("playbook", "naive"):
            print("  %s: outages (s, failed) %s; failures %s; ok=%s %s" % (
                way, results[way]["windows"], results[way]["reasons"], results[way]["ok"], results[way]["note"]),
                file=out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", default="package_manager,connect")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    prefix = os.environ.get("POSITOPS_LAB", "bench")
    all_results = {}
    for product in args.products.split(","):
        all_results[product] = run_product(product, prefix, sys.stderr)
        # Each product's figures as soon as they exist (the whole run takes a while).
        print_table({product: all_results[product]}, sys.stderr)
    print_table(all_results, sys.stdout)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(all_results, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
