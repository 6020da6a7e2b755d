"""How the state machine lays out its data in the store's ``kv`` column family.

Three namespaces, told apart by the first byte, so that no user key can reach the others::

    b"k" + user key          value envelope: >BQQQ (format 1, create_revision, mod_revision,
                             version) followed by the value bytes
    b"s" + session id (u64)  a client session: CBOR [last_seq, last_stamp, result]
    b"m" + name              state-machine metadata: b"mlayout" (layout version, u64),
                             b"mclock" (log time in ms, u64), b"mmembership" (the
                             cluster membership as of the applied index, JSON: see
                             trioraft.kv.membership)

Revisions are log indexes. The envelope is a fixed 25-byte header rather than CBOR: it is
decoded on every read, and a struct unpack is several times cheaper.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Final

from storage.base import Store
from wire.client_messages import KeyValue
from wire.errors import StorageError

USER: Final = b"k"
SESSION: Final = b"s"
META_LAYOUT: Final = b"mlayout"
META_CLOCK: Final = b"mclock"
META_MEMBERSHIP: Final = b"mmembership"  # trioraft.kv.membership: membership at applied
LAYOUT_VERSION: Final = 1

_USER_END: Final = b"l"  # the first key after the user namespace
_ENVELOPE: Final = struct.Struct(">BQQQ")
_ENVELOPE_FORMAT: Final = 1
_U64: Final = struct.Struct(">Q")
HEADER_BYTES: Final = _ENVELOPE.size


def user_key(key: bytes) -> bytes:
    return USER + key


def session_key(session_id: int) -> bytes:
    return SESSION + _U64.pack(session_id)


def session_id_of(skey: bytes) -> int:
    return int(_U64.unpack(skey[len(SESSION) :])[0])


def pack_u64(n: int) -> bytes:
    return _U64.pack(n)


def unpack_u64(raw: bytes) -> int:
    return int(_U64.unpack(raw)[0])


def pack_value(value: bytes, create_revision: int, mod_revision: int, version: int) -> bytes:
    return _ENVELOPE.pack(_ENVELOPE_FORMAT, create_revision, mod_revision, version) + value


def unpack_value(key: bytes, raw: bytes) -> KeyValue:
    """The ``KeyValue`` of user ``key`` from its stored envelope."""
    try:
        fmt, create, mod, version = _ENVELOPE.unpack_from(raw)
    except struct.error:
        raise StorageError(f"key {key!r:.60}: stored value has no envelope") from None
    if fmt != _ENVELOPE_FORMAT:
        raise StorageError(f"key {key!r:.60}: unknown value envelope format {fmt}")
    return KeyValue(key, raw[HEADER_BYTES:], create, mod, version)


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix`` (None: no bound)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def scan_users(store: Store, start: bytes, end: bytes | None) -> Iterator[tuple[bytes, bytes]]:
    """User keys in ``[start, end)`` in byte order, as (user key, stored envelope).

    ``Store.scan`` can only start at a prefix, so this scans the longest prefix that the two
    bounds share and skips keys below ``start``: cost grows with the keys skipped (see
    docs/architecture.md).
    """
    lo = USER + start
    hi = USER + end if end is not None else _USER_END
    if hi <= lo:
        return
    n = 0
    while n < min(len(lo), len(hi)) and lo[n] == hi[n]:
        n += 1
    base = lo[:n]
    for skey, raw in store.scan(base):
        if skey < lo:
            continue
        if skey >= hi:
            return
        yield skey[len(USER) :], raw
