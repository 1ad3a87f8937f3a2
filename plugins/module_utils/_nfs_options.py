# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!
"""NFS / EFS mount options for the products' shared directories: parse, validate, merge, compare with a live mount.

Pure functions; :class:`MountOptionError` carries a message naming the offending options. Rules (from the
vendor docs in the project's seeds):

- Package Manager finds new files in its shared data directory quickly only with ``lookupcache=pos``, or, when that
  is not acceptable, with ``acdirmax`` / ``actimeo`` of 5 seconds or less.
- Amazon EFS: the EFS recommended options, plus ``lookupcache=pos``.
- Workbench shared home directories need working cross-node file locks: never ``nolock`` or a ``local_lock``;
  on EFS Workbench must use advisory locks (``lock-type=advisory`` in /etc/rstudio/file-locks).
"""

from __future__ import annotations

import os
import re

PRODUCTS = ("package_manager", "connect", "workbench")
STORAGES = ("nfs", "efs")
NFS_VERSIONS = ("3", "4", "4.1", "4.2")
EFS_VERSIONS = ("4", "4.0", "4.1")

# AWS's recommended EFS mount options (nfsvers is added separately, from nfs_version).
EFS_RECOMMENDED = (("rsize", "1048576"), ("wsize", "1048576"), ("hard", None), ("timeo", "600"),
                   ("retrans", "2"), ("noresvport", None), ("_netdev", None))
PACKAGE_MANAGER_MAX_DIR_CACHE = 5  # seconds

# Options nfs(5) and mount(8) define, by kind. Values are validated below.
FLAGS = frozenset((
    "hard", "soft", "softerr", "intr", "nointr", "ac", "noac", "cto", "nocto", "lock", "nolock", "acl", "noacl",
    "sharecache", "nosharecache", "resvport", "noresvport", "rdirplus", "nordirplus", "fsc", "nofsc", "bg", "fg",
    "tcp", "udp", "rdma", "posix", "noposix", "migration", "nomigration", "softreval", "nosoftreval",
    "trunkdiscovery", "notrunkdiscovery", "sloppy",
    "defaults", "rw", "ro", "auto", "noauto", "user", "nouser", "users", "_netdev", "nofail", "exec", "noexec",
    "suid", "nosuid", "dev", "nodev", "sync", "async", "atime", "noatime", "relatime", "norelatime",
    "strictatime", "nostrictatime", "lazytime", "nolazytime", "diratime", "nodiratime", "dirsync", "mand", "nomand",
    "silent", "loud", "iversion", "noiversion",
))
INTEGER_OPTIONS = frozenset((
    "timeo", "retrans", "rsize", "wsize", "acregmin", "acregmax", "acdirmin", "acdirmax", "actimeo", "retry",
    "port", "mountport", "mountvers", "namlen", "nconnect", "max_connect", "minorversion",
))
CHOICE_OPTIONS = {
    "lookupcache": ("all", "none", "pos", "positive"),
    "local_lock": ("all", "flock", "posix", "none"),
    "proto": ("tcp", "udp", "rdma", "tcp6", "udp6", "rdma6"),
    "mountproto": ("tcp", "udp", "tcp6", "udp6"),
    "nfsvers": ("2", "3", "4", "4.0", "4.1", "4.2"),
    "vers": ("2", "3", "4", "4.0", "4.1", "4.2"),
    "write": ("lazy", "eager", "wait"),
    "xprtsec": ("none", "tls", "mtls"),
}
FREE_VALUE_OPTIONS = frozenset((
    "sec", "clientaddr", "mounthost", "fsc", "context", "fscontext", "defcontext", "rootcontext", "comment",
))
# mount(8) and systemd read these; the kernel never shows them in /proc/mounts.
USERSPACE_ONLY = frozenset(("defaults", "auto", "noauto", "user", "nouser", "users", "_netdev", "nofail", "bg",
                            "fg", "retry", "sloppy", "comment", "mounthost"))
