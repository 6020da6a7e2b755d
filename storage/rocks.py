"""``RocksStore``: the ``Store`` on one RocksDB (rocksdict, raw mode).

Layout of a data dir ``D``::

    D/trioraft.lock   flock(LOCK_EX) held while open: one process per data dir
    D/db/             the RocksDB, column families ``log``, ``meta``, ``kv``

Record formats are in ``storage.records``. ``append`` and ``apply`` each write one unsynced
WriteBatch on the caller's thread (fast, but it holds the GIL); ``sync`` is
``flush_wal(True)``, which releases the GIL, so the node runs it in a worker thread and
every batch written before it rides on the same fsync (group commit). A synced ``write``
would hold the GIL through the fsync and stall the event loop (see FINDINGS.md).

Every rocksdict exception is turned into ``StorageError`` naming the data dir here.
Threads: ``sync`` may run in a worker thread while the owner thread appends, applies or
reads; ``close`` must not run while a ``sync`` is in flight.

Damage and failures (policy and reasoning: docs/durability.md):

- RocksDB replays its WAL in ``kTolerateCorruptedTailRecords`` mode (``storage.wal``): an
  incomplete record at the end of the WAL was never synced, hence never acknowledged, and
  is dropped (the store logs that it was, and after which log index); any other damage
  fails the open with ``DataCorruption`` naming the dir and the last readable log index.
- A failed ``append``, ``apply`` or ``sync`` (disk full, I/O error) leaves RocksDB refusing
  writes and the fate of unsynced data unknown (a failed fsync may have dropped dirty
  pages). The store then refuses writes until ``recover()`` reopens the DB, which replays
  the WAL and starts a new one; the caller rewrites what it could not sync. Reads keep
  working until then.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from types import TracebackType
from weakref import WeakSet

from rocksdict import Rdict, ReadOptions, WriteBatch, WriteOptions

from storage.base import FORMAT_VERSION, DataCorruption, Identity, KvOp, RaftState
from storage.lock import LOCK_NAME, lock, unlock
from storage.records import (
    META_APPLIED,
    META_FORMAT,
    META_HARD_STATE,
    META_IDENTITY,
    CorruptRecord,
    decode_entry,
    decode_hard_state,
    decode_identity,
    decode_int,
    encode_entry,
    encode_hard_state,
    encode_identity,
    encode_int,
    index_key,
    key_index,
)
from storage.rocks_db import DB_NAME, Handles, one_line, open_db, translate
from storage.rocks_snapshot import RocksSnapshotMixin
from storage.rules import check_append, check_identity, check_wanted_identity
from storage.scan import Scan, prefix_end
from storage.wal import TornTail, missing_room
from wire.errors import StorageError
from wire.messages import Entry, HardState

__all__ = ["DB_NAME", "LOCK_NAME", "RocksStore", "open_store"]

log = logging.getLogger(__name__)


class RocksStore(RocksSnapshotMixin):
    """The durable ``Store`` (and ``SnapshotStore``, see ``storage.rocks_snapshot``). Open
    with ``open_store``; close (or use ``with``) when done."""

    def __init__(
        self, path: str, identity: Identity, handles: Handles, lock_fd: int, real: str
    ) -> None:
        self._path = path
        self._identity = identity
        self._h: Handles | None = handles
        self._lock_fd = lock_fd
        self._real = real
        self._write_opts = WriteOptions()
        self._write_opts.sync = False  # durability comes from sync() = flush_wal(True)
        self._scans: WeakSet[Scan] = WeakSet()
        self._last_index = 0
        self._applied = 0
        # A write or sync failed: writes are refused until recover() reopens the DB.
        self._failure: StorageError | None = None
        self._sync_lock = threading.Lock()  # held by sync() (a worker thread) and recover()
        self.dropped_tails: list[TornTail] = []  # incomplete WAL writes dropped at open

    @classmethod
    def open(cls, path: str, identity: Identity, *, create: bool = True) -> RocksStore:
        return open_store(path, identity, create=create)

    # --- Store ---

    @property
    def path(self) -> str:
        return self._path

    @property
    def identity(self) -> Identity:
        return self._identity

    @property
    def last_index(self) -> int:
        """Index of the last stored log entry (0 when the log is empty); no I/O."""
        return self._last_index

    def load_raft_state(self) -> RaftState:
        """Read and verify the hard state and the whole log.

        Raises StorageError naming the dir (and the log index) on a checksum mismatch, a
        malformed record or a gap in the log.
        """
        h = self._live()
        hard_state = self._read_hard_state(h)
        start = self.log_start()
        entries: list[Entry] = []
        try:
            it = h.log.iter()
        except Exception as exc:
            raise self._error("reading the log", exc) from exc
        # Iterators keep the DB lock: never leave one in a frame a traceback may keep.
        try:
            it.seek_to_first()
            while it.valid():
                key: bytes = it.key()
                value: bytes = it.value()
                entries.append(self._decode_log_record(key, value, entries))
                it.next()
            it.status()
        except StorageError:
            raise
        except Exception as exc:
            where = f"after entry {entries[-1].index}" if entries else "from its first entry"
            raise DataCorruption(
                f"data dir {self._path}: log is unreadable {where} ({one_line(exc)})"
            ) from exc
        finally:
            del it
        first = start.index + 1 if start is not None else 1
        if entries and entries[0].index != first:
            raise StorageError(
                f"data dir {self._path}: log is not contiguous "
                f"(entry {entries[0].index} follows the log start {first - 1})"
            )
        self._last_index = entries[-1].index if entries else first - 1
        return RaftState(hard_state, entries, start)

    def append(self, entries: Sequence[Entry], hard_state: HardState | None) -> None:
        """See ``Store.append``. Conflict truncation is one range delete in the same batch."""
        h = self._live()
        if not entries and hard_state is None:
            return
        batch = WriteBatch(raw_mode=True)
        new_last = self._last_index
        if entries:
            check_append(entries, self._last_index)
            for entry in entries:
                batch.put(index_key(entry.index), encode_entry(entry), h.log_cf)
            new_last = entries[-1].index
            if entries[0].index <= self._last_index and new_last < self._last_index:
                batch.delete_range(
                    index_key(new_last + 1), index_key(self._last_index + 1), h.log_cf
                )
        if hard_state is not None:
            batch.put(META_HARD_STATE, encode_hard_state(hard_state), h.meta_cf)
        self._check_writable()
        try:
            h.db.write(batch, self._write_opts)
        except Exception as exc:
            raise self._failed("append", exc) from exc
        self._last_index = new_last

    def sync(self) -> None:
        """Make every earlier write durable: ``flush_wal(True)``; releases the GIL.

        After a failure nothing written since the last good sync is known to be on disk:
        retrying the fsync could report success for pages the kernel already dropped, so
        every later ``sync`` fails until ``recover()`` (and the caller rewrites)."""
        with self._sync_lock:
            h = self._live()
            self._check_writable()
            try:
                h.db.flush_wal(True)
            except Exception as exc:
                raise self._failed("sync", exc) from exc

    def applied_index(self) -> int:
        self._live()
        return self._applied

    def apply(self, ops: Sequence[KvOp], applied_index: int) -> None:
        """See ``Store.apply``: ops in order plus the applied index, one unsynced batch."""
        h = self._live()
        batch = WriteBatch(raw_mode=True)
        for key, value in ops:
            if value is None:
                batch.delete(key, h.kv_cf)
            else:
                batch.put(key, value, h.kv_cf)
        batch.put(META_APPLIED, encode_int(applied_index), h.meta_cf)
        self._check_writable()
        try:
            h.db.write(batch, self._write_opts)
        except Exception as exc:
            raise self._failed("apply", exc) from exc
        self._applied = applied_index

    @property
    def failure(self) -> StorageError | None:
        """The write or sync failure that ``recover()`` has not cleared yet, if any."""
        return self._failure

    def recover(self) -> None:
        """After a failed write or sync: reopen the DB so writes can succeed again.

        No-op when nothing failed. Reopening replays the WAL as RocksDB sees it (an
        incomplete last record, the failed write's, is dropped) and starts a new WAL;
        whatever the caller could not sync must be written again. Raises StorageError
        (writes stay refused, reads keep working) while a sync is in flight or the disk
        that filled up has not got room for the reopen yet; if the reopen itself fails,
        reads fail too until a later ``recover()`` succeeds.
        """
        failure = self._failure
        if failure is None:
            return
        if not self._sync_lock.acquire(blocking=False):
            raise StorageError(f"data dir {self._path}: cannot recover while a sync is running")
        try:
            if self._h is not None:
                if "No space left" in str(failure):
                    short = missing_room(self._path, os.path.join(self._path, DB_NAME))
                    if short:
                        raise StorageError(f"data dir {self._path}: {short} to reopen")
                self._close_db(quiet=True)
            try:
                self._h, tails = open_db(self._path, create=False)
                self._load_meta(self._identity, create=False)
            except StorageError as exc:
                self._close_db(quiet=True)
                kind = DataCorruption if isinstance(exc, DataCorruption) else StorageError
                raise kind(f"{exc} (reopening after: {failure})") from exc
            self._failure = None
            self._report_dropped(tails, "it is the write that failed")
            log.warning("data dir %s: reopened after a failed write; writes resume", self._path)
        finally:
            self._sync_lock.release()

    def get(self, key: bytes) -> bytes | None:
        h = self._live()
        try:
            value: bytes | None = h.kv.get(key)
        except Exception as exc:
            raise self._error("get", exc) from exc
        return value

    def scan(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """See ``Store.scan``. The view is fixed when ``scan`` is called (a RocksDB iterator
        pins it): keys written or deleted later are not seen. A value overwritten in place
        later may be (``rocks_options.kv_options``): consume a scan before the next ``apply``, as
        every caller does (a range read runs in one synchronous call)."""
        h = self._live()
        read_opts = ReadOptions()
        # Only an upper bound: rocksdict 0.3.29's set_iterate_lower_bound acts as an upper
        # bound, so the lower end is a seek.
        end = prefix_end(prefix)
        if end is not None:
            read_opts.set_iterate_upper_bound(end)
        try:
            it = h.kv.iter(read_opts)
        except Exception as exc:
            raise self._error("scan", exc) from exc
        try:
            it.seek(prefix)
        except Exception as exc:
            del it
            raise self._error("scan", exc) from exc
        scan = Scan(self, it, read_opts, prefix)
        self._scans.add(scan)
        return scan

    def close(self) -> None:
        """Release scans, column families, the DB and then the lock. Idempotent.

        After an unrecovered write failure, RocksDB's report of that failure on close is
        not raised again."""
        if self._lock_fd < 0:
            return
        try:
            self._close_db(quiet=self._failure is not None)
        finally:
            fd, self._lock_fd = self._lock_fd, -1
            unlock(fd, self._real)

    def __enter__(self) -> RocksStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._lock_fd < 0 else f"last_index={self._last_index}"
        if self._failure is not None and self._lock_fd >= 0:
            state += " failed"
        return f"<RocksStore {self._path} node {self._identity.node_id} {state}>"

    # --- internals ---

    def _live(self) -> Handles:
        h = self._h
        if h is None:
            raise self._closed_error()
        return h

    def _closed_error(self) -> StorageError:
        if self._lock_fd >= 0 and self._failure is not None:
            return StorageError(
                f"data dir {self._path}: unavailable until a reopen succeeds ({self._failure})"
            )
        return StorageError(f"data dir {self._path}: store is closed")

    def _error(self, what: str, exc: BaseException) -> StorageError:
        return translate(self._path, what, exc)

    def _failed(self, what: str, exc: BaseException) -> StorageError:
        """Record a failed write or sync: later writes wait for ``recover()``."""
        error = self._error(what, exc)
        self._failure = error
        return error

    def _check_writable(self) -> None:
        if self._failure is not None:
            raise StorageError(
                f"data dir {self._path}: writes refused until recovered ({self._failure})"
            )

    def _close_db(self, *, quiet: bool) -> None:
        h = self._h
        if h is None:
            return
        self._h = None
        for scan in list(self._scans):
            scan.release(closed=True)
        db = h.release()  # the column-family views keep the DB lock until released
        del h
        try:
            db.close()
        except Exception as exc:
            if not quiet:
                raise self._error("close", exc) from exc
            log.debug("data dir %s: close after a failure: %s", self._path, one_line(exc))
        finally:
            del db

    def _report_dropped(self, tails: list[TornTail], why: str) -> None:
        """Log each incomplete WAL write RocksDB dropped while opening (see storage.wal)."""
        for tail in tails:
            log.warning(
                "data dir %s: dropped an incomplete write after log entry %d (%s): %s, "
                "never synced, so nothing in it was acknowledged",
                self._path,
                self._last_index,
                tail.describe(self._path),
                why,
            )
        self.dropped_tails.extend(tails)

    def _corrupt(self, what: str, exc: CorruptRecord) -> StorageError:
        return DataCorruption(f"data dir {self._path}: {what} is corrupt ({exc})")

    def _read_meta(self, h: Handles, key: bytes) -> bytes | None:
        try:
            value: bytes | None = h.meta.get(key)
        except Exception as exc:
            raise self._error(f"reading {key.decode()}", exc) from exc
        return value

    def _read_hard_state(self, h: Handles) -> HardState:
        value = self._read_meta(h, META_HARD_STATE)
        if value is None:
            return HardState()
        try:
            return decode_hard_state(value)
        except CorruptRecord as exc:
            raise self._corrupt("the hard state", exc) from exc

    def _decode_log_record(self, key: bytes, value: bytes, before: list[Entry]) -> Entry:
        try:
            index = key_index(key)
        except CorruptRecord as exc:
            raise self._corrupt("the log", exc) from exc
        if before and index != before[-1].index + 1:
            raise StorageError(
                f"data dir {self._path}: log is not contiguous "
                f"(entry {index} follows entry {before[-1].index})"
            )
        try:
            return decode_entry(index, value)
        except CorruptRecord as exc:
            raise self._corrupt(f"log entry {index}", exc) from exc

    def _edge_key(self, view: Rdict, *, last: bool) -> bytes | None:
        """The first (or last) key of a column family, None if it is empty."""
        try:
            it = view.iter()
        except Exception as exc:
            del view  # see load_raft_state: no DB objects in frames a traceback keeps
            raise self._error("reading", exc) from exc
        try:
            if last:
                it.seek_to_last()
            else:
                it.seek_to_first()
            key: bytes | None = it.key() if it.valid() else None
            it.status()
        except Exception as exc:
            raise self._error("reading", exc) from exc
        finally:
            del it, view
        return key

    def _load_meta(self, wanted: Identity, create: bool, adopt_cluster: bool = False) -> None:
        """Check (or, for a new dir, record) the identity; read last and applied index."""
        h = self._live()
        fmt = self._read_meta(h, META_FORMAT)
        if fmt is None:
            self._initialize(h, wanted, create)
        else:
            try:
                version = decode_int(fmt)
                raw_identity = self._read_meta(h, META_IDENTITY)
                if raw_identity is None:
                    raise CorruptRecord("missing")
                cluster_id, node_id = decode_identity(raw_identity)
            except CorruptRecord as exc:
                raise self._corrupt("the identity record", exc) from exc
            stored = Identity(cluster_id, node_id, version)
            if adopt_cluster:  # a node that joined its cluster: the dir knows the cluster id
                wanted = Identity(stored.cluster_id, wanted.node_id, wanted.format_version)
            check_identity(self._path, stored, wanted)
            self._identity = stored
        applied = self._read_meta(h, META_APPLIED)
        try:
            self._applied = 0 if applied is None else decode_int(applied)
        except CorruptRecord as exc:
            raise self._corrupt("the applied index", exc) from exc
        last_key = self._edge_key(h.log, last=True)
        try:
            self._last_index = 0 if last_key is None else key_index(last_key)
        except CorruptRecord as exc:
            raise self._corrupt("the log", exc) from exc
        if last_key is None:
            start = self.log_start()
            self._last_index = start.index if start is not None else 0

    def _initialize(self, h: Handles, identity: Identity, create: bool) -> None:
        if not create:
            raise StorageError(f"data dir {self._path} holds no trioraft data (create=False)")
        log_used = self._edge_key(h.log, last=False) is not None
        if log_used or self._edge_key(h.kv, last=False) is not None:
            raise StorageError(
                f"data dir {self._path}: identity record missing but the "
                f"{'log' if log_used else 'kv'} column family has data"
            )
        batch = WriteBatch(raw_mode=True)
        batch.put(META_FORMAT, encode_int(FORMAT_VERSION), h.meta_cf)
        batch.put(META_IDENTITY, encode_identity(identity.cluster_id, identity.node_id), h.meta_cf)
        try:
            h.db.write(batch, self._write_opts)
            h.db.flush_wal(True)
        except Exception as exc:
            raise self._error("initializing", exc) from exc
        self._identity = identity


def open_store(
    path: str, identity: Identity, *, create: bool = True, adopt_cluster: bool = False
) -> RocksStore:
    """Open (or, with ``create``, create) the data dir ``path`` for ``identity``.

    Takes an exclusive lock on ``path/trioraft.lock`` first and holds it until ``close``.
    Raises StorageError (one line, naming the dir) if the dir is in use, belongs to another
    node or cluster, has a newer format, or cannot be opened; ConfigError for a bad identity.
    ``adopt_cluster``: accept the cluster id the dir records (a node that joined a running
    cluster got its id from there); the node id must still match.
    """
    check_wanted_identity(identity)
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        if os.path.exists(path):
            raise StorageError(f"data dir {path} is not a directory")
        if not create:
            raise StorageError(f"data dir {path} does not exist")
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"data dir {path} cannot be created: {exc.strerror}") from exc
    real = os.path.realpath(path)
    fd = lock(path, real)
    try:
        handles, tails = open_db(path, create)
    except BaseException:
        unlock(fd, real)
        raise
    store = RocksStore(path, identity, handles, fd, real)
    try:
        store._load_meta(identity, create, adopt_cluster)
    except BaseException:
        store.close()
        raise
    store._report_dropped(tails, "a crash interrupted it")
    return store
