"""The client port: a ROUTER that decodes client requests and sends replies.

No task per request: each request becomes a proposal, a read or a watch handed to the node
with a reply callback, and whoever finishes it (the apply task, usually) sends the reply
from that callback. A request the node cannot take (queue full) is answered ``Busy`` at
once. ``dispatch`` is shared with the embedded client, which calls it in-process with a
reply object of its own (no sockets, no encoding).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol

import trio
import zmq

from trioraft.kv.commands import (
    Command,
    Delete,
    InSession,
    Limits,
    Put,
    RegisterSession,
    Txn,
    Write,
)
from trioraft.node.watch import Offer, StreamReply
from wire import client_messages as cm
from wire import member_messages as mm
from wire import snapshot_messages as snap_msg
from wire.codec import decode, encode
from wire.errors import InvalidRequest, TrioraftError, WireError
from wire.zsock import open_router

log = logging.getLogger(__name__)

RECV_BATCH = 256
Send = Callable[[Any], None]


class NodeServices(Protocol):
    """What the client port needs from the node (the node implements it). None of these
    block; each answers through ``reply`` (or raises a ``TrioraftError`` at once)."""

    def status_reply(self) -> cm.StatusReply: ...

    def submit_write(self, cmd: Command, reply: Send) -> None: ...

    def submit_get(self, key: bytes, consistency: cm.Consistency, reply: Send) -> None: ...

    def submit_range(
        self,
        start: bytes,
        end: bytes | None,
        limit: int,
        consistency: cm.Consistency,
        reply: Send,
    ) -> None: ...

    def open_watch(self, req: cm.WatchRequest, out: StreamReply) -> None: ...

    def cancel_watch(self, key: Hashable) -> None: ...

    def admin(self, req: object, reply: Replier) -> None: ...

    def snapshot_save(self, reply: Send) -> None: ...

    def snapshot_read(
        self, index: int, term: int, offset: int, length: int, reply: Send
    ) -> None: ...


class Replier(StreamReply, Protocol):
    """Answers one request: once (``__call__``), or as a stream (``offer``)."""

    def __call__(self, result: Any) -> None: ...

    def stream_key(self, request_id: int) -> Hashable:
        """The key of the stream this client opened with request ``request_id``."""
        ...


def dispatch(services: NodeServices, limits: Limits, req: object, reply: Replier) -> None:
    """Check one request's limits and hand it to the node; raises ``TrioraftError`` (the
    caller answers it) for requests refused at once."""
    match req:
        case cm.PutRequest(key, value, session_id, seq):
            limits.check(key, value)
            services.submit_write(_session(Put(key, value), session_id, seq), reply)
        case cm.DeleteRequest(key, session_id, seq):
            limits.check(key)
            services.submit_write(_session(Delete(key), session_id, seq), reply)
        case cm.TxnRequest(compares, success, failure, session_id, seq):
            txn = Txn(tuple(compares), tuple(success), tuple(failure))
            limits.check_txn(txn)
            services.submit_write(_session(txn, session_id, seq), reply)
        case cm.GetRequest(key, consistency):
            limits.check(key)
            services.submit_get(key, consistency, reply)
        case cm.RangeRequest(start, end, limit, consistency):
            limits.check_range(start, end)
            services.submit_range(start, end, limit, consistency, reply)
        case cm.SessionRequest():
            services.submit_write(RegisterSession(), reply)
        case cm.WatchRequest(key, prefix):
            if not prefix:
                limits.check(key)
            limits.check_range(key, None)
            services.open_watch(req, reply)
        case cm.WatchCancelRequest(watch_id):
            services.cancel_watch(reply.stream_key(watch_id))
        case cm.StatusRequest():
            reply(services.status_reply())
        case snap_msg.SnapshotSaveRequest():
            services.snapshot_save(reply)
        case snap_msg.SnapshotReadRequest(index, term, offset, length):
            services.snapshot_read(index, term, offset, length, reply)
        case _ if isinstance(req, mm.ADMIN_REQUESTS):
            services.admin(req, reply)
        case _:
            raise WireError(f"{type(req).__name__} is not a client request")


def _session(cmd: Write, session_id: int, seq: int) -> Write | InSession:
    if not session_id:
        return cmd
    if seq < 1:
        raise InvalidRequest("a write under a session needs a sequence number >= 1")
    return InSession(session_id, seq, cmd)


@dataclass(slots=True)
class _Replier:
    """Encodes and sends the reply (or the stream) of one client request."""

    server: ClientServer
    routing_id: bytes
    request_id: int

    def __call__(self, result: Any) -> None:
        if isinstance(result, TrioraftError):
            result = error_reply(result)
        self.server.send(self.routing_id, self.request_id, result)

    @property
    def key(self) -> Hashable:
        return (self.routing_id, self.request_id)

    def stream_key(self, request_id: int) -> Hashable:
        return (self.routing_id, request_id)

    def offer(self, msg: Any) -> Offer:
        return self.server.offer(self.routing_id, self.request_id, msg)


class _Batch:
    """``ClientServer.batched()``: a plain class, cheaper than a generator-based one."""

    __slots__ = ("_batch", "_server")

    def __init__(self, server: ClientServer) -> None:
        self._server = server
        self._batch: list[list[bytes]] | None = None

    def __enter__(self) -> None:
        if self._server._batch is None:
            self._batch = self._server._batch = []

    def __exit__(self, *_exc: object) -> None:
        batch = self._batch
        if batch is not None:
            self._server._batch = self._batch = None
            if batch:
                self._server._flush(batch)


def error_reply(exc: TrioraftError) -> cm.ErrorReply:
    return cm.ErrorReply(exc.code, str(exc), getattr(exc, "leader_id", 0))


class ClientServer:
    def __init__(
        self,
        ctx: zmq.Context[zmq.Socket[bytes]],
        *,
        bind_addr: str,
        cluster_id: int,
        limits: Limits,
        max_message: int,
        services: NodeServices,
    ) -> None:
        self.cluster_id = cluster_id
        self._limits = limits
        self._max_message = max_message
        self._services = services
        self._router = open_router(ctx, bind_addr, max_message=max_message)
        self.malformed = 0
        self.unsent = 0
        self._batch: list[list[bytes]] | None = None

    def send(self, routing_id: bytes, request_id: int, reply: Any) -> None:
        """Send a reply now, or at the end of the current ``batched()`` block."""
        if self._batch is not None:
            self._batch.append(
                [routing_id, *encode(reply, cluster_id=self.cluster_id, request_id=request_id)]
            )
        elif self.offer(routing_id, request_id, reply) != Offer.SENT:
            self.unsent += 1

    def batched(self) -> _Batch:
        """Replies sent meanwhile (``send``, not ``offer``) leave together at the end, which
        saves the socket a check of its events per reply. Nested blocks join the outer one."""
        return _Batch(self)

    def _flush(self, batch: list[list[bytes]]) -> None:
        try:
            self.unsent += self._router.send_many_nowait(batch)
        except trio.ClosedResourceError:  # shutting down
            self.unsent += len(batch)

    def offer(self, routing_id: bytes, request_id: int, reply: Any) -> Offer:
        """Send now if the client's queue has room: ``SENT``, ``FULL`` or ``GONE``."""
        frames = [routing_id, *encode(reply, cluster_id=self.cluster_id, request_id=request_id)]
        try:
            return Offer.SENT if self._router.send_multipart_nowait(frames) else Offer.FULL
        except (WireError, trio.ClosedResourceError):  # the client went away
            return Offer.GONE

    async def run(self) -> None:
        try:
            while True:
                batch = await self._router.recv_batch(RECV_BATCH)
                with self.batched():  # answers given at once (errors, local reads)
                    for frames in batch:
                        self._handle(frames)
        finally:
            self._router.close()

    def _handle(self, frames: list[bytes]) -> None:
        routing_id = frames[0]
        try:
            decoded = decode(frames[1:], cluster_id=None, max_size=self._max_message)
            if decoded.cluster_id not in (0, self.cluster_id):
                raise WireError(f"request for cluster {decoded.cluster_id:#x}")
        except WireError as exc:
            self.malformed += 1
            if self.malformed <= 10:
                log.warning("dropped a malformed client request: %s", exc)
            return
        reply = _Replier(self, routing_id, decoded.request_id)
        try:
            dispatch(self._services, self._limits, decoded.msg, reply)
        except WireError as exc:
            self.malformed += 1
            if self.malformed <= 10:
                log.warning("dropped a client message: %s", exc)
        except TrioraftError as exc:
            reply(exc)
