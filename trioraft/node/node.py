"""The trio runtime around the pure Raft core: ``NodeBuilder`` and ``Node``.

``Node.run()`` supervises these tasks in one nursery; they talk over bounded memory channels
and each owns one piece of state:

=============  ==================  ====================================================
task           owns                does
=============  ==================  ====================================================
raft loop      the core            steps inbox events in batches, ticks, takes Readys
persist        log + hard state    appends each Ready's entries, syncs (group commit),
                                   sends the messages that waited for the sync
apply          state machine       applies committed batches, answers proposals & reads
peers          peer sockets        one ROUTER in, one DEALER + task per peer out
clients        client socket       decodes requests, hands them to the raft loop
=============  ==================  ====================================================

The Ready cycle (sync mode, see ``trioraft.core.RawNode``): the raft loop takes a Ready,
sends its ``messages`` at once (the leader replicates while it writes its own log, Raft
thesis §10.2.1) and hands it to the persist task; it keeps stepping messages meanwhile but
takes no new Ready until the persist task reports back. Then the committed entries go to the
apply task and the core is advanced. Everything that arrived during the sync lands in the
next Ready: one append, one fsync for the lot.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any

import trio
import zmq

from storage import Identity, Store, open_store
from trioraft.config import NodeConfig
from trioraft.core import CoreConfig, RawNode, Ready, Role, SoftState
from trioraft.kv.commands import Delete, Limits, Put, encode_command
from trioraft.kv.state_machine import KVStateMachine
from trioraft.node.clients import ClientServer, Send
from trioraft.node.notify import WatchedValue
from trioraft.node.peers import PeerTransport
from trioraft.node.waiters import Waiters
from wire import client_messages as cm
from wire.errors import Busy, NotLeader, TrioraftError
from wire.messages import Entry, Message

log = logging.getLogger(__name__)

INBOX_SIZE = 4096
APPLY_QUEUE = 64
STEP_BATCH = 512  # events stepped per raft-loop turn before a Ready is taken


@dataclass(frozen=True, slots=True)
class LeaderInfo:
    leader_id: int
    term: int


@dataclass(frozen=True, slots=True)
class _Propose:
    data: bytes
    reply: Send


@dataclass(frozen=True, slots=True)
class _ReadIndex:
    read: _KeyRead


@dataclass(frozen=True, slots=True)
class _Persisted:
    ready: Ready


class _KeyRead:
    """A get waiting for its read index to be applied."""

    __slots__ = ("key", "reply", "sm")

    def __init__(self, sm: KVStateMachine, key: bytes, reply: Send) -> None:
        self.sm, self.key, self.reply = sm, key, reply

    def serve(self, applied: int) -> None:
        self.reply(cm.GetReply(self.sm.get(self.key), applied))

    def fail(self, error: TrioraftError) -> None:
        self.reply(error)


class NodeBuilder:
    """Builds a :class:`Node` from a config; tests may swap the store and seed the rng."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self._store: Store | None = None
        self._seed: int | None = None

    def with_store(self, store: Store) -> NodeBuilder:
        self._store = store
        return self

    def with_seed(self, seed: int) -> NodeBuilder:
        self._seed = seed
        return self

    def start(self) -> Node:
        """Open storage and recover; raises ``StorageError`` (dir in use, corrupt, foreign)."""
        cfg = self.config
        store = self._store or open_store(cfg.data_dir, Identity(cfg.cluster_id, cfg.node_id))
        return Node(cfg, store, random.Random(self._seed))


