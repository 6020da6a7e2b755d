"""RocksDB's write-ahead log (WAL) as trioraft relies on it: recovery mode, torn tails.

trioraft opens RocksDB in WAL recovery mode ``kTolerateCorruptedTailRecords``, not RocksDB's
default ``kPointInTimeRecovery``:

- Point-in-time recovery stops replaying at the first damaged WAL record and silently drops
  *everything after it*, synced records included. A single flipped byte in the middle of
  the WAL would make a node forget entries it had synced and acknowledged (measured:
  ``tests/durability/test_corruption.py``). Raft cannot tolerate that.
- Tolerating only an *incomplete* record at the end of a WAL file is safe: the node syncs
  (``flush_wal(True)``) after writing a whole batch, so a record whose bytes stop before
  its declared length was never synced, hence never acknowledged. Any other damage (a
  checksum mismatch anywhere, the last record included) fails the open.

RocksDB drops such a tail without saying so; ``torn_tails`` finds it first (walking the
record headers of the WAL files' last blocks, no checksums) so the store can log what was
dropped. ``readable_log_end`` opens a damaged DB read-only in point-in-time mode (nothing
is written) to tell the operator which log index the damage follows.

WAL format (RocksDB ``db/log_format.h``): 32 KiB blocks; each record is a 7-byte header
(masked CRC32C: 4, length: 2 little-endian, type: 1; recyclable types add a 4-byte log
number) then ``length`` payload bytes; records never cross a block boundary; a block's
last < 7 bytes are zero padding. A batch larger than a block is split into FIRST, MIDDLE...,
LAST fragments.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from rocksdict import AccessType, DBRecoveryMode, Options, Rdict

from storage.rocks_options import raw_options

BLOCK_SIZE = 32768
HEADER_SIZE = 7
RECYCLABLE_HEADER_SIZE = 11
TAIL_WINDOW = 32 * BLOCK_SIZE  # how much of each WAL file's end is walked
REOPEN_HEADROOM = 1 << 20  # free bytes wanted beyond the WAL's size before a reopen

_ZERO, _FULL, _FIRST, _MIDDLE, _LAST = 0, 1, 2, 3, 4
_RECYCLABLE = {5: _FULL, 6: _FIRST, 7: _MIDDLE, 8: _LAST}
_RECYCLABLE_OTHER = 11  # recyclable "user-defined timestamp size" record


def recovery_options(options: Options) -> Options:
    """Set the WAL recovery mode trioraft relies on (see the module docstring)."""
    options.set_wal_recovery_mode(DBRecoveryMode.tolerate_corrupted_tail_records())
    return options


@dataclass(frozen=True, slots=True)
class TornTail:
    """An incomplete write at the end of a WAL file: RocksDB drops it on open."""

    file: str
    offset: int
    size: int

    def describe(self, root: str) -> str:
        name = os.path.relpath(self.file, root)
        return f"{self.size} bytes at offset {self.offset} of {name}"


def wal_files(db_path: str) -> list[str]:
    """The WAL files of a RocksDB directory, oldest first."""
    try:
        names = os.listdir(db_path)
    except OSError:
        return []
    logs = [n for n in names if n.endswith(".log") and n[:-4].isdigit()]
    return [os.path.join(db_path, n) for n in sorted(logs, key=lambda n: int(n[:-4]))]


def torn_tails(db_path: str) -> list[TornTail]:
    """Every WAL file that ends in an incomplete record (unreadable files are skipped)."""
    found = []
    for path in wal_files(db_path):
        try:
            tail = torn_tail(path)
        except OSError:
            continue
        if tail is not None:
            found.append(tail)
    return found


def torn_tail(path: str) -> TornTail | None:
    """The incomplete record (or fragmented batch) at the end of one WAL file, if any.

    Walks record headers from a block boundary up to ``TAIL_WINDOW`` bytes before the end.
    Headers that make no sense (a record crossing a block) end the walk with None: that is
    damage, not a torn write, and RocksDB itself reports it.
    """
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        start = max(0, size - TAIL_WINDOW) // BLOCK_SIZE * BLOCK_SIZE
        f.seek(start)
        data = f.read()
    pos = 0
    batch_start: int | None = None  # offset of an unfinished FIRST fragment
    while pos < len(data):
        left_in_block = BLOCK_SIZE - (start + pos) % BLOCK_SIZE
        if left_in_block < HEADER_SIZE:
            pos += left_in_block  # block trailer padding
            continue
        if len(data) - pos < HEADER_SIZE:  # the header itself is cut
            if not any(data[pos:]):
                break
            return _torn(path, start, batch_start if batch_start is not None else pos, size)
        length = int.from_bytes(data[pos + 4 : pos + 6], "little")
        kind = data[pos + 6]
        if kind == _ZERO and length == 0:
            break  # preallocated, never written
        recyclable = kind in _RECYCLABLE or kind == _RECYCLABLE_OTHER
        end = pos + (RECYCLABLE_HEADER_SIZE if recyclable else HEADER_SIZE) + length
        if end > len(data):
            return _torn(path, start, batch_start if batch_start is not None else pos, size)
        if end - pos > left_in_block:
            return None
        base = _RECYCLABLE.get(kind, kind)
        if base == _FIRST:
            batch_start = pos
        elif base in (_FULL, _LAST):
            batch_start = None
        pos = end
    if batch_start is not None:  # a batch split over blocks whose LAST fragment is missing
        return _torn(path, start, batch_start, size)
    return None


def _torn(path: str, start: int, pos: int, size: int) -> TornTail:
    return TornTail(path, start + pos, size - start - pos)


def missing_room(path: str, db_path: str) -> str | None:
    """Why the file system of ``path`` lacks room to reopen the DB after ENOSPC, or None.

    A reopen replays the WAL into memtables and flushes them to table files: it needs
    about the WAL's size, plus some headroom for the manifest and the new WAL."""
    wal_bytes = 0
    for name in wal_files(db_path):
        try:
            wal_bytes += os.path.getsize(name)
        except OSError:
            pass
    try:
        st = os.statvfs(path)
    except OSError as exc:
        return f"cannot stat the file system ({exc.strerror})"
    free, wanted = st.f_bavail * st.f_frsize, wal_bytes + REOPEN_HEADROOM
    return f"{free} bytes free, waiting for {wanted}" if free < wanted else None


def readable_log_end(db_path: str, log_cf: str) -> int | None:
    """After an open failed on WAL damage: the last log index RocksDB can still read.

    Opens the DB read-only (nothing is written, no lock is taken) in point-in-time mode,
    which replays the WAL up to the first damaged record. None if even that fails.
    """
    options = raw_options()
    options.set_wal_recovery_mode(DBRecoveryMode.point_in_time())
    try:
        names = [n for n in Rdict.list_cf(db_path, raw_options()) if n != "default"]
        db = Rdict(
            db_path,
            options,
            column_families={n: raw_options() for n in names},
            access_type=AccessType.read_only(False),
        )
    except Exception:
        return None
    try:
        it = db.get_column_family(log_cf).iter()
        it.seek_to_last()
        key: bytes | None = it.key() if it.valid() else None
        del it
        return 0 if key is None else int.from_bytes(key, "big")
    except Exception:
        return None
    finally:
        db.close()
