#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: secure_cookie_key
short_description: Keep one strong shared secret file, identical on every cluster node
version_added: 0.1.0
description:
  - Manages the Posit Workbench C(secure-cookie-key) (by default C(/etc/rstudio/secure-cookie-key)) or, through
    O(path), the Posit Package Manager encryption key (C(Server.EncryptionKeyPath), by default
    C(/var/lib/rstudio-pm/rstudio-pm.key)). Every node of a cluster must hold the same key, readable only by
    its owner.
  - With O(content), the file must hold exactly that key. A file that holds a different key is replaced only
    with O(force=true) (key rotation); otherwise the task fails, saying that this node's key differs from the
    cluster's, and shows both fingerprints.
  - Without O(content), an existing key is kept unchanged when it is strong enough, also one made by hand the
    way Posit documents (C(echo `uuid` > /etc/rstudio/secure-cookie-key)); when the file is missing (or empty) a
    random 256-bit key is generated.
  - Keys are compared without surrounding white space (such as the trailing line break C(echo) adds). Weak keys
    (too short for O(min_bits), or repetitive) are refused, and so are modes that give the group or others any access.
  - A wrong mode, owner or group is repaired and reported as a change. The file is written through a private
    temporary file and an atomic rename, never readable by anyone else on the way.
  - The module never returns or shows the key (only its SHA-256 fingerprint), unless O(return_key=true).
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
options:
  path:
    description: Path of the key file. Its directory must exist.
    type: path
    default: /etc/rstudio/secure-cookie-key
  content:
    description:
      - The key the file must hold (the cluster's key). Keep it in a vault.
      - Written exactly as given; surrounding white space is ignored when comparing.
      - When omitted, an existing key is kept, and a missing one is generated.
    type: str
  min_bits:
    description:
      - Entropy, in bits, that a key must at least hold, whether given in O(content) or found in the file.
      - Estimated from the key's length and alphabet (32 hex digits hold 128 bits, a uuid such as
        C(0c9a61f4-8e3d-4b7a-9d2e-5f1a8c3b7e60) about 147); a key that uses very few distinct characters, repeats a
        shorter pattern or runs in sequence (C(abcdef...)) holds less than its length suggests and is refused.
      - The default is Workbench's documented minimum, which the keys Posit documents meet (C(uuid),
        C(openssl rand -hex 16)). It cannot be lower. Workbench itself only counts characters (16 or more), so it
        also starts with keys refused here, such as 16 random printable characters (about 105 bits).
      - A generated key holds 256 bits, or O(min_bits) when that is larger.
    type: int
    default: 128
  owner:
    description: Owner of the file (name or UID). When omitted the owner is left as it is (root for a new file).
    type: str
  group:
    description: Group of the file (name or GID). When omitted the group is left as it is.
    type: str
  mode:
    description:
      - Permissions of the file, as an octal string such as V('0600') (quote it in YAML).
      - A mode that gives the group or others any access, or that does not let the owner read, is refused;
        Workbench itself rejects a secure-cookie-key whose mode is not 0600.
    type: raw
    default: '0600'
  state:
    description: V(present) keeps the key file; V(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
  force:
    description:
      - Replace a file that holds a different key than O(content) (key rotation), or a weak existing key when
        O(content) is omitted (with a newly generated one).
      - Rotating the key of a running cluster invalidates sessions; update every node in the same run.
    type: bool
    default: false
  backup:
    description: Before replacing or removing a key, keep a copy next to it (same mode), and return its path.
    type: bool
    default: false
  return_key:
    description:
      - B(Secret.) Also return the key itself as RV(key), for instance to read back a key generated on the
        first node and distribute it to the others. Set C(no_log) on such a task.
      - A key given in O(content) is masked in the output anyway.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details: Nothing is written; C(changed) says whether the key, mode or owner would change.
  diff_mode:
    support: full
    details: The diff shows the fingerprint, mode, owner and group before and after, never key material.
  platform:
    platforms: posix
notes:
  - The fingerprint is the SHA-256 of the key without surrounding white space; compare it across nodes with
    O(state=present) and no O(content) in check mode, which only reads.
author:
  - positops.ha maintainers (@positops)
seealso:
  - module: ansible.builtin.slurp
"""

EXAMPLES = r"""
- name: Install the cluster's Workbench secure cookie key on every node
  positops.ha.secure_cookie_key:
    content: "{{ vault_workbench_secure_cookie_key }}"
    mode: "0600"
    owner: root

- name: Install a key made the way Posit documents it (echo `uuid`), kept in a vault
  positops.ha.secure_cookie_key:
    content: "{{ vault_workbench_uuid_key }}"

- name: Generate a key once, on the first node only
  positops.ha.secure_cookie_key:
    return_key: true
  register: first_key
  no_log: true
  run_once: true

- name: Give the other nodes the same key
  positops.ha.secure_cookie_key:
    content: "{{ first_key.key }}"
  no_log: true

- name: Share the Package Manager encryption key (S3 storage)
  positops.ha.secure_cookie_key:
    path: /var/lib/rstudio-pm/rstudio-pm.key
    content: "{{ vault_rspm_encryption_key }}"
    owner: rstudio-pm
    group: rstudio-pm

- name: Rotate the key on every node, keeping the old one beside it
  positops.ha.secure_cookie_key:
    content: "{{ vault_new_secure_cookie_key }}"
    force: true
    backup: true

- name: Read the fingerprints (check mode never writes)
  positops.ha.secure_cookie_key:
  check_mode: true
  register: key_state
"""

RETURN = r"""
key_file:
  description:
    - The key file. (Not named C(path), so that Ansible does not overwrite RV(mode) and RV(owner) with the file's
      state on disk in check mode.)
  returned: always
  type: str
  sample: /etc/rstudio/secure-cookie-key
fingerprint:
  description:
    - SHA-256 (hex) of the key, equal on two nodes exactly when they hold the same key.
    - V(null) when the file is absent, or in check mode when a key would be generated.
  returned: always
  type: str
  sample: 9f2b5c0d1e3a4b6c7d8e9f00112233445566778899aabbccddeeff0011223344
generated:
  description: Whether a new random key was generated (or would be, in check mode).
  returned: always
  type: bool
  sample: false
replaced:
  description: Whether a different existing key was replaced (rotation) or would be, in check mode.
  returned: always
  type: bool
  sample: false
mode:
  description: Mode of the file afterwards, octal; V(null) when absent.
  returned: always
  type: str
  sample: '0600'
owner:
  description: Owner of the file afterwards; V(null) when absent or not known yet in check mode.
  returned: always
  type: str
  sample: root
group:
  description: Group of the file afterwards; V(null) when absent or not known yet in check mode.
  returned: always
  type: str
  sample: root
backup_file:
  description: Copy of the previous key file, when O(backup=true) and a key was replaced or removed.
  returned: when a backup was made
  type: str
  sample: /etc/rstudio/secure-cookie-key.12345.2026-11-23@12:40:05~
key:
  description: B(Secret.) The key material, without surrounding white space.
  returned: when O(return_key=true) and a key exists (not in check mode when one would be generated)
  type: str
  sample: 3c6e0b8a9c15224a8228b9a98ca1531d3c6e0b8a9c15224a8228b9a98ca1531d
"""

import grp
import os
import pwd
import stat
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_native, to_text

from ansible_collections.positops.ha.plugins.module_utils._secret_key import (
    ABSOLUTE_MIN_BITS, DEFAULT_MIN_BITS, GENERATED_BITS, fingerprint, generate, key_material, mode_exposure,
    parse_mode, weakness)


def _read(module, path):
    """The file's bytes, or None when it does not exist."""
    if not os.path.lexists(path):
        return None
    if os.path.isdir(path):
        module.fail_json(msg="%s is a directory; path must name the key file." % path)
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except (IOError, OSError) as exc:
        module.fail_json(msg="Cannot read %s: %s. Run the task as root (become: true)." % (path, to_native(exc)))


def _file_state(path):
    """What the diff and the result show about a file: never its content."""
    if not os.path.exists(path):
        return {"state": "absent", "fingerprint": None, "mode": None, "owner": None, "group": None}
    info = os.stat(path)
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        owner = pwd.getpwuid(info.st_uid).pw_name
    except KeyError:
        owner = str(info.st_uid)
    try:
        group = grp.getgrgid(info.st_gid).gr_name
    except KeyError:
        group = str(info.st_gid)
    return {"state": "present", "fingerprint": fingerprint(data) if key_material(data) else None,
            "mode": "%04o" % stat.S_IMODE(info.st_mode), "owner": owner, "group": group}


def _describe(file_state):
    return "".join("%s: %s\n" % (key, file_state[key]) for key in ("state", "fingerprint", "mode", "owner", "group"))


def _write(module, path, data):
    """Write ``data`` to ``path`` through a 0600 temporary file in the same directory and an atomic rename."""
    directory = os.path.dirname(path) or "."
    handle, temporary = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=directory)
    try:
        os.write(handle, data)
        os.fsync(handle)
    finally:
        os.close(handle)
    # atomic_move gives a new file 0666 & ~umask; a 077 umask keeps it private until the mode is set.
    previous_umask = os.umask(0o077)
    try:
        module.atomic_move(temporary, path)
    finally:
        os.umask(previous_umask)
        if os.path.exists(temporary):
            os.unlink(temporary)


