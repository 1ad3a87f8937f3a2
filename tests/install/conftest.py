# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures for the install test: the collection as an operator gets it.

- ``staged_collection``: the tracked files of the repository (``git ls-files``) copied to
  ``<tmp>/ansible_collections/positops/ha``, so untracked files never leak into the tarball. scripts/checks passes
  its own staged copy in ``POSITOPS_CHECKS_COLLECTION``.
- ``collection_tarball``: ``ansible-galaxy collection build`` of that copy.
- ``installed_collections``: the tarball installed with ``ansible-galaxy collection install --offline`` into a
  temporary collections path (its dependencies come from the ``ansible`` package of the virtualenv).
- ``ansible_env``: environment for the ansible commands, where only that temporary path holds positops.ha.
"""

from __future__ import annotations

import os
import shutil
import tarfile

import pytest
import yaml

from .commands import BIN, REPO, collection_source, describe, run, tool


@pytest.fixture(scope='session')
def galaxy():
    """The parsed galaxy.yml of the repository."""
    return yaml.safe_load((REPO / 'galaxy.yml').read_text(encoding='utf-8'))


@pytest.fixture(scope='session')
def staged_collection(tmp_path_factory, galaxy):
    """Root of a clean copy of the collection, at .../ansible_collections/<namespace>/<name>."""
    source, files = collection_source()
    if source != REPO:
        return source
    root = tmp_path_factory.mktemp('staged') / 'ansible_collections' / galaxy['namespace'] / galaxy['name']
    for relative in sorted(files):
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / relative, target, follow_symlinks=False)
    return root


@pytest.fixture(scope='session')
def collection_tarball(tmp_path_factory, staged_collection, galaxy):
    """Path of the collection tarball built from the staged copy."""
    output = tmp_path_factory.mktemp('dist')
    build = run([tool('ansible-galaxy'), 'collection', 'build', '--output-path', str(output), str(staged_collection)])
    assert build.returncode == 0, describe(build)
    tarball = output / ('%s-%s-%s.tar.gz' % (galaxy['namespace'], galaxy['name'], galaxy['version']))
    assert tarball.is_file(), 'ansible-galaxy did not write %s\n%s' % (tarball, describe(build))
    return tarball


@pytest.fixture(scope='session')
def tarball_members(collection_tarball):
    """Names of the files and directories in the tarball."""
    with tarfile.open(collection_tarball) as archive:
        return set(archive.getnames())


@pytest.fixture(scope='session')
def installed_collections(tmp_path_factory, collection_tarball):
    """A collections path holding only the installed tarball (dependencies resolve to the ansible package)."""
    path = tmp_path_factory.mktemp('collections')
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(path))
    install = run([tool('ansible-galaxy'), 'collection', 'install', '--offline', '-p', str(path),
                   str(collection_tarball)], env=env)
    assert install.returncode == 0, describe(install)
    return path


@pytest.fixture(scope='session')
def ansible_env(installed_collections, tmp_path_factory):
    """Environment for ansible commands: the installed copy is the only positops.ha they can find."""
    env = {key: value for key, value in os.environ.items() if not key.startswith('ANSIBLE_')}
    env.update(
        ANSIBLE_COLLECTIONS_PATH=str(installed_collections),
        ANSIBLE_LOCAL_TEMP=str(tmp_path_factory.mktemp('ansible-local')),
        ANSIBLE_NOCOLOR='1',
        ANSIBLE_RETRY_FILES_ENABLED='0',
        PATH='%s%s%s' % (BIN, os.pathsep, env.get('PATH', '')),
    )
    return env
