# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What node_base must do for its fixed-ID accounts on one node, from one reading of that node."""

from __future__ import annotations

DOCUMENTATION = r"""
name: account_plan
short_description: The ID conflicts, and the groups and users to create or fix, for fixed-ID accounts on one node
version_added: 0.2.0
author:
  - positops.ha maintainers (@positops)
description:
  - Compares C(node_base_accounts) with what one node has, read in a single command (role C(positops.ha.node_base)).
  - An account or group that exists with another ID, or an ID taken by another name, is a conflict. Nothing is ever
    renumbered.
  - A group is created only when it does not exist. A user is passed to the C(user) module when it does not exist,
    when its UID, primary GID, home or shell differs, or when its home directory is missing. A node that already has
    every account as wanted needs no module run at all.
options:
  _input:
    description:
      - The reading, in three sections, each starting with its line, C(#passwd) (C(getent passwd)), C(#group)
        (C(getent group)) and C(#homes) (the names of the accounts whose home directory exists, one per line).
        Other sections (a line starting with C(#)) are ignored.
    type: str
    required: true
  accounts:
    description: C(node_base_accounts). Home and shell follow the role's defaults when not given.
    type: list
    elements: dict
    required: true
"""

EXAMPLES = r"""
- name: Plan the accounts
  ansible.builtin.set_fact:
    node_base_account_plan: "{{ node_base_accounts_read.stdout | positops.ha.account_plan(node_base_accounts) }}"
"""

RETURN = r"""
_value:
  description: The plan.
  type: dict
  contains:
    conflicts:
      description: One sentence per ID conflict, for example C(user rstudio-pm has UID 999, wanted 2101).
      type: list
      elements: str
    groups:
      description: The groups to create, as C({name, gid, system}).
      type: list
      elements: dict
    users:
      description: The users to create or fix, as C({name, uid, group, home, system, shell}).
      type: list
      elements: dict
"""

from ansible.errors import AnsibleFilterError

DEFAULT_SHELL = "/usr/sbin/nologin"


def _parse(reading):
    sections = {"#passwd": {}, "#group": {}, "#homes": set()}
    current = None
    for line in str(reading or "").splitlines():
        if line.startswith("#"):
            # Another section of the same reading (the role reads more in the same call) is not ours.
            current = line if line in sections else None
        elif not line.strip() or current is None:
            continue
        elif current == "#homes":
            sections[current].add(line.strip())
        else:
            # name:password:id:... ; passwd adds gid:gecos:home:shell after the id.
            fields = line.split(":")
            if len(fields) >= 3:
                sections[current][fields[0]] = fields
    return sections["#passwd"], sections["#group"], sections["#homes"]


def _wanted(account):
    try:
        name = str(account["name"])
        system = bool(account.get("system", True))
        return {
            "name": name,
            "uid": int(account["uid"]),
            "group": str(account.get("group") or name),
            "gid": int(account["gid"]),
            "home": str(account.get("home") or (("/var/lib/" if system else "/home/") + name)),
            "system": system,
            "shell": str(account.get("shell") or DEFAULT_SHELL),
        }
    except (KeyError, TypeError, ValueError) as error:
        raise AnsibleFilterError("node_base_accounts entry %r needs name, and numeric uid and gid (%s)" % (
            account, error)) from error


def _id(fields):
    try:
        return int(fields[2])
    except ValueError:
        return None


def account_plan(reading, accounts):
    users, groups, homes = _parse(reading)
    plan = {"conflicts": [], "groups": [], "users": []}
    for account in (_wanted(entry) for entry in accounts or []):
        name, group = account["name"], account["group"]
        if name in users and _id(users[name]) != account["uid"]:
            plan["conflicts"].append("user %s has UID %s, wanted %s" % (name, users[name][2], account["uid"]))
        if group in groups and _id(groups[group]) != account["gid"]:
            plan["conflicts"].append("group %s has GID %s, wanted %s" % (group, groups[group][2], account["gid"]))
        plan["conflicts"].extend("UID %s wanted for user %s is taken by user %s" % (account["uid"], name, other)
                                 for other, fields in users.items()
                                 if other != name and _id(fields) == account["uid"])
        plan["conflicts"].extend("GID %s wanted for group %s is taken by group %s" % (account["gid"], group, other)
                                 for other, fields in groups.items()
                                 if other != group and _id(fields) == account["gid"])
        if group not in groups and all(entry["name"] != group for entry in plan["groups"]):
            plan["groups"].append({"name": group, "gid": account["gid"], "system": account["system"]})
        current = users.get(name)
        as_wanted = (current is not None and len(current) >= 7 and _id(current) == account["uid"]
                     and current[3] == str(account["gid"]) and current[5] == account["home"]
                     and current[6] == account["shell"] and name in homes)
        if not as_wanted:
            plan["users"].append({key: account[key] for key in ("name", "uid", "group", "home", "system", "shell")})
    return plan


class FilterModule:
    def filters(self):
        return {"account_plan": account_plan}
