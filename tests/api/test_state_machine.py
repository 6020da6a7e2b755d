"""The KV state machine on its own: value envelope, transactions, sessions, ranges.

Entries are built by hand and applied to an in-memory store, as the apply task would.
"""

from __future__ import annotations

import cbor2
import pytest

from storage import Identity, MemoryStore
from trioraft.kv.commands import (
    Delete,
    InSession,
    Limits,
    Op,
    Put,
    RegisterSession,
    Txn,
    decode_command,
    encode_command,
)
from trioraft.kv.state_machine import KVStateMachine
from wire import client_messages as cm
from wire.client_messages import Compare, TxnOp
from wire.errors import InvalidRequest, SessionExpired, StorageError
from wire.messages import Entry, EntryKind


class Log:
    """Appends commands as entries and applies them one batch at a time."""

    def __init__(self, sm: KVStateMachine, index: int = 0) -> None:
        self.sm = sm
        self.index = index

    def entry(self, cmd: object, stamp: int = 0) -> Entry:
        self.index += 1
        return Entry(1, self.index, EntryKind.NORMAL, encode_command(cmd, stamp))  # type: ignore[arg-type]

    def apply(self, *cmds: object, stamp: int = 0) -> list[object]:
        entries = [self.entry(c, stamp) for c in cmds]
        out = self.sm.apply(entries)
        self.events = out.events
        return [out.results[e.index] for e in entries]


def new_sm(**kw: int) -> tuple[MemoryStore, KVStateMachine, Log]:
    store = MemoryStore(Identity(1, 1))
    sm = KVStateMachine(store, **kw)
    return store, sm, Log(sm)


def test_put_delete_keep_revisions_and_versions() -> None:
    _, sm, log = new_sm()
    [r1] = log.apply(Put(b"k", b"a"))
    assert r1 == cm.WriteReply(1, False)
    [r2, _] = log.apply(Put(b"k", b"b"), Put(b"other", b"x"))
    assert r2 == cm.WriteReply(2, True)
    assert sm.get_kv(b"k") == cm.KeyValue(b"k", b"b", 1, 2, 2)
    assert [(e.type, e.kv.key, e.revision) for e in log.events] == [
        (cm.EventType.PUT, b"k", 2),
        (cm.EventType.PUT, b"other", 3),
    ]
    assert log.events[0].prev_kv == cm.KeyValue(b"k", b"a", 1, 1, 1)
    [r4, r5] = log.apply(Delete(b"k"), Delete(b"k"))
    assert (r4, r5) == (cm.WriteReply(4, True), cm.WriteReply(5, False))
    assert [e.type for e in log.events] == [cm.EventType.DELETE]  # no event for a no-op
    assert sm.get(b"k") is None
    log.apply(Put(b"k", b"c"))  # re-created: a new life, version 1
    assert sm.get_kv(b"k") == cm.KeyValue(b"k", b"c", 6, 6, 1)
    assert sm.applied == 6


def test_transaction_compares_and_branches() -> None:
    _, _, log = new_sm()
    log.apply(Put(b"a", b"1"))
    ok = Txn(
        (
            Compare.value_is(b"a", "=", b"1"),
            Compare.missing(b"b"),
            Compare.mod_revision(b"a", "<", 2),
        ),
        (TxnOp.put(b"b", b"2"), TxnOp.get(b"b"), TxnOp.delete(b"a"), TxnOp.get(b"a")),
        (TxnOp.get(b"a"),),
    )
    [r] = log.apply(ok)
    assert isinstance(r, cm.TxnReply) and r.succeeded and r.revision == 2
    assert [(x.kind, x.existed) for x in r.results] == [
        (cm.OpKind.PUT, False),
        (cm.OpKind.GET, True),  # a get sees the branch's earlier put
        (cm.OpKind.DELETE, True),
        (cm.OpKind.GET, False),
    ]
    assert r.results[1].kv == cm.KeyValue(b"b", b"2", 2, 2, 1)
    assert [e.revision for e in log.events] == [2, 2]  # one revision for the whole txn
    # the same transaction again fails: the else branch runs, nothing changes
    [r] = log.apply(ok)
    assert isinstance(r, cm.TxnReply) and not r.succeeded and r.revision == 3
    assert r.results == [cm.OpResult(cm.OpKind.GET, False, None)]
    assert log.events == []
    # value compares on a missing key fail whatever the operator (as in etcd)
    [r] = log.apply(Txn((Compare.value_is(b"a", "!=", b"x"),), (), ()))
    assert isinstance(r, cm.TxnReply) and not r.succeeded
    [r] = log.apply(Txn((Compare.exists(b"b"), Compare.version(b"b", ">", 0)), (), ()))
    assert isinstance(r, cm.TxnReply) and r.succeeded
    [r] = log.apply(Txn((Compare.create_revision(b"b", "=", 2),), (), ()))
    assert isinstance(r, cm.TxnReply) and r.succeeded


