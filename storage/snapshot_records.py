"""Meta records of snapshots and log compaction (docs/snapshots.md).

Both live in the ``meta`` column family as checksummed frames (``storage.records``):

- ``log_start`` -> frame(CBOR ``[index, term, [voters...], membership]``): the last
  compacted log entry (absent: the log starts at index 1) and the configuration there
  (``membership``: encoded, or empty). The stored log holds ``index + 1`` onwards.
- ``installing`` -> the same record for a snapshot install that began and has not
  finished; a reopened node redoes it from the snapshot file before starting.
"""

from __future__ import annotations

import cbor2

from storage.records import CorruptRecord, frame, unframe
from wire.messages import SnapshotMeta

META_LOG_START = b"log_start"
META_INSTALLING = b"installing"


def encode_snapshot_meta(meta: SnapshotMeta) -> bytes:
    return frame(cbor2.dumps([meta.index, meta.term, list(meta.voters), meta.membership]))


def decode_snapshot_meta(value: bytes) -> SnapshotMeta:
    payload = unframe(value)
    try:
        obj = cbor2.loads(payload)
    except Exception as exc:  # cbor2 raises several types on garbage
        raise CorruptRecord(f"undecodable CBOR ({exc})") from exc
    if (
        not isinstance(obj, list)
        or len(obj) != 4
        or not isinstance(obj[2], list)
        or type(obj[3]) is not bytes
    ):
        raise CorruptRecord("malformed record")
    index, term, voters, membership = obj
    numbers = [index, term, *voters]
    if not all(type(x) is int and x >= 0 for x in numbers):
        raise CorruptRecord("malformed record")
    return SnapshotMeta(index, term, tuple(voters), membership)
