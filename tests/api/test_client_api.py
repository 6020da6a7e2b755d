"""Every client operation against a real three-node cluster (in-process nodes, real ZeroMQ).

Timeouts are safety nets only.
"""

from __future__ import annotations

import pytest
import trio

from harness.inproc import cluster
from trioraft import (
    CasResult,
    Compacted,
    Compare,
    EventType,
    InvalidRequest,
    NotLeader,
    TxnOp,
    Unavailable,
    open_client,
    open_embedded_client,
)


async def test_reads_at_each_consistency_level_and_writes() -> None:
    with trio.fail_after(60):
        async with cluster(3) as c, open_client(c.endpoints) as client:
            leader = await c.wait_leader()
            rev = await client.put(b"k", b"v1")
            for level in ("linearizable", "lease", None):
                assert await client.get(b"k", consistency=level) == b"v1"
            res = await client.get_with_revision("k")
            assert res.value == b"v1" and res.revision >= rev and res.kv is not None
            assert (res.kv.create_revision, res.kv.mod_revision, res.kv.version) == (rev, rev, 1)
            # eventual: any node, from local state, with the applied index it reflects
            for node_id in c.cfgs:
                ep = c.endpoint(node_id)
                while (
                    await client.get_with_revision("k", consistency="eventual", endpoint=ep)
                ).revision < rev:
                    await trio.sleep(0.01)
                got = await client.get_with_revision("k", consistency="eventual", endpoint=ep)
                assert got.value == b"v1"
            # a follower refuses a pinned linearizable read with a hint, never answers it
            follower = next(i for i in c.cfgs if i != leader)
            with pytest.raises(NotLeader) as info:
                await client.get("k", endpoint=c.endpoint(follower))
            assert info.value.leader_id == leader
            assert await client.delete("k") is True
            assert await client.delete("k") is False
            assert await client.get("k", consistency="lease") is None


async def test_cas_and_transactions() -> None:
    with trio.fail_after(60):
        async with cluster(3) as c, open_client(c.endpoints) as client:
            first = await client.cas("lock", None, "me")
            assert first.succeeded and first.current is None
            again = await client.cas("lock", None, "you")
            assert again == CasResult(False, again.revision, b"me")
            swap = await client.cas("lock", "me", "you")
            assert swap.succeeded and await client.get("lock") == b"you"
            wrong = await client.cas("lock", "me", "them")
            assert not wrong.succeeded and wrong.current == b"you"
            rev = await client.put("a", "1")
            txn = await client.txn(
                [
                    Compare.value_is("a", "=", "1"),
                    Compare.exists("lock"),
                    Compare.mod_revision("a", "=", rev),
                ],
                [TxnOp.put("b", "2"), TxnOp.delete("lock"), TxnOp.get("b")],
                [TxnOp.get("a")],
            )
            assert (
                txn.succeeded and txn.results[2].kv is not None and txn.results[2].kv.value == b"2"
            )
            assert await client.get("lock") is None
            txn = await client.txn(
                [Compare.version("a", ">", 5)], [TxnOp.put("x", "y")], [TxnOp.get("a")]
            )
            assert not txn.succeeded and txn.results[0].kv is not None
            assert await client.get("x") is None


async def test_scan_prefix_range_limit_and_continuation() -> None:
    with trio.fail_after(60):
        async with cluster(3) as c, open_client(c.endpoints) as client:
            keys = [f"app/{i:02d}".encode() for i in range(25)]
            async with trio.open_nursery() as nursery:
                for k in [*keys, b"apq", b"ap"]:
                    nursery.start_soon(client.put, k, k.upper())
            page = await client.scan("app/")
            assert [kv.key for kv in page.entries] == keys and page.continuation is None
            assert page.revision >= max(kv.mod_revision for kv in page.entries)
            seen, token, pages = [], None, 0
            while True:
                page = await client.scan("app/", limit=10, continuation=token, consistency="lease")
                seen += [kv.key for kv in page.entries]
                pages += 1
                token = page.continuation
                if token is None:
                    break
            assert seen == keys and pages == 3
            ranged = await client.scan(start="app/05", end="app/08")
            assert [kv.key for kv in ranged.entries] == keys[5:8]
            assert [kv.key async for kv in client.scan_iter("app/1", page=3)] == keys[10:20]
            leader = c.endpoint(await c.wait_leader())
            ev = await client.scan("ap", consistency="eventual", endpoint=leader)
            assert [kv.key for kv in ev.entries] == [b"ap", *keys, b"apq"]


