"""secure_cookie_key against real files in a temporary directory (as root, so owners can change)."""

import grp
import hashlib
import os
import pwd
import stat

import pytest

from ansible_collections.positops.ha.plugins.modules import secure_cookie_key

CLUSTER_KEY = "4f1c9a7e2b6d8035c1e9f7a2b4d6e8f01a3c5e7092b4d6f8a1c3e5f7092b4d6f"   # 256 random bits, hex
OTHER_KEY = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d"
NEEDS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")


def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


def mode_of(path):
    return stat.S_IMODE(os.stat(str(path)).st_mode)


@pytest.fixture
def key_path(tmp_path):
    return tmp_path / "etc-rstudio" / "secure-cookie-key"


@pytest.fixture
def run(run_module, key_path):
    key_path.parent.mkdir()

    def run_key(check_mode=False, diff=False, **args):
        args.setdefault("path", str(key_path))
        failed, result = run_module(secure_cookie_key.main, args, check_mode=check_mode, diff=diff)
        if key_path.is_file() and not args.get("return_key"):
            material = key_path.read_text().strip()
            if material:
                assert material not in result["_raw_output"], "key material leaked into the module output"
        for secret in (CLUSTER_KEY, OTHER_KEY):
            if not args.get("return_key"):
                assert secret not in result["_raw_output"]
        return failed, result

    return run_key


def write_key(path, text, mode=0o600):
    path.write_text(text)
    os.chmod(str(path), mode)


def test_generates_a_key_when_missing_then_keeps_it(run, key_path):
    failed, first = run()
    assert not failed
    assert first["changed"] and first["generated"] and not first["replaced"]
    material = key_path.read_text()
    assert len(material) == 65 and material.endswith("\n") and int(material, 16) >= 0
    assert mode_of(key_path) == 0o600
    assert first["fingerprint"] == sha(material.strip())
    assert (first["mode"], first["owner"]) == ("0600", pwd.getpwuid(os.geteuid()).pw_name)
    assert "key" not in first

    failed, second = run()
    assert not failed and second["changed"] is False and second["generated"] is False
    assert second["fingerprint"] == first["fingerprint"] and key_path.read_text() == material


def test_min_bits_above_256_sets_the_generated_size(run, key_path):
    failed, result = run(min_bits=512)
    assert not failed and len(key_path.read_text().strip()) == 128
    failed, result = run(min_bits=300, path=str(key_path) + "-300")
    assert not failed and len((key_path.parent / (key_path.name + "-300")).read_text().strip()) == 76


def test_new_file_is_never_readable_by_others_whatever_the_umask(run, key_path, monkeypatch):
    # Record the file's mode each time the module is about to set it: a written key must already be private then.
    seen = []
    original = secure_cookie_key.AnsibleModule.set_mode_if_different

    def spy(self, path, mode, changed, *args, **kwargs):
        if os.path.exists(path):
            seen.append(mode_of(path))
        return original(self, path, mode, changed, *args, **kwargs)

    monkeypatch.setattr(secure_cookie_key.AnsibleModule, "set_mode_if_different", spy)
    previous = os.umask(0o000)
    try:
        failed, result = run(content=CLUSTER_KEY)
        assert os.umask(0o000) == 0o000, "the module must restore the umask"
    finally:
        os.umask(previous)
    assert not failed and mode_of(key_path) == 0o600
    assert seen and all(mode & 0o077 == 0 for mode in seen), ["%04o" % mode for mode in seen]


def test_installs_the_cluster_key_exactly_then_is_idempotent(run, key_path):
    failed, result = run(content=CLUSTER_KEY)
    assert not failed and result["changed"] and not result["generated"]
    assert key_path.read_text() == CLUSTER_KEY
    assert result["fingerprint"] == sha(CLUSTER_KEY)
    failed, again = run(content=CLUSTER_KEY)
    assert not failed and again["changed"] is False


def test_trailing_line_break_is_not_a_difference(run, key_path):
    write_key(key_path, CLUSTER_KEY + "\n")
    failed, result = run(content=CLUSTER_KEY)
    assert not failed and result["changed"] is False
    assert key_path.read_text() == CLUSTER_KEY + "\n"


def test_a_different_key_is_refused_without_force(run, key_path):
    write_key(key_path, OTHER_KEY + "\n")
    failed, result = run(content=CLUSTER_KEY)
    assert failed
    assert "on this node differs from the cluster's key" in result["msg"]
    assert "this node: %s, cluster: %s" % (sha(OTHER_KEY), sha(CLUSTER_KEY)) in result["msg"]
    assert "force=true" in result["msg"]
    assert key_path.read_text() == OTHER_KEY + "\n"


