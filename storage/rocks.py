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
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from weakref import WeakSet

from rocksdict import ColumnFamily, Options, Rdict, RdictIter, ReadOptions, WriteBatch, WriteOptions

from storage.base import FORMAT_VERSION, Identity, KvOp, RaftState
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
from storage.rules import check_append, check_identity, check_wanted_identity
from wire.errors import StorageError
from wire.messages import Entry, HardState

LOCK_NAME = "trioraft.lock"
DB_NAME = "db"
COLUMN_FAMILIES = ("log", "meta", "kv")

# Data dirs (real paths) open in this process; flock alone would report "another process".
_open_dirs: set[str] = set()
_open_dirs_lock = threading.Lock()


def _raw_options() -> Options:
    return Options(raw_mode=True)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _in_use(path: str) -> StorageError:
    return StorageError(f"data dir {path} is in use by another process (lock {path}/{LOCK_NAME})")


def _already_open(path: str) -> StorageError:
    return StorageError(f"data dir {path} is already open in this process")


def _translate(path: str, what: str, exc: BaseException) -> StorageError:
    """Map a rocksdict (or OS) exception to StorageError naming the dir."""
    text = _one_line(exc)
    if "lock hold by current process" in text:
        return _already_open(path)
    if "While lock file" in text:
        return _in_use(path)
    return StorageError(f"data dir {path}: {what} failed: {text}")


def _prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix`` (None: no bound)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


@dataclass(slots=True)
class _Handles:
    """The open DB and its column families (views for reads, handles for batches).

    ``release`` unsets every field: a stale reference (say, a frame kept alive by a
    traceback) must not keep the views, which keep the RocksDB lock after ``db.close()``.
    """

    db: Rdict
    log: Rdict
    meta: Rdict
    kv: Rdict
    log_cf: ColumnFamily
    meta_cf: ColumnFamily
    kv_cf: ColumnFamily

    def release(self) -> Rdict:
        db = self.db
        del self.db, self.log, self.meta, self.kv, self.log_cf, self.meta_cf, self.kv_cf
        return db


class _Scan(Iterator[tuple[bytes, bytes]]):
    """A forward scan over one prefix of ``kv``, on the consistent view taken at creation.

    Holds a RocksDB iterator, which keeps the DB (and its lock) alive: the store releases
    every unfinished scan on close, after which the scan raises StorageError.
    """

    __slots__ = ("__weakref__", "_closed", "_it", "_prefix", "_read_opts", "_store")

    def __init__(
        self, store: RocksStore, it: RdictIter, read_opts: ReadOptions, prefix: bytes
    ) -> None:
        self._store = store
        self._it: RdictIter | None = it
        self._read_opts = read_opts  # keep alive as long as the iterator (it holds the bound)
        self._prefix = prefix
        self._closed = False

    def __next__(self) -> tuple[bytes, bytes]:
        it = self._it
        if it is None:
            if self._closed:
                raise self._store._closed_error()
            raise StopIteration
        try:
            if it.valid():
                key: bytes = it.key()
                if key.startswith(self._prefix):
                    value: bytes = it.value()
                    it.next()
                    return key, value
            else:
                it.status()  # raises if the iterator stopped on an error, not at the end
        except Exception as exc:
            self.release()
            del it  # a kept traceback must not keep the iterator (and the DB lock)
            raise _translate(self._store.path, "scan", exc) from exc
        self.release()
        raise StopIteration

    def release(self, *, closed: bool = False) -> None:
        self._it = None
        self._closed = closed


