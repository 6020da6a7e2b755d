"""The trio client library: ``async with open_client(endpoints) as client: ...``.

The client keeps one DEALER per endpoint, finds the leader by asking every endpoint for its
status, follows ``NotLeader`` hints, and retries across leader changes until the call's
deadline. Errors are the library's own types (``NotLeader``, ``Unavailable``, ``Timeout``,
``InvalidRequest``, ...), rebuilt from the server's error codes.

Retries: ``put`` and ``delete`` are idempotent in their final effect, so a write whose reply
was lost is sent again; the revision then returned is that of the last attempt. (Exactly-once
writes through client sessions come with the client-API work.)
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio
import zmq

from wire import client_messages as cm
from wire.codec import DEFAULT_MAX_MESSAGE, decode, encode
from wire.errors import (
    ERROR_CODES,
    Busy,
    InvalidRequest,
    NotLeader,
    ProposalDropped,
    Timeout,
    TrioraftError,
    Unavailable,
    WireError,
)
from wire.zsock import TrioSocket, open_dealer

Consistency = cm.Consistency
ENDPOINTS_ENV = "TRIORAFT_ENDPOINTS"
CONNECT_WAIT = 0.5  # seconds to wait for a connection before an endpoint counts as down


def endpoints_from(value: str | Sequence[str] | None) -> list[str]:
    """Endpoints from a comma-separated string, a list, or ``$TRIORAFT_ENDPOINTS``."""
    if value is None:
        value = os.environ.get(ENDPOINTS_ENV, "")
    items = value.split(",") if isinstance(value, str) else list(value)
    endpoints = [e.strip() for e in items if e.strip()]
    if not endpoints:
        raise InvalidRequest(f"no endpoints given (pass --endpoints or set {ENDPOINTS_ENV})")
    return endpoints


@dataclass(slots=True)
class _Slot:
    done: trio.Event
    reply: Any = None


class _Connection:
    """One DEALER to one node, with a task routing replies to the calls that wait for them."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str, max_message: int):
        self.endpoint = endpoint
        self._sock: TrioSocket = open_dealer(ctx, endpoint, routing_id=None, immediate=True)
        self._max_message = max_message
        self._slots: dict[int, _Slot] = {}
        self._ids = itertools.count(1)

    async def serve(self) -> None:
        with self._sock:
            while True:
                for frames in await self._sock.recv_batch(256):
                    try:
                        decoded = decode(frames, cluster_id=None, max_size=self._max_message)
                    except WireError:
                        continue
                    slot = self._slots.pop(decoded.request_id, None)
                    if slot is not None:
                        slot.reply = decoded.msg
                        slot.done.set()

    async def call(self, request: Any, timeout: float) -> Any:
        """Send one request and wait up to ``timeout`` for its reply.

        Raises ``Unavailable`` if the node cannot be reached, ``Timeout`` if no reply came,
        or the error the server answered with. If cancelled or timed out after sending, the
        request may still take effect.
        """
        request_id = next(self._ids)
        slot = _Slot(trio.Event())
        self._slots[request_id] = slot
        frames = encode(request, cluster_id=0, request_id=request_id)
        try:
            # IMMEDIATE: a send waits (briefly) until the connection is up
            with trio.move_on_after(min(timeout, CONNECT_WAIT)) as connecting:
                await self._sock.send_multipart(frames)
            if connecting.cancelled_caught:
                raise Unavailable(f"{self.endpoint} is unreachable")
            with trio.move_on_after(timeout) as waiting:
                await slot.done.wait()
            if waiting.cancelled_caught:
                raise Timeout(f"no reply from {self.endpoint} within {timeout:g} s")
        finally:
            self._slots.pop(request_id, None)
        reply = slot.reply
        if isinstance(reply, cm.ErrorReply):
            raise _error_from(reply)
        return reply


def _error_from(reply: cm.ErrorReply) -> TrioraftError:
    cls = ERROR_CODES.get(reply.code, TrioraftError)
    if cls is NotLeader:
        return NotLeader(reply.message, reply.leader_id)
    return cls(reply.message)


