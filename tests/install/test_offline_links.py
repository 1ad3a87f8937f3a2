# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""docs/sphinx/offline_links.py links other docs to docs.ansible.com and leaves this collection's labels alone."""

from __future__ import annotations

import importlib.util

import pytest

from .commands import REPO


@pytest.fixture(scope='module')
def offline_links():
    spec = importlib.util.spec_from_file_location('offline_links', REPO / 'docs' / 'sphinx' / 'offline_links.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('label, url', [
    ('ansible_collections.ansible.posix.mount_module',
     'https://docs.ansible.com/ansible/latest/collections/ansible/posix/mount_module.html'),
    ('ansible_collections.community.general.haproxy_module__parameter-state',
     'https://docs.ansible.com/ansible/latest/collections/community/general/haproxy_module.html#parameter-state'),
    ('ansible_collections.ansible.builtin.slurp_module',
     'https://docs.ansible.com/ansible/latest/collections/ansible/builtin/slurp_module.html'),
    ('common_return_values', 'https://docs.ansible.com/ansible/latest/reference_appendices/common_return_values.html'),
])
def test_other_docs_link_to_the_ansible_docsite(offline_links, label, url):
    assert offline_links.external_url(label, 'positops.ha') == url


@pytest.mark.parametrize('label', [
    # A broken reference inside this collection must stay broken, so that sphinx-build -W fails on it.
    'ansible_collections.positops.ha.product_common_module',
    'ansible_collections.positops.ha.secure_cookie_key_module__return-changed',
    # Unknown labels of the Ansible docsite are not guessed.
    'some_unknown_label',
    'ansible_collections.incomplete',
])
def test_other_labels_stay_unresolved(offline_links, label):
    assert offline_links.external_url(label, 'positops.ha') is None
