"""Heads built by hand are cbor2's, byte for byte, at every length boundary."""

from __future__ import annotations

import cbor2
import pytest

from wire.cbor_heads import ARRAY, bstr_head, head, uint

BOUNDARIES = [0, 1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1]


@pytest.mark.parametrize("n", BOUNDARIES)
def test_uint_is_cbor2s(n: int) -> None:
    assert uint(n) == cbor2.dumps(n)


@pytest.mark.parametrize("n", [n for n in BOUNDARIES if n <= 70000])
def test_byte_string_head_is_cbor2s(n: int) -> None:
    data = b"x" * n
    assert bstr_head(n) + data == cbor2.dumps(data)


def test_long_byte_string_heads_take_the_4_and_8_byte_forms() -> None:
    # beyond what a test can allocate: the 4- and 8-byte length forms of RFC 8949
    assert bstr_head(0xFFFFFFFF) == b"\x5a\xff\xff\xff\xff"
    assert bstr_head(1 << 32) == b"\x5b" + (1 << 32).to_bytes(8, "big")


@pytest.mark.parametrize("n", [0, 3, 23, 24, 300])
def test_array_head_is_cbor2s(n: int) -> None:
    assert head(ARRAY, n) + b"".join(uint(i) for i in range(n)) == cbor2.dumps(list(range(n)))
