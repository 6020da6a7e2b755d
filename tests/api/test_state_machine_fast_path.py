"""The apply's fast path for a put under a session (``KVStateMachine._session_put``) does
what the general path does: same replies, events, stored bytes, clock and sessions.

A seeded random log (puts, deletes and transactions, in sessions and not; retries, stale
and skipped sequence numbers, unknown and expired sessions, clocks that jump and fall back)
is applied in random batches to two state machines, one with the fast path turned off,
and compared after every batch.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from storage import Identity, MemoryStore
from trioraft.kv import layout
from trioraft.kv import state_machine as sm_module
from trioraft.kv.commands import Delete, InSession, Put, RegisterSession, Txn, encode_command
from trioraft.kv.state_machine import KVStateMachine
from wire.client_messages import Compare, CompareOp, CompareTarget, OpKind, TxnOp
from wire.messages import Entry, EntryKind

KEYS = [b"a", b"b", b"c", b"d"]


def random_log(seed: int, n: int) -> list[Entry]:
    rng = random.Random(seed)
    entries: list[Entry] = []
    seqs: dict[int, int] = {}  # session id -> last seq handed out
    stamp = 1_000

    def add(cmd: Any, at: int) -> int:
        index = len(entries) + 1
        entries.append(Entry(1, index, EntryKind.NORMAL, encode_command(cmd, at)))
        return index

    for _ in range(n):
        r = rng.random()
        if rng.random() < 0.97:
            stamp += rng.choice([0, 1, 5, 50])
        else:  # an older leader's clock; rarely, a jump that expires every session
            stamp += -700 if rng.random() < 0.8 else 2_500
        stamp = max(stamp, 0)
        key, value = rng.choice(KEYS), rng.randbytes(rng.randrange(0, 40))
        if r < 0.04 or not seqs:
            seqs[add(RegisterSession(), stamp)] = 0
            continue
        sid = rng.choice(list(seqs)[-14:]) if rng.random() < 0.95 else 999_999  # unknown
        last = seqs.get(sid, 0)
        seq = rng.choices([last + 1, last, last - 1, last + 3], [80, 8, 6, 6])[0]
        seq = max(seq, 1)  # the client port refuses 0 (``clients.py``): never in a log
        seqs[sid] = max(last, seq)
        if r < 0.85:
            write: Any = Put(key, value)
        elif r < 0.93:
            write = Delete(key)
        else:
            cmp = Compare(key, CompareTarget.VERSION, CompareOp.GREATER, b"", 1)
            write = Txn((cmp,), (TxnOp(OpKind.PUT, key, value),), (TxnOp(OpKind.DELETE, key),))
        add(InSession(sid, seq, write) if rng.random() < 0.9 else write, stamp)
    return entries


def divergence(entries: list[Entry], seed: int) -> str | None:
    """The first difference between the two state machines, or None."""
    fast_store, slow_store = MemoryStore(Identity(1, 1)), MemoryStore(Identity(1, 1))
    fast = KVStateMachine(fast_store, session_ttl_ms=2_000, max_sessions=12)
    slow = KVStateMachine(slow_store, session_ttl_ms=2_000, max_sessions=12)
    rng = random.Random(seed)
    i = 0
    while i < len(entries):
        batch = entries[i : i + rng.randrange(1, 12)]
        i += len(batch)
        a = fast.apply(batch)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(sm_module, "decode_session_put", lambda data: None)
            b = slow.apply(batch)
        where = f"batch ending at entry {i}"
        if a.results != b.results:
            return f"{where}: replies differ: {a.results} != {b.results}"
        if a.events != b.events:
            return f"{where}: events differ"
        if list(fast_store.scan()) != list(slow_store.scan()):
            return f"{where}: stored data differs"
        if (fast.clock, fast.applied) != (slow.clock, slow.applied):
            return f"{where}: clock or applied index differs"
    return None


@pytest.mark.parametrize("seed", range(6))
def test_fast_path_matches_the_general_path(seed: int) -> None:
    taken = 0
    original = KVStateMachine._session_put

    def counting(self: KVStateMachine, *args: Any) -> bool:
        nonlocal taken
        done = original(self, *args)
        taken += done
        return done

    entries = random_log(seed, 600)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(KVStateMachine, "_session_put", counting)
        assert divergence(entries, seed) is None
    assert taken > 100  # the fast path took many entries; the others took the general one


def test_the_comparison_catches_a_fast_path_that_miscounts_versions() -> None:
    def off_by_one(value: bytes, create: int, mod: int, version: int) -> bytes:
        return layout.pack_value(value, create, mod, version + 1)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sm_module, "pack_value", off_by_one)  # only the fast path uses the alias
        found = divergence(random_log(0, 200), 0)
    assert found is not None and "stored data differs" in found
