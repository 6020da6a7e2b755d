"""RocksStore on damaged data dirs: torn and corrupt WAL records, corrupt table files.

The policy (docs/durability.md): only an incomplete write at the end of the WAL may be
dropped (it was never synced, so never acknowledged), and the store logs that it was; any
other damage refuses the open with a one-line ``DataCorruption`` naming the data dir and
the last readable log index.

The damaged dirs are made by a child process that appends synced batches and is killed
with SIGKILL, so the batches live in RocksDB's WAL (a clean close flushes them to table
files); each test damages a copy.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from rocksdict import DBRecoveryMode, Rdict

from storage import DataCorruption, open_store
from storage.records import encode_entry
from storage.rocks_options import raw_options
from storage.wal import torn_tail, wal_files
from tests.storage.storage_helpers import ID, run_child
from wire.messages import Entry, EntryKind, HardState

BATCHES, PER_BATCH, TERM = 20, 5, 2
LAST = BATCHES * PER_BATCH

CHILD = f"""
import os, signal, sys
from storage import Identity, open_store
from wire.messages import Entry, EntryKind, HardState
s = open_store(sys.argv[1], Identity({ID.cluster_id}, {ID.node_id}))
for b in range({BATCHES}):
    first = b * {PER_BATCH} + 1
    s.append([Entry({TERM}, i, EntryKind.NORMAL, b"value-%05d" % i + b"." * 40)
              for i in range(first, first + {PER_BATCH})], HardState({TERM}, 3, first - 1))
    s.sync()
os.kill(os.getpid(), signal.SIGKILL)
"""


def entry_bytes(index: int) -> bytes:
    return encode_entry(Entry(TERM, index, EntryKind.NORMAL, b"value-%05d" % index + b"." * 40))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("wal") / "data"
    child = run_child(CHILD, str(data))
    assert child.returncode == -9, child.stderr
    return data


@pytest.fixture
def data(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(pristine, copy)
    return copy


def wal(data: Path) -> Path:
    files = wal_files(str(data / "db"))
    assert len(files) == 1
    return Path(files[0])


def db_files(data: Path) -> dict[str, bytes]:
    """The RocksDB files (but its info logs) and their contents."""
    return {p.name: p.read_bytes() for p in (data / "db").iterdir() if not p.name.startswith("LOG")}


def flip_in_entry(data: Path, index: int) -> None:
    """Flip one bit inside entry ``index``'s record in the WAL (RocksDB's CRC covers it)."""
    path = wal(data)
    raw = bytearray(path.read_bytes())
    at = raw.find(entry_bytes(index))
    assert at > 0
    raw[at + 12] ^= 0x10
    path.write_bytes(bytes(raw))


def test_undamaged_wal_recovers_everything(data: Path) -> None:
    assert torn_tail(str(wal(data))) is None
    with open_store(str(data), ID) as store:
        state = store.load_raft_state()
        assert [e.index for e in state.entries] == list(range(1, LAST + 1))
        assert state.hard_state == HardState(TERM, 3, LAST - PER_BATCH)
        assert store.dropped_tails == []


@pytest.mark.parametrize("cut", [1, 30, 100])
def test_torn_tail_is_dropped_and_logged(
    data: Path, cut: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A crash in the middle of writing the last batch (never synced): the batch is gone,
    everything before it is kept, and the store says what it dropped, after which entry."""
    path = wal(data)
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(size - cut)
    tail = torn_tail(str(path))
    assert tail is not None and tail.offset + tail.size == size - cut
    with caplog.at_level(logging.WARNING, logger="storage.rocks"):
        store = open_store(str(data), ID)
    with store:
        state = store.load_raft_state()
        kept = LAST - PER_BATCH
        assert [e.index for e in state.entries] == list(range(1, kept + 1))
        assert store.dropped_tails == [tail]
    [record] = [r for r in caplog.records if "dropped an incomplete write" in r.getMessage()]
    assert f"data dir {data}: dropped an incomplete write after log entry {kept}" in (
        record.getMessage()
    )
    assert f"of db/{Path(tail.file).name})" in record.getMessage()
    # the open replayed the WAL into table files: the next open drops nothing
    with open_store(str(data), ID) as again:
        assert again.dropped_tails == []
        assert again.last_index == kept


@pytest.mark.parametrize(("index", "survivors"), [(50, 45), (3, 0), (LAST - 1, LAST - 5)])
def test_corrupt_wal_record_refuses_to_open_and_names_the_index(
    data: Path, index: int, survivors: int
) -> None:
    """A damaged record anywhere in the WAL, the last one included: it was complete, so it
    may have been synced and acknowledged. The error names the last readable entry."""
    flip_in_entry(data, index)
    before = db_files(data)
    with pytest.raises(DataCorruption) as info:
        open_store(str(data), ID)
    assert str(info.value) == (
        f"data dir {data}: corrupt RocksDB data after log entry {survivors}, "
        "refusing to start (Corruption: checksum mismatch)"
    )
    assert db_files(data) == before  # the failed open changed nothing (the diagnosis is read-only)
    with pytest.raises(DataCorruption):  # and the dir is not left locked
        open_store(str(data), ID)


def test_rocksdb_default_recovery_mode_would_lose_synced_entries(data: Path) -> None:
    """Why trioraft does not use RocksDB's default (point-in-time) WAL recovery: one
    flipped byte in entry 50's batch silently drops entries 46..100, all synced."""
    flip_in_entry(data, 50)
    options = raw_options()
    options.set_wal_recovery_mode(DBRecoveryMode.point_in_time())
    cfs = {name: raw_options() for name in ("log", "meta", "kv")}
    db = Rdict(str(data / "db"), options, column_families=cfs)
    try:
        log = db.get_column_family("log")
        assert len(list(log.keys())) == 45
        del log
    finally:
        db.close()


def flush_to_table_files(data: Path) -> None:
    open_store(str(data), ID).close()  # recovery and close leave the log in .sst files
    assert wal(data).stat().st_size == 0


def log_table_file(data: Path) -> Path:
    """The table file holding the log (the largest one)."""
    return max((data / "db").glob("*.sst"), key=lambda p: p.stat().st_size)


def test_corrupt_table_block_refuses_to_load_and_names_the_index(data: Path) -> None:
    flush_to_table_files(data)
    sst = log_table_file(data)
    raw = bytearray(sst.read_bytes())
    raw[100] ^= 0x01  # inside the first data block
    sst.write_bytes(bytes(raw))
    with pytest.raises(DataCorruption) as info:
        with open_store(str(data), ID) as store:
            store.load_raft_state()
    message = str(info.value)
    assert message.startswith(
        f"data dir {data}: log is unreadable from its first entry (Corruption: block checksum"
    ), message
    assert "\n" not in message


def test_truncated_table_file_refuses_to_open(data: Path) -> None:
    flush_to_table_files(data)
    sst = log_table_file(data)
    sst.write_bytes(sst.read_bytes()[: sst.stat().st_size // 2])
    with pytest.raises(DataCorruption) as info:
        open_store(str(data), ID)
    message = str(info.value)
    assert message.startswith(f"data dir {data}: corrupt RocksDB data"), message
    assert "refusing to start" in message and "size mismatch" in message