# Mutually exclusive flags (each group: at most one).
EXCLUSIVE_FLAGS = (
    ("hard", "soft", "softerr"), ("intr", "nointr"), ("ac", "noac"), ("cto", "nocto"), ("lock", "nolock"),
    ("acl", "noacl"), ("sharecache", "nosharecache"), ("resvport", "noresvport"), ("rdirplus", "nordirplus"),
    ("fsc", "nofsc"), ("bg", "fg"), ("tcp", "udp", "rdma"), ("posix", "noposix"), ("migration", "nomigration"),
    ("softreval", "nosoftreval"), ("trunkdiscovery", "notrunkdiscovery"), ("rw", "ro"), ("auto", "noauto"),
    ("user", "nouser", "users"), ("exec", "noexec"), ("suid", "nosuid"), ("dev", "nodev"), ("sync", "async"),
    ("atime", "noatime"), ("relatime", "norelatime", "strictatime"), ("lazytime", "nolazytime"),
    ("diratime", "nodiratime"), ("mand", "nomand"), ("silent", "loud"), ("iversion", "noiversion"),
)
# Flags the kernel applies unless their opposite is given (so /proc/mounts may not list them).
DEFAULT_FLAGS = frozenset(("hard", "lock", "ac", "cto", "sharecache", "rw"))
VERSION_KEYS = ("nfsvers", "vers")
ATTRIBUTE_CACHE_KEYS = ("acregmin", "acregmax", "acdirmin", "acdirmax")


class MountOptionError(ValueError):
    """Bad, unknown or contradictory options; the message names them."""


def parse(options):
    """Split option strings (each may hold several, comma separated) into an ordered list of ``(key, value)``."""
    parsed = []
    for item in options or ():
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            key, sep, value = part.partition("=")
            parsed.append((key.strip(), value.strip() if sep else None))
    return parsed


def render(parsed):
    return ",".join(key if value is None else "%s=%s" % (key, value) for key, value in parsed)


def _is_known(key):
    return (key in FLAGS or key in INTEGER_OPTIONS or key in CHOICE_OPTIONS or key in FREE_VALUE_OPTIONS
            or key.startswith("x-"))


def validate(parsed):
    """Raise MountOptionError naming every unknown, malformed or contradictory option; return de-duplicated list."""
    unknown, malformed, unique = [], [], []
    for key, value in parsed:
        if not _is_known(key):
            unknown.append(render([(key, value)]))
            continue
        if key in FLAGS and key not in FREE_VALUE_OPTIONS and value is not None:
            malformed.append("%s=%s (%s takes no value)" % (key, value, key))
        elif key in INTEGER_OPTIONS and (value is None or not value.isdigit()):
            malformed.append("%s (%s needs a whole number of %s)" % (
                render([(key, value)]), key, "seconds" if key.startswith("ac") or key == "retry" else "units"))
        elif key in CHOICE_OPTIONS and value not in CHOICE_OPTIONS[key]:
            malformed.append("%s (%s is one of %s)" % (render([(key, value)]), key, ", ".join(CHOICE_OPTIONS[key])))
        elif key in FREE_VALUE_OPTIONS and key not in FLAGS and not value:
            malformed.append("%s (%s needs a value)" % (key, key))
        if (key, value) not in unique:
            unique.append((key, value))
    if unknown:
        raise MountOptionError("Unknown mount option(s): %s. Use options from nfs(5) and mount(8)."
                               % ", ".join(unknown))
    if malformed:
        raise MountOptionError("Invalid mount option value(s): %s." % "; ".join(malformed))
    contradictions = []
    keys_with_values = {}
    for key, value in unique:
        if value is not None:
            keys_with_values.setdefault(key, []).append(value)
    for key, values in keys_with_values.items():
        if len(values) > 1:
            contradictions.append(" and ".join("%s=%s" % (key, value) for value in values))
    versions = [(key, value) for key, value in unique if key in VERSION_KEYS]
    if len(set(value for unused_key, value in versions)) > 1:
        contradictions.append(" and ".join(render([option]) for option in versions))
    flags = set(key for key, value in unique if value is None)
    for group in EXCLUSIVE_FLAGS:
        present = [flag for flag in group if flag in flags]
        if len(present) > 1:
            contradictions.append(" and ".join(present))
    if contradictions:
        raise MountOptionError("Contradictory mount options: %s. Keep one of each." % "; ".join(contradictions))
    return unique


def _get(parsed, key):
    """Value of the last ``key`` option (None when absent or a flag)."""
    found = None
    for name, value in parsed:
        if name == key:
            found = value
    return found


