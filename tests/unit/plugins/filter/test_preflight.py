"""Pre-flight verdicts: every check function with its good case and each bad case, and the filters around them.

Each check takes the readings (node -> what the role read there) and the product record, and returns findings
``{node, check, problem, fix, level}``. The records below are trimmed copies of the product roles' records.
"""

import base64
import copy
import hashlib

import pytest
from ansible.module_utils import _internal as ansible_internal

# Importing controller code (ansible.errors, the filter plugins) marks the whole process as the controller, which
# sends module warnings to the display instead of the module result; the module tests that pytest runs later in
# the same process (plain `pytest tests/unit`; ansible-test runs them apart) would lose their warnings. Undo the
# mark after the imports, and set it only while these controller-side tests run.
_WAS_CONTROLLER = ansible_internal.is_controller
from ansible.errors import AnsibleFilterError  # noqa: E402

from ansible_collections.positops.ha.plugins.filter.preflight_config import preflight_config  # noqa: E402
from ansible_collections.positops.ha.plugins.filter.preflight_key_source import preflight_key_source  # noqa: E402
from ansible_collections.positops.ha.plugins.filter.preflight_problems import preflight_problems  # noqa: E402
from ansible_collections.positops.ha.plugins.module_utils import _preflight as pf  # noqa: E402

ansible_internal.is_controller = _WAS_CONTROLLER


@pytest.fixture(autouse=True)
def _controller(monkeypatch):
    monkeypatch.setattr(ansible_internal, "is_controller", True)


PM_KEY = "/var/lib/rstudio-pm/rstudio-pm.key"
KEY_A = hashlib.sha256(b"cluster-key-a").hexdigest()
KEY_B = hashlib.sha256(b"fresh-key-b").hexdigest()

PM = {
    "name": "package_manager", "label": "Posit Package Manager", "group": "package_manager",
    "package": "rstudio-pm", "service": "rstudio-pm", "version": "2023.12.0-13",
    "version_var": "package_manager_version",
    "accounts": [{"user": "rstudio-pm", "group": "rstudio-pm"}],
    "config_dir": "/etc/rstudio-pm", "config_files": [{"path": "/etc/rstudio-pm/rstudio-pm.gcfg", "format": "ini"}],
    "node_keys": ["rstudio-pm.gcfg:Server.HostName"],
    "secret_keys": ["Postgres.URL", "Postgres.UsageDataURL", "Postgres.Password"],
    "key_files": [{"path": PM_KEY, "mode": "0600", "name": "encryption key", "var": "package_manager_encryption_key",
                   "given_fingerprint": ""}],
    "data_dir": "/srv/shared/rstudio-pm", "shared_dirs": ["/srv/shared/rstudio-pm"],
    "database": {"host": "db", "port": 5432, "name": "rstudio_pm", "user": "rstudio_pm", "password": "s3cr3t-Pw"},
    "preflight": {},
}

CONNECT = dict(PM, **{
    "name": "connect", "label": "Posit Connect", "group": "connect", "package": "rstudio-connect",
    "service": "rstudio-connect", "version_var": "connect_version", "config_dir": "/etc/rstudio-connect",
    "config_files": [{"path": "/etc/rstudio-connect/rstudio-connect.gcfg", "format": "ini"}],
    "node_keys": ["rstudio-connect.gcfg:Metrics.DataPath", "rstudio-connect.gcfg:Applications.ScheduleConcurrency"],
    "key_files": [], "data_dir": "/srv/shared/rstudio-connect", "shared_dirs": ["/srv/shared/rstudio-connect"],
    "preflight": {"metrics_path": {"var": "connect_metrics_data_path", "default_data_dir": "/var/lib/rstudio-connect"},
                  "schedule_concurrency": {"var": "connect_schedule_concurrency", "default": 2}},
})

WORKBENCH = dict(PM, **{
    "name": "workbench", "label": "Posit Workbench", "group": "workbench", "package": "rstudio-workbench",
    "service": "rstudio-server", "version_var": "workbench_version", "config_dir": "/etc/rstudio",
    "config_files": [{"path": "/etc/rstudio/%s" % name, "format": "key_value"}
                     for name in ("rserver.conf", "load-balancer", "file-locks", "database.conf")],
    "node_keys": ["load-balancer:www-host-name", "rserver.conf:www-address", "rserver.conf:www-port"],
    "secret_keys": ["password", "connection-uri"], "key_files": [],
    "data_dir": "/srv/shared/rstudio-server/shared-storage", "shared_dirs": ["/srv/shared/rstudio-server/shared-storage"],
    "preflight": {"lock_type": {"var": "workbench_lock_type", "default": "linkbased", "paths": ["/home"]},
                  "locktest": {"enabled": True, "dir": "/home", "tool": "/usr/lib/rstudio-server/bin/locktester"}},
})

NODES = ("n1", "n2", "n3")
LOCAL_MOUNTS = {"proc_mounts": "overlay / overlay rw 0 0\n/dev/vdb /srv/shared ext4 rw 0 0\n", "fstab": "",
                "paths": {}}


def gcfg(host, extra=""):
    return ("[Server]\nDataDir = /srv/shared/rstudio-pm\nHostName = %s\n[Postgres]\n"
            "URL = postgres://rstudio_pm:s3cr3t-Pw@db:5432/rstudio_pm\n%s" % (host, extra))


def config(files, record=None, settings=None):
    return pf.config_entries(files, (record or PM)["secret_keys"], settings or {})


