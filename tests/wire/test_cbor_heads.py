"""Heads built by hand are cbor2's, byte for byte, at every length boundary."""

from __future__ import annotations

import zlib

import cbor2
import pytest

from storage.records import decode_entry, encode_entry
from wire.cbor_heads import ARRAY, bstr_head, head, uint
from wire.messages import Entry, EntryKind

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


@pytest.mark.parametrize("term", [0, 23, 24, 2**32, 2**64 - 1])
@pytest.mark.parametrize("size", [0, 23, 24, 255, 256, 65536])
def test_log_records_are_built_as_cbor2_would(term: int, size: int) -> None:
    """``encode_entry`` builds the stored record from heads; it must stay cbor2's bytes."""
    for kind in EntryKind:
        entry = Entry(term, 7, kind, b"d" * size)
        payload = cbor2.dumps([term, int(kind), entry.data])
        assert encode_entry(entry) == zlib.crc32(payload).to_bytes(4, "big") + payload
        assert decode_entry(7, encode_entry(entry)) == entry
