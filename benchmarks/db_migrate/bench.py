"""Benchmark db_migrate against pgloader and psql \\copy on the same SQLite data, in one run.

    sudo .venv/bin/python benchmarks/db_migrate/bench.py            # 3,000,000 rows (the default)
    .venv/bin/python benchmarks/db_migrate/bench.py --rows 100000   # quick smoke run
    sudo .venv/bin/python benchmarks/db_migrate/pairs.py --pairs 5  # db_migrate and pgloader alternately (pairs.py)

Steps: install pgloader with apt-get when it is missing; generate the SQLite database (generate.py); start a
throw-away PostgreSQL on loopback (tests/unit/pg_server.py, server defaults but autovacuum off: it would charge
the vacuum of one contender's tables to the next contender's run); then, each into a fresh database:
  1. db_migrate through `ansible localhost -m positops.ha.db_migrate` as an operator would (Ansible's start-up,
     the source scan, the load, the indexes and constraints and the verification all inside the measured time);
  2. pgloader (Debian's package) with its defaults (creates tables, indexes, foreign keys, resets sequences);
  3. psql `\\copy` of CSV files exported beforehand (export not timed) into bare tables: the raw speed limit.
     The time psql then takes to add the same keys and indexes is printed separately.
Prints wall time, CPU seconds (the tool and its PostgreSQL backends) and rows/s of each, the ratios, the load
average before and after, and db_migrate's own breakdown (the phase timings the module returns, and Ansible's
start-up: the wall time less the module's). Everything generated lives under --workdir (default
build/bench-db_migrate).
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import generate  # noqa: E402  (benchmarks/db_migrate/generate.py)
from tests.unit.pg_server import PostgresServer  # noqa: E402

# Bare target tables for the \copy baseline: the types db_migrate creates for generate.SCHEMA.
RAW_TABLES = {
    "users": "id bigint NOT NULL, email text NOT NULL, display_name text, active boolean NOT NULL, "
             "created timestamp NOT NULL, avatar bytea",
    "packages": "id bigint NOT NULL, name text NOT NULL, version text NOT NULL, size bigint NOT NULL, "
                "score double precision, description text, sha256 bytea NOT NULL, owner_id bigint, "
                "published timestamp NOT NULL",
    "downloads": "id bigint NOT NULL, package_id bigint NOT NULL, ts timestamp NOT NULL, bytes bigint NOT NULL, "
                 "duration double precision, client text",
    "package_tags": "package_id bigint NOT NULL, tag text NOT NULL, weight double precision",
}
RAW_KEYS = """
ALTER TABLE users ADD PRIMARY KEY (id);
ALTER TABLE users ADD UNIQUE (email);
ALTER TABLE packages ADD PRIMARY KEY (id);
CREATE INDEX packages_name ON packages (name, version);
ALTER TABLE downloads ADD PRIMARY KEY (id);
CREATE INDEX downloads_package ON downloads (package_id);
ALTER TABLE package_tags ADD PRIMARY KEY (package_id, tag);
ALTER TABLE packages ADD FOREIGN KEY (owner_id) REFERENCES users (id);
ALTER TABLE downloads ADD FOREIGN KEY (package_id) REFERENCES packages (id);
ALTER TABLE package_tags ADD FOREIGN KEY (package_id) REFERENCES packages (id);
"""


def log(message):
    print("[bench] %s" % message, file=sys.stderr, flush=True)


def ensure_pgloader():
    if shutil.which("pgloader"):
        return
    log("installing pgloader (apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "install", "-y", "-qq", "pgloader"], check=True, env=env,
                   stdout=subprocess.DEVNULL)


# Server defaults but autovacuum: it vacuums and analyzes a loaded table up to a minute later, so during the next
# contender's run, whose CPU seconds (the server's exited children) would then include it.
SERVER_SETTINGS = {"autovacuum": "off"}

# CPU seconds used by each contender, client and server side, summed over timed() calls: on a shared machine
# the wall clock depends on the neighbours, the CPU spent much less.
CPU_SECONDS = {}
SERVER = {}


def cpu_now():
    """CPU seconds of reaped children of this process (the tools) and of the server's exited backends."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = children.ru_utime + children.ru_stime
    server = SERVER.get("server")
    if server is not None:
        with open(os.path.join(server.datadir, "postmaster.pid"), encoding="ascii") as handle:
            pid = handle.readline().strip()
        with open("/proc/%s/stat" % pid, encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        total += (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")  # cutime, cstime
    return total


def timed(argv, label=None, **kwargs):
    cpu_before = cpu_now()
    started = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit("%s failed (rc=%d)\n%s\n%s"
                         % (argv[0], result.returncode, result.stdout[-4000:], result.stderr[-4000:]))
    time.sleep(1)  # let the postmaster reap the backends so their CPU is counted
    if label:
        CPU_SECONDS[label] = CPU_SECONDS.get(label, 0.0) + cpu_now() - cpu_before
    return elapsed, result.stdout


def collections_path(workdir):
    """ansible needs the collection under .../ansible_collections/positops/ha: a symlink to this repository."""
    root = os.path.join(workdir, "collections")
    link = os.path.join(root, "ansible_collections", "positops", "ha")
    if not os.path.islink(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(REPO, link)
    return root


def run_db_migrate(server, database, source, workdir, label="db_migrate via ansible"):
    """db_migrate through ``ansible localhost -m``, verification on (the default); returns (seconds, result)."""
    uri = server.create_database(database)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(workdir), ANSIBLE_LOCALHOST_WARNING="False",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="False", ANSIBLE_PYTHON_INTERPRETER=sys.executable,
               ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="json")
    ansible = os.path.join(os.path.dirname(sys.executable), "ansible")
    argv = [ansible, "localhost", "-c", "local", "-m", "positops.ha.db_migrate",
            "-a", json.dumps({"src": source, "dest": uri})]
    elapsed, stdout = timed(argv, label=label, env=env)
    result = json.loads(stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    if result.get("failed") or not result["verification"]["ok"]:
        raise SystemExit("db_migrate failed: %s" % result.get("msg"))
    return elapsed, result


BREAKDOWN = (
    ("Ansible start-up (wall less the module's total)", None),
    ("read and convert (SQLite fetch, conversion)", ("read", "convert")),
    ("COPY (formatting, sending, PostgreSQL's COPY)", ("copy",)),
    ("keys (primary keys, unique, indexes)", ("keys",)),
    ("foreign keys", ("foreign_keys",)),
    ("verify (reading back, digests)", ("verify",)),
    ("swap (one transaction)", ("swap",)),
    ("module total (wall)", ("total",)),
)


def breakdown(seconds, result):
    """db_migrate's phases: Ansible's start-up, then the module's timings (summed over its workers)."""
    timings = result["timings"]
    lines = []
    for label, phases in BREAKDOWN:
        value = seconds - timings["total"] if phases is None else sum(timings.get(p, 0.0) for p in phases)
        lines.append("  %-52s %7.2f s" % (label, value))
    return lines


def loadavg():
    return " ".join("%.2f" % v for v in os.getloadavg())


def run_pgloader(server, database, source, workdir, label="pgloader"):
    server.create_database(database)
    # pgloader 3.6 cannot parse a URI without a password reliably: the server trusts loopback, any password works.
    target = "pgsql://postgres:unused@127.0.0.1:%d/%s" % (server.port, database)
    argv = ["pgloader", "--no-ssl-cert-verification", "sqlite://%s" % source, target]
    elapsed = timed(argv, label=label, cwd=workdir)[0]
    return elapsed


def export_csv(source, workdir):
    paths = {}
    for table, columns in RAW_TABLES.items():
        names = [part.split()[0] for part in columns.split(", ")]
        # bytea in CSV: \\x followed by hex; NULL stays an empty field.
        select = ", ".join("CASE WHEN %s IS NULL THEN NULL ELSE '\\x' || hex(%s) END" % (n, n)
                           if n in ("avatar", "sha256") else n for n in names)
        path = os.path.join(workdir, "%s.csv" % table)
        with open(path, "w", encoding="utf-8") as handle:
            subprocess.run(["sqlite3", "-csv", source, "SELECT %s FROM %s" % (select, table)], stdout=handle,
                           check=True)
        os.chmod(path, 0o644)
        paths[table] = path
    return paths


def run_raw_copy(server, database, csv_paths, workdir):
    server.create_database(database)
    script = os.path.join(workdir, "raw_copy.sql")
    with open(script, "w", encoding="utf-8") as handle:
        for table, columns in RAW_TABLES.items():
            handle.write("CREATE TABLE %s (%s);\n" % (table, columns))
            handle.write("\\copy %s FROM '%s' WITH (FORMAT csv)\n" % (table, csv_paths[table]))
    keys = os.path.join(workdir, "raw_keys.sql")
    with open(keys, "w", encoding="utf-8") as handle:
        handle.write(RAW_KEYS)
    psql = [os.path.join(server.bindir, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
            "-p", str(server.port), "-U", "postgres", "-d", database, "-f"]
    copy_seconds = timed(psql + [script], label="psql \\copy (raw, no indexes)")[0]
    CPU_SECONDS["psql \\copy + same keys/indexes"] = CPU_SECONDS["psql \\copy (raw, no indexes)"]
    keys_seconds = timed(psql + [keys], label="psql \\copy + same keys/indexes")[0]
    return copy_seconds, keys_seconds


def prepare(args):
    os.makedirs(args.workdir, exist_ok=True)
    os.chmod(args.workdir, 0o755)
    if "pgloader" not in args.skip:
        ensure_pgloader()
    source = os.path.join(args.workdir, "source-%d.sqlite" % args.rows)
    if not os.path.exists(source):
        log("generating %d rows into %s" % (args.rows, source))
        generate.generate(source + ".tmp", args.rows)
        os.rename(source + ".tmp", source)
    os.chmod(source, 0o644)
    return source


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=3000000, help="rows in the SQLite database (default 3000000)")
    parser.add_argument("--workdir", default=os.path.join(REPO, "build", "bench-db_migrate"))
    parser.add_argument("--skip", action="append", default=[], choices=["pgloader", "raw"],
                        help="leave a contender out (repeatable)")
    args = parser.parse_args(argv)
    source = prepare(args)
    rows = args.rows
    figures = {}
    load_before = loadavg()
    with PostgresServer(settings=SERVER_SETTINGS, prefix="positops-bench-pg-") as server:
        log("PostgreSQL on 127.0.0.1:%d" % server.port)
        SERVER["server"] = server
        if "raw" not in args.skip:
            csv_paths = export_csv(source, args.workdir)
            log("psql \\copy")
            copy_seconds, keys_seconds = run_raw_copy(server, "bench_raw", csv_paths, args.workdir)
            figures["psql \\copy (raw, no indexes)"] = copy_seconds
            figures["psql \\copy + same keys/indexes"] = copy_seconds + keys_seconds
        log("db_migrate through ansible")
        seconds, result = run_db_migrate(server, "bench_db_migrate", source, args.workdir)
        figures["db_migrate via ansible"] = seconds
        log("db_migrate module totals: %s" % json.dumps(result["totals"]))
        if "pgloader" not in args.skip:
            log("pgloader")
            figures["pgloader"] = run_pgloader(server, "bench_pgloader", source, args.workdir)
    print("rows: %d   load average before: %s   after: %s   (%s, %d CPUs)"
          % (rows, load_before, loadavg(), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), os.cpu_count()))
    print("%-34s %10s %10s %12s" % ("", "wall", "CPU s", "rows/s"))
    for name, seconds_ in figures.items():
        print("%-34s %8.2f s %10.1f %12.0f" % (name, seconds_, CPU_SECONDS.get(name, 0.0), rows / seconds_))
    ours = figures["db_migrate via ansible"]
    if "pgloader" in figures:
        print("db_migrate / pgloader:        %.2fx on wall time, %.2fx on CPU seconds"
              % (figures["pgloader"] / ours, CPU_SECONDS["pgloader"] / CPU_SECONDS["db_migrate via ansible"]))
    if "psql \\copy (raw, no indexes)" in figures:
        print("db_migrate / raw \\copy:       %.2f of its rows/s" % (figures["psql \\copy (raw, no indexes)"] / ours))
        print("db_migrate / \\copy + keys:    %.2f of its rows/s" % (figures["psql \\copy + same keys/indexes"] / ours))
    print("db_migrate breakdown (phases summed over the module's worker processes, so they overlap):")
    print("\n".join(breakdown(ours, result)))
    return figures


if __name__ == "__main__":
    main()
