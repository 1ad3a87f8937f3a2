"""Every role carries meta/main.yml and a README.md that documents all it accepts.

meta/main.yml: galaxy_info with author, description, the collection's license (galaxy.yml), min_ansible_version
2.19 (meta/runtime.yml) and Debian bookworm; no role dependencies (the playbooks include roles explicitly).
README.md: the sections an operator looks for, every variable of defaults/main.yml and meta/argument_specs.yml,
every entry point, and the generated tables of role_readme.py (beside this file) up to date.
"""

import importlib.util
import json
import pathlib
import re

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROLES_DIR = ROOT / "roles"
ROLES = sorted(path.name for path in ROLES_DIR.iterdir() if path.is_dir()) if ROLES_DIR.is_dir() else []
MIN_ANSIBLE_VERSION = "2.19"
# Headings every README has (case-insensitive), in the spirit of the geerlingguy and dev-sec roles.
README_SECTIONS = ["Requirements", "Entry points", "Role variables", "Example playbook", "What it does not do"]


def load_yaml(path):
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def collection_licenses():
    """galaxy.yml's license in the source tree; MANIFEST.json's in an installed collection (ansible-test units)."""
    if (ROOT / "galaxy.yml").is_file():
        return load_yaml(ROOT / "galaxy.yml")["license"]
    with open(ROOT / "MANIFEST.json", encoding="utf-8") as handle:
        return json.load(handle)["collection_info"]["license"]


def role_readme_script():
    spec = importlib.util.spec_from_file_location("role_readme", pathlib.Path(__file__).resolve().parent / "role_readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def readme_text(role):
    path = ROLES_DIR / role / "README.md"
    assert path.is_file(), "%s: missing README.md" % role
    return path.read_text(encoding="utf-8")


def spec_entry_points(role):
    path = ROLES_DIR / role / "meta" / "argument_specs.yml"
    assert path.is_file(), "%s: missing meta/argument_specs.yml" % role
    return load_yaml(path)["argument_specs"]


def test_there_are_roles():
    assert ROLES, "no role found under %s" % ROLES_DIR


@pytest.mark.parametrize("role", ROLES)
def test_meta_main(role):
    path = ROLES_DIR / role / "meta" / "main.yml"
    assert path.is_file(), "%s: missing meta/main.yml" % role
    meta = load_yaml(path) or {}
    info = meta.get("galaxy_info") or {}
    for field in ("author", "description", "license", "min_ansible_version", "platforms"):
        assert info.get(field), "%s: meta/main.yml galaxy_info has no %s" % (role, field)
    licenses = collection_licenses()
    role_license = info["license"] if isinstance(info["license"], list) else [info["license"]]
    assert role_license == licenses, "%s: license %s differs from galaxy.yml's %s" % (role, role_license, licenses)
    assert str(info["min_ansible_version"]) == MIN_ANSIBLE_VERSION, (
        "%s: min_ansible_version %s, the collection needs %s (meta/runtime.yml)"
        % (role, info["min_ansible_version"], MIN_ANSIBLE_VERSION))
    platforms = {platform.get("name"): platform.get("versions") or [] for platform in info["platforms"]}
    assert "bookworm" in platforms.get("Debian", []), "%s: platforms do not list Debian bookworm" % role
    assert meta.get("dependencies") == [], "%s: meta/main.yml must declare dependencies: []" % role


@pytest.mark.parametrize("role", ROLES)
def test_readme_sections(role):
    headings = [line.lstrip("#").strip().lower() for line in readme_text(role).splitlines()
                if re.match(r"^#{2,3} ", line)]
    for section in README_SECTIONS:
        assert section.lower() in headings, "%s: README.md has no '## %s' section" % (role, section)


@pytest.mark.parametrize("role", ROLES)
def test_readme_mentions_every_variable_and_entry_point(role):
    text = readme_text(role)
    entry_points = spec_entry_points(role)
    defaults_path = ROLES_DIR / role / "defaults" / "main.yml"
    names = set((load_yaml(defaults_path) or {}) if defaults_path.is_file() else {})
    for entry in entry_points.values():
        names.update(entry.get("options") or {})
    missing = sorted(name for name in names if "`%s`" % name not in text)
    assert not missing, "%s: README.md does not mention %s" % (role, ", ".join(missing))
    for entry_name in entry_points:
        assert "`%s`" % entry_name in text, "%s: README.md does not mention entry point %s" % (role, entry_name)
        assert (ROLES_DIR / role / "tasks" / ("%s.yml" % entry_name)).is_file(), (
            "%s: entry point %s has no tasks/%s.yml" % (role, entry_name, entry_name))


@pytest.mark.parametrize("role", ROLES)
def test_readme_generated_part_is_current(role):
    script = role_readme_script()
    text = readme_text(role)
    assert script.BEGIN in text and script.END in text, (
        "%s: README.md lacks the generated tables; run python tests/unit/role_readme.py" % role)
    assert script.rewritten(text, role) == text, (
        "%s: README.md's generated tables are stale; run python tests/unit/role_readme.py" % role)
