"""Watches: key and prefix event streams fed by the apply task, served by any node.

The apply task hands every applied batch's events to ``WatchHub.publish`` in log order;
the hub appends them to a bounded history ring (the last ``watch_history`` events, in
memory: a restarted node's history starts at its applied index) and sends each watcher the
events that match it, all events of one revision in one message. A watch may start at a
past revision still in the ring (replayed first), else it is cancelled with ``Compacted``
naming the oldest revision available.

The ring keeps each event packed in one ``bytes`` (``_pack``), not as the ``Event`` and its
one or two ``KeyValue`` objects: CPython's collector never tracks ``bytes``, while the
objects would be scanned by every collection until they left the ring. Under write load
they were most of what a young collection scanned (docs/performance.md, "No collections
under write load"); a replay unpacks the events it sends.

No task per watcher: a message the client connection cannot take now (its ZeroMQ queue is
full) waits in the watcher's buffer; the hub's task retries buffered sends and sends
progress messages (``WatchProgress(applied)``) to watchers idle for ``progress_ms``. A
watcher with more than ``watch_buffer`` events buffered has fallen behind: it is cancelled
with ``Busy`` and a message saying so, never silently skipped (the client library resumes
from the last revision it delivered).

A node cancels its watches (``Unavailable``, retryable) when it loses track of the leader
(an election, a partition): a watch served by a cut-off node would otherwise stall without
anyone noticing. The client resumes elsewhere without a gap.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Hashable, Sequence
from enum import IntEnum
from typing import Any, Protocol

import trio

from wire import client_messages as cm
from wire.errors import Busy, Compacted, Unavailable

MESSAGE_BYTES = 1 << 20  # events per message, roughly (whole revisions are never split)
RETRY_SECONDS = 0.005  # buffered sends are retried this often while any wait


class Offer(IntEnum):
    SENT = 0
    FULL = 1  # the connection cannot take it now; nothing was sent
    GONE = 2  # the client is gone; nothing will ever be sent


# A packed event: this head, then the key, the value and the previous value (if any).
# mod (the event's revision), type, has previous value, create, version, the previous
# value's create, mod and version, key length, value length
_HEAD = struct.Struct("<QBBQQQQQII")
_MOD = struct.Struct("<Q")  # the event's revision, first
_NO_PREV = (0, 0, 0)


def _pack(e: cm.Event) -> bytes:
    kv, prev = e.kv, e.prev_kv
    old = _NO_PREV if prev is None else (prev.create_revision, prev.mod_revision, prev.version)
    key, value = kv.key, kv.value
    head = _HEAD.pack(
        kv.mod_revision, e.type, prev is not None, kv.create_revision, kv.version, *old,
        len(key), len(value),
    )  # fmt: skip
    return b"".join((head, key, value, prev.value)) if prev else head + key + value


def _revision(packed: bytes) -> int:
    mod: int = _MOD.unpack_from(packed)[0]
    return mod


def _key(packed: bytes) -> bytes:
    n = _HEAD.unpack_from(packed)[8]
    return packed[_HEAD.size : _HEAD.size + n]


def _unpack(packed: bytes) -> cm.Event:
    mod, t, has_prev, create, version, p_create, p_mod, p_version, nk, nv = _HEAD.unpack_from(
        packed
    )
    at = _HEAD.size
    key, value = packed[at : at + nk], packed[at + nk : at + nk + nv]
    kv = cm.KeyValue(key, value, create, mod, version)
    if not has_prev:
        return cm.Event(cm.EventType(t), kv)
    prev = cm.KeyValue(key, packed[at + nk + nv :], p_create, p_mod, p_version)
    return cm.Event(cm.EventType(t), kv, prev)


class StreamReply(Protocol):
    """Sends the messages of one stream (the client port implements it)."""

    @property
    def key(self) -> Hashable: ...

    def offer(self, msg: Any) -> Offer: ...


class _Watcher:
    __slots__ = (
        "closing",
        "key",
        "last_sent",
        "out",
        "pending",
        "pending_events",
        "prefix",
        "prev_kv",
        "start",
    )

    def __init__(self, req: cm.WatchRequest, out: StreamReply, start: int, now: float) -> None:
        self.key, self.prefix, self.prev_kv = req.key, req.prefix, req.prev_kv
        self.out = out
        self.start = start  # events below this revision are not for this watcher
        self.pending: deque[tuple[Any, int]] = deque()  # (message, events in it)
        self.pending_events = 0
        self.last_sent = now
        self.closing = False  # cancelled; only its last message may still be pending

    def matches(self, key: bytes) -> bool:
        return key.startswith(self.key) if self.prefix else key == self.key


class WatchHub:
    def __init__(
        self,
        *,
        node_id: int,
        enabled: bool,
        history: int,
        buffer: int,
        progress_ms: int,
        max_watchers: int,
        applied: int,
    ) -> None:
        self.node_id = node_id
        self.enabled = enabled
        self.buffer = buffer
        self.progress_ms = progress_ms
        self.max_watchers = max_watchers
        self.applied = applied
        self.oldest = applied + 1  # oldest revision whose events are all in the ring
        self._history = history
        self._ring: deque[bytes] = deque()  # packed events
        self._streams: dict[Hashable, _Watcher] = {}
        self._exact: dict[bytes, set[_Watcher]] = {}
        # Prefix watchers by prefix, and how many prefixes there are of each length: an
        # event looks up its key's prefix of each length, not every prefix watcher.
        self._prefixed: dict[bytes, set[_Watcher]] = {}
        self._prefix_lengths: dict[int, int] = {}
        self._flush: set[_Watcher] = set()
        self._wake = trio.Event()
        self.leader_known = False

    def __len__(self) -> int:
        return len(self._streams)

    # --- requests from the client port ---
    def open(self, req: cm.WatchRequest, out: StreamReply) -> None:
        """Start a watch: ``WatchCreated``, replayed history, then live events."""

        def refuse(code: int, message: str, retry: bool, compact: int = 0) -> None:
            out.offer(cm.WatchCanceled(code, message, compact, retry))

        if not self.enabled:
            return refuse(Unavailable.code, "watch is disabled on this node", False)
        if not self.leader_known:
            return refuse(Unavailable.code, f"node {self.node_id} knows no leader", True)
        if len(self._streams) >= self.max_watchers:
            return refuse(Busy.code, f"node {self.node_id} has {len(self)} watches", True)
        start = req.start_revision or self.applied + 1
        if start < self.oldest:
            message = (
                f"revision {start} is compacted on node {self.node_id}; "
                f"the oldest available is {self.oldest}"
            )
            return refuse(Compacted.code, message, False, self.oldest)
        self.cancel(out.key)
        w = _Watcher(req, out, start, trio.current_time())
        if out.offer(cm.WatchCreated(self.applied, self.progress_ms)) != Offer.SENT:
            return
        self._streams[out.key] = w
        index = self._prefixed if w.prefix else self._exact
        if w.key not in index:
            index[w.key] = set()
            if w.prefix:
                self._count_prefix_length(len(w.key), 1)
        index[w.key].add(w)
        if start <= self.applied:
            ring = self._ring
            past = [_unpack(p) for p in ring if _revision(p) >= start and w.matches(_key(p))]
            self._deliver(w, past)

    def cancel(self, key: Hashable) -> None:
        """The client cancelled the watch (no message is sent)."""
        w = self._streams.get(key)
        if w is not None:
            self._remove(w)
            self._flush.discard(w)

    # --- from the apply task ---
    def publish(self, events: Sequence[cm.Event], applied: int) -> None:
        """Events of one applied batch, in order; ``applied`` is the new applied index."""
        self.applied = applied
        if events and self._history:
            ring = self._ring
            ring.extend(map(_pack, events))
            excess = len(ring) - self._history
            if excess > 0:  # revisions never fall along the ring: the last one out counts
                for _ in range(excess - 1):
                    ring.popleft()
                self.oldest = max(self.oldest, _revision(ring.popleft()) + 1)
        elif events:
            self.oldest = applied + 1
        if not self._streams or not events:
            return
        matched: dict[_Watcher, list[cm.Event]] = {}
        exact, prefixed, lengths = self._exact, self._prefixed, self._prefix_lengths
        for e in events:
            key = e.kv.key
            for w in exact.get(key, ()):
                matched.setdefault(w, []).append(e)
            for n in lengths:
                if n <= len(key):
                    for w in prefixed.get(key[:n], ()):
                        matched.setdefault(w, []).append(e)
        for w, evs in matched.items():
            self._deliver(w, [e for e in evs if e.revision >= w.start])

    def set_leader_known(self, known: bool) -> None:
        self.leader_known = known
        if not known:
            message = f"node {self.node_id} lost track of the leader; resume on another node"
            self.cancel_all(Unavailable.code, message)

    def reset(self, applied: int) -> None:
        """The state machine jumped to ``applied`` (a snapshot was installed): the events
        in between are unknown here, so every watch ends (retryable: the client resumes
        where it was, here or elsewhere) and the history restarts after ``applied``."""
        self.cancel_all(Unavailable.code, f"node {self.node_id} installed a snapshot; resume")
        self._ring.clear()
        self.applied = applied
        self.oldest = applied + 1

    def cancel_all(self, code: int, message: str) -> None:
        for w in list(self._streams.values()):
            self._cancel(w, code, message, retry=True)

    # --- the hub's task: buffered sends and progress ---
    async def run(self) -> None:
        period = self.progress_ms / 1000
        next_progress = trio.current_time() + period / 4
        while True:
            deadline = next_progress
            if self._flush:
                deadline = min(deadline, trio.current_time() + RETRY_SECONDS)
            with trio.move_on_at(deadline):
                await self._wake.wait()
            self._wake = trio.Event()
            for w in list(self._flush):
                self._drain(w)
            now = trio.current_time()
            if now >= next_progress:
                next_progress = now + period / 4
                for w in list(self._streams.values()):
                    if not w.pending and now - w.last_sent >= period:
                        self._send(w, cm.WatchProgress(self.applied), 0)

    # --- internals ---
    def _deliver(self, w: _Watcher, events: list[cm.Event]) -> None:
        if not w.prev_kv:
            events = [e if e.prev_kv is None else cm.Event(e.type, e.kv) for e in events]
        batch: list[cm.Event] = []
        size = 0
        for i, e in enumerate(events):
            batch.append(e)
            size += len(e.kv.key) + len(e.kv.value) + 48
            if e.prev_kv is not None:
                size += len(e.prev_kv.value)
            last_of_revision = i + 1 == len(events) or events[i + 1].revision != e.revision
            if last_of_revision and (size >= MESSAGE_BYTES or i + 1 == len(events)):
                self._send(w, cm.WatchEvents(batch), len(batch))
                batch, size = [], 0
                if w.closing:
                    return

    def _send(self, w: _Watcher, msg: Any, n: int) -> None:
        if not w.pending:
            result = w.out.offer(msg)
            if result == Offer.SENT:
                w.last_sent = trio.current_time()
                return
            if result == Offer.GONE:
                self._remove(w)
                return
        w.pending.append((msg, n))
        w.pending_events += n
        self._flush.add(w)
        self._wake.set()
        if w.pending_events > self.buffer:
            first = next(m for m, k in w.pending if k).events[0].revision
            self._cancel(
                w,
                Busy.code,
                f"watcher fell behind: more than {self.buffer} events waiting to be sent "
                f"(watch_buffer); resume from revision {first}",
                retry=True,
            )

    def _cancel(self, w: _Watcher, code: int, message: str, *, retry: bool) -> None:
        self._remove(w)
        w.closing = True
        w.pending.clear()
        w.pending_events = 0
        w.pending.append((cm.WatchCanceled(code, message, 0, retry), 0))
        self._drain(w)

    def _drain(self, w: _Watcher) -> None:
        while w.pending:
            msg, n = w.pending[0]
            result = w.out.offer(msg)
            if result == Offer.FULL:
                self._flush.add(w)
                return
            if result == Offer.GONE:
                self._remove(w)
                break
            w.pending.popleft()
            w.pending_events -= n
            w.last_sent = trio.current_time()
        self._flush.discard(w)

    def _remove(self, w: _Watcher) -> None:
        w.pending.clear()
        w.pending_events = 0
        if self._streams.get(w.out.key) is w:
            del self._streams[w.out.key]
        index = self._prefixed if w.prefix else self._exact
        same = index.get(w.key)
        if same is not None:
            same.discard(w)
            if not same:
                del index[w.key]
                if w.prefix:
                    self._count_prefix_length(len(w.key), -1)

    def _count_prefix_length(self, n: int, delta: int) -> None:
        """Prefixes of length ``n`` watched: one more or one fewer."""
        left = self._prefix_lengths.get(n, 0) + delta
        if left:
            self._prefix_lengths[n] = left
        else:
            del self._prefix_lengths[n]
