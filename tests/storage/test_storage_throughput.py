"""Append throughput of RocksStore, printed for the record (run with ``-s``); no assertions
on speed. Each batch is one ``append`` plus one ``sync`` (a WAL fsync)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from storage import open_store
from tests.storage.storage_helpers import ID
from wire.messages import Entry, EntryKind, HardState


@pytest.mark.parametrize(("batch", "total"), [(1, 2_000), (100, 50_000)])
def test_append_sync_throughput(tmp_path: Path, batch: int, total: int) -> None:
    payload = b"x" * 100
    with open_store(str(tmp_path / "data"), ID) as store:
        start = time.perf_counter()
        for first in range(1, total + 1, batch):
            store.append(
                [Entry(1, i, EntryKind.NORMAL, payload) for i in range(first, first + batch)],
                HardState(1, 1, first),
            )
            store.sync()
        elapsed = time.perf_counter() - start
        assert store.last_index == total
    print(
        f"\nRocksStore append+sync, 100-byte entries, batch {batch}: "
        f"{total / elapsed:,.0f} entries/s, {total / batch / elapsed:,.0f} syncs/s"
    )