def readings(nodes=NODES, **per_node):
    """A fit cluster of ``nodes``; ``per_node`` maps a reading key to a function node -> value."""
    result = {}
    for index, node in enumerate(nodes):
        reading = {
            "version": "2023.12.0-13",
            "accounts": {"rstudio-pm": {"uid": "2101", "gid": "2101", "group_gid": "2101"}},
            "config": config({"rstudio-pm.gcfg": gcfg(node)}),
            "keys": {PM_KEY: {"exists": True, "mode": "0600", "fingerprint": KEY_A}},
            "dirs": {"/srv/shared/rstudio-pm": "inode 12, entries abcd"},
            "mounts": LOCAL_MOUNTS,
            "database": {"checked": True, "available": True, "error": ""},
            "planned": {
                "config": config({"rstudio-pm.gcfg": {"Server": {"DataDir": "/srv/shared/rstudio-pm", "HostName": node}}}),
                "settings": {}, "mounts": [], "storage_type": "nfs",
            },
        }
        for key, value in per_node.items():
            reading[key] = value(node, index) if callable(value) else copy.deepcopy(value)
        result[node] = reading
    return result


def only(findings, check=None, level=None):
    return [f for f in findings if (check is None or f["check"] == check) and (level is None or f["level"] == level)]


# ---- findings and masking ----------------------------------------------------------------------------------------

def test_finding_refuses_an_unknown_level_and_renders_one_line():
    with pytest.raises(pf.PreflightError, match="level must be one of"):
        pf.finding("n1", "x", "y", level="fatal")
    item = pf.finding("n1", "key mode", "bad mode.", "chmod it.", "repair")
    assert pf.render(item) == "[key mode] n1: bad mode. Fix: chmod it."
    assert pf.render(pf.finding("", "c", "p"), "Posit Connect") == "[c] Posit Connect: p"


@pytest.mark.parametrize("name, patterns, secret", [
    ("rstudio-pm.gcfg:Postgres.URL", ["Postgres.URL"], True),
    ("rstudio-connect.gcfg:LDAP.BindPassword", [], True),
    ("rstudio-connect.gcfg:SMTP.Password", [], True),
    ("rstudio-connect.gcfg:OAuth2.ClientSecret", [], True),
    ("rstudio-connect.gcfg:Authentication.APIToken", [], True),
    ("rstudio-pm.gcfg:Server.EncryptionKeyPath", [], True),
    ("database.conf:passwd", [], True),
    ("secrets.conf:anything", [], True),
    ("rstudio-connect.gcfg:Server.DataDir", [], False),
    ("rstudio-connect.gcfg:OAuth2.ClientId", ["*.clientid"], True),
    ("database.conf:connection-uri", ["connection-uri"], True),
    ("rserver.conf:www-port", ["database.conf:*"], False),
])
def test_is_secret(name, patterns, secret):
    assert pf.is_secret(name, patterns) is secret


def test_mask_value_hides_secrets_and_credentials_but_keeps_them_comparable():
    masked = pf.mask_value("x:SMTP.Password", "hunter2")
    assert "hunter2" not in masked and masked == pf.mask_value("y:LDAP.Password", "hunter2")
    assert masked != pf.mask_value("x:SMTP.Password", "hunter3")
    url = pf.mask_value("x:Metrics.GraphiteURL", "https://metrics:topsecret@graphite:2003/x")
    assert "topsecret" not in url and url.startswith("https://metrics:<secret sha256:") and url.endswith("@graphite:2003/x")
    inline = pf.mask_value("x:Server.ExtraArgs", "host=db user=a password=topsecret&sslmode=require")
    assert "topsecret" not in inline and inline.endswith("&sslmode=require")
    assert pf.mask_value("x:Server.DataDir", "/srv/shared") == "/srv/shared"
    assert pf.mask_value("x:Bare", None) is None


def test_parse_config_text_reads_ini_gcfg_and_key_value_files():
    text = ('# comment\n; other\n\nwww-port=8787\n[Server]\n DataDir = "/srv/a b"\nDebug\n[Applications]\n'
            'ScheduleConcurrency=0\n')
    assert pf.parse_config_text(text) == [("www-port", "8787"), ("Server.DataDir", "/srv/a b"), ("Server.Debug", None),
                                          ("Applications.ScheduleConcurrency", "0")]


def test_flatten_config_turns_a_planned_configuration_into_entries():
    assert pf.flatten_config({"Server": {"DataDir": "/d", "Port": 1}, "www-port": 8787, "on": True}) == [
        ("Server.DataDir", "/d"), ("Server.Port", "1"), ("on", "1"), ("www-port", "8787")]


def test_config_entries_masks_secrets_and_returns_settings_unmasked():
    result = pf.config_entries({"rstudio-pm.gcfg": gcfg("n1", "[SMTP]\nPassword = hunter2\n"), "junk.bin": None},
                               PM["secret_keys"], {"host": "rstudio-pm.gcfg:server.hostname", "none": "x:y"})
    lines = [" = ".join(str(part) for part in entry) for entry in result["entries"]]
    assert not any("s3cr3t" in line or "hunter2" in line for line in lines), lines
    assert ["rstudio-pm.gcfg:Server.HostName", "n1"] in result["entries"]
    assert ["junk.bin:", "<unreadable or binary file>"] in result["entries"]
    assert result["settings"] == {"host": "n1", "none": None}
    assert result["files"] == ["junk.bin", "rstudio-pm.gcfg"]


def test_config_entries_refuses_a_setting_that_names_a_secret_and_bad_input():
    with pytest.raises(pf.PreflightError, match="secret key"):
        pf.config_entries({"f": "Password=x"}, (), {"pw": "f:Password"})
    with pytest.raises(pf.PreflightError, match="mapping of file name"):
        pf.config_entries(["f"], (), {})


# ---- version, accounts ---------------------------------------------------------------------------------------------