class Client:
    """A connection to a trioraft cluster. Create it with :func:`open_client`."""

    def __init__(
        self,
        nursery: trio.Nursery,
        endpoints: list[str],
        *,
        timeout: float,
        attempt_timeout: float,
        max_message: int,
    ) -> None:
        self.endpoints = endpoints
        self.timeout = timeout
        self.attempt_timeout = attempt_timeout
        self._nursery = nursery
        self._max_message = max_message
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._conns: dict[str, _Connection] = {}
        self._by_id: dict[int, str] = {}  # node id -> endpoint, learned from status replies
        self._leader: str | None = None
        self._next_any = 0

    def _conn(self, endpoint: str) -> _Connection:
        conn = self._conns.get(endpoint)
        if conn is None:
            conn = self._conns[endpoint] = _Connection(self._ctx, endpoint, self._max_message)
            self._nursery.start_soon(conn.serve)
        return conn

    def close(self) -> None:
        self._ctx.destroy(linger=0)

    # --- operations ---
    async def put(
        self, key: bytes | str, value: bytes | str, *, timeout: float | None = None
    ) -> int:
        """Store ``value`` under ``key``; return the revision (log index) of the write.

        If cancelled or timed out, the write may still commit.
        """
        reply = await self._leader_call(cm.PutRequest(_b(key), _b(value)), timeout)
        return int(reply.revision)

    async def delete(self, key: bytes | str, *, timeout: float | None = None) -> bool:
        """Delete ``key``; return whether it existed. If cancelled, it may still apply."""
        reply = await self._leader_call(cm.DeleteRequest(_b(key)), timeout)
        return bool(reply.existed)

    async def get(
        self,
        key: bytes | str,
        *,
        consistency: Consistency | str = Consistency.LINEARIZABLE,
        timeout: float | None = None,
        endpoint: str | None = None,
    ) -> bytes | None:
        """The value of ``key`` (None if absent). Linearizable by default: it reflects every
        write that completed before the call. ``eventual`` reads any node's local state
        (``endpoint`` picks the node); it may be stale."""
        level = _consistency(consistency)
        request = cm.GetRequest(_b(key), level)
        if level == Consistency.EVENTUAL and endpoint is not None:
            reply = await self._conn(endpoint).call(request, timeout or self.attempt_timeout)
        elif level == Consistency.EVENTUAL:
            reply = await self._any_call(request, timeout)
        else:
            reply = await self._leader_call(request, timeout)
        value: bytes | None = reply.value
        return value

    async def status(self, endpoint: str, *, timeout: float | None = None) -> cm.StatusReply:
        """One node's status (its id, role, term, leader, commit and applied index)."""
        reply = await self._conn(endpoint).call(cm.StatusRequest(), timeout or self.attempt_timeout)
        assert isinstance(reply, cm.StatusReply)
        self._by_id[reply.node_id] = endpoint
        return reply

    async def cluster_status(
        self, *, timeout: float | None = None
    ) -> dict[str, cm.StatusReply | TrioraftError]:
        """Every endpoint's status, or the error that asking it gave, asked concurrently."""
        results: dict[str, cm.StatusReply | TrioraftError] = {}

        async def ask(endpoint: str) -> None:
            try:
                results[endpoint] = await self.status(endpoint, timeout=timeout)
            except TrioraftError as exc:
                results[endpoint] = exc

        async with trio.open_nursery() as nursery:
            for endpoint in self.endpoints:
                nursery.start_soon(ask, endpoint)
        return {e: results[e] for e in self.endpoints}

    async def wait_leader(self, *, timeout: float | None = None) -> tuple[int, str]:
        """Wait until some node leads; return its id and client endpoint."""
        with trio.fail_after(timeout or self.timeout):
            while True:
                endpoint = await self._discover()
                if endpoint is not None:
                    st = await self.status(endpoint)
                    return st.node_id, endpoint
                await trio.sleep(0.05)

    # --- routing and retries ---
    async def _discover(self) -> str | None:
        best: cm.StatusReply | None = None
        best_ep = None
        for endpoint, st in (await self.cluster_status(timeout=self.attempt_timeout)).items():
            if isinstance(st, cm.StatusReply) and st.role == cm.Role.LEADER:
                if best is None or st.term > best.term:
                    best, best_ep = st, endpoint
        self._leader = best_ep
        return best_ep

    async def _leader_call(self, request: Any, timeout: float | None) -> Any:
        backoff = 0.01
        last: TrioraftError | None = None
        try:
            with trio.fail_after(timeout or self.timeout):
                while True:
                    endpoint = self._leader or await self._discover()
                    if endpoint is None:
                        last = Unavailable("no leader")
                    else:
                        try:
                            return await self._conn(endpoint).call(request, self.attempt_timeout)
                        except NotLeader as exc:
                            last = exc
                            self._leader = self._by_id.get(exc.leader_id)
                            if self._leader is not None:
                                continue  # follow the hint at once
                        except (Unavailable, Timeout, ProposalDropped, Busy) as exc:
                            last = exc
                            if not isinstance(exc, Busy):
                                self._leader = None
                    await trio.sleep(backoff)
                    backoff = min(backoff * 2, 0.5)
        except trio.TooSlowError:
            raise Timeout(f"gave up after {timeout or self.timeout:g} s: {last}") from None

    async def _any_call(self, request: Any, timeout: float | None) -> Any:
        last: TrioraftError | None = None
        try:
            with trio.fail_after(timeout or self.timeout):
                while True:
                    endpoint = self.endpoints[self._next_any % len(self.endpoints)]
                    try:
                        return await self._conn(endpoint).call(request, self.attempt_timeout)
                    except (Unavailable, Timeout, Busy) as exc:
                        last = exc
                        self._next_any += 1
                        await trio.sleep(0.01)
        except trio.TooSlowError:
            raise Timeout(f"gave up after {timeout or self.timeout:g} s: {last}") from None


@asynccontextmanager
async def open_client(
    endpoints: str | Sequence[str] | None = None,
    *,
    timeout: float = 10.0,
    attempt_timeout: float = 2.0,
    max_message: int = DEFAULT_MAX_MESSAGE,
) -> AsyncIterator[Client]:
    """Connect to a cluster. ``endpoints``: client addresses (a list or a comma-separated
    string; default ``$TRIORAFT_ENDPOINTS``). ``timeout`` bounds each call including its
    retries; ``attempt_timeout`` bounds one try against one node."""
    eps = endpoints_from(endpoints)
    client: Client | None = None
    try:
        async with trio.open_nursery() as nursery:
            client = Client(
                nursery,
                eps,
                timeout=timeout,
                attempt_timeout=attempt_timeout,
                max_message=max_message,
            )
            try:
                yield client
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # trio wraps what the body raised in a group; callers expect the error itself
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    finally:
        if client is not None:
            client.close()


def _b(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _consistency(value: Consistency | str) -> Consistency:
    if isinstance(value, Consistency):
        return value
    try:
        return cm.Consistency.__members__[value.upper()]
    except KeyError:
        raise InvalidRequest(
            f"unknown consistency {value!r}: use linearizable, lease or eventual"
        ) from None
