"""product_common's shared_files with the content given (a vaulted key, as both example inventories do): it is
written as given, on ansible-core 2.19 too (delegate_to of the read-the-source task was templated before its
condition and failed on the source that is never chosen then), and no task result holds the key (the loop's items
held it, and the JSON callback, like AWX's, records every result whole)."""

import stat


def test_a_given_key_is_written_as_given(run_playbook, tmp_path):
    key = "9f3b1c7ad2e84f6a0b5c3d9e7f1a2b4c6d8e0f1a3b5c7d9e2f4a6b8c0d1e3f5a"
    path = tmp_path / "rstudio-pm.key"
    result = run_playbook([{"name": "Share", "ansible.builtin.include_role": {
        "name": "positops.ha.product_common", "tasks_from": "shared_files"}, "vars": {
        "product_common_cluster_hosts": ["localhost"],
        "product_common_shared_files": [{"path": str(path), "content": key, "min_bits": 256, "mode": "0600",
                                         "owner": "root", "group": "root"}]}}])
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    assert path.read_text().strip() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key not in result.stdout


def test_without_a_given_key_the_node_read_now_is_the_source(run_playbook, tmp_path):
    """No key given and no pre-flight in this run: the nodes are read now (preflight_read_node.py's fingerprint),
    and the key the node holds is kept as it is; the playbook's output holds its fingerprint at most, never it."""
    key = "5d2e8a1f3c7b9e0d4a6f8b2c1e3d5f7a9b0c2e4f6a8d1b3c5e7f9a0b2d4c6e8f"
    path = tmp_path / "rstudio-pm.key"
    path.write_text(key + "\n")
    path.chmod(0o644)
    result = run_playbook([{"name": "Share", "ansible.builtin.include_role": {
        "name": "positops.ha.product_common", "tasks_from": "shared_files"}, "vars": {
        "product_common_cluster_hosts": ["localhost"],
        "product_common_shared_files": [{"path": str(path), "min_bits": 256, "mode": "0600",
                                         "owner": "root", "group": "root"}]}}])
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    [read] = [task["hosts"]["localhost"] for play in result.json["plays"] for task in play["tasks"]
              if task["task"]["name"].startswith("positops.ha.product_common : Read the fingerprints now")]
    assert not read.get("skipped") and read["results"][0]["rc"] == 0, read
    assert path.read_text().strip() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key not in result.stdout