def test_rotation_with_force_and_backup(run, key_path):
    write_key(key_path, OTHER_KEY + "\n")
    failed, result = run(content=CLUSTER_KEY, force=True, backup=True)
    assert not failed and result["changed"] and result["replaced"]
    assert key_path.read_text() == CLUSTER_KEY and mode_of(key_path) == 0o600
    backup = result["backup_file"]
    assert backup != str(key_path) and os.path.dirname(backup) == str(key_path.parent)
    with open(backup) as handle:
        assert handle.read() == OTHER_KEY + "\n"
    assert mode_of(backup) == 0o600
    failed, again = run(content=CLUSTER_KEY, force=True, backup=True)
    assert not failed and again["changed"] is False and "backup_file" not in again


def test_rotation_closes_an_open_mode_before_the_backup(run, key_path):
    write_key(key_path, OTHER_KEY, mode=0o644)
    failed, result = run(content=CLUSTER_KEY, force=True, backup=True)
    assert not failed
    assert mode_of(result["backup_file"]) == 0o600 and mode_of(key_path) == 0o600


# Keys made the ways Posit documents (seed 004: `echo \`uuid\``, "128 bits (16 bytes/characters)") and the usual
# 128-bit hex key; uuid(1) makes time-based (version 1) uuids, uuidgen random (version 4) ones.
VENDOR_KEYS = {
    "uuid-v1": "3b2ab9a2-3a0e-11ef-9b47-0242ac120002",
    "uuid-v4": "0c9a61f4-8e3d-4b7a-9d2e-5f1a8c3b7e60",
    "uuid-upper-case": "6BA7B810-9DAD-11D1-80B4-00C04FD430C8",
    "openssl-rand-hex-16": "5f0c2d9be47a13866a0fd1c39b27e4a8",
    "openssl-rand-base64-16": "q3Jx0K7vZ1bW9yT2mQ4sLw==",
}
# Keys the product might take (16 characters or more) that hold too little: short, or repetitive and patterned.
WEAK_KEYS = {
    "hex-64-bits": ("0123456789abcdef", "too short"),
    "printable-16-characters": ("Xk9#mP2$vL7@qR4!", "too short: 16 characters over an alphabet of 95 symbols"),
    "one-character": ("a" * 100, "uses only 1 distinct character"),
    "two-characters": ("abbaabababbbaaabbbabababbbabababbbaabbbaab", "uses only 2 distinct characters"),
    "nil-uuid": ("00000000-0000-0000-0000-000000000000", "uses only 2 distinct characters"),
    "pattern-twice": ("0123456789abcdef" * 2, "repeats a 16-character pattern"),
    "word-repeated": ("password" * 4, "repeats a 8-character pattern"),
    "sequence": ("abcdefghijklmnopqrstuvwxyz0123456789", "repetitive or patterned"),
    "blank": ("   ", "it is empty"),
}


@pytest.mark.parametrize("name", sorted(VENDOR_KEYS))
def test_vendor_keys_are_accepted_by_default(run, key_path, name):
    failed, result = run(content=VENDOR_KEYS[name])
    assert not failed, result["msg"]
    assert result["changed"] and key_path.read_text() == VENDOR_KEYS[name] and mode_of(key_path) == 0o600
    failed, again = run(content=VENDOR_KEYS[name])
    assert not failed and again["changed"] is False


@pytest.mark.parametrize("name", sorted(VENDOR_KEYS))
def test_a_hand_made_key_is_kept_unchanged(run, key_path, name):
    # As the admin guide makes it: sh -c "echo `uuid` > /etc/rstudio/secure-cookie-key"; chmod 0600.
    write_key(key_path, VENDOR_KEYS[name] + "\n")
    before = os.stat(str(key_path))
    for check_mode in (True, False):
        failed, result = run(check_mode=check_mode)
        assert not failed, result["msg"]
        assert result["changed"] is False and result["generated"] is False and result["replaced"] is False
        assert result["fingerprint"] == sha(VENDOR_KEYS[name])
    failed, result = run(content=VENDOR_KEYS[name])
    assert not failed and result["changed"] is False
    after = os.stat(str(key_path))
    assert key_path.read_text() == VENDOR_KEYS[name] + "\n"
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), "the key file was rewritten"


