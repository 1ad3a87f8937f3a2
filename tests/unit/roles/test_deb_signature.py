"""product_common's dpkg-sig verifier (files/verify_deb_signature.py) against packages signed here the way dpkg-sig
signs (a clear-signed _gpgbuilder member listing md5, sha1 and size of every member), with a throw-away key."""

import hashlib
import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

COLLECTION = pathlib.Path(__file__).resolve().parents[3]
SCRIPT = COLLECTION / "roles" / "product_common" / "files" / "verify_deb_signature.py"

pytestmark = pytest.mark.skipif(not (shutil.which("gpg") and shutil.which("gpgv")), reason="needs gpg and gpgv")


def load_verifier():
    spec = importlib.util.spec_from_file_location("verify_deb_signature", str(SCRIPT))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ar_bytes(members):
    data = b"!<arch>\n"
    for name, content in members:
        header = "%-16s%-12s%-6s%-6s%-8s%-10s" % (name, 0, 0, 0, 100644, len(content))
        data += header.encode("ascii") + b"`\n" + content + (b"\n" if len(content) % 2 else b"")
    return data


def gpg(home, *args, input=None):
    proc = subprocess.run(["gpg", "--homedir", str(home), "--batch", "--yes", "--pinentry-mode", "loopback",
                           "--passphrase", ""] + list(args), input=input, capture_output=True, check=False)
    # gpg's own words, not only its exit status, when it fails (its agent is started on demand).
    assert proc.returncode == 0, "gpg %s failed (rc=%s): %s" % (
        " ".join(args), proc.returncode, proc.stderr.decode(errors="replace"))
    return proc


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Two throw-away signing keys: the vendor's stand-in and another one."""
    made = {}
    for name in ("vendor", "other"):
        home = tmp_path_factory.mktemp("gnupg-" + name)
        os.chmod(str(home), 0o700)
        # Key generation needs gpg-agent. Started explicitly; where it still cannot run (ansible-test units'
        # sandbox: "No agent running"), the module is skipped there and scripts/test runs it under plain pytest.
        subprocess.run(["gpgconf", "--homedir", str(home), "--launch", "gpg-agent"], capture_output=True,
                       check=False)
        made_key = subprocess.run(["gpg", "--homedir", str(home), "--batch", "--yes", "--pinentry-mode", "loopback",
                                   "--passphrase", "", "--quick-gen-key", "%s <%s@example.invalid>" % (name, name),
                                   "ed25519", "sign", "never"], capture_output=True, check=False)
        if made_key.returncode != 0 and b"No agent running" in made_key.stderr:
            pytest.skip("gpg-agent cannot run here: %s" % made_key.stderr.decode(errors="replace").strip())
        assert made_key.returncode == 0, made_key.stderr.decode(errors="replace")
        made[name] = {"home": home, "public": gpg(home, "--armor", "--export").stdout.decode()}
    return made


MEMBERS = [("debian-binary", b"2.0\n"), ("control.tar.gz", b"control" * 50), ("data.tar.xz", b"data" * 999)]


def signed_deb(path, key, members=None, listed=None, role="builder"):
    members = MEMBERS if members is None else members
    listed = members if listed is None else listed
    digests = "Version: 4\nSigner: \nDate: Thu Jan  1 00:00:00 2026\nRole: %s\nFiles: \n" % role
    for name, content in listed:
        md5, sha1 = hashlib.md5(content).hexdigest(), hashlib.sha1(content).hexdigest()
        digests += "\t%s %s %d %s\n" % (md5, sha1, len(content), name)
    signature = gpg(key["home"], "--clearsign", input=digests.encode()).stdout
    path.write_bytes(ar_bytes(list(members) + [("_gpg" + role, signature)]))
    return path


def run(package, public_key, tmp_path):
    key_file = tmp_path / "key.asc"
    key_file.write_text(public_key)
    proc = subprocess.run([sys.executable, str(SCRIPT), str(package), str(key_file)], capture_output=True, text=True,
                          check=False)
    return proc.returncode, json.loads(proc.stdout)


def test_a_good_signature_passes_and_names_the_key(tmp_path, keys):
    package = signed_deb(tmp_path / "rstudio-pm_2023.12.0-13_amd64.deb", keys["vendor"])
    rc, result = run(package, keys["vendor"]["public"], tmp_path)
    assert rc == 0, result
    assert result["msg"].startswith("rstudio-pm_2023.12.0-13_amd64.deb: good signature by ")
    assert result["signed_by"][0]["member"] == "_gpgbuilder"


def test_another_key_is_refused(tmp_path, keys):
    package = signed_deb(tmp_path / "p.deb", keys["other"])
    rc, result = run(package, keys["vendor"]["public"], tmp_path)
    assert rc == 1
    assert "the signature is not good for the given key" in result["msg"]


