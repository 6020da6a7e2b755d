"""ReadIndex (thesis §6.4): linearizable reads without writing to the log."""

from __future__ import annotations

import pytest

from trioraft.core import ReadState, Ready, Role
from wire.errors import NotLeader
from wire.messages import Heartbeat, HeartbeatResponse

from .helpers import Network


def test_follower_read_index_raises_not_leader_with_a_hint() -> None:
    net = Network.create(3)
    net.elect(2)
    with pytest.raises(NotLeader) as info:
        net.nodes[1].read_index(7)
    assert info.value.leader_id == 2


def test_reads_are_confirmed_by_one_heartbeat_round_and_batched() -> None:
    """§6.4 steps 1-4, batched: reads queued before one broadcast share it."""
    net = Network.create(3)
    net.elect(1)
    leader = net.nodes[1]
    leader.read_index(10)
    leader.read_index(11)
    rd = leader.ready()
    hbs = [m for m in rd.messages if isinstance(m, Heartbeat)]
    assert sorted(m.dst for m in hbs) == [2, 3]
    assert len({m.context for m in hbs}) == 1 and hbs[0].context > 0
    assert rd.read_states == ()
    leader.advance(rd)
    net.queue.extend(rd.messages)
    net.stabilize()
    assert net.reads[1] == [ReadState(10, 1), ReadState(11, 1)]


def test_read_index_is_the_commit_index_when_the_read_arrived() -> None:
    """§6.4 step 1: the read index is the leader's commit index at receipt."""
    net = Network.create(3)
    net.elect(1)
    net.nodes[1].propose(b"a")
    net.stabilize()
    net.nodes[1].read_index(5)
    net.stabilize()
    assert net.reads[1] == [ReadState(5, 2)]


def test_minority_acknowledgement_does_not_confirm_a_read() -> None:
    """§6.4 step 3: a majority must acknowledge the leader after the read arrived."""
    net = Network.create(5)
    net.elect(1)
    net.nodes[1].read_index(1)
    net.process(1)
    net.deliver()
    for i in (2, 3, 4, 5):
        net.process(i)
    net.deliver(lambda m: isinstance(m, HeartbeatResponse) and m.src == 2)
    net.process(1)
    assert net.reads[1] == []  # leader + node 2 = 2 of 5
    net.deliver(lambda m: isinstance(m, HeartbeatResponse) and m.src == 4)
    net.process(1)
    assert net.reads[1] == [ReadState(1, 1)]


def test_read_queued_after_a_round_waits_for_the_next_round() -> None:
    """§6.4: the confirming heartbeat must be sent after the read arrived; an ack of an
    earlier round does not count."""
    net = Network.create(3)
    net.elect(1)
    leader = net.nodes[1]
    leader.read_index(1)
    rd = leader.ready()  # round r goes out
    leader.read_index(2)  # arrives while round r is in flight
    leader.advance(rd)
    net.queue.extend(rd.messages)
    net.deliver()
    net.process(2)
    net.process(3)
    net.deliver()
    rd2 = leader.ready()
    assert rd2.read_states == (ReadState(1, 1),)
    leader.advance(rd2)
    net.queue.extend(rd2.messages)  # the next round, started for read 2
    net.stabilize()
    assert net.reads[1] == [ReadState(2, 1)]


def _heartbeats(rd: Ready) -> list[Heartbeat]:
    return [m for m in rd.messages if isinstance(m, Heartbeat)]


@pytest.mark.parametrize("limit", [1, 2])
def test_reads_arriving_while_the_round_limit_is_reached_share_the_next_round(
    limit: int,
) -> None:
    """``max_read_rounds``: no new round while ``limit`` rounds await their quorum; the
    reads that arrive meanwhile ride one round sent once a quorum answers."""
    net = Network.create(3, max_read_rounds=limit)
    net.elect(1)
    leader = net.nodes[1]
    in_flight = []
    for context in range(limit):  # fill the limit: one round per Ready
        leader.read_index(context)
        rd = leader.ready()
        assert len({m.context for m in _heartbeats(rd)}) == 1
        leader.advance(rd)
        in_flight.extend(rd.messages)
    leader.read_index(10)
    leader.read_index(11)
    held = leader.ready()
    assert _heartbeats(held) == []  # the limit is reached: no round for reads 10 and 11
    leader.advance(held)
    net.queue.extend(in_flight)
    net.stabilize()  # the rounds in flight are confirmed; the next one goes out for 10, 11
    assert net.reads[1] == [ReadState(c, 1) for c in (*range(limit), 10, 11)]


def test_held_reads_are_confirmed_by_the_next_heartbeat_when_a_round_is_lost() -> None:
    """A lost round cannot strand the reads held behind the limit: the periodic heartbeat
    starts a round of its own, and its quorum confirms them."""
    net = Network.create(3, max_read_rounds=1)
    net.elect(1)
    leader = net.nodes[1]
    leader.read_index(1)
    lost = leader.ready()
    assert _heartbeats(lost)
    leader.advance(lost)  # its heartbeats are never delivered
    leader.read_index(2)
    net.stabilize()
    assert net.reads[1] == []
    net.tick(1, net.config(1).heartbeat_ticks)
    net.stabilize()
    assert net.reads[1] == [ReadState(1, 1), ReadState(2, 1)]


def test_new_leader_answers_reads_only_after_committing_its_noop() -> None:
    """§6.4 step 1 / §8: a new leader does not know the commit index until it has
    committed an entry of its term, so reads wait for the no-op."""
    net = Network.create(3)
    net.nodes[1].campaign()
    for _ in range(20):  # run the election until node 1 leads, but no further
        net.process_all()
        net.deliver()
        if net.role(1) is Role.LEADER:
            break
    leader = net.nodes[1]
    assert leader.status.commit == 0
    leader.read_index(9)
    rd = leader.ready()
    assert not any(isinstance(m, Heartbeat) for m in rd.messages)
    net.storage[1].persist(rd)
    leader.advance(rd)
    net.queue.extend(rd.messages)
    net.stabilize()
    assert net.reads[1] == [ReadState(9, 1)]  # the no-op's index


def test_single_node_answers_reads_at_once() -> None:
    """§6.4 with a cluster of one: the leader alone is a quorum."""
    net = Network.create(1)
    net.elect(1)
    net.nodes[1].read_index(3)
    rd = net.nodes[1].ready()
    assert rd.read_states == (ReadState(3, 1),)
    assert rd.messages == ()


def test_pending_reads_are_dropped_when_leadership_is_lost() -> None:
    """Thesis §6.4: a deposed leader must not answer reads it could not confirm."""
    net = Network.create(3)
    net.elect(1)
    net.isolate(1)
    net.nodes[1].read_index(4)
    net.stabilize()
    net.tick(1, 30)  # check-quorum steps it down
    net.stabilize()
    assert net.role(1) is Role.FOLLOWER
    net.heal()
    net.tick_all(30)
    assert net.reads[1] == []
