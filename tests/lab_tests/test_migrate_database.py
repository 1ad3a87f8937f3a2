"""Single node to HA, database step: a Package Manager node and a Connect node built on SQLite are moved to
PostgreSQL by playbooks/migrate_database.yml (the product's own migrate tool, proved by db_migrate verify); what
they served before is served after, the SQLite file is backed up, and a second run changes nothing.
"""

import json
import time

import pytest

from tests.lab.cluster import Cluster

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def labs(lab, debs):
    """One lab: PostgreSQL, a package server, pm1 (Package Manager) and rsc1 (Connect), both on SQLite."""
    pm = Cluster(lab, "package_manager", nodes=1, load_balancer=False)
    connect = Cluster(lab, "connect", nodes=1, load_balancer=False)
    pm.start_containers()
    shared = lab.volume("shared")
    for name in connect.node_names:
        connect.write_tuning(lab.start_node(name, volumes={shared: "/srv/shared"}))
    pm.write_inventory()
    inventory = json.loads((pm.inventory / "hosts.yml").read_text())
    inventory["all"]["children"]["connect"] = {"hosts": {host: None for host in connect.hosts()}}
    (pm.inventory / "hosts.yml").write_text(json.dumps(inventory, indent=2) + "\n")
    # No database host: the roles configure SQLite, as a single node starts out.
    result = pm.playbook("site.yml", extra_vars={"package_manager_version": pm.new_version,
                                                 "connect_version": connect.new_version,
                                                 "package_manager_database_host": "",
                                                 "connect_database_host": ""},
                         log=pm.dir / "site.log")
    assert result.rc == 0, result.output[-4000:]
    return {"package_manager": pm, "connect": connect}


def task_outcome(output, task):
    """First word of the result line under ``TASK [task]`` (ok, changed, skipping, fatal)."""
    section = output.split("TASK [%s]" % task, 1)[1].split("TASK [", 1)[0]
    for line in section.splitlines():
        word = line.split(":", 1)[0]
        if word in ("ok", "changed", "skipping", "fatal"):
            return word
    return None


def provider(node, config):
    return [line.split("=", 1)[1].strip().lower() for line in node.read_file(config).splitlines()
            if line.strip().lower().startswith("provider")]


def test_package_manager_moves_to_postgres_with_its_data(labs):
    pm = labs["package_manager"]
    node = pm.nodes[0]
    assert provider(node, "/etc/rstudio-pm/rstudio-pm.gcfg") == ["sqlite"]
    node.http_ok("http://127.0.0.1:4242/__api__/repos?name=migrated-canary", method="POST")
    before = node.http_ok("http://127.0.0.1:4242/__api__/repos")
    assert "migrated-canary" in before

    result = pm.playbook("migrate_database.yml", extra_vars={"migrate_database_product": "package_manager"},
                         log=pm.dir / "migrate-pm.log")
    assert result.rc == 0, result.output[-4000:]
    assert "Migrating" in result.output or "/opt/rstudio-pm/bin/migrate" in result.output
    assert provider(node, "/etc/rstudio-pm/rstudio-pm.gcfg") == ["postgres"]
    assert pm.health(node) == 200
    assert node.http_ok("http://127.0.0.1:4242/__api__/repos") == before
    assert "migrated-canary" in pm.psql("rstudio_pm", "SELECT name FROM repos").split()
    backups = node.output("ls /var/backups/positops").split()
    assert len(backups) == 1 and backups[0].startswith("package_manager-20"), backups
    assert backups[0].endswith("-migrate-to-postgresql")
    kept = "/var/backups/positops/%s" % backups[0]
    assert "migrated-canary" in node.output("sqlite3 %s/rstudio-pm.sqlite 'SELECT name FROM repos'" % kept)
    assert node.exec("test -s %s/database.dump && test -s %s/config-%s.tar.gz" % (kept, kept, pm.hosts()[0]),
                     check=False).returncode == 0
    assert node.exec("ls /etc/rstudio-pm/*.pre-migration", check=False).returncode != 0
    print("package manager migration: %.1f s" % result.seconds)

    again = pm.playbook("migrate_database.yml", extra_vars={"migrate_database_product": "package_manager"},
                        log=pm.dir / "migrate-pm-again.log")
    assert again.rc == 0, again.output[-4000:]
    assert again.changed() == 0, again.recap()
    assert "already on PostgreSQL" in again.output
    print("package manager re-run: %.1f s" % again.seconds)


