# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Verify the dpkg-sig signature of a .deb against one public key, with gpgv only (no dpkg-sig needed).

Posit signs its .deb files with dpkg-sig (role "builder"): the archive holds a member _gpgbuilder, a clear-signed
text listing the md5, sha1 and size of every other member (debian-binary, control.tar.*, data.tar.*). dpkg-sig is
not packaged for Debian 12, so this script does what `dpkg-sig --verify` does, with gpgv (which apt depends on):
the signature must be good for the given key, and every member must be listed with matching digests and size, and
nothing listed may be missing. Only the text gpgv verified is read (its --output), never the unsigned file.

Usage: verify_deb_signature.py PACKAGE.deb PUBLIC-KEY.asc
Prints one JSON object; exit status 0 when the signature is good, 1 otherwise (with "msg").
"""

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile

AR_MAGIC = b"!<arch>\n"
DIGEST_LINE = re.compile(r"^\s+([0-9a-f]{32}) ([0-9a-f]{40}) (\d+) (\S+)\s*$")


def ar_members(path):
    """``[(name, bytes)]`` of an ar archive (the .deb container)."""
    with open(path, "rb") as handle:
        data = handle.read()
    if not data.startswith(AR_MAGIC):
        raise ValueError("not a .deb (ar) archive")
    members, offset = [], len(AR_MAGIC)
    while offset < len(data):
        header = data[offset:offset + 60]
        if len(header) < 60 or header[58:60] != b"`\n":
            raise ValueError("damaged ar header at byte %d" % offset)
        name = header[0:16].decode("ascii", "replace").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        start = offset + 60
        members.append((name, data[start:start + size]))
        offset = start + size + (size % 2)
    return members


def dearmor(text):
    """The binary OpenPGP packets of an ASCII-armored public key block (what gpgv reads as a keyring)."""
    lines = text.strip().splitlines()
    try:
        begin = next(i for i, line in enumerate(lines) if line.startswith("-----BEGIN PGP PUBLIC KEY BLOCK"))
        end = next(i for i, line in enumerate(lines) if line.startswith("-----END PGP PUBLIC KEY BLOCK"))
    except StopIteration:
        raise ValueError("the key is not an ASCII-armored PGP public key block")
    body = lines[begin + 1:end]
    while body and ":" in body[0]:  # armor headers (Version:, Comment:)
        body.pop(0)
    body = [line for line in body if line.strip() and not line.startswith("=")]  # the CRC line starts with "="
    return base64.b64decode("".join(body))


def verify(package, key_text, gpgv="gpgv"):
    members = ar_members(package)
    signatures = [(name, content) for name, content in members if name.startswith("_gpg")]
    if not signatures:
        return {"failed": True, "msg": "%s carries no dpkg-sig signature (no _gpg member)" % package}
    contents = {name: content for name, content in members if not name.startswith("_gpg")}
    with tempfile.TemporaryDirectory() as work:
        keyring = os.path.join(work, "signing-key.gpg")
        with open(keyring, "wb") as handle:
            handle.write(dearmor(key_text))
        problems, signers = [], []
        for name, content in signatures:
            signed = os.path.join(work, name)
            verified = os.path.join(work, name + ".verified")
            with open(signed, "wb") as handle:
                handle.write(content)
            proc = subprocess.run([gpgv, "--status-fd", "1", "--keyring", keyring, "--output", verified, signed],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
            status = proc.stdout.decode("utf-8", "replace")
            fingerprints = re.findall(r"^\[GNUPG:\] VALIDSIG (\S+)", status, re.MULTILINE)
            if proc.returncode != 0 or not fingerprints:
                problems.append("%s: the signature is not good for the given key (%s)" % (
                    name, proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or "gpgv failed"))
                continue
            with open(verified, "r", encoding="utf-8", errors="replace") as handle:
                listed = {}
                for line in handle:
                    match = DIGEST_LINE.match(line)
                    if match:
                        listed[match.group(4)] = (match.group(1), match.group(2), int(match.group(3)))
            if not listed:
                problems.append("%s: the signed text lists no file digests (not a dpkg-sig signature)" % name)
                continue
            for member, content in sorted(contents.items()):
                expected = listed.get(member)
                actual = (hashlib.md5(content).hexdigest(), hashlib.sha1(content).hexdigest(), len(content))
                if expected is None:
                    problems.append("%s: member %s is not covered by the signature" % (name, member))
                elif expected != actual:
                    problems.append("%s: member %s differs from what was signed" % (name, member))
            for member in sorted(set(listed) - set(contents)):
                problems.append("%s: signed member %s is missing from the package" % (name, member))
            if not any(problem.startswith(name + ":") for problem in problems):
                signers.append({"member": name, "fingerprint": fingerprints[0]})
    if problems:
        return {"failed": True, "msg": "%s: bad signature: %s" % (os.path.basename(package), "; ".join(problems))}
    fingerprints = ", ".join(signer["fingerprint"] for signer in signers)
    return {"failed": False, "signed_by": signers,
            "msg": "%s: good signature by %s" % (os.path.basename(package), fingerprints)}


def main(argv):
    if len(argv) != 3:
        print(json.dumps({"failed": True, "msg": "usage: verify_deb_signature.py PACKAGE.deb PUBLIC-KEY.asc"}))
        return 2
    try:
        with open(argv[2], "r", encoding="utf-8") as handle:
            result = verify(argv[1], handle.read())
    except (OSError, ValueError) as error:
        result = {"failed": True, "msg": "%s: %s" % (os.path.basename(argv[1]), error)}
    print(json.dumps(result))
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
