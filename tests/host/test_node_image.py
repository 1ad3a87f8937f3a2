"""The lab's node image is a bare Debian 12 cloud VM: nothing a role, module or playbook installs is pre-baked.

The roles' own apt tasks are read from the tree, so a package added to a role can never also be added to the image
without this test failing; when the image is built, its dpkg database is checked too.
"""

import pathlib
import re
import subprocess

import pytest
import yaml

from tests.lab import image

REPO = pathlib.Path(__file__).resolve().parents[2]
# Installed by the collection (roles, playbooks) or by Ansible's modules for themselves (apt installs python3-apt).
INSTALLED_BY_THE_COLLECTION_OR_ANSIBLE = {"python3-apt", "python3-psycopg", "sqlite3", "chrony", "haproxy",
                                          "postgresql", "acl"}


def _tasks(node):
    if isinstance(node, list):
        for item in node:
            yield from _tasks(item)
    elif isinstance(node, dict):
        yield node
        for key in ("block", "rescue", "always", "tasks", "pre_tasks", "post_tasks", "handlers"):
            if key in node:
                yield from _tasks(node[key])


def apt_packages_in_the_collection():
    """Every package name an ansible.builtin.apt task of roles/ or playbooks/ installs (templated names cut at {{)."""
    names = set()
    for path in list((REPO / "roles").rglob("*.yml")) + list((REPO / "playbooks").rglob("*.yml")):
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            continue
        for task in _tasks(data):
            args = task.get("ansible.builtin.apt") or task.get("apt")
            if isinstance(args, dict) and "name" in args:
                wanted = args["name"] if isinstance(args["name"], list) else [args["name"]]
                for name in map(str, wanted):
                    literal, expression = (name.split("{{", 1) + [""])[:2]
                    # "postgresql-{{ v }}" gives postgresql; "{{ ['haproxy'] + ... }}" gives its quoted names.
                    names.update([literal.rstrip("-")] if literal else re.findall(r"'([a-z0-9][a-z0-9.+-]*)'",
                                                                                  expression))
    return names


def test_the_image_holds_nothing_the_collection_installs():
    installed = apt_packages_in_the_collection()
    assert {"chrony", "haproxy", "postgresql", "python3-psycopg", "sqlite3"} <= installed, installed
    assert not set(image.PACKAGES) & (installed | INSTALLED_BY_THE_COLLECTION_OR_ANSIBLE)
    assert "curl" not in image.PACKAGES  # the lab's probes use python3, as the roles do


def test_the_built_image_has_none_of_them():
    tag = image.image_tag()
    if subprocess.run(["docker", "image", "inspect", tag], capture_output=True, check=False).returncode != 0:
        pytest.skip("image %s is not built on this host (scripts/setup builds it)" % tag)
    listing = subprocess.run(["docker", "run", "--rm", "--entrypoint", "dpkg-query", tag, "-W",
                              "-f", "${Package} ${db:Status-Status}\n"], capture_output=True, text=True,
                             check=True).stdout
    present = {line.split()[0] for line in listing.splitlines() if line.endswith(" installed")}
    forbidden = (apt_packages_in_the_collection() | INSTALLED_BY_THE_COLLECTION_OR_ANSIBLE | {"curl"}) & present
    assert not {name for name in forbidden if not name.startswith("postgresql-common")}, forbidden
