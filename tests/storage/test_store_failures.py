"""Failing writes at the storage boundary: ``RocksStore.recover`` and ``FaultyStore``.

The contract (storage.base): after a failed append, apply or sync, writes are refused until
``recover()`` succeeds; reads keep working; after recovery the caller rewrites what it had
not synced. RocksStore failures are simulated here by a DB wrapper that raises what
rocksdict raises on a full disk (the real full disk: tests/durability/test_failing_disk.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from storage import FaultyStore, Identity, MemoryStore, RocksStore, open_store
from tests.storage.storage_helpers import ID, entries
from wire.errors import StorageError
from wire.messages import HardState

ENOSPC = "IO error: No space left on device: While appending to file: db/000004.log"


class FailingDB:
    """Stands in for the store's Rdict: ``write``/``flush_wal`` raise, the rest passes."""

    def __init__(self, db: Any, *, write: bool = False, sync: bool = False) -> None:
        self.db, self.fail_write, self.fail_sync = db, write, sync

    def write(self, batch: Any, opts: Any) -> None:
        if self.fail_write:
            raise Exception(ENOSPC)
        self.db.write(batch, opts)

    def flush_wal(self, sync: bool) -> None:
        if self.fail_sync:
            raise Exception("IO error: Input/output error: fsync db/000004.log")
        self.db.flush_wal(sync)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


def break_db(store: RocksStore, **fail: bool) -> None:
    h = store._h
    assert h is not None
    h.db = FailingDB(h.db, **fail)


def test_failed_append_refuses_writes_until_recover(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = open_store(str(data), ID)
    store.append(entries(1, 3), HardState(1, 3, 0))
    store.apply([(b"k", b"v")], 1)
    store.sync()
    break_db(store, write=True)
    with pytest.raises(StorageError, match=f"^data dir {data}: append failed: {ENOSPC}$"):
        store.append(entries(4, 5), None)
    assert store.failure is not None
    assert store.last_index == 3
    assert "failed" in repr(store)
    with pytest.raises(StorageError, match="writes refused until recovered"):
        store.apply([(b"k", b"w")], 2)
    with pytest.raises(StorageError, match="writes refused until recovered"):
        store.sync()
    assert store.get(b"k") == b"v"  # reads still work
    assert [e.index for e in store.load_raft_state().entries] == [1, 2, 3]
    store.recover()  # reopens: the wrapper is gone with the old handles
    assert store.failure is None
    store.recover()  # nothing to do now
    store.append(entries(4, 5), None)
    store.sync()
    store.close()
    with open_store(str(data), ID) as again:
        assert [e.index for e in again.load_raft_state().entries] == [1, 2, 3, 4, 5]
        assert again.get(b"k") == b"v" and again.applied_index() == 1


def test_failed_sync_needs_recover_then_a_rewrite(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "data"), ID)
    store.append(entries(1, 2), HardState(1, 3, 0))
    store.sync()
    break_db(store, sync=True)
    store.append(entries(3, 4), HardState(2, 3, 0))  # written, not yet durable
    with pytest.raises(StorageError, match="sync failed: IO error: Input/output error"):
        store.sync()
    with pytest.raises(StorageError, match="writes refused until recovered"):
        store.sync()  # a second fsync could claim pages the kernel dropped: refused
    store.recover()
    store.append(entries(3, 4), HardState(2, 3, 0))  # the rewrite is idempotent
    store.sync()
    state = store.load_raft_state()
    assert [e.index for e in state.entries] == [1, 2, 3, 4]
    assert state.hard_state == HardState(2, 3, 0)
    store.close()


def test_recover_waits_for_a_running_sync(tmp_path: Path) -> None:
    with open_store(str(tmp_path / "data"), ID) as store:
        break_db(store, write=True)
        with pytest.raises(StorageError):
            store.append(entries(1, 1), None)
        with store._sync_lock:  # as while a worker thread is in sync()
            with pytest.raises(StorageError, match="cannot recover while a sync is running"):
                store.recover()
        store.recover()
        store.append(entries(1, 1), None)


def test_closing_a_failed_store_frees_the_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = open_store(str(data), ID)
    break_db(store, write=True)
    with pytest.raises(StorageError):
        store.apply([(b"a", b"1")], 1)
    store.close()
    open_store(str(data), ID).close()


def test_faulty_store_fails_writes_until_healed() -> None:
    inner = MemoryStore(Identity(1, 1))
    store = FaultyStore(inner)
    store.append(entries(1, 2), HardState(1, 1, 0))
    store.sync()
    store.fail("append", "sync", reason="No space left on device")
    with pytest.raises(StorageError, match="append failed: injected fault: No space left"):
        store.append(entries(3, 3), None)
    assert inner.last_index == 2  # a failed append writes nothing
    with pytest.raises(StorageError, match="writes refused until recovered"):
        store.apply([(b"k", b"v")], 1)
    assert store.broken and store.failing and store.refused == 1
    with pytest.raises(StorageError, match="still failing"):
        store.recover()
    assert store.get(b"k") is None and store.load_raft_state().entries[-1].index == 2
    store.heal()
    store.recover()
    store.append(entries(3, 3), None)
    store.sync()
    assert inner.crash_copy().last_index == 3
    assert store.injected["append"] == 1


def test_faulty_store_transient_sync_failure_leaves_writes_unsynced() -> None:
    inner = MemoryStore(Identity(1, 1))
    store = FaultyStore(inner)
    store.fail("sync", times=1)
    store.append(entries(1, 2), HardState(1, 1, 0))
    with pytest.raises(StorageError, match="sync failed"):
        store.sync()
    assert inner.crash_copy().last_index == 0  # nothing durable: a crash loses it
    assert not store.failing and store.broken
    store.recover()
    store.append(entries(1, 2), HardState(1, 1, 0))
    store.sync()
    assert inner.crash_copy().last_index == 2
    with pytest.raises(ValueError, match="operations must be among"):
        store.fail("read")
