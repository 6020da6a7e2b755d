"""Where a node syncs: a Ready with nothing to send meanwhile (a follower's) is written and
synced in the raft loop's own turn; a leader's Ready, which replicates while its disk write
runs, goes to the persist task's sync thread; and a disk whose last sync was slow is synced
off the trio thread from then on, so a slow disk does not stall the node.

The acks-follow-syncs checker (``test_sync_points``) proves both paths safe; this proves
which path runs, from the thread each sync ran on.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import trio

from storage import MemoryStore
from tests.durability.durability_helpers import (
    EventLog,
    RecordingStore,
    configs,
    in_process_cluster,
    memory_store,
    write_many,
)
from trioraft import open_client
from trioraft.node.persist import INLINE_SYNC_MAX

MAIN = "trio thread"
SYNC_THREAD = "sync thread"


class ThreadNotingStore(RecordingStore):
    """Notes on which thread each sync runs; ``slow``: each sync takes 2x INLINE_SYNC_MAX."""

    def __init__(self, inner: MemoryStore, node_id: int, *, slow: bool) -> None:
        super().__init__(inner, EventLog(), node_id)
        self.slow = slow
        self.where: Counter[str] = Counter()
        self.order: list[str] = []

    def sync(self) -> None:
        name = threading.current_thread().name
        where = SYNC_THREAD if name.startswith("trioraft-sync-") else MAIN
        self.where[where] += 1
        self.order.append(where)
        if self.slow:
            time.sleep(2 * INLINE_SYNC_MAX)
        super().sync()


async def test_followers_sync_in_the_loop_and_the_leader_on_its_thread() -> None:
    leader, stores = await _run(slow=set())
    print({n: dict(s.where) for n, s in stores.items()}, "leader", leader)
    # About one sync per put (a follower may take two appends in one turn, one sync).
    for node, s in stores.items():
        if node == leader:
            assert s.where[SYNC_THREAD] >= 30 and s.where[MAIN] == 0, s.where
        else:
            assert s.where[MAIN] >= 30 and s.where[SYNC_THREAD] == 0, s.where


async def test_a_slow_disk_is_synced_off_the_trio_thread() -> None:
    leader, stores = await _run(slow={1, 2, 3})
    print({n: s.order[:5] for n, s in stores.items()}, "leader", leader)
    for node, s in stores.items():
        if node != leader:
            # at most one slow sync ran in the loop before the node learned the disk is slow
            assert s.where[MAIN] <= 1 and s.where[SYNC_THREAD] >= 30, s.where
            assert MAIN not in s.order[1:], s.order


async def _run(*, slow: set[int]) -> tuple[int, dict[int, ThreadNotingStore]]:
    """Three in-process nodes (``slow``: their disks are slow); 40 puts, one at a time, after a
    warm-up. Returns the leader and the stores, noting only the 40 puts' syncs."""
    cfgs = configs(3)
    stores: dict[int, ThreadNotingStore] = {}

    def make(cfg) -> ThreadNotingStore:
        stores[cfg.node_id] = ThreadNotingStore(
            memory_store(cfg), cfg.node_id, slow=cfg.node_id in slow
        )
        return stores[cfg.node_id]

    with trio.fail_after(60):  # safety net only
        async with in_process_cluster(cfgs, make):
            async with open_client([c.client_addr for c in cfgs], timeout=30) as client:
                leader, _ = await client.wait_leader()
                await write_many(client, "warm", 3, writers=1)
                for s in stores.values():  # from here on: the steady state
                    s.where.clear()
                    s.order.clear()
                await write_many(client, "k", 40, writers=1)
    return leader, stores