def _has(parsed, key):
    return any(option[0] == key for option in parsed)


def _set(parsed, key, value, group=None):
    """Replace ``key`` (or any flag of its exclusive ``group``) in place, or append it."""
    names = set(group or ()) | {key}
    for index, option in enumerate(parsed):
        if option[0] in names:
            parsed[index] = (key, value)
            return parsed
    parsed.append((key, value))
    return parsed


def _exclusive_group(key):
    for group in EXCLUSIVE_FLAGS:
        if key in group:
            return group
    return (key,)


def directory_cache_seconds(parsed):
    """The effective ``acdirmax`` in seconds (``actimeo`` sets it too; the later option wins; noac means 0)."""
    seconds = None
    for key, value in parsed:
        if key in ("acdirmax", "actimeo") and value is not None and value.isdigit():
            seconds = int(value)
        elif key == "noac":
            seconds = 0
    return seconds


def compute(product, storage, nfs_version, options):
    """Merge the operator's ``options`` with what ``product`` on ``storage`` needs.

    Returns ``{"opts": [(key, value)...], "warnings": [...], "file_lock_type": str or None}``;
    raises MountOptionError for unknown, malformed, contradictory or unsafe options.
    """
    if product not in PRODUCTS:
        raise MountOptionError("product must be one of %s" % ", ".join(PRODUCTS))
    if storage not in STORAGES:
        raise MountOptionError("storage must be nfs or efs")
    operator = validate(parse(options))
    warnings = []

    given_versions = [(key, value) for key, value in operator if key in VERSION_KEYS]
    if nfs_version is not None and given_versions and given_versions[0][1] != nfs_version:
        raise MountOptionError("Contradictory NFS versions: nfs_version=%s and the option %s. Set the version once."
                               % (nfs_version, render(given_versions[:1])))
    version = nfs_version or (given_versions[0][1] if given_versions else None)
    if storage == "efs":
        version = version or "4.1"
        if version not in EFS_VERSIONS:
            raise MountOptionError("Amazon EFS speaks NFS 4.0 and 4.1 only, not %s; use nfs_version 4.1 (AWS's "
                                   "recommendation)." % version)
    if version == "2":
        raise MountOptionError("NFS version 2 is not supported by the products; use 3 or 4.x.")

    if _has(operator, "ro"):
        raise MountOptionError("Option ro: the shared directory must be writable by every node.")

    merged = []
    version_key = given_versions[0][0] if given_versions else "nfsvers"
    if version is not None:
        merged.append((version_key, version))
    if storage == "efs":
        merged.extend(EFS_RECOMMENDED)
    for key, value in operator:
        if key in VERSION_KEYS:
            continue
        group = _exclusive_group(key) if value is None else (key,)
        previous = [(name, old) for name, old in merged if name in group]
        if storage == "efs" and previous and previous[0] != (key, value):
            warnings.append("%s overrides the EFS recommended %s." % (
                render([(key, value)]), render(previous[:1])))
        _set(merged, key, value, group)

    if _has(merged, "soft") or _has(merged, "softerr"):
        warnings.append("A soft mount returns I/O errors to the product when the server is slow, which can "
                        "corrupt its data; use hard.")

    lookupcache = _get(merged, "lookupcache")
    dir_cache = directory_cache_seconds(merged)
    if product == "package_manager":
        short_cache = dir_cache is not None and dir_cache <= PACKAGE_MANAGER_MAX_DIR_CACHE
        if lookupcache == "all" and not short_cache:
            raise MountOptionError(
                "lookupcache=all without acdirmax or actimeo of %d seconds or less: Package Manager would not see "
                "new files in its shared data directory for up to 60 seconds. Use lookupcache=pos, or add "
                "actimeo=%d." % (PACKAGE_MANAGER_MAX_DIR_CACHE, PACKAGE_MANAGER_MAX_DIR_CACHE))
        if lookupcache is None and (storage == "efs" or not short_cache):
            merged.append(("lookupcache", "pos"))
    elif storage == "efs":
        if lookupcache is None:
            merged.append(("lookupcache", "pos"))
        elif lookupcache == "all":
            warnings.append("lookupcache=all on EFS: Posit recommends lookupcache=pos, so that new files are seen "
                            "at once.")

    file_lock_type = None
    if product == "workbench":
        if _has(merged, "nolock"):
            raise MountOptionError("Option nolock: Workbench shared home directories need file locking across "
                                   "nodes (sessions would be duplicated or lose data). Remove nolock.")
        local_lock = _get(merged, "local_lock")
        if local_lock not in (None, "none"):
            raise MountOptionError("Option local_lock=%s: Workbench needs locks that every node sees; remove it "
                                   "or use local_lock=none." % local_lock)
        if storage == "efs":
            file_lock_type = "advisory"
            warnings.append("Workbench on EFS: set lock-type=advisory in /etc/rstudio/file-locks on every node; the "
                            "default link-based locks do not work on EFS.")
        else:
            file_lock_type = "linkbased"
    return {"opts": merged, "warnings": warnings, "file_lock_type": file_lock_type}


