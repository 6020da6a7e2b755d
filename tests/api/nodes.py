"""In-process clusters for the client-API tests: real ``Node``s, real ZeroMQ on 127.0.0.1
free ports, in-memory stores; each node can be stopped or cut off from its peers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from harness.cluster import free_ports
from storage import Identity, MemoryStore
from trioraft import NodeBuilder, NodeConfig
from trioraft.node import Node


def configs(n: int, tick_ms: int = 20, **settings: Any) -> list[NodeConfig]:
    ports = free_ports(2 * n)
    peers = {i + 1: f"tcp://127.0.0.1:{ports[2 * i + 1]}" for i in range(n)}
    return [
        NodeConfig(
            node_id=i,
            peers=peers,
            peer_addr=peers[i],
            client_addr=f"tcp://127.0.0.1:{ports[2 * (i - 1)]}",
            tick_ms=tick_ms,
            **settings,
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

    def endpoint(self, node_id: int) -> str:
        return self.cfgs[node_id].client_addr

    async def start(self, node_id: int) -> Node:
        cfg = self.cfgs[node_id]
        store = MemoryStore(Identity(cfg.cluster_id, cfg.node_id))
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

    def isolate(self, node_id: int, cut: bool = True) -> None:
        """Cut ``node_id`` off from its peers (both directions), or heal it."""
        transport = self.nodes[node_id]._transport
        assert transport is not None
        transport.set_drop_filter((lambda _m: True) if cut else None)

    def leader_id(self) -> int | None:
        """The leader of the highest term, as the running nodes see it."""
        leaders = [
            (n._core.status.term, i)
            for i, n in self.nodes.items()
            if not self._stopped[i].is_set() and n._core.status.role.name == "LEADER"
        ]
        return max(leaders)[1] if leaders else None

    async def wait_leader(self, *, other_than: int | None = None) -> int:
        while True:
            leader = self.leader_id()
            if leader is not None and leader != other_than:
                return leader
            await trio.sleep(0.01)


@asynccontextmanager
async def cluster(n: int = 3, **settings: Any) -> AsyncIterator[Cluster]:
    async with trio.open_nursery() as nursery:
        c = Cluster(nursery, configs(n, **settings))
        for node_id in sorted(c.cfgs):
            await c.start(node_id)
        yield c
        nursery.cancel_scope.cancel()
