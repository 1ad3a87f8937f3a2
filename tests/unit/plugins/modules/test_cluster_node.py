"""cluster_node, as data: each case gives the module arguments, the CLI calls expected in order (with what the
fake CLI answers: recorded outputs named ``@file``, or ``json@file`` for a recorded rspm listing given in rspm's
JSON format) and the result the module must return."""

import calendar
import json
import threading
import time

import pytest

from ansible_collections.positops.ha.plugins.module_utils import _workbench
from ansible_collections.positops.ha.plugins.module_utils._package_manager import parse_cluster_nodes
from ansible_collections.positops.ha.plugins.modules import cluster_node

JSON = "--output-format=json"
PM_NODES = ["cluster", "nodes", JSON]
PM_NODES_HUMAN = ["cluster", "nodes"]
WB_LIST = ["list-nodes"]
READS = (PM_NODES, PM_NODES_HUMAN, WB_LIST)
LOCAL_RSW1 = {"names": {"rsw1", "rsw1.lab"}, "addresses": {"172.18.0.5"}}
# The Workbench listings were recorded at 12:40:05 on the server's clock; the tests run its local zone as UTC.
RECORDED_AT = calendar.timegm((2026, 11, 23, 12, 40, 5, 0, 0, 0))


def C(args, stdout="", rc=0, stderr="", duration=0.0):
    return dict(args=args, stdout=stdout, rc=rc, stderr=stderr, duration=duration)


ALL_OFFLINE = "pm1 2023.12.0-13 offline\npm2 2023.08.4-20 offline\npm3 2023.08.4-20 offline\n"


