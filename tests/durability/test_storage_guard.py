"""``StorageGuard``: retry with backoff, one error line, one recovery line; damage stops.

Unit tests on ``FaultyStore(MemoryStore)`` with trio's autojump clock (backoff sleeps take
no real time), plus one real node that finds damaged data while serving.
"""

from __future__ import annotations

import logging

import pytest
import trio

from storage import DataCorruption, FaultyStore, Identity, MemoryStore
from tests.durability.durability_helpers import configs, in_process_cluster, memory_store
from trioraft import open_client
from trioraft.errors import TrioraftError
from trioraft.node.storage_guard import StorageGuard
from wire.errors import StorageError
from wire.messages import Entry, EntryKind

ID = Identity(7, 1)


def guard_for(store: FaultyStore, applied: int = 0) -> StorageGuard:
    return StorageGuard(1, store, lambda: applied)


async def append_one(store: FaultyStore, index: int) -> int:
    store.append([Entry(1, index, EntryKind.NORMAL, b"")], None)
    store.sync()
    return index


def test_try_now_hands_a_failed_attempt_over_and_raises_corruption() -> None:
    """The raft loop's inline writes: one attempt; a failure (or a guard already failing)
    gives None, for the task to retry through ``write``; damaged data is raised."""
    store = FaultyStore(MemoryStore(ID))
    guard = guard_for(store)

    def sync_one() -> int:
        store.append([Entry(1, 1, EntryKind.NORMAL, b"")], None)
        store.sync()
        return 1

    done = guard.try_now(sync_one)
    assert done is not None and done.unwrap() == 1
    store.fail("sync", reason="No space left on device")
    assert guard.try_now(sync_one) is None and not guard.failing  # the task will say it
    store.heal()
    guard._failing["persist"] = StorageError("x")  # the persist task is retrying
    assert guard.try_now(lambda: pytest.fail("must not be attempted")) is None
    guard._failing.clear()

    def damaged() -> int:
        raise DataCorruption("data dir d: bad checksum")

    with pytest.raises(DataCorruption):
        guard.try_now(damaged)


async def test_retries_until_healed_and_logs_once_each_way(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="trioraft.node.node")
    store = FaultyStore(MemoryStore(ID))
    guard = guard_for(store)
    store.fail("sync", reason="No space left on device")

    async def heal_later() -> None:
        await trio.sleep(30)
        assert guard.failing
        store.heal()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(heal_later)
        assert await guard.write("persist", lambda: append_one(store, 1)) == 1
    assert not guard.failing
    assert store.injected["sync"] == 1
    retries = [r for r in caplog.records if "still failing" in r.getMessage()]
    assert 5 < len(retries) < 40  # retried with backoff, at debug level
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "node 1: storage failed, acknowledging nothing and retrying until writes succeed "
        "again: data dir :memory:: sync failed: injected fault: No space left on device"
    ]
    back = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(back) == 1 and back[0].startswith("node 1: storage writes succeed again after")
    assert store.inner.crash_copy().last_index == 1  # type: ignore[attr-defined]


async def test_two_tasks_failing_recover_together(autojump_clock: trio.testing.MockClock) -> None:
    store = FaultyStore(MemoryStore(ID))
    guard = guard_for(store)
    store.fail("append", "apply")

    async def apply_once() -> None:
        store.apply([], 1)

    async def apply() -> None:
        await guard.write("apply", apply_once)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(guard.write, "persist", lambda: append_one(store, 1))
        nursery.start_soon(apply)
        await trio.sleep(10)
        assert guard.failing
        store.heal()
    assert not guard.failing and store.applied_index() == 1


async def test_damage_is_not_retried(autojump_clock: trio.testing.MockClock) -> None:
    store = FaultyStore(MemoryStore(ID))
    store.fail("append", corrupt=True, reason="block checksum mismatch")
    with pytest.raises(DataCorruption, match="append failed: injected fault: block checksum"):
        await guard_for(store).write("persist", lambda: append_one(store, 1))


async def test_lost_state_machine_writes_stop_the_node(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The store came back from a failure with an older applied index than the node had
    applied: continuing would diverge, a restart re-applies from the log."""
    store = FaultyStore(MemoryStore(ID))
    guard = guard_for(store, applied=5)
    store.fail("append", times=1)
    with pytest.raises(DataCorruption, match="state-machine writes up to index 5 were lost"):
        await guard.write("persist", lambda: append_one(store, 1))


async def test_node_stops_with_the_error_on_damaged_data() -> None:
    cfgs = configs(1)
    stores: list[FaultyStore] = []

    def make(cfg):  # type: ignore[no-untyped-def]
        stores.append(FaultyStore(memory_store(cfg)))
        return stores[-1]

    with trio.fail_after(30), pytest.RaisesGroup(DataCorruption, flatten_subgroups=True):
        async with in_process_cluster(cfgs, make) as cluster:
            async with open_client(cluster.endpoints, timeout=10) as client:
                await client.put("a", "1")
                stores[0].fail("apply", corrupt=True, reason="Corruption: bad block")
                with pytest.raises(TrioraftError):
                    await client.put("b", "2", timeout=2)
                await trio.sleep_forever()  # the node's failure ends the cluster