def test_version_mix_good_none_installed_and_mixed():
    assert pf.check_version_mix(readings(), PM) == []
    skipped = pf.check_version_mix(readings(version=""), PM)
    assert [f["level"] for f in skipped] == ["skipped"] and "not installed on any node" in skipped[0]["problem"]
    mixed = pf.check_version_mix(readings(version=lambda n, i: "2023.08.4-20" if n == "n3" else "2023.12.0-13"), PM)
    assert [(f["node"], f["level"]) for f in mixed] == [("n3", "stop")]
    assert "rolling_upgrade -e rolling_upgrade_product=package_manager -e package_manager_version=2023.12.0-13" in \
        mixed[0]["fix"]
    # The newest version is named even when it is the minority (an upgrade stopped after the first node).
    ahead = pf.check_version_mix(readings(version=lambda n, i: "2024.04.0-1" if n == "n1" else "2023.12.0-13"), PM)
    assert ahead[0]["node"] == "n1" and "the newest the nodes run (2024.04.0-1)" in ahead[0]["fix"]


def test_accounts_good_against_declared_and_majority():
    assert pf.check_accounts(readings(), PM, [{"name": "rstudio-pm", "uid": 2101, "gid": 2101}]) == []
    declared = pf.check_accounts(readings(), PM, [{"name": "rstudio-pm", "uid": 2001, "gid": 2001}])
    assert [f["node"] for f in declared] == list(NODES) and "(node_base_accounts)" in declared[0]["problem"]
    odd = readings(accounts=lambda n, i: {"rstudio-pm": {"uid": "2878" if n == "n2" else "2101", "gid": "2101",
                                                         "group_gid": "2101"}})
    found = pf.check_accounts(odd, PM)
    assert [f["node"] for f in found] == ["n2"] and "usermod -u 2101 rstudio-pm" in found[0]["fix"]
    assert "2 of 3 nodes" in found[0]["problem"]


def test_accounts_that_exist_nowhere_are_skipped():
    found = pf.check_accounts(readings(accounts={"rstudio-pm": {"uid": "", "gid": "", "group_gid": ""}}), PM)
    assert [f["level"] for f in found] == ["skipped"]


# ---- configuration -------------------------------------------------------------------------------------------------

def test_config_drift_good_and_per_node_keys_left_out():
    assert pf.check_config_drift(readings(), PM) == []


def test_config_drift_in_a_file_site_writes_is_repaired_by_site():
    smtp = "[SMTP]\nPassword = hunter2\n"
    drifted = readings(config=lambda n, i: config({"rstudio-pm.gcfg": gcfg(n, smtp if n == "n3" else "")}))
    found = pf.check_config_drift(drifted, PM)
    assert [(f["node"], f["check"], f["level"]) for f in found] == [("n3", "config drift", "repair")]
    assert "only here: rstudio-pm.gcfg:SMTP.Password = <secret sha256:" in found[0]["problem"]
    assert "hunter2" not in found[0]["problem"] and "s3cr3t" not in str(found)
    assert "run playbooks/site.yml" in found[0]["fix"]


def test_config_drift_in_a_file_site_does_not_write_stops():
    drifted = readings(config=lambda n, i: config(dict({"rstudio-pm.gcfg": gcfg(n)},
                                                       **({"extra.conf": "a=1\n"} if n == "n2" else {}))))
    found = pf.check_config_drift(drifted, PM)
    assert [(f["node"], f["level"]) for f in found] == [("n2", "stop")]
    assert "files only here: extra.conf" in found[0]["problem"]
    assert "/etc/rstudio-pm/extra.conf" in found[0]["fix"] and "site.yml does not write it" in found[0]["fix"]


def test_config_drift_the_inventory_causes_stops_and_is_reported_as_inventory_drift():
    def planned(node, index):
        data = {"Server": {"DataDir": "/srv/shared/rstudio-pm", "HostName": node}}
        if node == "n1":
            data["Server"]["Debug"] = "true"
        return {"config": config({"rstudio-pm.gcfg": data}), "settings": {}, "mounts": []}
    drifted = readings(planned=planned,
                       config=lambda n, i: config({"rstudio-pm.gcfg": gcfg(n, "Debug = true\n" if n == "n1" else "")}))
    assert [(f["node"], f["level"]) for f in pf.check_config_drift(drifted, PM)] == [("n1", "stop")]
    inventory = pf.check_planned_config(drifted, PM)
    assert [(f["node"], f["check"]) for f in inventory] == [("n1", "inventory drift")]
    assert "only here: rstudio-pm.gcfg:Server.Debug = true" in inventory[0]["problem"]
    assert pf.check_planned_config(readings(), PM) == []


def test_config_drift_ignores_nodes_without_configuration_and_single_nodes():
    assert pf.check_config_drift(readings(config=lambda n, i: config({} if n != "n1" else {"x": "a=1"})), PM) == []
    assert pf.check_config_drift(readings(nodes=("n1",)), PM) == []


# ---- keys ------------------------------------------------------------------------------------------------------------

KEY = PM["key_files"][0]


@pytest.mark.parametrize("holders, given, group, source, node", [
    ({"n1": KEY_A, "n2": KEY_A, "n3": KEY_A}, "", None, "node", "n1"),
    # n1 was rebuilt: its package may make a new key during the run; before the run it held none.
    ({"n1": "", "n2": KEY_A, "n3": KEY_A}, "", None, "node", "n2"),
    ({"n1": KEY_B, "n2": KEY_A, "n3": KEY_A}, "", None, "conflict", ""),
    ({"n1": KEY_B, "n2": KEY_A, "n3": KEY_A}, KEY_A, None, "given", ""),
    ({"n1": "", "n2": "", "n3": ""}, "", None, "new", ""),
    ({"n1": ""}, "", ["n1", "n2", "n3"], "unknown", ""),
    ({"n1": KEY_A}, "", ["n1", "n2"], "node", "n1"),
])
def test_key_source(holders, given, group, source, node):
    decision = pf.key_source(dict(KEY, given_fingerprint=given), holders, group)
    assert (decision["source"], decision["node"]) == (source, node)
    if source in ("node", "given"):
        assert decision["fingerprint"] == KEY_A


