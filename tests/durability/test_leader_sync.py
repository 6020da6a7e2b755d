"""The leader's own sync is off the commit path: a write is acknowledged once two followers
hold it durably, while the leader's sync of it has not finished; the leader counts its own
copy only when that sync is done (``RawNode.synced``; docs/architecture.md).

The leader's store holds its syncs at a gate (a threading.Event, on the persist task's sync
thread: the trio thread is never blocked), so the test needs no timing.
"""

from __future__ import annotations

import threading

import trio

from storage import MemoryStore
from tests.durability.durability_helpers import configs, identity, in_process_cluster
from trioraft import open_client
from trioraft.config import NodeConfig


class GatedSyncStore(MemoryStore):
    """A MemoryStore whose syncs wait at ``gate`` while ``closed`` is set."""

    def __init__(self, cfg: NodeConfig) -> None:
        super().__init__(identity(cfg), f"mem:{cfg.node_id}")
        self.closed = False
        self.gate = threading.Event()
        self.waiting = threading.Event()  # a sync is held at the gate
        self.syncs_done = 0

    def sync(self) -> None:
        if self.closed:
            self.waiting.set()
            self.gate.wait(timeout=60)  # safety net only
        super().sync()
        self.syncs_done += 1


async def test_a_write_is_acknowledged_before_the_leaders_own_sync() -> None:
    stores: dict[int, GatedSyncStore] = {}

    def make(cfg: NodeConfig) -> GatedSyncStore:
        stores[cfg.node_id] = GatedSyncStore(cfg)
        return stores[cfg.node_id]

    with trio.fail_after(60):  # safety net only
        async with in_process_cluster(configs(3), make) as cluster:
            async with open_client(cluster.endpoints, timeout=30) as client:
                leader, _ = await client.wait_leader()
                await client.put("warm", "up")
                store, node = stores[leader], cluster.nodes[leader]
                # let the warm-up's syncs finish: none in flight when the gate closes
                while node._core.unsynced() is not None or node._syncing:
                    await trio.sleep(0.01)
                store.closed = True
                done_before = store.syncs_done
                revision = await client.put("k", "v")
                # Acknowledged, yet the leader's sync of that entry has not completed ...
                assert store.syncs_done == done_before
                assert store.unsynced_writes > 0
                # ... and the leader does not count its own copy yet.
                assert node._core.progress()[leader] < revision
                assert node._core.commit >= revision
                while not store.waiting.is_set():  # the leader's sync of it is at the gate
                    await trio.sleep(0.01)
                store.closed = False
                store.gate.set()
                while node._core.progress()[leader] < revision:
                    await trio.sleep(0.01)
                assert await client.get("k") == b"v"
