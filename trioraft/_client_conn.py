"""Client connections: ZeroMQ to a remote node, or in-process to an embedded ``Node``.

Both offer the same calls to ``Client``: ``call`` (one request, one reply) and
``open_stream`` / ``close_stream`` (a watch: many replies to one request). Errors come back
as the library's own types; ``Unreachable`` (an ``Unavailable``) means the request was not
sent at all, so no retry policy has to wonder whether it took effect.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import trio
import zmq

from trioraft.node.watch import Offer
from wire import client_messages as cm
from wire.codec import decode, encode
from wire.errors import ERROR_CODES, NotLeader, Timeout, TrioraftError, Unavailable, WireError
from wire.zsock import TrioSocket, open_dealer

if TYPE_CHECKING:
    from trioraft.node.node import Node

CONNECT_WAIT = 0.5  # seconds to wait for a connection before an endpoint counts as down
STREAM_CAPACITY = 4096  # stream messages buffered in the client before it resumes instead


class Unreachable(Unavailable):
    """The node could not be reached: the request was not sent."""


def error_from(reply: cm.ErrorReply) -> TrioraftError:
    cls = ERROR_CODES.get(reply.code, TrioraftError)
    if cls is NotLeader:
        return NotLeader(reply.message, reply.leader_id)
    return cls(reply.message)


class Stream:
    """The replies of one streaming request, buffered up to ``STREAM_CAPACITY``.

    A stream whose buffer overflowed is *broken*: it keeps what it has, then ``get``
    returns None, and the owner resumes from what it has seen (nothing is skipped).
    """

    def __init__(self, request_id: int, key: Hashable = None) -> None:
        self.request_id = request_id
        self.key = key
        self._items: deque[Any] = deque()
        self._ready = trio.Event()
        self.broken = False

    def offer(self, msg: Any) -> Offer:
        if self.broken:
            return Offer.GONE
        if len(self._items) >= STREAM_CAPACITY:
            return Offer.FULL
        self._items.append(msg)
        self._ready.set()
        return Offer.SENT

    def push(self, msg: Any) -> None:
        """From a socket reader that cannot wait: a full buffer breaks the stream."""
        if self.offer(msg) == Offer.FULL:
            self.break_()

    def break_(self) -> None:
        self.broken = True
        self._ready.set()

    async def get(self, timeout: float) -> Any:
        """The next message, or None after ``timeout`` idle seconds or once broken."""
        with trio.move_on_after(timeout):
            while not self._items and not self.broken:
                self._ready = trio.Event()
                await self._ready.wait()
        return self._items.popleft() if self._items else None


class Connection(Protocol):
    endpoint: str

    async def serve(self) -> None: ...

    async def call(self, request: Any, timeout: float) -> Any: ...

    async def open_stream(self, request: Any, timeout: float) -> Stream: ...

    def close_stream(self, stream: Stream) -> None: ...


@dataclass(slots=True)
class _Slot:
    done: trio.Event
    reply: Any = None


class ZmqConnection:
    """One DEALER to one node, with a task routing replies to the calls that wait for them."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str, max_message: int):
        self.endpoint = endpoint
        self._sock: TrioSocket = open_dealer(ctx, endpoint, routing_id=None, immediate=True)
        self._max_message = max_message
        self._slots: dict[int, _Slot] = {}
        self._streams: dict[int, Stream] = {}
        self._ids = itertools.count(1)

    async def serve(self) -> None:
        with self._sock:
            while True:
                for frames in await self._sock.recv_batch(256):
                    try:
                        decoded = decode(frames, cluster_id=None, max_size=self._max_message)
                    except WireError:
                        continue
                    stream = self._streams.get(decoded.request_id)
                    if stream is not None:
                        stream.push(decoded.msg)
                        if stream.broken:
                            self.close_stream(stream)
                        continue
                    slot = self._slots.pop(decoded.request_id, None)
                    if slot is not None:
                        slot.reply = decoded.msg
                        slot.done.set()

    async def _send(self, request: Any, request_id: int, timeout: float) -> None:
        frames = encode(request, cluster_id=0, request_id=request_id)
        # IMMEDIATE: a send waits (briefly) until the connection is up
        with trio.move_on_after(min(timeout, CONNECT_WAIT)) as connecting:
            await self._sock.send_multipart(frames)
        if connecting.cancelled_caught:
            raise Unreachable(f"{self.endpoint} is unreachable")

    async def call(self, request: Any, timeout: float) -> Any:
        """Send one request and wait up to ``timeout`` for its reply.

        Raises ``Unreachable`` if the node cannot be reached, ``Timeout`` if no reply came,
        or the error the server answered with. If cancelled or timed out after sending, the
        request may still take effect.
        """
        request_id = next(self._ids)
        slot = _Slot(trio.Event())
        self._slots[request_id] = slot
        try:
            await self._send(request, request_id, timeout)
            with trio.move_on_after(timeout) as waiting:
                await slot.done.wait()
            if waiting.cancelled_caught:
                raise Timeout(f"no reply from {self.endpoint} within {timeout:g} s")
        finally:
            self._slots.pop(request_id, None)
        reply = slot.reply
        if isinstance(reply, cm.ErrorReply):
            raise error_from(reply)
        return reply

    async def open_stream(self, request: Any, timeout: float) -> Stream:
        stream = Stream(next(self._ids))
        self._streams[stream.request_id] = stream
        try:
            await self._send(request, stream.request_id, timeout)
        except BaseException:
            self._streams.pop(stream.request_id, None)
            raise
        return stream

    def close_stream(self, stream: Stream) -> None:
        """Stop a stream; the node is told so (best effort: it also notices a gone client)."""
        if self._streams.pop(stream.request_id, None) is None:
            return
        stream.break_()
        frames = encode(cm.WatchCancelRequest(stream.request_id), cluster_id=0, request_id=0)
        try:
            self._sock.send_multipart_nowait(frames)
        except (WireError, trio.ClosedResourceError):
            pass


