# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: preflight_config
author:
  - positops.ha maintainers (@positops)
short_description: A node's configuration files as comparable entries, every secret value masked
version_added: 0.1.0
description:
  - Parses configuration files (INI, gcfg, C(key=value); a line of another format is kept whole) or a planned
    configuration (a mapping of sections to keys and values, or of keys to values) into sorted
    C(file:Section.Key = value) entries, as the pre-flight drift checks compare them.
  - A value is masked (replaced by C(<secret sha256:...>), a short hash, so that two nodes can still be compared) when
    its key or file name contains C(password), C(passwd), C(secret), C(token) or C(key), or matches one of
    O(secret_keys). Inside any other value, the password of a C(scheme://user:password@host) URL and
    C(name=value) pairs whose name looks secret are masked.
  - Named O(settings) are returned unmasked, for the checks that need a value (Connect's C(Metrics.DataPath),
    Workbench's C(lock-type)); a setting naming a secret key is refused.
options:
  _input:
    description:
      - File name (relative to the product's configuration directory) to content. The content is text (or base64
        with O(base64=true), as M(ansible.builtin.slurp) returns it), or a mapping for a planned configuration.
      - A file that is not text (binary, or not UTF-8) becomes one entry saying so.
    type: dict
    required: true
  secret_keys:
    description:
      - More keys whose values are secret, as shell patterns compared (case-insensitively) with C(file:Section.Key),
        C(Section.Key) and C(Key), for example C(Postgres.URL) or C(*.ClientSecret).
    type: list
    elements: str
    default: []
  settings:
    description: Setting name to the C(file:Section.Key) whose value is returned in RV(_value.settings).
    type: dict
    default: {}
  base64:
    description: Whether the contents are base64 encoded.
    type: bool
    default: false
seealso:
  - plugin: positops.ha.preflight_problems
    plugin_type: filter
    description: Compares these entries across the nodes and with the inventory.
"""

EXAMPLES = r"""
- name: Mask a configuration before it is compared or shown
  ansible.builtin.debug:
    msg: >-
      {{ {'rstudio-pm.gcfg': "[Server]\nDataDir = /srv/shared/rspm\n[Postgres]\nURL = postgres://pm:hunter2@db/pm\n"}
         | positops.ha.preflight_config(secret_keys=['Postgres.URL'], settings={'data_dir': 'rstudio-pm.gcfg:Server.DataDir'}) }}
  # => {"files": ["rstudio-pm.gcfg"],
  #     "entries": [["rstudio-pm.gcfg:Postgres.URL", "<secret sha256:5b8c0f1d2e3a>"],
  #                 ["rstudio-pm.gcfg:Server.DataDir", "/srv/shared/rspm"]],
  #     "settings": {"data_dir": "/srv/shared/rspm"}}

- name: Read every file of the configuration directory, masked
  ansible.builtin.set_fact:
    pf_config: >-
      {{ dict(reads.results | map(attribute='item.path') | map('relpath', '/etc/rstudio')
              | zip(reads.results | map(attribute='content')))
         | positops.ha.preflight_config(base64=true, secret_keys=['connection-uri']) }}
  no_log: true
"""

RETURN = r"""
_value:
  description: The masked configuration.
  type: dict
  contains:
    files:
      description: The file names, sorted.
      type: list
      elements: str
      sample: [load-balancer, rserver.conf]
    entries:
      description: C([file:Section.Key, value]) pairs, sorted; the value is null for a line without C(=).
      type: list
      elements: list
      sample: [["database.conf:password", "<secret sha256:9b71d224bd62>"], ["rserver.conf:www-port", "8787"]]
    settings:
      description: Each requested setting's value (the last occurrence), null when absent.
      type: dict
      sample: {lock_type: linkbased}
"""

import base64 as b64

from ansible.errors import AnsibleFilterError

from ansible_collections.positops.ha.plugins.module_utils._preflight import PreflightError, config_entries


def _decode(content):
    try:
        data = b64.b64decode(content)
    except (TypeError, ValueError):
        return None
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def preflight_config(files, secret_keys=None, settings=None, base64=False):
    if not isinstance(files, dict):
        raise AnsibleFilterError("positops.ha.preflight_config: the input must map file names to contents, got %s"
                                 % type(files).__name__)
    if base64:
        files = dict((name, content if isinstance(content, dict) else _decode(content or ""))
                     for name, content in files.items())
    try:
        return config_entries(files, secret_keys=list(secret_keys or []), settings=dict(settings or {}))
    except PreflightError as exc:
        raise AnsibleFilterError("positops.ha.preflight_config: %s" % exc)


class FilterModule(object):
    """Masked, comparable configuration."""

    def filters(self):
        return {"preflight_config": preflight_config}
