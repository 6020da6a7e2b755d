"""Sync is real: no acknowledgement leaves a node before the sync that makes it true.

Real ``Node`` objects (three, in one process, real ZeroMQ on 127.0.0.1) run on in-memory
stores wrapped by ``RecordingStore``; every append, every *completed* sync and every Raft
message handed to the transport go into one ordered event log. The checker replays it:
each successful AppendEntriesResponse for index i must follow a sync covering entry i (with
the term the node holds), each granted vote in term t for c a sync of (term t, vote c).
A planted bug (acks sent before the write) shows the checker is not vacuous.
"""

from __future__ import annotations

import pytest
import trio

from storage import MemoryStore
from tests.durability.durability_helpers import (
    Append,
    EventLog,
    Mark,
    RecordingStore,
    Restart,
    Sent,
    Sync,
    check_acks_follow_syncs,
    configs,
    in_process_cluster,
    memory_store,
    record_sends,
    wait_applied,
    write_many,
)
from trioraft import open_client
from trioraft.node.persist import Persister
from wire.messages import AppendEntriesResponse, HardState, RequestVoteResponse


async def test_acks_and_votes_follow_the_syncs_that_cover_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = EventLog()
    record_sends(monkeypatch, log)
    inner: dict[int, MemoryStore] = {}

    def make(cfg) -> RecordingStore:
        inner[cfg.node_id] = memory_store(cfg)
        return RecordingStore(inner[cfg.node_id], log, cfg.node_id)

    cfgs = configs(3)
    with trio.fail_after(90):  # safety net only
        async with in_process_cluster(cfgs, make) as cluster:
            async with open_client(cluster.endpoints, timeout=30) as client:
                leader, _ = await client.wait_leader()
                await write_many(client, "a", 60)
                # The leader crashes: it comes back with only what it had synced, after an
                # election it takes no part in (more votes to check).
                await cluster.stop(leader)
                crashed = inner[leader].crash_copy()
                log.add(Restart(leader))
                await write_many(client, "b", 60)
                await cluster.start(leader, RecordingStore(crashed, log, leader))
                top = await write_many(client, "c", 60)
                await wait_applied(client, cluster.endpoints, top)
    result = check_acks_follow_syncs(log.events)
    print(f"\nchecked {result.acks_checked} acks, {result.votes_checked} votes")
    assert not result.violations, "\n".join(result.violations[:10])
    # Not vacuous: acks were checked right up to the last write. (How many acks there are
    # depends on batching: one response can cover many entries, so only a loose floor.)
    assert result.top_acked >= top
    assert result.acks_checked >= 30
    assert result.votes_checked >= 2


async def test_checker_catches_acks_sent_before_the_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    """PLANTED BUG: the sync rule says no Ready needs a sync, so acks and votes leave
    with nothing synced under them (on both paths: inline and the persist task's)."""
    monkeypatch.setattr(Persister, "must_sync", lambda self, rd, unsynced: False)
    log = EventLog()
    record_sends(monkeypatch, log)
    cfgs = configs(3)
    with trio.fail_after(60):
        make = lambda cfg: RecordingStore(memory_store(cfg), log, cfg.node_id)  # noqa: E731
        async with in_process_cluster(cfgs, make) as cluster:
            async with open_client(cluster.endpoints, timeout=30) as client:
                await client.wait_leader()
                await write_many(client, "a", 20)
    result = check_acks_follow_syncs(log.events)
    assert any("acked index" in v for v in result.violations), result
    assert any("granted its vote" in v for v in result.violations), result


def ack(src: int, term: int, index: int) -> Sent:
    return Sent(src, AppendEntriesResponse(src, 1, term, True, index))


def test_checker_on_crafted_histories() -> None:
    hs = HardState(2, 1, 0)
    synced = [Append(2, ((1, 1), (2, 2)), hs), Sync(2, 1), ack(2, 2, 2)]
    assert check_acks_follow_syncs(synced).violations == []
    # written but not synced
    assert check_acks_follow_syncs([Append(2, ((1, 1),), hs), ack(2, 2, 1)]).violations
    # a sync that started before the append does not cover it
    late = [Append(2, ((1, 1),), hs), Sync(2, 0), ack(2, 2, 1)]
    assert check_acks_follow_syncs(late).violations
    # entry 2 replaced by a new term's entry, not yet synced: the old durable one is no cover
    replaced = [*synced, Append(2, ((2, 3),), HardState(3, 1, 0)), ack(2, 3, 2)]
    assert check_acks_follow_syncs(replaced).violations
    # a restart keeps only what was synced
    restart = [Append(2, ((1, 1),), hs), Restart(2), Mark("x"), ack(2, 2, 1)]
    assert check_acks_follow_syncs(restart).violations
    vote = Sent(2, RequestVoteResponse(2, 1, 2, True))
    assert check_acks_follow_syncs([Append(2, (), hs), vote]).violations
    assert not check_acks_follow_syncs([Append(2, (), hs), Sync(2, 1), vote]).violations
    other = [Append(2, (), hs), Sync(2, 1), Sent(2, RequestVoteResponse(2, 3, 2, True))]
    assert check_acks_follow_syncs(other).violations  # voted for 1, grants 3
    pre = Sent(2, RequestVoteResponse(2, 3, 5, True, pre_vote=True))
    assert not check_acks_follow_syncs([pre]).violations  # a pre-vote persists nothing
