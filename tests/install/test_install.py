# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The built collection installs, and its content works from the installed copy, by FQCN.

Nothing here touches the network or a remote host: playbooks are syntax-checked and listed against the example
inventories (which name hosts that do not exist), and the real runs target localhost with files in a temp dir.
"""

from __future__ import annotations

import json
import pathlib
import re
import stat
import sys
import tarfile

import pytest
import yaml

from .commands import collection_source, describe, run, tool

SOURCE, SOURCE_FILES = collection_source()


def names(pattern):
    """Sorted values of the `(?P<name>...)` group of a regular expression over the source's file paths."""
    return sorted({match.group('name') for match in map(re.compile(pattern).fullmatch, SOURCE_FILES) if match})


MODULES = names(r'plugins/modules/(?P<name>(?!__init__)\w+)\.py')
ROLES = names(r'roles/(?P<name>\w+)/tasks/\w+\.yml')
PLAYBOOKS = names(r'playbooks/(?P<name>\w+)\.yml')
INVENTORIES = names(r'inventories/examples/(?P<name>\w+)/hosts\.yml')

PRODUCT_GROUPS = ('package_manager', 'connect', 'workbench')

# Repository tooling that has no place in the collection an operator installs.
NOT_SHIPPED = ('.venv/', 'build/', '.ci/', 'scripts/', 'benchmarks/', 'molecule/', 'tests/emulator/', 'tests/lab/',
               'tests/lab_tests/', 'tests/output/', '.git/', 'requirements.txt', 'constraints.txt')


def test_something_to_check():
    assert MODULES, 'no module found in plugins/modules'
    assert ROLES, 'no role found in roles/'
    assert PLAYBOOKS, 'no playbook found in playbooks/'
    assert INVENTORIES, 'no example inventory found in inventories/examples/'


def test_tarball_ships_the_content_and_not_the_tooling(tarball_members):
    for module in MODULES:
        assert 'plugins/modules/%s.py' % module in tarball_members
    for role in ROLES:
        assert 'roles/%s/meta/argument_specs.yml' % role in tarball_members, \
            'role %s has no meta/argument_specs.yml in the tarball' % role
    for playbook in PLAYBOOKS:
        assert 'playbooks/%s.yml' % playbook in tarball_members
    for inventory in INVENTORIES:
        assert 'inventories/examples/%s/hosts.yml' % inventory in tarball_members
    for required in ('meta/runtime.yml', 'meta/execution-environment.yml', 'meta/ee-requirements.txt',
                     'meta/ee-bindep.txt', 'execution-environment.yml', 'MANIFEST.json', 'FILES.json'):
        assert required in tarball_members, '%s is missing from the tarball' % required
    leaked = sorted(name for name in tarball_members if name.startswith(NOT_SHIPPED))
    assert not leaked, 'repository tooling leaked into the tarball (extend build_ignore in galaxy.yml): %s' % leaked


# `namespace.collection.` as it appears in FQCNs, filters and Python imports (overlapping matches, so that
# ansible_collections.community.general.plugins... also yields community.general).
COLLECTION_REFERENCE = re.compile(r'(?=\b([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)\.[a-z_])')
SHIPPED_CODE = ('roles/', 'playbooks/', 'plugins/')


def test_dependencies_are_exactly_the_collections_used(ansible_env, collection_tarball, galaxy):
    listing = run([tool('ansible-galaxy'), 'collection', 'list', '--format', 'json'], env=ansible_env)
    assert listing.returncode == 0, describe(listing)
    known = {name for collections in json.loads(listing.stdout).values() for name in collections}
    used = set()
    with tarfile.open(collection_tarball) as archive:
        for member in archive.getmembers():
            if member.isfile() and member.name.startswith(SHIPPED_CODE):
                text = archive.extractfile(member).read().decode('utf-8', errors='replace')
                used.update('%s.%s' % match for match in COLLECTION_REFERENCE.findall(text))
    used = (used & known) - {'ansible.builtin', '%s.%s' % (galaxy['namespace'], galaxy['name'])}
    declared = set(galaxy.get('dependencies') or {})
    assert used - declared == set(), 'used but missing from galaxy.yml dependencies: %s' % sorted(used - declared)
    assert declared - used == set(), 'declared in galaxy.yml but never used: %s' % sorted(declared - used)