# Each case: args, calls, and expect = {failed, msg (fragments), changed, changed_nodes, modes, waited, ...}.
CASES = {
    # ---- Package Manager -------------------------------------------------------------------------------------
    "pm-offline-two": dict(
        args=dict(product="package_manager", nodes=["pm1", "pm2"], state="offline"),
        calls=[C(PM_NODES, "json@rspm/cluster-nodes-all-online.txt"),
               C(["cluster", "offline", "--nodes=pm1,pm2", "--timeout=60", JSON],
                 "json@rspm/cluster-nodes-two-offline.txt",
                 duration=3.24)],
        expect=dict(changed=True, changed_nodes=["pm1", "pm2"], modes={"pm1": "offline", "pm2": "offline"},
                    waited=3.2)),
    "pm-offline-already": dict(
        args=dict(product="package_manager", nodes=["pm1", "pm2"], state="offline"),
        calls=[C(PM_NODES, "json@rspm/cluster-nodes-two-offline.txt")],
        expect=dict(changed=False, changed_nodes=[], modes={"pm1": "offline", "pm2": "offline"}, waited=0)),
    "pm-offline-only-the-ones-online": dict(
        args=dict(product="package_manager", nodes=["pm1", "pm2"], state="offline", timeout=90),
        calls=[C(PM_NODES, "json@rspm/cluster-nodes-pm1-offline.txt"),
               C(["cluster", "offline", "--nodes=pm2", "--timeout=90", JSON],
                 "json@rspm/cluster-nodes-two-offline.txt")],
        expect=dict(changed=True, changed_nodes=["pm2"], modes={"pm1": "offline", "pm2": "offline"})),
    "pm-online-default-state-long-timeout": dict(
        args=dict(product="package_manager", nodes=["pm1", "pm2"], timeout=300),
        calls=[C(PM_NODES, "json@rspm/cluster-nodes-two-offline.txt"),
               C(["cluster", "online", "--nodes=pm1,pm2", "--timeout=300", JSON],
                 "json@rspm/cluster-nodes-all-online.txt",
                 duration=41.0)],
        expect=dict(changed=True, changed_nodes=["pm1", "pm2"], modes={"pm1": "online", "pm2": "online"},
                    waited=41.0)),
    "pm-duplicates-collapse": dict(
        args=dict(product="package_manager", nodes=["pm2", " pm2 "], state="offline"),
        calls=[C(PM_NODES, "json@rspm/cluster-nodes-pm1-offline.txt"),
               C(["cluster", "offline", "--nodes=pm2", "--timeout=60", JSON],
                 "json@rspm/cluster-nodes-two-offline.txt")],
        expect=dict(changed=True, changed_nodes=["pm2"], modes={"pm2": "offline"})),
    "pm-check-mode": dict(
        args=dict(product="package_manager", nodes=["pm1", "pm2"], state="offline"), check_mode=True,
        calls=[C(PM_NODES, "json@rspm/cluster-nodes-pm1-offline.txt")],
        expect=dict(changed=True, changed_nodes=["pm2"], modes={"pm1": "offline", "pm2": "online"}, waited=0)),
    "pm-unknown-node": dict(
        args=dict(product="package_manager", nodes=["pm1", "pm9"], state="offline"),
        calls=[C(PM_NODES, "json@rspm/cluster-nodes-all-online.txt")],
        expect=dict(failed=True, msg=["Unknown Package Manager node(s): pm9.", "Known nodes: pm1, pm2, pm3."],
                    known_nodes=["pm1", "pm2", "pm3"])),
    "pm-timeout": dict(
        args=dict(product="package_manager", nodes=["pm1", "pm2"], state="online", timeout=5),
        calls=[C(PM_NODES, "json@rspm/cluster-nodes-two-offline.txt"),
               C(["cluster", "online", "--nodes=pm1,pm2", "--timeout=5", JSON],
                 "pm1 2023.12.0-13 online\npm2 2023.12.0-13 offline\npm3 2023.12.0-13 online\n", rc=1,
                 stderr="@rspm/error-timeout.txt", duration=5.0)],
        expect=dict(failed=True, msg=["Timed out after 5s waiting for node(s) to be online: pm1 (online), "
                                      "pm2 (offline)."],
                    modes={"pm1": "online", "pm2": "offline"}, waited=5.0, rc=1)),
    "pm-node-vanished-while-running": dict(
        args=dict(product="package_manager", nodes=["pm1"], state="offline"),
        calls=[C(PM_NODES, "json@rspm/cluster-nodes-all-online.txt"),
               C(["cluster", "offline", "--nodes=pm1", "--timeout=60", JSON], rc=1,
                 stderr="Error: unknown node(s): pm1. Known nodes: pm2, pm3\n")],
        expect=dict(failed=True, msg=["rspm does not know node(s) pm1 (known: pm2, pm3)"])),
    "pm-other-cli-error": dict(
        args=dict(product="package_manager", nodes=["pm1"], state="offline"),
        calls=[C(PM_NODES, "json@rspm/cluster-nodes-all-online.txt"),
               C(["cluster", "offline", "--nodes=pm1", "--timeout=60", JSON],
                 rc=1, stderr="@rspm/error-bad-timeout.txt")],
        expect=dict(failed=True, msg=["failed with exit code 1", "flag --timeout"], rc=1,
                    stderr_contains="invalid value")),
    "pm-success-but-listing-disagrees": dict(
        args=dict(product="package_manager", nodes=["pm1"], state="offline"),
        calls=[C(PM_NODES, "json@rspm/cluster-nodes-all-online.txt"),
               C(["cluster", "offline", "--nodes=pm1", "--timeout=60", JSON],
                 "json@rspm/cluster-nodes-all-online.txt")],
        expect=dict(failed=True, msg=["rspm reported success but", "node(s) not offline: pm1 (online)"])),
    "pm-success-but-node-missing": dict(
        args=dict(product="package_manager", nodes=["pm1"], state="offline"),
        calls=[C(PM_NODES, "json@rspm/cluster-nodes-all-online.txt"),
               C(["cluster", "offline", "--nodes=pm1", "--timeout=60", JSON], "pm2 2023.12.0-13 online\n")],
        expect=dict(failed=True, msg=["missing node(s): pm1"])),
    "pm-listing-unparsable": dict(
        args=dict(product="package_manager", nodes=["pm1"], state="offline"),
        calls=[C(PM_NODES, "@rspm/cluster-nodes-truncated.txt")],
        expect=dict(failed=True, msg=["Could not understand the output of", "cluster nodes --output-format=json`",
                                      "line 1 has 2 fields"], rc=0, stdout_contains="pm1 2023.12.0-13")),
    "pm-listing-fails": dict(
        args=dict(product="package_manager", nodes=["pm1"], state="offline"),
        calls=[C(PM_NODES, rc=1, stderr="Error: database is unreachable\n"),
               C(PM_NODES_HUMAN, rc=1, stderr="Error: database is unreachable\n")],
        expect=dict(failed=True, msg=["`%s cluster nodes` failed with exit code 1: Error: database is unreachable"],
                    rc=1)),
    # ---- Package Manager, offline_first: the old nodes offline, then the upgraded ones online, in one task -------
    "pm-offline-first-then-online": dict(
        args=dict(product="package_manager", offline_first=["pm2", "pm3"], offline_timeout=120, nodes=["pm1"],
                  timeout=300),
        calls=[C(PM_NODES, "json@rspm/cluster-nodes-pm1-offline.txt"),
               C(["cluster", "offline", "--nodes=pm2,pm3", "--timeout=120", JSON],
                 ALL_OFFLINE, duration=0.6),
               C(["cluster", "online", "--nodes=pm1", "--timeout=300", JSON],
                 "pm1 2023.12.0-13 online\npm2 2023.08.4-20 offline\npm3 2023.08.4-20 offline\n", duration=5.2)],
        expect=dict(changed=True, changed_nodes=["pm2", "pm3", "pm1"],
                    modes={"pm2": "offline", "pm3": "offline", "pm1": "online"}, waited=5.8)),
    "pm-offline-first-only-the-ones-online": dict(
        # This rspm printed its human listing for the JSON flag: the changes are asked without it.
        args=dict(product="package_manager", offline_first=["pm2", "pm3"], nodes=["pm1"]),
        calls=[C(PM_NODES, "pm1 2023.12.0-13 offline\npm2 2023.08.4-20 offline\npm3 2023.08.4-20 online\n"),
               C(["cluster", "offline", "--nodes=pm3", "--timeout=60"], ALL_OFFLINE),
               C(["cluster", "online", "--nodes=pm1", "--timeout=60"],
                 "pm1 2023.12.0-13 online\npm2 2023.08.4-20 offline\npm3 2023.08.4-20 offline\n")],
        expect=dict(changed=True, changed_nodes=["pm3", "pm1"],
                    modes={"pm2": "offline", "pm3": "offline", "pm1": "online"})),
    "pm-offline-first-already-offline-brings-online-only": dict(
        args=dict(product="package_manager", offline_first=["pm2", "pm3"], nodes=["pm1"]),
        calls=[C(PM_NODES, ALL_OFFLINE),
               C(["cluster", "online", "--nodes=pm1", "--timeout=60"],
                 "pm1 2023.12.0-13 online\npm2 2023.08.4-20 offline\npm3 2023.08.4-20 offline\n")],
        expect=dict(changed=True, changed_nodes=["pm1"],
                    modes={"pm2": "offline", "pm3": "offline", "pm1": "online"})),
    "pm-offline-first-nothing-to-do": dict(
        args=dict(product="package_manager", offline_first=["pm2"], nodes=["pm1"]),
        calls=[C(PM_NODES, "pm1 2023.12.0-13 online\npm2 2023.08.4-20 offline\npm3 2023.08.4-20 offline\n")],
        expect=dict(changed=False, changed_nodes=[], modes={"pm2": "offline", "pm1": "online"}, waited=0)),
    "pm-offline-first-online-already-takes-the-others-offline": dict(
        args=dict(product="package_manager", offline_first=["pm2", "pm3"], nodes=["pm1"]),
        calls=[C(PM_NODES, "json@rspm/cluster-nodes-all-online.txt"),
               C(["cluster", "offline", "--nodes=pm2,pm3", "--timeout=60", JSON],
                 "pm1 2023.12.0-13 online\npm2 2023.08.4-20 offline\npm3 2023.08.4-20 offline\n")],
        expect=dict(changed=True, changed_nodes=["pm2", "pm3"],
                    modes={"pm2": "offline", "pm3": "offline", "pm1": "online"})),
    "pm-offline-first-check-mode": dict(
        args=dict(product="package_manager", offline_first=["pm2", "pm3"], nodes=["pm1"]), check_mode=True,
        calls=[C(PM_NODES, "json@rspm/cluster-nodes-pm1-offline.txt")],
        expect=dict(changed=True, changed_nodes=["pm2", "pm3", "pm1"],
                    modes={"pm2": "online", "pm3": "online", "pm1": "offline"}, waited=0)),
    "pm-offline-first-timeout-leaves-the-online-nodes-alone": dict(
        args=dict(product="package_manager", offline_first=["pm2", "pm3"], offline_timeout=5, nodes=["pm1"],
                  timeout=300),
        calls=[C(PM_NODES, "json@rspm/cluster-nodes-pm1-offline.txt"),
               C(["cluster", "offline", "--nodes=pm2,pm3", "--timeout=5", JSON], "@rspm/cluster-nodes-two-offline.txt",
                 rc=1, stderr="Error: timed out after 5 seconds waiting for node(s) pm3 to be offline\n",
                 duration=5.0)],
        expect=dict(failed=True, stage="offline_first",
                    msg=["Taking pm2, pm3 offline before bringing pm1 online failed (it was not changed): Timed out "
                         "after 5s waiting for node(s) to be offline: pm2 (offline), pm3 (online)."],
                    modes={"pm2": "offline", "pm3": "online"}, rc=1)),
    "pm-offline-first-unknown-node": dict(
        args=dict(product="package_manager", offline_first=["pm2", "pm9"], nodes=["pm1"]),
        calls=[C(PM_NODES, "json@rspm/cluster-nodes-pm1-offline.txt")],
        expect=dict(failed=True, stage="offline_first", msg=["Unknown Package Manager node(s): pm9."],
                    known_nodes=["pm1", "pm2", "pm3"])),
    "pm-offline-first-then-online-fails": dict(
        args=dict(product="package_manager", offline_first=["pm2"], nodes=["pm1"], timeout=5),
        calls=[C(PM_NODES, "json@rspm/cluster-nodes-pm1-offline.txt"),
               C(["cluster", "offline", "--nodes=pm2", "--timeout=60", JSON], "@rspm/cluster-nodes-two-offline.txt"),
               C(["cluster", "online", "--nodes=pm1", "--timeout=5", JSON], "@rspm/cluster-nodes-two-offline.txt",
                 rc=1, stderr="Error: timed out after 5 seconds waiting for node(s) pm1 to be online\n")],
        expect=dict(failed=True, stage="online",
                    msg=["Timed out after 5s waiting for node(s) to be online: pm1 (offline)."], rc=1)),
    # ---- Package Manager listings: JSON first, the human listing when JSON cannot be had or read ------------------
    "pm-json-flag-refused-reads-human-listing": dict(
        args=dict(product="package_manager", nodes=["pm1"], state="offline"),
        calls=[C(PM_NODES, rc=1, stderr="Error: unknown flag: --output-format\n"),
               C(PM_NODES_HUMAN, "@rspm/cluster-nodes-all-online.txt"),
               C(["cluster", "offline", "--nodes=pm1", "--timeout=60"], "@rspm/cluster-nodes-pm1-offline.txt")],
        expect=dict(changed=True, changed_nodes=["pm1"], modes={"pm1": "offline"}, warnings=[])),
    "pm-json-flag-ignored-human-listing-with-header": dict(
        args=dict(product="package_manager", nodes=["pm1", "pm2"], state="offline"),
        calls=[C(PM_NODES, "@rspm/cluster-nodes-header.txt"),
               C(["cluster", "offline", "--nodes=pm1", "--timeout=60"], "@rspm/cluster-nodes-two-offline.txt")],
        expect=dict(changed=True, changed_nodes=["pm1"], modes={"pm1": "offline", "pm2": "offline"})),
    "pm-json-of-another-shape-warns-and-reads-human-listing": dict(
        args=dict(product="package_manager", nodes=["pm2"], state="offline"),
        calls=[C(PM_NODES, "@rspm/cluster-nodes-unknown-shape.json"),
               C(PM_NODES_HUMAN, "@rspm/cluster-nodes-header-extra-columns.txt")],
        expect=dict(changed=False, changed_nodes=[], modes={"pm2": "offline"},
                    warning="Could not read the JSON listing of `%s cluster nodes --output-format=json` (the JSON "
                            "object has no list of nodes under 'nodes' (its keys: cluster))")),
    "pm-json-of-another-shape-and-unreadable-human-listing": dict(
        args=dict(product="package_manager", nodes=["pm2"], state="offline"),
        calls=[C(PM_NODES, "@rspm/cluster-nodes-unknown-shape.json"),
               C(PM_NODES_HUMAN, "@rspm/cluster-nodes-unknown-mode.txt")],
        expect=dict(failed=True, msg=["Could not understand the output of `%s cluster nodes`",
                                      "mode 'draining' is neither online nor offline"], rc=0)),
    "pm-json-exported-field-names": dict(
        args=dict(product="package_manager", nodes=["pm1", "pm2"], state="online"), check_mode=True,
        calls=[C(PM_NODES, "@rspm/cluster-nodes-exported-fields.json")],
        expect=dict(changed=True, changed_nodes=["pm2"], modes={"pm1": "online", "pm2": "offline"})),
    "pm-timeout-error-printed-as-json": dict(
        args=dict(product="package_manager", nodes=["pm2"], state="online", timeout=5),
        calls=[C(PM_NODES, "json@rspm/cluster-nodes-two-offline.txt"),
               C(["cluster", "online", "--nodes=pm2", "--timeout=5", JSON], "json@rspm/cluster-nodes-two-offline.txt",
                 rc=1, stderr='{"error": "timed out after 5 seconds waiting for node(s) pm2 to be online"}\n')],
        expect=dict(failed=True, msg=["Timed out after 5s waiting for node(s) to be online: pm2 (offline)."])),
    "pm-absent-refused": dict(
        args=dict(product="package_manager", nodes=["pm1"], state="absent"), calls=[],
        expect=dict(failed=True, msg=["state=absent is only for Workbench"])),
    "timeout-zero-refused": dict(
        args=dict(product="package_manager", nodes=["pm1"], timeout=0), calls=[],
        expect=dict(failed=True, msg=["timeout must be at least 1 second, got 0."])),
    "name-with-comma-refused": dict(
        args=dict(product="package_manager", nodes=["pm1,pm2"]), calls=[],
        expect=dict(failed=True, msg=["contains a comma or white space"])),
    "empty-name-refused": dict(
        args=dict(product="package_manager", nodes=["pm1", ""]), calls=[],
        expect=dict(failed=True, msg=["nodes contains an empty name"])),
    "empty-list-refused": dict(
        args=dict(product="workbench", nodes=[]), calls=[],
        expect=dict(failed=True, msg=["nodes is empty"])),
    "connect-refused": dict(
        args=dict(product="connect", nodes=["c1"], state="offline"), calls=[],
        expect=dict(failed=True, msg=["Posit Connect has no command", "stopping the rstudio-connect service"])),

    # ---- Workbench -------------------------------------------------------------------------------------------
    "wb-offline-local": dict(
        args=dict(product="workbench", nodes=["rsw1"], state="offline"),
        calls=[C(WB_LIST, "@rstudio-server/list-nodes-two-online.txt"),
               C(["offline"], duration=0.5),
               C(WB_LIST, "@rstudio-server/list-nodes-rsw1-offline.txt")],
        expect=dict(changed=True, changed_nodes=["rsw1"], modes={"rsw1": "offline"}, waited=0.5, sleeps=[],
                    ids={"rsw1": 1})),
    "wb-offline-local-polls-until-offline": dict(
        args=dict(product="workbench", nodes=["RSW1"], state="offline"),
        calls=[C(WB_LIST, "@rstudio-server/list-nodes-two-online.txt"),
               C(["offline"]),
               C(WB_LIST, "@rstudio-server/list-nodes-two-online.txt"),
               C(WB_LIST, "@rstudio-server/list-nodes-two-online.txt"),
               C(WB_LIST, "@rstudio-server/list-nodes-rsw1-offline.txt")],
        expect=dict(changed=True, changed_nodes=["rsw1"], modes={"rsw1": "offline"}, waited=2.0,
                    sleeps=[1.0, 1.0])),
    "wb-offline-by-id": dict(
        args=dict(product="workbench", nodes=["1"], state="offline"),
        calls=[C(WB_LIST, "@rstudio-server/list-nodes-two-online.txt"), C(["offline"]),
               C(WB_LIST, "@rstudio-server/list-nodes-rsw1-offline.txt")],
        expect=dict(changed=True, changed_nodes=["rsw1"], modes={"rsw1": "offline"})),
    "wb-online-local-by-address": dict(
        args=dict(product="workbench", nodes=["172.18.0.5"], state="online"),
        calls=[C(WB_LIST, "@rstudio-server/list-nodes-ip-hosts.txt"), C(["online"]),
               C(WB_LIST, "@rstudio-server/list-nodes-ip-hosts-online.txt")],
        expect=dict(changed=True, changed_nodes=["172.18.0.5"], modes={"172.18.0.5": "online"})),
    "wb-timeout": dict(
        args=dict(product="workbench", nodes=["rsw1"], state="offline", timeout=3),
        calls=[C(WB_LIST, "@rstudio-server/list-nodes-two-online.txt"), C(["offline"])]
        + [C(WB_LIST, "@rstudio-server/list-nodes-two-online.txt")] * 4,
        expect=dict(failed=True, msg=["Timed out after 3s waiting for Workbench node(s) to be offline: "
                                      "rsw1 (ID 1, Online)."], waited=3.0, sleeps=[1.0, 1.0, 1.0])),
    "wb-check-mode": dict(
        args=dict(product="workbench", nodes=["rsw1"], state="offline"), check_mode=True,
        calls=[C(WB_LIST, "@rstudio-server/list-nodes-two-online.txt")],
        expect=dict(changed=True, changed_nodes=["rsw1"], modes={"rsw1": "online"}, waited=0)),
    "wb-already-offline": dict(
        args=dict(product="workbench", nodes=["rsw1"], state="offline"),
        calls=[C(WB_LIST, "@rstudio-server/list-nodes-rsw1-offline.txt")],
        expect=dict(changed=False, changed_nodes=[], modes={"rsw1": "offline"})),
    "wb-remote-node-refused": dict(
        args=dict(product="workbench", nodes=["rsw1", "rsw2"], state="offline"),
        calls=[C(WB_LIST, "@rstudio-server/list-nodes-two-online.txt")],
        expect=dict(failed=True, msg=["acts only on the node it runs on", "rsw2 (ID 2, Online) is not this host",
                                      "delegate_to: rsw2"])),
    "wb-remote-node-already-in-state": dict(
        args=dict(product="workbench", nodes=["rsw2"], state="online"),
        calls=[C(WB_LIST, "@rstudio-server/list-nodes-two-online.txt")],
        expect=dict(changed=False, changed_nodes=[], modes={"rsw2": "online"})),
    "wb-unknown-node": dict(
        args=dict(product="workbench", nodes=["rsw9"], state="offline"),
        calls=[C(WB_LIST, "@rstudio-server/list-nodes-two-online.txt")],
        expect=dict(failed=True, msg=["Unknown Workbench node(s): rsw9.",
                                      "Known nodes: rsw1 (ID 1, Online), rsw2 (ID 2, Online)."])),
    "wb-ambiguous-name": dict(
        args=dict(product="workbench", nodes=["rsw2"], state="online"),
        calls=[C(WB_LIST, "@rstudio-server/list-nodes-duplicate-host.txt")],
        expect=dict(failed=True, msg=["'rsw2' is on 2 rows (IDs 2, 1); give the ID"])),
    "wb-list-nodes-fails": dict(
        args=dict(product="workbench", nodes=["rsw1"], state="offline"),
        calls=[C(WB_LIST, rc=1, stderr="@rstudio-server/error-lb-disabled.txt")],
        expect=dict(failed=True, msg=["load-balancing-enabled=1"], rc=1)),
    "wb-delete-stale-node": dict(
        args=dict(product="workbench", nodes=["rsw-primaryyy"], state="absent"),
        calls=[C(WB_LIST, "@rstudio-server/list-nodes-stale-offline.txt"),
               C(["delete-node", "1"], "@rstudio-server/delete-node-1.txt"),
               C(WB_LIST, "@rstudio-server/list-nodes-deleting.txt"),
               C(WB_LIST, "@rstudio-server/list-nodes-after-delete.txt")],
        expect=dict(changed=True, changed_nodes=["rsw-primaryyy"], nodes=[], sleeps=[1.0], waited=1.0)),
    "wb-delete-missed-check-in-warns": dict(
        args=dict(product="workbench", nodes=["3"], state="absent"),
        calls=[C(WB_LIST, "@rstudio-server/list-nodes-mixed.txt"),
               C(["delete-node", "3"], "Node 3 deleted.\n"),
               C(WB_LIST, "@rstudio-server/list-nodes-mixed-without-3.txt")],
        expect=dict(changed=True, changed_nodes=["rsw3"], warning="has missed its check-in")),
    "wb-delete-printed-online-but-silent-warns": dict(
        args=dict(product="workbench", nodes=["rsw2"], state="absent"),
        calls=[C(WB_LIST, "@rstudio-server/list-nodes-online-but-silent.txt"),
               C(["delete-node", "2"], "Node 2 deleted.\n"),
               C(WB_LIST, ("@rstudio-server/list-nodes-online-but-silent.txt", "\n2 ", None))],
        expect=dict(changed=True, changed_nodes=["rsw2"], nodes=[], warning="Deleting Workbench node rsw2 (ID 2), "
                                                                            "which has missed its check-in")),
    "wb-online-but-silent-is-not-online": dict(
        args=dict(product="workbench", nodes=["rsw2"], state="online"),
        calls=[C(WB_LIST, "@rstudio-server/list-nodes-online-but-silent.txt")],
        expect=dict(failed=True, msg=["rsw2 (ID 2, Online, missed check-in, last seen 2026-11-23 12:25:05) is not "
                                      "this host"])),
    "wb-announcement-layout-offline": dict(
        args=dict(product="workbench", nodes=["rsw1"], state="offline"),
        calls=[C(WB_LIST, "@rstudio-server/list-nodes-announcement-2021-09.txt"), C(["offline"]),
               C(WB_LIST, ("@rstudio-server/list-nodes-announcement-2021-09.txt", "Online ", "Offline"))],
        expect=dict(changed=True, changed_nodes=["rsw1"], modes={"rsw1": "offline"}, ids={"rsw1": 1})),
    "wb-health-column-and-zones": dict(
        args=dict(product="workbench", nodes=["rsw1", "rsw2", "rsw3"], state="online"), check_mode=True,
        calls=[C(WB_LIST, "@rstudio-server/list-nodes-health-zone.txt")],
        expect=dict(failed=True, msg=["rsw2 (ID 2, Online, missed check-in, last seen 2026-Nov-23 12:29:00 UTC), "
                                      "rsw3 (ID 3, Missed check-in) is not this host"])),
    "wb-delete-online-refused": dict(
        args=dict(product="workbench", nodes=["rsw-primaryyy", "rsw2"], state="absent"),
        calls=[C(WB_LIST, "@rstudio-server/list-nodes-stale-offline.txt")],
        expect=dict(failed=True, msg=["Refusing to delete Workbench node(s) that are still serving: "
                                      "rsw2 (ID 2, Online)."])),
    "wb-delete-already-absent": dict(
        args=dict(product="workbench", nodes=["rsw-primaryyy"], state="absent"),
        calls=[C(WB_LIST, "@rstudio-server/list-nodes-after-delete.txt")],
        expect=dict(changed=False, changed_nodes=[], nodes=[])),
    "wb-delete-check-mode": dict(
        args=dict(product="workbench", nodes=["1"], state="absent"), check_mode=True,
        calls=[C(WB_LIST, "@rstudio-server/list-nodes-stale-offline.txt")],
        expect=dict(changed=True, changed_nodes=["rsw-primaryyy"], modes={"rsw-primaryyy": None})),
    "wb-delete-node-not-found": dict(
        args=dict(product="workbench", nodes=["1"], state="absent"),
        calls=[C(WB_LIST, "@rstudio-server/list-nodes-stale-offline.txt"),
               C(["delete-node", "1"], rc=1, stderr="@rstudio-server/error-node-not-found.txt")],
        expect=dict(failed=True, msg=["delete-node 1` failed with exit code 1"], rc=1)),
    "wb-delete-node-unexpected-output": dict(
        args=dict(product="workbench", nodes=["1"], state="absent"),
        calls=[C(WB_LIST, "@rstudio-server/list-nodes-stale-offline.txt"),
               C(["delete-node", "1"], "Deleted.\n")],
        expect=dict(failed=True, msg=["Could not understand the output of", "expected 'Node 1 deleted.'"],
                    stdout_contains="Deleted.")),
    "wb-delete-timeout": dict(
        args=dict(product="workbench", nodes=["1"], state="absent", timeout=2),
        calls=[C(WB_LIST, "@rstudio-server/list-nodes-stale-offline.txt"),
               C(["delete-node", "1"], "@rstudio-server/delete-node-1.txt")]
        + [C(WB_LIST, "@rstudio-server/list-nodes-deleting.txt")] * 3,
        expect=dict(failed=True, msg=["waiting for Workbench node(s) to be absent: rsw-primaryyy (ID 1, Deleting)"])),
}