# ---- live mounts -----------------------------------------------------------------------------------------------

def _unescape(field):
    # /proc/mounts escapes space, tab, newline and backslash as octal.
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), field)


def parse_mounts(text):
    """Parse /proc/mounts into ``[{device, mount_point, fstype, options}]`` (options as the raw string)."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        mounts.append({"device": _unescape(fields[0]), "mount_point": _unescape(fields[1]), "fstype": fields[2],
                       "options": fields[3]})
    return mounts


def find_mount(mounts, path):
    """The mount that holds ``path``: the longest mount point containing it (the last one when stacked)."""
    path = os.path.normpath(path)
    best = None
    for mount in mounts:
        point = os.path.normpath(mount["mount_point"])
        if path == point or path.startswith(point.rstrip("/") + "/") or point == "/":
            if best is None or len(point) >= len(os.path.normpath(best["mount_point"])):
                best = mount
    return best


def _live_values(live):
    """Live options as a dict; actimeo expanded into the four attribute cache values it sets."""
    values = {}
    for key, value in live:
        if key == "actimeo":
            for cache_key in ATTRIBUTE_CACHE_KEYS:
                values[cache_key] = value
        elif key == "nfsvers":
            values["vers"] = value
        elif key == "lookupcache" and value == "positive":
            values["lookupcache"] = "pos"
        else:
            values[key] = value
    return values


def _satisfied(key, value, live_values):
    if key in USERSPACE_ONLY or key.startswith("x-"):
        return True
    if key in VERSION_KEYS:
        live_version = live_values.get("vers")
        if live_version is None:
            return False
        if value == "4":
            return live_version.startswith("4")
        return live_version == value
    if key == "lookupcache":
        if value in ("pos", "positive"):
            # lookupcache=none caches even less, so it serves the same purpose.
            return live_values.get("lookupcache") in ("pos", "none")
        return live_values.get("lookupcache", "all") == value
    if key == "actimeo":
        return all(live_values.get(cache_key) == value for cache_key in ATTRIBUTE_CACHE_KEYS)
    if value is None:
        if key in live_values:
            return True
        opposite = [flag for flag in _exclusive_group(key) if flag != key]
        return key in DEFAULT_FLAGS and not any(flag in live_values for flag in opposite)
    return live_values.get(key) == value


def check_live(product, wanted, live_options):
    """Compare a live mount's option string with the computed options.

    Returns ``{"missing": [...], "unwanted": [...], "compliant": bool}``: ``missing`` lists wanted options the
    mount does not apply, ``unwanted`` live options that break the product's rules.
    """
    live = parse([live_options])
    live_values = _live_values(live)
    missing = []
    for key, value in wanted:
        if key == "lookupcache" and value in ("pos", "positive") and product == "package_manager":
            cache = directory_cache_seconds(live)
            if live_values.get("lookupcache") in ("pos", "none") or (
                    cache is not None and cache <= PACKAGE_MANAGER_MAX_DIR_CACHE):
                continue
        if not _satisfied(key, value, live_values):
            missing.append(render([(key, value)]))
    unwanted = []
    if product == "workbench":
        if "nolock" in live_values:
            unwanted.append("nolock")
        if live_values.get("local_lock") not in (None, "none"):
            unwanted.append("local_lock=%s" % live_values["local_lock"])
    return {"missing": missing, "unwanted": unwanted, "compliant": not missing and not unwanted}
