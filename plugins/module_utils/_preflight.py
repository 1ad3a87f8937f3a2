# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!
"""Pre-flight verdicts: is a product's cluster fit, and if not, which node, which check, what to do.

Pure functions, one per checklist item; the filter plugins ``preflight_problems``, ``preflight_config`` and
``preflight_key_source`` call them and the role's tasks only gather the readings and print the result.

Every check takes ``readings`` (an ordered mapping node -> what the role read on that node, described in
``docs/preflight.md``) and the product ``record`` (``<product>_record`` of the product role) and returns a list of
findings ``{node, check, problem, fix, level}``:

- ``stop``: the cluster is unfit; every playbook stops before changing anything.
- ``repair``: ``site.yml`` repairs it itself (it rewrites configuration files, keys and chrony); ``site.yml``
  reports it and goes on, every other playbook (``preflight.yml``, the upgrades) stops.
- ``warn``: reported, never stops.
- ``skipped``: a check that does not apply yet (a fresh cluster), with the reason.

A finding about the whole cluster rather than one node has ``node`` empty.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import math
import posixpath
import re

LEVELS = ("stop", "repair", "warn", "skipped")
# A configuration key whose name holds one of these (case-insensitive) is secret: its value is never shown.
SECRET_WORDS = ("password", "passwd", "secret", "token", "key")
SECRET_MASK = "<secret sha256:%s>"
# scheme://user:password@host: the password part of any value is masked, whatever the key.
_URL_CREDENTIALS = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^/:@\s]*:)(?P<secret>[^@/\s]+)(?P<tail>@)", re.I)
# name=value pairs inside a value (query strings, connection strings) whose name looks secret.
_INLINE_SECRET = re.compile(r"(?P<head>\b[\w.-]*(?:%s)[\w.-]*\s*=\s*)(?P<secret>[^&;\s]+)" % "|".join(SECRET_WORDS),
                            re.I)
# Default file names left out of the drift check: package manager leftovers and editor files.
DEFAULT_CONFIG_IGNORE = ("*.dpkg-old", "*.dpkg-dist", "*.dpkg-new", "*.dpkg-bak", "*.ucf-old", "*.ucf-dist",
                         "*.ucf-new", "*~", ".*.swp")
# chrony's reference ID of its own clock (the `local` directive): 127.127.1.1.
CHRONY_LOCAL_REFERENCE = "7F7F0101"
# Amazon EFS: fs-<id>[.efs.<region>.amazonaws.com[.cn]]:/path, or the mount helper's file system type "efs".
_EFS_SOURCE = re.compile(r"^(fs-[0-9a-f]+(\.efs\.[a-z0-9-]+\.amazonaws\.com(\.cn)?)?|[^:]*\.efs\.[a-z0-9-]+"
                         r"\.amazonaws\.com(\.cn)?):", re.I)
LOCK_KINDS = {"linkbased": "link-based", "advisory": "advisory"}


class PreflightError(ValueError):
    """Readings or a record that cannot be judged; the message says what is wrong and what to do."""


def finding(node, check, problem, fix="", level="stop"):
    if level not in LEVELS:
        raise PreflightError("level must be one of %s, got %r" % (", ".join(LEVELS), level))
    return {"node": node, "check": check, "problem": problem, "fix": fix, "level": level}


def render(item, label=""):
    """One line for the operator: ``[check] node: problem Fix: fix``."""
    where = item["node"] or label or "cluster"
    text = "[%s] %s: %s" % (item["check"], where, item["problem"])
    if item.get("fix"):
        text += " Fix: %s" % item["fix"]
    return text


# ---- small helpers ---------------------------------------------------------------------------------------------

def _majority(values):
    """The most frequent value (ties: the one seen first) and its count."""
    counts = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    best, best_count = None, 0
    for value in values:
        if counts[value] > best_count:
            best, best_count = value, counts[value]
    return best, best_count


def _short(fingerprint):
    return (fingerprint or "")[:16]


def _version_key(version):
    """Order Debian-like versions well enough to name the newest one (digits compare as numbers)."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.findall(r"\d+|[^\d]+", version)]


def _get(mapping, *path, default=None):
    for key in path:
        if not isinstance(mapping, dict) or key not in mapping:
            return default
        mapping = mapping[key]
    return mapping


def _nodes(readings):
    if not isinstance(readings, dict):
        raise PreflightError("the readings must be a mapping of node name to what was read on it, got %s"
                             % type(readings).__name__)
    return list(readings)


