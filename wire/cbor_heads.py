"""CBOR heads by hand, for the few hot records that are built without ``cbor2.dumps``.

A head is a data item's type and length (RFC 8949 §3): the major type in the top three
bits, then the argument in its shortest form, as ``cbor2.dumps`` writes it. Building a small
fixed-shape record from heads is 2-4x cheaper than ``cbor2.dumps`` on the equivalent list,
and byte for byte the same (tests check both against ``cbor2``).
"""

from __future__ import annotations

from typing import Final

UINT: Final = 0x00
BYTES: Final = 0x40
ARRAY: Final = 0x80

_SMALL: Final = {major: tuple(bytes((major | n,)) for n in range(24)) for major in (0, 0x40)}


def head(major: int, n: int) -> bytes:
    """The head of an item of ``major`` type with argument ``n`` (0 <= n < 2**64)."""
    if n < 24:
        return _SMALL[major][n] if major in _SMALL else bytes((major | n,))
    if n < 0x100:
        return bytes((major | 24, n))
    if n < 0x10000:
        return bytes((major | 25,)) + n.to_bytes(2, "big")
    if n < 0x100000000:
        return bytes((major | 26,)) + n.to_bytes(4, "big")
    return bytes((major | 27,)) + n.to_bytes(8, "big")


def uint(n: int) -> bytes:
    """``cbor2.dumps(n)`` for an int 0 <= n < 2**64."""
    return head(UINT, n)


def bstr_head(n: int) -> bytes:
    """The head of a byte string of length ``n``."""
    return head(BYTES, n)
