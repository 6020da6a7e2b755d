"""Exactly-once writes: a write whose reply is lost is sent again, and the cluster applies it
once (client sessions, Raft thesis §6.3). The lost reply is simulated in the client's
connection: the request reaches the leader and applies, the answer is thrown away."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from harness.inproc import cluster
from trioraft import Timeout, open_client
from trioraft._client_conn import ZmqConnection
from wire import client_messages as cm


@pytest.fixture
def lose_replies(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Append a request type to the returned list to lose the next reply to one of those."""
    plan: list[Any] = []
    real_call = ZmqConnection.call

    async def lossy(self: ZmqConnection, request: Any, timeout: float) -> Any:
        reply = await real_call(self, request, timeout)
        if plan and isinstance(request, plan[0]):
            plan.pop(0)
            raise Timeout("reply lost (simulated)")
        return reply

    monkeypatch.setattr(ZmqConnection, "call", lossy)
    return plan


async def test_a_write_delivered_twice_is_applied_once(lose_replies: list[Any]) -> None:
    with trio.fail_after(60):
        async with cluster(3) as c, open_client(c.endpoints) as client:
            await client.put("counter", "0")
            async with client.watch("counter") as events:
                lose_replies.append(cm.TxnRequest)
                result = await client.cas("counter", "0", "1")
                # the retry was answered from the first application: it "succeeded"
                assert result.succeeded and not lose_replies
                lose_replies.append(cm.PutRequest)
                rev = await client.put("counter", "2")
                got = await client.get_with_revision("counter")
                assert got.kv is not None and got.kv.version == 3  # put, cas, put: once each
                assert got.kv.mod_revision == rev
                revisions = [(await events.__anext__()).revision for _ in range(2)]
                assert revisions == [result.revision, rev]  # one event per write
            await c.wait_leader()


async def test_without_sessions_an_unknown_outcome_is_not_retried(
    lose_replies: list[Any],
) -> None:
    with trio.fail_after(60):
        async with cluster(1) as c, open_client(c.endpoints, sessions=False) as client:
            await client.put("counter", "0")
            lose_replies.append(cm.TxnRequest)
            with pytest.raises(Timeout, match="not retried without a session"):
                await client.cas("counter", "0", "1")
            assert await client.get("counter") == b"1"  # it did apply, once
            lose_replies.append(cm.PutRequest)  # not even a put is re-sent (v, w, v)
            with pytest.raises(Timeout, match="not retried without a session"):
                await client.put("counter", "2")
            assert await client.get("counter") == b"2"


async def test_the_same_request_twice_on_the_wire_gets_one_answer() -> None:
    with trio.fail_after(60):
        async with cluster(1) as c, open_client(c.endpoints) as client:
            await c.wait_leader()
            conn = client._conn(c.endpoint(1))
            session = await conn.call(cm.SessionRequest(), 5)
            txn = cm.TxnRequest(
                [cm.Compare.missing(b"once")],
                [cm.TxnOp.put(b"once", b"x")],
                [cm.TxnOp.get(b"once")],
                session.session_id,
                1,
            )
            first, second = [await conn.call(txn, 5) for _ in range(2)]
            assert first == second and first.succeeded