def test_key_source_refuses_bad_holders():
    with pytest.raises(pf.PreflightError, match="holders must map"):
        pf.key_source(KEY, ["n1"])


def test_key_source_problem_lists_nodes_and_fingerprints_never_keys():
    decision = pf.key_source(KEY, {"n1": KEY_B, "n2": KEY_A})
    problem, fix = pf.key_source_problem(KEY, decision, PM)
    assert "n1 %s, n2 %s" % (KEY_B[:16], KEY_A[:16]) in problem and "package_manager_encryption_key" in fix
    unknown = pf.key_source(KEY, {"n1": ""}, ["n1", "n2"])
    assert "n2 of the inventory group package_manager were not read" in pf.key_source_problem(KEY, unknown, PM)[0]
    assert pf.key_source_problem(KEY, pf.key_source(KEY, {"n1": KEY_A})) is None


def test_keys_good_and_rebuilt_node_needs_nothing():
    assert pf.check_keys(readings(), PM) == []
    rebuilt = readings(keys=lambda n, i: {PM_KEY: {"exists": n != "n1", "mode": "0600",
                                                   "fingerprint": KEY_A if n != "n1" else ""}})
    assert pf.check_keys(rebuilt, PM) == []


def test_key_mode_is_repaired_by_site():
    found = pf.check_keys(readings(keys=lambda n, i: {PM_KEY: {"exists": True, "mode": "0644" if n == "n2" else "0600",
                                                               "fingerprint": KEY_A}}), PM)
    assert [(f["node"], f["check"], f["level"]) for f in found] == [("n2", "key mode", "repair")]
    assert "chmod 0600 %s" % PM_KEY in found[0]["fix"]


def test_keys_that_disagree_without_a_given_key_stop_every_holder():
    found = pf.check_keys(readings(keys=lambda n, i: {PM_KEY: {"exists": True, "mode": "0600",
                                                               "fingerprint": KEY_B if n == "n2" else KEY_A}}), PM)
    assert [(f["node"], f["check"], f["level"]) for f in found] == [(n, "key mismatch", "stop") for n in NODES]
    assert "n1 %s, n2 %s, n3 %s" % (KEY_A[:16], KEY_B[:16], KEY_A[:16]) in found[0]["problem"]
    assert KEY_A not in found[0]["problem"]


def test_keys_that_differ_from_the_given_key_are_repaired_by_site():
    record = dict(PM, key_files=[dict(KEY, given_fingerprint=KEY_A)])
    found = pf.check_keys(readings(keys=lambda n, i: {PM_KEY: {"exists": True, "mode": "0600",
                                                               "fingerprint": KEY_B if n == "n3" else KEY_A}}), record)
    assert [(f["node"], f["level"]) for f in found] == [("n3", "repair")]


def test_keys_nowhere_are_skipped_and_unread_nodes_stop():
    none = readings(keys={PM_KEY: {"exists": False, "mode": "", "fingerprint": ""}})
    assert [f["level"] for f in pf.check_keys(none, PM)] == ["skipped"]
    found = pf.check_keys(none, PM, ["n1", "n2", "n3", "n4"])
    assert [(f["node"], f["check"], f["level"]) for f in found] == [("", "key source", "stop")]
    assert "--limit" in found[0]["problem"]


# ---- storage, database ---------------------------------------------------------------------------------------------

def test_shared_storage_good_unshared_missing_and_nowhere():
    assert pf.check_shared_storage(readings(), PM) == []
    found = pf.check_shared_storage(readings(dirs=lambda n, i: {"/srv/shared/rstudio-pm": "inode 99, entries 0000"
                                                                if n == "n2" else "inode 12, entries abcd"}), PM)
    assert [f["node"] for f in found] == ["n2"] and "mount the shared storage" in found[0]["fix"]
    missing = pf.check_shared_storage(readings(dirs=lambda n, i: {"/srv/shared/rstudio-pm": "" if n == "n3" else
                                                                  "inode 12, entries abcd"}), PM)
    assert [f["node"] for f in missing] == ["n3"] and "does not exist here" in missing[0]["problem"]
    nowhere = pf.check_shared_storage(readings(dirs={"/srv/shared/rstudio-pm": ""}), PM)
    assert [f["level"] for f in nowhere] == ["skipped"]


def test_database_good_unreachable_unconfigured_and_not_installed():
    assert pf.check_database(readings(), PM) == []
    down = readings(database=lambda n, i: {"checked": True, "available": n != "n1",
                                           "error": 'password authentication failed for "s3cr3t-Pw"'})
    found = pf.check_database(down, PM)
    assert [f["node"] for f in found] == ["n1"] and "s3cr3t-Pw" not in found[0]["problem"]
    assert "start PostgreSQL" in found[0]["fix"]
    assert [f["level"] for f in pf.check_database(readings(), dict(PM, database={}))] == ["skipped"]
    assert pf.check_database(readings(version="", database={"checked": False}), PM) == []


# ---- mounts, EFS -----------------------------------------------------------------------------------------------------

