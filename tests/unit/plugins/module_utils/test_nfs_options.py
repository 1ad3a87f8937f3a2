"""NFS / EFS option rules: merging, validation, and comparison with live mounts (recorded /proc/mounts)."""

import pytest

from ansible_collections.positops.ha.plugins.module_utils._nfs_options import (
    MountOptionError, check_live, compute, directory_cache_seconds, find_mount, parse, parse_mounts, render)

EFS = "nfsvers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,noresvport,_netdev"

# (id, product, storage, nfs_version, operator options, expected opts, warning fragments, file lock type)
COMPUTE_CASES = [
    ("pm-nfs-defaults", "package_manager", "nfs", None, [], "lookupcache=pos", [], None),
    ("pm-nfs-version-and-own", "package_manager", "nfs", "4.1", ["hard", "noatime"],
     "nfsvers=4.1,hard,noatime,lookupcache=pos", [], None),
    ("pm-nfs-comma-string", "package_manager", "nfs", "3", ["hard,noatime", "timeo=600"],
     "nfsvers=3,hard,noatime,timeo=600,lookupcache=pos", [], None),
    ("pm-nfs-duplicates-collapse", "package_manager", "nfs", None, ["hard", "hard"], "hard,lookupcache=pos", [],
     None),
    ("pm-nfs-actimeo-5-instead", "package_manager", "nfs", None, ["actimeo=5"], "actimeo=5", [], None),
    ("pm-nfs-acdirmax-3-with-lookupcache-all", "package_manager", "nfs", None, ["lookupcache=all", "acdirmax=3"],
     "lookupcache=all,acdirmax=3", [], None),
    ("pm-nfs-noac-instead", "package_manager", "nfs", None, ["noac"], "noac", [], None),
    ("pm-nfs-long-actimeo-gets-pos", "package_manager", "nfs", None, ["actimeo=30"], "actimeo=30,lookupcache=pos",
     [], None),
    ("pm-nfs-lookupcache-none-kept", "package_manager", "nfs", None, ["lookupcache=none"], "lookupcache=none", [],
     None),
    ("pm-nfs-operator-vers-spelling-kept", "package_manager", "nfs", None, ["vers=4.2"], "vers=4.2,lookupcache=pos",
     [], None),
    ("pm-nfs-version-given-twice-same", "package_manager", "nfs", "4.2", ["nfsvers=4.2"],
     "nfsvers=4.2,lookupcache=pos", [], None),
    ("pm-efs", "package_manager", "efs", None, [], EFS + ",lookupcache=pos", [], None),
    ("pm-efs-short-cache-still-pos", "package_manager", "efs", None, ["actimeo=1"],
     EFS + ",actimeo=1,lookupcache=pos", [], None),
    ("pm-efs-override-warns", "package_manager", "efs", "4.1", ["rsize=65536", "soft"],
     "nfsvers=4.1,rsize=65536,wsize=1048576,soft,timeo=600,retrans=2,noresvport,_netdev,lookupcache=pos",
     ["rsize=65536 overrides the EFS recommended rsize=1048576", "soft overrides the EFS recommended hard",
      "A soft mount"], None),
    ("connect-nfs-untouched", "connect", "nfs", "4.1", ["hard"], "nfsvers=4.1,hard", [], None),
    ("connect-efs", "connect", "efs", None, [], EFS + ",lookupcache=pos", [], None),
    ("connect-efs-lookupcache-all-warns", "connect", "efs", None, ["lookupcache=all"], EFS + ",lookupcache=all",
     ["lookupcache=all on EFS"], None),
    ("workbench-nfs", "workbench", "nfs", "3", ["hard"], "nfsvers=3,hard", [], "linkbased"),
    ("workbench-nfs-lock-explicit", "workbench", "nfs", None, ["lock", "local_lock=none"], "lock,local_lock=none", [],
     "linkbased"),
    ("workbench-efs-advisory", "workbench", "efs", "4", [], EFS.replace("4.1", "4", 1) + ",lookupcache=pos",
     ["lock-type=advisory"], "advisory"),
    ("x-options-pass", "connect", "nfs", None, ["x-systemd.automount", "nofail"], "x-systemd.automount,nofail", [],
     None),
]


@pytest.mark.parametrize("product, storage, version, options, opts, warnings, lock_type",
                         [case[1:] for case in COMPUTE_CASES], ids=[case[0] for case in COMPUTE_CASES])
def test_compute(product, storage, version, options, opts, warnings, lock_type):
    computed = compute(product, storage, version, options)
    assert render(computed["opts"]) == opts
    assert len(computed["warnings"]) == len(warnings), computed["warnings"]
    for fragment, warning in zip(warnings, computed["warnings"]):
        assert fragment in warning
    assert computed["file_lock_type"] == lock_type


