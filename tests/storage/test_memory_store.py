"""MemoryStore's crash model: a crash keeps what was synced plus a prefix of later writes."""

from __future__ import annotations

import pytest

from storage import MemoryStore, RaftState
from tests.storage.storage_helpers import ID, entries
from wire.errors import StorageError
from wire.messages import HardState


def test_crash_copy_drops_unsynced_appends() -> None:
    store = MemoryStore(ID)
    store.append(entries(1, 3), HardState(1, 3, 0))
    store.sync()
    store.append(entries(4, 6), HardState(2, 0, 3))
    assert store.unsynced_writes == 1
    crashed = store.crash_copy()
    assert crashed.load_raft_state() == RaftState(HardState(1, 3, 0), entries(1, 3))
    assert crashed.last_index == 3
    assert crashed.unsynced_writes == 0
    # the original is untouched, and the copy is a working store of its own
    assert store.load_raft_state().entries == entries(1, 6)
    crashed.append(entries(4, 4, term=5), None)
    assert crashed.load_raft_state().entries == entries(1, 3) + entries(4, 4, term=5)
    assert store.load_raft_state().entries == entries(1, 6)


def test_crash_copy_keeps_truncation_only_if_synced() -> None:
    store = MemoryStore(ID)
    store.append(entries(1, 5), None)
    store.sync()
    store.append(entries(2, 2, term=2), None)  # truncates 3..5, unsynced
    assert store.crash_copy().load_raft_state().entries == entries(1, 5)
    store.sync()
    assert store.crash_copy().load_raft_state().entries == entries(1, 1) + entries(2, 2, term=2)


def test_crash_copy_drops_applies_after_the_last_sync() -> None:
    store = MemoryStore(ID)
    store.append(entries(1, 3), HardState(1, 0, 3))
    store.apply([(b"a", b"1")], 1)
    store.sync()
    store.apply([(b"a", None), (b"b", b"2")], 2)
    crashed = store.crash_copy()
    assert crashed.applied_index() == 1  # goes back: the node re-applies entry 2 from the log
    assert list(crashed.scan()) == [(b"a", b"1")]


def test_crash_copy_keeps_a_prefix_of_unsynced_writes() -> None:
    store = MemoryStore(ID)
    store.append(entries(1, 1), None)
    store.sync()
    store.append(entries(2, 2), None)
    store.apply([(b"k", b"v")], 2)
    store.append(entries(3, 3), None)
    assert store.crash_copy(extra_writes=1).load_raft_state().entries == entries(1, 2)
    two = store.crash_copy(extra_writes=2)
    assert two.load_raft_state().entries == entries(1, 2)
    assert two.get(b"k") == b"v"
    assert store.crash_copy(extra_writes=9).load_raft_state().entries == entries(1, 3)
    with pytest.raises(ValueError):
        store.crash_copy(extra_writes=-1)


def test_clean_reopen_keeps_everything_but_unsynced_stays_unsynced() -> None:
    store = MemoryStore(ID, "/fake/dir")
    store.append(entries(1, 2), None)
    store.sync()
    store.append(entries(3, 3), None)
    reopened = store.reopen()
    with pytest.raises(StorageError, match=r"^data dir /fake/dir: store is closed$"):
        store.get(b"x")
    assert reopened.load_raft_state().entries == entries(1, 3)
    assert reopened.crash_copy().load_raft_state().entries == entries(1, 2)
    # a crash copy of a closed store still works: the process died after close
    assert store.crash_copy().load_raft_state().entries == entries(1, 2)
