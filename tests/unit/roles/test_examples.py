"""The example inventories follow the products' HA rules (issue 15): the variables as Ansible resolves them per host.

The lab test (tests/hardening/test_examples_lab.py) builds each example in containers and runs pre-flight; these
tests check the same group_vars without containers, host by host.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

COLLECTION = pathlib.Path(__file__).resolve().parents[3]
EXAMPLES = COLLECTION / "inventories" / "examples"


def resolve(tmp_path, inventory, expressions, extra_inventory=None, before=(), extra_vars=None, limit=None):
    """``{host: {name: value}}``: each expression templated for each host of the inventory, as a play sees it."""
    link = tmp_path / "collections" / "ansible_collections" / "positops" / "ha"
    if not link.exists():
        link.parent.mkdir(parents=True)
        link.symlink_to(COLLECTION)
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    task = {"name": "Resolve", "ansible.builtin.copy": {
        "dest": str(out) + "/{{ inventory_hostname }}.json",
        "content": "{{ {%s} | to_json }}" % ", ".join("%r: (%s)" % (name, expression)
                                                      for name, expression in expressions.items()),
        "mode": "0644"}, "delegate_to": "localhost"}
    playbook = tmp_path / "resolve.yml"
    playbook.write_text(json.dumps([{"hosts": "all", "gather_facts": False, "tasks": list(before) + [task]}]))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "collections"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_HOME=str(tmp_path / "home"), ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"))
    args = [sys.executable, "-m", "ansible.cli.playbook", "-i", str(inventory)]
    if extra_inventory:
        args += ["-i", str(extra_inventory)]
    variables = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    variables.update(extra_vars or {})
    args += ["-e", json.dumps(variables), str(playbook)]
    if limit:
        args += ["--limit", limit]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {path.stem: json.loads(path.read_text()) for path in out.glob("*.json")}


def test_every_workbench_node_has_its_own_www_host_name(tmp_path):
    """www-host-name is how the nodes and the balancer reach one node: one name for all breaks routing between the
    nodes and makes cluster_node fail on duplicate hosts."""
    values = resolve(tmp_path, EXAMPLES / "on_premises", {
        "name": "workbench_www_host_name | default(inventory_hostname)"})
    workbench = {host: value["name"] for host, value in values.items() if host.startswith("workbench")}
    assert len(workbench) == 2
    assert workbench == {host: host for host in workbench}


def test_a_node_in_two_product_groups_keeps_the_mounts_of_both(tmp_path):
    extra = tmp_path / "both.yml"
    extra.write_text(json.dumps({"all": {"children": {
        "package_manager": {"hosts": {"both.posit.example.com": None}},
        "connect": {"hosts": {"both.posit.example.com": None}}}}}))
    values = resolve(tmp_path, EXAMPLES / "on_premises", {"mounts": "shared_storage_mounts"}, extra_inventory=extra)
    paths = {host: sorted(mount["path"] for mount in value["mounts"]) for host, value in values.items()}
    assert paths["both.posit.example.com"] == ["/srv/shared/rstudio-connect", "/srv/shared/rstudio-pm"]
    assert paths["pm1.posit.example.com"] == ["/srv/shared/rstudio-pm"]
    assert paths["connect1.posit.example.com"] == ["/srv/shared/rstudio-connect"]
    assert paths["workbench1.posit.example.com"] == ["/home", "/srv/shared/rstudio-server"]
    assert paths["lb1.posit.example.com"] == []
    # No two products share a mount point: each export has its own.
    every = [mount["path"] for value in values.values() for mount in value["mounts"]]
    by_path = {}
    for value in values.values():
        for mount in value["mounts"]:
            by_path.setdefault(mount["path"], set()).add(mount["src"])
    assert all(len(sources) == 1 for sources in by_path.values()), by_path
    assert every


def test_each_product_data_directory_lies_on_its_own_share(tmp_path):
    values = resolve(tmp_path, EXAMPLES / "on_premises", {
        "mounts": "shared_storage_mounts | map(attribute='path') | list",
        "data": "[package_manager_data_dir | default(''), connect_data_dir | default(''),"
                " workbench_shared_storage_path | default('')]",
        "groups": "group_names"})
    for host, value in values.items():
        for product, directory in zip(["package_manager", "connect", "workbench"], value["data"]):
            if product in value["groups"]:
                assert any(directory.startswith(path + "/") for path in value["mounts"]), (host, directory)


def test_no_product_directory_is_also_created_with_another_owner(tmp_path):
    """The product roles create their data directories (Connect's root:root 0755); shared_storage_directories
    listing one with another owner or mode changes it back and forth on every run."""
    values = resolve(tmp_path, EXAMPLES / "on_premises", {
        "directories": "shared_storage_directories | default([]) | map(attribute='path') | list",
        "data": "[package_manager_data_dir | default(''), connect_data_dir | default(''),"
                " workbench_shared_storage_path | default('')]"})
    for host, value in values.items():
        assert not set(value["directories"]) & set(value["data"]), host


@pytest.mark.parametrize("example", ["on_premises", "aws_package_manager"])
def test_checksums_are_asked_for(tmp_path, example):
    values = resolve(tmp_path, EXAMPLES / example, {
        "checksums": "[package_manager_package_checksum | default(''), connect_package_checksum | default(''),"
                     " workbench_package_checksum | default('')]",
        "groups": "group_names"})
    for host, value in values.items():
        for product, checksum in zip(["package_manager", "connect", "workbench"], value["checksums"]):
            if product in value["groups"]:
                assert checksum.startswith("sha256:"), (host, product)


def test_the_s3_example_shares_the_key_and_asks_no_shared_data_directory(tmp_path):
    """Package Manager with every storage class in S3: the same encryption key on every node (a key file of the
    record), and Server.DataDir (local on each instance) is not among the directories pre-flight requires to be
    shared - it reported "storage not shared" before."""
    record = {"name": "Read the record", "ansible.builtin.include_role": {
        "name": "positops.ha.package_manager", "tasks_from": "record", "public": True}}
    values = resolve(tmp_path, EXAMPLES / "aws_package_manager", {
        "storage": "package_manager_config.Storage.Default",
        "key": "package_manager_encryption_key",
        "key_files": "package_manager_record.key_files | map(attribute='path') | list",
        "shared_dirs": "package_manager_record.shared_dirs",
        "mounts": "shared_storage_mounts"}, before=[record],
        extra_vars={"vault_package_manager_db_password": "lab-Db-Secret-7", "vault_package_manager_encryption_key": "k" * 64})
    assert len(values) == 2
    for value in values.values():
        assert value["storage"] == "s3"
        assert value["key"] == "k" * 64
        assert value["key_files"] == ["/var/lib/rstudio-pm/rstudio-pm.key"]
        assert value["shared_dirs"] == []
        assert value["mounts"] == []


def test_on_nfs_the_data_directory_stays_shared(tmp_path):
    record = {"name": "Read the record", "ansible.builtin.include_role": {
        "name": "positops.ha.package_manager", "tasks_from": "record", "public": True}}
    values = resolve(tmp_path, EXAMPLES / "on_premises", {"shared_dirs": "package_manager_record.shared_dirs"},
                     before=[record], limit="package_manager",
                     extra_vars={"vault_package_manager_db_password": "x", "vault_package_manager_encryption_key": "k" * 64})
    pm = {host: value for host, value in values.items() if host.startswith("pm")}
    assert pm and all(value["shared_dirs"] == ["/srv/shared/rstudio-pm/data"] for value in pm.values())