def test_installed_copy_is_the_one_found(ansible_env, installed_collections):
    listing = run([tool('ansible-galaxy'), 'collection', 'list', 'positops.ha', '--format', 'json'], env=ansible_env)
    assert listing.returncode == 0, describe(listing)
    locations = json.loads(listing.stdout)
    assert list(locations) == [str(installed_collections / 'ansible_collections')], locations


@pytest.mark.parametrize('module', MODULES)
def test_module_documentation_from_installed_copy(ansible_env, module):
    shown = run([tool('ansible-doc'), '--json', 'positops.ha.%s' % module], env=ansible_env)
    assert shown.returncode == 0, describe(shown)
    entry = json.loads(shown.stdout)['positops.ha.%s' % module]
    doc = entry['doc']
    assert doc['short_description'], '%s has no short_description' % module
    assert doc['description'], '%s has no description' % module
    undocumented = sorted(name for name, option in (doc.get('options') or {}).items() if not option.get('description'))
    assert not undocumented, '%s: options without description: %s' % (module, undocumented)
    assert entry['examples'], '%s has no EXAMPLES' % module
    returned = entry.get('return') or {}
    assert returned, '%s documents no return value' % module
    # The plain text page renders too (what an operator reads in a terminal).
    page = run([tool('ansible-doc'), 'positops.ha.%s' % module], env=ansible_env)
    assert page.returncode == 0 and 'positops.ha.%s' % module in page.stdout, describe(page)


@pytest.mark.parametrize('role', ROLES)
def test_role_documentation_from_installed_copy(ansible_env, role):
    shown = run([tool('ansible-doc'), '-t', 'role', '--json', 'positops.ha.%s' % role], env=ansible_env)
    assert shown.returncode == 0, describe(shown)
    entry_points = json.loads(shown.stdout)['positops.ha.%s' % role]['entry_points']
    assert entry_points, '%s documents no entry point' % role
    if 'roles/%s/tasks/main.yml' % role in SOURCE_FILES:
        assert 'main' in entry_points, '%s has no documented main entry point' % role

    def undocumented(options, prefix=''):
        for name, option in (options or {}).items():
            if not option.get('description'):
                yield prefix + name
            yield from undocumented(option.get('options'), prefix + name + '.')

    for entry_name, entry_point in entry_points.items():
        assert entry_point.get('short_description'), '%s:%s has no short_description' % (role, entry_name)
        missing = sorted(undocumented(entry_point.get('options')))
        assert not missing, '%s:%s options without description: %s' % (role, entry_name, missing)


def documented_extra_vars(playbook):
    """The required `-e name=value` of the usage line in the playbook's header comment.

    Usage lines look like `#   ansible-playbook positops.ha.NAME -e a=b \\` (continued on the next comment
    line); options in [brackets] are optional and left out.
    """
    header = []
    for line in (SOURCE / 'playbooks' / ('%s.yml' % playbook)).read_text(encoding='utf-8').splitlines():
        if line.startswith('#'):
            header.append(line.lstrip('#').strip())
        elif line.strip() not in ('', '---'):
            break
    usage = ''
    for line in header:
        if usage.endswith('\\'):
            usage = usage[:-1] + ' ' + line
        elif re.match(r'ansible-playbook .*positops\.ha\.%s\b' % re.escape(playbook), line):
            usage = line
    usage = re.sub(r'\[[^]]*\]', '', usage)
    return re.findall(r'-e\s+(\S+=\S+)', usage)


@pytest.mark.parametrize('inventory', INVENTORIES)
@pytest.mark.parametrize('playbook', PLAYBOOKS)
def test_playbook_by_fqcn_parses_against_example_inventory(ansible_env, playbook, inventory):
    """The documented command line of every playbook, by FQCN, parses and lists its tasks (nothing connects)."""
    command = [tool('ansible-playbook'), '-i', str(SOURCE / 'inventories' / 'examples' / inventory),
               'positops.ha.%s' % playbook]
    for extra_var in documented_extra_vars(playbook):
        command += ['-e', extra_var]
    # --list-tasks is --syntax-check and more: it also resolves every role, include and module of the plays
    # against this inventory's groups.
    listed = run(command + ['--list-tasks'], env=ansible_env)
    assert listed.returncode == 0, describe(listed)
    assert 'play #1' in listed.stdout, describe(listed)