@pytest.mark.parametrize("name", sorted(WEAK_KEYS))
def test_weak_content_is_refused(run, key_path, name):
    content, reason = WEAK_KEYS[name]
    failed, result = run(content=content)
    assert failed and "The key given in content is weak" in result["msg"] and reason in result["msg"]
    assert "openssl rand -hex 32" in result["msg"]
    assert not key_path.exists()
    if content.strip():
        assert content not in result["_raw_output"]


@pytest.mark.parametrize("name", sorted(set(WEAK_KEYS) - {"blank"}))
def test_a_weak_hand_made_key_is_refused_and_left_alone(run, key_path, name):
    content, reason = WEAK_KEYS[name]
    write_key(key_path, content + "\n")
    failed, result = run()
    assert failed and "The existing key in %s is weak: " % key_path in result["msg"] and reason in result["msg"]
    assert "Set force=true to replace it with a new random key" in result["msg"]
    assert key_path.read_text() == content + "\n"


def test_uuid_key_is_refused_when_256_bits_are_asked_for(run, key_path):
    failed, result = run(content=VENDOR_KEYS["uuid-v4"], min_bits=256)
    assert failed and "too short" in result["msg"] and "at least 256 are required" in result["msg"]
    assert "openssl rand -hex 32" in result["msg"]
    failed, result = run(content=VENDOR_KEYS["uuid-v4"])
    assert not failed and key_path.read_text() == VENDOR_KEYS["uuid-v4"]


def test_generated_keys_hold_256_bits_whatever_the_minimum(run, key_path):
    failed, result = run(min_bits=128)
    assert not failed and result["generated"] and len(key_path.read_text().strip()) == 64


def test_min_bits_below_128_is_refused(run):
    failed, result = run(min_bits=64)
    assert failed and "min_bits is 64, but a shared key needs at least 128 bits" in result["msg"]
    assert "Set min_bits to 128 or more, or leave it out." in result["msg"]


@pytest.mark.parametrize("mode", ["0644", "0640", "0604", "0660", "0620", 0o644, "0200"])
def test_open_or_unreadable_modes_are_refused(run, key_path, mode):
    failed, result = run(mode=mode)
    assert failed and "Refusing mode for %s" % key_path in result["msg"]
    assert not key_path.exists()


@pytest.mark.parametrize("mode", ["u=rw", "rw-------", "0888"])
def test_non_octal_modes_are_refused(run, mode):
    failed, result = run(mode=mode)
    assert failed and "not an octal mode" in result["msg"]


def test_mode_0400_and_integer_modes_are_accepted(run, key_path):
    failed, result = run(mode="0400")
    assert not failed and mode_of(key_path) == 0o400 and result["mode"] == "0400"
    failed, result = run(mode=0o600)
    assert not failed and result["changed"] and mode_of(key_path) == 0o600


def test_wrong_mode_is_repaired_and_reported(run, key_path):
    write_key(key_path, CLUSTER_KEY, mode=0o644)
    failed, result = run(content=CLUSTER_KEY)
    assert not failed and result["changed"] and not result["replaced"]
    assert mode_of(key_path) == 0o600 and key_path.read_text() == CLUSTER_KEY


