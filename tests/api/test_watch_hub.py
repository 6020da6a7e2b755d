"""The watch hub alone, with fake client streams and trio's autojump clock."""

from __future__ import annotations

import gc
from collections.abc import Hashable, Sequence
from typing import Any

import trio

from harness.calls import calls
from trioraft.node.watch import Offer, WatchHub
from wire import client_messages as cm
from wire.errors import Busy, Compacted, Unavailable


class FakeStream:
    """A client stream that accepts ``room`` messages, then reports itself full."""

    def __init__(self, key: Hashable, room: int = 10**9) -> None:
        self.key = key
        self.room = room
        self.got: list[Any] = []
        self.gone = False

    def offer(self, msg: Any) -> Offer:
        if self.gone:
            return Offer.GONE
        if len(self.got) >= self.room:
            return Offer.FULL
        self.got.append(msg)
        return Offer.SENT

    def events(self) -> list[tuple[bytes, int]]:
        return [
            (e.kv.key, e.revision)
            for m in self.got
            if isinstance(m, cm.WatchEvents)
            for e in m.events
        ]


def put(key: bytes, rev: int, prev: cm.KeyValue | None = None) -> cm.Event:
    return cm.Event(cm.EventType.PUT, cm.KeyValue(key, b"v%d" % rev, 1, rev, 1), prev)


def hub(**kw: Any) -> WatchHub:
    settings: dict[str, Any] = {
        "node_id": 1,
        "enabled": True,
        "history": 100,
        "buffer": 10,
        "progress_ms": 100,
        "max_watchers": 10,
        "applied": 0,
    }
    settings.update(kw)
    h = WatchHub(**settings)
    h.set_leader_known(True)
    return h


async def test_key_and_prefix_watchers_get_their_events_in_order() -> None:
    h = hub()
    exact, pre = FakeStream("a"), FakeStream("b")
    h.open(cm.WatchRequest(b"app/1"), exact)
    h.open(cm.WatchRequest(b"app/", prefix=True, prev_kv=True), pre)
    prev = cm.KeyValue(b"app/1", b"old", 1, 1, 1)
    h.publish([put(b"app/1", 1, prev), put(b"app/2", 1), put(b"zzz", 2)], 2)
    assert exact.events() == [(b"app/1", 1)]
    assert pre.events() == [(b"app/1", 1), (b"app/2", 1)]
    assert isinstance(exact.got[0], cm.WatchCreated) and exact.got[0].revision == 0
    assert exact.got[1].events[0].prev_kv is None  # not asked for
    assert pre.got[1].events[0].prev_kv == prev
    h.cancel("a")
    h.publish([put(b"app/1", 3)], 3)
    assert exact.events() == [(b"app/1", 1)] and len(h) == 1


async def test_a_revision_cut_by_the_history_bound_counts_as_compacted() -> None:
    h = hub(history=3)
    h.publish([put(b"a", 1), put(b"b", 2), put(b"c", 2)], 2)  # a transaction at 2
    assert h.oldest == 1
    h.publish([put(b"d", 3), put(b"e", 3)], 3)  # evicts 1 and half of 2
    assert h.oldest == 3


async def test_start_in_the_past_replays_or_says_compacted() -> None:
    h = hub(history=3)
    h.publish([put(b"k", r) for r in (1, 2, 3, 4, 5)], 5)
    assert h.oldest == 3
    late = FakeStream("late")
    h.open(cm.WatchRequest(b"k", start_revision=4), late)
    assert late.events() == [(b"k", 4), (b"k", 5)]
    old = FakeStream("old")
    h.open(cm.WatchRequest(b"k", start_revision=2), old)
    [canceled] = old.got
    assert isinstance(canceled, cm.WatchCanceled)
    assert (canceled.code, canceled.compact_revision, canceled.retryable) == (
        Compacted.code,
        3,
        False,
    )
    future = FakeStream("future")
    h.open(cm.WatchRequest(b"k", start_revision=7), future)
    h.publish([put(b"k", 6), put(b"k", 7)], 7)
    assert future.events() == [(b"k", 7)]


async def test_history_replays_events_as_published_and_the_collector_never_scans_it() -> None:
    h = hub()
    published = [
        put(b"k", 2, cm.KeyValue(b"k", b"old", 1, 1, 1)),
        cm.Event(
            cm.EventType.DELETE, cm.KeyValue(b"k", b"", 0, 3, 0), cm.KeyValue(b"k", b"v2", 1, 2, 2)
        ),
        put(b"k", 4),
    ]
    h.publish(published, 4)
    assert h._ring and not any(gc.is_tracked(r) for r in h._ring)  # packed: not tracked
    with_prev, without = FakeStream("p"), FakeStream("n")
    h.open(cm.WatchRequest(b"k", start_revision=2, prev_kv=True), with_prev)
    h.open(cm.WatchRequest(b"k", start_revision=2), without)
    assert [e for m in with_prev.got[1:] for e in m.events] == published
    assert [e for m in without.got[1:] for e in m.events] == [
        cm.Event(e.type, e.kv) for e in published
    ]