@pytest.fixture
def identity(monkeypatch):
    monkeypatch.setattr(cluster_node, "local_identity", lambda: LOCAL_RSW1)


@pytest.fixture
def clock(monkeypatch, fake_clock):
    monkeypatch.setattr(cluster_node, "_now", fake_clock.monotonic)
    monkeypatch.setattr(cluster_node, "_sleep", fake_clock.sleep)
    monkeypatch.setattr(_workbench, "wall_clock", lambda: RECORDED_AT)
    monkeypatch.setenv("TZ", "UTC0")
    time.tzset()
    yield fake_clock
    monkeypatch.undo()
    time.tzset()


def _text(value, cli_output):
    """What the fake CLI prints: a recorded output (``@file``), the same rspm listing as rspm's JSON
    (``json@file``), a recorded output edited (``(source, old, new)``; new None drops the lines starting with old),
    or the text itself."""
    if isinstance(value, tuple):
        source, old, new = value
        text = _text(source, cli_output)
        if new is None:
            return "".join(line for line in text.splitlines(True) if not ("\n" + line).startswith(old))
        return text.replace(old, new, 1)
    if value.startswith("json@"):
        nodes = parse_cluster_nodes(cli_output(value[5:]))
        return json.dumps({"nodes": [{"hostname": n["name"], "version": n["version"], "mode": n["status"]}
                                     for n in nodes]}, indent=2) + "\n"
    return cli_output(value[1:]) if value.startswith("@") else value


