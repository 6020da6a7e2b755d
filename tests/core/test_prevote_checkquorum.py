"""Pre-vote (thesis §9.6), check-quorum (thesis §6.2) and the leader lease that makes
voters ignore disruptive candidates (thesis §4.2.3, §6.4.1)."""

from __future__ import annotations

import pytest

from trioraft.core import Role
from wire.messages import HardState, Heartbeat, RequestVote, RequestVoteResponse

from .helpers import Network, drain, make_node


@pytest.mark.parametrize("pre_vote", [True, False])
def test_partitioned_node_inflates_its_term_only_without_pre_vote(pre_vote: bool) -> None:
    """Thesis §9.6: with pre-vote a node that cannot win never increments its term."""
    net = Network.create(3, pre_vote=pre_vote)
    net.elect(1)
    net.isolate(3)
    net.tick_all(100)
    term3 = net.nodes[3].status.term
    if pre_vote:
        assert term3 == 1
        assert net.role(3) is Role.PRE_CANDIDATE
    else:
        assert term3 > 1


def test_healed_node_does_not_depose_a_healthy_leader() -> None:
    """Thesis §9.6 + §4.2.3: after a partition heals, the leader keeps leading in the same
    term and the rejoining node follows it."""
    net = Network.create(3)
    net.elect(1)
    net.isolate(3)
    net.tick_all(100)
    net.heal()
    net.tick_all(30)
    assert net.leaders() == [1]
    assert all(net.nodes[i].status.term == 1 for i in net.ids)
    assert net.nodes[3].status.leader_id == 1


def test_pre_vote_wins_and_then_elects_when_the_leader_is_gone() -> None:
    """Thesis §9.6: pre-vote only adds a round; a real failure still elects a new leader."""
    net = Network.create(3)
    net.elect(1)
    net.down.add(1)
    new = net.tick_until_leader(exclude=[1])
    assert net.nodes[new].status.term == 2


def test_pre_vote_request_changes_no_state() -> None:
    """Thesis §9.6: answering a pre-vote changes neither term nor vote."""
    node = make_node(2, (1, 2, 3), hard_state=HardState(term=3))
    node.step(RequestVote(src=1, dst=2, term=4, last_index=0, last_term=0, pre_vote=True))
    rd = drain(node)
    assert rd.hard_state is None
    assert rd.persisted_messages == (
        RequestVoteResponse(src=2, dst=1, term=4, granted=True, pre_vote=True),
    )
    assert node.status.term == 3


def test_check_quorum_leader_steps_down_without_a_live_quorum() -> None:
    """Thesis §6.2: a leader that has not heard from a majority within an election
    timeout steps down, so clients stop waiting on a stale leader."""
    net = Network.create(3, election_ticks=10)
    net.elect(1)
    net.isolate(1)
    for _ in range(9):
        net.tick(1)
    assert net.role(1) is Role.LEADER
    net.tick(1, 11)
    assert net.role(1) is Role.FOLLOWER
    assert net.nodes[1].status.leader_id == 0


def test_leader_without_check_quorum_keeps_leading_when_isolated() -> None:
    net = Network.create(3, check_quorum=False)
    net.elect(1)
    net.isolate(1)
    net.tick(1, 50)
    assert net.role(1) is Role.LEADER


def test_follower_in_lease_ignores_higher_term_vote_requests() -> None:
    """Thesis §4.2.3: a server that heard from a current leader within the minimum election
    timeout neither updates its term nor grants a vote."""
    net = Network.create(3, pre_vote=False)
    net.elect(1)
    net.nodes[2].step(RequestVote(src=3, dst=2, term=5, last_index=9, last_term=9))
    assert net.nodes[2].status.term == 1
    assert not net.nodes[2].has_ready()
    # Once the lease ran out (no heartbeats), the same request is honoured.
    net.isolate(2)
    net.tick(2, 10)
    net.nodes[2].step(RequestVote(src=3, dst=2, term=5, last_index=9, last_term=9))
    assert net.nodes[2].status.term == 5
    net.process(2)
    assert net.storage[2].hard_state == HardState(term=5, vote=3, commit=1)


def test_stale_leader_learns_the_new_term_from_an_append_response() -> None:
    """§5.1: a server with a stale term reverts to follower on seeing a higher term; with
    pre-vote/check-quorum the answer to its AppendEntries carries that term."""
    net = Network.create(3)
    net.elect(1)
    net.down.add(1)  # paused, like SIGSTOP: keeps its state, misses everything
    new = net.tick_until_leader(exclude=[1])
    net.down.discard(1)
    assert net.role(1) is Role.LEADER
    net.tick(1)  # the old leader's heartbeat
    net.stabilize()
    assert net.role(1) is Role.FOLLOWER
    assert net.nodes[1].status.term == 2
    assert net.leaders() == [new]


def test_lease_valid_needs_a_recent_quorum_acknowledgement() -> None:
    """Thesis §6.4.1: the leader may rely on a lease only for (election timeout - 1)
    ticks after a heartbeat it sent was acknowledged by a quorum."""
    net = Network.create(3, election_ticks=5)
    net.elect(1)
    leader = net.nodes[1]
    assert not leader.lease_valid()  # no heartbeat round acknowledged yet
    net.tick_all(1)
    assert leader.lease_valid()
    assert not net.nodes[2].lease_valid()
    net.isolate(1)
    net.tick(1, 3)
    assert leader.lease_valid()  # round sent 3 ticks ago < 5 - 1
    net.tick(1)
    assert not leader.lease_valid()


