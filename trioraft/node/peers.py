"""Peer transport: one ROUTER for requests from peers, one DEALER per peer for ours.

Requests (votes, appends, heartbeats, TimeoutNow) leave on the DEALER to their target, whose
ROUTER receives them; responses go back through the receiver's ROUTER to the requester's
DEALER (its routing id is its node id). Each peer has a task that owns its DEALER: it sends
what the raft loop queued for that peer and feeds the peer's responses to the raft loop
(a request that finds its peer's queue empty leaves at once, from the raft loop).

Raft tolerates message loss, so nothing here blocks the raft loop: a full per-peer queue or
a peer that is down (DEALER ``IMMEDIATE``) drops the message and the protocol resends.
Incoming frames are decoded strictly; a malformed, foreign or spoofed one is dropped, counted
and logged once per peer, and never reaches the core.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import cast

import trio
import zmq

from wire.codec import decode, encode, node_routing_id, routing_id_node
from wire.errors import WireError
from wire.messages import RESPONSE_TYPES, SNAPSHOT_TRANSFER_TYPES, Message, PeerProbe
from wire.zsock import TrioSocket, open_dealer, open_router

log = logging.getLogger(__name__)

PEER_QUEUE = 1024  # messages queued per peer before new ones are dropped
RECV_BATCH = 256


class PeerTransport:
    def __init__(
        self,
        ctx: zmq.Context[zmq.Socket[bytes]],
        *,
        node_id: int,
        cluster_id: int,
        bind_addr: str,
        peers: Mapping[int, str],
        deliver: Callable[[Message], None],
        max_message: int,
    ) -> None:
        self.node_id = node_id
        self.cluster_id = cluster_id
        self._ctx = ctx
        self._deliver = deliver
        self._max_message = max_message
        self._peers = {pid: addr for pid, addr in peers.items() if pid != node_id}
        self._router = open_router(ctx, bind_addr, max_message=max_message)
        self._queues: dict[
            int, tuple[trio.MemorySendChannel[Message], trio.MemoryReceiveChannel[Message]]
        ] = {pid: trio.open_memory_channel[Message](PEER_QUEUE) for pid in self._peers}
        self.dropped: Counter[str] = Counter()  # why messages were dropped, for status/metrics
        self._warned: set[tuple[int, str]] = set()
        self._drop: Callable[[Message], bool] | None = None
        # Snapshot streams (docs/snapshots.md) go to the node's snapshot task, not the core.
        self.on_snapshot: Callable[[Message], None] | None = None
        # Membership changes add and remove peers while running (``update_peers``).
        self._nursery: trio.Nursery | None = None
        self._scopes: dict[int, trio.CancelScope] = {}
        self._dealers: dict[int, TrioSocket] = {}

    def update_peers(self, peers: Mapping[int, str]) -> None:
        """The membership changed: open a DEALER (and its task) for each new peer, close
        those of removed peers, and reconnect a peer whose address changed."""
        wanted = {pid: addr for pid, addr in peers.items() if pid != self.node_id}
        for pid in [p for p, addr in self._peers.items() if wanted.get(p) != addr]:
            del self._peers[pid]
            scope = self._scopes.pop(pid, None)
            if scope is not None:
                scope.cancel()
            self._queues.pop(pid)[0].close()
        for pid, addr in wanted.items():
            if pid not in self._peers:
                self._peers[pid] = addr
                self._queues[pid] = trio.open_memory_channel[Message](PEER_QUEUE)
                if self._nursery is not None:
                    self._start_peer(pid, addr)

    @property
    def peers(self) -> dict[int, str]:
        """The peers this transport connects to, by node id."""
        return dict(self._peers)

    def probe(self) -> set[int]:
        """The peers whose connection is up now: a ``PeerProbe`` was accepted by their
        DEALER (``IMMEDIATE`` refuses sends while no connection is complete)."""
        up: set[int] = set()
        for pid, dealer in list(self._dealers.items()):
            frames = encode(PeerProbe(self.node_id, pid), cluster_id=self.cluster_id)
            try:
                if dealer.send_multipart_nowait(frames):
                    up.add(pid)
            except (WireError, trio.ClosedResourceError):
                pass
        return up

    def _start_peer(self, pid: int, addr: str) -> None:
        assert self._nursery is not None
        scope = self._scopes[pid] = trio.CancelScope()
        self._nursery.start_soon(self._peer_task, pid, addr, scope)

    def _route(self, msg: Message) -> None:
        if isinstance(msg, PeerProbe):
            return  # a connection check (``probe``): nothing to do
        if isinstance(msg, SNAPSHOT_TRANSFER_TYPES):
            if self.on_snapshot is not None:
                self.on_snapshot(msg)
        else:
            self._deliver(msg)

    def set_drop_filter(self, drop: Callable[[Message], bool] | None) -> None:
        """TEST-ONLY fault hook: drop every message, sent or received, for which ``drop``
        returns True (None removes the filter). ``lambda m: True`` cuts this node off from
        its peers, in both directions; its client port keeps serving."""
        self._drop = drop

    def send(self, messages: Sequence[Message]) -> None:
        """Send messages to their peers; never blocks (drops when a queue is full).

        A request for a peer whose DEALER is open and whose queue is empty leaves at once,
        from the caller's task: the hop to the peer's task would cost a loop turn per
        replication round. Otherwise it waits in the peer's queue, behind the earlier ones.
        """
        now: dict[int, list[Message]] = {}
        for msg in messages:
            if self._drop is not None and self._drop(msg):
                continue
            if isinstance(msg, RESPONSE_TYPES):
                self._send_response(msg)
                continue
            queue = self._queues.get(msg.dst)
            if queue is None:
                self.dropped["unknown destination"] += 1
                continue
            if msg.dst in self._dealers and not queue[0].statistics().current_buffer_used:
                now.setdefault(msg.dst, []).append(msg)
                continue
            try:
                queue[0].send_nowait(msg)
            except trio.WouldBlock:
                self.dropped["peer queue full"] += 1
        for dst, batch in now.items():
            self._send_batch(self._dealers[dst], batch)

    def _send_batch(self, dealer: TrioSocket, batch: list[Message]) -> None:
        """Encode and send a peer's messages now; what its DEALER cannot take is dropped."""
        cid = self.cluster_id
        try:
            unsent = dealer.send_many_nowait([encode(msg, cluster_id=cid) for msg in batch])
        except trio.ClosedResourceError:  # removed from the membership, or shutting down
            unsent = len(batch)
        if unsent:
            self.dropped["peer unreachable"] += unsent

    def _send_response(self, msg: Message) -> None:
        frames = [node_routing_id(msg.dst), *encode(msg, cluster_id=self.cluster_id)]
        try:
            if not self._router.send_multipart_nowait(frames):
                self.dropped["peer not reading"] += 1
        except WireError:
            self.dropped["peer not connected"] += 1
        except trio.ClosedResourceError:  # shutting down: the router closed before us
            self.dropped["transport closed"] += 1

    async def run(self) -> None:
        """Serve until cancelled; closes every socket on the way out."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._recv_requests)
                for pid, addr in self._peers.items():
                    self._start_peer(pid, addr)
        finally:
            self._router.close()

    async def _recv_requests(self) -> None:
        while True:
            for frames in await self._router.recv_batch(RECV_BATCH):
                msg = self._decode(frames[1:], claimed=frames[0])
                if msg is not None and not isinstance(msg, RESPONSE_TYPES):
                    if self._drop is None or not self._drop(msg):
                        self._route(msg)

    async def _peer_task(self, peer_id: int, addr: str, scope: trio.CancelScope) -> None:
        receive = self._queues[peer_id][1]
        dealer = open_dealer(
            self._ctx, addr, routing_id=node_routing_id(self.node_id), immediate=True
        )
        self._dealers[peer_id] = dealer
        try:
            with scope, dealer:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._recv_responses, peer_id, dealer)
                    await self._send_loop(dealer, receive)
                    nursery.cancel_scope.cancel()  # removed from the membership
        finally:
            if self._dealers.get(peer_id) is dealer:
                del self._dealers[peer_id]

    async def _send_loop(
        self, dealer: TrioSocket, receive: trio.MemoryReceiveChannel[Message]
    ) -> None:
        """Send what the raft loop queued for this peer until its queue is closed."""
        while True:
            try:
                batch = [await receive.receive()]
            except (trio.ClosedResourceError, trio.EndOfChannel):
                return
            while len(batch) < RECV_BATCH:
                try:
                    batch.append(receive.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            self._send_batch(dealer, batch)

    async def _recv_responses(self, peer_id: int, dealer: TrioSocket) -> None:
        while True:
            for frames in await dealer.recv_batch(RECV_BATCH):
                msg = self._decode(frames, claimed=None, expect_src=peer_id)
                if msg is not None and isinstance(msg, RESPONSE_TYPES):
                    if self._drop is None or not self._drop(msg):
                        self._route(msg)

    def _decode(
        self, frames: Sequence[bytes], *, claimed: bytes | None, expect_src: int | None = None
    ) -> Message | None:
        try:
            if claimed is not None:
                expect_src = routing_id_node(claimed)
            msg = decode(frames, cluster_id=self.cluster_id, max_size=self._max_message).msg
            if not hasattr(msg, "src") or not hasattr(msg, "dst"):
                raise WireError(f"{type(msg).__name__} is not a peer message")
            if msg.dst != self.node_id:
                raise WireError(f"message for node {msg.dst} reached node {self.node_id}")
            if msg.src != expect_src:
                raise WireError(f"message claims to come from node {msg.src}")
            # A peer we do not know (yet) is accepted: our membership may lag behind the
            # one that added it (thesis §4.1); the cluster id keeps other clusters out.
        except WireError as exc:
            self._reject(expect_src or 0, exc)
            return None
        return cast(Message, msg)

    def _reject(self, peer: int, exc: WireError) -> None:
        self.dropped["malformed"] += 1
        reason = str(exc).split(":", 1)[0]
        if (peer, reason) not in self._warned:
            self._warned.add((peer, reason))
            log.warning("node %d: dropped a frame from peer %s: %s", self.node_id, peer or "?", exc)
