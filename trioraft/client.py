"""The trio client library: ``async with open_client(endpoints) as client: ...``.

The client keeps one connection per endpoint (a ZeroMQ DEALER, or an in-process call for
the node of ``open_embedded_client``), finds the leader by asking every endpoint for its
status, follows ``NotLeader`` hints, and retries until the call's deadline. Errors are the
library's own types (``NotLeader``, ``Unavailable``, ``Timeout``, ``InvalidRequest``, ...),
rebuilt from the server's error codes.

Retries and exactly-once writes: with ``sessions=True`` (the default) every write carries a
client session and a sequence number (Raft thesis §6.3), so a write whose reply was lost is
sent again and the state machine answers the retry from the result it kept: applied once.
Without sessions, a write is retried only after errors that prove the attempt did not
apply; after an attempt with an unknown outcome it raises ``Timeout``. (Retrying even a
``put`` would not be safe: ``put(k, v)`` re-applied after another client's ``put(k, w)``
turns v, w into v, w, v, which no linearizable order explains; the fault suite found it.)
"""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio
import zmq

from trioraft import _client_members as members
from trioraft._client_conn import Connection, LocalConnection, Unreachable, ZmqConnection
from trioraft._client_snapshot import SavedSnapshot, save_snapshot
from trioraft._client_types import CasResult, ReadResult, ScanResult, TxnResult
from trioraft._client_watch import Watch
from trioraft.kv.layout import prefix_end
from wire import client_messages as cm
from wire.client_messages import Compare, KeyValue, TxnOp
from wire.codec import DEFAULT_MAX_MESSAGE
from wire.errors import (
    Busy,
    InvalidRequest,
    NotLeader,
    ProposalDropped,
    SessionExpired,
    Timeout,
    TrioraftError,
    Unavailable,
)

if TYPE_CHECKING:
    from trioraft.node.node import Node

Consistency = cm.Consistency
ConsistencyArg = Consistency | str | None
ENDPOINTS_ENV = "TRIORAFT_ENDPOINTS"


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
class _Session:
    session_id: int
    ttl_ms: int
    seq: int = 0
    last_used: float = 0.0


@dataclass(slots=True)
class _Outcome:
    """Whether some attempt of a call may have taken effect (it was sent; no answer)."""

    uncertain: bool = False