def test_lease_is_never_valid_without_check_quorum() -> None:
    net = Network.create(3, check_quorum=False)
    net.elect(1)
    net.tick_all(1)
    assert not net.nodes[1].lease_valid()


def test_single_node_lease_is_valid_once_it_committed_in_its_term() -> None:
    net = Network.create(1)
    net.nodes[1].campaign()
    assert not net.nodes[1].lease_valid()
    net.stabilize()
    assert net.nodes[1].lease_valid()


def test_pre_vote_is_ignored_while_a_leader_is_live_even_without_check_quorum() -> None:
    """Thesis §9.6: a server grants a pre-vote only if it has not heard from a leader for
    an election timeout; so a rejoining node cannot start a disruptive election."""
    node = make_node(2, (1, 2, 3), check_quorum=False, election_ticks=10)
    node.step(Heartbeat(src=1, dst=2, term=1, commit=0))
    drain(node)
    pre = RequestVote(src=3, dst=2, term=2, last_index=5, last_term=1, pre_vote=True)
    node.step(pre)
    assert not node.has_ready()
    for _ in range(10):  # an election timeout without hearing from the leader
        node.tick()
    node.step(pre)
    answers = [m for m in node.ready().persisted_messages if isinstance(m, RequestVoteResponse)]
    assert [(m.dst, m.granted, m.term) for m in answers] == [(3, True, 2)]


def test_lease_ends_for_good_once_timeout_now_was_sent() -> None:
    """Thesis §3.10 + §6.4.1: a transfer campaign bypasses the voters' lease, so after
    TimeoutNow the old leader may no longer trust its lease, even if the transfer aborts."""
    net = Network.create(3, election_ticks=10)
    net.elect(1)
    net.tick_all(1)
    assert net.nodes[1].lease_valid()
    net.cuts.add((3, 2))
    net.cuts.add((3, 1))  # node 3 gets TimeoutNow but cannot win or answer
    net.nodes[1].transfer_leader(3)
    net.stabilize()
    net.heal()
    net.cut(1, 3)
    net.cut(2, 3)
    net.tick_all(12)  # the transfer aborts; 1 keeps leading with 2
    assert net.leaders() == [1]
    assert net.nodes[1].propose(b"x")[0] > 0
    assert not net.nodes[1].lease_valid()


def test_restarted_voter_keeps_the_leader_lease() -> None:
    """Thesis §6.4.1 (regression, found by the simulator's lease-read checker; also
    tikv/tikv#15035): a follower acknowledges the leader's heartbeat, crashes and restarts
    at once, forgetting that it heard from a leader. It must still refuse votes for an
    election timeout, or a node cut off from the leader wins with its vote while the old
    leader's lease holds, and a lease read there misses writes of the new term."""
    net = Network.create(3, election_ticks=10)
    net.elect(1)
    net.tick_all(1)
    assert net.nodes[1].lease_valid()
    net.cuts |= {(1, 3), (3, 1)}  # 3 cannot reach the leader; 2 reaches both
    net.restart(2)
    net.tick(3, 10)  # 3's own promise to the leader runs out (it may campaign by itself)
    net.nodes[3].campaign()
    net.stabilize()
    assert net.role(3) is not Role.LEADER  # 2 ignored the (pre-)vote: it may be in lease
    assert net.nodes[1].lease_valid()
    assert not net.sent(RequestVoteResponse, src=2, dst=3)
    net.tick(2, 10)  # an election timeout after the restart: 2 answers votes again
    net.nodes[3].campaign()
    net.stabilize()
    assert net.sent(RequestVoteResponse, src=2, dst=3)


def test_a_fresh_node_votes_at_once() -> None:
    """A node that never ran before cannot have acknowledged a leader: no restart delay."""
    net = Network.create(3)
    net.nodes[1].campaign()
    net.stabilize()
    assert net.role(1) is Role.LEADER


def test_campaign_is_refused_inside_a_lease_promise() -> None:
    """Thesis §6.4.1 (regression, found by the simulator's lease-safety checker): a
    follower that acknowledged the leader within an election timeout must not run for
    election when asked to, even after stepping into a new role: its own vote (and the
    votes it would then grant) would break the leader's lease. (A transfer's TimeoutNow
    still overrides it: see leadership_transfer.txt.)"""
    net = Network.create(3, pre_vote=False, election_ticks=10)
    net.elect(1)
    net.tick_all(1)
    net.cut(1, 2)
    net.nodes[2].campaign()
    assert net.role(2) is Role.FOLLOWER and not net.nodes[2].has_ready()
    net.tick(2, 9)
    net.nodes[2].campaign()
    assert net.role(2) is Role.FOLLOWER
    net.tick(2)  # an election timeout since it last heard from the leader
    net.nodes[2].campaign()
    assert net.role(2) is Role.CANDIDATE
