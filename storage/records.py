"""The on-disk record format: keys and checksummed CBOR values.

Every value trioraft writes is a *frame*: a 4-byte big-endian CRC32 (``zlib.crc32``) of the
payload, then the payload, a CBOR positional array. RocksDB checksums its own blocks; this
checksum also catches a record damaged before it reached RocksDB or by a foreign writer.

Column family ``log``: key = index as 8 bytes big-endian (so byte order is index order),
value = frame([term, kind, data]). Column family ``meta``: ``format`` -> frame(version),
``identity`` -> frame([cluster_id, node_id]), ``hard_state`` -> frame([term, vote, commit]),
``applied`` -> frame(applied_index). Column family ``kv``: user keys and values, unframed.

Decoders raise ``CorruptRecord`` with the reason; the store adds the dir and the record.
"""

from __future__ import annotations

import zlib
from typing import Any

import cbor2

from wire.cbor_heads import bstr_head, uint
from wire.messages import Entry, EntryKind, HardState

INDEX_BYTES = 8
MAX_INDEX = 2 ** (8 * INDEX_BYTES) - 1

META_FORMAT = b"format"
META_IDENTITY = b"identity"
META_HARD_STATE = b"hard_state"
META_APPLIED = b"applied"

_KINDS = frozenset(int(kind) for kind in EntryKind)


class CorruptRecord(ValueError):
    """A stored record fails its checksum or does not have the expected shape."""


def index_key(index: int) -> bytes:
    return index.to_bytes(INDEX_BYTES, "big")


def key_index(key: bytes) -> int:
    if len(key) != INDEX_BYTES:
        raise CorruptRecord(f"malformed log key 0x{key.hex()}")
    return int.from_bytes(key, "big")


def frame(payload: bytes) -> bytes:
    return zlib.crc32(payload).to_bytes(4, "big") + payload


def unframe(value: bytes) -> bytes:
    if len(value) < 4:
        raise CorruptRecord("record too short")
    payload = value[4:]
    if zlib.crc32(payload) != int.from_bytes(value[:4], "big"):
        raise CorruptRecord("checksum mismatch")
    return payload


def _load(value: bytes) -> Any:
    payload = unframe(value)
    try:
        return cbor2.loads(payload)
    except Exception as exc:  # cbor2 raises several types on garbage
        raise CorruptRecord(f"undecodable CBOR ({exc})") from exc


def _ints(obj: Any, count: int) -> list[int]:
    if (
        not isinstance(obj, list)
        or len(obj) != count
        or not all(type(x) is int and x >= 0 for x in obj)
    ):
        raise CorruptRecord("malformed record")
    return obj


def encode_entry(entry: Entry) -> bytes:
    """``frame(cbor2.dumps([term, kind, data]))``, byte for byte, built from CBOR heads: every
    node encodes every entry it stores, and this is a third cheaper."""
    data = entry.data
    return frame(
        b"".join((b"\x83", uint(entry.term), uint(entry.kind), bstr_head(len(data)), data))
    )


def decode_entry(index: int, value: bytes) -> Entry:
    obj = _load(value)
    if not isinstance(obj, list) or len(obj) != 3:
        raise CorruptRecord("malformed record")
    term, kind, data = obj
    if type(term) is not int or term < 0 or kind not in _KINDS or type(data) is not bytes:
        raise CorruptRecord("malformed record")
    return Entry(term, index, EntryKind(kind), data)


def encode_hard_state(hs: HardState) -> bytes:
    return frame(cbor2.dumps([hs.term, hs.vote, hs.commit]))


def decode_hard_state(value: bytes) -> HardState:
    term, vote, commit = _ints(_load(value), 3)
    return HardState(term, vote, commit)


def encode_int(value: int) -> bytes:
    return frame(cbor2.dumps(value))


def decode_int(value: bytes) -> int:
    return _ints([_load(value)], 1)[0]


def encode_identity(cluster_id: int, node_id: int) -> bytes:
    return frame(cbor2.dumps([cluster_id, node_id]))


def decode_identity(value: bytes) -> tuple[int, int]:
    cluster_id, node_id = _ints(_load(value), 2)
    return cluster_id, node_id