class RocksStore:
    """The durable ``Store``. Open with ``open_store``; close (or use ``with``) when done."""

    def __init__(
        self, path: str, identity: Identity, handles: _Handles, lock_fd: int, real: str
    ) -> None:
        self._path = path
        self._identity = identity
        self._h: _Handles | None = handles
        self._lock_fd = lock_fd
        self._real = real
        self._write_opts = WriteOptions()
        self._write_opts.sync = False  # durability comes from sync() = flush_wal(True)
        self._scans: WeakSet[_Scan] = WeakSet()
        self._last_index = 0
        self._applied = 0

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
            raise self._error("reading the log", exc) from exc
        finally:
            del it
        self._last_index = entries[-1].index if entries else 0
        return RaftState(hard_state, entries)

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
        try:
            h.db.write(batch, self._write_opts)
        except Exception as exc:
            raise self._error("append", exc) from exc
        self._last_index = new_last

    def sync(self) -> None:
        """Make every earlier write durable: ``flush_wal(True)``; releases the GIL."""
        h = self._live()
        try:
            h.db.flush_wal(True)
        except Exception as exc:
            raise self._error("sync", exc) from exc

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
        try:
            h.db.write(batch, self._write_opts)
        except Exception as exc:
            raise self._error("apply", exc) from exc
        self._applied = applied_index

    def get(self, key: bytes) -> bytes | None:
        h = self._live()
        try:
            value: bytes | None = h.kv.get(key)
        except Exception as exc:
            raise self._error("get", exc) from exc
        return value

    def scan(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """See ``Store.scan``. The view is fixed when ``scan`` is called (a RocksDB iterator
        pins it); later writes are not seen."""
        h = self._live()
        read_opts = ReadOptions()
        # Only an upper bound: rocksdict 0.3.29's set_iterate_lower_bound acts as an upper
        # bound, so the lower end is a seek.
        end = _prefix_end(prefix)
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
        scan = _Scan(self, it, read_opts, prefix)
        self._scans.add(scan)
        return scan

    def close(self) -> None:
        """Release scans, column families, the DB and then the lock. Idempotent."""
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
            raise self._error("close", exc) from exc
        finally:
            del db
            _unlock(self._lock_fd, self._real)

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
        state = "closed" if self._h is None else f"last_index={self._last_index}"
        return f"<RocksStore {self._path} node {self._identity.node_id} {state}>"

    # --- internals ---

    def _live(self) -> _Handles:
        h = self._h
        if h is None:
            raise self._closed_error()
        return h

    def _closed_error(self) -> StorageError:
        return StorageError(f"data dir {self._path}: store is closed")

    def _error(self, what: str, exc: BaseException) -> StorageError:
        return _translate(self._path, what, exc)

    def _corrupt(self, what: str, exc: CorruptRecord) -> StorageError:
        return StorageError(f"data dir {self._path}: {what} is corrupt ({exc})")

    def _read_meta(self, h: _Handles, key: bytes) -> bytes | None:
        try:
            value: bytes | None = h.meta.get(key)
        except Exception as exc:
            raise self._error(f"reading {key.decode()}", exc) from exc
        return value

    def _read_hard_state(self, h: _Handles) -> HardState:
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

    def _load_meta(self, wanted: Identity, create: bool) -> None:
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

    def _initialize(self, h: _Handles, identity: Identity, create: bool) -> None:
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


def _lock(path: str, real: str) -> int:
    """Register ``real`` as open here and take the flock; returns the lock fd."""
    with _open_dirs_lock:
        if real in _open_dirs:
            raise _already_open(path)
        _open_dirs.add(real)
    lock_path = os.path.join(path, LOCK_NAME)
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        _forget(real)
        raise StorageError(f"data dir {path}: cannot open {lock_path}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        _forget(real)
        if isinstance(exc, BlockingIOError):
            raise _in_use(path) from exc
        raise StorageError(f"data dir {path}: cannot lock {lock_path}: {exc.strerror}") from exc
    return fd


def _forget(real: str) -> None:
    with _open_dirs_lock:
        _open_dirs.discard(real)


def _unlock(fd: int, real: str) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
        _forget(real)


def _open_db(path: str, create: bool) -> _Handles:
    db_path = os.path.join(path, DB_NAME)
    exists = os.path.exists(os.path.join(db_path, "CURRENT"))
    if not exists and not create:
        raise StorageError(f"data dir {path} holds no trioraft data (no {db_path})")
    try:
        names = set(COLUMN_FAMILIES)
        if exists:  # every existing family must be opened, even ones we do not know
            names.update(Rdict.list_cf(db_path, _raw_options()))
        names.discard("default")
        options = _raw_options()
        options.create_if_missing(create)
        options.create_missing_column_families(True)
        db = Rdict(db_path, options, column_families={n: _raw_options() for n in names})
    except Exception as exc:
        raise _translate(path, "opening RocksDB", exc) from exc
    try:
        return _Handles(
            db,
            db.get_column_family("log"),
            db.get_column_family("meta"),
            db.get_column_family("kv"),
            db.get_column_family_handle("log"),
            db.get_column_family_handle("meta"),
            db.get_column_family_handle("kv"),
        )
    except Exception as exc:
        db.close()
        raise _translate(path, "opening column families", exc) from exc


def open_store(path: str, identity: Identity, *, create: bool = True) -> RocksStore:
    """Open (or, with ``create``, create) the data dir ``path`` for ``identity``.

    Takes an exclusive lock on ``path/trioraft.lock`` first and holds it until ``close``.
    Raises StorageError (one line, naming the dir) if the dir is in use, belongs to another
    node or cluster, has a newer format, or cannot be opened; ConfigError for a bad identity.
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
    fd = _lock(path, real)
    try:
        handles = _open_db(path, create)
    except BaseException:
        _unlock(fd, real)
        raise
    store = RocksStore(path, identity, handles, fd, real)
    try:
        store._load_meta(identity, create)
    except BaseException:
        store.close()
        raise
    return store