# (id, product, storage, nfs_version, options, fragments the error must contain)
FAILURE_CASES = [
    ("unknown", "connect", "nfs", None, ["hard", "bogus", "lookupcash=pos"],
     ["Unknown mount option(s): bogus, lookupcash=pos"]),
    ("flag-with-value", "connect", "nfs", None, ["hard=1"], ["hard=1 (hard takes no value)"]),
    ("integer-needed", "connect", "nfs", None, ["timeo=fast", "rsize"], ["timeo=fast", "rsize (rsize needs"]),
    ("bad-choice", "connect", "nfs", None, ["lookupcache=some"], ["lookupcache=some (lookupcache is one of"]),
    ("free-value-missing", "connect", "nfs", None, ["sec"], ["sec (sec needs a value)"]),
    ("hard-and-soft", "connect", "nfs", None, ["hard", "soft"], ["Contradictory mount options: hard and soft"]),
    ("two-lookupcache", "package_manager", "nfs", None, ["lookupcache=pos", "lookupcache=all"],
     ["lookupcache=pos and lookupcache=all"]),
    ("vers-and-nfsvers", "connect", "nfs", None, ["vers=3", "nfsvers=4.1"], ["vers=3 and nfsvers=4.1"]),
    ("version-vs-option", "connect", "nfs", "4.1", ["nfsvers=3"], ["nfs_version=4.1 and the option nfsvers=3"]),
    ("efs-v3", "connect", "efs", "3", [], ["EFS speaks NFS 4.0 and 4.1 only, not 3"]),
    ("efs-v4.2", "workbench", "efs", "4.2", [], ["not 4.2"]),
    ("nfs-v2", "connect", "nfs", None, ["vers=2"], ["version 2 is not supported"]),
    ("read-only", "package_manager", "nfs", None, ["ro"], ["Option ro"]),
    ("pm-lookupcache-all-long-cache", "package_manager", "nfs", None, ["lookupcache=all"],
     ["lookupcache=all without acdirmax or actimeo of 5 seconds or less"]),
    ("pm-lookupcache-all-actimeo-10", "package_manager", "nfs", None, ["lookupcache=all", "actimeo=10"],
     ["lookupcache=all without"]),
    ("workbench-nolock", "workbench", "nfs", "3", ["nolock"], ["Option nolock", "file locking"]),
    ("workbench-local-lock", "workbench", "efs", None, ["local_lock=flock"], ["Option local_lock=flock"]),
    ("bad-product", "rstudio", "nfs", None, [], ["product must be one of"]),
    ("bad-storage", "connect", "s3", None, [], ["storage must be nfs or efs"]),
]


@pytest.mark.parametrize("product, storage, version, options, fragments",
                         [case[1:] for case in FAILURE_CASES], ids=[case[0] for case in FAILURE_CASES])
def test_compute_refuses(product, storage, version, options, fragments):
    with pytest.raises(MountOptionError) as error:
        compute(product, storage, version, options)
    for fragment in fragments:
        assert fragment in str(error.value)


def test_parse_and_render_round_trip():
    parsed = parse(["a,b=1", " c = 2 ", ""])
    assert parsed == [("a", None), ("b", "1"), ("c", "2")]
    assert render(parsed) == "a,b=1,c=2"


@pytest.mark.parametrize("options, seconds", [
    ([], None), (["acdirmax=7"], 7), (["actimeo=3", "acdirmax=9"], 9), (["acdirmax=9", "actimeo=3"], 3),
    (["noac"], 0), (["acregmax=2"], None),
])
def test_directory_cache_seconds(options, seconds):
    assert directory_cache_seconds(parse(options)) == seconds


@pytest.fixture
def mounts(cli_output):
    return parse_mounts(cli_output("proc-mounts/nfs-clients.txt"))


@pytest.mark.parametrize("path, mount_point, fstype", [
    ("/var/lib/rstudio-pm", "/var/lib/rstudio-pm", "nfs4"),
    ("/var/lib/rstudio-pm/packages/x", "/var/lib/rstudio-pm", "nfs4"),
    ("/var/lib/rstudio-pm/cache/y", "/var/lib/rstudio-pm/cache", "tmpfs"),
    ("/var/lib/rstudio-pmx", "/", "ext4"),
    ("/srv/homes v3/u", "/srv/homes v3", "nfs"),
    ("/home/alice", "/home", "nfs4"),
])
def test_find_mount(mounts, path, mount_point, fstype):
    mount = find_mount(mounts, path)
    assert (mount["mount_point"], mount["fstype"]) == (mount_point, fstype)


def test_find_mount_none():
    assert find_mount([], "/x") is None


# (id, mount point, product, storage, version, options, missing, unwanted)
LIVE_CASES = [
    ("pm-compliant", "/var/lib/rstudio-pm", "package_manager", "nfs", "4.1", ["hard", "rsize=1048576"], [], []),
    ("pm-short-cache-satisfies-pos", "/srv/rspm-short", "package_manager", "nfs", None, [], [], []),
    ("pm-default-mount-lacks-pos", "/srv/rspm-default", "package_manager", "nfs", "4.1", [],
     ["nfsvers=4.1", "lookupcache=pos"], []),
    ("pm-version-4-matches-4.2", "/srv/rspm-default", "package_manager", "nfs", "4", ["actimeo=3"], ["actimeo=3"],
     []),
    ("efs-compliant", "/home", "connect", "efs", None, [], [], []),
    ("efs-workbench-compliant", "/home", "workbench", "efs", None, [], [], []),
    ("efs-recommended-missing-on-plain-nfs", "/var/lib/rstudio-pm", "connect", "efs", None, [], ["noresvport"], []),
    ("workbench-v3-nolock-local-lock", "/srv/homes v3", "workbench", "nfs", "3", ["hard", "rsize=1048576"],
     ["rsize=1048576"], ["nolock", "local_lock=all"]),
    ("default-flags-not-listed", "/var/lib/rstudio-pm", "connect", "nfs", None, ["lock", "cto", "rw", "noatime"],
     ["noatime"], []),
]


@pytest.mark.parametrize("mount_point, product, storage, version, options, missing, unwanted",
                         [case[1:] for case in LIVE_CASES], ids=[case[0] for case in LIVE_CASES])
def test_check_live(mounts, mount_point, product, storage, version, options, missing, unwanted):
    live = [m for m in mounts if m["mount_point"] == mount_point][0]
    wanted = compute(product, storage, version, options)["opts"]
    checked = check_live(product, wanted, live["options"])
    assert checked == {"missing": missing, "unwanted": unwanted, "compliant": not missing and not unwanted}
