"""Client sessions for exactly-once writes (Raft thesis §6.3).

A client registers a session (one log entry; the session id is that entry's index) and
numbers its writes ``seq = 1, 2, ...``, with at most one write outstanding per session (the
client library keeps a pool of sessions for concurrent writes). For each session the state
machine keeps the last ``seq`` it applied and that write's result:

- ``seq`` greater than the last: apply, remember the result;
- ``seq`` equal to the last: a retry whose first copy applied: answer the kept result and
  change nothing;
- ``seq`` lower: a stale duplicate the client no longer waits for: refused, no effect.

Expiry runs on *log time*: the leader stamps its wall clock (ms) into every session entry,
and the state machine's clock is the largest stamp applied so far (a new leader's clock
that runs behind cannot move it back). A session unused for ``ttl_ms`` of log time is
expired when it is next used (``SessionExpired``) or when a registration sweeps the table;
when ``max_sessions`` are live, a registration evicts the least recently used one. Every
decision depends only on the log, so every node keeps the same table.

The table lives in memory (it is bounded) and in the store under ``b"s" + id``; changes
are written in the same batch as the data they belong to, and staged in memory until that
batch is stored (``commit``), so a failed storage write can be retried from scratch.
"""

from __future__ import annotations

import heapq
from typing import Any, Final

import cbor2

from storage.base import KvOp, Store
from trioraft.kv.layout import SESSION, session_id_of, session_key
from wire.cbor_heads import bstr_head, uint
from wire.client_messages import (
    ErrorReply,
    KeyValue,
    OpKind,
    OpResult,
    TxnReply,
    WriteReply,
)
from wire.errors import StorageError
from wire.value import value

Result = WriteReply | TxnReply | ErrorReply


@value
class Session:
    last_seq: int
    last_stamp: int  # log time of the last write (or the registration)
    result: bytes  # encoded result of the write with last_seq (b"" before the first)


class SessionTable:
    """The sessions, and which is least recently used: a heap of ``(last_stamp, id)``
    with at least one entry per session, none newer than the session. A write under a
    session pushes nothing (the hot path); an entry that comes up older than its session
    is pushed again at the session's stamp, one for a session gone is dropped, and the heap
    is rebuilt once it holds twice as many entries as there are sessions. So a
    registration costs O(log n) however full the table (a burst of registrations once
    stalled every node for seconds, each scanning the whole table), and it evicts exactly
    what a scan for the smallest ``(last_stamp, id)`` would: every node keeps the same
    table."""

    def __init__(self, store: Store, *, ttl_ms: int, max_sessions: int) -> None:
        self.ttl_ms = ttl_ms
        self.max_sessions = max_sessions
        self._sessions: dict[int, Session] = {}
        self._staged: dict[int, Session | None] = {}  # changes of the batch being applied
        for skey, raw in store.scan(SESSION):
            try:
                last_seq, last_stamp, result = cbor2.loads(raw)
            except Exception as exc:
                raise StorageError(f"session record {skey!r}: {exc}") from None
            self._sessions[session_id_of(skey)] = Session(last_seq, last_stamp, result)
        self._count = len(self._sessions)  # sessions with the staged changes
        self._lru: list[tuple[int, int]] = []
        self._rebuild_lru()

    def __len__(self) -> int:
        return self._count

    def _get(self, session_id: int) -> Session | None:
        if session_id in self._staged:
            return self._staged[session_id]
        return self._sessions.get(session_id)

    def _rebuild_lru(self) -> None:
        live = {**self._sessions, **self._staged}
        self._lru = [(s.last_stamp, sid) for sid, s in live.items() if s is not None]
        heapq.heapify(self._lru)

    def _oldest(self) -> tuple[int, int] | None:
        """``(last_stamp, id)`` of the least recently used session, if any."""
        lru = self._lru
        while lru:
            stamp, sid = lru[0]
            s = self._get(sid)
            if s is not None and s.last_stamp == stamp:
                return stamp, sid
            if s is None:
                heapq.heappop(lru)  # dropped since
            else:
                heapq.heapreplace(lru, (s.last_stamp, sid))  # written since: its stamp now
        return None

    def live(self, session_id: int, clock: int) -> Session | None:
        """The session if it exists and has not expired at log time ``clock``."""
        s = self._get(session_id)
        if s is None or clock - s.last_stamp > self.ttl_ms:
            return None
        return s

    def register(self, session_id: int, clock: int, ops: list[KvOp]) -> None:
        """Add a session; first expire the stale ones, then evict the least recently used
        while the table is full."""
        while (oldest := self._oldest()) is not None and clock - oldest[0] > self.ttl_ms:
            self.drop(oldest[1], ops)
        while self._count >= self.max_sessions and (oldest := self._oldest()) is not None:
            self.drop(oldest[1], ops)
        if self._get(session_id) is None:
            self._count += 1
        self.put(session_id, Session(0, clock, b""), ops)
        heapq.heappush(self._lru, (clock, session_id))
        if len(self._lru) > 2 * self._count + 64:
            self._rebuild_lru()

    def put(self, session_id: int, session: Session, ops: list[KvOp]) -> None:
        """Change a registered session (its stamp never goes back: log time)."""
        self._staged[session_id] = session
        ops.append((session_key(session_id), encode_session(session)))

    def drop(self, session_id: int, ops: list[KvOp]) -> None:
        if self._get(session_id) is not None:
            self._count -= 1
            self._staged[session_id] = None
            ops.append((session_key(session_id), None))

    def commit(self) -> None:
        """The batch with the staged changes is stored: make them the table."""
        for sid, s in self._staged.items():
            if s is None:
                self._sessions.pop(sid, None)
            else:
                self._sessions[sid] = s
        self._staged = {}

    def rollback(self) -> None:
        """Forget the staged changes (the heap may have lost entries of the sessions they
        dropped: build it again)."""
        self._staged = {}
        self._count = len(self._sessions)
        self._rebuild_lru()