async def test_a_watcher_that_falls_behind_is_cancelled_with_a_reason() -> None:
    h = hub(buffer=3)
    slow = FakeStream("slow", room=2)  # WatchCreated + one message, then full
    h.open(cm.WatchRequest(b"k"), slow)
    for rev in range(1, 6):
        h.publish([put(b"k", rev)], rev)
    assert slow.events() == [(b"k", 1)]  # 2..5 are waiting: more than the buffer of 3
    assert len(h) == 0  # no longer watching
    slow.room = 100
    h._drain(next(iter(h._flush)))  # the hub's task does this once there is room
    canceled = slow.got[-1]
    assert isinstance(canceled, cm.WatchCanceled) and canceled.code == Busy.code
    assert "fell behind" in canceled.message and "resume from revision 2" in canceled.message
    assert canceled.retryable


async def test_buffered_sends_and_progress_from_the_task(autojump_clock: Any) -> None:
    h = hub(buffer=100)
    s = FakeStream("s", room=1)
    h.open(cm.WatchRequest(b"k"), s)  # WatchCreated fills it
    h.publish([put(b"k", 1)], 1)
    h.publish([put(b"k", 2)], 2)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(h.run)
        await trio.sleep(0.05)
        assert s.events() == []  # still full
        s.room = 100
        await trio.sleep(0.05)
        assert s.events() == [(b"k", 1), (b"k", 2)]  # in order, none lost
        h.publish([put(b"other", 3)], 3)
        await trio.sleep(0.3)  # idle for more than progress_ms
        progress = [m for m in s.got if isinstance(m, cm.WatchProgress)]
        assert progress and progress[-1].revision == 3
        nursery.cancel_scope.cancel()


async def test_leader_loss_gone_clients_and_disabled_watch() -> None:
    h = hub()
    a, b = FakeStream("a"), FakeStream("b")
    h.open(cm.WatchRequest(b"k"), a)
    h.open(cm.WatchRequest(b"k"), b)
    b.gone = True
    h.publish([put(b"k", 1)], 1)
    assert len(h) == 1  # b's client went away: dropped
    h.set_leader_known(False)
    last = a.got[-1]
    assert isinstance(last, cm.WatchCanceled) and last.code == Unavailable.code
    assert last.retryable and len(h) == 0
    c = FakeStream("c")
    h.open(cm.WatchRequest(b"k"), c)  # no leader known: refused, retryable
    assert isinstance(c.got[0], cm.WatchCanceled) and c.got[0].retryable
    off = hub(enabled=False)
    d = FakeStream("d")
    off.open(cm.WatchRequest(b"k"), d)
    assert isinstance(d.got[0], cm.WatchCanceled) and d.got[0].code == Unavailable.code
    assert not d.got[0].retryable and "disabled" in d.got[0].message


class ScanHub(WatchHub):
    """The matching as it was (planted): every prefix watcher tested against every event."""

    def publish(self, events: Sequence[cm.Event], applied: int) -> None:
        self.applied = applied
        for e in events:
            for ws in self._prefixed.values():
                for w in ws:
                    if e.kv.key.startswith(w.key):
                        self._deliver(w, [e])


def _many_prefixes(cls: type[WatchHub]) -> tuple[int, dict[int, list[tuple[bytes, int]]]]:
    """2,000 prefix watchers (``svc/0000/`` ...) and one on everything; 50 events. C calls
    per event, and what each watcher got."""
    h = cls(**{"node_id": 1, "enabled": True, "history": 100, "buffer": 10**6,
               "progress_ms": 100, "max_watchers": 10_000, "applied": 0})  # fmt: skip
    h.set_leader_known(True)
    streams = {i: FakeStream(i) for i in range(2001)}
    for i in range(2000):
        h.open(cm.WatchRequest(b"svc/%04d/" % i, prefix=True), streams[i])
    h.open(cm.WatchRequest(b"", prefix=True), streams[2000])
    events = [put(b"svc/%04d/x" % (i * 37 % 2000), i + 1) for i in range(50)]
    n = calls(lambda: h.publish(events, 50), "c_call")
    return n // len(events), {i: s.events() for i, s in streams.items()}


async def test_an_event_looks_up_its_prefixes_not_every_prefix_watcher() -> None:
    per_event, got = _many_prefixes(WatchHub)
    for i in range(2000):
        assert got[i] == [(b"svc/%04d/x" % i, r) for r in range(1, 51) if (r - 1) * 37 % 2000 == i]
    assert len(got[2000]) == 50  # the empty prefix: every event
    assert per_event < 100
    scan_calls, scan_got = _many_prefixes(ScanHub)
    assert scan_got == got
    assert scan_calls > 2000  # the scan, planted: this test catches it
