"""cluster_node_info: one listing (two for an rspm without usable JSON), records in one shape for both products,
clear failures. Each listing variant is fed through the module and its statuses checked."""

import calendar
import time

import pytest

from ansible_collections.positops.ha.plugins.module_utils import _workbench
from ansible_collections.positops.ha.plugins.modules import cluster_node_info

PM_JSON = ["cluster", "nodes", "--output-format=json"]
PM_HUMAN = ["cluster", "nodes"]
# The Workbench listings were recorded at 12:40:05 on the server's clock; the tests run its local zone as UTC.
RECORDED_AT = calendar.timegm((2026, 11, 23, 12, 40, 5, 0, 0, 0))
PM_FIELDS = {"id": None, "ipv4": None, "port": None, "last_seen": None, "health": None, "missed_check_in": None}


@pytest.fixture(autouse=True)
def server_clock(monkeypatch):
    monkeypatch.setattr(_workbench, "wall_clock", lambda: RECORDED_AT)
    monkeypatch.setenv("TZ", "UTC0")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def run(run_module, fake_cli, call_factory, product, call, check_mode=False):
    calls = call if isinstance(call, list) else [call] if call else []
    fake_cli.script(calls)
    failed, result = run_module(cluster_node_info.main, dict(product=product, cli_path=fake_cli.path),
                                check_mode=check_mode)
    fake_cli.assert_done()
    return failed, result


def pm(name, version, status):
    return dict(PM_FIELDS, name=name, version=version, status=status, mode=status.lower())


@pytest.mark.parametrize("check_mode", [False, True])
def test_package_manager_nodes(run_module, fake_cli, call_factory, cli_output, check_mode):
    failed, result = run(run_module, fake_cli, call_factory, "package_manager",
                         call_factory(PM_JSON, 0, cli_output("rspm/cluster-nodes.json")), check_mode)
    assert not failed and result["changed"] is False
    assert result["nodes"] == [pm("pm1", "2023.12.0-13", "online"), pm("pm2", "2023.12.0-13", "offline"),
                               pm("pm3", "2023.08.4-20", "offline")]
    assert result["commands"] == ["%s cluster nodes --output-format=json" % fake_cli.path]


# rspm listing variants: the calls (args, rc, recorded stdout or text, stderr) and (name, status, mode) per node.
PM_VARIANTS = {
    "json": ([(PM_JSON, 0, "@rspm/cluster-nodes.json", "")],
             [("pm1", "online", "online"), ("pm2", "offline", "offline"), ("pm3", "offline", "offline")]),
    "json-exported-field-names": ([(PM_JSON, 0, "@rspm/cluster-nodes-exported-fields.json", "")],
                                  [("pm1", "online", "online"), ("pm2", "offline", "offline")]),
    "flag-ignored-human-without-header": ([(PM_JSON, 0, "@rspm/cluster-nodes-mixed-versions.txt", "")],
                                          [("pm1", "online", "online"), ("pm2", "offline", "offline"),
                                           ("pm3", "offline", "offline")]),
    "flag-refused-human-with-header": ([(PM_JSON, 1, "", "Error: unknown flag: --output-format\n"),
                                        (PM_HUMAN, 0, "@rspm/cluster-nodes-header.txt", "")],
                                       [("pm1", "online", "online"), ("pm2", "offline", "offline"),
                                        ("pm3", "offline", "offline")]),
    "flag-refused-human-reordered-header": ([(PM_JSON, 1, "", "Error: unknown shorthand flag\n"),
                                             (PM_HUMAN, 0, "@rspm/cluster-nodes-header-reordered.txt", "")],
                                            [("pm1", "Online", "online"), ("pm2", "Offline", "offline")]),
    "json-of-another-shape-human-with-extra-columns": ([(PM_JSON, 0, "@rspm/cluster-nodes-unknown-shape.json", ""),
                                                        (PM_HUMAN, 0, "@rspm/cluster-nodes-header-extra-columns.txt",
                                                         "")],
                                                       [("pm1", "online", "online"), ("pm2", "offline", "offline")]),
    "flag-ignored-human-single-spaced-header": ([(PM_JSON, 0, "@rspm/cluster-nodes-header-single-spaced.txt", "")],
                                                [("pm1", "online", "online"), ("pm2", "offline", "offline")]),
}


