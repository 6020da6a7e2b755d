"""In-process clusters: real ``Node``s in the test's trio run, real ZeroMQ on 127.0.0.1
free ports; in-memory stores, or RocksDB data dirs under ``data_root``.

``initial`` nodes bootstrap from their ``peers``; ``spare`` more have ports reserved and
can ``join`` through the client API, as ``trioraft run --join`` does. ``stop`` cancels a
node; ``start`` brings it back on its store (a memory store keeps what it had synced:
``MemoryStore.reopen``). The Jepsen-style and kill -9 suites use real processes instead
(``harness.cluster``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from harness.cluster import free_ports
from storage import Identity, MemoryStore
from trioraft import NodeBuilder, NodeConfig
from trioraft.node import Node
from trioraft.node.bootstrap import JoinResult, join_cluster
from trioraft.node.snapshots import SnapshotService


class InProcessCluster:
    def __init__(
        self,
        nursery: trio.Nursery,
        initial: int,
        spare: int = 0,
        data_root: Path | None = None,
        **settings: Any,
    ):
        self._nursery = nursery
        ports = free_ports(2 * (initial + spare))
        ids = range(1, initial + spare + 1)
        self.peer_addrs = {i: f"tcp://127.0.0.1:{ports[2 * i - 1]}" for i in ids}
        self.client_addrs = {i: f"tcp://127.0.0.1:{ports[2 * i - 2]}" for i in ids}
        initial_peers = {i: self.peer_addrs[i] for i in range(1, initial + 1)}
        settings.setdefault("tick_ms", 20)
        self.settings = settings
        self.data_root = data_root
        self.cfgs: dict[int, NodeConfig] = {
            i: NodeConfig(
                node_id=i,
                peers=initial_peers,
                peer_addr=self.peer_addrs[i],
                client_addr=self.client_addrs[i],
                data_dir=self._dir(i),
                **settings,
            )
            for i in initial_peers
        }
        self.stores: dict[int, MemoryStore] = {}
        self.nodes: dict[int, Node] = {}
        self._scopes: dict[int, trio.CancelScope] = {}
        self._stopped: dict[int, trio.Event] = {}

    # --- who is where -----------------------------------------------------------------

    @property
    def endpoints(self) -> list[str]:
        """Client endpoints of the running nodes."""
        return [self.client_addrs[i] for i in self.running()]

    def endpoint(self, node_id: int) -> str:
        return self.client_addrs[node_id]

    def _dir(self, node_id: int) -> str:
        root = self.data_root
        return str(root / f"node{node_id}") if root is not None else "./unused"

    def is_running(self, node_id: int) -> bool:
        return node_id in self._stopped and not self._stopped[node_id].is_set()

    def running(self) -> list[int]:
        return [i for i in sorted(self.nodes) if self.is_running(i)]

    # --- starting and stopping --------------------------------------------------------

    async def start(self, node_id: int) -> Node:
        """Start (or restart, on its store) an initial node or a node that joined."""
        cfg = self.cfgs[node_id]
        return await self._run(self._build(cfg, self._store(node_id, cfg.cluster_id)))

    async def join(
        self, node_id: int, *, as_voter: bool = True, via: list[str] | None = None
    ) -> Node:
        """Start a new node that joins through ``via`` (default: every running node)."""
        cfg = NodeConfig(
            node_id=node_id,
            peer_addr=self.peer_addrs[node_id],
            client_addr=self.client_addrs[node_id],
            join=",".join(via or self.endpoints),
            join_as_voter=as_voter,
            data_dir=self._dir(node_id),
            **self.settings,
        )
        self.cfgs[node_id] = cfg
        result = await join_cluster(cfg, timeout=30)
        store = self._store(node_id, result.cluster_id)
        return await self._run(self._build(cfg, store, result))

    def _store(self, node_id: int, cluster_id: int) -> MemoryStore | None:
        """The node's memory store (the one it had, reopened), or None: it has a data dir."""
        if self.data_root is not None:
            return None
        kept = self.stores.get(node_id)
        store = kept.reopen() if kept is not None else MemoryStore(Identity(cluster_id, node_id))
        self.stores[node_id] = store
        return store

    def _build(
        self, cfg: NodeConfig, store: MemoryStore | None, join: JoinResult | None = None
    ) -> Node:
        builder = NodeBuilder(cfg).with_seed(cfg.node_id)
        if store is not None:
            builder = builder.with_store(store)
        if join is not None:
            builder = builder.with_join(join)
        return builder.start()

    async def _run(self, node: Node) -> Node:
        self.nodes[node.node_id] = node
        await self._nursery.start(self._serve, node)
        return node

    async def _serve(self, node: Node, task_status: trio.TaskStatus[None]) -> None:
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

    # --- what they see ----------------------------------------------------------------

    def leader_id(self) -> int | None:
        """The leader of the highest term, as the running nodes see it."""
        leaders = [
            (n._core.status.term, i)
            for i, n in self.nodes.items()
            if self.is_running(i) and n._core.status.role.name == "LEADER"
        ]
        return max(leaders)[1] if leaders else None

    async def wait_leader(self, *, other_than: int | None = None) -> int:
        while True:
            leader = self.leader_id()
            if leader is not None and leader != other_than:
                return leader
            await trio.sleep(0.01)

    async def wait_applied(self, node_id: int, index: int) -> None:
        while self.nodes[node_id]._sm.applied < index:
            await trio.sleep(0.01)

    async def wait_compacted(self, node_id: int, index: int) -> None:
        """Until the node's log starts after ``index`` (a snapshot covers it)."""
        while self.nodes[node_id]._core.log_start[0] < index:
            await trio.sleep(0.01)

    async def wait_snapshots_settled(self, node_id: int) -> None:
        """Until the node builds, compacts, prunes and installs no snapshot and none is due:
        its snapshot files stay as they are until it applies more."""
        while self.snaps(node_id).busy:
            await trio.sleep(0.01)

    def voters(self, node_id: int) -> tuple[int, ...]:
        return self.nodes[node_id]._core.committed_membership()[1].conf.voters

    def snaps(self, node_id: int) -> SnapshotService:
        service = self.nodes[node_id]._snapshots
        assert service is not None
        return service


@asynccontextmanager
async def cluster(
    initial: int = 3, spare: int = 0, data_root: Path | None = None, **settings: Any
) -> AsyncIterator[InProcessCluster]:
    """Start ``initial`` nodes; cancel them all on the way out."""
    async with trio.open_nursery() as nursery:
        c = InProcessCluster(nursery, initial, spare, data_root, **settings)
        for node_id in sorted(c.cfgs):
            await c.start(node_id)
        yield c
        nursery.cancel_scope.cancel()