def _generated_bits(params):
    """Size of a generated key: 256 bits, or more when min_bits asks for more."""
    return max(GENERATED_BITS, (params["min_bits"] + 7) // 8 * 8)


def _validate(module):
    params = module.params
    if params["min_bits"] < ABSOLUTE_MIN_BITS:
        module.fail_json(msg="min_bits is %d, but a shared key needs at least %d bits (Workbench's minimum). Set "
                             "min_bits to %d or more, or leave it out."
                             % (params["min_bits"], ABSOLUTE_MIN_BITS, ABSOLUTE_MIN_BITS))
    try:
        mode = parse_mode(params["mode"])
    except ValueError as exc:
        module.fail_json(msg=to_native(exc))
    exposure = mode_exposure(mode)
    if exposure:
        module.fail_json(msg="Refusing mode for %s: %s." % (params["path"], exposure))
    if params["content"] is not None:
        problem = weakness(to_bytes(params["content"], errors="surrogate_or_strict"), params["min_bits"])
        if problem:
            module.fail_json(msg="The key given in content is weak: %s. Generate a strong one, for example with "
                                 "`openssl rand -hex %d`." % (problem, _generated_bits(params) // 8))
    return mode


def _remove(module, result, before):
    path = module.params["path"]
    if before["state"] == "absent":
        return result
    result["changed"] = True
    if not module.check_mode:
        if module.params["backup"]:
            result["backup_file"] = module.backup_local(path)
        os.unlink(path)
    return result


def _apply_attributes(module, path, mode, changed):
    if module.check_mode and not os.path.exists(path):
        return changed
    changed = module.set_mode_if_different(path, mode, changed)
    if module.params["owner"] is not None:
        changed = module.set_owner_if_different(path, module.params["owner"], changed)
    if module.params["group"] is not None:
        changed = module.set_group_if_different(path, module.params["group"], changed)
    return changed


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", default="/etc/rstudio/secure-cookie-key"),
            content=dict(type="str", no_log=True),
            min_bits=dict(type="int", default=DEFAULT_MIN_BITS),
            owner=dict(type="str"),
            group=dict(type="str"),
            mode=dict(type="raw", default="0600"),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            force=dict(type="bool", default=False),
            backup=dict(type="bool", default=False),
            return_key=dict(type="bool", default=False, no_log=False),
        ),
        supports_check_mode=True,
    )
    params = module.params
    path = params["path"]
    mode = _validate(module)

    existing = _read(module, path)
    before = _file_state(path)
    result = dict(changed=False, key_file=path, generated=False, replaced=False)

    if params["state"] == "absent":
        _remove(module, result, before)
        after = {"state": "absent", "fingerprint": None, "mode": None, "owner": None, "group": None}
        if module._diff:
            result["diff"] = {"before": _describe(before), "after": _describe(after),
                              "before_header": path, "after_header": path}
        result.update(fingerprint=None, mode=None, owner=None, group=None)
        module.exit_json(**result)

    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        module.fail_json(msg="The directory %s does not exist. Install the product first, or create the "
                             "directory, then run this task again." % directory)

    has_key = existing is not None and bool(key_material(existing))
    new_data = None
    if params["content"] is not None:
        wanted = to_bytes(params["content"], errors="surrogate_or_strict")
        if not has_key:
            new_data = wanted
        elif key_material(existing) != key_material(wanted):
            if not params["force"]:
                module.fail_json(
                    msg="The key in %s on this node differs from the cluster's key given in content (this node: "
                        "%s, cluster: %s). Set force=true to replace it (key rotation), or fix the cluster's "
                        "key." % (path, fingerprint(existing), fingerprint(wanted)),
                    path=path, fingerprint=fingerprint(existing), expected_fingerprint=fingerprint(wanted))
            new_data = wanted
            result["replaced"] = True
    elif has_key:
        problem = weakness(existing, params["min_bits"])
        if problem and not params["force"]:
            module.fail_json(msg="The existing key in %s is weak: %s. Set force=true to replace it with a new "
                                 "random key, or give the cluster's key in content." % (path, problem),
                             path=path, fingerprint=fingerprint(existing))
        if problem:
            new_data = generate(_generated_bits(params))
            result.update(generated=True, replaced=True)
    else:
        new_data = generate(_generated_bits(params))
        result["generated"] = True

    if new_data is not None:
        result["changed"] = True
        if not module.check_mode:
            if existing is not None:
                # Close an open mode before anything else, so no copy (backup, rename) is ever readable.
                module.set_mode_if_different(path, mode, False)
                if params["backup"] and has_key:
                    result["backup_file"] = module.backup_local(path)
            _write(module, path, new_data)

    result["changed"] = _apply_attributes(module, path, mode, result["changed"])

    if module.check_mode:
        after = dict(before)
        after["state"] = "present"
        after["mode"] = "%04o" % mode
        if new_data is not None:
            after["fingerprint"] = None if result["generated"] else fingerprint(new_data)
        for key in ("owner", "group"):
            if params[key] is not None:
                after[key] = params[key]
        final_data = new_data if new_data is not None and not result["generated"] else (
            existing if new_data is None else None)
    else:
        after = _file_state(path)
        final_data = new_data if new_data is not None else existing

    if module._diff:
        result["diff"] = {"before": _describe(before), "after": _describe(after),
                          "before_header": path, "after_header": path}
    result.update(fingerprint=after["fingerprint"], mode=after["mode"], owner=after["owner"],
                  group=after["group"])
    if params["return_key"] and final_data is not None:
        result["key"] = to_text(key_material(final_data), errors="surrogate_or_strict")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
