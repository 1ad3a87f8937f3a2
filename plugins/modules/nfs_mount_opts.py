#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: nfs_mount_opts
short_description: Compute and check NFS or Amazon EFS mount options for a Posit product's shared directory
version_added: 0.1.0
description:
  - Returns the mount options a product's shared directory needs, merged with the operator's own options and
    validated, as the string to give to M(ansible.posix.mount). The mount itself stays with that module.
  - Package Manager data needs C(lookupcache=pos) so new files are seen at once; where C(lookupcache) is not
    acceptable, C(acdirmax) or C(actimeo) of 5 seconds or less (or C(noac)) does instead. C(lookupcache=all) without
    such a short cache is refused.
  - On Amazon EFS the AWS recommended options are used (C(nfsvers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,
    retrans=2,noresvport,_netdev)) plus C(lookupcache=pos). The operator's options override recommended values,
    with a warning.
  - Workbench shared home directories must keep file locking, so C(nolock) and C(local_lock) other than
    C(none) are refused; on EFS Workbench must use advisory locks, and the module says so (RV(file_lock_type)).
  - Unknown, malformed or contradictory options (C(hard) and C(soft), two C(lookupcache) values, a version
    differing from O(nfs_version), C(ro)) fail with a message naming them.
  - With O(path), the live options of the mount holding that path are read from C(/proc/mounts) and compared.
  - Never changes the host.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
options:
  product:
    description: The product whose shared directory is mounted.
    type: str
    required: true
    choices: [package_manager, connect, workbench]
  storage:
    description: V(nfs) for an NFS server, V(efs) for Amazon EFS.
    type: str
    choices: [nfs, efs]
    default: nfs
  nfs_version:
    description:
      - NFS protocol version, emitted as C(nfsvers). Quote it in YAML (V('4.1')).
      - Defaults to V('4.1') on EFS (which speaks 4.0 and 4.1 only, so V('3') and V('4.2') are refused there);
        on NFS no version is set unless given here or in O(options).
    type: str
    choices: ['3', '4', '4.1', '4.2']
  options:
    description:
      - The operator's own mount options, as a list or a comma separated string (C(key) or C(key=value) each).
      - They are validated against nfs(5) and mount(8), and merged with the required ones.
    type: list
    elements: str
    default: []
  path:
    description:
      - A path on a mounted share whose live options are checked against the computed ones.
      - The mount holding the path must be an NFS mount, or the task fails.
    type: path
attributes:
  check_mode:
    support: full
    details: The module changes nothing, so it runs the same in check mode.
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - Warnings are shown as Ansible warnings and returned as RV(opts_warnings) (a module cannot return a key named
    C(warnings) of its own).
author:
  - positops.ha maintainers (@positops)
seealso:
  - module: ansible.posix.mount
"""

EXAMPLES = r"""
- name: Options for Package Manager's shared data directory on NFS 4.1
  positops.ha.nfs_mount_opts:
    product: package_manager
    nfs_version: "4.1"
    options: [hard, noatime]
  register: rspm_nfs

- name: Mount it
  ansible.posix.mount:
    src: nfs.example.com:/export/rspm
    path: /mnt/rspm
    fstype: nfs
    opts: "{{ rspm_nfs.opts }}"
    state: mounted

- name: Workbench home directories on EFS
  positops.ha.nfs_mount_opts:
    product: workbench
    storage: efs
  register: rsw_efs

- name: Use the lock type the storage needs
  ansible.builtin.copy:
    dest: /etc/rstudio/file-locks
    content: "lock-type={{ rsw_efs.file_lock_type }}\n"
    mode: "0644"

- name: Check a mounted share without changing it
  positops.ha.nfs_mount_opts:
    product: package_manager
    path: /var/lib/rstudio-pm
  register: live

- name: Fail when the live mount misses options
  ansible.builtin.assert:
    that: live.compliant
    fail_msg: "Missing {{ live.missing | join(', ') }}; unwanted {{ live.unwanted | join(', ') }}"