def test_mount_of_picks_the_longest_mount_and_its_fstab_entry():
    mounts = {"proc_mounts": "overlay / overlay rw 0 0\nfs-1.efs.eu-west-1.amazonaws.com:/ /home nfs4 rw 0 0\n"
                             "127.0.0.1:/ /srv/shared nfs4 rw,port=20049 0 0\n",
              "fstab": "fs-2:/ /srv/shared efs _netdev,tls 0 0\n", "paths": {"/data/link": "/home/x"}}
    assert pf.mount_of(mounts, "/home/user")["target"] == "/home"
    assert pf.mount_of(mounts, "/data/link")["target"] == "/home"
    shared = pf.mount_of(mounts, "/srv/shared/x")
    assert shared["fstab_fstype"] == "efs" and shared["source"] == "127.0.0.1:/"
    assert pf.mount_of(mounts, "/etc")["target"] == "/"
    assert pf.mount_of(None, "/x") is None and pf.mount_of({"proc_mounts": ""}, "/x") is None


@pytest.mark.parametrize("source, fstype, efs", [
    ("fs-0123abcd.efs.us-east-1.amazonaws.com:/", "nfs4", True),
    ("fs-0123abcd:/", "efs", True),
    ("fs-0123abcd:/home", "nfs4", True),
    ("nfs.example.com:/export", "nfs4", False),
    ("127.0.0.1:/", "efs", True),
    ("/dev/vdb", "ext4", False),
])
def test_is_efs(source, fstype, efs):
    assert pf.is_efs(source, fstype) is efs


# ---- Connect -------------------------------------------------------------------------------------------------------

CONNECT_SETTINGS = {"metrics_data_path": "rstudio-connect.gcfg:Metrics.DataPath",
                    "data_dir": "rstudio-connect.gcfg:Server.DataDir",
                    "schedule_concurrency": "rstudio-connect.gcfg:Applications.ScheduleConcurrency"}


def connect_readings(metrics=None, planned_metrics="/var/lib/rstudio-connect/metrics", concurrency="2",
                     planned_concurrency="2", mounts=None):
    def current(node, index):
        text = "[Server]\nDataDir = /srv/shared/rstudio-connect\n[Applications]\nScheduleConcurrency = %s\n" % (
            concurrency(node) if callable(concurrency) else concurrency)
        path = metrics(node) if callable(metrics) else metrics
        if path:
            text += "[Metrics]\nDataPath = %s\n" % path
        return pf.config_entries({"rstudio-connect.gcfg": text}, CONNECT["secret_keys"], CONNECT_SETTINGS)

    def planned(node, index):
        return {"config": None, "mounts": [{"path": "/srv/shared", "src": "nfs:/export", "product": "connect"}],
                "settings": {"metrics_data_path": planned_metrics(node) if callable(planned_metrics) else
                             planned_metrics, "data_dir": "/srv/shared/rstudio-connect",
                             "schedule_concurrency": planned_concurrency(node) if callable(planned_concurrency)
                             else planned_concurrency}}
    return readings(config=current, planned=planned, mounts=mounts or LOCAL_MOUNTS)


def test_metrics_path_good_local_per_node():
    assert pf.check_metrics_path(connect_readings(metrics="/var/lib/rstudio-connect/metrics"), CONNECT) == []
    assert pf.check_metrics_path(readings(), PM) == []


def test_metrics_path_default_lands_on_the_share_and_site_repairs_it():
    found = pf.check_metrics_path(connect_readings(metrics=lambda n: None if n == "n2" else
                                                   "/var/lib/rstudio-connect/metrics"), CONNECT)
    assert [(f["node"], f["level"]) for f in found] == [("n2", "repair")]
    assert "/srv/shared/rstudio-connect/metrics, inside the shared directory" in found[0]["problem"]
    assert "Metrics.DataPath = /var/lib/rstudio-connect/metrics" in found[0]["fix"]


def test_metrics_path_on_the_shared_mount_outside_the_data_dir_is_found_by_the_mount():
    mounts = dict(LOCAL_MOUNTS, paths={"/srv/shared/metrics-n1": "/srv/shared"})
    found = pf.check_metrics_path(connect_readings(metrics=lambda n: "/srv/shared/metrics-n1" if n == "n1" else
                                                   "/var/lib/rstudio-connect/metrics", mounts=mounts),
                                  dict(CONNECT, shared_dirs=["/srv/shared/rstudio-connect"]))
    assert [(f["node"], f["level"]) for f in found] == [("n1", "repair")]


def test_metrics_path_the_inventory_puts_on_the_share_stops():
    found = pf.check_metrics_path(connect_readings(planned_metrics="/srv/shared/rstudio-connect/metrics"), CONNECT)
    assert [(f["node"], f["level"]) for f in found] == [(n, "stop") for n in NODES]
    assert "set connect_metrics_data_path to a local directory" in found[0]["fix"]


def test_metrics_path_on_one_network_directory_for_several_nodes_stops():
    mounts = dict(LOCAL_MOUNTS, proc_mounts=LOCAL_MOUNTS["proc_mounts"] + "nas:/metrics /mnt/metrics nfs4 rw 0 0\n")
    found = pf.check_metrics_path(connect_readings(planned_metrics="/mnt/metrics/all", metrics="/mnt/metrics/all",
                                                   mounts=mounts), CONNECT)
    assert [(f["node"], f["level"]) for f in found] == [(n, "stop") for n in NODES]
    assert "the same directory as on n2, n3" in found[0]["problem"]


def test_schedule_concurrency_good_and_zero_everywhere_warns():
    assert pf.check_schedule_concurrency(connect_readings(concurrency=lambda n: "0" if n == "n1" else "2"), CONNECT) == []
    planned = pf.check_schedule_concurrency(connect_readings(planned_concurrency="0"), CONNECT)
    assert [(f["node"], f["level"]) for f in planned] == [("", "warn")] and "connect_schedule_concurrency" in \
        planned[0]["fix"]
    current = pf.check_schedule_concurrency(connect_readings(concurrency="0"), CONNECT)
    assert [(f["node"], f["level"]) for f in current] == [("", "warn")] and "no scheduled report" in current[0]["problem"]
    assert pf.check_schedule_concurrency(readings(), PM) == []


