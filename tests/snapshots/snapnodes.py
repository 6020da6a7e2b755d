"""In-process clusters for the snapshot tests: real ``Node``s on RocksDB data dirs under
a temporary directory, real ZeroMQ on 127.0.0.1 free ports. Nodes can be stopped and
started again on the same data dir."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from harness.cluster import free_ports
from storage import Identity, open_store
from trioraft import NodeBuilder, NodeConfig
from trioraft.node import Node
from trioraft.node.snapshots import SnapshotService

SMALL = {
    "snapshot_entries": 50,
    "snapshot_catchup_entries": 0,
    "snapshot_chunk_bytes": 64 << 10,
    "snapshot_window": 4,
}


def configs(root: Path, n: int, tick_ms: int = 20, **settings: Any) -> list[NodeConfig]:
    ports = free_ports(2 * n)
    peers = {i + 1: f"tcp://127.0.0.1:{ports[2 * i + 1]}" for i in range(n)}
    return [
        NodeConfig(
            node_id=i,
            peers=peers,
            peer_addr=peers[i],
            client_addr=f"tcp://127.0.0.1:{ports[2 * (i - 1)]}",
            data_dir=str(root / f"node{i}"),
            tick_ms=tick_ms,
            **{**SMALL, **settings},
        )
        for i in sorted(peers)
    ]


class Cluster:
    def __init__(self, nursery: trio.Nursery, cfgs: list[NodeConfig]) -> None:
        self._nursery = nursery
        self.cfgs = {c.node_id: c for c in cfgs}
        self.nodes: dict[int, Node] = {}
        self._scopes: dict[int, trio.CancelScope] = {}
        self._stopped: dict[int, trio.Event] = {}

    @property
    def endpoints(self) -> list[str]:
        return [self.cfgs[i].client_addr for i in sorted(self.cfgs)]

    async def start(self, node_id: int) -> Node:
        cfg = self.cfgs[node_id]
        store = open_store(cfg.data_dir, Identity(cfg.cluster_id, cfg.node_id))
        node = NodeBuilder(cfg).with_store(store).with_seed(node_id).start()
        self.nodes[node_id] = node
        await self._nursery.start(self._run, node)
        return node

    async def _run(self, node: Node, task_status: trio.TaskStatus[None]) -> None:
        done = self._stopped[node.node_id] = trio.Event()
        try:
            with trio.CancelScope() as scope:
                self._scopes[node.node_id] = scope
                await node.run(task_status=task_status)
        finally:
            done.set()

    async def stop(self, node_id: int) -> None:
        self._scopes[node_id].cancel()
        await self._stopped[node_id].wait()

    def running(self, node_id: int) -> bool:
        return node_id in self._stopped and not self._stopped[node_id].is_set()

    def snaps(self, node_id: int) -> SnapshotService:
        service = self.nodes[node_id]._snapshots
        assert service is not None
        return service

    def leader_id(self) -> int | None:
        leaders = [
            (n._core.status.term, i)
            for i, n in self.nodes.items()
            if self.running(i) and n._core.status.role.name == "LEADER"
        ]
        return max(leaders)[1] if leaders else None

    async def wait_leader(self) -> int:
        while True:
            leader = self.leader_id()
            if leader is not None:
                return leader
            await trio.sleep(0.01)

    async def wait_applied(self, node_id: int, index: int) -> None:
        while self.nodes[node_id]._sm.applied < index:
            await trio.sleep(0.01)

    async def wait_compacted(self, node_id: int, index: int) -> None:
        """Until the node's log starts after ``index`` (a snapshot covers it)."""
        while self.nodes[node_id]._core.log_start[0] < index:
            await trio.sleep(0.01)


@asynccontextmanager
async def cluster(root: Path, n: int = 3, **settings: Any) -> AsyncIterator[Cluster]:
    async with trio.open_nursery() as nursery:
        c = Cluster(nursery, configs(root, n, **settings))
        for node_id in sorted(c.cfgs):
            await c.start(node_id)
        yield c
        nursery.cancel_scope.cancel()
