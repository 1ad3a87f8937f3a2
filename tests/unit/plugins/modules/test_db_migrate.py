"""db_migrate the module: arguments, results, check mode, masking of the URI, the missing-psycopg error, and the
benchmark's generator (so benchmarks/db_migrate does not rot). The engine itself is tested in
tests/unit/plugins/module_utils/test_db_migrate.py."""

import importlib.util
import itertools
import os
import sqlite3

import pytest

from ansible_collections.positops.ha.plugins.modules import db_migrate

from tests.unit.pg_server import postgres_server  # noqa: F401  pylint: disable=unused-import

PASSWORD = "module-secret-Zq9"
_databases = itertools.count()
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))


@pytest.fixture
def dest(postgres_server):  # noqa: F811
    name = "dbm_module_%d" % next(_databases)
    postgres_server.create_database(name)
    return postgres_server.uri(name, password=PASSWORD)


@pytest.fixture
def source(tmp_path):
    path = str(tmp_path / "product.sqlite")
    connection = sqlite3.connect(path)
    connection.executescript("""
        CREATE TABLE repos (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created DATETIME);
        CREATE TABLE packages (id INTEGER PRIMARY KEY, repo_id INTEGER REFERENCES repos(id), size INTEGER);
        INSERT INTO repos VALUES (1, 'cran', '2023-01-01 00:00:00'), (2, 'pypi', NULL);
        INSERT INTO packages VALUES (1, 1, 10), (2, 1, 20), (3, 2, NULL);
    """)
    connection.commit()
    connection.close()
    return path


def test_migrates_and_reports_per_table_rows_and_verification(run_module, source, dest):
    failed, result = run_module(db_migrate.main, {"src": source, "dest": dest})
    assert not failed, result.get("msg")
    assert result["changed"] is True
    assert [(t["name"], t["rows"]) for t in result["tables"]] == [("packages", 3), ("repos", 2)]
    assert all(t["seconds"] >= 0 for t in result["tables"])
    assert result["totals"]["tables"] == 2 and result["totals"]["rows"] == 5
    assert result["verification"]["ok"] is True
    assert set(result["verification"]["tables"]) == {"packages", "repos"}
    assert PASSWORD not in result["_raw_output"]

    failed, again = run_module(db_migrate.main, {"src": source, "dest": dest})
    assert not failed and again["changed"] is False and again["verification"]["ok"] is True


def test_check_mode_reports_what_it_would_copy(run_module, source, dest):
    failed, result = run_module(db_migrate.main, {"src": source, "dest": dest, "tables": ["repos"]}, check_mode=True)
    assert not failed, result.get("msg")
    assert result["changed"] is True
    assert result["tables"] == [{"name": "repos", "rows": 2}]
    assert result["statements"] == []
    # Nothing was written: a real run afterwards still has everything to do.
    failed, real = run_module(db_migrate.main, {"src": source, "dest": dest, "tables": ["repos"]})
    assert real["changed"] is True


def test_verify_mode_fails_on_a_difference(run_module, source, dest):
    run_module(db_migrate.main, {"src": source, "dest": dest})
    connection = sqlite3.connect(source)
    connection.execute("INSERT INTO packages VALUES (4, 2, 1)")
    connection.commit()
    connection.close()
    failed, result = run_module(db_migrate.main, {"src": source, "dest": dest, "action": "verify"})
    assert failed
    assert result["msg"] == ("src and dest differ: table packages: row with primary key (id=4) is missing from the "
                             "target")
    assert result["verification"]["tables"]["packages"]["source_rows"] == 4
    assert result["verification"]["tables"]["packages"]["target_rows"] == 3
    assert result["changed"] is False


