"""The replicated KV state machine: turns committed entries into storage writes.

Only the apply task calls ``apply``. A batch of committed entries becomes one atomic storage
batch that also records the applied index, so a crash leaves data and applied index
consistent; whatever an unsynced batch lost is re-applied from the log on restart.

Each applied entry yields the reply for whoever proposed it (``WriteReply``, ``TxnReply``,
``SessionReply`` or ``ErrorReply``), and every change of a key yields a watch ``Event``
with the entry's index as its revision. The storage layout is in ``trioraft.kv.layout``,
client sessions in ``trioraft.kv.sessions``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from storage.base import KvOp, Store
from trioraft.config import DEFAULT_MAX_SESSIONS, DEFAULT_SESSION_TTL_MS
from trioraft.core.confstate import Membership
from trioraft.kv import layout
from trioraft.kv.commands import (
    Delete,
    InSession,
    Put,
    RegisterSession,
    Txn,
    Write,
    decode_command,
    decode_session_put,
)
from trioraft.kv.membership import MembershipRecord
from trioraft.kv.sessions import Result, Session, SessionTable, decode_result, encode_result
from wire.client_messages import (
    Compare,
    CompareOp,
    CompareTarget,
    ErrorReply,
    Event,
    EventType,
    KeyValue,
    OpKind,
    OpResult,
    SessionReply,
    TxnReply,
    WriteReply,
)
from wire.errors import InvalidRequest, SessionExpired, StorageError
from wire.messages import Entry, EntryKind

log = logging.getLogger(__name__)

USER = layout.USER
unpack_value, pack_value = layout.unpack_value, layout.pack_value
_PUT = EventType.PUT

DEFAULT_RANGE_BYTES = 4 << 20


@dataclass(slots=True)
class Applied:
    """What one ``apply`` produced: replies by entry index, and watch events in order."""

    results: dict[int, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    # (index, membership after it) for each applied entry that changed the membership
    memberships: list[tuple[int, Membership]] = field(default_factory=list)


class KVStateMachine:
    def __init__(
        self,
        store: Store,
        *,
        session_ttl_ms: int = DEFAULT_SESSION_TTL_MS,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        max_range_bytes: int = DEFAULT_RANGE_BYTES,
    ) -> None:
        self._store = store
        self._applied = store.applied_index()
        self._max_range_bytes = max_range_bytes
        self._check_layout()
        raw_clock = store.get(layout.META_CLOCK)
        self._clock = layout.unpack_u64(raw_clock) if raw_clock else 0
        self.sessions = SessionTable(store, ttl_ms=session_ttl_ms, max_sessions=max_sessions)
        self.membership = MembershipRecord(store)
        # per batch: storage writes, and the values they leave (reads see earlier writes)
        self._ops: list[KvOp] = []
        self._overlay: dict[bytes, bytes | None] = {}
        self._events: list[Event] = []

    def _check_layout(self) -> None:
        raw = self._store.get(layout.META_LAYOUT)
        self._layout_missing = raw is None
        if raw is not None:
            version = layout.unpack_u64(raw)
            if version != layout.LAYOUT_VERSION:
                raise StorageError(
                    f"data dir {self._store.path}: state machine layout {version} is not "
                    f"supported (this trioraft reads layout {layout.LAYOUT_VERSION})"
                )
        elif next(iter(self._store.scan(b"")), None) is not None:
            raise StorageError(
                f"data dir {self._store.path}: state machine data predates the value "
                "envelope (layout 0); start from an empty data dir"
            )

    def reload(self) -> None:
        """The store's state machine was replaced (a snapshot was installed, see
        docs/snapshots.md): read applied index, clock and sessions again."""
        self._applied = self._store.applied_index()
        self._check_layout()
        raw_clock = self._store.get(layout.META_CLOCK)
        self._clock = layout.unpack_u64(raw_clock) if raw_clock else 0
        self.sessions = SessionTable(
            self._store, ttl_ms=self.sessions.ttl_ms, max_sessions=self.sessions.max_sessions
        )
        self.membership.reload()

    @property
    def applied(self) -> int:
        return self._applied

    @property
    def clock(self) -> int:
        """Log time (ms): the largest leader stamp applied so far."""
        return self._clock

    def apply(self, entries: Sequence[Entry]) -> Applied:
        """Apply committed entries in order; reply for each NORMAL entry, events in order.

        Entries at or below the applied index (re-delivered after a restart) are skipped.
        """
        out = Applied()
        self._ops, self._overlay, self._events = [], {}, out.events
        clock = self._clock
        try:
            self._apply(entries, out, clock)
        except BaseException:
            # nothing is stored: forget the batch, so that a retry starts from scratch
            self.sessions.rollback()
            self.membership.rollback()
            self._clock = clock
            raise
        finally:
            self._ops, self._overlay, self._events = [], {}, []
        return out

    def _apply(self, entries: Sequence[Entry], out: Applied, clock: int) -> None:
        if self._layout_missing:
            self._ops.append((layout.META_LAYOUT, layout.pack_u64(layout.LAYOUT_VERSION)))
        last = self._applied
        for entry in entries:
            if entry.index <= self._applied:
                continue
            last = entry.index
            if entry.kind != EntryKind.NORMAL:
                self.membership.stage(entry, self._ops, out.memberships)
                continue
            fast = decode_session_put(entry.data)
            if fast is not None and self._session_put(entry.index, fast, out):
                continue
            try:
                cmd, stamp = decode_command(entry.data)
            except InvalidRequest as exc:
                log.error("log entry %d: %s; skipped", entry.index, exc)
                out.results[entry.index] = ErrorReply(InvalidRequest.code, str(exc))
                continue
            self._clock = max(self._clock, stamp)
            rev = entry.index
            if isinstance(cmd, RegisterSession):
                self.sessions.register(rev, self._clock, self._ops)
                out.results[rev] = SessionReply(rev, self.sessions.ttl_ms)
            elif isinstance(cmd, InSession):
                out.results[rev] = self._apply_in_session(rev, cmd)
            else:
                out.results[rev] = self._apply_write(rev, cmd)
        if self._clock != clock:
            self._ops.append((layout.META_CLOCK, layout.pack_u64(self._clock)))
        if last > self._applied:
            self._store.apply(self._ops, last)
            self._applied = last
            self._layout_missing = False
        self.sessions.commit()
        self.membership.commit()

    def _session_put(
        self, rev: int, fields: tuple[int, int, int, bytes, bytes], out: Applied
    ) -> bool:
        """The common entry, a put under a session, applied as ``_apply_in_session`` would
        with its layers folded together. False (nothing done) for the other cases: a retry,
        a stale or unknown session; the general path takes those."""
        sid, seq, stamp, key, value = fields
        clock = stamp if stamp > self._clock else self._clock
        session = self.sessions.live(sid, clock)
        if session is None or seq <= session.last_seq:
            return False
        self._clock = clock
        skey = USER + key
        overlay = self._overlay
        raw = overlay[skey] if skey in overlay else self._store.get(skey)
        if raw is None:
            old, create, version = None, rev, 1
        else:
            old = unpack_value(key, raw)
            create, version = old.create_revision, old.version + 1
        raw = pack_value(value, create, rev, version)
        overlay[skey] = raw
        ops = self._ops
        ops.append((skey, raw))
        self._events.append(Event(_PUT, KeyValue(key, value, create, rev, version), old))
        result = WriteReply(rev, old is not None)
        out.results[rev] = result
        self.sessions.put(sid, Session(seq, clock, encode_result(result)), ops)
        return True

    def _apply_in_session(self, rev: int, cmd: InSession) -> Result:
        sid, seq = cmd.session_id, cmd.seq
        session = self.sessions.live(sid, self._clock)
        if session is None:
            self.sessions.drop(sid, self._ops)
            return ErrorReply(SessionExpired.code, f"session {sid} is unknown or expired")
        if seq == session.last_seq:
            return decode_result(session.result)  # a retry: answer it, change nothing
        if seq < session.last_seq:
            return ErrorReply(
                InvalidRequest.code,
                f"session {sid}: request {seq} is older than the last one applied "
                f"({session.last_seq}); not applied",
            )
        result = self._apply_write(rev, cmd.command)
        self.sessions.put(sid, Session(seq, self._clock, encode_result(result)), self._ops)
        return result

    def _apply_write(self, rev: int, cmd: Write) -> Result:
        if isinstance(cmd, Put):
            return WriteReply(rev, self._put(rev, cmd.key, cmd.value))
        if isinstance(cmd, Delete):
            return WriteReply(rev, self._delete(rev, cmd.key))
        return self._txn(rev, cmd)

    # --- one key ---
    def _load(self, key: bytes) -> KeyValue | None:
        skey = layout.user_key(key)
        raw = self._overlay[skey] if skey in self._overlay else self._store.get(skey)
        return None if raw is None else layout.unpack_value(key, raw)

    def _write(self, key: bytes, raw: bytes | None) -> None:
        skey = layout.user_key(key)
        self._overlay[skey] = raw
        self._ops.append((skey, raw))

    def _put(self, rev: int, key: bytes, value: bytes) -> bool:
        old = self._load(key)
        create, version = (old.create_revision, old.version + 1) if old else (rev, 1)
        self._write(key, layout.pack_value(value, create, rev, version))
        kv = KeyValue(key, value, create, rev, version)
        self._events.append(Event(EventType.PUT, kv, old))
        return old is not None

    def _delete(self, rev: int, key: bytes) -> bool:
        old = self._load(key)
        if old is None:
            return False
        self._write(key, None)
        self._events.append(Event(EventType.DELETE, KeyValue(key, b"", 0, rev, 0), old))
        return True

    # --- transactions ---
    def _txn(self, rev: int, txn: Txn) -> TxnReply:
        succeeded = all(self._holds(c) for c in txn.compares)
        results = []
        for op in txn.success if succeeded else txn.failure:
            if op.kind == OpKind.PUT:
                results.append(OpResult(op.kind, self._put(rev, op.key, op.value)))
            elif op.kind == OpKind.DELETE:
                results.append(OpResult(op.kind, self._delete(rev, op.key)))
            else:
                kv = self._load(op.key)
                results.append(OpResult(op.kind, kv is not None, kv))
        return TxnReply(succeeded, rev, results)

    def _holds(self, c: Compare) -> bool:
        kv = self._load(c.key)
        if c.target == CompareTarget.VALUE:
            if kv is None:
                return False  # as in etcd: a value compare on a missing key fails
            return _compare(kv.value, c.op, c.value)
        if c.target == CompareTarget.VERSION:
            have = kv.version if kv else 0
        elif c.target == CompareTarget.CREATE_REVISION:
            have = kv.create_revision if kv else 0
        else:
            have = kv.mod_revision if kv else 0
        return _compare(have, c.op, c.number)

    # --- reads (any task; never during apply) ---
    def get(self, key: bytes) -> bytes | None:
        kv = self.get_kv(key)
        return None if kv is None else kv.value

    def get_kv(self, key: bytes) -> KeyValue | None:
        raw = self._store.get(layout.user_key(key))
        return None if raw is None else layout.unpack_value(key, raw)

    def range(self, start: bytes, end: bytes | None, limit: int) -> tuple[list[KeyValue], bool]:
        """Up to ``limit`` keys of ``[start, end)`` in order (fewer if they pass the byte
        budget); and whether more keys remain."""
        out: list[KeyValue] = []
        size = 0
        for key, raw in layout.scan_users(self._store, start, end):
            if len(out) >= limit or size >= self._max_range_bytes:
                return out, True
            kv = layout.unpack_value(key, raw)
            out.append(kv)
            size += len(key) + len(kv.value) + 32
        return out, False


def _compare(have: Any, op: CompareOp, want: Any) -> bool:
    if op == CompareOp.EQUAL:
        return bool(have == want)
    if op == CompareOp.NOT_EQUAL:
        return bool(have != want)
    if op == CompareOp.LESS:
        return bool(have < want)
    return bool(have > want)
