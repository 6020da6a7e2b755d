"""The fast driver of ``trioraft bench``: put and get (every consistency level) over
synchronous pyzmq; no trio and no client library in the request loop.

Same parent protocol, tally and report as ``cli.bench_workloads.run_worker``. A worker
opens its share of ``--connections`` DEALERs (to the leader for puts and linearizable or
lease gets; round-robin over every endpoint for eventual gets) and runs its share of
``--clients`` closed loops, one request in flight each (named by its request id), from one
poll of the sockets. A request is a packed header plus one ``cbor2.dumps`` of the body; a
reply is read as far as its header (and, for a get, whether the key was found); only
errors are decoded. Retries follow ``trioraft.client`` and are not errors (their time is in
the latency): NotLeader goes to the hinted leader at once; Busy, ProposalDropped and
unreachable nodes back off (jittered, 10 ms doubling to 0.5 s); an attempt unanswered for
2 s is sent again; an operation gives up after 30 s (``Timeout(<last error>)``); eventual
gets move to the next endpoint. Puts carry a client session by default, as the client's do:
each loop registers one before the start and numbers its puts, and a retry repeats the seq,
so a put applies once. Without sessions a put whose reply was lost is an error (``Timeout``).
Leader discovery and session registration block the worker; they are rare.
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import random
import select
import struct
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cbor2
import zmq

from cli.bench import BenchSpec, bucket_of, read_control, report_line
from cli.bench_workloads import Report, Tally, error_kind, fill, final_report, loop_rng
from trioraft._client_conn import Unreachable, error_from
from wire import client_messages as cm
from wire import errors as err
from wire.codec import PROTOCOL_VERSION, decode, encode, type_code
from wire.zsock import open_dealer

ATTEMPT_TIMEOUT = 2.0  # seconds without a reply before an attempt is sent again
OP_TIMEOUT = 30.0  # seconds before an operation gives up
CONNECT_WAIT = 0.5  # seconds a new socket may take to connect
BACKOFF, MAX_BACKOFF = 0.01, 0.5
ERROR_PAUSE = 0.01  # after a failed operation, as the client driver's loop
PROGRESS_EVERY = 0.2
DISCOVER_EVERY = 0.05  # at most one leader discovery per this many seconds
HEADER = struct.Struct(">BBHQQ")  # wire.codec's header
PUT, GET = type_code(cm.PutRequest), type_code(cm.GetRequest)
WRITE_REPLY, GET_REPLY = type_code(cm.WriteReply), type_code(cm.GetReply)
NO_KV = b"\x82\xf6"  # the start of a GetReply body [null, revision]: the key is missing
_NOBLOCK = int(zmq.NOBLOCK)
_EVENTS, _POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)
Sock = zmq.Socket[bytes]


@dataclass(slots=True, eq=False)
class _Conn:
    """One connection: a DEALER per node it has sent to (a new one on a leader change)."""

    target: int  # eventual gets: the index of the endpoint it reads from
    socks: dict[str, Sock] = field(default_factory=dict)


@dataclass(slots=True, eq=False)
class _Loop:
    """One closed loop: one operation at a time, at most one attempt of it in flight."""

    rng: random.Random
    conn: _Conn
    session: int = 0  # 0: none
    seq: int = 0
    key: bytes = b""
    body: bytes = b""
    endpoint: str = ""  # of the last attempt
    measuring: bool = False
    t0: float = 0.0  # perf_counter at the start of the operation
    deadline: float = 0.0  # monotonic: give up then
    backoff: float = BACKOFF
    uncertain: bool = False  # an attempt of this put may have applied
    last: err.TrioraftError | None = None


class FastWorker:
    """One worker process's connections, closed loops and tally (``setup``, then ``run``)."""

    def __init__(self, spec: BenchSpec) -> None:
        self.spec = spec
        self.tally = Tally(quota=spec.quota() if spec.ops else None)
        self.put = spec.workload == "put"
        self.eventual = not self.put and spec.consistency == "eventual"
        self.code, self.reply_code = (PUT, WRITE_REPLY) if self.put else (GET, GET_REPLY)
        self.value = fill(spec.value_size)
        self.level = int(cm.Consistency[spec.consistency.upper()])
        self.ctx: zmq.Context[Sock] = zmq.Context()
        # a DEALER per connection and endpoint, and a control one per endpoint: past
        # libzmq's default limit of 1,023 sockets per context at 512 connections to 2 nodes
        n = len(spec.endpoints)
        self.ctx.set(zmq.MAX_SOCKETS, (spec.share(spec.connections) + 1) * n + 8)
        self.fds = select.poll()  # the sockets' ZMQ_FDs: cheaper than zmq_poll over many
        self.by_fd: dict[int, Sock] = {}
        self.touched: set[Sock] = set()  # sent on since their EVENTS were last read
        self.control: dict[str, Sock] = {}  # off the hot path: discovery, sessions
        self.control_poller = zmq.Poller()
        self.conns: list[_Conn] = []
        self.loops: list[_Loop] = []
        self.leader: str | None = None
        self.next_discovery = 0.0
        self.by_id: dict[int, str] = {}
        self.cluster_id = 0  # 0 until learnt: nodes accept it
        self.ids = itertools.count(1)
        self.pending: dict[int, _Loop] = {}  # request id -> the loop waiting for it
        self.timeouts: deque[tuple[float, int]] = deque()  # (deadline, request id), in order
        self.sleepers: list[tuple[float, int, _Loop, bool]] = []  # (wake, n, loop, resend)
        self.running = 0

    # --- off the hot path: codec messages on control sockets ---

    def _rpc(
        self, calls: list[tuple[str, Any]], timeout: float, enough: int | None = None
    ) -> list[Any]:
        """Each (endpoint, request)'s reply, the error it answered, or None if none came
        (before ``timeout``, or once ``enough`` replies are in and one is a leader's)."""
        results: list[Any] = [None] * len(calls)
        waiting: dict[int, int] = {}
        for i, (endpoint, request) in enumerate(calls):
            if endpoint not in self.control:
                dealer = open_dealer(self.ctx, endpoint, routing_id=None, immediate=False)
                self.control[endpoint] = dealer.zmq_socket
                self.control_poller.register(dealer.zmq_socket, zmq.POLLIN)
            rid = next(self.ids)
            frames = encode(request, cluster_id=self.cluster_id, request_id=rid)
            try:  # queued while connecting; a node long gone fills the queue: no answer
                self.control[endpoint].send_multipart(frames, _NOBLOCK)
            except zmq.Again:
                continue
            waiting[rid] = i
        end = time.monotonic() + timeout
        while waiting and (left := end - time.monotonic()) > 0:
            if enough and len(calls) - len(waiting) >= enough and any(map(_leads, results)):
                break  # a dead node would hold up a leader change for the whole timeout
            for sock, _ in self.control_poller.poll(math.ceil(left * 1000)):
                try:
                    got = decode(sock.recv_multipart(), cluster_id=None)
                except err.WireError:
                    continue
                i = waiting.pop(got.request_id, -1)
                if i >= 0:
                    msg = got.msg
                    results[i] = error_from(msg) if isinstance(msg, cm.ErrorReply) else msg
        return results

    def _discover(self) -> None:
        """Ask every endpoint its status: the leader is the one of the highest term."""
        calls = [(endpoint, cm.StatusRequest()) for endpoint in self.spec.endpoints]
        best: cm.StatusReply | None = None
        for (endpoint, _), st in zip(calls, self._rpc(calls, 2, len(calls) // 2 + 1), strict=True):
            if isinstance(st, cm.StatusReply):
                self.by_id[st.node_id] = endpoint
                self.cluster_id = st.cluster_id
                if _leads(st) and (best is None or st.term > best.term):
                    best, self.leader = st, endpoint
        if best is None:
            self.leader = None

    def _leader_until(self, deadline: float) -> str:
        while self.leader is None:
            if time.monotonic() > deadline:
                raise err.Unavailable("no endpoint is the leader")
            self._discover()
            if self.leader is None:
                time.sleep(DISCOVER_EVERY)
        return self.leader

    def _sessions(self, n: int) -> list[int]:
        """Register ``n`` client sessions through the leader (retried up to OP_TIMEOUT)."""
        ids: list[int] = []
        deadline = time.monotonic() + OP_TIMEOUT
        while len(ids) < n:
            leader = self._leader_until(deadline)
            replies = self._rpc([(leader, cm.SessionRequest())] * (n - len(ids)), 2)
            ids += [r.session_id for r in replies if isinstance(r, cm.SessionReply)]
            if len(ids) < n:
                if not all(isinstance(r, cm.SessionReply | err.Busy) for r in replies):
                    self.leader = None
                time.sleep(BACKOFF)
        return ids

    def setup(self) -> None:
        """Find the leader, open the connections and sessions; wait until connected."""
        spec = self.spec
        n = spec.share(spec.clients)
        if not self.eventual:
            self._leader_until(time.monotonic() + OP_TIMEOUT)
        for j in range(max(1, min(spec.share(spec.connections), n))):
            conn = _Conn((j * spec.workers + spec.worker) % len(spec.endpoints))
            self._socket(conn, self._endpoint(conn) or spec.endpoints[0])
            self.conns.append(conn)
        sessions = self._sessions(n) if self.put and spec.sessions else [0] * n
        for i in range(n):
            self.loops.append(
                _Loop(loop_rng(spec, i), self.conns[i % len(self.conns)], sessions[i])
            )

    def _socket(self, conn: _Conn, endpoint: str) -> Sock:
        """A new DEALER of ``conn`` to ``endpoint``, once connected (or CONNECT_WAIT passed)."""
        sock = open_dealer(self.ctx, endpoint, routing_id=None, immediate=True).zmq_socket
        sock.poll(int(CONNECT_WAIT * 1000), zmq.POLLOUT)  # IMMEDIATE: writable once connected
        fd = sock.getsockopt(zmq.FD)
        assert isinstance(fd, int)
        self.fds.register(fd, select.POLLIN)
        self.by_fd[fd] = sock
        conn.socks[endpoint] = sock
        return sock

    def close(self) -> None:
        self.ctx.destroy(linger=0)

    # --- the hot path ---

    def _endpoint(self, conn: _Conn) -> str | None:
        if self.eventual:
            return self.spec.endpoints[conn.target % len(self.spec.endpoints)]
        return self.leader

    def _begin(self, loop: _Loop, now: float) -> None:
        """Start the loop's next operation, or stop it (deadline passed, quota made)."""
        tally = self.tally
        if tally.until and now >= tally.until:
            self.running -= 1
            return
        measuring = now >= tally.measure_at
        if measuring and tally.quota is not None:
            if tally.issued >= tally.quota:
                self.running -= 1
                return
            tally.issued += 1  # reserved: the workers make exactly --ops operations
        loop.measuring = measuring
        loop.key = self.spec.key(loop.rng.randrange(self.spec.key_space))
        if self.put:
            loop.seq += 1 if loop.session else 0
            loop.body = cbor2.dumps([loop.key, self.value, loop.session, loop.seq])
        else:
            loop.body = cbor2.dumps([loop.key, self.level])
        loop.deadline, loop.backoff = now + OP_TIMEOUT, BACKOFF
        loop.uncertain, loop.last = False, None
        loop.t0 = time.perf_counter()
        self._send(loop, now)

    def _send(self, loop: _Loop, now: float) -> None:
        conn = loop.conn
        if not self.eventual and self.leader is None and now >= self.next_discovery:
            self._discover()
            self.next_discovery = time.monotonic() + DISCOVER_EVERY
        endpoint = self._endpoint(conn)
        if endpoint is None:  # nobody leads (yet): nothing was sent
            loop.last = err.Unavailable("no endpoint is the leader")
            self._back_off(loop, now)
            return
        sock = conn.socks.get(endpoint) or self._socket(conn, endpoint)
        loop.endpoint, rid = endpoint, next(self.ids)
        header = HEADER.pack(PROTOCOL_VERSION, 0, self.code, self.cluster_id, rid)
        try:
            sock.send(header + loop.body, _NOBLOCK)  # one frame (wire.codec)
        except zmq.Again:  # IMMEDIATE: not connected, nothing sent
            self._retry(loop, Unreachable(f"{endpoint} is unreachable"), now)
            return
        self.touched.add(sock)
        self.pending[rid] = loop
        self.timeouts.append((now + ATTEMPT_TIMEOUT, rid))

    def _on_reply(self, frame: bytes, now: float) -> None:
        try:
            version, flags, code, _cluster, rid = HEADER.unpack_from(frame)
        except struct.error:
            return
        loop = self.pending.pop(rid, None)
        if loop is None:  # an attempt given up on
            return
        if code != self.reply_code or version != PROTOCOL_VERSION or flags:
            self._retry(loop, _error_of(frame), now)
            return
        if loop.measuring:
            tally = self.tally
            tally.hist[bucket_of(time.perf_counter() - loop.t0)] += 1
            tally.done += 1
            tally.end = now
            if code == GET_REPLY and frame.startswith(NO_KV, HEADER.size):
                tally.extra["misses"] += 1
        self._begin(loop, now)

    def _retry(self, loop: _Loop, exc: err.TrioraftError, now: float) -> None:
        """An attempt failed: retry as the client does, or fail the operation."""
        loop.last = exc
        if self.eventual:
            if not isinstance(exc, err.Unavailable | err.Timeout | err.Busy):
                self._fail(loop, exc, now)
                return
            loop.conn.target += 1
            self._sleep(loop, now + ERROR_PAUSE, resend=True)
            return
        if isinstance(exc, err.NotLeader) and (hint := self.by_id.get(exc.leader_id)):
            self.leader = hint
            self._resend(loop, now)  # follow the hint at once
            return
        if isinstance(exc, err.NotLeader | err.Unavailable | err.Timeout | err.ProposalDropped):
            if self.leader == loop.endpoint:  # unless another loop has found a new one
                self.leader = None
        if isinstance(exc, err.Unavailable | err.Timeout) and not isinstance(exc, Unreachable):
            loop.uncertain = loop.uncertain or self.put  # sent, not answered
            if self.put and not loop.session:
                self._fail(loop, err.Timeout("no answer; no session"), now)
                return
        elif isinstance(exc, err.SessionExpired) and self.put:
            if loop.uncertain:
                self._fail(loop, err.Timeout("session expired in a retry"), now)
                return
            loop.session, loop.seq = self._sessions(1)[0], 1  # not applied: a new session
            loop.body = cbor2.dumps([loop.key, self.value, loop.session, loop.seq])
            self._resend(loop, now)
            return
        elif not isinstance(exc, err.NotLeader | err.ProposalDropped | err.Busy | Unreachable):
            self._fail(loop, exc, now)
            return
        self._back_off(loop, now)

    def _back_off(self, loop: _Loop, now: float) -> None:
        # jittered, so that loops refused together do not return together
        self._sleep(loop, now + loop.backoff * random.uniform(0.5, 1.0), resend=True)
        loop.backoff = min(loop.backoff * 2, MAX_BACKOFF)

    def _resend(self, loop: _Loop, now: float) -> None:
        if now < loop.deadline:
            self._send(loop, now)
            return
        error = err.Timeout(f"gave up: {loop.last}")
        if not self.eventual:
            error.last_error = loop.last
        self._fail(loop, error, now)

    def _fail(self, loop: _Loop, exc: err.TrioraftError, now: float) -> None:
        """The operation failed: counted (as the client driver counts it), then the next."""
        tally = self.tally
        if not loop.measuring:
            tally.warmup_errors += 1
        else:
            tally.errors[error_kind(exc)] += 1
            if tally.quota is not None:
                tally.issued -= 1  # to be made again
                if sum(tally.errors.values()) > max(1000, tally.quota):
                    self.running -= 1  # give up: the report shows ops < --ops
                    return
        self._sleep(loop, now + ERROR_PAUSE, resend=False)

    def _sleep(self, loop: _Loop, wake: float, *, resend: bool) -> None:
        heapq.heappush(self.sleepers, (wake, next(self.ids), loop, resend))

    def _first_timeout(self) -> float:
        """When the oldest attempt still unanswered times out (answered ones are dropped)."""
        timeouts = self.timeouts
        while timeouts and timeouts[0][1] not in self.pending:
            timeouts.popleft()
        return timeouts[0][0] if timeouts else math.inf

    def _drain(self, sock: Sock, now: float) -> None:
        """Every reply waiting on ``sock``. ZMQ_FD is edge-triggered: a socket is read until
        its EVENTS say there is no more, after any send on it as well."""
        recv = sock.recv
        while sock.getsockopt(_EVENTS) & _POLLIN:  # type: ignore[operator]  # an int option
            # a reply is one frame (wire.codec): one recv costs a third of recv_multipart
            self._on_reply(recv(_NOBLOCK), now)
        self.touched.discard(sock)

    def run(self, report: Report) -> float:
        """The closed loops, from the go until they all stop; the CPU seconds measured."""
        tally, timeouts, sleepers, pending = self.tally, self.timeouts, self.sleepers, self.pending
        time.sleep(max(0.0, tally.start_at - time.monotonic()))
        now = time.monotonic()
        self.running = len(self.loops)
        for loop in self.loops:
            self._begin(loop, now)
        cpu0: float | None = None
        next_progress = now + PROGRESS_EVERY
        while self.running:
            now = time.monotonic()
            if cpu0 is None and now >= tally.measure_at:
                cpu0 = time.process_time()
            if now >= next_progress:
                report({"progress": tally.done})
                next_progress = now + PROGRESS_EVERY
            while self._first_timeout() <= now:
                self._retry(pending.pop(timeouts.popleft()[1]), err.Timeout("no reply"), now)
            while sleepers and sleepers[0][0] <= now:
                _, _, loop, resend = heapq.heappop(sleepers)
                (self._resend if resend else self._begin)(loop, now)
            while self.touched:  # a send may have taken the FD's signal of a reply: look now
                self._drain(self.touched.pop(), now)
            wake = min(
                next_progress, self._first_timeout(), sleepers[0][0] if sleepers else math.inf
            )
            if cpu0 is None:
                wake = min(wake, tally.measure_at)
            ready = self.fds.poll(math.ceil(max(wake - now, 0.0) * 1000))
            now = time.monotonic()
            for fd, _ in ready:
                self._drain(self.by_fd[fd], now)
        return 0.0 if cpu0 is None else time.process_time() - cpu0


def _leads(status: Any) -> bool:
    return isinstance(status, cm.StatusReply) and status.role == cm.Role.LEADER


def _error_of(frame: bytes) -> err.TrioraftError:
    try:
        msg = decode([frame], cluster_id=None).msg
    except err.WireError as exc:
        return exc
    if isinstance(msg, cm.ErrorReply):
        return error_from(msg)
    return err.WireError(f"unexpected reply {type(msg).__name__}")


def run_fast_worker(spec: BenchSpec, report: Report, control: Callable[[], dict[str, Any]]) -> None:
    """One worker process's load (see ``cli.bench_workloads.run_worker``), synchronously."""
    worker = FastWorker(spec)
    try:
        worker.setup()
        report({"ready": True})
        worker.tally.go(control())
        cpu = worker.run(report)
    finally:
        worker.close()
    report(final_report(worker.tally, cpu, dict(worker.tally.extra)))


if __name__ == "__main__":
    run_fast_worker(BenchSpec(**json.loads(sys.argv[1])), report_line, read_control)