def test_refusal_message_never_shows_the_password(run_module, source, postgres_server):  # noqa: F811
    uri = postgres_server.uri("no_such_database", password=PASSWORD)
    failed, result = run_module(db_migrate.main, {"src": source, "dest": uri})
    assert failed
    assert result["msg"].startswith("cannot connect to dest")
    assert PASSWORD not in result["_raw_output"]
    assert result["invocation"]["module_args"]["dest"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"


def test_non_empty_target_is_refused_by_default(run_module, source, dest):
    run_module(db_migrate.main, {"src": source, "dest": dest})
    connection = sqlite3.connect(source)
    connection.execute("UPDATE repos SET name = 'bioc' WHERE id = 2")
    connection.commit()
    connection.close()
    failed, result = run_module(db_migrate.main, {"src": source, "dest": dest})
    assert failed
    assert "target tables already hold rows that differ from src: packages, repos" in result["msg"]
    failed, result = run_module(db_migrate.main, {"src": source, "dest": dest, "if_exists": "truncate"})
    assert not failed and result["changed"] is True


def test_bad_batch_size_is_refused(run_module, source, dest):
    failed, result = run_module(db_migrate.main, {"src": source, "dest": dest, "batch_size": 0})
    assert failed
    assert result["msg"] == "batch_size must be a positive number of rows, got 0"


def test_missing_psycopg_names_the_package(run_module, monkeypatch, source, dest):
    monkeypatch.setattr(db_migrate, "HAS_PSYCOPG", False)
    monkeypatch.setattr(db_migrate, "PSYCOPG_IMPORT_ERROR", ImportError("No module named 'psycopg'"))
    failed, result = run_module(db_migrate.main, {"src": source, "dest": dest})
    assert failed
    assert "psycopg (psycopg 3; Debian package python3-psycopg)" in result["msg"]


def test_documentation_matches_argument_spec():
    import yaml

    documented = yaml.safe_load(db_migrate.DOCUMENTATION)["options"]
    spec = db_migrate.argument_spec()
    assert set(documented) == set(spec)
    for name, option in spec.items():
        doc = documented[name]
        assert doc["type"] == option["type"], name
        assert doc.get("default") == option.get("default"), name
        assert doc.get("choices") == option.get("choices"), name
        assert doc.get("required", False) == option.get("required", False), name
        assert doc.get("elements") == option.get("elements"), name
    assert spec["dest"]["no_log"] is True
    for name, entry in yaml.safe_load(db_migrate.RETURN).items():
        assert "sample" in entry, name


GENERATOR = os.path.join(REPO, "benchmarks", "db_migrate", "generate.py")


# benchmarks/ does not ship in the collection, so ansible-test units (which runs on the installed copy) skips this;
# scripts/test runs it with plain pytest on the work tree.
@pytest.mark.skipif(not os.path.exists(GENERATOR), reason="benchmarks/ is not part of the installed collection")
def test_benchmark_generator_makes_a_migratable_database(tmp_path, run_module, dest):
    spec = importlib.util.spec_from_file_location("db_migrate_bench_generate", GENERATOR)
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    path = str(tmp_path / "bench.sqlite")
    counts = generate.generate(path, 400)
    assert sum(counts.values()) == 400
    connection = sqlite3.connect(path)
    classes = set(r[0] for r in connection.execute(
        "SELECT typeof(avatar) FROM users UNION SELECT typeof(score) FROM packages "
        "UNION SELECT typeof(description) FROM packages UNION SELECT typeof(bytes) FROM downloads"))
    connection.close()
    assert classes == {"blob", "real", "text", "integer", "null"}
    failed, result = run_module(db_migrate.main, {"src": path, "dest": dest})
    assert not failed, result.get("msg")
    assert dict((t["name"], t["rows"]) for t in result["tables"]) == counts
    assert result["verification"]["ok"] is True


def test_mode_is_a_deprecated_alias_of_action(run_module, source, dest):
    run_module(db_migrate.main, {"src": source, "dest": dest})
    failed, result = run_module(db_migrate.main, {"src": source, "dest": dest, "mode": "verify"})
    assert not failed, result.get("msg")
    assert result["changed"] is False and result["verification"]["ok"] is True
    # ansible-core 2.19 reports DeprecationSummary objects; older releases plain dicts with msg.
    deprecations = [d["event"]["msg"] if "event" in d else d["msg"] for d in result["deprecations"]]
    assert deprecations == ["Alias 'mode' is deprecated. See the module docs for more information"]
    assert result["deprecations"][0]["version"] == "1.0.0"


def test_a_run_holding_the_schema_makes_the_next_one_fail_naming_it(run_module, source, dest):
    import psycopg

    from ansible_collections.positops.ha.plugins.module_utils._db_migrate.lock import lock_key

    with psycopg.connect(dest, application_name="positops.ha.db_migrate run 0123abcd", autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (lock_key("public"),))
        holder_pid = holder.info.backend_pid
        failed, result = run_module(db_migrate.main, {"src": source, "dest": dest, "lock_timeout": 0})
    assert failed
    assert result["msg"].startswith("another db_migrate run is writing schema public of dest (backend pid %d, "
                                    % holder_pid)
    assert "application_name 'positops.ha.db_migrate run 0123abcd'" in result["msg"]
    assert PASSWORD not in result["_raw_output"]
