"""cluster_node_info: one listing call, records in one shape for both products, clear failures."""

import pytest

from ansible_collections.positops.ha.plugins.modules import cluster_node_info


def run(run_module, fake_cli, call_factory, product, call, check_mode=False):
    fake_cli.script([call] if call else [])
    failed, result = run_module(cluster_node_info.main, dict(product=product, cli_path=fake_cli.path),
                                check_mode=check_mode)
    fake_cli.assert_done()
    return failed, result


@pytest.mark.parametrize("check_mode", [False, True])
def test_package_manager_nodes(run_module, fake_cli, call_factory, cli_output, check_mode):
    failed, result = run(run_module, fake_cli, call_factory, "package_manager",
                         call_factory(["cluster", "nodes"], 0, cli_output("rspm/cluster-nodes-mixed-versions.txt")),
                         check_mode)
    assert not failed and result["changed"] is False
    assert result["nodes"] == [
        {"name": "pm1", "id": None, "version": "2023.12.0-13", "status": "online", "mode": "online", "ipv4": None,
         "port": None, "last_seen": None},
        {"name": "pm2", "id": None, "version": "2023.08.4-20", "status": "offline", "mode": "offline", "ipv4": None,
         "port": None, "last_seen": None},
        {"name": "pm3", "id": None, "version": "2023.08.4-20", "status": "offline", "mode": "offline", "ipv4": None,
         "port": None, "last_seen": None},
    ]
    assert result["commands"] == ["%s cluster nodes" % fake_cli.path]


def test_workbench_nodes_with_missed_check_in(run_module, fake_cli, call_factory, cli_output):
    failed, result = run(run_module, fake_cli, call_factory, "workbench",
                         call_factory(["list-nodes"], 0, cli_output("rstudio-server/list-nodes-mixed.txt")))
    assert not failed and result["changed"] is False
    assert [(n["id"], n["name"], n["status"], n["mode"]) for n in result["nodes"]] == [
        (2, "rsw2", "Online", "online"), (3, "rsw3", "Missed check-in", None), (1, "rsw-primaryyy",
                                                                                "Failed to resolve", None),
        (4, "rsw4", "Invalid permissions on secure cookie key", None), (5, "rsw5", "Offline", "offline"),
        (6, "rsw6", "Invalid secure cookie key", None)]
    assert result["nodes"][1] == {"name": "rsw3", "id": 3, "version": None, "status": "Missed check-in", "mode": None,
                                  "ipv4": "172.18.0.7", "port": 8787, "last_seen": "2026-11-23 12:25:00"}


def test_connect_is_refused_with_the_way_to_do_it(run_module, fake_cli, call_factory):
    failed, result = run(run_module, fake_cli, call_factory, "connect", None)
    assert failed
    assert "Posit Connect has no command to list or change cluster nodes" in result["msg"]
    assert "stopping the rstudio-connect service" in result["msg"]


def test_parse_failure_reports_command_and_output(run_module, fake_cli, call_factory, cli_output):
    failed, result = run(run_module, fake_cli, call_factory, "workbench",
                         call_factory(["list-nodes"], 0, cli_output("rstudio-server/list-nodes-misaligned.txt"),
                                      "some warning"))
    assert failed
    assert result["msg"].startswith("Could not understand the output of `%s list-nodes`" % fake_cli.path)
    assert result["cmd"] == "%s list-nodes" % fake_cli.path
    assert result["rc"] == 0
    assert "a-host-name-far-too-long" in result["stdout"]
    assert result["stderr"] == "some warning"


def test_cli_error_reports_stderr(run_module, fake_cli, call_factory, cli_output):
    failed, result = run(run_module, fake_cli, call_factory, "workbench",
                         call_factory(["list-nodes"], 1, "", cli_output("rstudio-server/error-lb-disabled.txt")))
    assert failed
    assert "failed with exit code 1: Error: load balancing is not enabled" in result["msg"]
    assert result["rc"] == 1


def test_missing_cli(run_module, tmp_path):
    failed, result = run_module(cluster_node_info.main, dict(product="package_manager",
                                                             cli_path=str(tmp_path / "rspm")))
    assert failed
    assert "Posit Package Manager's command line tool was not found" in result["msg"]


def test_not_executable_cli(run_module, tmp_path):
    tool = tmp_path / "rspm"
    tool.write_text("")
    tool.chmod(0o644)
    failed, result = run_module(cluster_node_info.main, dict(product="package_manager", cli_path=str(tool)))
    assert failed and "is not executable at %s" % tool in result["msg"]


def test_product_is_required(run_module):
    failed, result = run_module(cluster_node_info.main, dict())
    assert failed and "product" in result["msg"]
