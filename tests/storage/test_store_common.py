"""Behaviour both stores share: every test runs against MemoryStore and RocksStore."""

from __future__ import annotations

import pytest

from storage import Identity, RaftState
from tests.storage.storage_helpers import ID, Stores, entries
from wire.errors import ConfigError, StorageError
from wire.messages import Entry, EntryKind, HardState


def test_new_store_is_empty(stores: Stores) -> None:
    store = stores.open()
    assert store.load_raft_state() == RaftState(HardState(), [])
    assert store.applied_index() == 0
    assert store.get(b"k") is None
    assert list(store.scan()) == []
    assert store.identity == ID
    assert store.path == str(stores.path)


def test_append_load_round_trip(stores: Stores) -> None:
    store = stores.open()
    log = [*entries(1, 3), Entry(2, 4, EntryKind.NOOP, b""), Entry(2, 5, EntryKind.CONFIG, b"c")]
    store.append(log[:2], HardState(1, 2, 0))
    store.append(log[2:], HardState(2, 0, 3))
    assert store.load_raft_state() == RaftState(HardState(2, 0, 3), log)


def test_append_without_hard_state_keeps_it(stores: Stores) -> None:
    store = stores.open()
    store.append([], HardState(5, 1, 0))
    store.append(entries(1, 2), None)
    store.append([], None)  # a no-op
    state = store.load_raft_state()
    assert state.hard_state == HardState(5, 1, 0)
    assert state.entries == entries(1, 2)


def test_hard_state_alone(stores: Stores) -> None:
    store = stores.open()
    store.append([], HardState(7, 2, 0))
    store.append([], HardState(8, 0, 0))
    assert store.load_raft_state() == RaftState(HardState(8, 0, 0), [])


def test_conflict_truncation_shorter_run(stores: Stores) -> None:
    """§5.3: an append at a lower index drops every old entry after the new run."""
    store = stores.open()
    store.append(entries(1, 10, term=1), None)
    store.append(entries(4, 5, term=2), None)
    assert store.load_raft_state().entries == entries(1, 3, term=1) + entries(4, 5, term=2)
    # and appending on after the truncation continues the log, with no resurrected entries
    store.append(entries(6, 6, term=2), None)
    assert store.load_raft_state().entries == entries(1, 3) + entries(4, 6, term=2)


def test_conflict_truncation_longer_run(stores: Stores) -> None:
    store = stores.open()
    store.append(entries(1, 5, term=1), None)
    store.append(entries(3, 8, term=3), HardState(3, 1, 2))
    state = store.load_raft_state()
    assert state.entries == entries(1, 2) + entries(3, 8, term=3)
    assert state.hard_state == HardState(3, 1, 2)


def test_truncation_from_the_first_entry(stores: Stores) -> None:
    store = stores.open()
    store.append(entries(1, 5, term=1), None)
    store.append(entries(1, 1, term=2), None)
    assert store.load_raft_state().entries == entries(1, 1, term=2)


def test_truncation_survives_reopen(stores: Stores) -> None:
    store = stores.open()
    store.append(entries(1, 9), None)
    store.append(entries(2, 3, term=2), None)
    store.sync()
    store = stores.reopen(store)
    assert store.load_raft_state().entries == entries(1, 1) + entries(2, 3, term=2)
    store.append(entries(4, 4, term=2), None)  # the reopened store knows its last index
    assert store.load_raft_state().entries == entries(1, 1) + entries(2, 4, term=2)


@pytest.mark.parametrize(
    ("first", "last", "message"),
    [(5, 6, "gap"), (0, 1, "indexes must be")],
)
def test_bad_appends_are_refused(stores: Stores, first: int, last: int, message: str) -> None:
    store = stores.open()
    store.append(entries(1, 3), None)
    with pytest.raises(ValueError, match=message):
        store.append(entries(first, last), None)
    with pytest.raises(ValueError, match="not consecutive"):
        store.append([*entries(4, 4), *entries(6, 6)], None)
    assert store.load_raft_state().entries == entries(1, 3)


