# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""execution-environment.yml is a valid ansible-builder (schema 3) definition that matches the collection.

No image is built or pulled (no container registry is reachable): ``ansible-builder create`` validates the
definition and writes the build context, which is inspected; ansible-builder's own introspection script is run on
the installed collection to see the Python and system requirements an image would get from it.
"""

from __future__ import annotations

import pathlib
import re
import shutil

import pytest
import yaml

from .commands import REPO, describe, run, tool

DEFINITION = REPO / 'execution-environment.yml'
PINNED = re.compile(r'^(?P<name>[A-Za-z0-9_.-]+)(\[[A-Za-z0-9_,.-]+\])?==(?P<version>[^\s;#]+)')
# Needed by the lab and the tests only; never in an image that runs the collection.
DEVELOPMENT_ONLY = {'docker', 'molecule', 'molecule-plugins', 'ansible-lint', 'pytest', 'pytest-testinfra',
                    'antsibull-docs', 'antsibull-changelog', 'ansible-builder'}


def requirement_lines(path):
    """Requirement lines of a pip or bindep file, without comments and blank lines."""
    lines = (line.split('#', 1)[0].strip() for line in pathlib.Path(path).read_text(encoding='utf-8').splitlines())
    return [line for line in lines if line]


def pins(path):
    """{normalised name: version} of the `name==version` lines of a requirements or constraints file."""
    found = {}
    for line in requirement_lines(path):
        match = PINNED.match(line)
        if match:
            found[match.group('name').lower().replace('_', '-')] = match.group('version')
    return found


@pytest.fixture(scope='module')
def definition():
    return yaml.safe_load(DEFINITION.read_text(encoding='utf-8'))


@pytest.fixture(scope='module')
def collection_meta_ee(staged_collection):
    return yaml.safe_load((staged_collection / 'meta' / 'execution-environment.yml').read_text(encoding='utf-8'))


@pytest.fixture(scope='module')
def build_context(tmp_path_factory, staged_collection, collection_tarball):
    """Run `ansible-builder create` on a copy of the definition beside a fresh build/dist holding the tarball."""
    project = tmp_path_factory.mktemp('ee-project')
    shutil.copy2(DEFINITION, project / DEFINITION.name)
    shutil.copytree(staged_collection / 'meta', project / 'meta')
    (project / 'build' / 'dist').mkdir(parents=True)
    shutil.copy2(collection_tarball, project / 'build' / 'dist' / collection_tarball.name)
    context = project / 'context'
    created = run([tool('ansible-builder'), 'create', '--file', str(project / DEFINITION.name),
                   '--context', str(context), '--output-filename', 'Containerfile'], cwd=project)
    assert created.returncode == 0, describe(created)
    return context


def test_definition_uses_schema_3(definition):
    assert definition['version'] == 3


def test_build_context_is_complete(build_context, collection_tarball, staged_collection):
    containerfile = (build_context / 'Containerfile').read_text(encoding='utf-8')
    assert 'FROM $EE_BASE_IMAGE AS base' in containerfile
    # The collection tarball is in the context and installed in the galaxy stage.
    assert (build_context / '_build' / 'positops' / collection_tarball.name).is_file()
    install_lines = [line for line in containerfile.splitlines() if 'ansible-galaxy collection install --offline' in line]
    assert len(install_lines) == 1 and '/build/positops/positops-ha-*.tar.gz' in install_lines[0], install_lines
    # The python and system requirements are the collection's own files.
    assert (requirement_lines(build_context / '_build' / 'requirements.txt')
            == requirement_lines(staged_collection / 'meta' / 'ee-requirements.txt'))
    assert (requirement_lines(build_context / '_build' / 'bindep.txt')
            == requirement_lines(staged_collection / 'meta' / 'ee-bindep.txt'))


def test_galaxy_requirements_match_galaxy_yml(build_context, galaxy):
    requirements = yaml.safe_load((build_context / '_build' / 'requirements.yml').read_text(encoding='utf-8'))
    wanted = {entry['name']: entry.get('version', '*') for entry in requirements['collections']}
    assert wanted == galaxy['dependencies'], \
        'execution-environment.yml galaxy collections must equal galaxy.yml dependencies'


def test_ansible_core_is_the_tested_version(definition):
    tested = pins(REPO / 'requirements.txt')
    assert definition['dependencies']['ansible_core']['package_pip'] == 'ansible-core==%s' % tested['ansible-core']
    assert PINNED.match(definition['dependencies']['ansible_runner']['package_pip'])


def test_python_requirements_are_pinned_runtime_libraries(staged_collection):
    tested = pins(REPO / 'constraints.txt')
    lines = requirement_lines(staged_collection / 'meta' / 'ee-requirements.txt')
    assert lines, 'meta/ee-requirements.txt lists nothing'
    for line in lines:
        match = PINNED.match(line)
        assert match, '%r is not pinned with ==' % line
        name = match.group('name').lower()
        assert name not in DEVELOPMENT_ONLY, '%s is a development tool, not a run-time dependency' % name
        assert tested.get(name) == match.group('version'), \
            '%s: pin %s differs from the tested version in constraints.txt (%s)' % (
                name, match.group('version'), tested.get(name))


def test_bindep_file_parses(staged_collection):
    listed = run([tool('bindep'), '--file', str(staged_collection / 'meta' / 'ee-bindep.txt'),
                  '--list_all', 'newline'])
    assert listed.returncode == 0, describe(listed)
    assert 'openssh-client' in listed.stdout.split(), describe(listed)


def test_introspection_of_installed_collection(installed_collections, staged_collection, collection_meta_ee):
    """What ansible-builder takes from the installed collection: its meta files, not the development tools."""
    import ansible_builder  # pylint: disable=import-outside-toplevel

    introspect = pathlib.Path(ansible_builder.__file__).parent / '_target_scripts' / 'introspect.py'
    assert collection_meta_ee['dependencies'] == {'python': 'meta/ee-requirements.txt',
                                                  'system': 'meta/ee-bindep.txt'}
    found = run([tool('python'), str(introspect), 'introspect', str(installed_collections)])
    assert found.returncode == 0, describe(found)
    report = yaml.safe_load(found.stdout)
    python = [line.split('#', 1)[0].strip() for line in report['python']]
    system = [line.split('#', 1)[0].strip() for line in report['system']]
    assert python == requirement_lines(staged_collection / 'meta' / 'ee-requirements.txt'), describe(found)
    assert system == requirement_lines(staged_collection / 'meta' / 'ee-bindep.txt'), describe(found)
