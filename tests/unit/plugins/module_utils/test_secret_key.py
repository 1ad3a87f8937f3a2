"""Strength estimate, fingerprint, generation and mode checks for shared keys."""

import base64
import hashlib
import random
import uuid

import pytest

from ansible_collections.positops.ha.plugins.module_utils._secret_key import (
    DEFAULT_MIN_BITS, GENERATED_BITS, alphabet_size, fingerprint, generate, key_material, mode_exposure, parse_mode,
    period, strength, weakness)

RNG = random.Random(20261123)  # fixed seed: the "random" keys below are the same on every run


def random_bytes(count):
    return bytes(RNG.getrandbits(8) for unused in range(count))


def test_fingerprint_ignores_surrounding_white_space_only():
    assert fingerprint(b"abc\n") == fingerprint(b"abc") == hashlib.sha256(b"abc").hexdigest()
    assert fingerprint(b"abc\r\n") == fingerprint(b" abc\t") == fingerprint(b"abc")
    assert fingerprint(b"a bc") != fingerprint(b"abc")
    assert key_material(b"k\n\n") == b"k"


@pytest.mark.parametrize("key, size", [
    (b"0123456789abcdef", 16), (b"0123456789ABCDEF", 16), (b"0a1B", 62), (str(uuid.UUID(int=7)).encode(), 17),
    (b"abc", 16), (b"xyz", 26), (b"xyz123", 36), (b"xY3", 62), (b"xY3!", 95), (b"\x00\xff", 256),
])
def test_alphabet_size(key, size):
    assert alphabet_size(key) == size


# Keys made the usual ways must pass at the strength they really have.
@pytest.mark.parametrize("make, bits", [
    (lambda: random_bytes(16).hex().encode(), 128),
    (lambda: random_bytes(32).hex().encode(), 256),
    (lambda: random_bytes(512).hex().encode(), 4096),
    (lambda: base64.b64encode(random_bytes(32)), 256),
    (lambda: str(uuid.UUID(bytes=random_bytes(16), version=4)).encode() + b"\n", 128),
    # uuid(1)'s default: version 1, a time stamp and the host's MAC address (what `echo \`uuid\`` writes).
    (lambda: str(uuid.UUID(fields=(RNG.getrandbits(32), RNG.getrandbits(16), 0x1000 | RNG.getrandbits(12),
                                   0x80 | RNG.getrandbits(6), RNG.getrandbits(8), 0x0242AC120002))).encode(), 128),
    (lambda: str(uuid.UUID(bytes=random_bytes(16), version=4)).upper().encode(), 128),
    (lambda: base64.b64encode(random_bytes(16)), 128),
])
def test_random_keys_pass(make, bits):
    for unused in range(500):
        key = make()
        assert weakness(key, bits) is None, (key, strength(key))


def test_generated_keys_pass_their_own_check_and_differ():
    for bits in (128, 200, 256, 1024):
        key = generate(bits)
        assert key.endswith(b"\n")
        assert len(key_material(key)) == 2 * ((bits + 7) // 8)
        assert weakness(key, bits) is None
    assert generate(256) != generate(256)


def test_defaults_accept_workbench_keys_and_generate_256_bits():
    assert (DEFAULT_MIN_BITS, GENERATED_BITS) == (128, 256)


@pytest.mark.parametrize("key, unit", [
    (b"abcabcabc", 3), (b"abcabcab", 3), (b"abcd", 4), (b"aaaa", 1), (b"a", 1), (b"", 0), (b"abab" * 8 + b"x", 33),
])
def test_period(key, unit):
    assert period(key) == unit


@pytest.mark.parametrize("key, reason", [
    # The product would take each of these (16 characters or more); none holds 128 bits.
    (b"0123456789abcdef", "too short"),
    (b"a" * 40, "uses only 1 distinct character"),
    (b"abbaabababbbaaabbbabababbbabababbbaabbbaab", "uses only 2 distinct characters"),
    (b"00000000-0000-0000-0000-000000000000", "uses only 2 distinct characters"),
    (b"0123456789abcdef" * 2, "repeats a 16-character pattern, which holds at most 64 bits"),
    (b"correcthorsebatterystaple" * 2, "repeats a 25-character pattern"),
    (b"abcdefghijklmnopqrstuvwxyz0123456789", "repetitive or patterned"),
    (b"aaaaaaaabbbbbbbbccccccccdddddddd1234", "repetitive or patterned"),
])
def test_weak_keys_at_the_default_minimum(key, reason):
    problem = weakness(key, DEFAULT_MIN_BITS)
    assert problem is not None and reason in problem
    assert "too short" in reason or problem.startswith("it has too little entropy")
    assert key.decode() not in problem


@pytest.mark.parametrize("key, reason", [
    (b"", "it is empty"),
    (b"\n", "it is empty"),
    (b"0123456789abcdef0123456789abcdef", "too short"),  # 32 hex = 128 bits < 256
    (b"a" * 80, "too little entropy"),
    (b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", "too little entropy"),
    (b"ab" * 60, "too little entropy"),
    (b"0123456789abcdef" * 6, "too little entropy"),
    (b"correcthorsebatterystaple" * 4, "too little entropy"),
])
def test_weak_keys_are_refused_with_the_reason(key, reason):
    problem = weakness(key, 256)
    assert problem is not None and reason in problem
    assert not key.strip() or key.decode().strip() not in problem  # never echoes the key


@pytest.mark.parametrize("value, mode", [("0600", 0o600), ("600", 0o600), ("0400", 0o400), (384, 0o600),
                                         ("0", 0)])
def test_parse_mode(value, mode):
    assert parse_mode(value) == mode


@pytest.mark.parametrize("value, message", [
    ("u=rw", "not an octal mode"), ("0800", "not an octal mode"), ("", "not an octal mode"),
    ("06000", "not an octal mode"), (0o10000, "out of range"), (-1, "out of range"), (True, "boolean"),
])
def test_parse_mode_refuses(value, message):
    with pytest.raises(ValueError, match=message):
        parse_mode(value)


@pytest.mark.parametrize("mode, problem", [
    (0o600, None), (0o400, None), (0o700, None),
    (0o640, "group or others"), (0o604, "group or others"), (0o620, "group or others"), (0o601, "group or others"),
    (0o200, "does not let the owner read"), (0o000, "does not let the owner read"),
])
def test_mode_exposure(mode, problem):
    found = mode_exposure(mode)
    if problem is None:
        assert found is None
    else:
        assert problem in found and "%04o" % mode in found
