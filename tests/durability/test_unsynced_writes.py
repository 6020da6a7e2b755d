"""A leader's entries are written unsynced and synced later (``Persister.write_unsynced``,
``Persister.sync``). If that sync fails and the store reopens in between, the entries may
be gone: the node must not report them durable. It checks, and stops (``DataCorruption``)
if they were lost; if they survived, it carries on.
"""

from __future__ import annotations

import pytest
import trio

from storage import DataCorruption, FaultyStore, Identity, MemoryStore
from trioraft.node.persist import Persister
from trioraft.node.storage_guard import StorageGuard
from wire.messages import Entry, EntryKind, HardState

ID = Identity(7, 1)


class LossyOnRecover(FaultyStore):
    """``recover()`` reopens the store as a power loss would leave it: unsynced writes gone."""

    def recover(self) -> None:
        super().recover()
        self.inner = self.inner.crash_copy()  # type: ignore[attr-defined]


@pytest.mark.parametrize("loses", [False, True])
async def test_a_failed_sync_of_unsynced_entries_checks_they_survived(loses: bool) -> None:
    store = (LossyOnRecover if loses else FaultyStore)(MemoryStore(ID))
    persister = Persister(1, store, StorageGuard(1, store, lambda: 0), HardState(term=1))
    try:
        store.append([Entry(1, i, EntryKind.NORMAL, b"") for i in (1, 2, 3)], None)
        store.fail("sync", times=1)
        with trio.fail_after(30):  # safety net only
            if loses:
                with pytest.raises(DataCorruption, match="up to index 3 were lost"):
                    await persister.sync(3, 1)
            else:
                await persister.sync(3, 1)
                assert store.inner.crash_copy().last_index == 3  # type: ignore[attr-defined]
        assert store.injected["sync"] == 1
    finally:
        persister.close()