# --- results kept for retries: a compact CBOR form, part of the on-disk format -------------


_BOOL: Final = {False: b"\xf4", True: b"\xf5"}


def _kv(kv: KeyValue | None) -> list[Any] | None:
    if kv is None:
        return None
    return [kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version]


def encode_session(s: Session) -> bytes:
    """The stored record: ``cbor2.dumps([last_seq, last_stamp, result])``, byte for byte."""
    if (s.last_seq | s.last_stamp) >> 64:  # a bignum: cbor2's tagged form
        return cbor2.dumps([s.last_seq, s.last_stamp, s.result])
    result = s.result
    return b"".join((b"\x83", uint(s.last_seq), uint(s.last_stamp), bstr_head(len(result)), result))


def encode_result(result: Result) -> bytes:
    if isinstance(result, WriteReply):
        if result.revision >> 64:
            return cbor2.dumps([0, result.revision, result.existed])
        return b"".join((b"\x83\x00", uint(result.revision), _BOOL[result.existed]))
    if isinstance(result, TxnReply):
        ops = [[r.kind.value, r.existed, _kv(r.kv)] for r in result.results]
        return cbor2.dumps([1, result.succeeded, result.revision, ops])
    return cbor2.dumps([2, result.code, result.message])


def decode_result(data: bytes) -> Result:
    try:
        fields = cbor2.loads(data)
        match fields:
            case [0, int(revision), bool(existed)]:
                return WriteReply(revision, existed)
            case [1, bool(succeeded), int(revision), list(ops)]:
                results = [
                    OpResult(OpKind(kind), existed, None if kv is None else KeyValue(*kv))
                    for kind, existed, kv in ops
                ]
                return TxnReply(succeeded, revision, results)
            case [2, int(code), str(message)]:
                return ErrorReply(code, message)
    except Exception as exc:
        raise StorageError(f"undecodable session result: {exc}") from None
    raise StorageError(f"undecodable session result {data!r:.60}")
