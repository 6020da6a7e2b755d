"""Snapshot storage: the file format, compaction, point-in-time views, installs.

Store tests run against both stores (RocksDB and in-memory), like tests/storage."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import cbor2
import pytest

from storage import Identity, MemoryStore, open_store
from storage.base import SnapshotStore
from storage.snapshot_dir import SnapshotDir
from storage.snapshot_file import (
    SnapshotCorrupt,
    SnapshotHeader,
    _record,
    file_sha256,
    iter_items,
    read_info,
    write_snapshot,
)
from wire.messages import Entry, EntryKind, HardState, SnapshotMeta

ID = Identity(cluster_id=0xC0FFEE, node_id=3)
HEADER = SnapshotHeader(cluster_id=7, index=42, term=3, voters=(1, 2, 3), created_ms=5, node_id=1)


def items(n: int, size: int = 10) -> list[tuple[bytes, bytes]]:
    return [(b"k%06d" % i, bytes([i % 251]) * size) for i in range(n)]


def entries(first: int, last: int, term: int = 1) -> list[Entry]:
    return [Entry(term, i, EntryKind.NORMAL, b"e%d" % i) for i in range(first, last + 1)]


@pytest.fixture(params=["memory", "rocks"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SnapshotStore]:
    s: SnapshotStore
    s = MemoryStore(ID) if request.param == "memory" else open_store(str(tmp_path / "d"), ID)
    yield s
    s.close()


def reopen(s: SnapshotStore, tmp_path: Path) -> SnapshotStore:
    if isinstance(s, MemoryStore):
        return s.reopen()
    s.close()
    return open_store(str(tmp_path / "d"), ID)


# --- the file format -------------------------------------------------------------------


def test_file_roundtrip_with_counts(tmp_path: Path) -> None:
    path = str(tmp_path / "s.snap")
    data = items(500, 100)
    info = write_snapshot(path, HEADER, data, classify=lambda k: "keys" if k < b"k0001" else None)
    assert info.size == os.path.getsize(path)
    assert info.counts == {"records": 500, "data_bytes": 500 * 107, "keys": 100}
    assert read_info(path) == info
    assert read_info(path, verify=True) == info
    assert list(iter_items(path)) == data
    digest, trailer = file_sha256(path)
    assert digest == trailer == info.sha256
    assert info.header.meta == SnapshotMeta(42, 3, (1, 2, 3))


@pytest.mark.parametrize("klen", [0, 1, 23, 24, 255, 256, 65535, 65536])
def test_records_are_encoded_as_cbor2_would(klen: int) -> None:
    """The writer builds each record's CBOR by hand; the format is cbor2's, byte for byte."""
    for vlen in (0, 1, 23, 24, 255, 256, 65535, 65536, 70000):
        key, value = b"k" * klen, bytes(range(256)) * (vlen // 256) + b"v" * (vlen % 256)
        assert _record(key, value) == cbor2.dumps([key, value]), (klen, vlen)


def test_empty_state_is_a_valid_snapshot(tmp_path: Path) -> None:
    path = str(tmp_path / "s.snap")
    info = write_snapshot(path, HEADER, [])
    assert read_info(path, verify=True).counts["records"] == 0
    assert list(iter_items(path)) == []
    assert info.size == os.path.getsize(path)


def test_writer_refuses_unordered_keys(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="out of order"):
        write_snapshot(str(tmp_path / "s.snap"), HEADER, [(b"b", b""), (b"a", b"")])


@pytest.mark.parametrize("where", [0, 20, 200, -40, -1])
def test_any_flipped_byte_is_detected(tmp_path: Path, where: int) -> None:
    path = str(tmp_path / "s.snap")
    write_snapshot(path, HEADER, items(50, 30))
    raw = bytearray(Path(path).read_bytes())
    raw[where] ^= 0x40
    Path(path).write_bytes(bytes(raw))
    with pytest.raises(SnapshotCorrupt, match=f"snapshot file {path}"):
        read_info(path, verify=True)
    digest, trailer = file_sha256(path)
    assert digest != trailer or where == 0  # (the magic is checked on its own)


def test_truncated_file_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    path = str(tmp_path / "s.snap")
    write_snapshot(path, HEADER, items(50, 30))
    raw = Path(path).read_bytes()
    Path(path).write_bytes(raw[: len(raw) // 2])
    with pytest.raises(SnapshotCorrupt, match="is corrupt"):
        read_info(path, verify=True)
    Path(path).write_bytes(b"hello world, not a snapshot")
    with pytest.raises(SnapshotCorrupt, match="not a trioraft snapshot"):
        read_info(path)


def test_snapshot_dir_names_prunes_and_cleans(tmp_path: Path) -> None:
    d = SnapshotDir(str(tmp_path / "snaps"))
    for index in (5, 30, 12):
        temp = d.temp_path()
        write_snapshot(temp, HEADER, [])
        d.publish(temp, index, 2)
    assert [r.index for r in d.snapshots()] == [5, 12, 30]
    assert d.latest() is not None and d.latest().index == 30  # type: ignore[union-attr]
    assert [r.index for r in d.prune(2)] == [5]
    Path(d.temp_path()).write_bytes(b"x")
    os.makedirs(os.path.join(d.path, ".checkpoint-abc"))
    d.remove_leftovers()
    names = [os.path.basename(d.name(i, 2)) for i in (12, 30)]
    assert sorted(os.listdir(d.path)) == ["incoming", *names]


# --- stores ------------------------------------------------------------------------------


def test_stores_support_snapshots(store: SnapshotStore) -> None:
    assert isinstance(store, SnapshotStore)


def test_compaction_keeps_the_tail_and_survives_reopen(
    store: SnapshotStore, tmp_path: Path
) -> None:
    store.append(entries(1, 10), HardState(1, 1, 10))
    store.apply([(b"a", b"1")], 10)
    store.compact_log(6, (1, 2, 3))
    assert store.entry_term(6) == 1 and store.entry_term(5) is None
    state = store.load_raft_state()
    assert state.snapshot == SnapshotMeta(6, 1, (1, 2, 3))
    assert [e.index for e in state.entries] == [7, 8, 9, 10]
    store.compact_log(4, (1, 2, 3))  # below the start: no-op
    store.sync()
    store = reopen(store, tmp_path)
    state = store.load_raft_state()
    assert state.snapshot == SnapshotMeta(6, 1, (1, 2, 3))
    assert [e.index for e in state.entries] == [7, 8, 9, 10]
    store.append(entries(11, 11), None)
    store.compact_log(10, (1, 2, 3))
    store.apply([], 11)
    store.compact_log(11, (1, 2, 3))  # the whole log
    assert store.load_raft_state().entries == []
    store.append(entries(12, 13), None)  # appends go on after the start
    assert [e.index for e in store.load_raft_state().entries] == [12, 13]
    store.close()


def test_compaction_beyond_applied_is_refused(store: SnapshotStore) -> None:
    store.append(entries(1, 5), None)
    store.apply([], 3)
    with pytest.raises(Exception, match="beyond the applied index 3"):
        store.compact_log(4, (1,))


def test_view_is_a_point_in_time_copy(store: SnapshotStore, tmp_path: Path) -> None:
    store.apply([(b"a", b"1"), (b"b", b"2")], 5)
    view = store.open_view(str(tmp_path / "scratch"))
    store.apply([(b"a", b"changed"), (b"b", None), (b"c", b"3")], 6)
    assert view.applied_index == 5
    assert list(view.items()) == [(b"a", b"1"), (b"b", b"2")]
    view.close()
    assert (
        not [n for n in os.listdir(tmp_path / "scratch") if n.startswith(".checkpoint")]
        if (tmp_path / "scratch").exists()
        else True
    )


def test_install_replaces_state_machine_and_log(store: SnapshotStore, tmp_path: Path) -> None:
    store.append(entries(1, 8), HardState(2, 1, 8))
    store.apply([(b"old", b"x"), (b"zzz", b"y")], 8)
    meta = SnapshotMeta(100, 4, (1, 2, 3))
    store.begin_install(meta)
    assert store.pending_install() == meta
    store.replace_kv(items(300))
    store.finish_install(meta)
    assert store.pending_install() is None
    assert store.applied_index() == 100
    assert store.get(b"old") is None and store.get(b"zzz") is None
    assert list(store.scan(b"")) == items(300)
    state = store.load_raft_state()
    assert state.snapshot == meta and state.entries == []
    assert state.hard_state == HardState(2, 1, 8)  # the shell persists its own hard state
    store.append(entries(101, 102, term=4), HardState(4, 0, 101))
    store.sync()
    store = reopen(store, tmp_path)
    assert store.applied_index() == 100
    assert [e.index for e in store.load_raft_state().entries] == [101, 102]
    assert store.get(b"k000299") is not None
    store.close()


def test_interrupted_install_is_reported_after_reopen(store: SnapshotStore, tmp_path: Path) -> None:
    store.append(entries(1, 3), None)
    store.apply([(b"a", b"1")], 3)
    meta = SnapshotMeta(50, 2, (1,))
    store.begin_install(meta)
    store.replace_kv(items(10))
    if isinstance(store, MemoryStore):
        store = store.crash_copy()  # only the synced marker survives for sure
    else:
        store = reopen(store, tmp_path)
    assert store.pending_install() == meta
    # redo from scratch, as the node does
    store.begin_install(meta)
    store.replace_kv(items(4))
    store.finish_install(meta, HardState(2, 0, 50))
    assert store.pending_install() is None
    assert list(store.scan(b"")) == items(4)
    assert store.load_raft_state().hard_state == HardState(2, 0, 50)
    store.close()


def test_rocksdict_snapshot_iterators_ignore_the_snapshot(tmp_path: Path) -> None:
    """Why views are checkpoints (docs/snapshots.md): rocksdict 0.3.29's iterator over a
    column family's ``snapshot()`` sees writes made after the snapshot. If this starts
    failing, rocksdict fixed it and ``open_view`` could use ``snapshot()`` instead."""
    from rocksdict import Options, Rdict

    opts = Options(raw_mode=True)
    opts.create_missing_column_families(True)
    db = Rdict(str(tmp_path / "db"), opts, column_families={"kv": Options(raw_mode=True)})
    try:
        kv = db.get_column_family("kv")
        kv[b"a"] = b"1"
        snap = kv.snapshot()
        kv[b"a"] = b"2"
        kv[b"b"] = b"3"
        assert snap[b"a"] == b"1"  # point reads honour the snapshot...
        assert list(snap.items()) == [(b"a", b"2"), (b"b", b"3")]  # ...iterators do not
        del snap, kv
    finally:
        db.close()
