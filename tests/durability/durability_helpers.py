"""Helpers for the durability tests (a unique module name: tests dirs are not packages).

- ``InProcessCluster``: real ``Node`` objects in one trio process on 127.0.0.1 free ports,
  each with the store a test gives it; a node can be stopped and started again.
- ``RecordingStore`` + ``record_sends``: one ordered log of every node's appends, completed
  syncs and sent Raft messages; ``check_acks_follow_syncs`` replays it and reports every
  acknowledgement that left before the data it vouches for was durable.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
import trio

from harness.cluster import free_ports
from storage import Identity, KvOp, MemoryStore, RaftState, Store
from trioraft import NodeBuilder, NodeConfig
from trioraft.errors import TrioraftError
from trioraft.node import Node
from trioraft.node.peers import PeerTransport
from wire.messages import (
    AppendEntriesResponse,
    Entry,
    HardState,
    Message,
    RequestVoteResponse,
)


def configs(n: int, tick_ms: int = 20) -> list[NodeConfig]:
    ports = free_ports(2 * n)
    peers = {i + 1: f"tcp://127.0.0.1:{ports[2 * i + 1]}" for i in range(n)}
    return [
        NodeConfig(
            node_id=i,
            peers=peers,
            peer_addr=peers[i],
            client_addr=f"tcp://127.0.0.1:{ports[2 * (i - 1)]}",
            tick_ms=tick_ms,
        )
        for i in sorted(peers)
    ]


def identity(cfg: NodeConfig) -> Identity:
    return Identity(cfg.cluster_id, cfg.node_id)


@dataclass
class InProcessCluster:
    nursery: trio.Nursery
    cfgs: dict[int, NodeConfig]
    nodes: dict[int, Node] = field(default_factory=dict)
    stores: dict[int, Store] = field(default_factory=dict)
    _scopes: dict[int, trio.CancelScope] = field(default_factory=dict)
    _done: dict[int, trio.Event] = field(default_factory=dict)

    @property
    def endpoints(self) -> list[str]:
        return [self.cfgs[i].client_addr for i in sorted(self.cfgs)]

    async def start(self, node_id: int, store: Store) -> Node:
        node = NodeBuilder(self.cfgs[node_id]).with_store(store).with_seed(node_id).start()
        done = trio.Event()

        async def serve(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            try:
                with trio.CancelScope() as scope:
                    self._scopes[node_id] = scope
                    await node.run(task_status=task_status)
            finally:
                done.set()

        await self.nursery.start(serve)
        self.nodes[node_id], self.stores[node_id], self._done[node_id] = node, store, done
        return node

    async def stop(self, node_id: int) -> None:
        """Cancel the node (as SIGTERM would) and wait until it closed its store."""
        self._scopes.pop(node_id).cancel()
        await self._done.pop(node_id).wait()
        del self.nodes[node_id]


@asynccontextmanager
async def in_process_cluster(
    cfgs: Sequence[NodeConfig], make_store: Callable[[NodeConfig], Store]
) -> AsyncIterator[InProcessCluster]:
    async with trio.open_nursery() as nursery:
        cluster = InProcessCluster(nursery, {c.node_id: c for c in cfgs})
        for cfg in cfgs:
            await cluster.start(cfg.node_id, make_store(cfg))
        yield cluster
        nursery.cancel_scope.cancel()


async def write_many(client, prefix: str, n: int, writers: int = 8) -> int:
    """n puts with concurrent writers, retried until acknowledged; returns the top revision."""
    todo = iter(range(n))
    top = 0

    async def writer() -> None:
        nonlocal top
        for i in todo:
            while True:
                try:
                    top = max(top, await client.put(f"{prefix}/{i}", f"v{i}", timeout=10))
                    break
                except TrioraftError:
                    await trio.sleep(0.05)

    async with trio.open_nursery() as nursery:
        for _ in range(writers):
            nursery.start_soon(writer)
    return top


async def wait_applied(client, endpoints: list[str], index: int) -> None:
    for endpoint in endpoints:
        while True:
            try:
                if (await client.status(endpoint, timeout=2)).applied >= index:
                    break
            except TrioraftError:
                pass
            await trio.sleep(0.02)


# --- the ordered event log ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Append:
    node: int
    entries: tuple[tuple[int, int], ...]  # (index, term)
    hard_state: HardState | None


@dataclass(frozen=True, slots=True)
class Sync:
    node: int
    covers: int  # how many of the node's appends (since its start) were written before it


@dataclass(frozen=True, slots=True)
class Sent:
    node: int
    msg: Message


@dataclass(frozen=True, slots=True)
class Restart:
    """The node restarted on its durable state (nothing unsynced survived)."""

    node: int


@dataclass(frozen=True, slots=True)
class Mark:
    text: str


Event = Append | Sync | Sent | Restart | Mark


class EventLog:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()  # syncs are recorded from worker threads

    def add(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def sent(self, node: int | None = None) -> Iterator[Message]:
        for e in list(self.events):
            if isinstance(e, Sent) and (node is None or e.node == node):
                yield e.msg


class RecordingStore:
    """Wraps a store; records each append and each *completed* sync in an ``EventLog``."""

    def __init__(self, inner: Store, log: EventLog, node_id: int) -> None:
        self.inner, self._log, self._node = inner, log, node_id
        self._appends = 0
        self._lock = threading.Lock()

    @property
    def path(self) -> str:
        return self.inner.path

    @property
    def identity(self) -> Identity:
        return self.inner.identity

    def load_raft_state(self) -> RaftState:
        return self.inner.load_raft_state()

    def append(self, entries: Sequence[Entry], hard_state: HardState | None) -> None:
        self.inner.append(entries, hard_state)
        with self._lock:
            self._appends += 1
        self._log.add(Append(self._node, tuple((e.index, e.term) for e in entries), hard_state))

    def sync(self) -> None:
        with self._lock:
            covers = self._appends  # only what was written before the sync started
        self.inner.sync()
        self._log.add(Sync(self._node, covers))

    def recover(self) -> None:
        self.inner.recover()

    def applied_index(self) -> int:
        return self.inner.applied_index()

    def apply(self, ops: Sequence[KvOp], applied_index: int) -> None:
        self.inner.apply(ops, applied_index)

    def get(self, key: bytes) -> bytes | None:
        return self.inner.get(key)

    def scan(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        return self.inner.scan(prefix)

    def close(self) -> None:
        self.inner.close()


def record_sends(monkeypatch: pytest.MonkeyPatch, log: EventLog) -> None:
    """Record every Raft message any in-process node hands to its transport."""
    original = PeerTransport.send

    def send(self: PeerTransport, messages: Sequence[Message]) -> None:
        for msg in messages:
            log.add(Sent(self.node_id, msg))
        original(self, messages)

    monkeypatch.setattr(PeerTransport, "send", send)


def memory_store(cfg: NodeConfig) -> MemoryStore:
    return MemoryStore(identity(cfg), f"mem:{cfg.node_id}")


# --- the checker --------------------------------------------------------------------------


@dataclass
class _Model:
    """One node's log and hard state: as written (live) and as synced (durable)."""

    live: dict[int, int] = field(default_factory=dict)  # index -> term
    live_hs: HardState = field(default_factory=HardState)
    durable: dict[int, int] = field(default_factory=dict)
    durable_hs: HardState = field(default_factory=HardState)
    writes: list[Append] = field(default_factory=list)  # since the node (re)started
    synced: int = 0  # how many of ``writes`` are durable

    @staticmethod
    def write(log: dict[int, int], hs: HardState, a: Append) -> HardState:
        if a.entries:  # Store.append: everything from the first index on is replaced
            first = a.entries[0][0]
            for index in [i for i in log if i >= first]:
                del log[index]
            log.update(a.entries)
        return a.hard_state if a.hard_state is not None else hs


