"""nfs_mount_opts through the module: options, results, warnings, failures, and the live check of a path."""

import pytest

from ansible_collections.positops.ha.plugins.modules import nfs_mount_opts


@pytest.fixture
def live_mounts(tmp_path, cli_output, monkeypatch):
    """A /proc/mounts whose NFS mount points are moved under tmp_path (so the paths exist)."""
    mapping = {"/var/lib/rstudio-pm": "pm", "/srv/rspm-default": "pm-default", "/home": "home",
               "/srv/homes\\040v3": "homes-v3"}
    lines = []
    for line in cli_output("proc-mounts/nfs-clients.txt").splitlines():
        fields = line.split()
        if fields[1] in mapping:
            (tmp_path / mapping[fields[1]]).mkdir()
            fields[1] = str(tmp_path / mapping[fields[1]])
        lines.append(" ".join(fields))
    (tmp_path / "local").mkdir()
    lines.append("/dev/sdb1 %s ext4 rw,relatime 0 0" % (tmp_path / "local"))
    mounts = tmp_path / "mounts"
    mounts.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(nfs_mount_opts, "MOUNTS_FILE", str(mounts))
    return tmp_path


@pytest.mark.parametrize("check_mode", [False, True])
def test_package_manager_nfs(run_module, check_mode):
    failed, result = run_module(nfs_mount_opts.main, dict(product="package_manager", nfs_version="4.1",
                                                          options=["hard", "noatime"]), check_mode=check_mode)
    assert not failed and result["changed"] is False
    assert result["opts"] == "nfsvers=4.1,hard,noatime,lookupcache=pos"
    assert result["opts_list"] == ["nfsvers=4.1", "hard", "noatime", "lookupcache=pos"]
    assert result["opts_warnings"] == [] and result["_warnings"] == []
    assert result["file_lock_type"] is None
    assert "compliant" not in result and "current" not in result


def test_options_as_comma_string_and_default_storage(run_module):
    failed, result = run_module(nfs_mount_opts.main, dict(product="connect", options="hard,timeo=600"))
    assert not failed and result["opts"] == "hard,timeo=600"


def test_workbench_efs_warns_about_advisory_locks(run_module):
    failed, result = run_module(nfs_mount_opts.main, dict(product="workbench", storage="efs"))
    assert not failed and result["changed"] is False
    assert result["opts"] == ("nfsvers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,noresvport,_netdev,"
                              "lookupcache=pos")
    assert result["file_lock_type"] == "advisory"
    assert len(result["opts_warnings"]) == 1 and "lock-type=advisory" in result["opts_warnings"][0]
    assert result["_warnings"] == result["opts_warnings"]


@pytest.mark.parametrize("args, fragment", [
    (dict(product="workbench", options=["nolock"]), "Option nolock"),
    (dict(product="connect", options=["hard", "soft"]), "Contradictory mount options: hard and soft"),
    (dict(product="connect", options=["fast"]), "Unknown mount option(s): fast"),
    (dict(product="connect", storage="efs", nfs_version="3"), "EFS speaks NFS 4.0 and 4.1 only"),
    (dict(product="package_manager", options=["lookupcache=all"]), "lookupcache=all without acdirmax"),
    (dict(product="connect", nfs_version="5"), "value of nfs_version must be one of"),
    (dict(product="shiny"), "value of product must be one of"),
])
def test_failures_name_the_problem(run_module, args, fragment):
    failed, result = run_module(nfs_mount_opts.main, args)
    assert failed and fragment in result["msg"]


def test_live_mount_compliant_for_a_path_below_the_mount_point(run_module, live_mounts):
    below = live_mounts / "pm" / "packages"
    below.mkdir()
    failed, result = run_module(nfs_mount_opts.main, dict(product="package_manager", nfs_version="4.1",
                                                          path=str(below)))
    assert not failed and result["changed"] is False
    assert result["mount_point"] == str(live_mounts / "pm")
    assert result["current"].startswith("rw,relatime,vers=4.1,")
    assert (result["compliant"], result["missing"], result["unwanted"]) == (True, [], [])


def test_live_mount_missing_lookupcache(run_module, live_mounts):
    failed, result = run_module(nfs_mount_opts.main, dict(product="package_manager",
                                                          path=str(live_mounts / "pm-default")))
    assert not failed
    assert (result["compliant"], result["missing"], result["unwanted"]) == (False, ["lookupcache=pos"], [])


def test_live_workbench_mount_without_locks(run_module, live_mounts):
    failed, result = run_module(nfs_mount_opts.main, dict(product="workbench", nfs_version="3",
                                                          path=str(live_mounts / "homes-v3")))
    assert not failed
    assert result["mount_point"] == str(live_mounts / "homes-v3")
    assert (result["compliant"], result["missing"], result["unwanted"]) == (False, [], ["nolock", "local_lock=all"])


def test_live_efs_mount(run_module, live_mounts):
    failed, result = run_module(nfs_mount_opts.main, dict(product="connect", storage="efs",
                                                          path=str(live_mounts / "home")))
    assert not failed and result["compliant"] is True


def test_path_not_on_nfs_fails(run_module, live_mounts):
    failed, result = run_module(nfs_mount_opts.main, dict(product="connect", path=str(live_mounts / "local")))
    assert failed
    assert "is not on an NFS mount (it is on %s, file system ext4)" % (live_mounts / "local") in result["msg"]


def test_missing_path_fails(run_module, live_mounts):
    failed, result = run_module(nfs_mount_opts.main, dict(product="connect", path=str(live_mounts / "nope")))
    assert failed and "does not exist" in result["msg"]


def test_unreadable_mounts_file_fails(run_module, monkeypatch, tmp_path):
    monkeypatch.setattr(nfs_mount_opts, "MOUNTS_FILE", str(tmp_path / "no-mounts"))
    failed, result = run_module(nfs_mount_opts.main, dict(product="connect", path=str(tmp_path)))
    assert failed and "Cannot read %s" % (tmp_path / "no-mounts") in result["msg"]