def test_connect_moves_to_postgres_with_its_jobs(labs):
    connect = labs["connect"]
    node = connect.nodes[0]
    assert provider(node, "/etc/rstudio-connect/rstudio-connect.gcfg") == ["sqlite"]
    node.http_ok("http://127.0.0.1:3939/__emulator__/content?name=migrated-content", method="POST", data="bundle")
    key = json.loads(node.http_ok("http://127.0.0.1:3939/__emulator__/api_keys?name=ops", method="POST"))["key"]
    headers = {"Authorization": "Key " + key}
    content_before = node.http_ok("http://127.0.0.1:3939/__api__/v1/content", headers=headers)
    assert "migrated-content" in content_before
    node.http_ok("http://127.0.0.1:3939/__emulator__/jobs?name=migrated-report&seconds=0.2", method="POST")
    deadline = time.monotonic() + 60
    while '"state": "done"' not in node.http_ok("http://127.0.0.1:3939/__emulator__/jobs"):
        assert time.monotonic() < deadline, "the scheduled job did not finish in 60 s"
        time.sleep(0.5)
    before = node.http_ok("http://127.0.0.1:3939/__emulator__/jobs")

    # Refused while PostgreSQL already holds a table, naming the way out; the node keeps serving on SQLite.
    connect.psql("rstudio_connect", "CREATE TABLE leftover (id int)")
    connect.psql("rstudio_connect", "ALTER TABLE leftover OWNER TO rstudio_connect")
    refused = connect.playbook("migrate_database.yml", extra_vars={"migrate_database_product": "connect"},
                               log=connect.dir / "migrate-connect-refused.log")
    assert refused.rc != 0
    assert "already" in refused.output and "leftover" in refused.output
    assert "migrate_database_if_exists=truncate" in refused.output
    assert connect.health(node) == 200

    started = time.monotonic()
    result = connect.playbook("migrate_database.yml", extra_vars={"migrate_database_product": "connect",
                                                                  "migrate_database_if_exists": "truncate",
                                                                  "migrate_database_check_headers": headers},
                              log=connect.dir / "migrate-connect.log")
    assert result.rc == 0, result.output[-4000:]
    assert provider(node, "/etc/rstudio-connect/rstudio-connect.gcfg") == ["postgres"]
    assert connect.health(node) == 200
    assert node.http_ok("http://127.0.0.1:3939/__emulator__/jobs") == before
    assert "migrated-report" in connect.psql("rstudio_connect", "SELECT name FROM jobs")
    # Compared by the playbook through Connect's API with the key, which still works on PostgreSQL.
    assert task_outcome(result.output, "Check that the node serves the same answer as before") == "ok"
    assert node.http_ok("http://127.0.0.1:3939/__api__/v1/content", headers=headers) == content_before
    assert key not in result.output
    assert connect.psql("rstudio_connect", "SELECT to_regclass('leftover')") == ""
    print("connect migration: %.1f s" % (time.monotonic() - started))

    again = connect.playbook("migrate_database.yml", extra_vars={"migrate_database_product": "connect"},
                             log=connect.dir / "migrate-connect-again.log")
    assert again.rc == 0, again.output[-4000:]
    assert again.changed() == 0, again.recap()
    assert "already on PostgreSQL" in again.output


def back_to_sqlite(pm):
    """The node on SQLite again by hand (the SQLite file is still there)."""
    node = pm.nodes[0]
    node.exec("sed -i 's/^Provider = postgres/Provider = sqlite/' /etc/rstudio-pm/rstudio-pm.gcfg && "
              "systemctl restart rstudio-pm")
    node.wait_http("http://127.0.0.1:4242/__ping__", timeout=120)
    return node


def test_a_failure_after_the_product_stopped_starts_it_again_on_sqlite(labs):
    """PostgreSQL refuses the tool's tables (an event trigger makes every CREATE fail): the tool fails after the
    product was stopped; the rescue puts the SQLite configuration back and starts the product, which serves what it
    served before; with the fault gone, the same command migrates."""
    pm = labs["package_manager"]
    node = back_to_sqlite(pm)
    before = node.http_ok("http://127.0.0.1:4242/__api__/repos")
    pm.psql("rstudio_pm", "CREATE FUNCTION refuse_ddl() RETURNS event_trigger LANGUAGE plpgsql AS "
                          "$$BEGIN RAISE EXCEPTION 'DDL refused by the test'; END$$")
    pm.psql("rstudio_pm", "CREATE EVENT TRIGGER refuse_ddl ON ddl_command_start EXECUTE FUNCTION refuse_ddl()")
    try:
        failed = pm.playbook("migrate_database.yml", extra_vars={"migrate_database_product": "package_manager",
                                                                 "migrate_database_if_exists": "truncate"},
                             log=pm.dir / "migrate-pm-failed.log")
    finally:
        pm.psql("rstudio_pm", "DROP EVENT TRIGGER IF EXISTS refuse_ddl")
        pm.psql("rstudio_pm", "DROP FUNCTION IF EXISTS refuse_ddl()")
    assert failed.rc != 0
    assert "was started again on its SQLite database" in failed.output
    assert provider(node, "/etc/rstudio-pm/rstudio-pm.gcfg") == ["sqlite"]
    assert pm.health(node) == 200
    assert node.http_ok("http://127.0.0.1:4242/__api__/repos") == before
    assert node.exec("ls /root/.positops-migrate-*", check=False).returncode != 0


def test_db_migrate_copies_on_request_and_replaces_what_is_there(labs):
    """migrate_database_method=db_migrate instead of the tool, into a database that already holds the tables."""
    pm = labs["package_manager"]
    # With a row PostgreSQL does not have.
    node = back_to_sqlite(pm)
    node.http_ok("http://127.0.0.1:4242/__api__/repos?name=second-canary", method="POST")
    before = node.http_ok("http://127.0.0.1:4242/__api__/repos")
    assert "second-canary" not in pm.psql("rstudio_pm", "SELECT name FROM repos").split()

    result = pm.playbook("migrate_database.yml", extra_vars={"migrate_database_product": "package_manager",
                                                             "migrate_database_method": "db_migrate",
                                                             "migrate_database_if_exists": "truncate"},
                         log=pm.dir / "migrate-pm-db-migrate.log")
    assert result.rc == 0, result.output[-4000:]
    assert task_outcome(result.output, "Copy with db_migrate") == "changed"
    assert task_outcome(result.output, "Run /opt/rstudio-pm/bin/migrate") == "skipping"
    assert provider(node, "/etc/rstudio-pm/rstudio-pm.gcfg") == ["postgres"]
    assert node.http_ok("http://127.0.0.1:4242/__api__/repos") == before
    assert "second-canary" in pm.psql("rstudio_pm", "SELECT name FROM repos").split()
    assert len(node.output("ls /var/backups/positops").split()) == 3
    print("package manager db_migrate copy: %.1f s" % result.seconds)
