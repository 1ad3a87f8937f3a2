# -*- coding: utf-8 -*-
# Copyright: positops.ha contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!
"""Pure helpers for shared secret files: fingerprint, strength estimate, generation, permission checks.

Nothing here logs or returns key material; callers get fingerprints and numbers.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import string
import zlib

ABSOLUTE_MIN_BITS = 128  # Workbench's documented floor for secure-cookie-key
# zlib adds a 2-byte header and a 4-byte Adler-32 checksum around the deflate stream.
_ZLIB_FRAMING_BYTES = 6

_HEX = frozenset(string.hexdigits.encode())
_CHARACTER_CLASSES = (
    (frozenset(string.digits.encode()), 10),
    (frozenset(string.ascii_lowercase.encode()), 26),
    (frozenset(string.ascii_uppercase.encode()), 26),
    (frozenset(string.punctuation.encode() + b" "), 33),
)


def key_material(data):
    """The key without surrounding white space (the line break ``echo`` adds); this is what is compared,
    as Workbench itself trims the file."""
    return data.strip()


def fingerprint(data):
    """SHA-256 (hex) of the key material: equal on two nodes exactly when their keys are equal."""
    return hashlib.sha256(key_material(data)).hexdigest()


def alphabet_size(data):
    """Size of the smallest usual alphabet that covers ``data`` (hex, or a union of character classes)."""
    symbols = set(data)
    # Hex in one letter case (a mixed-case string is counted by character classes below).
    single_case = not (symbols & set(b"abcdef") and symbols & set(b"ABCDEF"))
    if single_case and symbols <= _HEX:
        return 16
    if single_case and symbols <= _HEX | {ord("-")}:
        return 17  # UUIDs
    size = 0
    covered = set()
    for members, count in _CHARACTER_CLASSES:
        if symbols & members:
            size += count
            covered |= members
    if symbols - covered:
        return 256  # bytes outside printable ASCII: count them as arbitrary bytes
    return size


def strength(data):
    """Estimate the entropy of a key, in bits, two ways; return ``(alphabet_bits, compressed_bits)``.

    ``alphabet_bits`` is what a random string of this length over its alphabet would hold: it catches keys
    that are too short. ``compressed_bits`` is the size deflate squeezes the key to: it catches repetition and
    patterns (``aaaa...``, ``abab...``, a phrase repeated). A random key scores at least its alphabet bits on both.
    """
    material = key_material(data)
    if not material:
        return 0, 0
    alphabet_bits = int(len(material) * math.log2(alphabet_size(material)))
    compressed_bits = max(0, (len(zlib.compress(material, 9)) - _ZLIB_FRAMING_BYTES) * 8)
    return alphabet_bits, compressed_bits


def weakness(data, min_bits):
    """None when the key holds at least ``min_bits`` by both estimates, else a sentence saying why not."""
    if not key_material(data):
        return "it is empty"
    alphabet_bits, compressed_bits = strength(data)
    if alphabet_bits < min_bits:
        material = key_material(data)
        return ("it is too short: %d characters over an alphabet of %d symbols hold at most %d bits, and at least "
                "%d are required" % (len(material), alphabet_size(material), alphabet_bits, min_bits))
    if compressed_bits < min_bits:
        return ("it has too little entropy: it is repetitive or patterned and compresses to %d bits, below the "
                "%d required" % (compressed_bits, min_bits))
    return None


def generate(min_bits):
    """A random hex key with at least ``min_bits`` bits of entropy, with a trailing newline."""
    return (secrets.token_hex((min_bits + 7) // 8) + "\n").encode()


def parse_mode(value):
    """Turn a mode option (octal string such as ``"0600"`` or an integer) into an int; raise ValueError."""
    if isinstance(value, bool):
        raise ValueError("mode must be an octal string such as '0600', not a boolean")
    if isinstance(value, int):
        mode = value
    else:
        text = str(value).strip()
        if not text or any(char not in "01234567" for char in text) or len(text) > 4:
            raise ValueError("mode %r is not an octal mode such as '0600' (symbolic modes are not accepted)"
                             % (value,))
        mode = int(text, 8)
    if not 0 <= mode <= 0o7777:
        raise ValueError("mode %r is out of range" % (value,))
    return mode


def mode_exposure(mode):
    """A sentence when ``mode`` grants group or others any access to the key (Workbench needs 0600), else None."""
    if mode & 0o077:
        return ("mode %04o gives the group or others access to the key; use 0600 (Workbench refuses any other "
                "mode for secure-cookie-key)" % mode)
    if not mode & 0o400:
        return "mode %04o does not let the owner read the key; use 0600" % mode
    return None