def test_sessions_answer_a_retry_from_the_kept_result() -> None:
    _, sm, log = new_sm()
    [reg] = log.apply(RegisterSession(), stamp=1000)
    assert isinstance(reg, cm.SessionReply) and reg.session_id == 1
    cas = Txn((Compare.missing(b"k"),), (TxnOp.put(b"k", b"v"),), (TxnOp.get(b"k"),))
    first, retry = log.apply(InSession(1, 1, cas), InSession(1, 1, cas), stamp=2000)
    assert isinstance(first, cm.TxnReply) and first.succeeded
    assert retry == first  # not applied twice: the kept answer, same revision
    assert [e.revision for e in log.events] == [first.revision]
    [nxt] = log.apply(InSession(1, 2, Put(b"k", b"w")), stamp=2000)
    assert nxt == cm.WriteReply(4, True)
    [stale] = log.apply(InSession(1, 1, Put(b"k", b"stale")), stamp=2000)
    assert isinstance(stale, cm.ErrorReply) and stale.code == InvalidRequest.code
    assert sm.get(b"k") == b"w"
    [unknown] = log.apply(InSession(99, 1, Put(b"k", b"x")), stamp=2000)
    assert isinstance(unknown, cm.ErrorReply) and unknown.code == SessionExpired.code


def test_sessions_expire_by_log_time_and_survive_a_restart() -> None:
    store, sm, log = new_sm(session_ttl_ms=1000, max_sessions=2)
    log.apply(RegisterSession(), stamp=10_000)  # session 1
    log.apply(InSession(1, 1, Put(b"k", b"v")), stamp=10_500)
    # a stamp that goes back (a new leader's clock behind) does not move log time back
    log.apply(RegisterSession(), stamp=5_000)  # session 3
    assert sm.clock == 10_500
    sm2 = KVStateMachine(store.reopen(), session_ttl_ms=1000, max_sessions=2)
    assert sm2.clock == 10_500 and len(sm2.sessions) == 2
    log2 = Log(sm2, log.index)
    [again] = log2.apply(InSession(1, 1, Put(b"k", b"v")), stamp=11_000)
    assert again == cm.WriteReply(2, False)  # kept across the restart
    # 1.6 s of log time later session 3 (last used at 10.5 s) has expired
    [expired] = log2.apply(InSession(3, 1, Put(b"k", b"x")), stamp=12_100)
    assert isinstance(expired, cm.ErrorReply) and expired.code == SessionExpired.code
    # a retry is no use: session 1 last wrote at 10.5 s
    [gone] = log2.apply(InSession(1, 1, Put(b"k", b"v")), stamp=12_100)
    assert isinstance(gone, cm.ErrorReply) and gone.code == SessionExpired.code
    assert len(sm2.sessions) == 0


def test_a_full_session_table_evicts_the_least_recently_used() -> None:
    _, sm, log = new_sm(max_sessions=2)
    log.apply(RegisterSession(), stamp=1)  # session 1
    log.apply(RegisterSession(), stamp=2)  # session 2
    log.apply(InSession(1, 1, Put(b"k", b"v")), stamp=3)
    log.apply(RegisterSession(), stamp=4)  # session 4 evicts 2, the least recently used
    assert [sm.sessions.live(s, sm.clock) is not None for s in (1, 2, 4)] == [True, False, True]