@NEEDS_ROOT
def test_owner_and_group_are_set_and_repaired(run, key_path):
    nobody = pwd.getpwnam("nobody")
    group = grp.getgrgid(nobody.pw_gid).gr_name
    failed, result = run(content=CLUSTER_KEY, owner="nobody", group=group)
    assert not failed and result["changed"]
    info = os.stat(str(key_path))
    assert (info.st_uid, info.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    assert (result["owner"], result["group"]) == ("nobody", group)
    failed, again = run(content=CLUSTER_KEY, owner="nobody", group=group)
    assert not failed and again["changed"] is False
    os.chown(str(key_path), 0, 0)
    failed, repaired = run(content=CLUSTER_KEY, owner="nobody", group=group)
    assert not failed and repaired["changed"] and os.stat(str(key_path)).st_uid == nobody.pw_uid


def test_unknown_owner_fails(run, key_path):
    failed, result = run(content=CLUSTER_KEY, owner="no-such-user-positops")
    assert failed and "no-such-user-positops" in result["msg"]


def test_existing_weak_key_fails_without_content_and_is_replaced_with_force(run, key_path):
    write_key(key_path, "short-key\n")
    failed, result = run()
    assert failed and "The existing key in %s is weak" % key_path in result["msg"]
    assert key_path.read_text() == "short-key\n"
    failed, result = run(force=True)
    assert not failed and result["generated"] and result["replaced"]
    assert len(key_path.read_text().strip()) == 64


def test_empty_existing_file_gets_a_key(run, key_path):
    write_key(key_path, "")
    failed, result = run()
    assert not failed and result["changed"] and result["generated"] and not result["replaced"]


def test_existing_strong_key_is_kept_without_content(run, key_path):
    write_key(key_path, OTHER_KEY + "\n")
    failed, result = run(force=True)
    assert not failed and result["changed"] is False and result["fingerprint"] == sha(OTHER_KEY)


def test_check_mode_creates_nothing(run, key_path):
    failed, result = run(check_mode=True)
    assert not failed and result["changed"] and result["generated"]
    assert result["fingerprint"] is None and result["mode"] == "0600"
    assert not key_path.exists()


def test_check_mode_replaces_nothing(run, key_path):
    write_key(key_path, OTHER_KEY, mode=0o644)
    failed, result = run(check_mode=True, content=CLUSTER_KEY, force=True, backup=True)
    assert not failed and result["changed"] and result["replaced"]
    assert result["fingerprint"] == sha(CLUSTER_KEY)
    assert key_path.read_text() == OTHER_KEY and mode_of(key_path) == 0o644
    assert "backup_file" not in result and len(os.listdir(str(key_path.parent))) == 1


def test_check_mode_reports_a_mode_repair_without_doing_it(run, key_path):
    write_key(key_path, CLUSTER_KEY, mode=0o640)
    failed, result = run(check_mode=True, content=CLUSTER_KEY)
    assert not failed and result["changed"] and result["mode"] == "0600"
    assert mode_of(key_path) == 0o640


def test_check_mode_of_a_good_key_reads_the_fingerprint(run, key_path):
    write_key(key_path, CLUSTER_KEY + "\n")
    failed, result = run(check_mode=True)
    assert not failed and result["changed"] is False and result["fingerprint"] == sha(CLUSTER_KEY)


def test_diff_shows_fingerprints_and_modes_never_the_key(run, key_path):
    write_key(key_path, OTHER_KEY, mode=0o644)
    failed, result = run(diff=True, content=CLUSTER_KEY, force=True)
    assert not failed
    diff = result["diff"]
    assert "fingerprint: %s" % sha(OTHER_KEY) in diff["before"] and "mode: 0644" in diff["before"]
    assert "fingerprint: %s" % sha(CLUSTER_KEY) in diff["after"] and "mode: 0600" in diff["after"]
    assert CLUSTER_KEY not in str(diff) and OTHER_KEY not in str(diff)


def test_return_key_gives_a_generated_key(run, key_path):
    failed, result = run(return_key=True)
    assert not failed and result["key"] == key_path.read_text().strip()
    failed, result = run(return_key=True, check_mode=True)
    assert result["key"] == key_path.read_text().strip()


def test_return_key_in_check_mode_before_generation_returns_nothing(run, key_path):
    failed, result = run(return_key=True, check_mode=True)
    assert not failed and "key" not in result


def test_content_is_masked_even_with_return_key(run, key_path):
    failed, result = run(content=CLUSTER_KEY, return_key=True)
    assert not failed and CLUSTER_KEY not in result["_raw_output"]
    assert result["invocation"]["module_args"]["content"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"


def test_state_absent_removes_with_backup_then_is_idempotent(run, key_path):
    write_key(key_path, CLUSTER_KEY)
    failed, result = run(state="absent", backup=True)
    assert not failed and result["changed"] and not key_path.exists()
    with open(result["backup_file"]) as handle:
        assert handle.read() == CLUSTER_KEY
    failed, again = run(state="absent")
    assert not failed and again["changed"] is False and again["fingerprint"] is None


def test_state_absent_in_check_mode_keeps_the_file(run, key_path):
    write_key(key_path, CLUSTER_KEY)
    failed, result = run(state="absent", check_mode=True, diff=True)
    assert not failed and result["changed"] and key_path.exists()
    assert "state: absent" in result["diff"]["after"]


def test_missing_directory_fails(run_module, tmp_path):
    failed, result = run_module(secure_cookie_key.main, dict(path=str(tmp_path / "no" / "key")))
    assert failed and "The directory %s does not exist" % (tmp_path / "no") in result["msg"]


def test_path_that_is_a_directory_fails(run, key_path):
    key_path.mkdir()
    failed, result = run()
    assert failed and "is a directory" in result["msg"]
