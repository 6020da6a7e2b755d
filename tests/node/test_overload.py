"""Overload: a leader with too many writes in flight answers ``Busy`` at once instead of
queuing without bound, and the client library backs off and retries ``Busy`` within its
deadline. Real nodes in one trio process, real ZeroMQ on 127.0.0.1, in-memory storage."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from harness.inproc import cluster
from trioraft import Busy, Timeout, open_client
from trioraft.node import node as node_module
from wire import client_messages as cm


async def test_leader_answers_busy_when_too_many_writes_are_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(node_module, "MAX_PENDING_WRITES", 4)
    # no check-quorum: the cut-off leader keeps leading, so its writes stay in flight
    with trio.fail_after(60):
        async with cluster(3, check_quorum=False) as c, open_client(c.endpoints) as client:
            leader_id, _ = await client.wait_leader()
            leader = c.nodes[leader_id]
            await client.put("warm", "up")
            c.isolate(leader_id)  # nothing commits now

            replies: list[Any] = []
            for i in range(4):
                leader.handle_request(cm.PutRequest(b"k%d" % i, b"v", 0, 0), replies.append)
            while leader._waiters.proposals < 4:
                await trio.sleep(0.01)
            assert replies == []
            with pytest.raises(Busy, match="4 writes in flight"):
                leader.handle_request(cm.PutRequest(b"k9", b"v", 0, 0), replies.append)

            # the client retries Busy with backoff until its deadline, then names it
            async with open_client([c.endpoint(leader_id)]) as only_leader:
                with pytest.raises(Timeout, match="writes in flight") as timed_out:
                    await only_leader.put("k10", "v", timeout=0.5)
                assert isinstance(timed_out.value.last_error, Busy)

            # reconnected: the cluster takes writes again, and once the log has passed them
            # every write that was in flight is answered (applied, or dropped by a new leader)
            c.isolate(leader_id, cut=False)
            for i in range(6):
                await client.put(f"after{i}", "ok")
            assert await client.get("after5") == b"ok"
            while len(replies) < 4:
                await trio.sleep(0.01)
