"""Every role's defaults/main.yml agrees with its meta/argument_specs.yml.

Covers every role under roles/: each default is declared in an entry point's spec with the same default value,
a type the value satisfies, a value within its choices; each spec option with a default has it in
defaults/main.yml; every variable carries the role prefix and a comment above it; every option is described.
"""

import pathlib
import re

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

ROLES_DIR = pathlib.Path(__file__).resolve().parents[2] / "roles"
ROLES = sorted(path.name for path in ROLES_DIR.iterdir() if path.is_dir()) if ROLES_DIR.is_dir() else []
# Keys of an option in argument_specs.yml that ArgumentSpecValidator does not know.
DOC_ONLY_KEYS = {"description", "version_added"}


def load_yaml(path):
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def role_files(role):
    role_dir = ROLES_DIR / role
    spec_path = role_dir / "meta" / "argument_specs.yml"
    defaults_path = role_dir / "defaults" / "main.yml"
    assert spec_path.is_file(), "%s: missing meta/argument_specs.yml" % role
    specs = load_yaml(spec_path)
    assert isinstance(specs, dict) and isinstance(specs.get("argument_specs"), dict), (
        "%s: meta/argument_specs.yml must hold a mapping 'argument_specs'" % role)
    defaults = load_yaml(defaults_path) if defaults_path.is_file() else {}
    return specs["argument_specs"], defaults or {}, defaults_path


def all_options(entry_points):
    """Options of every entry point, merged by name (an option shared by entry points must be declared alike)."""
    merged = {}
    for entry_name, entry in entry_points.items():
        for name, option in (entry.get("options") or {}).items():
            if name in merged:
                assert merged[name] == option, (
                    "option %s is declared differently in entry point %s and another one" % (name, entry_name))
            merged[name] = option
    return merged


def is_templated(value):
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def validator_spec(options):
    """argument_specs.yml options without the documentation-only keys, recursively."""
    spec = {}
    for name, option in options.items():
        clean = {key: value for key, value in option.items() if key not in DOC_ONLY_KEYS}
        if "options" in clean:
            clean["options"] = validator_spec(clean["options"])
        spec[name] = clean
    return spec


def walk_options(options, path=""):
    for name, option in options.items():
        yield path + name, option
        if option.get("options"):
            yield from walk_options(option["options"], path + name + ".")


@pytest.mark.parametrize("role", ROLES)
def test_every_entry_point_is_described(role):
    entry_points = role_files(role)[0]
    assert "main" in entry_points, "%s: argument_specs has no 'main' entry point" % role
    for entry_name, entry in entry_points.items():
        assert entry.get("short_description"), "%s: entry point %s has no short_description" % (role, entry_name)
        for name, option in walk_options(entry.get("options") or {}):
            assert option.get("description"), "%s/%s: option %s has no description" % (role, entry_name, name)
            assert option.get("type"), "%s/%s: option %s has no type" % (role, entry_name, name)
            if option["type"] == "list":
                assert option.get("elements"), "%s/%s: list option %s has no elements type" % (role, entry_name, name)


@pytest.mark.parametrize("role", ROLES)
def test_defaults_are_declared_and_prefixed(role):
    entry_points, defaults = role_files(role)[:2]
    options = all_options(entry_points)
    for name in defaults:
        assert name.startswith(role + "_"), "%s: default %s lacks the role prefix %s_" % (role, name, role)
        assert name in options, "%s: default %s is not declared in meta/argument_specs.yml" % (role, name)


@pytest.mark.parametrize("role", ROLES)
def test_spec_defaults_match_defaults_file(role):
    entry_points, defaults = role_files(role)[:2]
    for name, option in all_options(entry_points).items():
        assert name.startswith(role + "_"), "%s: option %s lacks the role prefix %s_" % (role, name, role)
        if option.get("required"):
            assert name not in defaults, "%s: required option %s should not have a default" % (role, name)
            continue
        if "default" in option:
            assert name in defaults, "%s: option %s has a spec default but none in defaults/main.yml" % (role, name)
            assert option["default"] == defaults[name], (
                "%s: default of %s differs: spec %r, defaults/main.yml %r"
                % (role, name, option["default"], defaults[name]))
        elif name in defaults and not is_templated(defaults[name]):
            pytest.fail("%s: %s has a literal default %r in defaults/main.yml but none in the spec"
                        % (role, name, defaults[name]))


@pytest.mark.parametrize("role", ROLES)
def test_defaults_satisfy_their_spec(role):
    """Types, choices and element types as Ansible itself validates them at role start."""
    entry_points, defaults = role_files(role)[:2]
    options = all_options(entry_points)
    literal = {name: value for name, value in defaults.items() if name in options and not is_templated(value)}
    spec = validator_spec({name: options[name] for name in literal})
    result = ArgumentSpecValidator(spec).validate(literal)
    assert not result.error_messages, "%s: defaults/main.yml violates its spec: %s" % (role, result.error_messages)
    for name, value in literal.items():
        assert result.validated_parameters[name] == value, (
            "%s: %s=%r only passes after conversion to %r; write it with the declared type"
            % (role, name, value, result.validated_parameters[name]))


@pytest.mark.parametrize("role", ROLES)
def test_every_default_is_commented(role):
    defaults, defaults_path = role_files(role)[1:]
    lines = defaults_path.read_text(encoding="utf-8").splitlines() if defaults_path.is_file() else []
    for name in defaults:
        index = next(i for i, line in enumerate(lines) if re.match(r"^%s\s*:" % re.escape(name), line))
        assert index > 0 and lines[index - 1].startswith("#"), (
            "%s: %s in defaults/main.yml has no comment line right above it" % (role, name))