def test_recovery_after_close_and_reopen(stores: Stores) -> None:
    store = stores.open()
    store.append(entries(1, 4, term=2), HardState(2, 3, 4))
    store.apply([(b"a", b"1"), (b"b", b"2")], 3)
    store.sync()
    store = stores.reopen(store)
    assert store.load_raft_state() == RaftState(HardState(2, 3, 4), entries(1, 4, term=2))
    assert store.applied_index() == 3
    assert dict(store.scan()) == {b"a": b"1", b"b": b"2"}


def test_apply_ops_in_order_with_applied_index(stores: Stores) -> None:
    store = stores.open()
    store.apply([(b"k", b"v1"), (b"k", None), (b"j", b"x"), (b"j", b"y")], 1)
    assert store.get(b"k") is None
    assert store.get(b"j") == b"y"
    assert store.applied_index() == 1
    store.apply([(b"k", b"v2"), (b"missing", None)], 2)  # deleting a missing key is fine
    assert store.get(b"k") == b"v2"
    store.apply([], 3)  # an entry with no state change still moves the applied index
    assert store.applied_index() == 3
    assert store.get(b"") is None
    store.apply([(b"", b"empty key"), (b"e", b"")], 4)
    assert store.get(b"") == b"empty key"
    assert store.get(b"e") == b""


KEYS = [b"", b"a", b"a\x00", b"ab", b"abc", b"b", b"\xfe\xff", b"\xff", b"\xff\x00", b"\xff\xff"]


@pytest.mark.parametrize(
    "prefix",
    [b"", b"a", b"ab", b"b", b"\xfe", b"\xff", b"\xff\xff", b"\xff\xff\xff", b"zz", b"a\x00"],
)
def test_scan_prefixes(stores: Stores, prefix: bytes) -> None:
    store = stores.open()
    store.apply([(k, b"v" + k) for k in reversed(KEYS)], 1)
    expected = [(k, b"v" + k) for k in sorted(KEYS) if k.startswith(prefix)]
    assert list(store.scan(prefix)) == expected


def test_scan_sees_the_data_as_of_the_call(stores: Stores) -> None:
    store = stores.open()
    store.apply([(b"p1", b"a"), (b"p2", b"b")], 1)
    scan = store.scan(b"p")
    store.apply([(b"p1", None), (b"p3", b"c")], 2)
    assert list(scan) == [(b"p1", b"a"), (b"p2", b"b")]
    assert list(store.scan(b"p")) == [(b"p2", b"b"), (b"p3", b"c")]


def test_closed_store_refuses_use(stores: Stores) -> None:
    store = stores.open()
    store.apply([(b"a", b"1"), (b"b", b"2")], 1)
    scan = store.scan()
    assert next(scan) == (b"a", b"1")
    store.close()
    store.close()  # idempotent
    for call in (
        store.load_raft_state,
        store.sync,
        store.applied_index,
        lambda: store.append(entries(1, 1), None),
        lambda: store.apply([], 2),
        lambda: store.get(b"a"),
        lambda: store.scan(),
        lambda: next(scan),
    ):
        with pytest.raises(StorageError, match=rf"data dir {stores.path}: store is closed"):
            call()


@pytest.mark.parametrize(
    ("other", "message"),
    [
        (Identity(0xC0FFEE, 4), r"belongs to node 3, not node 4$"),
        (Identity(0xBAD, 3), r"belongs to cluster 0xc0ffee, not 0xbad$"),
    ],
)
def test_identity_mismatch(stores: Stores, other: Identity, message: str) -> None:
    store = stores.open()
    store.append(entries(1, 1), None)
    with pytest.raises(StorageError, match=rf"^data dir {stores.path} {message}") as info:
        stores.reopen(store, other)
    assert "\n" not in str(info.value)
    # the data dir is still usable by its owner
    assert stores.reopen(store, ID).load_raft_state().entries == entries(1, 1)


@pytest.mark.parametrize(
    "identity", [Identity(1, 0), Identity(1, -2), Identity(-1, 1), Identity(1, 1, 2)]
)
def test_bad_identity_is_a_config_error(stores: Stores, identity: Identity) -> None:
    with pytest.raises(ConfigError):
        stores.open(identity)