"""

RETURN = r"""
opts:
  description: The merged option string for the C(opts) of M(ansible.posix.mount).
  returned: success
  type: str
  sample: nfsvers=4.1,hard,noatime,lookupcache=pos
opts_list:
  description: The same options as a list.
  returned: success
  type: list
  elements: str
  sample: [nfsvers=4.1, hard, noatime, lookupcache=pos]
opts_warnings:
  description: Advice about the options (also emitted as Ansible warnings).
  returned: success
  type: list
  elements: str
  sample: ["Workbench on EFS: set lock-type=advisory in /etc/rstudio/file-locks on every node; the default
           link-based locks do not work on EFS."]
file_lock_type:
  description: For Workbench, the C(lock-type) that /etc/rstudio/file-locks needs on this storage; V(null) for
    other products.
  returned: success
  type: str
  sample: advisory
mount_point:
  description: The mount point holding O(path).
  returned: when O(path) is given
  type: str
  sample: /var/lib/rstudio-pm
current:
  description: The live options of that mount, as C(/proc/mounts) shows them.
  returned: when O(path) is given
  type: str
  sample: rw,relatime,vers=4.1,rsize=1048576,wsize=1048576,hard,proto=tcp,timeo=600,retrans=2,sec=sys
compliant:
  description: Whether the live mount applies every computed option and nothing the product forbids.
  returned: when O(path) is given
  type: bool
  sample: false
missing:
  description: Computed options the live mount does not apply (options only mount(8) reads, such as C(_netdev),
    are not checked).
  returned: when O(path) is given
  type: list
  elements: str
  sample: [lookupcache=pos]
unwanted:
  description: Live options the product's rules forbid (for Workbench C(nolock), C(local_lock=...)).
  returned: when O(path) is given
  type: list
  elements: str
  sample: []
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.positops.ha.plugins.module_utils._nfs_options import (
    MountOptionError, check_live, compute, find_mount, parse_mounts, render)

MOUNTS_FILE = "/proc/mounts"


def _live(module, path):
    try:
        with open(MOUNTS_FILE) as handle:
            mounts = parse_mounts(handle.read())
    except (IOError, OSError) as exc:
        module.fail_json(msg="Cannot read %s to check %s: %s" % (MOUNTS_FILE, path, to_native(exc)))
    if not os.path.exists(path):
        module.fail_json(msg="path %s does not exist; mount the share first, or leave path out." % path)
    mount = find_mount(mounts, os.path.realpath(path))
    if mount is None or not mount["fstype"].startswith("nfs"):
        module.fail_json(msg="%s is not on an NFS mount (it is on %s, file system %s). Mount the share first "
                             "(ansible.posix.mount with the opts this module returns), or leave path out." % (
                                 path, mount["mount_point"] if mount else "no mount", mount["fstype"] if mount else "?"))
    return mount


def main():
    module = AnsibleModule(
        argument_spec=dict(
            product=dict(type="str", required=True, choices=["package_manager", "connect", "workbench"]),
            storage=dict(type="str", default="nfs", choices=["nfs", "efs"]),
            nfs_version=dict(type="str", choices=["3", "4", "4.1", "4.2"]),
            options=dict(type="list", elements="str", default=[]),
            path=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        computed = compute(params["product"], params["storage"], params["nfs_version"], params["options"])
    except MountOptionError as exc:
        module.fail_json(msg=to_native(exc))
    for warning in computed["warnings"]:
        module.warn(warning)
    result = dict(changed=False, opts=render(computed["opts"]),
                  opts_list=[render([option]) for option in computed["opts"]],
                  opts_warnings=computed["warnings"], file_lock_type=computed["file_lock_type"])
    if params["path"]:
        mount = _live(module, params["path"])
        live = check_live(params["product"], computed["opts"], mount["options"])
        result.update(mount_point=mount["mount_point"], current=mount["options"], **live)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
