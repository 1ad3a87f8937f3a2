#!/usr/bin/env python3
"""Ansible script inventory: the inventory tests/lab wrote for this scenario's lab (empty before create.yml ran).

Molecule links its inventory before the create step, so it cannot link a file that create.yml writes; this
script reads that file whenever Ansible asks.
"""
import json
import os
import pathlib
import sys

prefix = os.environ.get("POSITOPS_LAB") or "story-upgrade"
source = pathlib.Path(__file__).resolve().parents[2] / "build" / "labs" / prefix / "inventory" / "hosts.yml"
inventory = {"_meta": {"hostvars": {}}}
if source.exists() and "--list" in sys.argv:
    written = json.loads(source.read_text())["all"]  # tests/lab writes JSON (which is YAML)
    inventory["all"] = {"vars": written.get("vars", {}), "children": sorted(written["children"])}
    for group, body in written["children"].items():
        inventory[group] = {"hosts": sorted(body.get("hosts") or {})}
print(json.dumps(inventory))