class _LocalReply:
    """The reply object an embedded node answers through (see ``node.clients.Replier``)."""

    __slots__ = ("conn", "key", "slot", "stream")

    def __init__(self, conn: LocalConnection, key: Hashable, slot: _Slot | None, stream: Any):
        self.conn, self.key, self.slot, self.stream = conn, key, slot, stream

    def __call__(self, result: Any) -> None:
        if self.stream is not None:
            if isinstance(result, TrioraftError):
                result = cm.ErrorReply(result.code, str(result), getattr(result, "leader_id", 0))
            self.stream.offer(result)
        elif self.slot is not None and not self.slot.done.is_set():
            self.slot.reply = result
            self.slot.done.set()

    def offer(self, msg: Any) -> Offer:
        return self.stream.offer(msg) if self.stream is not None else Offer.GONE

    def stream_key(self, request_id: int) -> Hashable:
        return (id(self.conn), request_id)


class LocalConnection:
    """An embedded node, called in-process: no sockets, no encoding."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.endpoint = node.client_addr
        self._ids = itertools.count(1)

    async def serve(self) -> None:
        await trio.sleep_forever()

    async def call(self, request: Any, timeout: float) -> Any:
        await trio.lowlevel.checkpoint()
        request_id = next(self._ids)
        slot = _Slot(trio.Event())
        reply = _LocalReply(self, (id(self), request_id), slot, None)
        try:
            self.node.handle_request(request, reply)
        except TrioraftError as exc:
            reply(exc)
        with trio.move_on_after(timeout) as waiting:
            await slot.done.wait()
        if waiting.cancelled_caught:
            raise Timeout(f"no reply from the embedded node within {timeout:g} s")
        result = slot.reply
        if isinstance(result, cm.ErrorReply):
            raise error_from(result)
        if isinstance(result, TrioraftError):
            raise result
        return result

    async def open_stream(self, request: Any, timeout: float) -> Stream:
        await trio.lowlevel.checkpoint()
        request_id = next(self._ids)
        stream = Stream(request_id, (id(self), request_id))
        reply = _LocalReply(self, stream.key, None, stream)
        try:
            self.node.handle_request(request, reply)
        except TrioraftError as exc:
            stream.offer(cm.ErrorReply(exc.code, str(exc)))
        return stream

    def close_stream(self, stream: Stream) -> None:
        stream.break_()
        self.node.cancel_watch(stream.key)