class Client(members.ClusterAdmin):
    """A connection to a trioraft cluster. Create it with :func:`open_client`.

    Cluster management (membership changes, metadata, leader transfer, the membership
    watch) comes from ``ClusterAdmin``."""

    def __init__(
        self,
        nursery: trio.Nursery,
        endpoints: list[str],
        *,
        timeout: float,
        attempt_timeout: float,
        max_message: int,
        sessions: bool = True,
        local: Node | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.timeout = timeout
        self.attempt_timeout = attempt_timeout
        self.sessions = sessions
        self._nursery = nursery
        self._max_message = max_message
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._conns: dict[str, Connection] = {}
        if local is not None:
            self._conns[local.client_addr] = LocalConnection(local)
        self._by_id: dict[int, str] = {}  # node id -> endpoint, learned from status replies
        self._leader: str | None = None
        self._next_any = 0
        self._free_sessions: list[_Session] = []

    def _conn(self, endpoint: str) -> Connection:
        conn = self._conns.get(endpoint)
        if conn is None:
            conn = ZmqConnection(self._ctx, endpoint, self._max_message)
            self._conns[endpoint] = conn
            self._nursery.start_soon(conn.serve)
        return conn

    def close(self) -> None:
        self._ctx.destroy(linger=0)

    # --- writes ---
    async def put(
        self, key: bytes | str, value: bytes | str, *, timeout: float | None = None
    ) -> int:
        """Store ``value`` under ``key``; return the revision (log index) of the write.

        If cancelled or timed out, the write may still commit (once).
        """
        k, v = _b(key), _b(value)
        reply = await self._write(lambda s, n: cm.PutRequest(k, v, s, n), timeout)
        return int(reply.revision)

    async def delete(self, key: bytes | str, *, timeout: float | None = None) -> bool:
        """Delete ``key``; return whether it existed. If cancelled, it may still apply."""
        k = _b(key)
        reply = await self._write(lambda s, n: cm.DeleteRequest(k, s, n), timeout)
        return bool(reply.existed)

    async def cas(
        self,
        key: bytes | str,
        expected: bytes | str | None,
        new: bytes | str,
        *,
        timeout: float | None = None,
    ) -> CasResult:
        """Set ``key`` to ``new`` if its value is ``expected`` (None: if it does not exist).

        One log entry, applied once. On failure ``current`` is the value found (None if
        absent). If cancelled or timed out, it may still apply.
        """
        k = _b(key)
        compare = Compare.missing(k) if expected is None else Compare.value_is(k, "=", expected)
        result = await self.txn([compare], [TxnOp.put(k, new)], [TxnOp.get(k)], timeout=timeout)
        current = None
        if not result.succeeded and result.results and result.results[0].kv is not None:
            current = result.results[0].kv.value
        return CasResult(result.succeeded, result.revision, current)

    async def txn(
        self,
        compares: Sequence[Compare],
        success: Sequence[TxnOp] = (),
        failure: Sequence[TxnOp] = (),
        *,
        timeout: float | None = None,
    ) -> TxnResult:
        """If every compare holds, apply ``success`` else ``failure``, atomically, as one log
        entry (etcd's Txn). Ops run in order; a get sees the branch's earlier writes."""
        cs, ok, ko = list(compares), list(success), list(failure)
        reply = await self._write(lambda s, n: cm.TxnRequest(cs, ok, ko, s, n), timeout)
        return TxnResult(reply.succeeded, reply.revision, reply.results)

    # --- reads ---
    async def get(
        self,
        key: bytes | str,
        *,
        consistency: ConsistencyArg = None,
        timeout: float | None = None,
        endpoint: str | None = None,
    ) -> bytes | None:
        """The value of ``key`` (None if absent). ``consistency``: ``linearizable`` (it
        reflects every write that completed before the call), ``lease`` (the leader alone
        while its lease holds), ``eventual`` (any node's local state, maybe stale), or None
        for the server's default (linearizable unless configured). ``endpoint`` sends the
        read to that node only, without retries or redirects."""
        result = await self.get_with_revision(
            key, consistency=consistency, timeout=timeout, endpoint=endpoint
        )
        return result.value

    async def get_with_revision(
        self,
        key: bytes | str,
        *,
        consistency: ConsistencyArg = None,
        timeout: float | None = None,
        endpoint: str | None = None,
    ) -> ReadResult:
        """Like ``get``, with the applied index the answer reflects and the key's metadata."""
        level = _consistency(consistency)
        reply = await self._read(cm.GetRequest(_b(key), level), level, timeout, endpoint)
        kv: KeyValue | None = reply.kv
        return ReadResult(None if kv is None else kv.value, reply.revision, kv)

    async def scan(
        self,
        prefix: bytes | str = b"",
        *,
        start: bytes | str | None = None,
        end: bytes | str | None = None,
        limit: int = 0,
        continuation: bytes | None = None,
        consistency: ConsistencyArg = None,
        timeout: float | None = None,
        endpoint: str | None = None,
    ) -> ScanResult:
        """One page of the keys under ``prefix`` and within ``[start, end)``, in key order.

        ``limit``: at most this many (0: the node's ``max_scan_keys``). Pass the result's
        ``continuation`` to get the next page. Each page is read at its own revision
        (linearizable by default); pages together are not one snapshot.
        """
        lo, hi = _b(prefix), prefix_end(_b(prefix))
        if start is not None:
            lo = max(lo, _b(start))
        if end is not None:
            hi = _b(end) if hi is None else min(hi, _b(end))
        if continuation is not None:
            lo = max(lo, continuation)
        level = _consistency(consistency)
        request = cm.RangeRequest(lo, hi, limit, level)
        reply = await self._read(request, level, timeout, endpoint)
        kvs: list[KeyValue] = reply.kvs
        token = kvs[-1].key + b"\x00" if reply.more and kvs else None
        return ScanResult(kvs, reply.revision, token)

    async def scan_iter(
        self,
        prefix: bytes | str = b"",
        *,
        start: bytes | str | None = None,
        end: bytes | str | None = None,
        page: int = 0,
        consistency: ConsistencyArg = None,
        timeout: float | None = None,
    ) -> AsyncIterator[KeyValue]:
        """Every key of the range, page by page (``timeout`` bounds each page)."""
        token: bytes | None = None
        while True:
            result = await self.scan(
                prefix,
                start=start,
                end=end,
                limit=page,
                continuation=token,
                consistency=consistency,
                timeout=timeout,
            )
            for kv in result.entries:
                yield kv
            if result.continuation is None:
                return
            token = result.continuation

    def watch(
        self,
        key: bytes | str,
        *,
        prefix: bool = False,
        start_revision: int = 0,
        prev_kv: bool = False,
        endpoint: str | None = None,
    ) -> Watch:
        """Watch ``key`` (every key under it with ``prefix``): ``async with client.watch(k)
        as events: async for event in events: ...``. ``start_revision``: replay from that
        past revision if the node still retains it (else ``Compacted``); 0: from now.
        Served by the leader unless ``endpoint`` pins a node; resumed without gap or
        duplicate after a broken stream (see ``Watch``)."""
        return Watch(self, cm.WatchRequest(_b(key), prefix, start_revision, prev_kv), endpoint)

    # --- cluster ---
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

    async def discover_leader(self, *, timeout: float | None = None) -> tuple[int, str]:
        """Ask every endpoint once; return the leader's id and endpoint (the leader of the
        highest term), or raise ``Unavailable`` if no endpoint knows one."""
        best: cm.StatusReply | None = None
        best_ep = None
        for endpoint, st in (await self.cluster_status(timeout=timeout)).items():
            if isinstance(st, cm.StatusReply) and st.role == cm.Role.LEADER:
                if best is None or st.term > best.term:
                    best, best_ep = st, endpoint
        if best is None or best_ep is None:
            # the leader may be a member we were not given: ask the members where it is
            found = await members.discover_via_members(self, timeout or self.attempt_timeout)
            if found is None:
                self._leader = None
                raise Unavailable("no endpoint is the leader")
            self._by_id[found[0]] = self._leader = found[1]
            return found
        self._leader = best_ep
        return best.node_id, best_ep

    async def wait_leader(self, *, timeout: float | None = None) -> tuple[int, str]:
        """Wait until some node leads; return its id and client endpoint."""
        with trio.fail_after(timeout or self.timeout):
            while True:
                try:
                    return await self.discover_leader(timeout=self.attempt_timeout)
                except Unavailable:
                    await trio.sleep(0.05)

    async def save_snapshot(
        self,
        path: str,
        *,
        endpoint: str | None = None,
        timeout: float | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> SavedSnapshot:
        """Save a fresh snapshot of the cluster's state to ``path`` (like ``etcdctl
        snapshot save``): built by ``endpoint`` (default: the leader), downloaded in
        checksummed pieces, verified whole before ``path`` appears. See
        ``trioraft._client_snapshot`` and docs/snapshots.md."""
        return await save_snapshot(
            self, path, endpoint=endpoint, timeout=timeout, progress=progress
        )

    # --- routing and retries ---
    def _forget_leader(self) -> None:
        self._leader = None

    async def _leader_endpoint(self) -> str:
        if self._leader is None:
            await self.discover_leader(timeout=self.attempt_timeout)
        assert self._leader is not None
        return self._leader

    async def _write(self, make: Any, timeout: float | None) -> Any:
        """A write, under a session from the pool when sessions are on; without one it
        is retried only while no attempt can have applied."""
        limit = timeout or self.timeout
        deadline = trio.current_time() + limit
        outcome = _Outcome()
        try:
            if not self.sessions:
                return await self._leader_call(make(0, 0), deadline, outcome, False)
            while True:
                session = await self._acquire_session(deadline)
                session.seq += 1
                request = make(session.session_id, session.seq)
                try:
                    reply = await self._leader_call(request, deadline, outcome, True)
                except SessionExpired:
                    if outcome.uncertain:
                        raise Timeout(
                            "the session expired while the write was being retried; it "
                            "may have been applied"
                        ) from None
                    continue  # not applied anywhere: start over with a new session
                except BaseException:
                    # a later seq supersedes this one if it is still in flight
                    self._release_session(session)
                    raise
                self._release_session(session)
                return reply
        except trio.TooSlowError:
            raise Timeout(f"gave up after {limit:g} s") from None

    async def _acquire_session(self, deadline: float) -> _Session:
        now = trio.current_time()
        while self._free_sessions:
            session = self._free_sessions.pop()
            if now - session.last_used < session.ttl_ms / 2000:
                return session
        reply = await self._leader_call(cm.SessionRequest(), deadline, _Outcome(), True)
        return _Session(reply.session_id, reply.ttl_ms)

    def _release_session(self, session: _Session) -> None:
        session.last_used = trio.current_time()
        self._free_sessions.append(session)

    async def _read(
        self, request: Any, level: Consistency, timeout: float | None, endpoint: str | None
    ) -> Any:
        if endpoint is not None:
            return await self._conn(endpoint).call(request, timeout or self.attempt_timeout)
        if level == Consistency.EVENTUAL:
            return await self._any_call(request, timeout)
        deadline = trio.current_time() + (timeout or self.timeout)
        try:
            return await self._leader_call(request, deadline, _Outcome(), True)
        except trio.TooSlowError:
            raise Timeout(f"gave up after {timeout or self.timeout:g} s") from None

    async def _leader_call(
        self, request: Any, deadline: float, outcome: _Outcome, retry_uncertain: bool
    ) -> Any:
        """Send to the leader until an answer or the deadline (``Timeout``, naming the last
        error). Errors that prove the attempt did not apply (unreachable, NotLeader, Busy,
        ProposalDropped) are always retried; a lost answer only if ``retry_uncertain``."""
        backoff = 0.01
        last: TrioraftError | None = None
        try:
            with trio.fail_at(deadline):
                while True:
                    try:
                        endpoint = await self._leader_endpoint()
                    except Unavailable as exc:  # nobody leads (yet): nothing was sent
                        last = exc
                        await trio.sleep(backoff)
                        backoff = min(backoff * 2, 0.5)
                        continue
                    try:
                        attempt = min(self.attempt_timeout, deadline - trio.current_time())
                        return await self._conn(endpoint).call(request, max(attempt, 0.001))
                    except NotLeader as exc:
                        last = exc
                        self._leader = self._by_id.get(exc.leader_id)
                        if self._leader is not None:
                            continue  # follow the hint at once
                    except (Unreachable, ProposalDropped, Busy) as exc:
                        last = exc
                        if not isinstance(exc, Busy):
                            self._leader = None
                    except (Unavailable, Timeout) as exc:
                        last = exc
                        self._leader = None
                        outcome.uncertain = outcome.uncertain or not isinstance(
                            request, cm.GetRequest | cm.RangeRequest | cm.SessionRequest
                        )
                        if not retry_uncertain:
                            raise Timeout(
                                f"no answer ({exc}); the request may have been applied, and "
                                "it is not retried without a session"
                            ) from None
                    # jittered, so that clients refused together do not return together
                    await trio.sleep(backoff * random.uniform(0.5, 1.0))
                    backoff = min(backoff * 2, 0.5)
        except trio.TooSlowError:
            error = Timeout(f"gave up: {last}")
            error.last_error = last
            raise error from None

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
    sessions: bool = True,
) -> AsyncIterator[Client]:
    """Connect to a cluster. ``endpoints``: client addresses (a list or a comma-separated
    string; default ``$TRIORAFT_ENDPOINTS``). ``timeout`` bounds each call including its
    retries; ``attempt_timeout`` bounds one try against one node. ``sessions``: writes are
    applied exactly once across retries (one session per concurrent write, registered on
    first use)."""
    async with _client(
        endpoints_from(endpoints), timeout, attempt_timeout, max_message, sessions, None
    ) as client:
        yield client


@asynccontextmanager
async def open_embedded_client(
    node: Node,
    endpoints: str | Sequence[str] | None = (),
    *,
    timeout: float = 10.0,
    attempt_timeout: float = 2.0,
    max_message: int = DEFAULT_MAX_MESSAGE,
    sessions: bool = True,
) -> AsyncIterator[Client]:
    """A client for a program that runs ``node`` in-process: the same interface as
    :func:`open_client`, calling the node directly (no sockets, no encoding). ``endpoints``
    of the other nodes let it reach the leader when ``node`` does not lead."""
    others = endpoints_from(endpoints) if endpoints else []
    eps = [node.client_addr, *(e for e in others if e != node.client_addr)]
    async with _client(eps, timeout, attempt_timeout, max_message, sessions, node) as client:
        yield client


@asynccontextmanager
async def _client(
    eps: list[str],
    timeout: float,
    attempt_timeout: float,
    max_message: int,
    sessions: bool,
    local: Node | None,
) -> AsyncIterator[Client]:
    client: Client | None = None
    try:
        async with trio.open_nursery() as nursery:
            client = Client(
                nursery,
                eps,
                timeout=timeout,
                attempt_timeout=attempt_timeout,
                max_message=max_message,
                sessions=sessions,
                local=local,
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


def _consistency(value: ConsistencyArg) -> Consistency:
    if value is None:
        return Consistency.DEFAULT
    if isinstance(value, Consistency):
        return value
    try:
        return cm.Consistency.__members__[value.upper()]
    except KeyError:
        raise InvalidRequest(
            f"unknown consistency {value!r}: use linearizable, lease or eventual"
        ) from None
