"""db_migrate (through Ansible, verification on) and pgloader timed pair by pair: A B A B ...

    sudo .venv/bin/python benchmarks/db_migrate/pairs.py --pairs 5            # 3,000,000 rows
    .venv/bin/python benchmarks/db_migrate/pairs.py --rows 100000 --pairs 3   # quick

On a shared, noisy machine one run of each says little: the neighbours' load while one tool ran is not the load
while the other did. Here each pair runs the two tools back to back on the same data and the same throw-away
PostgreSQL (each into a fresh database, dropped afterwards), the order alternating from pair to pair, and the
ratio of each pair is kept; the median of those ratios is the figure to quote. Wall time and CPU seconds (the tool
and its PostgreSQL backends) are both reported, with the load average when each pair started.
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench  # noqa: E402  (benchmarks/db_migrate/bench.py)
from bench import PostgresServer  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=3000000, help="rows in the SQLite database (default 3000000)")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--workdir", default=os.path.join(bench.REPO, "build", "bench-db_migrate"))
    args = parser.parse_args(argv)
    args.skip = []
    source = bench.prepare(args)
    pairs = []
    with PostgresServer(settings=bench.SERVER_SETTINGS, prefix="positops-bench-pg-") as server:
        bench.SERVER["server"] = server
        bench.log("PostgreSQL on 127.0.0.1:%d" % server.port)
        for index in range(args.pairs):
            load = os.getloadavg()[0]
            figures = {}

            def db_migrate():
                label = "db_migrate %d" % index
                figures["db_migrate"] = (bench.run_db_migrate(server, "pair_dbm", source, args.workdir, label)[0],
                                         label)

            def pgloader():
                label = "pgloader %d" % index
                figures["pgloader"] = (bench.run_pgloader(server, "pair_pgloader", source, args.workdir, label),
                                       label)

            order = (db_migrate, pgloader) if index % 2 == 0 else (pgloader, db_migrate)
            for run in order:
                run()
            server.psql("DROP DATABASE pair_dbm")
            server.psql("DROP DATABASE pair_pgloader")
            ours, theirs = figures["db_migrate"], figures["pgloader"]
            pair = {"load": load, "first": order[0].__name__,
                    "db_migrate": (ours[0], bench.CPU_SECONDS[ours[1]]),
                    "pgloader": (theirs[0], bench.CPU_SECONDS[theirs[1]])}
            pair["wall ratio"] = pair["pgloader"][0] / pair["db_migrate"][0]
            pair["cpu ratio"] = pair["pgloader"][1] / pair["db_migrate"][1]
            pairs.append(pair)
            bench.log("pair %d: %s" % (index + 1, pair))
    print("rows: %d, %d pairs, %s, %d CPUs" % (args.rows, len(pairs), time.strftime("%Y-%m-%d %H:%M UTC",
                                                                                   time.gmtime()), os.cpu_count()))
    print("%4s %6s %-10s %22s %22s %8s %8s" % ("pair", "load", "first", "db_migrate wall/CPU", "pgloader wall/CPU",
                                               "wall x", "CPU x"))
    for number, pair in enumerate(pairs, start=1):
        print("%4d %6.2f %-10s %10.2f s %7.1f s %10.2f s %7.1f s %7.2fx %7.2fx" % (
            number, pair["load"], pair["first"], pair["db_migrate"][0], pair["db_migrate"][1], pair["pgloader"][0],
            pair["pgloader"][1], pair["wall ratio"], pair["cpu ratio"]))
    print("median ratio (pgloader / db_migrate): %.2fx on wall time, %.2fx on CPU seconds"
          % (statistics.median(p["wall ratio"] for p in pairs), statistics.median(p["cpu ratio"] for p in pairs)))
    return pairs


if __name__ == "__main__":
    main()
