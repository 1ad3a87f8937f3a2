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
# What a key must hold unless the task asks for more: Workbench's floor, which the keys Posit tells operators to
# make (`echo $(uuid)`, seed 004) and `openssl rand -hex 16` meet.
DEFAULT_MIN_BITS = 128
# What a generated key holds (or min_bits, when larger): no reason to generate the bare minimum.
GENERATED_BITS = 256
# A random key of 128 bits or more in any usual alphabet shows far more distinct characters than this (a random
# 32-digit hex key has fewer than 6 about once in 3 * 10^12); fewer means a pattern such as "abbaabab...".
MIN_DISTINCT_CHARACTERS = 6
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


def _compressed_bits(material):
    return max(0, (len(zlib.compress(material, 9)) - _ZLIB_FRAMING_BYTES) * 8)


def period(material):
    """Length of the shortest unit whose repetition makes ``material`` (its own length when it repeats none)."""
    border = [0] * len(material)
    length = 0
    for index in range(1, len(material)):
        while length and material[index] != material[length]:
            length = border[length - 1]
        if material[index] == material[length]:
            length += 1
        border[index] = length
    return len(material) - (border[-1] if material else 0)


def strength(data):
    """Estimate the entropy of a key, in bits, two ways; return ``(alphabet_bits, compressed_bits)``.

    ``alphabet_bits`` is what a random string of this length over its alphabet would hold: it catches keys
    that are too short. ``compressed_bits`` is the size deflate squeezes the key to, or the steps between its
    characters to, whichever is smaller: it catches repetition and patterns (``aaaa...``, ``abab...``, a phrase
    repeated, ``abcdef...``, ``0123...`` twice). A random key scores at least its alphabet bits on both.
    """
    material = key_material(data)
    if not material:
        return 0, 0
    alphabet_bits = int(len(material) * math.log2(alphabet_size(material)))
    steps = bytes((after - before) % 256 for before, after in zip(material, material[1:]))
    compressed_bits = min(_compressed_bits(material), _compressed_bits(steps) + 8)
    return alphabet_bits, compressed_bits


def weakness(data, min_bits):
    """None when the key holds at least ``min_bits`` by every estimate, else a sentence saying why not.

    Too short: its length over its alphabet holds fewer bits. Too little entropy: it uses fewer than
    :data:`MIN_DISTINCT_CHARACTERS` characters, repeats a unit too short to hold ``min_bits``, or compresses
    (itself or the steps between its characters) below ``min_bits``. Never quotes the key.
    """
    material = key_material(data)
    if not material:
        return "it is empty"
    alphabet_bits, compressed_bits = strength(data)
    alphabet = alphabet_size(material)
    if alphabet_bits < min_bits:
        return ("it is too short: %d characters over an alphabet of %d symbols hold at most %d bits, and at least "
                "%d are required" % (len(material), alphabet, alphabet_bits, min_bits))
    distinct = len(set(material))
    if distinct < MIN_DISTINCT_CHARACTERS:
        return ("it has too little entropy: it uses only %d distinct character%s, where a random key of this "
                "length uses many more" % (distinct, "" if distinct == 1 else "s"))
    unit = period(material)
    unit_bits = int(unit * math.log2(alphabet))
    if unit * 2 <= len(material) and unit_bits < min_bits:
        return ("it has too little entropy: it repeats a %d-character pattern, which holds at most %d bits, below "
                "the %d required" % (unit, unit_bits, min_bits))
    if compressed_bits < min_bits:
        return ("it has too little entropy: it is repetitive or patterned and compresses to %d bits, below the "
                "%d required" % (compressed_bits, min_bits))
    return None


def generate(bits):
    """A random hex key with at least ``bits`` bits of entropy, with a trailing newline."""
    return (secrets.token_hex((bits + 7) // 8) + "\n").encode()


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