@dataclass
class CheckResult:
    violations: list[str]
    acks_checked: int
    votes_checked: int
    top_acked: int = 0  # the highest index any node acknowledged


def check_acks_follow_syncs(events: Sequence[Event]) -> CheckResult:
    """Every successful append response and every granted vote must have been preceded, on
    its sender, by a completed sync covering it: the entries up to the acknowledged index
    (with the terms the node holds for them) and the term and vote of the granted vote.

    Replays the event log in order; pure, so a planted bug can be shown to be caught.
    """
    models: dict[int, _Model] = {}
    violations: list[str] = []
    acks = votes = top_acked = 0
    for n, e in enumerate(events):
        if isinstance(e, Mark):
            continue
        m = models.setdefault(e.node, _Model())
        if isinstance(e, Append):
            m.live_hs = _Model.write(m.live, m.live_hs, e)
            m.writes.append(e)
        elif isinstance(e, Sync):
            for a in m.writes[m.synced : e.covers]:
                m.durable_hs = _Model.write(m.durable, m.durable_hs, a)
            m.synced = max(m.synced, e.covers)
        elif isinstance(e, Restart):
            models[e.node] = _Model(dict(m.durable), m.durable_hs, dict(m.durable), m.durable_hs)
        elif isinstance(e.msg, AppendEntriesResponse) and e.msg.success:
            acks += 1
            i = e.msg.index
            top_acked = max(top_acked, i)
            if i and (m.durable.get(i) is None or m.durable.get(i) != m.live.get(i)):
                violations.append(
                    f"event {n}: node {e.node} acked index {i} (term {m.live.get(i)}) "
                    f"but durable has {m.durable.get(i)}: {e.msg}"
                )
            elif m.durable_hs.term < e.msg.term:
                violations.append(f"event {n}: node {e.node} acked in an unsynced term: {e.msg}")
        elif isinstance(e.msg, RequestVoteResponse) and e.msg.granted and not e.msg.pre_vote:
            votes += 1
            hs = m.durable_hs
            if (hs.term, hs.vote) != (e.msg.term, e.msg.dst):
                violations.append(
                    f"event {n}: node {e.node} granted its vote in term {e.msg.term} to "
                    f"{e.msg.dst} but durable hard state is {hs}"
                )
    return CheckResult(violations, acks, votes, top_acked)
