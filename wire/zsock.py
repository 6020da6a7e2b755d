"""A trio adapter for pyzmq sockets, and factories for the sockets trioraft uses.

pyzmq has no trio integration. ZeroMQ exposes one file descriptor per socket (``ZMQ_FD``)
that becomes readable when the socket's state *may* have changed; it is edge-triggered:
any ZeroMQ call on the socket (a send, a recv, reading ``EVENTS``) may consume the edge. So:

* every operation is tried with ``NOBLOCK`` first; only on EAGAIN does a task read
  ``EVENTS`` and wait;
* one task at a time waits on the FD (``trio.lowlevel.wait_readable``); other waiting
  tasks park on a :class:`trio.lowlevel.ParkingLot` per direction;
* after every operation and ``EVENTS`` read, while anybody waits, ``EVENTS`` is re-checked
  and the waiters whose condition now holds are woken (the FD waiter through its cancel
  scope), so an edge consumed by one task cannot strand another;
* when the FD waiter stops waiting (woken, cancelled or closed) it wakes every parked task
  so that one of them takes over the FD.

A ROUTER refuses a send with EAGAIN when that peer's queue is full, while ``EVENTS`` still
reports it writable if any other peer has room. ``send_multipart`` then retries on FD
activity or after a short, growing delay (0.5 to 10 ms) instead of spinning on the flag.
On a ROUTER prefer ``send_multipart_nowait`` and drop: Raft retries by itself.

Cancellation: a cancelled receive took no message off the socket; a cancelled send sent
nothing (ZeroMQ queues multipart messages atomically, and the adapter only yields before
an attempt or after a successful one).

Errors: EAGAIN from the ``_nowait`` methods is a ``False``/``None`` result; EHOSTUNREACH (a
ROUTER with ``ROUTER_MANDATORY`` sending to a routing id that is not connected) raises
:class:`PeerUnreachable`; a closed socket or terminated context raises
:class:`trio.ClosedResourceError`; other ZeroMQ errors raise :class:`~wire.errors.WireError`.

Sockets are not thread-safe: use each from the trio thread only.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Final, Self

import trio
import zmq
from trio.lowlevel import (
    ParkingLot,
    cancel_shielded_checkpoint,
    checkpoint_if_cancelled,
    wait_readable,
)

from .codec import DEFAULT_MAX_MESSAGE
from .errors import WireError

__all__ = ["Frame", "PeerUnreachable", "TrioSocket", "ZmqContext", "open_dealer", "open_router"]

ZmqContext = zmq.Context[zmq.Socket[bytes]]
Frame = bytes | bytearray | memoryview  # what the send methods accept; receiving gives bytes

# Plain ints in the hot paths: pyzmq's enum arithmetic costs ~10% CPU.
_NOBLOCK: Final = int(zmq.NOBLOCK)
_SNDMORE_NOBLOCK: Final = int(zmq.SNDMORE) | _NOBLOCK
_EVENTS: Final = int(zmq.EVENTS)
_POLLIN: Final = int(zmq.POLLIN)
_POLLOUT: Final = int(zmq.POLLOUT)
_EHOSTUNREACH: Final = errno.EHOSTUNREACH
_ETERM: Final = int(zmq.ETERM)
_ENOTSOCK: Final = errno.ENOTSOCK

_STALE_DELAY_MIN: Final = 0.0005  # seconds; see the module docstring (ROUTER EAGAIN)
_STALE_DELAY_MAX: Final = 0.01


class PeerUnreachable(WireError):
    """A ROUTER send named a routing id that is not connected (EHOSTUNREACH).

    Nothing was sent. Raised by both send methods of a ROUTER socket with
    ``ROUTER_MANDATORY`` (which ``open_router`` sets).
    """


def _next_stale_delay(delay: float, retried: bool) -> float:
    """How long to wait next when EVENTS cannot be trusted (0: it can).

    ``retried``: the operation just failed right after EVENTS said it would not, as a
    ROUTER's send does when one peer is full. From then on, wait for FD activity or a
    timer, growing from 0.5 to 10 ms, instead of spinning on the flag.
    """
    if delay:
        return min(delay * 2, _STALE_DELAY_MAX)
    return _STALE_DELAY_MIN if retried else 0.0


def _map_error(exc: zmq.ZMQError, what: str) -> Exception:
    if exc.errno in (_ETERM, _ENOTSOCK):
        return trio.ClosedResourceError(f"{what}: the ZeroMQ socket or context is closed")
    if exc.errno == _EHOSTUNREACH:
        return PeerUnreachable(f"{what}: no peer with this routing id is connected")
    return WireError(f"{what}: {exc.strerror}")


class TrioSocket:
    """A pyzmq socket usable from trio tasks; several tasks may send and receive at once.

    Frames are ``bytes``; a multipart message is a list of them and travels atomically.
    The socket is closed by ``close()`` or by leaving ``with``/``async with``.
    """

    __slots__ = (
        "_closed",
        "_fd",
        "_fd_busy",
        "_fd_scope",
        "_fd_want",
        "_recv_lot",
        "_send_lot",
        "_sock",
        "_stale_lot",
        "endpoint",
    )

    def __init__(self, sock: zmq.Socket[bytes], *, endpoint: str | None = None) -> None:
        self._sock = sock
        self._fd: int = sock.getsockopt(zmq.FD)  # type: ignore[assignment]  # an int option
        self._closed = False
        # The one task waiting on the FD: what wakes it early (_POLLIN/_POLLOUT, or 0 when it
        # waits for FD activity only) and its cancel scope.
        self._fd_busy = False
        self._fd_want = 0
        self._fd_scope: trio.CancelScope | None = None
        self._recv_lot = ParkingLot()  # woken when EVENTS has POLLIN
        self._send_lot = ParkingLot()  # woken when EVENTS has POLLOUT
        self._stale_lot = ParkingLot()  # woken by FD activity or their own timer only
        self.endpoint = endpoint
        """The address the socket was bound to (``LAST_ENDPOINT``, with the real port), if any."""

    @property
    def zmq_socket(self) -> zmq.Socket[bytes]:
        """The wrapped socket, for options and inspection; do not send or receive on it."""
        return self._sock

    @property
    def closed(self) -> bool:
        return self._closed

    # --- waking ---------------------------------------------------------------------------

    def _dispatch(self, events: int) -> None:
        """Wake the waiters whose condition holds in ``events`` (just read from EVENTS)."""
        if events & _POLLIN and self._recv_lot:
            self._recv_lot.unpark_all()
        if events & _POLLOUT and self._send_lot:
            self._send_lot.unpark_all()
        scope = self._fd_scope
        if scope is not None and events & self._fd_want:
            scope.cancel()

    def _after_op(self) -> None:
        """An operation may have consumed the FD edge: re-check for whoever is waiting.

        Parked tasks exist only while a task holds the FD, so ``_fd_busy`` covers them all.
        """
        if self._fd_busy:
            try:
                events: int = self._sock.getsockopt(_EVENTS)  # type: ignore[assignment]
            except zmq.ZMQError:
                return  # closed under us: the waiters see it when they retry
            self._dispatch(events)

    async def _wait(self, want: int, stale_delay: float) -> bool:
        """Wait after an operation failed with EAGAIN, until retrying is worthwhile.

        Returns False without yielding if ``EVENTS`` already says to retry (never when
        ``stale_delay`` is set: that flag was just seen to lie), True after waiting. May raise
        ``Cancelled`` or ``ClosedResourceError``; it never consumes a message.
        """
        try:
            # Also processes pending commands, which resets the FD edge.
            events: int = self._sock.getsockopt(_EVENTS)  # type: ignore[assignment]
        except zmq.ZMQError as exc:
            raise _map_error(exc, "wait") from None
        self._dispatch(events)
        if events & want and not stale_delay:
            return False
        if self._fd_busy:
            if stale_delay:
                with trio.move_on_after(stale_delay):
                    await self._stale_lot.park()
            elif want == _POLLIN:
                await self._recv_lot.park()
            else:
                await self._send_lot.park()
            return True
        self._fd_busy = True
        self._fd_want = 0 if stale_delay else want
        try:
            with trio.CancelScope() as scope:
                if stale_delay:
                    scope.relative_deadline = stale_delay
                self._fd_scope = scope
                await wait_readable(self._fd)
        except trio.ClosedResourceError:
            raise trio.ClosedResourceError("the socket was closed while waiting") from None
        finally:
            self._fd_busy = False
            self._fd_want = 0
            self._fd_scope = None
            self._wake_parked()  # hand the FD over: one of them waits next
        return True

    def _wake_parked(self) -> None:
        """Every parked task retries (only lots that hold one are touched)."""
        for lot in (self._recv_lot, self._send_lot, self._stale_lot):
            if lot:
                lot.unpark_all()

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the socket is closed")

    # --- receiving ------------------------------------------------------------------------

    def _recv_now(self) -> list[bytes]:
        """One whole multipart message, or zmq.Again (a message's parts arrive together).

        Each part is received as a ``zmq.Frame``, whose ``more`` flag ends the message:
        cheaper than asking the socket for ``RCVMORE`` (pyzmq looks every option up in an
        enum first)."""
        recv = self._sock.recv
        frame = recv(_NOBLOCK, copy=False)
        frames = [frame.bytes]
        while frame.more:
            frame = recv(_NOBLOCK, copy=False)
            frames.append(frame.bytes)
        return frames

    def recv_multipart_nowait(self) -> list[bytes] | None:
        """The next message if one is queued, else None."""
        self._check_open()
        try:
            frames = self._recv_now()
        except zmq.Again:
            self._after_op()
            return None
        except zmq.ZMQError as exc:
            raise _map_error(exc, "recv") from None
        self._after_op()
        return frames

    async def recv_multipart(self) -> list[bytes]:
        """Wait for the next message.

        Cancellation-safe: if cancelled, no message was taken off the socket.
        """
        return (await self._recv(1))[0]

    async def recv_batch(self, max_n: int) -> list[list[bytes]]:
        """Wait for at least one message, then take up to ``max_n`` already queued ones.

        The batch is taken in one go and the task yields once per batch, not once per
        message. Cancellation-safe: if cancelled, no message was taken off the socket.
        """
        if max_n < 1:
            raise ValueError("max_n must be at least 1")
        return await self._recv(max_n)

    async def _recv(self, max_n: int) -> list[list[bytes]]:
        await checkpoint_if_cancelled()
        waited = retried = False
        stale_delay = 0.0
        recv_now = self._recv_now
        while True:
            self._check_open()
            try:
                batch = [recv_now()]
            except zmq.Again:
                pass
            except zmq.ZMQError as exc:
                raise _map_error(exc, "recv") from None
            else:
                break
            stale_delay = _next_stale_delay(stale_delay, retried)
            retried = not await self._wait(_POLLIN, stale_delay)
            waited = waited or not retried
        while len(batch) < max_n:
            try:
                batch.append(recv_now())
            except zmq.ZMQError:  # EAGAIN: drained; anything else resurfaces next call
                break
        self._after_op()
        if not waited:  # trio's rule: always a checkpoint; this one cannot cancel
            await cancel_shielded_checkpoint()
        return batch

    # --- sending --------------------------------------------------------------------------

    def _send_now(self, frames: Sequence[Frame]) -> None:
        """Send a whole message or raise zmq.Again having sent nothing.

        ZeroMQ delivers multipart messages atomically: once the first part is accepted the
        others are too (the high-water mark counts whole messages). Frame types are checked
        up front so a bad frame cannot leave half a message queued.
        """
        last = len(frames) - 1
        if last < 0:
            raise WireError("cannot send an empty multipart message")
        for frame in frames:
            if type(frame) is not bytes:
                if not isinstance(frame, Frame):
                    raise TypeError(f"frames must be bytes, not {type(frame).__name__}")
        send = self._sock.send
        for i in range(last):
            send(frames[i], _SNDMORE_NOBLOCK)
        send(frames[last], _NOBLOCK)

    def send_multipart_nowait(self, frames: Sequence[Frame]) -> bool:
        """Send a message if the socket can take it now: True if sent, False on EAGAIN.

        EAGAIN means: a DEALER with ``IMMEDIATE`` has no connected peer, or a queue is at its
        high-water mark. Raises :class:`PeerUnreachable` when a ROUTER's routing id is not
        connected; either way nothing was sent.
        """
        self._check_open()
        try:
            self._send_now(frames)
        except zmq.Again:
            self._after_op()
            return False
        except zmq.ZMQError as exc:
            self._after_op()
            raise _map_error(exc, "send") from None
        self._after_op()
        return True

    def send_many_nowait(self, messages: Iterable[Sequence[Frame]]) -> int:
        """Send each message the socket can take now; returns how many were *not* sent.

        Like ``send_multipart_nowait`` per message, but ``EVENTS`` is re-checked once at
        the end rather than after each message. A message is not sent on EAGAIN or, on a
        ROUTER, for a routing id that is not connected; other ZeroMQ errors skip that
        message too. A closed socket or context raises ``trio.ClosedResourceError``.
        """
        self._check_open()
        unsent = 0
        send_now = self._send_now
        try:
            for frames in messages:
                try:
                    send_now(frames)
                except zmq.ZMQError as exc:
                    if exc.errno in (_ETERM, _ENOTSOCK):
                        raise _map_error(exc, "send") from None
                    unsent += 1
        finally:
            self._after_op()
        return unsent

    async def send_multipart(self, frames: Sequence[Frame]) -> None:
        """Send a message, waiting while the socket cannot take it.

        Cancellation-safe: if cancelled, nothing was sent; if it returns, all of it was.
        Raises :class:`PeerUnreachable` (nothing sent) for an unknown ROUTER routing id.
        """
        await checkpoint_if_cancelled()
        waited = retried = False
        stale_delay = 0.0
        while True:
            self._check_open()
            try:
                self._send_now(frames)
            except zmq.Again:
                pass
            except zmq.ZMQError as exc:
                self._after_op()
                raise _map_error(exc, "send") from None
            else:
                break
            stale_delay = _next_stale_delay(stale_delay, retried)
            retried = not await self._wait(_POLLOUT, stale_delay)
            waited = waited or not retried
        self._after_op()
        if not waited:
            await cancel_shielded_checkpoint()

    # --- closing --------------------------------------------------------------------------

    def close(self, linger: int | None = None) -> None:
        """Close the socket (idempotent); waiting tasks get ``trio.ClosedResourceError``.

        ``linger`` (ms) overrides the socket's ``LINGER`` (0 for sockets from this module:
        unsent messages are dropped).
        """
        if self._closed:
            return
        self._closed = True
        trio.lowlevel.notify_closing(self._fd)
        self._wake_parked()
        self._sock.close(linger)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<TrioSocket {self._sock.type!r} {self.endpoint or ''} {state}>"


# --- factories ----------------------------------------------------------------------------


def _new_socket(ctx: ZmqContext, kind: int, what: str) -> zmq.Socket[bytes]:
    try:
        return ctx.socket(kind)
    except zmq.ZMQError as exc:
        raise WireError(f"cannot create a {what} socket: {exc.strerror}") from None


def _set_options(sock: zmq.Socket[bytes], options: dict[int, int | bytes]) -> None:
    for option, value in options.items():
        sock.setsockopt(option, value)


def _heartbeats(heartbeat_ms: int | None) -> dict[int, int | bytes]:
    """ZMTP heartbeats: a peer silent for 3 intervals is disconnected."""
    if heartbeat_ms is None:
        return {}
    return {
        zmq.HEARTBEAT_IVL: heartbeat_ms,
        zmq.HEARTBEAT_TIMEOUT: 3 * heartbeat_ms,
        zmq.HEARTBEAT_TTL: 3 * heartbeat_ms,
    }


def open_router(
    ctx: ZmqContext,
    bind_addr: str,
    *,
    max_message: int = DEFAULT_MAX_MESSAGE,
    sndhwm: int = 1000,
    rcvhwm: int = 1000,
    heartbeat_ms: int | None = None,
) -> TrioSocket:
    """A bound ROUTER for peers or clients; ``.endpoint`` is the actual address.

    Options: ``LINGER=0``, ``ROUTER_MANDATORY=1`` (a send to an unknown routing id raises
    :class:`PeerUnreachable`, to a full peer returns EAGAIN), ``ROUTER_HANDOVER=1`` (a
    restarted peer with the same routing id takes over), ``MAXMSGSIZE=max_message`` (a peer
    sending a larger frame is disconnected), HWMs per peer. ``tcp://127.0.0.1:0`` binds a free
    port. Raises WireError if the address cannot be bound.
    """
    sock = _new_socket(ctx, zmq.ROUTER, "ROUTER")
    try:
        _set_options(
            sock,
            {
                zmq.LINGER: 0,
                zmq.ROUTER_MANDATORY: 1,
                zmq.ROUTER_HANDOVER: 1,
                zmq.MAXMSGSIZE: max_message,
                zmq.SNDHWM: sndhwm,
                zmq.RCVHWM: rcvhwm,
                **_heartbeats(heartbeat_ms),
            },
        )
        sock.bind(bind_addr)
        endpoint = sock.getsockopt(zmq.LAST_ENDPOINT)
    except zmq.ZMQError as exc:
        sock.close(0)
        raise WireError(f"cannot bind {bind_addr}: {exc.strerror}") from None
    assert isinstance(endpoint, bytes)
    return TrioSocket(sock, endpoint=endpoint.decode())


def open_dealer(
    ctx: ZmqContext,
    connect_addr: str,
    *,
    routing_id: bytes | None,
    immediate: bool,
    sndhwm: int = 1000,
    rcvhwm: int = 1000,
    reconnect_ivl_ms: int = 20,
    reconnect_ivl_max_ms: int = 1000,
    max_message: int | None = None,
    heartbeat_ms: int | None = None,
) -> TrioSocket:
    """A DEALER connecting (in the background, reconnecting forever) to ``connect_addr``.

    ``routing_id`` is what the remote ROUTER knows it by (``node_routing_id(id)`` for peers;
    None: a random one per connection). ``immediate=True`` (peers, clients) refuses sends with
    EAGAIN while not connected instead of queueing stale messages. Options: ``LINGER=0``,
    reconnect after 20 ms backing off to 1 s, ``SNDHWM`` 1000. Raises WireError for an
    invalid address.
    """
    sock = _new_socket(ctx, zmq.DEALER, "DEALER")
    options: dict[int, int | bytes] = {
        zmq.LINGER: 0,
        zmq.IMMEDIATE: int(immediate),
        zmq.SNDHWM: sndhwm,
        zmq.RCVHWM: rcvhwm,
        zmq.RECONNECT_IVL: reconnect_ivl_ms,
        zmq.RECONNECT_IVL_MAX: reconnect_ivl_max_ms,
        **_heartbeats(heartbeat_ms),
    }
    if routing_id is not None:
        options[zmq.ROUTING_ID] = routing_id
    if max_message is not None:
        options[zmq.MAXMSGSIZE] = max_message
    try:
        _set_options(sock, options)
        sock.connect(connect_addr)
    except zmq.ZMQError as exc:
        sock.close(0)
        raise WireError(f"cannot connect to {connect_addr}: {exc.strerror}") from None
    return TrioSocket(sock)