@pytest.mark.parametrize("name", sorted(CASES))
def test_cluster_node(name, run_module, fake_cli, call_factory, cli_output, identity, clock):
    case = CASES[name]
    fake_cli.script([call_factory(c["args"], c["rc"], _text(c["stdout"], cli_output), _text(c["stderr"], cli_output),
                                  c["duration"]) for c in case["calls"]])
    args = dict(case["args"], cli_path=fake_cli.path)
    failed, result = run_module(cluster_node.main, args, check_mode=case.get("check_mode", False))
    expect = case["expect"]
    fake_cli.assert_done()

    assert failed is expect.get("failed", False), result
    for fragment in expect.get("msg", []):
        assert fragment.replace("%s", fake_cli.path) in result["msg"]
    # Every CLI call made is reported, in order.
    assert result.get("commands", []) == [" ".join([fake_cli.path] + c["args"]) for c in case["calls"]]
    for key in ("changed", "changed_nodes", "waited", "known_nodes", "rc", "nodes", "stage"):
        if key in expect:
            assert result[key] == expect[key], key
    if "modes" in expect:
        # In the order returned: those of offline_first first.
        assert [(node["name"], node["mode"]) for node in result["nodes"]] == list(expect["modes"].items())
    if "ids" in expect:
        assert dict((node["name"], node["id"]) for node in result["nodes"]) == expect["ids"]
    if "sleeps" in expect:
        assert clock.sleeps == expect["sleeps"]
    if "stdout_contains" in expect:
        assert expect["stdout_contains"] in result["stdout"] and "cmd" in result
    if "stderr_contains" in expect:
        assert expect["stderr_contains"] in result["stderr"]
    if "warning" in expect:
        wanted = expect["warning"].replace("%s", fake_cli.path)
        assert any(wanted in warning for warning in result["_warnings"]), result["_warnings"]
    if "warnings" in expect:
        assert result["_warnings"] == expect["warnings"]
    if not failed and not case.get("check_mode"):
        # The CLI's write calls happen only when something changes.
        writes = [c for c in case["calls"] if c["args"] not in READS]
        assert bool(writes) is result["changed"]


