"""Single node to HA, database step, where it is refused, fails or is asked otherwise: a Package Manager node built
on SQLite (tests.lab.single_nodes) is refused while PostgreSQL already holds a table, then moved over it with
migrate_database_if_exists=truncate; a second run changes nothing; a failure after the product stopped starts it
again on SQLite; db_migrate copies on request into a database that already holds the tables. The story itself
(Package Manager and Connect moved with what they serve, the backup, the API key kept out of the log) is the
Molecule scenario migrate_database.
"""

import pytest

from tests.lab import single_nodes

pytestmark = pytest.mark.lab

CONFIG = "/etc/rstudio-pm/rstudio-pm.gcfg"
REPOS = "http://127.0.0.1:4242/__api__/repos"
MIGRATE = {"migrate_database_product": "package_manager"}


@pytest.fixture(scope="module")
def pm(lab):
    """pm1 built on SQLite beside PostgreSQL, no load balancer."""
    return single_nodes.build(lab, ["package_manager"])["package_manager"]


def task_outcome(output, task):
    """First word of the result line under ``TASK [task]`` (ok, changed, skipping, fatal)."""
    section = output.split("TASK [%s]" % task, 1)[1].split("TASK [", 1)[0]
    for line in section.splitlines():
        word = line.split(":", 1)[0]
        if word in ("ok", "changed", "skipping", "fatal"):
            return word
    return None


def provider(node):
    return [line.split("=", 1)[1].strip().lower() for line in node.read_file(CONFIG).splitlines()
            if line.strip().lower().startswith("provider")]


def on_sqlite(pm):
    """The node serving on SQLite: a migrated node is put back by hand (its SQLite file is still there)."""
    node = pm.nodes[0]
    if provider(node) != ["sqlite"]:
        node.exec("sed -i 's/^Provider = postgres/Provider = sqlite/' %s && systemctl restart rstudio-pm" % CONFIG)
    node.wait_http("http://127.0.0.1:4242/__ping__", timeout=120)
    return node


def migrate(pm, log_name, **extra):
    result = pm.playbook("migrate_database.yml", extra_vars=dict(MIGRATE, **extra), log=pm.dir / log_name)
    print("%s: %.1f s" % (log_name, result.seconds))
    return result


def on_postgres(pm):
    """The node migrated (over whatever PostgreSQL holds)."""
    node = pm.nodes[0]
    if provider(node) != ["postgres"]:
        result = migrate(pm, "migrate-pm-setup.log", migrate_database_if_exists="truncate")
        assert result.rc == 0, result.output[-4000:]
    return node


def tables_in_postgres(pm):
    """PostgreSQL holds the product's tables (migrated there once, whatever the node runs on now)."""
    if pm.psql("rstudio_pm", "SELECT to_regclass('repos')") != "repos":
        on_sqlite(pm)
        on_postgres(pm)


def test_refused_while_postgres_holds_a_table_then_truncate_replaces_it(pm):
    node = on_sqlite(pm)
    pm.psql("rstudio_pm", "CREATE TABLE IF NOT EXISTS leftover (id int)")
    pm.psql("rstudio_pm", "ALTER TABLE leftover OWNER TO rstudio_pm")

    # Refused, naming the table and the way out; the node keeps serving on SQLite.
    refused = migrate(pm, "migrate-pm-refused.log")
    assert refused.rc != 0
    assert "already" in refused.output and "leftover" in refused.output
    assert "migrate_database_if_exists=truncate" in refused.output
    assert provider(node) == ["sqlite"]
    assert pm.health(node) == 200

    result = migrate(pm, "migrate-pm-truncate.log", migrate_database_if_exists="truncate")
    assert result.rc == 0, result.output[-4000:]
    assert provider(node) == ["postgres"]
    assert pm.health(node) == 200
    assert pm.psql("rstudio_pm", "SELECT to_regclass('leftover')") == ""


def test_second_run_changes_nothing(pm):
    node = on_postgres(pm)
    again = migrate(pm, "migrate-pm-again.log")
    assert again.rc == 0, again.output[-4000:]
    assert again.changed() == 0, again.recap()
    assert "already on PostgreSQL" in again.output
    assert provider(node) == ["postgres"]


def test_a_failure_after_the_product_stopped_starts_it_again_on_sqlite(pm):
    """PostgreSQL refuses the tool's tables (an event trigger makes every CREATE fail): the tool fails after the
    product was stopped; the rescue puts the SQLite configuration back and starts the product, which serves what it
    served before."""
    node = on_sqlite(pm)
    before = node.http_ok(REPOS)
    pm.psql("rstudio_pm", "CREATE FUNCTION refuse_ddl() RETURNS event_trigger LANGUAGE plpgsql AS "
                          "$$BEGIN RAISE EXCEPTION 'DDL refused by the test'; END$$")
    pm.psql("rstudio_pm", "CREATE EVENT TRIGGER refuse_ddl ON ddl_command_start EXECUTE FUNCTION refuse_ddl()")
    try:
        failed = migrate(pm, "migrate-pm-failed.log", migrate_database_if_exists="truncate")
    finally:
        pm.psql("rstudio_pm", "DROP EVENT TRIGGER IF EXISTS refuse_ddl")
        pm.psql("rstudio_pm", "DROP FUNCTION IF EXISTS refuse_ddl()")
    assert failed.rc != 0
    assert "was started again on its SQLite database" in failed.output
    assert provider(node) == ["sqlite"]
    assert pm.health(node) == 200
    assert node.http_ok(REPOS) == before
    assert node.exec("ls /root/.positops-migrate-*", check=False).returncode != 0


def test_db_migrate_copies_on_request_and_replaces_what_is_there(pm):
    """migrate_database_method=db_migrate instead of the tool, into a database that already holds the tables."""
    tables_in_postgres(pm)
    # With a row PostgreSQL does not have.
    node = on_sqlite(pm)
    node.http_ok(REPOS + "?name=second-canary", method="POST")
    before = node.http_ok(REPOS)
    assert "second-canary" not in pm.psql("rstudio_pm", "SELECT name FROM repos").split()
    backups = len(node.output("ls /var/backups/positops").split())

    result = migrate(pm, "migrate-pm-db-migrate.log", migrate_database_method="db_migrate",
                     migrate_database_if_exists="truncate")
    assert result.rc == 0, result.output[-4000:]
    assert task_outcome(result.output, "Copy with db_migrate") == "changed"
    assert task_outcome(result.output, "Run /opt/rstudio-pm/bin/migrate") == "skipping"
    assert provider(node) == ["postgres"]
    assert node.http_ok(REPOS) == before
    assert "second-canary" in pm.psql("rstudio_pm", "SELECT name FROM repos").split()
    assert len(node.output("ls /var/backups/positops").split()) == backups + 1
