"""The client port: a ROUTER that decodes client requests and sends replies.

No task per request: each request becomes a proposal or a read handed to the raft loop with
a reply callback, and whoever finishes it (the apply task, usually) sends the reply from that
callback. A request the node cannot take (queue full) is answered ``Busy`` at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import zmq

from trioraft.kv.commands import Delete, Limits, Put
from wire import client_messages as cm
from wire.codec import decode, encode
from wire.errors import TrioraftError, WireError
from wire.zsock import open_router

log = logging.getLogger(__name__)

RECV_BATCH = 256
Send = Callable[[Any], None]


class NodeServices(Protocol):
    """What the client port needs from the node (the node implements it)."""

    def status_reply(self) -> cm.StatusReply: ...

    def submit_write(self, cmd: Put | Delete, reply: Send) -> None: ...

    def submit_read(self, key: bytes, consistency: cm.Consistency, reply: Send) -> None: ...


@dataclass(slots=True)
class _Replier:
    """Encodes and sends one reply to one client request (once)."""

    server: ClientServer
    routing_id: bytes
    request_id: int

    def __call__(self, result: Any) -> None:
        if isinstance(result, TrioraftError):
            result = error_reply(result)
        self.server.send(self.routing_id, self.request_id, result)


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

    def send(self, routing_id: bytes, request_id: int, reply: Any) -> None:
        frames = [routing_id, *encode(reply, cluster_id=self.cluster_id, request_id=request_id)]
        try:
            if not self._router.send_multipart_nowait(frames):
                self.unsent += 1
        except WireError:  # the client went away
            self.unsent += 1

    async def run(self) -> None:
        try:
            while True:
                for frames in await self._router.recv_batch(RECV_BATCH):
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
            self._dispatch(decoded.msg, reply)
        except TrioraftError as exc:
            reply(exc)

    def _dispatch(self, req: object, reply: _Replier) -> None:
        match req:
            case cm.PutRequest(key, value):
                self._limits.check(key, value)
                self._services.submit_write(Put(key, value), reply)
            case cm.DeleteRequest(key):
                self._limits.check(key)
                self._services.submit_write(Delete(key), reply)
            case cm.GetRequest(key, consistency):
                self._limits.check(key)
                self._services.submit_read(key, consistency, reply)
            case cm.StatusRequest():
                reply(self._services.status_reply())
            case _:
                raise WireError(f"{type(req).__name__} is not a client request")