def test_check_mode_never_writes():
    for name, case in CASES.items():
        if case.get("check_mode"):
            assert all(c["args"] in READS for c in case["calls"]), name


def test_pm_node_records_have_every_documented_field(run_module, fake_cli, call_factory, cli_output, identity, clock):
    fake_cli.script([call_factory(PM_NODES, 0, _text("json@rspm/cluster-nodes-mixed-versions.txt", cli_output), "")])
    failed, result = run_module(cluster_node.main, dict(product="package_manager", nodes=["pm2"], state="offline",
                                                        cli_path=fake_cli.path))
    assert not failed
    assert result["nodes"] == [{"name": "pm2", "id": None, "version": "2023.08.4-20", "status": "offline",
                                "mode": "offline", "ipv4": None, "port": None, "last_seen": None, "health": None,
                                "missed_check_in": None}]


def test_wb_node_records_have_every_documented_field(run_module, fake_cli, call_factory, cli_output, identity,
                                                     clock):
    fake_cli.script([call_factory(WB_LIST, 0, cli_output("rstudio-server/list-nodes-health-zone.txt"), "")])
    failed, result = run_module(cluster_node.main, dict(product="workbench", nodes=["rsw1"], state="online",
                                                        cli_path=fake_cli.path))
    assert not failed and result["changed"] is False
    assert result["nodes"] == [{"name": "rsw1", "id": 1, "version": None, "status": "Online", "mode": "online",
                                "ipv4": "10.20.0.11", "port": 8787, "last_seen": "2026-Nov-23 12:38:53 UTC",
                                "health": "Healthy", "missed_check_in": False}]