def test_a_failed_storage_write_leaves_nothing_behind() -> None:
    store, sm, log = new_sm()
    log.apply(RegisterSession(), stamp=1)

    class Boom(StorageError):
        pass

    real_apply = store.apply

    def failing(ops: object, index: int) -> None:
        raise Boom("disk full")

    store.apply = failing  # type: ignore[method-assign]
    entry = log.entry(InSession(1, 1, Put(b"k", b"v")), stamp=5)
    with pytest.raises(Boom):
        sm.apply([entry])
    store.apply = real_apply  # type: ignore[method-assign]
    out = sm.apply([entry])  # the retry applies it, it is not answered as a duplicate
    assert out.results[entry.index] == cm.WriteReply(entry.index, False)
    assert sm.get(b"k") == b"v" and sm.clock == 5


def test_range_bounds_limit_and_namespaces() -> None:
    _, sm, log = new_sm()
    keys = [b"a", b"app/1", b"app/2", b"app/3", b"b", b"\xff\xff"]
    log.apply(*(Put(k, k) for k in keys), RegisterSession(), stamp=1)
    kvs, more = sm.range(b"app/", b"app0", 10)
    assert [kv.key for kv in kvs] == [b"app/1", b"app/2", b"app/3"] and not more
    kvs, more = sm.range(b"app/", b"app0", 2)
    assert [kv.key for kv in kvs] == [b"app/1", b"app/2"] and more
    kvs, more = sm.range(b"app/2\x00", b"app0", 2)
    assert [kv.key for kv in kvs] == [b"app/3"] and not more
    kvs, _ = sm.range(b"", None, 100)  # sessions and metadata are not user keys
    assert [kv.key for kv in kvs] == keys
    assert sm.range(b"b", b"a", 10) == ([], False)


def test_commands_round_trip_and_limits() -> None:
    txn = Txn((Compare.value_is("k", "!=", "v"),), (TxnOp.put("k", "w"),), (TxnOp.delete("k"),))
    for cmd in (Put(b"k", b"v"), Delete(b"k"), txn, RegisterSession(), InSession(3, 4, txn)):
        assert decode_command(encode_command(cmd, 77)) == (
            cmd,
            77 if isinstance(cmd, RegisterSession | InSession) else 0,
        )
    with pytest.raises(InvalidRequest):
        decode_command(b"\x83\x03\x80\x80")  # a truncated txn
    limits = Limits(max_key_bytes=4, max_value_bytes=8, max_txn_ops=2)
    with pytest.raises(InvalidRequest, match="3 compares and ops exceeds the limit of 2"):
        limits.check_txn(Txn((Compare.exists("a"),), (TxnOp.put("a", "1"), TxnOp.get("a")), ()))
    with pytest.raises(InvalidRequest, match="key of 5 bytes"):
        limits.check_txn(Txn((Compare.exists("aaaaa"),), (), ()))
    with pytest.raises(InvalidRequest, match="values of 10 bytes"):
        limits.check_txn(Txn((), (TxnOp.put("a", "12345"), TxnOp.put("b", "12345")), ()))


@pytest.mark.parametrize("n", [0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1])
def test_a_put_under_a_session_is_encoded_as_cbor2_would(n: int) -> None:
    """The common entry is built from CBOR heads; it stays cbor2's bytes at every boundary."""
    for sid, seq, stamp in ((n, 1, 2), (1, n, 2), (1, 2, n)):
        for key, value in ((b"k", b""), (b"k" * min(n, 300), b"v" * min(n, 70_000))):
            cmd = InSession(sid, seq, Put(key, value))
            want = cbor2.dumps([Op.SESSION, sid, seq, stamp, [Op.PUT, key, value]])
            assert encode_command(cmd, stamp) == want
            assert decode_command(want) == (cmd, stamp)
    big = InSession(2**64, 1, Put(b"k", b"v"))  # past u64: cbor2's bignum, as before
    assert encode_command(big, 5) == cbor2.dumps([Op.SESSION, 2**64, 1, 5, [Op.PUT, b"k", b"v"]])


def test_a_pre_envelope_data_dir_is_refused() -> None:
    store = MemoryStore(Identity(1, 1))
    store.apply([(b"raw-user-key", b"raw value")], 5)
    with pytest.raises(StorageError, match="predates the value envelope"):
        KVStateMachine(store)
