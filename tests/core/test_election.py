"""Leader election (§5.2), the election restriction (§5.4.1) and vote durability."""

from __future__ import annotations

import pytest

from trioraft.core import Role
from wire.messages import (
    AppendEntries,
    HardState,
    RequestVote,
    RequestVoteResponse,
)

from .helpers import Network, drain, ents, make_node


@pytest.mark.parametrize("n", [3, 5])
def test_campaign_elects_a_leader_that_everyone_follows(n: int) -> None:
    """§5.2: a candidate that wins a majority becomes leader; others learn it from
    AppendEntries."""
    net = Network.create(n)
    net.elect(2)
    assert net.leaders() == [2]
    for i in net.ids:
        st = net.nodes[i].status
        assert (st.term, st.leader_id) == (1, 2)
    # The new leader's no-op (§5.4.2) is committed everywhere.
    assert all(net.nodes[i].status.commit == 1 for i in net.ids)


@pytest.mark.parametrize("n", [3, 5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_election_timeouts_elect_exactly_one_leader(n: int, seed: int) -> None:
    """§5.2: with randomized election timeouts a leader emerges from ticks alone, and
    election safety holds: at most one leader per term."""
    net = Network.create(n, seed=seed)
    for _ in range(60):
        net.tick_all()
        if net.leaders():
            break
    leader = net.leader()
    term = net.nodes[leader].status.term
    assert all(net.nodes[i].status.leader_id == leader for i in net.ids)
    assert all(net.nodes[i].status.term == term for i in net.ids)


def test_randomized_timeout_is_within_one_to_two_election_timeouts() -> None:
    """§5.2: election timeouts are chosen at random from a fixed interval."""
    for seed in range(20):
        node = make_node(1, (1, 2, 3), seed=seed, election_ticks=10)
        ticks = 0
        while node.status.role is Role.FOLLOWER:
            node.tick()
            ticks += 1
        assert 10 <= ticks < 20


def test_split_vote_resolves_with_a_new_term() -> None:
    """§5.2: a split vote leaves no leader; randomized timeouts then break the tie."""
    net = Network.create(4, pre_vote=False)
    net.cut(2, 3)
    net.cut(1, 4)
    net.nodes[1].campaign()
    net.nodes[2].campaign()
    net.stabilize()
    assert net.leaders() == []  # 1 has votes {1,3}, 2 has {2,4}: no majority of 4
    assert net.role(1) is Role.CANDIDATE
    assert net.role(2) is Role.CANDIDATE
    net.heal()
    for _ in range(60):
        net.tick_all()
        if net.leaders():
            break
    leader = net.leader()
    assert net.nodes[leader].status.term >= 2


def test_election_restriction_rejects_a_candidate_with_a_stale_log() -> None:
    """§5.4.1: a voter denies its vote if its own log is more up-to-date."""
    net = Network.create(
        3,
        logs={1: ents(1, 1), 2: ents(1, 1), 3: ents(1)},
        hard_states={i: HardState(term=1) for i in (1, 2, 3)},
    )
    net.nodes[3].campaign()
    net.stabilize()
    assert net.role(3) is not Role.LEADER
    answers = net.sent(RequestVoteResponse, dst=3)
    assert answers and not any(a.granted for a in answers)
    # The up-to-date node can win.
    net.elect(1)
    assert net.terms(3) == [1, 1, net.nodes[1].status.term]


def test_higher_last_term_beats_a_longer_log() -> None:
    """§5.4.1: logs with later last terms are more up-to-date, whatever their length."""
    net = Network.create(
        3,
        logs={1: ents(1, 1, 1, 1), 2: ents(1, 2), 3: ents(1)},
        hard_states={1: HardState(term=1), 2: HardState(term=2), 3: HardState(term=2)},
        pre_vote=False,
    )
    net.elect(2)
    assert net.terms(1) == [1, 2, 3]  # node 1's uncommitted term-1 entries were replaced


def test_vote_is_persisted_before_the_response_leaves() -> None:
    """§5.2 / Figure 2: votedFor is on stable storage before responding to RequestVote."""
    node = make_node(2, (1, 2, 3), pre_vote=False)
    node.step(RequestVote(src=1, dst=2, term=1, last_index=0, last_term=0))
    rd = node.ready()
    assert rd.hard_state == HardState(term=1, vote=1, commit=0)
    granted = [m for m in rd.persisted_messages if isinstance(m, RequestVoteResponse)]
    assert granted == [RequestVoteResponse(src=2, dst=1, term=1, granted=True)]
    assert not any(isinstance(m, RequestVoteResponse) for m in rd.messages)


def test_one_vote_per_term_survives_a_restart() -> None:
    """§5.2: each server votes for at most one candidate per term, across crashes."""
    # Without check-quorum: with it, the restarted voter would not answer at all for an
    # election timeout (see test_restarted_voter_keeps_the_leader_lease).
    net = Network.create(3, pre_vote=False, check_quorum=False)
    net.cut(1, 3)
    net.nodes[1].campaign()
    net.deliver(lambda m: isinstance(m, RequestVote) and m.dst == 2)
    net.process(2)
    net.restart(2)
    net.nodes[3].campaign()
    net.stabilize()
    assert net.storage[2].hard_state.vote == 1
    answers = net.sent(RequestVoteResponse, src=2, dst=3)
    assert answers and not answers[0].granted


def test_candidate_leads_only_once_its_own_vote_is_durable() -> None:
    """Figure 2 (persist currentTerm/votedFor first): even with a majority of grants from
    others, a candidate whose own term and vote are not durable must not lead, or a crash
    could let it vote again in the same term."""
    net = Network.create(3, pre_vote=False)
    net.nodes[1].campaign()
    rd = net.nodes[1].ready()  # persist in flight: not advanced yet
    net.queue.extend(rd.messages)
    net.deliver()
    net.process(2)
    net.process(3)
    net.deliver()
    assert net.role(1) is Role.CANDIDATE
    net.storage[1].persist(rd)
    net.nodes[1].advance(rd)
    assert net.role(1) is Role.LEADER


def test_candidate_returns_to_follower_on_append_from_a_leader_of_its_term() -> None:
    """§5.2: a candidate that receives AppendEntries from a leader with term >= its own
    recognizes that leader and becomes a follower."""
    node = make_node(3, (1, 2, 3), pre_vote=False)
    node.campaign()
    drain(node)
    assert node.status.role is Role.CANDIDATE
    node.step(AppendEntries(src=1, dst=3, term=1, prev_index=0, prev_term=0, entries=(), commit=0))
    assert (node.status.role, node.status.leader_id) == (Role.FOLLOWER, 1)


def test_stale_term_vote_response_is_ignored() -> None:
    """§5.1: messages with a stale term are dropped."""
    node = make_node(1, (1, 2, 3), pre_vote=False, hard_state=HardState(term=5))
    node.campaign()
    drain(node)
    node.step(RequestVoteResponse(src=2, dst=1, term=4, granted=True))
    node.step(RequestVoteResponse(src=3, dst=1, term=4, granted=True))
    assert node.status.role is Role.CANDIDATE


def test_single_node_elects_itself_and_commits_on_its_own_durable_append() -> None:
    """§5.2 with a cluster of one: the node is its own majority."""
    net = Network.create(1)
    net.tick_all(25)
    assert net.leaders() == [1]
    node = net.nodes[1]
    index, term = node.propose(b"a")
    rd = node.ready()
    assert [e.index for e in rd.entries] == [index]
    assert node.status.commit == index - 1  # not durable yet: not committed
    net.storage[1].persist(rd)
    node.advance(rd)
    assert node.status.commit == index
    rd = node.ready()
    assert [(e.index, e.term, e.data) for e in rd.committed_entries] == [(index, term, b"a")]


def test_single_node_campaign_elects_at_once() -> None:
    net = Network.create(1)
    net.elect(1)
    assert net.nodes[1].status.term == 1
