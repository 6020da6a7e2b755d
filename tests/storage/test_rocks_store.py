"""RocksStore only: on-disk layout, locking, corruption, formats, crash durability.

Child processes are real Python processes started with subprocess; every one is waited
for (``run_child`` waits; the SIGKILL test kills and waits in a ``finally``).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cbor2
import pytest
from rocksdict import Options, Rdict

import storage.rocks_db
import storage.rocks_options
from storage import FORMAT_VERSION, RocksStore, open_store
from storage.records import index_key
from tests.storage.storage_helpers import ID, REPO, entries, run_child
from wire.errors import StorageError
from wire.messages import HardState


def raw_db(data: Path) -> Rdict:
    """Open a closed store's RocksDB directly, as a foreign tool would: raw mode, and no
    concurrent memtable writes (the kv family's in-place updates refuse them)."""
    return Rdict(str(data / "db"), storage.rocks_options.raw_options())


def test_on_disk_layout(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with open_store(str(data), ID) as store:
        store.append(entries(1, 2, term=4), HardState(4, 1, 1))
        store.apply([(b"k", b"v")], 1)
        store.sync()
    assert (data / "trioraft.lock").exists()
    assert set(Rdict.list_cf(str(data / "db"), Options(raw_mode=True))) == {
        "default",
        "log",
        "meta",
        "kv",
    }
    db = raw_db(data)
    try:
        log = db.get_column_family("log")
        record = log[index_key(2)]
        assert record is not None
        assert int.from_bytes(record[:4], "big") == zlib.crc32(record[4:])
        assert cbor2.loads(record[4:]) == [4, 0, b"2/4/"]
        assert list(log.keys()) == [(1).to_bytes(8, "big"), (2).to_bytes(8, "big")]
        meta = db.get_column_family("meta")
        assert cbor2.loads(meta[b"format"][4:]) == FORMAT_VERSION
        assert cbor2.loads(meta[b"identity"][4:]) == [ID.cluster_id, ID.node_id]
        assert cbor2.loads(meta[b"hard_state"][4:]) == [4, 1, 1]
        assert cbor2.loads(meta[b"applied"][4:]) == 1
        assert db.get_column_family("kv")[b"k"] == b"v"
        del log, meta
    finally:
        db.close()


def test_open_classmethod_and_last_index(tmp_path: Path) -> None:
    with RocksStore.open(str(tmp_path / "d"), ID) as store:
        store.append(entries(1, 7), None)
        assert store.last_index == 7
    with open_store(str(tmp_path / "d"), ID, create=False) as store:
        assert store.last_index == 7
        assert "last_index=7" in repr(store)


def test_create_false_needs_an_existing_store(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(StorageError, match=f"^data dir {missing} does not exist$"):
        open_store(str(missing), ID, create=False)
    assert not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(StorageError, match=f"^data dir {empty} holds no trioraft data"):
        open_store(str(empty), ID, create=False)
    # a failed open leaves the dir free
    open_store(str(empty), ID).close()


def test_newer_format_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    open_store(str(data), ID).close()
    db = raw_db(data)
    payload = cbor2.dumps(9)
    db.get_column_family("meta")[b"format"] = zlib.crc32(payload).to_bytes(4, "big") + payload
    db.close()
    message = f"^data dir {data} has format version 9, newer than this trioraft \\(1\\)$"
    with pytest.raises(StorageError, match=message):
        open_store(str(data), ID)


def test_second_process_fails_at_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    code = (
        "import sys\n"
        "from storage import Identity, open_store\n"
        "from wire.errors import StorageError\n"
        "try:\n"
        "    open_store(sys.argv[1], Identity(0xC0FFEE, 3))\n"
        "except StorageError as e:\n"
        "    print(e); sys.exit(3)\n"
    )
    with open_store(str(data), ID):
        child = run_child(code, str(data))
    assert child.returncode == 3, child.stderr
    assert child.stdout == (
        f"data dir {data} is in use by another process (lock {data}/trioraft.lock)\n"
    )
    # once closed, the same child opens it
    child = run_child(code, str(data))
    assert child.returncode == 0, child.stderr


def test_rocksdb_lock_error_is_translated(tmp_path: Path) -> None:
    """A foreign process holding RocksDB's own LOCK (not ours) gives the same message."""
    data = tmp_path / "data"
    open_store(str(data), ID).close()
    code = (
        "import sys\n"
        "from rocksdict import Rdict\n"
        "from storage.rocks_options import raw_options\n"
        "db = Rdict(sys.argv[1] + '/db', raw_options())\n"
        "print('open', flush=True)\n"
        "sys.stdin.read()\n"
        "db.close()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(data)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "open\n"
        with pytest.raises(StorageError) as info:
            open_store(str(data), ID)
        assert str(info.value) == (
            f"data dir {data} is in use by another process (lock {data}/trioraft.lock)"
        )
    finally:
        child.communicate(timeout=60)
    # our flock was released on the failed open
    open_store(str(data), ID).close()


def test_same_process_second_open_fails(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with open_store(str(data), ID):
        with pytest.raises(
            StorageError, match=f"^data dir {data} is already open in this process$"
        ):
            open_store(str(data), ID)
        with pytest.raises(StorageError, match="already open in this process"):
            open_store(str(tmp_path / "." / "data"), ID)  # same dir by another spelling
    open_store(str(data), ID).close()


def test_kv_values_are_overwritten_in_place(tmp_path: Path) -> None:
    """A key written again and again keeps one memtable slot (``rocks_options.kv_options``):
    20,000 same-size writes of one key leave the kv memtable a few KiB; with a slot per
    write (RocksDB's default) they came to ~1 MiB."""
    with open_store(str(tmp_path / "d"), ID) as store:
        for i in range(1, 20_001):
            store.apply([(b"k", b"%08d" % i)], i)
        assert store.get(b"k") == b"00020000"
        size = store._live().kv.property_int_value("rocksdb.cur-size-active-mem-table")
        assert size is not None and size < 64 << 10, size


def test_close_frees_the_dir_despite_an_unfinished_scan(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = open_store(str(data), ID)
    store.apply([(b"a", b"1"), (b"b", b"2")], 1)
    scan = store.scan()
    assert next(scan) == (b"a", b"1")
    store.close()
    with open_store(str(data), ID) as again:
        assert again.get(b"b") == b"2"
    with pytest.raises(StorageError, match="store is closed"):
        next(scan)


def corrupt_log_record(data: Path, index: int) -> None:
    db = raw_db(data)
    log = db.get_column_family("log")
    value = bytearray(log[index_key(index)])
    value[-1] ^= 0x01
    log[index_key(index)] = bytes(value)
    del log
    db.close()


def test_corrupt_log_record_is_reported_with_its_index(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with open_store(str(data), ID) as store:
        store.append(entries(1, 20), HardState(1, 3, 5))
    corrupt_log_record(data, 13)
    store = open_store(str(data), ID)  # opening does not read the whole log
    with pytest.raises(StorageError) as info:
        store.load_raft_state()
    assert str(info.value) == f"data dir {data}: log entry 13 is corrupt (checksum mismatch)"
    store.close()
    # the kept traceback must not keep the RocksDB lock
    open_store(str(data), ID).close()


def test_corrupt_hard_state_and_gap(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with open_store(str(data), ID) as store:
        store.append(entries(1, 5), HardState(1, 3, 5))
    db = raw_db(data)
    db.get_column_family("log").delete(index_key(3))
    db.close()
    with open_store(str(data), ID) as store:
        with pytest.raises(
            StorageError, match=r"log is not contiguous \(entry 4 follows entry 2\)"
        ):
            store.load_raft_state()
    db = raw_db(data)
    db.get_column_family("meta")[b"hard_state"] = b"\x00\x00\x00\x00\xa0"
    db.close()
    with open_store(str(data), ID) as store:
        with pytest.raises(StorageError, match=r"the hard state is corrupt \(checksum mismatch\)"):
            store.load_raft_state()


def test_synced_entries_survive_sigkill(tmp_path: Path) -> None:
    """A child appends, syncs, says so, and is killed with SIGKILL without closing.

    SIGKILL loses the process, not the OS page cache, so this shows that synced writes and
    the recovery of a store that was never closed work; it cannot show that an unsynced
    write would be lost on power failure (MemoryStore.crash_copy models that).
    """
    data = tmp_path / "data"
    code = (
        "import sys\n"
        "from storage import Identity, open_store\n"
        "from wire.messages import Entry, EntryKind, HardState\n"
        "s = open_store(sys.argv[1], Identity(0xC0FFEE, 3))\n"
        "for i in range(1, 501, 50):\n"
        "    s.append([Entry(7, j, EntryKind.NORMAL, b'x' * 100) for j in range(i, i + 50)],"
        " HardState(7, 3, i))\n"
        "s.apply([(b'applied', b'yes')], 400)\n"
        "s.sync()\n"
        "print('synced', flush=True)\n"
        "sys.stdin.read()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(data)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "synced\n"
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL
    with open_store(str(data), ID) as store:  # the dead child's locks are gone
        state = store.load_raft_state()
        assert [e.index for e in state.entries] == list(range(1, 501))
        assert {e.term for e in state.entries} == {7}
        assert state.hard_state == HardState(7, 3, 451)
        assert store.applied_index() == 400
        assert store.get(b"applied") == b"yes"


@pytest.mark.parametrize("budget", [1 << 20, 0])
def test_memtable_budget_bounds_what_waits_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, budget: int
) -> None:
    """Past the budget for all memtables together RocksDB flushes them to table files
    (log compaction no longer does: docs/snapshots.md); without one (0), 8 MB of writes
    stay in memory and in the WAL."""
    monkeypatch.setattr(storage.rocks_db, "MEMTABLE_BUDGET", budget)
    data = tmp_path / "data"
    value = b"v" * 4096
    with open_store(str(data), ID) as store:
        for batch in range(20):
            store.apply([(b"k%06d" % (batch * 100 + i), value) for i in range(100)], batch + 1)
        deadline = time.monotonic() + (10 if budget else 1)  # a flush runs in the background
        while not list((data / "db").glob("*.sst")) and time.monotonic() < deadline:
            time.sleep(0.05)
        tables = list((data / "db").glob("*.sst"))
    assert bool(tables) == bool(budget), tables