def test_missing_cli_fails_clearly(run_module, tmp_path):
    failed, result = run_module(cluster_node.main, dict(product="workbench", nodes=["rsw1"],
                                                        cli_path=str(tmp_path / "nowhere")))
    assert failed
    assert "Posit Workbench's command line tool was not found or is not executable at" in result["msg"]
    assert "set cli_path" in result["msg"]


@pytest.mark.parametrize("product, path", [("package_manager", "/opt/rstudio-pm/bin/rspm"),
                                           ("workbench", "/usr/sbin/rstudio-server")])
def test_default_cli_paths(run_module, product, path):
    # Neither product is installed where the unit tests run, so the default path shows up in the failure.
    failed, result = run_module(cluster_node.main, dict(product=product, nodes=["n1"]))
    assert failed
    assert "not executable at %s." % path in result["msg"]


# ---- health_url: the node's health URL, read while rspm waits ------------------------------------------------
HEALTH_URL = "http://127.0.0.1:4242/__ping__"
ONLINE_PM1 = ["cluster", "online", "--nodes=pm1", "--timeout=300", JSON]


class HealthAnswers:
    """cluster_node's probe answering from a list of statuses (the last one repeats; None: no answer)."""

    def __init__(self, statuses):
        self.statuses = list(statuses)
        self.urls = []

    def probe(self, module, url, request_timeout):
        self.urls.append(url)
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return (status, None) if status is not None else (None, "Connection refused")


