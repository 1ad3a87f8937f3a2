"""Task files avoid what works only on some ansible-core or community.postgresql releases.

- ``omit`` inside a task's ``vars`` (or inside a list or dict passed as a module argument) drops out only on
  ansible-core 2.19; before it, the placeholder string stays in the value (the encryption key was silently not shared).
- community.postgresql deprecated the ``port`` alias (removed in 5.0.0): its modules get ``login_port``.
"""

import pathlib

import pytest
import yaml

COLLECTION = pathlib.Path(__file__).resolve().parents[3]
TASK_FILES = sorted(path for path in (COLLECTION / "roles").glob("*/tasks/*.yml"))


def tasks(node):
    """Every task mapping of a task file, blocks included."""
    if isinstance(node, list):
        for item in node:
            yield from tasks(item)
    elif isinstance(node, dict):
        yield node
        for key in ("block", "rescue", "always"):
            if key in node:
                yield from tasks(node[key])


def strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def nested_values(task):
    """Values where an omit would be nested: task vars, and list or dict values of module arguments."""
    yield from strings(task.get("vars") or {})
    for key, value in task.items():
        if "." in key and isinstance(value, dict):
            for argument in value.values():
                if isinstance(argument, (dict, list)):
                    yield from strings(argument)


@pytest.mark.parametrize("path", TASK_FILES, ids=lambda path: str(path.relative_to(COLLECTION)))
def test_no_omit_nested_in_data(path):
    data = yaml.safe_load(path.read_text()) or []
    found = [value for task in tasks(data) for value in nested_values(task) if "omit" in value]
    assert not found, "%s: omit nested in data: %s" % (path.name, found)


@pytest.mark.parametrize("path", TASK_FILES, ids=lambda path: str(path.relative_to(COLLECTION)))
def test_community_postgresql_modules_get_login_port(path):
    data = yaml.safe_load(path.read_text()) or []
    for task in tasks(data):
        for key, value in task.items():
            if key.startswith("community.postgresql.") and isinstance(value, dict):
                assert "port" not in value, "%s: %s uses the deprecated alias port" % (path.name, task.get("name"))