@pytest.mark.parametrize("variant", sorted(PM_VARIANTS))
def test_package_manager_listing_variants(run_module, fake_cli, call_factory, cli_output, variant):
    calls, expected = PM_VARIANTS[variant]
    failed, result = run(run_module, fake_cli, call_factory, "package_manager", [
        call_factory(args, rc, cli_output(out[1:]) if out.startswith("@") else out, err)
        for args, rc, out, err in calls])
    assert not failed, result
    assert [(n["name"], n["status"], n["mode"]) for n in result["nodes"]] == expected
    assert result["commands"] == [" ".join([fake_cli.path] + args) for args, rc, out, err in calls]
    json_refused = calls[0][2].endswith("unknown-shape.json")
    assert bool(result["_warnings"]) is json_refused


def test_package_manager_unreadable_json_and_human_listing_fail_with_the_output(
        run_module, fake_cli, call_factory, cli_output):
    failed, result = run(run_module, fake_cli, call_factory, "package_manager", [
        call_factory(PM_JSON, 0, '{"nodes": "pm1"}'),
        call_factory(PM_HUMAN, 0, cli_output("rspm/cluster-nodes-truncated.txt"))])
    assert failed and "nodes" not in result
    assert result["msg"] == ("Could not understand the output of `%s cluster nodes`: line 1 has 2 fields, expected 3 "
                             "(hostname version mode) or a header line naming the columns: 'pm1 2023.12.0-13'"
                             % fake_cli.path)
    assert (result["cmd"], result["rc"]) == ("%s cluster nodes" % fake_cli.path, 0)
    assert result["stdout"] == cli_output("rspm/cluster-nodes-truncated.txt")


# rstudio-server list-nodes variants: (id, status, health, mode, missed_check_in) per node at RECORDED_AT.
WB_VARIANTS = {
    "emulator-every-status": ("list-nodes-mixed.txt", [
        (2, "Online", None, "online", False), (3, "Missed check-in", None, None, True),
        (1, "Failed to resolve", None, None, False), (4, "Invalid permissions on secure cookie key", None, None, False),
        (5, "Offline", None, "offline", False), (6, "Invalid secure cookie key", None, None, False)]),
    "docs-example-without-last-seen": ("list-nodes-docs-example.txt", [
        (1, "Failed to resolve", None, None, False), (2, "Online", None, "online", False),
        (3, "Online", None, "online", False)]),
    "announcement-preamble-and-month-names": ("list-nodes-announcement-2021-09.txt", [
        (1, "Online", None, "online", False), (2, "Invalid secure cookie key", None, None, False),
        (3, "Offline", None, "offline", False)]),
    "health-column-and-zone": ("list-nodes-health-zone.txt", [
        (1, "Online", "Healthy", "online", False), (2, "Online", "Unhealthy", None, True),
        (3, "Missed check-in", "Unknown", None, True), (4, "Failed to resolve", None, None, False)]),
    "offsets": ("list-nodes-offsets.txt", [
        (1, "Online", None, "online", False), (2, "Online", None, None, True), (3, "Online", None, "online", False),
        (4, "Offline", None, "offline", False)]),
    "printed-online-but-silent": ("list-nodes-online-but-silent.txt", [
        (1, "Online", None, "online", False), (2, "Online", None, None, True)]),
}


@pytest.mark.parametrize("variant", sorted(WB_VARIANTS))
def test_workbench_listing_variants(run_module, fake_cli, call_factory, cli_output, variant):
    recorded, expected = WB_VARIANTS[variant]
    failed, result = run(run_module, fake_cli, call_factory, "workbench",
                         call_factory(["list-nodes"], 0, cli_output("rstudio-server/" + recorded)))
    assert not failed, result
    assert [(n["id"], n["status"], n["health"], n["mode"], n["missed_check_in"]) for n in result["nodes"]] == expected


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
                                  "ipv4": "172.18.0.7", "port": 8787, "last_seen": "2026-11-23 12:25:00",
                                  "health": None, "missed_check_in": True}


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