@pytest.fixture
def health(monkeypatch):
    def answering(*statuses):
        answers = HealthAnswers(statuses)
        monkeypatch.setattr(cluster_node, "probe", answers.probe)
        monkeypatch.setattr(cluster_node, "HEALTH_DELAY", 0.01)
        return answers
    return answering


def _pm_online(fake_cli, call_factory, cli_output, online_rc=0, online_stdout="json@rspm/cluster-nodes-all-online.txt",
               online_stderr=""):
    fake_cli.script([call_factory(PM_NODES, 0, _text("json@rspm/cluster-nodes-pm1-offline.txt", cli_output), ""),
                     call_factory(ONLINE_PM1, online_rc, _text(online_stdout, cli_output), online_stderr, 41.0)])


def test_health_url_answering_first_returns_while_rspm_still_waits(run_module, fake_cli, call_factory,
                                                                   cli_output, identity, clock, health):
    _pm_online(fake_cli, call_factory, cli_output)
    answers = health(503, None, 503, 200)
    release = threading.Event()
    scripted = fake_cli.run_command

    def run_command(module, args, **kwargs):
        if args[1:3] == ["cluster", "online"]:
            assert release.wait(30), "the test never released rspm"
        return scripted(module, args, **kwargs)

    fake_cli.run_command = run_command
    try:
        failed, result = run_module(cluster_node.main, dict(product="package_manager", nodes=["pm1"], timeout=300,
                                                            health_url=HEALTH_URL, cli_path=fake_cli.path))
        # rspm has not returned: the module did not wait for it.
        assert fake_cli.expected and fake_cli.expected[0].args == ONLINE_PM1
    finally:
        release.set()
    assert not failed, result
    assert result["healthy"] is True and result["changed"] is True and result["changed_nodes"] == ["pm1"]
    assert [(node["name"], node["mode"], node["status"]) for node in result["nodes"]] == [("pm1", "online", "online")]
    assert answers.urls == [HEALTH_URL] * 4
    # The command it started is reported although it had not returned.
    assert result["commands"][-1] == " ".join([fake_cli.path] + ONLINE_PM1)


def test_health_url_read_after_rspm_returned_first(run_module, fake_cli, call_factory, cli_output, identity, clock,
                                                   health):
    _pm_online(fake_cli, call_factory, cli_output)
    answers = health(503, 503, 200)
    failed, result = run_module(cluster_node.main, dict(product="package_manager", nodes=["pm1"], timeout=300,
                                                        health_url=HEALTH_URL, cli_path=fake_cli.path))
    fake_cli.assert_done()
    assert not failed, result
    assert result["healthy"] is True
    # The listing rspm printed, not the one read before.
    assert dict((node["name"], node["version"]) for node in result["nodes"]) == {"pm1": "2023.12.0-13"}
    assert len(answers.urls) == 3


def test_health_url_never_answering_fails_at_the_timeout(run_module, fake_cli, call_factory, cli_output, identity,
                                                         clock, health):
    fake_cli.script([call_factory(PM_NODES, 0, _text("json@rspm/cluster-nodes-pm1-offline.txt", cli_output), ""),
                     call_factory(["cluster", "online", "--nodes=pm1", "--timeout=5", JSON], 0,
                                  _text("json@rspm/cluster-nodes-all-online.txt", cli_output), "", 1.0)])
    health(503)
    failed, result = run_module(cluster_node.main, dict(product="package_manager", nodes=["pm1"], timeout=5,
                                                        health_url=HEALTH_URL, cli_path=fake_cli.path))
    assert failed
    assert ("pm1 is online in the cluster, but %s did not answer 200 within 5s" % HEALTH_URL) in result["msg"]
    assert "last answer: HTTP 503" in result["msg"] and "Fix: read the node's service log" in result["msg"]
    assert clock.now >= 1000.0 + 5


