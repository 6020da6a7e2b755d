"""``lazy_commit`` in a real node: the setting reaches the core, the leader stops sending
empty AppendEntries that only carry a commit index, and followers still apply every write,
the last one from a heartbeat (no later append carries its commit). The core's side, message
by message, is tests/scenarios/testdata/lazy_commit.txt."""

from __future__ import annotations

import dataclasses

import pytest
import trio

from tests.durability.durability_helpers import (
    EventLog,
    Sent,
    configs,
    in_process_cluster,
    memory_store,
    record_sends,
    wait_applied,
    write_many,
)
from trioraft import open_client
from wire.messages import AppendEntries


async def empty_appends_for_writes(monkeypatch: pytest.MonkeyPatch, *, lazy: bool) -> int:
    """Empty AppendEntries the leader sends while 20 writes commit one by one."""
    log = EventLog()
    record_sends(monkeypatch, log)
    cfgs = [dataclasses.replace(c, lazy_commit=lazy) for c in configs(3)]
    with trio.fail_after(60):  # safety net only
        async with in_process_cluster(cfgs, memory_store) as cluster:
            for node in cluster.nodes.values():
                assert node._core._raft.config.lazy_commit is lazy
            async with open_client(cluster.endpoints, timeout=30) as client:
                leader, _ = await client.wait_leader()
                await write_many(client, "warm", 2, writers=1)
                start = len(log.events)
                top = await write_many(client, "k", 20, writers=1)
                # every follower applies the last write too: with lazy commit, from a heartbeat
                await wait_applied(client, cluster.endpoints, top)
                return sum(
                    1
                    for e in log.events[start:]
                    if isinstance(e, Sent)
                    and e.node == leader
                    and isinstance(e.msg, AppendEntries)
                    and not e.msg.entries
                )


async def test_lazy_commit_sends_no_commit_only_appends(monkeypatch: pytest.MonkeyPatch) -> None:
    eager = await empty_appends_for_writes(monkeypatch, lazy=False)
    lazy = await empty_appends_for_writes(monkeypatch, lazy=True)
    print(f"empty AppendEntries for 20 writes: eager {eager}, lazy {lazy}")
    assert eager >= 20  # one per follower per commit, unless a new append carried it
    # Lazy: none to carry a commit. A heartbeat response from a follower whose match is
    # behind still gets one (it finds a lost append: the core's replication.py), and with
    # the leader's own sync off the commit path a heartbeat can land mid-round.
    assert lazy <= eager // 4