# ---- Workbench -------------------------------------------------------------------------------------------------------

def wb_readings(planned_lock="linkbased", current_lock="linkbased", planned_mounts=(), storage_type="nfs",
                mounts=None, locktest=None):
    def current(node, index):
        return pf.config_entries({"file-locks": "lock-type=%s\n" % current_lock}, WORKBENCH["secret_keys"],
                                 {"lock_type": "file-locks:lock-type"})

    def planned(node, index):
        return {"config": None, "settings": {"lock_type": planned_lock}, "mounts": list(planned_mounts),
                "storage_type": storage_type}
    return readings(config=current, planned=planned, mounts=mounts or LOCAL_MOUNTS,
                    locktest=locktest or (lambda n, i: None))


EFS_MOUNTS = {"proc_mounts": "overlay / overlay rw 0 0\nfs-9.efs.eu-west-1.amazonaws.com:/ /home nfs4 rw 0 0\n",
              "fstab": "", "paths": {}}


def test_lock_type_good_on_nfs_and_advisory_on_efs():
    assert pf.check_lock_type(wb_readings(), WORKBENCH) == []
    assert pf.check_lock_type(wb_readings(planned_lock="advisory", current_lock="advisory", mounts=EFS_MOUNTS),
                              WORKBENCH) == []
    assert pf.check_lock_type(readings(), PM) == []


@pytest.mark.parametrize("planned_mounts, storage_type", [
    ([{"path": "/home", "src": "fs-0abc.efs.us-east-1.amazonaws.com:/", "product": "workbench"}], "nfs"),
    ([{"path": "/home", "src": "nfs.example.com:/home", "product": "workbench", "storage": "efs"}], "nfs"),
    ([{"path": "/home", "src": "nfs.example.com:/home", "product": "workbench"}], "efs"),
    ([{"path": "/home", "src": "fs-0abc:/", "product": "workbench", "fstype": "efs"}], "nfs"),
])
def test_lock_type_linkbased_on_planned_efs_stops(planned_mounts, storage_type):
    found = pf.check_lock_type(wb_readings(planned_mounts=planned_mounts, storage_type=storage_type), WORKBENCH)
    assert [(f["node"], f["level"]) for f in found] == [(n, "stop") for n in NODES]
    assert "set workbench_lock_type: advisory" in found[0]["fix"]


def test_lock_type_linkbased_on_mounted_efs_stops_or_is_repaired():
    found = pf.check_lock_type(wb_readings(mounts=EFS_MOUNTS), WORKBENCH)
    assert [f["level"] for f in found] == ["stop"] * 3 and "EFS mounted now: /home" in found[0]["problem"]
    repaired = pf.check_lock_type(wb_readings(planned_lock="advisory", mounts=EFS_MOUNTS), WORKBENCH)
    assert [f["level"] for f in repaired] == ["repair"] * 3 and "lock-type=advisory" in repaired[0]["fix"]


HOLDER_BOTH = "* Acquired advisory lock\n* Acquired link-based lock\n\nHolding the locks; press Ctrl+C to release them."
TESTER_NONE = ("* Unable to acquire advisory lock\n* Unable to acquire link-based lock\n\n"
               "Your filesystem appears to support advisory and link-based locks.")
TESTER_LINK = ("* Unable to acquire advisory lock\n* Acquired link-based lock\n\n"
               "Your filesystem appears to support advisory locks.")


def locktest(holder=HOLDER_BOTH, testers=TESTER_NONE, error=""):
    return lambda n, i: ({"role": "holder", "output": holder, "error": error} if i == 0 else
                         {"role": "tester", "output": testers(n) if callable(testers) else testers, "error": ""})


def test_parse_locktester():
    assert pf.parse_locktester(TESTER_LINK) == {"advisory": False, "link-based": True, "supported": ["advisory"]}
    assert pf.parse_locktester(TESTER_NONE)["supported"] == ["advisory", "link-based"]
    assert pf.parse_locktester("") == {"advisory": None, "link-based": None, "supported": None}


def test_locktest_good_disabled_and_skipped():
    assert pf.check_locktest(wb_readings(locktest=locktest()), WORKBENCH) == []
    disabled = dict(WORKBENCH, preflight=dict(WORKBENCH["preflight"], locktest={"enabled": False}))
    assert pf.check_locktest(wb_readings(), disabled) == []
    skipped = pf.check_locktest(wb_readings(locktest={"skipped": "it needs two nodes or more, and there is 1"}),
                                WORKBENCH)
    assert [f["level"] for f in skipped] == ["skipped"] and "two nodes" in skipped[0]["problem"]


def test_locktest_linkbased_taken_twice_stops_and_names_the_kind_that_works():
    found = pf.check_locktest(wb_readings(locktest=locktest(testers=lambda n: TESTER_LINK if n == "n3" else
                                                            TESTER_NONE)), WORKBENCH)
    assert [(f["node"], f["level"]) for f in found] == [("n3", "stop")]
    assert "took the link-based lock in /home while n1 held it" in found[0]["problem"]
    assert "set workbench_lock_type: advisory" in found[0]["fix"]


def test_locktest_where_every_node_gets_every_lock_stops_with_storage_advice():
    found = pf.check_locktest(wb_readings(locktest=locktest(testers=HOLDER_BOTH)), WORKBENCH)
    assert [(f["node"], f["level"]) for f in found] == [("n2", "stop"), ("n3", "stop")]
    assert "same one on every node" in found[0]["fix"]


