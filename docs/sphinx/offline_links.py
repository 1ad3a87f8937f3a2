# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sphinx extension: resolve references to the Ansible docsite without downloading intersphinx inventories.

The docs of positops.ha link to other collections' plugins (``M(ansible.posix.mount)``) and to pages of the
Ansible docsite (common return values, configuration settings). The usual way to resolve those is intersphinx,
which fetches inventories from the internet; the docs build here is offline. This extension turns such a
reference into a plain link to docs.ansible.com and leaves every other unresolved reference alone, so a broken
reference inside this collection still fails the build (sphinx-build -W).
"""

from __future__ import annotations

from docutils import nodes

ANSIBLE_DOCSITE = 'https://docs.ansible.com/ansible/latest/'

# Labels of the Ansible docsite that antsibull-docs emits in generated pages.
DOCSITE_PAGES = {
    'common_return_values': 'reference_appendices/common_return_values.html',
    'ansible_configuration_settings': 'reference_appendices/config.html',
    'playbooks_tags': 'playbook_guide/playbooks_tags.html',
    'playbooks_variables': 'playbook_guide/playbooks_variables.html',
}

COLLECTION_LABEL_PREFIX = 'ansible_collections.'


def external_url(label: str, own_collection: str) -> str | None:
    """Return the docs.ansible.com URL for a label, or None when the label must resolve locally."""
    if label in DOCSITE_PAGES:
        return ANSIBLE_DOCSITE + DOCSITE_PAGES[label]
    if not label.startswith(COLLECTION_LABEL_PREFIX):
        return None
    # ansible_collections.<namespace>.<name>.<plugin>_<type>[__<anchor>]
    parts = label[len(COLLECTION_LABEL_PREFIX):].split('.', 2)
    if len(parts) != 3 or '%s.%s' % (parts[0], parts[1]) == own_collection:
        return None
    namespace, name, page = parts
    page, _separator, anchor = page.partition('__')
    url = '%scollections/%s/%s/%s.html' % (ANSIBLE_DOCSITE, namespace, name, page)
    return url + ('#' + anchor if anchor else '')


def resolve_external_reference(app, env, node, contnode):
    """Sphinx 'missing-reference' handler: link labels of other docs to docs.ansible.com."""
    if node.get('reftype') != 'ref':
        return None
    url = external_url(node.get('reftarget', ''), app.config.offline_links_own_collection)
    if url is None:
        return None
    reference = nodes.reference('', '', internal=False, refuri=url)
    reference += contnode
    return reference


def setup(app):
    """Register the configuration value and the handler."""
    app.add_config_value('offline_links_own_collection', '', 'env')
    app.connect('missing-reference', resolve_external_reference)
    return {'parallel_read_safe': True, 'parallel_write_safe': True}
