"""Rolling upgrade under live traffic: the playbook beside the naive way (the doc's commands in order, no load
balancer steps, no pre-fetch), measured in the same run, per product.

For each product a lab cluster behind HAProxy (site.yml, old version, emulator migration 5 s) gets a constant-rate
client through the load balancer (from the host, through the port published on 127.0.0.1) during each upgrade, and
a watcher polling every node's health endpoint. Printed side by side for the playbook and the naive way: requests
sent, failed requests, the slowest answer and p99 latency, the longest window in which no node served, the schema
migration and the whole upgrade. Then, on the same lab: every node stopped by hand with no upgrade running, and how
long clients wait for their 503 (the load balancer's hold must never apply outside an upgrade).

    POSITOPS_LAB=bench .venv/bin/python benchmarks/rolling_upgrade/bench.py [--products package_manager,connect]
"""

import argparse
import json
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from tests.lab.cluster import Cluster  # noqa: E402
from tests.lab.lab import Lab, deb_file  # noqa: E402
from tests.lab.traffic import ServingWatcher, Traffic, request  # noqa: E402

RATE = 20.0
MIGRATION_SECONDS = 5

WORKLOADS = {
    # Package Manager: the repository list, which must hold the canary repository.
    "package_manager": {"nodes": 3, "path": "/__api__/repos",
                        "seed": ("http://127.0.0.1:4242/__api__/repos?name=bench-canary", ""),
                        "check": lambda status, body: status == 200 and b'"bench-canary"' in body},
    # Connect: a deployed content item, read from the share by the node.
    "connect": {"nodes": 2, "path": "/content/bench-canary/",
                "seed": ("http://127.0.0.1:3939/__emulator__/content?name=bench-canary", "bench-canary-bundle"),
                "check": lambda status, body: status == 200 and body == b"bench-canary-bundle"},
    # Workbench: a client without a session (the sign-in page a browser loads first).
    "workbench": {"nodes": 2, "path": "/", "seed": None, "check": lambda status, body: status < 500},
}


def naive_install(cluster, node):
    """What the doc shows: fetch the package on the node and install it, right when the step comes."""
    node.install_package(cluster.lab.node("pkgs"), deb_file(cluster.spec["package"], cluster.new_version),
                         apt_options="-o Dpkg::Options::=--force-confold")


def naive_package_manager(cluster):
    nodes = cluster.nodes
    half = len(nodes) // 2
    first, rest = nodes[:half], nodes[half:]
    names = lambda group: ",".join(cluster.lab.container_name(node.name) for node in group)  # noqa: E731
    rspm = "/opt/rstudio-pm/bin/rspm"
    nodes[0].exec("%s cluster offline --nodes=%s" % (rspm, names(first)))
    for node in first:
        naive_install(cluster, node)
    rest[0].exec("%s cluster offline --nodes=%s" % (rspm, names(rest)))
    first[0].exec("%s cluster online --nodes=%s --timeout=300" % (rspm, names(first)))
    for node in reversed(rest):
        naive_install(cluster, node)
    rest[0].exec("%s cluster online --nodes=%s" % (rspm, names(rest)))


def naive_stop_all(cluster):
    """Connect and Workbench: stop every node, upgrade one (it migrates), then the others."""
    service = cluster.spec["service"]
    for node in cluster.nodes:
        node.exec("systemctl stop %s" % service)
    first, rest = cluster.nodes[0], cluster.nodes[1:]
    naive_install(cluster, first)
    first.wait_http(cluster.health_url(), timeout=300)
    for node in rest:
        naive_install(cluster, node)
    for node in rest:
        node.wait_http(cluster.health_url(), timeout=300)


NAIVE = {"package_manager": naive_package_manager, "connect": naive_stop_all, "workbench": naive_stop_all}