def test_a_changed_member_is_refused(tmp_path, keys):
    tampered = [MEMBERS[0], MEMBERS[1], ("data.tar.xz", b"evil" * 999)]
    package = signed_deb(tmp_path / "p.deb", keys["vendor"], members=tampered, listed=MEMBERS)
    rc, result = run(package, keys["vendor"]["public"], tmp_path)
    assert rc == 1
    assert "member data.tar.xz differs from what was signed" in result["msg"]


def test_an_added_or_missing_member_is_refused(tmp_path, keys):
    added = signed_deb(tmp_path / "a.deb", keys["vendor"], members=MEMBERS + [("extra", b"x")], listed=MEMBERS)
    rc, result = run(added, keys["vendor"]["public"], tmp_path)
    assert rc == 1 and "member extra is not covered by the signature" in result["msg"]
    missing = signed_deb(tmp_path / "m.deb", keys["vendor"], members=MEMBERS[:2], listed=MEMBERS)
    rc, result = run(missing, keys["vendor"]["public"], tmp_path)
    assert rc == 1 and "signed member data.tar.xz is missing from the package" in result["msg"]


def test_an_unsigned_package_is_refused(tmp_path, keys):
    package = tmp_path / "u.deb"
    package.write_bytes(ar_bytes(MEMBERS))
    rc, result = run(package, keys["vendor"]["public"], tmp_path)
    assert rc == 1 and "carries no dpkg-sig signature" in result["msg"]


def test_text_outside_the_signed_part_is_ignored(tmp_path, keys):
    """Digest lines appended after the signature block are not verified by gpgv, so they do not count."""
    package = signed_deb(tmp_path / "p.deb", keys["vendor"])
    members = load_verifier().ar_members(str(package))
    signature = dict(members)["_gpgbuilder"] + b"\t%s %s 4 extra\n" % (
        hashlib.md5(b"evil").hexdigest().encode(), hashlib.sha1(b"evil").hexdigest().encode())
    rebuilt = [(name, content) for name, content in members if name != "_gpgbuilder"] + [("extra", b"evil")]
    package.write_bytes(ar_bytes(rebuilt + [("_gpgbuilder", signature)]))
    rc, result = run(package, keys["vendor"]["public"], tmp_path)
    assert rc == 1 and "member extra is not covered by the signature" in result["msg"]


def test_a_deb_built_by_dpkg_deb_verifies(tmp_path, keys):
    """A real .deb (dpkg-deb), signed as dpkg-sig does: the ar parsing matches dpkg's own container."""
    if not shutil.which("dpkg-deb"):
        pytest.skip("needs dpkg-deb")
    root = tmp_path / "root"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text("Package: positops-test\nVersion: 1.0\nArchitecture: all\n"
                                             "Maintainer: test <t@example.invalid>\nDescription: test\n")
    (root / "usr" / "share" / "positops").mkdir(parents=True)
    (root / "usr" / "share" / "positops" / "file.txt").write_text("x" * 1001)
    deb = tmp_path / "built.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)], capture_output=True, check=True)
    members = load_verifier().ar_members(str(deb))
    assert members[0][0] == "debian-binary"
    package = signed_deb(tmp_path / "signed.deb", keys["vendor"], members=members)
    rc, result = run(package, keys["vendor"]["public"], tmp_path)
    assert rc == 0, result
    listing = subprocess.run(["dpkg-deb", "--contents", str(package)], capture_output=True, text=True, check=True)
    assert "file.txt" in listing.stdout


def signature_task(package, key):
    return [{"name": "Verify", "ansible.builtin.include_role": {
        "name": "positops.ha.product_common", "tasks_from": "package_signature"},
        "vars": {"product_common_package_path": str(package), "product_common_package_signing_key": key}}]


@pytest.mark.skipif(not os.path.exists("/usr/bin/python3"), reason="the entry point runs the script with /usr/bin/python3")
def test_the_package_signature_entry_point_passes_a_good_package_and_refuses_another_key(tmp_path, keys, run_playbook):
    from .conftest import failure_messages
    package = signed_deb(tmp_path / "rstudio-pm_2023.12.0-13_amd64.deb", keys["vendor"])
    good = run_playbook(signature_task(package, keys["vendor"]["public"]))
    assert good.returncode == 0, good.stdout[-3000:] + good.stderr
    bad = run_playbook(signature_task(package, keys["other"]["public"]))
    assert bad.returncode == 2
    [message] = failure_messages(bad.json)
    assert message.startswith("localhost: rstudio-pm_2023.12.0-13_amd64.deb: bad signature: _gpgbuilder: the "
                              "signature is not good for the given key")
    assert "The package is not installed" in message


def test_without_a_key_nothing_is_verified(tmp_path, run_playbook):
    result = run_playbook(signature_task(tmp_path / "absent.deb", ""))
    assert result.returncode == 0, result.stdout[-3000:]
