"""Client messages of the snapshot tooling (``trioraft snapshot save``; docs/snapshots.md).

Pull-based and resumable: the client asks a node for a fresh snapshot
(``SnapshotSaveRequest`` -> ``SnapshotSaveReply``: its index, term, size and SHA-256), then
reads it in pieces (``SnapshotReadRequest`` -> ``SnapshotReadReply``, each with its CRC32),
several in flight, and checks the SHA-256 of the whole before keeping the file.

Codes 60..63 (client messages use 32 up; 52..59 are left to other client features).
"""

from __future__ import annotations

from wire.codec import register
from wire.value import value


@value
class SnapshotSaveRequest:
    """Build a snapshot of the node's applied state now (it also counts as the node's
    policy snapshot: the log is compacted to it)."""


@value
class SnapshotSaveReply:
    index: int
    term: int
    size: int
    sha256: bytes


@value
class SnapshotReadRequest:
    """Bytes ``[offset, offset + length)`` of snapshot (``index``, ``term``)."""

    index: int
    term: int
    offset: int
    length: int


@value
class SnapshotReadReply:
    offset: int
    data: bytes
    crc32: int


for _code, _cls in (
    (60, SnapshotSaveRequest),
    (61, SnapshotSaveReply),
    (62, SnapshotReadRequest),
    (63, SnapshotReadReply),
):
    register(_code, _cls)