class Node:
    """One Raft node. ``await node.run()`` serves until cancelled, then closes its storage."""

    def __init__(self, config: NodeConfig, store: Store, rng: random.Random) -> None:
        self.config = config
        self.node_id = config.node_id
        self.cluster_id = config.cluster_id
        self._store = store
        self._sm = KVStateMachine(store)
        state = store.load_raft_state()
        self._core = RawNode(
            CoreConfig(
                node_id=config.node_id,
                voters=tuple(sorted(config.peers)),
                election_ticks=config.election_ticks,
                heartbeat_ticks=config.heartbeat_ticks,
                pre_vote=config.pre_vote,
                check_quorum=config.check_quorum,
                max_append_bytes=config.max_append_bytes,
                max_inflight=config.max_inflight,
            ),
            hard_state=state.hard_state,
            entries=state.entries,
            applied=self._sm.applied,
            rng=rng,
        )
        self._limits = Limits(config.max_key_bytes, config.max_value_bytes)
        self._waiters = Waiters()
        self._leader = WatchedValue[LeaderInfo | None](None)
        self._inbox_send, self._inbox = trio.open_memory_channel[Any](INBOX_SIZE)
        self._persist_send, self._persist_recv = trio.open_memory_channel[Ready](1)
        self._apply_send, self._apply_recv = trio.open_memory_channel[tuple[Entry, ...]](
            APPLY_QUEUE
        )
        self._persisting = False
        self._core_hard_state = (state.hard_state.term, state.hard_state.vote)
        self._transport: PeerTransport | None = None
        self._clients: ClientServer | None = None
        self.peer_addr = config.peer_addr
        self.client_addr = config.client_addr

    # --- public API ---
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind the sockets, serve until cancelled, then close sockets and storage.

        ``task_status.started()`` is called once both ports are bound, so
        ``await nursery.start(node.run)`` returns a node that accepts connections.
        """
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        try:
            self._transport = PeerTransport(
                ctx,
                node_id=self.node_id,
                cluster_id=self.cluster_id,
                bind_addr=self.config.peer_addr,
                peers=self.config.peers,
                deliver=self._deliver,
                max_message=self.config.max_message_bytes,
            )
            self._clients = ClientServer(
                ctx,
                bind_addr=self.config.client_addr,
                cluster_id=self.cluster_id,
                limits=self._limits,
                max_message=self.config.max_message_bytes,
                services=self,
            )
            log.info(
                "node %d serving clients on %s, peers on %s (cluster %#x, %d voters)",
                self.node_id,
                self.client_addr,
                self.peer_addr,
                self.cluster_id,
                len(self.config.peers),
            )
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._transport.run)
                nursery.start_soon(self._clients.run)
                nursery.start_soon(self._raft_loop)
                nursery.start_soon(self._persist_loop)
                nursery.start_soon(self._apply_loop)
                task_status.started()
        finally:
            self._waiters.fail_all()
            self._leader.close()
            self._store.close()
            ctx.destroy(linger=0)

    def leader_change_notifier(self) -> Any:
        """Async iterator of ``LeaderInfo(leader_id, term)``, or ``None`` while there is no
        known leader: the current value first, then each change (intermediate values may be
        skipped by a slow consumer). Ends when the node stops."""
        return self._leader.subscribe()

    def dropped_frames(self) -> int:
        """Malformed or foreign frames dropped on the peer and client ports so far."""
        peer = self._transport.dropped["malformed"] if self._transport else 0
        return peer + (self._clients.malformed if self._clients else 0)

    @property
    def leader(self) -> LeaderInfo | None:
        return self._leader.value

    def status_reply(self) -> cm.StatusReply:
        st = self._core.status
        return cm.StatusReply(
            node_id=self.node_id,
            cluster_id=self.cluster_id,
            role=cm.Role[st.role.name],
            term=st.term,
            leader_id=st.leader_id,
            commit=st.commit,
            applied=self._sm.applied,
            last_index=st.last_index,
        )

    # --- requests from the client port (never block) ---
    def submit_write(self, cmd: Put | Delete, reply: Send) -> None:
        self._check_leader()
        self._enqueue(_Propose(encode_command(cmd), reply))

    def submit_read(self, key: bytes, consistency: cm.Consistency, reply: Send) -> None:
        read = _KeyRead(self._sm, key, reply)
        if consistency == cm.Consistency.EVENTUAL:
            read.serve(self._sm.applied)
            return
        self._check_leader()
        self._enqueue(_ReadIndex(read))

    def _check_leader(self) -> None:
        st = self._core.status
        if st.role != Role.LEADER:
            raise NotLeader(f"node {self.node_id} is not the leader", st.leader_id)

    def _enqueue(self, event: object) -> None:
        try:
            self._inbox_send.send_nowait(event)
        except trio.WouldBlock:
            raise Busy(f"node {self.node_id} is overloaded; retry later") from None

    def _deliver(self, msg: Message) -> None:
        try:
            self._inbox_send.send_nowait(msg)
        except trio.WouldBlock:
            pass  # Raft resends; the peer transport counts nothing here, the core will retry

    # --- raft loop: the only task that touches the core ---
    async def _raft_loop(self) -> None:
        period = self.config.tick_ms / 1000
        next_tick = trio.current_time() + period
        while True:
            event: Any = None
            with trio.move_on_at(next_tick):  # only the wait: handling is never cancelled
                event = await self._inbox.receive()
            if event is not None:
                await self._handle(event)
                for _ in range(STEP_BATCH):
                    try:
                        event = self._inbox.receive_nowait()
                    except trio.WouldBlock:
                        break
                    await self._handle(event)
            now = trio.current_time()
            if now >= next_tick:
                self._core.tick()
                # after a stall, tick once and resume the cadence rather than burst
                next_tick = max(next_tick + period, now + period / 2)
            if not self._persisting and self._core.has_ready():
                await self._take_ready()

    async def _handle(self, event: Any) -> None:
        if isinstance(event, _Propose):
            try:
                index, term = self._core.propose(event.data)
            except TrioraftError as exc:
                event.reply(exc)
            else:
                self._waiters.add_proposal(index, term, event.reply)
        elif isinstance(event, _ReadIndex):
            ctx = self._waiters.new_read(event.read)
            try:
                self._core.read_index(ctx)
            except TrioraftError as exc:
                self._waiters.cancel_read(ctx)
                event.read.fail(exc)
        elif isinstance(event, _Persisted):
            self._finish_ready(event.ready)
        else:
            self._core.step(event)

    async def _take_ready(self) -> None:
        rd = self._core.ready()
        if rd.soft_state is not None:
            self._on_soft_state(rd.soft_state)
        assert self._transport is not None
        self._transport.send(rd.messages)
        for rs in rd.read_states:
            self._waiters.read_confirmed(rs.context, rs.index, self._sm.applied)
        if rd.committed_entries:
            # Already durable here (the core's contract): apply while this Ready persists.
            await self._apply_send.send(rd.committed_entries)
        if not rd.entries and rd.hard_state is None and not rd.persisted_messages:
            self._core.advance(rd)
            return
        self._persisting = True
        self._persist_send.send_nowait(rd)  # capacity 1; only one Ready is ever in flight

    def _finish_ready(self, rd: Ready) -> None:
        self._core.advance(rd)
        self._persisting = False

    def _on_soft_state(self, ss: SoftState) -> None:
        term = self._core.status.term
        self._leader.set(LeaderInfo(ss.leader_id, term) if ss.leader_id else None)
        if ss.role != Role.LEADER:
            self._waiters.fail_unconfirmed_reads(ss.leader_id)
        log.info(
            "node %d: %s, leader %s, term %d",
            self.node_id,
            ss.role.name.lower(),
            ss.leader_id or "unknown",
            term,
        )

    # --- persist: the only task that writes the log ---
    async def _persist_loop(self) -> None:
        """Write each Ready's entries and hard state; sync when Raft's safety needs it.

        Entries, term and vote must be durable before the messages that depend on them
        leave. A change of the commit index alone is written but not synced (as etcd does):
        a commit index lost in a crash is learned again from the leader, and applies never
        run ahead of the durable log.
        """
        assert self._transport is not None
        synced = self._core_hard_state
        async for rd in self._persist_recv:
            hs = rd.hard_state
            if rd.entries or hs is not None:
                self._store.append(rd.entries, hs)
                if rd.entries or (hs is not None and (hs.term, hs.vote) != synced):
                    await trio.to_thread.run_sync(self._store.sync)
                    if hs is not None:
                        synced = (hs.term, hs.vote)
            self._transport.send(rd.persisted_messages)
            await self._inbox_send.send(_Persisted(rd))

    # --- apply: the only task that writes the state machine ---
    async def _apply_loop(self) -> None:
        async for entries in self._apply_recv:
            results = self._sm.apply(entries)
            for entry in entries:
                result = results.get(entry.index)
                reply = result and cm.WriteReply(result.revision, result.existed)
                self._waiters.resolve_applied(entry.index, entry.term, reply)
            self._waiters.serve_reads(self._sm.applied)