def test_health_url_rspm_failing_first_fails_as_without_it(run_module, fake_cli, call_factory, cli_output, identity,
                                                           clock, health):
    _pm_online(fake_cli, call_factory, cli_output, online_rc=1, online_stdout="",
               online_stderr="Error: cannot go online, the configuration is invalid: HTTP.Listen\n")
    health(503)
    failed, result = run_module(cluster_node.main, dict(product="package_manager", nodes=["pm1"], timeout=300,
                                                        health_url=HEALTH_URL, cli_path=fake_cli.path))
    assert failed and "healthy" not in result
    assert "failed with exit code 1: Error: cannot go online, the configuration is invalid" in result["msg"]


def test_health_url_a_failure_inside_the_cli_thread_is_reported_once(run_module, fake_cli, call_factory, cli_output,
                                                                     identity, clock, health):
    _pm_online(fake_cli, call_factory, cli_output)
    health(503)
    scripted = fake_cli.run_command

    def run_command(module, args, **kwargs):
        if args[1:3] == ["cluster", "online"]:
            module.fail_json(msg="Error executing command: [Errno 8] Exec format error")
        return scripted(module, args, **kwargs)

    fake_cli.run_command = run_command
    # run_module parses the whole output as one JSON document: a second result printed would break it.
    failed, result = run_module(cluster_node.main, dict(product="package_manager", nodes=["pm1"], timeout=300,
                                                        health_url=HEALTH_URL, cli_path=fake_cli.path))
    assert failed and result["msg"] == "Error executing command: [Errno 8] Exec format error"


def test_health_url_on_a_node_already_online_is_still_read(run_module, fake_cli, call_factory, cli_output, identity,
                                                           clock, health):
    fake_cli.script([call_factory(PM_NODES, 0, _text("json@rspm/cluster-nodes-all-online.txt", cli_output), "")])
    answers = health(None, 200)
    failed, result = run_module(cluster_node.main, dict(product="package_manager", nodes=["pm1"],
                                                        health_url=HEALTH_URL, cli_path=fake_cli.path))
    assert not failed and result["changed"] is False and result["healthy"] is True
    assert len(answers.urls) == 2


def test_health_url_is_not_read_in_check_mode(run_module, fake_cli, call_factory, cli_output, identity, clock,
                                              health):
    fake_cli.script([call_factory(PM_NODES, 0, _text("json@rspm/cluster-nodes-pm1-offline.txt", cli_output), "")])
    answers = health(503)
    failed, result = run_module(cluster_node.main, dict(product="package_manager", nodes=["pm1"],
                                                        health_url=HEALTH_URL, cli_path=fake_cli.path),
                                check_mode=True)
    assert not failed and result["changed_nodes"] == ["pm1"] and "healthy" not in result
    assert answers.urls == []


@pytest.mark.parametrize("state, nodes", [("offline", ["pm1"]), ("online", ["pm1", "pm2"])])
def test_health_url_needs_one_node_coming_online(run_module, fake_cli, identity, clock, health, state, nodes):
    failed, result = run_module(cluster_node.main, dict(product="package_manager", nodes=nodes, state=state,
                                                        health_url=HEALTH_URL, cli_path=fake_cli.path))
    assert failed and "health_url is the health URL of one node coming online; got state=%s and %d node(s)" % (
        state, len(nodes)) in result["msg"]
    assert fake_cli.seen == []


# ---- offline_first: what it is for, and what it refuses ----------------------------------------------------------
@pytest.mark.parametrize("args, fragment", [
    (dict(product="workbench", offline_first=["rsw2"], nodes=["rsw1"]),
     "got product=workbench and state=online. Give product=package_manager with state=online"),
    (dict(product="package_manager", offline_first=["pm2"], nodes=["pm1"], state="offline"),
     "got product=package_manager and state=offline"),
    (dict(product="package_manager", offline_first=["pm2", "pm1"], nodes=["pm1"]),
     "pm1 cannot both go offline first and come online: remove it from offline_first or from nodes."),
    (dict(product="package_manager", offline_first=["pm2", ""], nodes=["pm1"]),
     "offline_first contains an empty name"),
    (dict(product="package_manager", offline_first=["pm2,pm3"], nodes=["pm1"]),
     "Node name 'pm2,pm3' in offline_first contains a comma"),
    (dict(product="package_manager", offline_first=["pm2"], offline_timeout=0, nodes=["pm1"]),
     "offline_timeout must be at least 1 second, got 0."),
])
def test_offline_first_refuses_what_it_cannot_do(run_module, fake_cli, identity, clock, args, fragment):
    failed, result = run_module(cluster_node.main, dict(args, cli_path=fake_cli.path))
    assert failed and fragment in result["msg"], result["msg"]
    assert fake_cli.seen == []


def test_offline_first_with_health_url_returns_at_the_first_healthy_answer(
        run_module, fake_cli, call_factory, cli_output, identity, clock, health):
    fake_cli.script([call_factory(PM_NODES, 0, _text("json@rspm/cluster-nodes-pm1-offline.txt", cli_output), ""),
                     call_factory(["cluster", "offline", "--nodes=pm2,pm3", "--timeout=60", JSON], 0, ALL_OFFLINE,
                                  "", 0.6),
                     call_factory(ONLINE_PM1, 0, _text("json@rspm/cluster-nodes-all-online.txt", cli_output), "",
                                  41.0)])
    answers = health(503, 503, 200)
    failed, result = run_module(cluster_node.main, dict(product="package_manager", offline_first=["pm2", "pm3"],
                                                        nodes=["pm1"], timeout=300, health_url=HEALTH_URL,
                                                        cli_path=fake_cli.path))
    assert not failed, result
    assert result["healthy"] is True and result["changed_nodes"] == ["pm2", "pm3", "pm1"]
    assert [(node["name"], node["mode"]) for node in result["nodes"]] == [
        ("pm2", "offline"), ("pm3", "offline"), ("pm1", "online")]
    # The health URL is read only once pm1 was asked to come online, never while the others were going offline.
    assert result["commands"][1].endswith("cluster offline --nodes=pm2,pm3 --timeout=60 " + JSON)
    assert len(answers.urls) == 3
