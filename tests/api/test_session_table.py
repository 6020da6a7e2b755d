"""The session table's least-recently-used order (trioraft/kv/sessions.py).

It must evict and expire exactly what a scan of the whole table for the smallest
``(last_stamp, id)`` would (every node, every version, keeps the same table), and it must
not scan: a burst of registrations into a full table once cost each registration a pass
over all of it, and stalled every node for seconds. ``ScanTable`` below is that scan, the
table as it was; it is the reference for the first test and the planted bug of the second.
"""

from __future__ import annotations

import random

from harness.calls import calls
from storage import Identity, MemoryStore
from storage.base import KvOp
from trioraft.kv.sessions import Session, SessionTable


def _state(t: SessionTable) -> dict[int, Session]:
    """The live sessions, staged changes included."""
    merged = {**t._sessions, **t._staged}
    return {sid: s for sid, s in merged.items() if s is not None}


class ScanTable(SessionTable):
    """The table as it was: each registration scans every session."""

    def register(self, session_id: int, clock: int, ops: list[KvOp]) -> None:
        view = _state(self)
        for sid in [sid for sid, s in view.items() if clock - s.last_stamp > self.ttl_ms]:
            self.drop(sid, ops)
        view = _state(self)
        while len(view) >= self.max_sessions:
            lru = min(view, key=lambda sid: (view[sid].last_stamp, sid))
            self.drop(lru, ops)
            del view[lru]
        self.put(session_id, Session(0, clock, b""), ops)


def _table(cls: type[SessionTable], *, ttl_ms: int, max_sessions: int) -> SessionTable:
    return cls(MemoryStore(Identity(1, 1)), ttl_ms=ttl_ms, max_sessions=max_sessions)


def _effect(ops: list[KvOp]) -> dict[bytes, bytes | None]:
    """What a batch of ops leaves in the store, key by key."""
    return dict(ops)


def test_it_evicts_and_expires_what_a_scan_would() -> None:
    for seed in range(30):
        rng = random.Random(seed)
        ttl, cap = rng.choice((20, 200)), rng.choice((1, 3, 8))
        new = _table(SessionTable, ttl_ms=ttl, max_sessions=cap)
        ref = _table(ScanTable, ttl_ms=ttl, max_sessions=cap)
        clock, next_id = 0, 1
        new_ops: list[KvOp] = []
        ref_ops: list[KvOp] = []
        for _ in range(400):
            clock += rng.choice((0, 0, 1, 5))  # equal stamps: the id breaks the tie
            step = rng.random()
            live = sorted(_state(ref))
            if step < 0.45 or not live:
                sid, next_id = rng.randrange(next_id, next_id + 3), next_id + 3
                new.register(sid, clock, new_ops)
                ref.register(sid, clock, ref_ops)
            elif step < 0.75:
                sid = rng.choice(live)
                s = Session(rng.randrange(1, 9), clock, b"r")
                new.put(sid, s, new_ops)
                ref.put(sid, s, ref_ops)
            elif step < 0.82:
                sid = rng.choice(live)
                new.drop(sid, new_ops)
                ref.drop(sid, ref_ops)
            elif step < 0.95:
                assert _effect(new_ops) == _effect(ref_ops)
                new.commit()
                ref.commit()
                new_ops, ref_ops = [], []
            else:
                new.rollback()
                ref.rollback()
                new_ops, ref_ops = [], []
            assert _state(new) == _state(ref), (seed, clock)
            assert len(new) == len(_state(ref))


def _burst(cls: type[SessionTable]) -> int:
    """Calls per registration, for 500 registrations into a full table of 1,000."""
    t = _table(cls, ttl_ms=10**9, max_sessions=1000)
    ops: list[KvOp] = []
    for sid in range(1, 1001):
        t.register(sid, sid, ops)
    t.commit()
    return calls(lambda: [t.register(sid, sid, ops) for sid in range(1001, 1501)]) // 500


def test_a_registration_into_a_full_table_does_not_scan_it() -> None:
    assert _burst(SessionTable) < 100
    assert _burst(ScanTable) > 1000  # the scan, planted: this test catches it