async def test_oversized_requests_are_refused_and_change_nothing() -> None:
    with trio.fail_after(60):
        async with cluster(3, max_value_bytes=100, max_key_bytes=10, max_txn_ops=3) as c:
            async with open_client(c.endpoints) as client:
                await client.put("k", "small")
                with pytest.raises(InvalidRequest, match="value of 101 bytes"):
                    await client.put("k", b"x" * 101)
                with pytest.raises(InvalidRequest, match="key of 11 bytes"):
                    await client.put(b"k" * 11, "v")
                with pytest.raises(InvalidRequest, match="exceeds the limit of 3"):
                    await client.txn([], [TxnOp.put("k", "1")] * 4)
                with pytest.raises(InvalidRequest, match="value of 101 bytes"):
                    await client.cas("k", "small", b"y" * 101)
                assert await client.get("k") == b"small"


async def test_watch_key_and_prefix_with_history_and_prev_values() -> None:
    with trio.fail_after(60):
        async with cluster(3, watch_history=5) as c, open_client(c.endpoints) as client:
            await c.wait_leader()
            async with client.watch("cfg/", prefix=True, prev_kv=True) as w:
                r1 = await client.put("cfg/a", "1")
                r2 = await client.put("cfg/a", "2")
                await client.put("other", "x")
                r3 = (
                    await client.txn([], [TxnOp.delete("cfg/a"), TxnOp.put("cfg/b", "3")])
                ).revision
                got = [await w.__anext__() for _ in range(4)]
            assert [(e.type, e.kv.key, e.revision) for e in got] == [
                (EventType.PUT, b"cfg/a", r1),
                (EventType.PUT, b"cfg/a", r2),
                (EventType.DELETE, b"cfg/a", r3),
                (EventType.PUT, b"cfg/b", r3),
            ]
            assert got[0].prev_kv is None and got[1].prev_kv is not None
            assert got[1].prev_kv.value == b"1" and got[2].prev_kv.value == b"2"
            # a past start revision still in the history is replayed
            async with client.watch("cfg/a", start_revision=r2) as w:
                replay = [await w.__anext__() for _ in range(2)]
            assert [e.revision for e in replay] == [r2, r3] and replay[1].prev_kv is None
            # any node serves watches: pinned to a follower. From r3 + 1: without a start
            # revision a watch starts after what its node has applied, and a follower may
            # not have applied r3 yet when the leader has answered it.
            leader = await c.wait_leader()
            follower = next(i for i in c.cfgs if i != leader)
            start = r3 + 1
            async with client.watch(
                "cfg/b", endpoint=c.endpoint(follower), start_revision=start
            ) as w:
                r4 = await client.put("cfg/b", "4")
                assert (await w.__anext__()).revision == r4
            for i in range(10):
                await client.put("churn", str(i))
            with pytest.raises(Compacted) as info:
                async with client.watch("cfg/a", start_revision=r1):
                    pass
            assert info.value.compact_revision > r1


async def test_watch_disabled_answers_unavailable() -> None:
    with trio.fail_after(60):
        async with cluster(1, watch_enabled=False) as c, open_client(c.endpoints) as client:
            await c.wait_leader()
            with pytest.raises(Unavailable, match="disabled"):
                async with client.watch("k"):
                    pass


async def test_embedded_client_same_interface_no_sockets() -> None:
    with trio.fail_after(60):
        async with cluster(3) as c:
            leader = await c.wait_leader()
            follower = next(i for i in c.cfgs if i != leader)
            others = [c.endpoint(i) for i in c.cfgs if i != follower]
            # on the leader: in-process; on a follower: writes find the leader by socket
            async with open_embedded_client(c.nodes[leader]) as local:
                rev = await local.put("e", "1")
                assert (await local.cas("e", "1", "2")).succeeded
                async with local.watch("e") as w:
                    await local.put("e", "3")
                    event = await w.__anext__()
                assert event.kv.value == b"3"
                assert [kv.key for kv in (await local.scan("e")).entries] == [b"e"]
            async with open_embedded_client(c.nodes[follower], others) as local:
                await local.put("f", "1")
                assert await local.get("f") == b"1"
                res = await local.get_with_revision("e", consistency="eventual")
                assert res.revision >= rev