def measure(cluster, workload, upgrade):
    if workload["seed"]:
        seed_url, seed_data = workload["seed"]
        cluster.nodes[0].http_ok(seed_url, method="POST", data=seed_data)
    watcher = ServingWatcher(cluster.node_urls(), cluster.spec["health"]).start()
    traffic = Traffic(cluster.lb_url(), workload["path"], workload["check"], rate=RATE).start()
    time.sleep(3)
    started = time.monotonic()
    ok, note = upgrade()
    total = time.monotonic() - started
    time.sleep(5)
    summary = traffic.stop()
    summary.update({"no_node_serving_s": watcher.stop(), "upgrade_s": round(total, 1),
                    "migration_s": cluster.migration_seconds(), "ok": ok, "note": note,
                    "versions": sorted({cluster.installed_version(node) for node in cluster.nodes})})
    return summary


def stopped_by_hand(cluster, workload):
    """Every node stopped with no upgrade running: how long the slowest of 20 requests waits for its answer."""
    for node in cluster.nodes:
        node.exec("systemctl stop %s" % cluster.spec["service"])
    time.sleep(4)  # HAProxy's checks mark them down
    answers = []
    for _ in range(20):
        started = time.monotonic()
        status, _body = request(cluster.lb_url(), workload["path"], timeout=90)
        answers.append((status, time.monotonic() - started))
    for node in cluster.nodes:
        node.exec("systemctl start %s" % cluster.spec["service"])
    return {"statuses": sorted({status for status, _ in answers}),
            "slowest_s": round(max(seconds for _, seconds in answers), 3)}


def run_product(product, prefix, log):
    workload = WORKLOADS[product]
    tuning = {"POSITEMU_MIGRATION_SECONDS": str(MIGRATION_SECONDS), "POSITEMU_SCHEMA_CHECK_SECONDS": "5",
              "POSITEMU_POLL_SECONDS": "1", "POSITEMU_HEARTBEAT_SECONDS": "2", "POSITEMU_DRAIN_SECONDS": "10"}
    cluster = Cluster(Lab("%s-%s" % (prefix, product.replace("_", ""))), product, nodes=workload["nodes"],
                      tuning=tuning)
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
        print("[%s] every node stopped by hand, no upgrade running" % product, file=log, flush=True)
        results["stopped_by_hand"] = stopped_by_hand(cluster, workload)
        print("[%s] reset to the old version" % product, file=log, flush=True)
        cluster.reset(tuning=tuning)  # the same migration time as the playbook's run: like for like
        print("[%s] naive upgrade under traffic" % product, file=log, flush=True)
        results["naive"] = measure(cluster, workload, naive)
    finally:
        if not os.environ.get("POSITOPS_KEEP_LAB"):
            cluster.destroy()
    return results


ROWS = [("requests sent", "sent"), ("failed requests", "failed"), ("slowest answer (s)", "slowest_s"),
        ("p99 latency (s)", "p99_s"), ("longest window, no node serving (s)", "no_node_serving_s"),
        ("schema migration (s)", "migration_s"), ("whole upgrade (s)", "upgrade_s")]


def print_table(all_results, out):
    for product, results in all_results.items():
        print("\n%s (%d req/s through HAProxy)" % (product, RATE), file=out)
        print("%-40s %12s %12s" % ("", "playbook", "naive"), file=out)
        for label, key in ROWS:
            print("%-40s %12s %12s" % (label, results["playbook"][key], results["naive"][key]), file=out)
        for way in ("playbook", "naive"):
            print("  %s: failures %s; windows without a success (s, failed) %s; ok=%s %s" % (
                way, results[way]["reasons"], results[way]["windows"], results[way]["ok"], results[way]["note"]),
                file=out)
        hand = results["stopped_by_hand"]
        print("  every node stopped by hand (no upgrade): answers %s, slowest %.3f s" % (
            hand["statuses"], hand["slowest_s"]), file=out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", default="package_manager,connect,workbench")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    prefix = os.environ.get("POSITOPS_LAB", "bench")
    all_results = {}
    print("load average at the start: %s" % " ".join(open("/proc/loadavg").read().split()[:3]))
    for product in args.products.split(","):
        all_results[product] = run_product(product, prefix, sys.stderr)
        # Each product's figures as soon as they exist (the whole run takes a while).
        print_table({product: all_results[product]}, sys.stderr)
    print_table(all_results, sys.stdout)
    print("load average at the end: %s" % " ".join(open("/proc/loadavg").read().split()[:3]))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(all_results, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