@pytest.mark.parametrize('inventory', INVENTORIES)
def test_example_inventory_describes_a_cluster(ansible_env, inventory):
    shown = run([tool('ansible-inventory'), '-i', str(SOURCE / 'inventories' / 'examples' / inventory), '--list'],
                env=ansible_env)
    assert shown.returncode == 0, describe(shown)
    assert 'WARNING' not in shown.stderr, describe(shown)
    groups = json.loads(shown.stdout)
    clustered = [group for group in PRODUCT_GROUPS if len(groups.get(group, {}).get('hosts', [])) >= 2]
    assert clustered, '%s: no product group (%s) has the two nodes a cluster needs' % (inventory, PRODUCT_GROUPS)


def test_module_runs_from_installed_copy_on_localhost(ansible_env, tmp_path):
    """A real run: positops.ha.secure_cookie_key generates a key file, then a second run changes nothing."""
    key = tmp_path / 'secure-cookie-key'
    playbook = tmp_path / 'key.yml'
    playbook.write_text(yaml.safe_dump([{
        'name': 'Shared key from the installed collection',
        'hosts': 'localhost',
        'connection': 'local',
        'gather_facts': False,
        'tasks': [{
            'name': 'Keep a secure cookie key',
            'positops.ha.secure_cookie_key': {'path': str(key), 'mode': '0600'},
            'register': 'key_result',
        }, {
            'name': 'Report the result',
            'ansible.builtin.debug': {'msg': 'CHANGED={{ key_result.changed }}'},
        }],
    }]), encoding='utf-8')
    command = [tool('ansible-playbook'), '-i', 'localhost,', '-e', 'ansible_python_interpreter=%s' % sys.executable,
               str(playbook)]

    first = run(command, env=ansible_env)
    assert first.returncode == 0, describe(first)
    assert 'CHANGED=True' in first.stdout, describe(first)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    generated = key.read_text(encoding='utf-8').strip()
    assert len(generated) >= 32, 'a 256-bit key needs at least 32 characters, got %d' % len(generated)
    assert generated not in first.stdout, 'the key must not appear in the output'

    second = run(command, env=ansible_env)
    assert second.returncode == 0, describe(second)
    assert 'CHANGED=False' in second.stdout, describe(second)
    assert key.read_text(encoding='utf-8').strip() == generated


def test_preflight_by_fqcn_runs_on_localhost(ansible_env, tmp_path):
    """A real run of positops.ha.preflight from the installed copy, on this machine as a fresh cluster node.

    Pre-flight is read-only: it must pass here (nothing installed yet, so the checks that need a product say they
    do not apply yet) and change nothing.
    """
    inventory = tmp_path / 'localhost.yml'
    inventory.write_text(yaml.safe_dump({'package_manager': {'hosts': {'localhost': {
        'ansible_connection': 'local',
        'ansible_python_interpreter': sys.executable,
    }}}}), encoding='utf-8')
    preflight = run([tool('ansible-playbook'), '-i', str(inventory), 'positops.ha.preflight'], env=ansible_env)
    # The platform play (the first of every playbook) refuses a node without systemd, as a build container is.
    if pathlib.Path('/proc/1/comm').read_text().strip() != 'systemd':
        assert preflight.returncode != 0, describe(preflight)
        assert 'is not supported' in preflight.stdout and 'with systemd' in preflight.stdout, describe(preflight)
        assert re.search(r'^localhost\s*:.*changed=0\s', preflight.stdout, re.MULTILINE), describe(preflight)
        return
    assert preflight.returncode == 0, describe(preflight)
    recap = re.search(r'^localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)',
                      preflight.stdout, re.MULTILINE)
    assert recap, describe(preflight)
    ok, changed, unreachable, failed = (int(number) for number in recap.groups())
    assert ok > 0 and (changed, unreachable, failed) == (0, 0, 0), describe(preflight)