def _text(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _is_under(path, directory):
    path, directory = posixpath.normpath(path), posixpath.normpath(directory)
    return path == directory or path.startswith(directory.rstrip("/") + "/")


# ---- configuration: parse, mask ----------------------------------------------------------------------------------

def is_secret(name, patterns=()):
    """Whether a configuration entry ``file:Section.Key`` holds a secret.

    Secret when the key (or its file name) contains one of SECRET_WORDS, or when the name matches one of
    ``patterns`` (shell patterns, case-insensitive, compared with ``file:Section.Key``, ``Section.Key`` and ``Key``).
    """
    lowered = name.lower()
    if any(word in lowered for word in SECRET_WORDS):
        return True
    bare = lowered.split(":", 1)[-1]
    candidates = (lowered, bare, bare.rsplit(".", 1)[-1])
    for pattern in patterns or ():
        pattern = str(pattern).lower()
        if any(fnmatch.fnmatchcase(candidate, pattern) for candidate in candidates):
            return True
    return False


def mask(value):
    return SECRET_MASK % hashlib.sha256(_text(value).encode("utf-8", "surrogateescape")).hexdigest()[:12]


def mask_value(name, value, patterns=()):
    """``value`` as it may be shown: a hash when the key is secret, credentials inside it masked otherwise."""
    if value is None:
        return None
    value = _text(value)
    if is_secret(name, patterns):
        return mask(value)
    value = _URL_CREDENTIALS.sub(lambda m: m.group("head") + mask(m.group("secret")) + m.group("tail"), value)
    return _INLINE_SECRET.sub(lambda m: m.group("head") + mask(m.group("secret")), value)


def parse_config_text(text):
    """Entries of an INI, gcfg or key=value file: ``[(name, value)]`` in file order.

    ``[Section]`` prefixes the following keys (``Section.Key``); ``#`` and ``;`` start comments; a line without
    ``=`` is an entry whose value is None (a gcfg bare key, or a line of a file in another format).
    """
    entries, section = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        if "=" in line:
            key, value = line.split("=", 1)
            key, value = key.strip(), value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
        else:
            key, value = line, None
        entries.append(("%s.%s" % (section, key) if section else key, value))
    return entries


def flatten_config(data):
    """Entries of a planned configuration ``{Section: {Key: value}}`` or ``{key: value}``, sorted."""
    entries = []
    for key, value in (data or {}).items():
        if isinstance(value, dict):
            for sub_key, sub_value in value.items():
                entries.append(("%s.%s" % (key, sub_key), _text(sub_value)))
        else:
            entries.append((str(key), _text(value)))
    return sorted(entries)


def config_entries(files, secret_keys=(), settings=None):
    """Masked configuration of one node, and the values of named settings.

    ``files`` maps a file name (relative to the configuration directory) to its text, or to a planned mapping
    (see flatten_config), or to None for a file that could not be read as text. Returns ``{"files": [names],
    "entries": [[file:name, masked value], ...] (sorted), "settings": {setting: value or None}}``; ``settings``
    maps a setting's name to its ``file:Section.Key`` (case-insensitive; the last occurrence wins) and its value
    is returned unmasked, so settings must never name a secret.
    """
    if not isinstance(files, dict):
        raise PreflightError("the configuration files must be a mapping of file name to content, got %s"
                             % type(files).__name__)
    entries, raw = [], {}
    for name in sorted(files):
        content = files[name]
        if content is None:
            entries.append(["%s:" % name, "<unreadable or binary file>"])
            continue
        parsed = flatten_config(content) if isinstance(content, dict) else parse_config_text(str(content))
        for key, value in parsed:
            full = "%s:%s" % (name, key)
            raw[full.lower()] = value
            entries.append([full, mask_value(full, value, secret_keys)])
    found = {}
    for setting, key in (settings or {}).items():
        if is_secret(key, secret_keys):
            raise PreflightError("setting %s names %s, a secret key: settings are returned unmasked" % (setting, key))
        found[setting] = raw.get(str(key).lower())
    return {"files": sorted(files), "entries": sorted(entries), "settings": found}


def _entry_line(entry):
    name, value = entry
    return name if value is None else "%s = %s" % (name, value)


def _without_node_keys(entries, node_keys):
    lowered = set(str(key).lower() for key in node_keys or ())
    return [entry for entry in entries if entry[0].lower() not in lowered]


# ---- the checks: one per checklist item ----------------------------------------------------------------------

def check_version_mix(readings, record):
    """Every installed node runs the same version of the package."""
    installed = [(node, _get(readings[node], "version") or "") for node in _nodes(readings)]
    installed = [(node, version) for node, version in installed if version]
    if not installed:
        return [finding("", "version mix", "version, configuration and database checks do not apply yet: %s is "
                        "not installed on any node." % record["package"], level="skipped")]
    versions = [version for unused_node, version in installed]
    if len(set(versions)) == 1:
        return []
    reference, count = _majority(versions)
    newest = max(versions, key=_version_key)
    result = []
    for node, version in installed:
        if version == reference:
            continue
        result.append(finding(
            node, "version mix",
            "%s %s is installed while %d of %d installed node(s) run %s (the inventory pins %s)."
            % (record["package"], version, count, len(versions), reference, record.get("version", "")),
            "bring every node to one version, the newest the nodes run (%s): run the rolling upgrade to it, which "
            "resumes an interrupted one (ansible-playbook positops.ha.rolling_upgrade -e rolling_upgrade_product=%s "
            "-e %s=%s), then keep %s: %s in the inventory."
            % (newest, record["name"], record["version_var"], newest, record["version_var"], newest)))
    return result


def check_accounts(readings, record, declared=()):
    """The service accounts have the same UID and GID on every node (node_base_accounts when it names them)."""
    result = []
    nodes = _nodes(readings)
    declared_by_name = dict((item.get("name"), item) for item in declared or () if isinstance(item, dict))
    for account in record.get("accounts", []):
        user, group = account["user"], account["group"]
        seen = [(node, _get(readings[node], "accounts", user)) for node in nodes]
        present = [(node, ids) for node, ids in seen if ids and ids.get("uid")]
        if not present:
            result.append(finding("", "uid/gid mismatch", "the UID/GID check of %s does not apply yet: the account "
                                  "exists on no node." % user, level="skipped"))
            continue
        if user in declared_by_name:
            item = declared_by_name[user]
            reference = (str(item.get("uid")), str(item.get("gid")), str(item.get("gid")))
            source = "node_base_accounts"
        else:
            triples = [(ids["uid"], ids.get("gid", ""), ids.get("group_gid", "")) for unused, ids in present]
            reference, count = _majority(triples)
            source = "%d of %d nodes" % (count, len(triples))
        for node, ids in present:
            mine = (ids["uid"], ids.get("gid", ""), ids.get("group_gid", ""))
            if mine == reference:
                continue
            result.append(finding(
                node, "uid/gid mismatch",
                "user %s has UID %s and primary GID %s, group %s has GID %s; expected UID %s GID %s (%s)."
                % (user, mine[0] or "-", mine[1] or "-", group, mine[2] or "-", reference[0], reference[1], source),
                "stop %s, renumber with usermod -u %s %s and groupmod -g %s %s, chown the files that carried the "
                "old IDs (find / -xdev -uid %s -exec chown -h %s {} +), then re-run playbooks/site.yml (node_base "
                "never renumbers)."
                % (record["service"], reference[0], user, reference[1], group, mine[0] or "?", reference[0])))
    return result


def check_config_drift(readings, record):
    """The configuration directory is identical on every node, except the documented per-node keys.

    Files site.yml writes (the record's config_files) are repaired by site.yml when the inventory plans the same
    for every node; any other file must be made identical by the operator.
    """
    nodes = _nodes(readings)
    node_keys = record.get("node_keys", [])
    managed = set(posixpath.basename(item["path"]) if isinstance(item, dict) else posixpath.basename(item)
                  for item in record.get("config_files", []))
    states = {}
    for node in nodes:
        config = _get(readings[node], "config")
        if not config or not config.get("files"):
            continue
        files = set(config["files"])
        entries = [tuple(entry) for entry in _without_node_keys(config.get("entries", []), node_keys)]
        states[node] = (files, entries)
    if len(states) < 2:
        return []
    keys = dict((node, (tuple(sorted(files)), tuple(entries))) for node, (files, entries) in states.items())
    reference_key, count = _majority([keys[node] for node in states])
    if len(set(keys.values())) == 1:
        return []
    reference_node = next(node for node in states if keys[node] == reference_key)
    reference_files, reference_entries = states[reference_node]
    planned_drift = set(item["node"] for item in check_planned_config(readings, record))
    result = []
    for node, (files, entries) in states.items():
        if keys[node] == reference_key:
            continue
        only_here = [line for line in entries if line not in reference_entries]
        missing = [line for line in reference_entries if line not in entries]
        files_here = sorted(files - reference_files)
        files_missing = sorted(reference_files - files)
        touched = set(name.split(":", 1)[0] for name, unused in only_here + missing) | set(files_here) | set(
            files_missing)
        unmanaged = sorted(touched - managed)
        parts = []
        if files_here:
            parts.append("files only here: %s" % ", ".join(files_here))
        if files_missing:
            parts.append("files missing here: %s" % ", ".join(files_missing))
        extra = [_entry_line(e) for e in only_here if e[0].split(":", 1)[0] not in files_here]
        lacking = [_entry_line(e) for e in missing if e[0].split(":", 1)[0] not in files_missing]
        parts.append("only here: %s" % ("; ".join(extra) or "nothing"))
        parts.append("missing here: %s" % ("; ".join(lacking) or "nothing"))
        problem = "the configuration in %s differs from %s (like %d of %d nodes): %s." % (
            record.get("config_dir", "the configuration directory"), reference_node, count, len(states),
            "; ".join(parts))
        per_node = ", ".join(node_keys) or "none"
        if unmanaged:
            fix = ("make %s identical on every node (copy from %s, or remove it where it does not belong): "
                   "site.yml does not write %s. Per-node keys are %s." % (
                       ", ".join("%s/%s" % (record.get("config_dir", ""), name) for name in unmanaged),
                       reference_node, "them" if len(unmanaged) > 1 else "it", per_node))
            result.append(finding(node, "config drift", problem, fix))
        elif node in planned_drift:
            result.append(finding(node, "config drift", problem,
                                  "the inventory itself gives this node other values (see [inventory drift]): make "
                                  "them identical for all nodes, then run playbooks/site.yml, which rewrites the "
                                  "files on every node. Per-node keys are %s." % per_node))
        else:
            result.append(finding(node, "config drift", problem,
                                  "run playbooks/site.yml: it rewrites %s on every node from the inventory (set "
                                  "values there, identical for all nodes; per-node keys are %s)."
                                  % (", ".join(sorted(touched)), per_node), level="repair"))
    return result


def check_planned_config(readings, record):
    """What site.yml will write is identical for every node, except the documented per-node keys."""
    nodes = [node for node in _nodes(readings) if _get(readings[node], "planned", "config") is not None]
    if len(nodes) < 2:
        return []
    node_keys = record.get("node_keys", [])
    planned = dict((node, tuple(tuple(entry) for entry in _without_node_keys(
        _get(readings[node], "planned", "config", "entries", default=[]), node_keys))) for node in nodes)
    if len(set(planned.values())) == 1:
        return []
    reference, count = _majority([planned[node] for node in nodes])
    reference_node = next(node for node in nodes if planned[node] == reference)
    result = []
    for node in nodes:
        if planned[node] == reference:
            continue
        only_here = [_entry_line(e) for e in planned[node] if e not in reference]
        missing = [_entry_line(e) for e in reference if e not in planned[node]]
        result.append(finding(
            node, "inventory drift",
            "the inventory plans another configuration for this node than for %s (like %d of %d nodes): only here: "
            "%s; missing here: %s." % (reference_node, count, len(nodes), "; ".join(only_here) or "nothing",
                                       "; ".join(missing) or "nothing"),
            "give every node the same values (group_vars, not host_vars; the per-node keys %s may differ), then run "
            "playbooks/site.yml." % (", ".join(node_keys) or "none")))
    return result


def key_source(key, holders, group_hosts=None):
    """Where the key every node receives comes from: the cluster's key, never a key a node just made.

    ``key`` is the record's key file entry (``path``, ``name``, optional ``given_fingerprint`` and ``var``);
    ``holders`` an ordered mapping node -> fingerprint of the key it held before the run (empty when none);
    ``group_hosts`` every node of the product's inventory group (default: the nodes read).
    Returns ``{source, node, fingerprint, fingerprints, unread}``; ``source`` is ``given`` (the inventory's),
    ``node`` (copy it from ``node``, which holds ``fingerprint`` like every node that holds one), ``new`` (no node
    holds one: make a new key), ``conflict`` (nodes disagree) or ``unknown`` (no node read holds one, but nodes
    of the group were not read).
    """
    if not isinstance(holders, dict):
        raise PreflightError("holders must map node names to fingerprints, got %s" % type(holders).__name__)
    fingerprints = dict((node, fingerprint) for node, fingerprint in holders.items() if fingerprint)
    unread = [node for node in (group_hosts or []) if node not in holders]
    decision = {"path": key.get("path", ""), "source": "", "node": "", "fingerprint": "",
                "fingerprints": fingerprints, "unread": unread}
    given = key.get("given_fingerprint") or ""
    if given:
        decision.update(source="given", fingerprint=given)
    elif len(set(fingerprints.values())) > 1:
        decision.update(source="conflict")
    elif fingerprints:
        node = next(iter(fingerprints))
        decision.update(source="node", node=node, fingerprint=fingerprints[node])
    elif unread:
        decision.update(source="unknown")
    else:
        decision.update(source="new")
    return decision


def _fingerprint_list(fingerprints):
    return ", ".join("%s %s" % (node, _short(fingerprint)) for node, fingerprint in fingerprints.items())


def key_source_problem(key, decision, record=None):
    """The sentence and the fix when ``decision`` cannot give every node the cluster's key, else None."""
    var = key.get("var") or "the key's variable"
    if decision["source"] == "conflict":
        return ("the nodes hold different %ss in %s (fingerprints: %s) and the inventory gives none (%s), so no "
                "node's copy can be trusted as the cluster's."
                % (key.get("name", "key"), key["path"], _fingerprint_list(decision["fingerprints"]), var),
                "find the key the cluster's data was made with (a node whose package was just reinstalled holds a "
                "new one), put it in %s (Ansible Vault, e.g. ssh NODE sudo cat %s | ansible-vault encrypt_string "
                "--stdin-name %s), then run playbooks/site.yml, which writes it on every node."
                % (var, key["path"], var))
    if decision["source"] == "unknown":
        group = (record or {}).get("group", "")
        return ("no node of this run holds %s %s, and %s of the inventory group%s were not read (--limit or "
                "unreachable): one of them may hold the cluster's key." % (
                    key.get("name", "key"), key["path"], ", ".join(decision["unread"]), " " + group if group else ""),
                "run without --limit (every node of the group reachable), or give the cluster's key in %s."
                % var)
    return None


def check_keys(readings, record, group_hosts=None):
    """Shared keys: the mode the product needs, and one key (the cluster's) on every node."""
    result = []
    nodes = _nodes(readings)
    for key in record.get("key_files", []):
        path = key["path"]
        states = [(node, _get(readings[node], "keys", path) or {}) for node in nodes]
        for node, state in states:
            if state.get("exists") and state.get("mode") != key["mode"]:
                result.append(finding(
                    node, "key mode", "%s %s has mode %s, expected %s." % (
                        key["name"], path, state.get("mode"), key["mode"]),
                    "run playbooks/site.yml, which sets it (or chmod %s %s)." % (key["mode"], path),
                    level="repair"))
        holders = dict((node, state.get("fingerprint") or "") for node, state in states)
        decision = key_source(key, holders, group_hosts)
        problem = key_source_problem(key, decision, record)
        if decision["source"] == "given":
            for node, state in states:
                if state.get("fingerprint") and state["fingerprint"] != decision["fingerprint"]:
                    result.append(finding(
                        node, "key mismatch",
                        "%s %s has fingerprint %s, not the key given in %s (%s)." % (
                            key["name"], path, _short(state["fingerprint"]), key.get("var", "the inventory"),
                            _short(decision["fingerprint"])),
                        "run playbooks/site.yml, which writes the given key on every node (this node's key is "
                        "replaced; if this node's key is the cluster's, put it in %s instead)."
                        % key.get("var", "the inventory"), level="repair"))
        elif decision["source"] == "conflict":
            for node, state in states:
                if state.get("fingerprint"):
                    result.append(finding(node, "key mismatch", "%s %s has fingerprint %s, but %s" % (
                        key["name"], path, _short(state["fingerprint"]), problem[0]), problem[1]))
        elif decision["source"] == "unknown":
            result.append(finding("", "key source", problem[0], problem[1]))
        elif decision["source"] == "new":
            result.append(finding("", "key mismatch", "the %s check does not apply yet: %s exists on no node "
                                  "(site.yml makes one key and gives it to every node)." % (key["name"], path),
                                  level="skipped"))
    return result


def check_shared_storage(readings, record):
    """Each shared directory is the same directory (same inode and entries) on every node."""
    result = []
    nodes = _nodes(readings)
    for directory in record.get("shared_dirs", []):
        prints = [(node, _get(readings[node], "dirs", directory) or "") for node in nodes]
        present = [value for unused, value in prints if value]
        if not present:
            result.append(finding("", "storage not shared", "the shared storage check of %s does not apply yet: "
                                  "the directory exists on no node." % directory, level="skipped"))
            continue
        reference, unused_count = _majority(present)
        reference_node = next(node for node, value in prints if value == reference)
        for node, value in prints:
            if value and value != reference:
                result.append(finding(
                    node, "storage not shared", "%s is not the same directory as on %s (%s here, %s there)."
                    % (directory, reference_node, value, reference),
                    "mount the shared storage at %s on %s (check findmnt %s; the shared_storage role mounts it), "
                    "then re-run." % (directory, node, directory)))
            elif not value and _get(readings[node], "version"):
                result.append(finding(
                    node, "storage not shared", "%s does not exist here but exists on %s, and %s is installed here."
                    % (directory, reference_node, record["package"]),
                    "mount the shared storage at %s on %s (the shared_storage role mounts it), then re-run."
                    % (directory, node)))
    return result


def check_database(readings, record):
    """Every installed node reaches the product's PostgreSQL database."""
    database = record.get("database") or {}
    if not any(_get(readings[node], "version") for node in _nodes(readings)):
        return []
    if not database:
        return [finding("", "database unreachable", "the database check does not apply: no PostgreSQL host is "
                        "configured.", level="skipped")]
    result = []
    password = _text(database.get("password"))
    for node in _nodes(readings):
        state = _get(readings[node], "database") or {}
        if not state.get("checked") or state.get("available"):
            continue
        error = _text(state.get("error")).strip() or "no answer"
        if password:
            error = error.replace(password, "********")
        result.append(finding(
            node, "database unreachable", "PostgreSQL at %s:%s, database %s as %s does not answer (%s)."
            % (database.get("host"), database.get("port"), database.get("name"), database.get("user"), error),
            "start PostgreSQL (systemctl start postgresql on the database host), check that it listens on port %s, "
            "that pg_hba.conf lets this node in and that the role and password are right." % database.get("port")))
    return result


# ---- mounts ----------------------------------------------------------------------------------------------------

def _unescape(field):
    """A /proc/mounts or fstab field with its octal escapes (``\\040`` for a space) decoded."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), field)


def _parse_mount_table(text):
    """``/proc/mounts`` or ``/etc/fstab`` lines as ``[{source, target, fstype}]`` (octal escapes decoded)."""
    table = []
    for line in (text or "").splitlines():
        fields = line.split()
        if len(fields) < 3 or fields[0].startswith("#"):
            continue
        table.append({"source": _unescape(fields[0]), "target": _unescape(fields[1]), "fstype": fields[2]})
    return table


def mount_of(mounts_reading, path):
    """The live mount holding ``path`` on a node, with its fstab entry: ``{target, source, fstype, fstab_source,
    fstab_fstype}``, or None when unknown. ``mounts_reading`` is ``{proc_mounts, fstab, paths: {path: real path of
    its nearest existing ancestor}}``."""
    if not mounts_reading:
        return None
    real = _get(mounts_reading, "paths", path) or path
    best = None
    for mount in _parse_mount_table(mounts_reading.get("proc_mounts")):
        if _is_under(real, mount["target"]) and (best is None or len(mount["target"]) >= len(best["target"])):
            best = mount
    if best is None:
        return None
    result = dict(best)
    for entry in _parse_mount_table(mounts_reading.get("fstab")):
        if posixpath.normpath(entry["target"]) == posixpath.normpath(best["target"]):
            result.update(fstab_source=entry["source"], fstab_fstype=entry["fstype"])
    return result


def is_efs(source="", fstype=""):
    """Whether a mount source or file system type is Amazon EFS."""
    return (fstype or "").lower() == "efs" or bool(_EFS_SOURCE.match(source or ""))


def _planned_efs_mounts(reading):
    """The node's planned shared_storage mounts that are EFS: storage efs, fstype efs, or an EFS source."""
    default_storage = _get(reading, "planned", "storage_type") or "nfs"
    found = []
    for mount in _get(reading, "planned", "mounts") or []:
        storage = mount.get("storage") or default_storage
        if storage == "efs" or is_efs(mount.get("src", ""), mount.get("fstype", "")):
            found.append(mount.get("path", ""))
    return found


def _live_efs_mounts(reading, paths):
    found = []
    for path in paths:
        mount = mount_of(_get(reading, "mounts"), path)
        if mount and (is_efs(mount.get("source"), mount.get("fstype")) or
                      is_efs(mount.get("fstab_source", ""), mount.get("fstab_fstype", ""))):
            found.append("%s (%s on %s)" % (path, mount.get("fstab_source") or mount["source"], mount["target"]))
    return found


# ---- Connect ---------------------------------------------------------------------------------------------------

def _for_records_with(name):
    """Run the decorated check only for a product whose record has ``preflight.<name>``, handing it that entry as
    ``spec``; any other product gets no findings from it."""
    def decorate(check):
        @functools.wraps(check)
        def run(readings, record):
            spec = _get(record, "preflight", name)
            return check(readings, record, spec) if spec else []
        return run
    return decorate


def _metrics_path(settings, spec):
    """Metrics.DataPath in effect: the setting, else <Server.DataDir>/metrics, else the product default's."""
    path = settings.get("metrics_data_path")
    if path:
        return path
    data_dir = settings.get("data_dir") or spec.get("default_data_dir", "/var/lib/rstudio-connect")
    return posixpath.join(data_dir, "metrics")


def _on_share(reading, path, shared):
    """Why ``path`` is on the shared storage (a sentence), or None."""
    for directory in shared:
        if directory and _is_under(path, directory):
            return "inside the shared directory %s" % directory
    mounts = _get(reading, "mounts")
    mount = mount_of(mounts, path)
    if mount and mount["target"] != "/":
        for directory in shared:
            other = mount_of(mounts, directory)
            if other and other["target"] == mount["target"] and other["source"] == mount["source"]:
                return "on the shared file system %s mounted at %s" % (mount["source"], mount["target"])
    return None


@_for_records_with("metrics_path")
def check_metrics_path(readings, record, spec):
    """Connect: Metrics.DataPath is unique per node and off the shared storage."""
    nodes = _nodes(readings)
    var = spec.get("var", "the inventory")
    result = []

    def shared_dirs(reading):
        planned_mounts = [mount.get("path") for mount in _get(reading, "planned", "mounts") or [] if mount.get("path")]
        return list(record.get("shared_dirs", [])) + planned_mounts

    planned = dict((node, _metrics_path(_get(readings[node], "planned", "settings") or {}, spec)) for node in nodes)
    planned_bad = {}
    for node in nodes:
        where = _on_share(readings[node], planned[node], shared_dirs(readings[node]))
        if where:
            planned_bad[node] = where
            result.append(finding(node, "metrics path", "the inventory puts Metrics.DataPath at %s, %s: every Connect "
                                  "node needs its own metrics directory." % (planned[node], where),
                                  "set %s to a local directory of this node (the role's default is "
                                  "/var/lib/rstudio-connect/metrics), then run playbooks/site.yml." % var))
    for node in nodes:
        settings = _get(readings[node], "config", "settings")
        if settings is None or not _get(readings[node], "config", "files") or node in planned_bad:
            continue
        current = _metrics_path(settings, spec)
        where = _on_share(readings[node], current, shared_dirs(readings[node]))
        if where:
            result.append(finding(node, "metrics path", "Metrics.DataPath is %s, %s: every Connect node needs its "
                                  "own metrics directory (a second server on it stops)." % (current, where),
                                  "run playbooks/site.yml, which writes Metrics.DataPath = %s from %s."
                                  % (planned[node], var), level="repair"))
    # Several nodes planned on one network file system directory (not the product's share) is no better.
    by_place = {}
    for node in nodes:
        if node in planned_bad:
            continue
        mount = mount_of(_get(readings[node], "mounts"), planned[node])
        if mount and mount["target"] != "/" and ":" in mount["source"]:
            by_place.setdefault((planned[node], mount["source"]), []).append(node)
    for (path, source), sharing in sorted(by_place.items()):
        if len(sharing) > 1:
            for node in sharing:
                result.append(finding(node, "metrics path", "Metrics.DataPath %s is on the network file system %s, "
                                      "the same directory as on %s." % (path, source, ", ".join(
                                          other for other in sharing if other != node)),
                                      "give each node its own directory in %s (host_vars) or a local one, then run "
                                      "playbooks/site.yml." % var))
    return result


@_for_records_with("schedule_concurrency")
def check_schedule_concurrency(readings, record, spec):
    """Connect: warn when no node runs scheduled jobs (ScheduleConcurrency 0 everywhere)."""
    nodes = _nodes(readings)
    default = str(spec.get("default", "2"))

    def value(settings):
        text = _text((settings or {}).get("schedule_concurrency")).strip() or default
        return int(text) if re.match(r"^-?\d+$", text) else None

    var = spec.get("var", "ScheduleConcurrency")
    configured = [node for node in nodes if _get(readings[node], "config", "files")]
    # What the inventory plans is judged first: when it sets 0 everywhere, site.yml would write that anyway.
    cases = (
        (nodes, "planned", "the inventory sets Applications.ScheduleConcurrency = 0 on every node (%s): no scheduled "
         "report or job will run anywhere.", "set %s to 1 or more on at least one node (host_vars), then run "
         "playbooks/site.yml."),
        (configured, "config", "Applications.ScheduleConcurrency is 0 on every node (%s): no scheduled report or "
         "job runs anywhere.", "run playbooks/site.yml, which writes the inventory's values (%s)."),
    )
    for among, source, problem, fix in cases:
        values = [value(_get(readings[node], source, "settings")) for node in among]
        if values and all(item == 0 for item in values):
            return [finding("", "schedule concurrency", problem % ", ".join(among), fix % var, level="warn")]
    return []


# ---- Workbench -------------------------------------------------------------------------------------------------

@_for_records_with("lock_type")
def check_lock_type(readings, record, spec):
    """Workbench: link-based file locks are refused on Amazon EFS (use advisory)."""
    default = spec.get("default", "linkbased")
    var = spec.get("var", "lock-type")
    result = []
    for node in _nodes(readings):
        reading = readings[node]
        planned = _text(_get(reading, "planned", "settings", "lock_type")) or default
        paths = list(record.get("shared_dirs", [])) + [p for p in spec.get("paths", []) if p]
        efs_planned = _planned_efs_mounts(reading)
        efs_live = _live_efs_mounts(reading, paths)
        if not efs_planned and not efs_live:
            continue
        where = "; ".join(["EFS mounts in shared_storage_mounts: %s" % ", ".join(efs_planned)] if efs_planned else []
                          + (["EFS mounted now: %s" % ", ".join(efs_live)] if efs_live else []))
        if planned == "linkbased":
            result.append(finding(node, "lock type", "the inventory sets lock-type=linkbased in /etc/rstudio/file-locks, "
                                  "but the shared storage is Amazon EFS (%s), where link-based locks do not work "
                                  "(sessions can be duplicated or lose data)." % where,
                                  "set %s: advisory in the inventory, then run playbooks/site.yml." % var))
            continue
        current = _get(reading, "config", "settings")
        if efs_live and current is not None and _get(reading, "config", "files") and (
                _text(current.get("lock_type")) or default) == "linkbased":
            result.append(finding(node, "lock type", "/etc/rstudio/file-locks has lock-type=linkbased on Amazon EFS "
                                  "(%s), where link-based locks do not work." % where,
                                  "run playbooks/site.yml, which writes lock-type=%s from %s." % (planned, var),
                                  level="repair"))
    return result


def parse_locktester(output):
    """What Workbench's locktester printed: ``{"advisory": bool or None, "link-based": ..., "supported": [...]
    or None}`` (None when the line is missing)."""
    result = {"advisory": None, "link-based": None, "supported": None}
    for line in (output or "").splitlines():
        match = re.match(r"^\*\s+(Acquired|Unable to acquire)\s+(advisory|link-based)\s+lock", line.strip())
        if match:
            result[match.group(2)] = match.group(1) == "Acquired"
            continue
        match = re.search(r"appears to support (.*) locks", line)
        if match:
            result["supported"] = [kind.strip() for kind in re.split(r",|\band\b", match.group(1)) if kind.strip()]
    return result


@_for_records_with("locktest")
def check_locktest(readings, record, spec):
    """Workbench: the vendor's locktester, run on two nodes in one shared directory, shows the configured lock
    type working across nodes (the first holds the locks, the others must fail to take them)."""
    if not spec.get("enabled"):
        return []
    nodes = _nodes(readings)
    runs = [(node, _get(readings[node], "locktest")) for node in nodes]
    runs = [(node, run) for node, run in runs if run]
    skipped = [run.get("skipped") for unused, run in runs if run.get("skipped")]
    if not runs or skipped:
        reason = skipped[0] if skipped else "nothing was read"
        return [finding("", "lock test", "the lock test did not run: %s." % reason, level="skipped")]
    directory = spec.get("dir", "")
    var = _get(record, "preflight", "lock_type", "var") or "workbench_lock_type"
    holders = [(node, run) for node, run in runs if run.get("role") == "holder"]
    testers = [(node, run) for node, run in runs if run.get("role") == "tester"]
    if not holders:
        return [finding("", "lock test", "no node held the locks for the lock test in %s." % directory,
                        "see the lock test tasks' output above, then re-run.")]
    holder, holder_run = holders[0]
    held = parse_locktester(holder_run.get("output"))
    if holder_run.get("error") or (not held["advisory"] and not held["link-based"]):
        return [finding(holder, "lock test", "the locktester could not take any lock in %s (%s)." % (
            directory, (holder_run.get("error") or holder_run.get("output") or "no output").strip()),
            "point workbench_preflight_locktest_dir at a directory on the shared home storage that root can write "
            "(an export without root_squash), and check that the storage supports locking (no nolock or "
            "local_lock mount option; the NFS server's lock manager runs).")]
    result = []
    failed_kinds = {}
    for node, run in testers:
        seen = parse_locktester(run.get("output"))
        if run.get("error") or (seen["advisory"] is None and seen["link-based"] is None):
            result.append(finding(node, "lock test", "the locktester did not run in %s (%s)." % (
                directory, (run.get("error") or run.get("output") or "no output").strip()),
                "make workbench_preflight_locktest_dir a directory on the shared home storage, the same one on every "
                "node and writable by root, then re-run."))
            continue
        for kind in ("advisory", "link-based"):
            if held[kind] and seen[kind]:
                failed_kinds.setdefault(kind, []).append(node)
    working = [name for name, label in LOCK_KINDS.items() if held[label] and label not in failed_kinds]
    advice = ("make %s a directory on the shared home storage (the same one on every node), and fix the "
              "storage's locking (no nolock or local_lock mount option; the NFS server's lock manager runs), then "
              "re-run." % directory)
    for node in nodes:
        planned = _text(_get(readings[node], "planned", "settings", "lock_type")) or "linkbased"
        kind = LOCK_KINDS.get(planned, planned)
        fix = ("set %s: %s (that kind worked in this test), then run playbooks/site.yml." % (var, working[0])
               if working else advice)
        if node == holder and not held.get(kind):
            result.append(finding(node, "lock test", "could not take the %s lock in %s although no other node held "
                                  "it, and the inventory configures lock-type=%s." % (kind, directory, planned), fix))
        elif node in failed_kinds.get(kind, []):
            result.append(finding(node, "lock test", "took the %s lock in %s while %s held it: %s locks do not work "
                                  "across nodes on this storage, and the inventory configures lock-type=%s."
                                  % (kind, directory, holder, kind, planned), fix))
        elif held.get(kind) and kind not in failed_kinds:
            current = _text(_get(readings[node], "config", "settings", "lock_type"))
            current_kind = LOCK_KINDS.get(current, current)
            if current and current_kind in failed_kinds:
                result.append(finding(
                    node, "lock test", "/etc/rstudio/file-locks has lock-type=%s, which failed the lock test in %s."
                    % (current, directory), "run playbooks/site.yml, which writes lock-type=%s from %s."
                    % (planned, var), level="repair"))
    return result


# ---- time ------------------------------------------------------------------------------------------------------

def _median(values):
    """The middle value (the upper one of an even count): always one of the values, never between two clocks."""
    return sorted(values)[len(values) // 2]


def check_clock_offset(readings, max_offset):
    """Every node's clock is within ``max_offset`` seconds of the nodes' median (plus the time the reading took)."""
    clocks = [(node, _get(readings[node], "clock")) for node in _nodes(readings)]
    clocks = [(node, clock) for node, clock in clocks if clock and clock.get("reading") is not None]
    if not clocks:
        return []
    if len(clocks) < 2:
        return []  # one clock agrees with itself; whether it keeps time is check_time_sync's
    values = sorted(float(clock["reading"]) for unused, clock in clocks)
    reference = "the nodes' median"
    if len(values) == 2:
        # Two clocks that disagree cannot say which one is wrong: the controller's, which brackets every reading,
        # is the third voice.
        values = sorted(values + [_median([(float(clock.get("before", 0)) + float(clock.get("after", 0))) / 2
                                           for unused, clock in clocks])])
        reference = "the median of both nodes' clocks and the controller's"
    median = _median(values)
    result = []
    for node, clock in clocks:
        slack = max(0.0, float(clock.get("after", 0)) - float(clock.get("before", 0)))
        offset = float(clock["reading"]) - median
        if abs(offset) > float(max_offset) + slack:
            result.append(finding(
                node, "clock offset", "the clock is %.2f s off %s, more than the allowed %s s (+ %.2f s of "
                "measurement)." % (offset, reference, max_offset, slack),
                "synchronise the clocks with NTP (the node_base role configures chrony; check `chronyc tracking` on "
                "%s, and on a container the host's clock)." % node))
    return result


def parse_chrony_sources(text):
    """``chronyc -n -c sources`` as ``[{mode, state, address, stratum, reach}]``."""
    sources = []
    for line in (text or "").splitlines():
        fields = line.strip().split(",")
        if len(fields) >= 6:
            sources.append({"mode": fields[0], "state": fields[1], "address": fields[2], "stratum": fields[3],
                            "reach": fields[5]})
    return sources


def parse_chrony_tracking(text):
    """``chronyc -n -c tracking`` as ``{reference_id, reference, stratum, offset, leap}`` (None when unreadable)."""
    fields = (text or "").strip().split(",")
    if len(fields) < 14:
        return None
    try:
        offset = float(fields[4])
    except ValueError:
        offset = None
    return {"reference_id": fields[0].upper(), "reference": fields[1], "stratum": fields[2], "offset": offset,
            "leap": fields[13]}


def check_time_sync(readings, max_offset):
    """chrony reports a synchronised source on every node (the documented equivalent: see docs/preflight.md).

    Synchronised: chronyd runs and has selected a source (``*`` in ``chronyc sources``) whose measured offset is
    within ``max_offset`` seconds (with ``-x`` chronyd cannot correct the clock, so the offset is the clock's
    own); or the node is declared the cluster's local time reference (``local stratum`` in its configuration, no
    upstream source) and chronyd serves that reference. Without chrony, ``timedatectl``'s NTPSynchronized=yes.
    """
    result = []

    def serves_itself(state):
        sources = parse_chrony_sources(state.get("sources"))
        tracking = parse_chrony_tracking(state.get("tracking"))
        return bool(state.get("installed") and state.get("active") and _text(state.get("local_stratum")).strip()
                    and not sources and tracking and tracking["reference_id"] == CHRONY_LOCAL_REFERENCE
                    and tracking["leap"] != "Not synchronised")

    references = [node for node in _nodes(readings) if serves_itself(_get(readings[node], "time_sync") or {})]
    for node in _nodes(readings):
        state = _get(readings[node], "time_sync")
        if not state:
            continue
        managed = bool(state.get("managed", True))
        level = "repair" if managed else "stop"
        site_fix = ("run playbooks/site.yml: node_base configures and starts chrony and waits until it has a "
                    "synchronised source (node_base_ntp_sync_timeout), failing with the sources it sees.")
        if not state.get("installed"):
            if state.get("timedatectl") == "yes":
                continue
            if managed:
                result.append(finding(node, "time sync", "the time sync check does not apply yet: chrony is not "
                                      "installed (node_base installs it).", level="skipped"))
            else:
                result.append(finding(node, "time sync", "neither chrony nor systemd-timesyncd reports a "
                                      "synchronised clock (timedatectl NTPSynchronized=%s)."
                                      % (state.get("timedatectl") or "unknown"),
                                      "synchronise the clock with NTP, or let node_base manage chrony "
                                      "(node_base_time_sync_enabled: true) and run playbooks/site.yml."))
            continue
        if not state.get("active"):
            result.append(finding(node, "time sync", "chrony is installed but chronyd is not running.",
                                  site_fix if managed else "systemctl enable --now chrony", level=level))
            continue
        sources = parse_chrony_sources(state.get("sources"))
        tracking = parse_chrony_tracking(state.get("tracking"))
        selected = [source for source in sources if source["state"] == "*"]
        x_mode = bool(state.get("no_clock_control"))
        if selected:
            offset = tracking["offset"] if tracking else None
            if offset is not None and abs(offset) > float(max_offset):
                result.append(finding(
                    node, "time sync", "chronyd follows %s, but the clock is %.3f s %s of it%s." % (
                        selected[0]["address"], abs(offset), "fast" if offset > 0 else "slow",
                        " and chronyd runs with -x: it cannot set the clock, which belongs to the container's host"
                        if x_mode else ""),
                    "synchronise the host's clock (the containers share its kernel clock)." if x_mode else
                    "step the clock now with `chronyc makestep` on %s, then find why it drifted." % node))
            continue
        if node in references and len(references) == 1:
            continue
        if node in references:
            result.append(finding(
                node, "time sync", "chronyd serves only this node's own clock (local stratum %s, no upstream source), "
                "and so do %s: the nodes follow no common time source." % (
                    _text(state.get("local_stratum")).strip(), ", ".join(other for other in references if other != node)),
                "declare one node the cluster's time reference (node_base_ntp_local_stratum, node_base_ntp_allow) and "
                "point the others at it with node_base_ntp_servers, or give every node NTP servers it reaches; then "
                + (site_fix if managed else "restart chrony."), level=level))
            continue
        seen = ", ".join("%s (state %s, reach %s)" % (s["address"], s["state"], s["reach"]) for s in sources)
        result.append(finding(
            node, "time sync", "chronyd has no synchronised source (%s; tracking: %s)." % (
                ("sources: " + seen) if seen else "no source configured",
                tracking["leap"] if tracking else "unreadable"),
            ("make sure %s reaches its NTP servers (UDP port 123): node_base_ntp_servers / node_base_ntp_pools, or "
             "the distribution's pool when both are empty; then " % node) + (site_fix if managed else
                                                                             "restart chrony."),
            level=level))
    return result


# ---- all together ------------------------------------------------------------------------------------------------

PRODUCT_CHECKS = ("version mix", "uid/gid mismatch", "config drift", "inventory drift", "key mismatch",
                  "storage not shared", "database unreachable", "metrics path", "schedule concurrency", "lock type",
                  "lock test")
TIME_CHECKS = ("clock offset", "time sync")


def judge(readings, record=None, scope="product", site_repairs=False, group_hosts=None, accounts=(),
          max_clock_offset=1.0):
    """Run every check of ``scope`` and sort the findings into what stops this run and what is only reported.

    Returns ``{fit, findings, stop, report, skipped, key_sources}``: ``findings`` every finding with its
    ``message``; ``stop`` those that stop this run (``stop``, and ``repair`` unless ``site_repairs``);
    ``report`` the others that need the operator's eye (``repair`` when ``site_repairs``, ``warn``);
    ``skipped`` the checks that do not apply yet; ``key_sources`` path -> key_source() decision.
    """
    _nodes(readings)
    if scope not in ("product", "time"):
        raise PreflightError("scope must be product or time, got %r" % (scope,))
    findings, key_sources = [], {}
    if scope == "time":
        findings += check_clock_offset(readings, max_clock_offset)
        findings += check_time_sync(readings, max_clock_offset)
        label = "time"
    else:
        if not isinstance(record, dict) or not record.get("package"):
            raise PreflightError("the product record is missing or has no package: pass <product>_record from "
                                 "the product role's record entry point")
        label = record.get("label", record["package"])
        findings += check_version_mix(readings, record)
        installed = any(_get(readings[node], "version") for node in readings)
        findings += check_accounts(readings, record, accounts)
        if installed:
            findings += check_config_drift(readings, record)
        findings += check_planned_config(readings, record)
        findings += check_keys(readings, record, group_hosts)
        findings += check_shared_storage(readings, record)
        findings += check_database(readings, record)
        findings += check_metrics_path(readings, record)
        findings += check_schedule_concurrency(readings, record)
        findings += check_lock_type(readings, record)
        findings += check_locktest(readings, record)
        for key in record.get("key_files", []):
            holders = dict((node, _get(readings[node], "keys", key["path"], "fingerprint") or "")
                           for node in readings)
            key_sources[key["path"]] = key_source(key, holders, group_hosts)
    order = dict((node, index) for index, node in enumerate(readings))
    findings.sort(key=lambda item: order.get(item["node"], -1))
    for item in findings:
        item["message"] = render(item, label)
    stopping = ("stop",) if site_repairs else ("stop", "repair")
    return {
        "fit": not any(item["level"] in stopping for item in findings),
        "findings": findings,
        "stop": [item for item in findings if item["level"] in stopping],
        "report": [item for item in findings if item["level"] == "warn" or (site_repairs and item["level"] == "repair")],
        "skipped": [item for item in findings if item["level"] == "skipped"],
        "key_sources": key_sources,
    }


def new_key_length(min_bits):
    """Hex characters of a new key holding at least ``min_bits`` bits (with a margin over deflate's estimate)."""
    return int(math.ceil(max(int(min_bits or 256), 128) / 4.0)) + 16