def test_locktest_holder_or_tester_that_cannot_run_stops():
    found = pf.check_locktest(wb_readings(locktest=locktest(holder="", error="mktemp: Permission denied")), WORKBENCH)
    assert [(f["node"], f["level"]) for f in found] == [("n1", "stop")] and "Permission denied" in found[0]["problem"]
    partial = pf.check_locktest(wb_readings(locktest=locktest(holder="* Acquired advisory lock\n"
                                                              "* Unable to acquire link-based lock\n")), WORKBENCH)
    assert [(f["node"], f["level"]) for f in partial] == [("n1", "stop")]
    assert "could not take the link-based lock" in partial[0]["problem"]
    tester = pf.check_locktest(wb_readings(locktest=locktest(testers="")), WORKBENCH)
    assert [f["node"] for f in tester] == ["n2", "n3"] and "did not run" in tester[0]["problem"]
    nobody = pf.check_locktest(wb_readings(locktest=lambda n, i: {"role": "tester", "output": TESTER_NONE}), WORKBENCH)
    assert "no node held the locks" in nobody[0]["problem"]


def test_locktest_current_kind_fails_while_the_planned_one_works_site_repairs():
    found = pf.check_locktest(wb_readings(planned_lock="advisory", current_lock="linkbased",
                                          locktest=locktest(testers=TESTER_LINK)), WORKBENCH)
    assert [(f["node"], f["level"]) for f in found] == [(n, "repair") for n in NODES]


# ---- time ------------------------------------------------------------------------------------------------------------

def clocks(offsets, before=1000.0, after=1000.2):
    return dict((node, {"clock": {"reading": 1000.1 + offset, "before": before, "after": after}})
                for node, offset in offsets.items())


def test_clock_offset_good_and_off():
    assert pf.check_clock_offset(clocks({"n1": 0, "n2": 0.3, "n3": -0.4}), 1.0) == []
    found = pf.check_clock_offset(clocks({"n1": 0, "n2": 120, "n3": 0.1}), 1.0)
    assert [f["node"] for f in found] == ["n2"] and "119.90 s off" in found[0]["problem"]
    assert "synchronise the clocks with NTP" in found[0]["fix"]
    assert pf.check_clock_offset({"n1": {}}, 1.0) == []
    assert pf.check_clock_offset(clocks({"n1": 120}), 1.0) == []


@pytest.mark.parametrize("wrong", ["n1", "n2"])
@pytest.mark.parametrize("shift", [120, -120])
def test_clock_offset_of_two_nodes_names_the_one_off_the_controller(wrong, shift):
    """With two nodes the controller's clock breaks the tie, whichever node is off and in whichever direction."""
    found = pf.check_clock_offset(clocks({"n1": shift if wrong == "n1" else 0, "n2": shift if wrong == "n2" else 0}),
                                  1.0)
    assert [f["node"] for f in found] == [wrong], found
    assert "the median of both nodes' clocks and the controller's" in found[0]["problem"]
    assert pf.check_clock_offset(clocks({"n1": 0.2, "n2": -0.3}), 1.0) == []


SOURCES_SYNCED = "^,*,10.0.0.5,10,6,377,20,0.000010,0.000012,0.000100\n^,+,10.0.0.6,2,6,377,20,0.0001,0.0001,0.001"
SOURCES_NONE = "^,?,10.0.0.5,0,6,0,-,0.0,0.0,0.0"
TRACKING = "0A000005,10.0.0.5,11,1700000000.1,%s,0.0,0.0,1.0,0.0,0.1,0.001,0.001,64.0,Normal"
TRACKING_LOCAL = "7F7F0101,,10,1700000000.1,0.000000,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,Normal"
TRACKING_UNSYNC = "00000000,,0,0.0,0.000000,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,Not synchronised"


def sync(**state):
    base = {"managed": True, "installed": True, "active": True, "sources": SOURCES_SYNCED,
            "tracking": TRACKING % "0.000200", "local_stratum": "", "no_clock_control": True, "timedatectl": ""}
    base.update(state)
    return {"n1": {"time_sync": base}}


def test_parse_chrony():
    assert pf.parse_chrony_sources(SOURCES_SYNCED)[0] == {"mode": "^", "state": "*", "address": "10.0.0.5",
                                                          "stratum": "10", "reach": "377"}
    assert pf.parse_chrony_tracking(TRACKING % "-0.5")["offset"] == -0.5
    assert pf.parse_chrony_tracking("garbage") is None


@pytest.mark.parametrize("state", [
    {},
    {"sources": "", "tracking": TRACKING_LOCAL, "local_stratum": "10"},
    {"installed": False, "timedatectl": "yes", "managed": False},
])
def test_time_sync_good(state):
    assert pf.check_time_sync(sync(**state), 1.0) == []


def test_time_sync_several_nodes_serving_their_own_clock_follow_no_common_source():
    alone = sync(sources="", tracking=TRACKING_LOCAL, local_stratum="10")["n1"]
    found = pf.check_time_sync({"n1": alone, "n2": copy.deepcopy(alone), "n3": sync()["n1"]}, 1.0)
    assert [(f["node"], f["level"]) for f in found] == [("n1", "repair"), ("n2", "repair")]
    assert "and so do n2: the nodes follow no common time source" in found[0]["problem"]
    assert pf.check_time_sync({"n1": alone, "n3": sync()["n1"]}, 1.0) == []


