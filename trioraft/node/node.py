"""The trio runtime around the pure Raft core: ``NodeBuilder`` and ``Node``.

``Node.run()`` supervises these tasks in one nursery; they talk over bounded memory channels
and each owns one piece of state:

=============  ==================  ====================================================
task           owns                does
=============  ==================  ====================================================
raft loop      the core            steps inbox events in batches, ticks, takes Readys
persist        log + hard state    writes the Readies not written inline, syncs (group
                                   commit), sends the messages that waited for the sync
apply          state machine       applies committed batches, answers proposals & reads
                                   (``trioraft/node/apply.py``)
peers          peer sockets        one ROUTER in, one DEALER + task per peer out
clients        client socket       decodes requests, hands them to the raft loop
=============  ==================  ====================================================

The Ready cycle (see ``trioraft.core.RawNode`` and ``trioraft/node/persist.py``): the raft
loop takes a Ready and sends its ``messages`` at once. A leader's Ready is written unsynced
in the loop's turn and advanced at once; the persist task syncs meanwhile (one sync at a
time, covering every write before it) and reports ``Synced``, when the leader counts its own
copy: its fsync runs while its AppendEntries travel (Raft thesis §10.2.1) and gates neither
its commits nor its next Ready. A follower's Ready is written and synced in the loop's turn
(its acks leave after it). Any other Ready goes to the persist task, and no new Ready is
taken until it reports back. Committed entries go to the apply task (or are applied at
once). Everything that arrived during a sync lands in the next one: one fsync for the lot.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Hashable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import trio
import zmq

from storage import Store
from storage.base import SnapshotStore
from trioraft.config import NodeConfig
from trioraft.core import CoreConfig, RawNode, Ready, Role, SoftState
from trioraft.core.confstate import encode_membership
from trioraft.kv.commands import Command, InSession, Limits, RegisterSession, encode_command
from trioraft.kv.state_machine import KVStateMachine
from trioraft.node.apply import Applier
from trioraft.node.bootstrap import JoinResult, check_flags, recover
from trioraft.node.clients import ClientServer, Replier, Send, dispatch
from trioraft.node.commit_bound import CommitBound
from trioraft.node.events import LeaderInfo, Persisted, Propose, ReadIndex, Synced
from trioraft.node.lease import LeaseTracker
from trioraft.node.membership import CoreCall, MembershipService
from trioraft.node.notify import WatchedValue
from trioraft.node.peers import PeerTransport
from trioraft.node.persist import Persister
from trioraft.node.reads import KeyRead, RangeRead, ReadGroup
from trioraft.node.snapshots import (
    CompactLog,
    SnapshotReport,
    SnapshotService,
    redo_pending_install,
    snapshot_dir_for,
)
from trioraft.node.storage_guard import StorageGuard, first_storage_error
from trioraft.node.waiters import Read, Waiters
from trioraft.node.watch import StreamReply, WatchHub
from wire import client_messages as cm
from wire.errors import Busy, NotLeader, StorageError, TrioraftError, Unavailable
from wire.messages import HeartbeatResponse, Message

log = logging.getLogger(__name__)

INBOX_SIZE = 4096
STEP_BATCH = 512  # events stepped per raft-loop turn before a Ready is taken
MAX_PENDING_WRITES = 8192  # proposed but not applied; beyond it writes are refused (Busy)
FREE_SLICE = 4096  # compacted entries freed per raft-loop turn (~0.5 ms)
_STAMPED = (RegisterSession, InSession)


class Node:
    """One Raft node. ``await node.run()`` serves until cancelled, then closes its storage."""

    def __init__(
        self,
        config: NodeConfig,
        store: Store,
        rng: random.Random,
        *,
        join: JoinResult | None = None,
    ) -> None:
        self.config = config
        self.node_id = config.node_id
        self.cluster_id = store.identity.cluster_id  # a joining node got it from the cluster
        self._store = store
        sdir = snapshot_dir_for(config, store)
        if sdir is not None:
            assert isinstance(store, SnapshotStore)
            redo_pending_install(store, sdir)  # a crash interrupted an install: finish it
        self._sm = KVStateMachine(
            store,
            session_ttl_ms=config.session_ttl_ms,
            max_sessions=config.max_sessions,
            max_range_bytes=min(4 << 20, config.max_message_bytes // 4),
        )
        state = store.load_raft_state()
        start = state.snapshot  # where a compacted log starts (docs/snapshots.md)
        # membership as stored with the state machine, else a snapshot's, else --peers
        base_index, base = recover(config, self._sm.membership, store, start, join)
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
                max_read_rounds=config.max_read_rounds,
                lazy_commit=config.lazy_commit,
                peer_addr=config.peer_addr,
                client_addr=config.client_addr,
            ),
            hard_state=state.hard_state,
            entries=state.entries,
            applied=self._sm.applied,
            rng=rng,
            # fresh_start stays False even for an empty data dir: a node can answer a
            # heartbeat before its first hard state is synced, so "empty on disk" does not
            # prove it never backed a leader's lease. It costs one election timeout at the
            # first start of a new cluster.
            snapshot=start,
            membership=base,
            membership_index=min(base_index, self._sm.applied),
        )
        check_flags(config, self._core.membership, self._core.membership_index)
        self.members = MembershipService(self, config, (base_index, base))
        fresh = not state.entries and state.hard_state.term == 0 and start is None
        self.members.start_bootstrap(self._core, fresh)
        self._storage = StorageGuard(config.node_id, store, lambda: self._sm.applied)
        self._limits = Limits(config.max_key_bytes, config.max_value_bytes, config.max_txn_ops)
        self._default_read = cm.Consistency[config.default_consistency.upper()]
        self._lease = LeaseTracker(config.node_id, config.peers, config.lease_ms / 1000)
        self._commit_bound = CommitBound(config.lazy_commit_ms if config.lazy_commit else 0)
        self._watch = WatchHub(
            node_id=config.node_id,
            enabled=config.watch_enabled,
            history=config.watch_history if config.watch_enabled else 0,
            buffer=config.watch_buffer,
            progress_ms=config.watch_progress_ms,
            max_watchers=config.max_watchers,
            applied=self._sm.applied,
        )
        self._waiters = Waiters()
        self._leader = WatchedValue[LeaderInfo | None](None)
        self._inbox_send, self._inbox = trio.open_memory_channel[Any](INBOX_SIZE)
        # At most one Ready (``_persisting``; with the last entry written unsynced before
        # it) and one sync (``_syncing``).
        self._persist_send, self._persist_recv = trio.open_memory_channel[
            tuple[Ready, tuple[int, int] | None] | Synced
        ](2)
        self._persisting = False
        self._syncing = False
        self._persister = Persister(config.node_id, store, self._storage, state.hard_state)
        self._read_group: ReadGroup | None = None  # reads the raft loop has not taken yet
        self._garbage: list[object] = []  # entries compaction dropped, not yet freed
        self._snapshots: SnapshotService | None = None
        if sdir is not None:
            assert isinstance(store, SnapshotStore)
            self._snapshots = SnapshotService(
                config,
                store,
                sdir,
                status=lambda: self._core.status,
                config_at=self._config_at,
                applied=lambda: self._sm.applied,
                events=self._inbox_send,
                send=self._send_peers,
                log_start=start.index if start is not None else 0,
            )
        self._applier = Applier(
            self._sm,
            self._storage,
            self._waiters,
            self._watch,
            self.members,
            self._snapshots,
            replies=self._replies,
        )
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
            self.members.attach(self._transport, self._core)  # peers of the membership
            self._clients = ClientServer(
                ctx,
                bind_addr=self.config.client_addr,
                cluster_id=self.cluster_id,
                limits=self._limits,
                max_message=self.config.max_message_bytes,
                services=self,
            )
            log.info(
                "node %d serving clients on %s, peers on %s (cluster %#x, %s)",
                self.node_id,
                self.client_addr,
                self.peer_addr,
                self.cluster_id,
                self._core.membership.conf,
            )
            async with trio.open_nursery() as nursery:
                if self._snapshots is not None:
                    self._transport.on_snapshot = self._snapshots.on_message
                    await nursery.start(self._snapshots.run)
                nursery.start_soon(self._transport.run)
                nursery.start_soon(self._clients.run)
                nursery.start_soon(self._watch.run)
                nursery.start_soon(self._raft_loop)
                nursery.start_soon(
                    self._persister.serve,
                    self._persist_recv,
                    self._transport.send,
                    self._inbox_send.send,
                    lambda: self._applier.install_done,
                )
                nursery.start_soon(self._applier.run)
                task_status.started()
        except* StorageError as group:  # damaged data found while serving: stop the node
            error = first_storage_error(group)
            log.error("node %d: stopping: %s", self.node_id, error)
            raise error from None
        finally:
            self.members.close()
            self._waiters.fail_all()
            self._watch.cancel_all(Unavailable.code, f"node {self.node_id} is shutting down")
            self._leader.close()
            self._persister.close()
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
    def submit_write(self, cmd: Command, reply: Send) -> None:
        """Propose a write; the leader stamps session commands with its clock (log time)."""
        self._check_leader()
        if self._waiters.proposals >= MAX_PENDING_WRITES:  # proposed, not yet applied
            raise Busy(f"node {self.node_id} has {MAX_PENDING_WRITES} writes in flight")
        stamp = int(time.time() * 1000) if type(cmd) in _STAMPED else 0
        self._enqueue(Propose(encode_command(cmd, stamp), reply))

    def submit_get(self, key: bytes, consistency: cm.Consistency, reply: Send) -> None:
        self._submit_read(KeyRead(self._sm, key, reply), consistency)

    def submit_range(
        self,
        start: bytes,
        end: bytes | None,
        limit: int,
        consistency: cm.Consistency,
        reply: Send,
    ) -> None:
        cap = self.config.max_scan_keys
        limit = min(limit, cap) if limit else cap
        self._submit_read(RangeRead(self._sm, start, end, limit, reply), consistency)

    def _submit_read(self, read: Read, consistency: cm.Consistency) -> None:
        """EVENTUAL: local state now. LEASE: the leader alone while its lease holds (both the
        core's tick-based lease and the wall-clock one of ``LeaseTracker``), at its commit
        index; otherwise, and for LINEARIZABLE, a ReadIndex round through the raft loop."""
        if consistency == cm.Consistency.DEFAULT:
            consistency = self._default_read
        if consistency == cm.Consistency.EVENTUAL:
            if self._snapshots is not None and self._snapshots.installing:
                raise Unavailable(f"node {self.node_id} is installing a snapshot")
            read.serve(self._sm.applied)
            return
        self._check_leader()
        if (
            consistency == cm.Consistency.LEASE
            and self.config.lease_ms
            and self._core.lease_valid()
            and trio.current_time() < self._lease.valid_until()
        ):
            self._waiters.add_read(self._core.commit, read, self._sm.applied)
            return
        group = self._read_group
        if group is None:  # the first read since the raft loop took the last group
            group = ReadGroup()
            self._enqueue(ReadIndex(group))
            self._read_group = group
        group.reads.append(read)

    def handle_request(self, req: object, reply: Replier) -> None:
        """Serve one client request in-process, as the client port would (the embedded
        client's path: no sockets, no encoding). Never blocks; answers through ``reply``
        or raises a ``TrioraftError``."""
        dispatch(self, self._limits, req, reply)

    def open_watch(self, req: cm.WatchRequest, out: StreamReply) -> None:
        self._watch.open(req, out)

    def cancel_watch(self, key: Hashable) -> None:
        self._watch.cancel(key)
        self.members.cancel_watch(key)

    def admin(self, req: object, reply: Replier) -> None:
        """A cluster-management request (``wire.member_messages``): see ``MembershipService``."""
        self.members.handle(req, reply)

    def membership_change_notifier(self) -> Any:
        """Async iterator of ``ClusterMembership``: the committed membership first, then one
        per committed change (as this node applies them). Ends when the node stops."""
        return self.members.hub.subscribe()

    def _check_leader(self) -> None:
        core = self._core
        if core.role is not Role.LEADER:
            raise NotLeader(f"node {self.node_id} is not the leader", core.leader_id)

    def _enqueue(self, event: object) -> None:
        try:
            self._inbox_send.send_nowait(event)
        except trio.WouldBlock:
            raise Busy(f"node {self.node_id} is overloaded; retry later") from None

    def _deliver(self, msg: Message) -> None:
        if self._storage.failing:
            return  # a node that cannot persist takes no part (see StorageGuard)
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
            # only the wait: handling is never cancelled
            with trio.move_on_at(min(next_tick, self._commit_bound.deadline)):
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
            if self._storage.failing:
                self._step_down_for_storage()
            elif now >= next_tick:
                if self.members.on_tick(self._core):  # False while a new cluster boots
                    self._core.tick()
                # after a stall, tick once and resume the cadence rather than burst
                next_tick = max(next_tick + period, now + period / 2)
            self._commit_bound.check(self._core, now)
            # While the leader's sync runs, its next batch waits (a batch per sync, as a
            # follower's per append); what the followers committed meanwhile is applied.
            apply_only = self._syncing
            if not self._persisting and self._core.has_ready(apply_only=apply_only):
                await self._take_ready(apply_only=apply_only)
            if self._garbage:  # compacted entries, freed a slice a turn (RaftLog.compact_to)
                del self._garbage[-FREE_SLICE:]

    async def _handle(self, event: Any) -> None:
        if isinstance(event, Propose):
            try:
                index, term = self._core.propose(event.data)
            except TrioraftError as exc:
                event.reply(exc)
            else:
                self._waiters.add_proposal(index, term, event.reply)
        elif isinstance(event, ReadIndex):
            if event.read is self._read_group:
                self._read_group = None  # later reads start a new group
            ctx = self._waiters.new_read(event.read)
            try:
                self._core.read_index(ctx)
            except TrioraftError as exc:
                self._waiters.cancel_read(ctx)
                event.read.fail(exc)
        elif isinstance(event, Persisted):
            self._finish_ready(event)
        elif isinstance(event, Synced):
            self._core.synced(event.index, event.term)
            self._syncing = False
            self._start_sync()
        elif isinstance(event, CompactLog):
            if self._snapshots is not None:  # the raft loop owns the core
                self._garbage += self._snapshots.compact(self._core, event.index)
        elif isinstance(event, CoreCall):
            event.fn(self._core)
        elif isinstance(event, SnapshotReport):
            self._core.report_snapshot(event.peer, event.ok)
        else:
            if type(event) is HeartbeatResponse:
                self._lease.on_response(event)
            self._core.step(event)

    async def _take_ready(self, *, apply_only: bool = False) -> None:
        rd = self._core.ready(apply_only=apply_only)
        self.members.after_ready(self._core)  # the peers of a new configuration first
        if rd.soft_state is not None:
            self._on_soft_state(rd.soft_state)
        assert self._transport is not None
        self._lease.on_sent(rd.messages, trio.current_time())
        self._transport.send(rd.messages)
        with self._replies():
            for rs in rd.read_states:
                self._waiters.read_confirmed(rs.context, rs.index, self._sm.applied)
        for req in rd.snapshot_requests:
            if self._snapshots is None or not self._snapshots.on_needed(req):
                self._core.report_snapshot(req.to, False)
        # A Ready that holds up nothing (a follower's, see Persister.write_now) is written
        # first, so that its acknowledgements leave before the committed entries are
        # applied: they do not wait for the apply, which needs nothing from this write.
        # A leader's is written unsynced: the next sync counts it (Persister.write_unsynced).
        unsynced = self._core.unsynced()  # earlier writes not synced yet
        nothing = not rd.entries and rd.hard_state is None and rd.snapshot is None
        synced = False
        if nothing and not rd.persisted_messages:
            written = True
        elif written := self._persister.write_unsynced(rd):
            pass
        elif written := self._persister.write_now(rd, unsynced):
            synced = self._persister.synced_all(rd, unsynced)
            self._transport.send(rd.persisted_messages)
        if rd.committed_entries:
            # Written here, durable on a quorum (the core's contract): apply meanwhile;
            # at once if the apply task has nothing queued (a loop turn saved).
            await self._applier.submit(rd.committed_entries)
        if rd.snapshot is not None:
            # after the batches before it; the persist task waits for it (docs/snapshots.md)
            await self._applier.submit_install(rd.snapshot)
        if written:
            self._core.advance(rd, synced=synced)
            self._start_sync()
            return
        self._persisting = True
        self._persist_send.send_nowait((rd, unsynced))  # only one Ready is ever in flight

    def _start_sync(self) -> None:
        """Have the persist task sync the writes left unsynced, unless a sync is under way
        (its end starts the next): one sync covers every write before it (group commit)."""
        if not self._syncing and (target := self._core.unsynced()) is not None:
            self._syncing = True
            self._persist_send.send_nowait(Synced(*target))

    def _step_down_for_storage(self) -> None:
        """Storage fails: lead no more (nothing can be acknowledged), and tick no more so as
        not to campaign, until writes succeed again (``StorageGuard``)."""
        if self._core.status.role != Role.FOLLOWER:
            self._core.step_down()
            self._leader.set(None)
            self._waiters.fail_unconfirmed_reads(0)

    def _finish_ready(self, done: Persisted) -> None:
        self._core.advance(done.ready, synced=done.synced)
        self._persisting = False

    def _on_soft_state(self, ss: SoftState) -> None:
        term = self._core.status.term
        self._leader.set(LeaderInfo(ss.leader_id, term) if ss.leader_id else None)
        self._watch.set_leader_known(bool(ss.leader_id))
        if ss.role != Role.LEADER:
            self._waiters.fail_unconfirmed_reads(ss.leader_id)
        log.info(
            "node %d: %s, leader %s, term %d",
            self.node_id,
            ss.role.name.lower(),
            ss.leader_id or "unknown",
            term,
        )

    def _replies(self) -> AbstractContextManager[None]:
        """Replies to clients sent meanwhile leave together (``ClientServer.batched``)."""
        return self._clients.batched() if self._clients is not None else nullcontext()

    # --- snapshots (docs/snapshots.md) ---
    def _config_at(self, index: int) -> tuple[tuple[int, ...], bytes]:
        """The configuration in force at applied ``index``: its voters, and encoded."""
        _at, membership = self._core.committed_membership(index)
        return membership.conf.voters, encode_membership(membership)

    def _send_peers(self, messages: Any) -> None:
        if self._transport is not None:
            self._transport.send(messages)

    def snapshot_save(self, reply: Send) -> None:
        """Client: build a snapshot now and answer ``SnapshotSaveReply``."""
        self._kept_snapshots().start_save(reply)

    def snapshot_read(self, index: int, term: int, offset: int, length: int, reply: Send) -> None:
        """Client: a piece of a kept snapshot (``SnapshotReadReply``)."""
        reply(self._kept_snapshots().read(index, term, offset, length))

    def _kept_snapshots(self) -> SnapshotService:
        if self._snapshots is None:
            raise Unavailable(f"node {self.node_id} keeps no snapshots (no data dir)")
        return self._snapshots