@pytest.mark.parametrize("state, level, text", [
    ({"installed": False}, "skipped", "chrony is not installed"),
    ({"installed": False, "managed": False, "timedatectl": "no"}, "stop", "NTPSynchronized=no"),
    ({"active": False}, "repair", "chronyd is not running"),
    ({"active": False, "managed": False}, "stop", "chronyd is not running"),
    ({"sources": SOURCES_NONE, "tracking": TRACKING_UNSYNC}, "repair", "no synchronised source (sources: 10.0.0.5"),
    # A fallback local reference does not count while upstream sources are configured and unreachable.
    ({"sources": SOURCES_NONE, "tracking": TRACKING_LOCAL, "local_stratum": "10"}, "repair", "no synchronised"),
    ({"sources": "", "tracking": TRACKING_LOCAL, "local_stratum": ""}, "repair", "no source configured"),
    ({"tracking": TRACKING % "2.5"}, "stop", "2.500 s fast of it and chronyd runs with -x"),
    ({"tracking": TRACKING % "-3.0", "no_clock_control": False}, "stop", "3.000 s slow of it."),
])
def test_time_sync_bad(state, level, text):
    found = pf.check_time_sync(sync(**state), 1.0)
    assert [(f["node"], f["level"]) for f in found] == [("n1", level)]
    assert text in found[0]["problem"], found[0]["problem"]


# ---- all together ----------------------------------------------------------------------------------------------------

def test_judge_fit_cluster_and_product_scope_errors():
    result = pf.judge(readings(), PM, group_hosts=list(NODES))
    assert result["fit"] and result["stop"] == [] and result["report"] == []
    assert result["key_sources"][PM_KEY]["source"] == "node"
    with pytest.raises(pf.PreflightError, match="record is missing"):
        pf.judge(readings(), None)
    with pytest.raises(pf.PreflightError, match="scope must be"):
        pf.judge(readings(), PM, scope="all")
    with pytest.raises(pf.PreflightError, match="mapping of node name"):
        pf.judge([], PM)


def test_judge_site_repairs_reports_what_site_repairs_and_stops_on_the_rest():
    faulty = readings(keys=lambda n, i: {PM_KEY: {"exists": True, "mode": "0644" if n == "n1" else "0600",
                                                  "fingerprint": KEY_A}},
                      accounts=lambda n, i: {"rstudio-pm": {"uid": "9" if n == "n3" else "2101", "gid": "2101",
                                                            "group_gid": "2101"}})
    strict = pf.judge(faulty, PM)
    assert [(f["node"], f["check"]) for f in strict["stop"]] == [("n1", "key mode"), ("n3", "uid/gid mismatch")]
    site = pf.judge(faulty, PM, site_repairs=True)
    assert [(f["node"], f["check"]) for f in site["stop"]] == [("n3", "uid/gid mismatch")]
    assert [f["message"] for f in site["report"]] == [
        "[key mode] n1: encryption key %s has mode 0644, expected 0600. Fix: run playbooks/site.yml, which sets it "
        "(or chmod 0600 %s)." % (PM_KEY, PM_KEY)]
    assert not site["fit"] and not strict["fit"]


def test_judge_time_scope():
    result = pf.judge(clocks({"n1": 0, "n2": 5}), scope="time")
    assert [f["check"] for f in result["stop"]] == ["clock offset"]
    assert result["stop"][0]["message"].startswith("[clock offset] n")


def test_judge_runs_every_product_check(monkeypatch):
    called = []
    for name in ("check_version_mix", "check_accounts", "check_config_drift", "check_planned_config", "check_keys",
                 "check_shared_storage", "check_database", "check_metrics_path", "check_schedule_concurrency",
                 "check_lock_type", "check_locktest"):
        original = getattr(pf, name)

        def spy(*args, _n=name, _o=original, **kwargs):
            called.append(_n)
            return _o(*args, **kwargs)
        monkeypatch.setattr(pf, name, spy)
    pf.judge(readings(), PM)
    assert len(set(called)) == 11, called


def test_new_key_length_holds_the_bits_with_a_margin():
    assert pf.new_key_length(256) == 80 and pf.new_key_length(128) == 48 and pf.new_key_length(None) == 80


# ---- the filters -----------------------------------------------------------------------------------------------------

def test_preflight_problems_filter_wraps_errors():
    assert preflight_problems(readings(), record=PM)["fit"]
    with pytest.raises(AnsibleFilterError, match="positops.ha.preflight_problems: the product record"):
        preflight_problems(readings(), record={})


def test_preflight_config_filter_decodes_base64_and_marks_binary_files():
    files = {"a.conf": base64.b64encode(b"token=abc\nport=1\n").decode(), "b.bin": base64.b64encode(b"\0\1").decode(),
             "c.conf": "!!!not base64", "planned": {"k": "v"}}
    result = preflight_config(files, base64=True)
    assert ["a.conf:port", "1"] in result["entries"] and ["b.bin:", "<unreadable or binary file>"] in result["entries"]
    assert ["c.conf:", "<unreadable or binary file>"] in result["entries"] and ["planned:k", "v"] in result["entries"]
    assert "abc" not in str(result)
    with pytest.raises(AnsibleFilterError, match="must map file names"):
        preflight_config("text")
    with pytest.raises(AnsibleFilterError, match="secret key"):
        preflight_config({"f": "Password=x"}, settings={"p": "f:Password"})


def test_preflight_key_source_filter():
    decision = preflight_key_source({"n1": KEY_B, "n2": KEY_A}, key=KEY)
    assert decision["source"] == "conflict" and KEY_B[:16] in decision["problem"] and decision["fix"]
    agreed = preflight_key_source({"n1": "", "n2": KEY_A}, key=KEY)
    assert (agreed["source"], agreed["node"], agreed["problem"]) == ("node", "n2", "")
    with pytest.raises(AnsibleFilterError, match="key must be a key file entry"):
        preflight_key_source({}, key={})
    with pytest.raises(AnsibleFilterError, match="must map node names to fingerprints"):
        preflight_key_source(["n1"], key=KEY)
