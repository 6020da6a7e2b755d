"""Leadership transfer (thesis §3.10)."""

from __future__ import annotations

import pytest

from trioraft.core import Role
from wire.errors import InvalidRequest, NotLeader, ProposalDropped
from wire.messages import AppendEntriesResponse, RequestVote, TimeoutNow

from .helpers import Network


def test_transfer_to_an_up_to_date_voter() -> None:
    """Thesis §3.10: the target receives TimeoutNow, campaigns at once and wins."""
    net = Network.create(3)
    net.elect(1)
    net.nodes[1].transfer_leader(3)
    net.stabilize()
    assert net.leaders() == [3]
    assert net.nodes[3].status.term == 2
    assert net.nodes[1].status.leader_id == 3
    votes = net.sent(RequestVote, src=3)
    assert votes and all(v.transfer and not v.pre_vote for v in votes)


def test_transfer_first_brings_the_target_up_to_date_and_drops_proposals() -> None:
    """Thesis §3.10 step 2: the leader stops accepting requests and replicates to the
    target until its log matches; only then does it send TimeoutNow."""
    net = Network.create(3)
    net.elect(1)
    net.cut(1, 3)
    for data in (b"a", b"b"):
        net.nodes[1].propose(data)
    net.stabilize()
    net.heal()
    net.nodes[1].transfer_leader(3)
    with pytest.raises(ProposalDropped):
        net.nodes[1].propose(b"c")
    net.stabilize()
    assert net.leaders() == [3]
    assert net.terms(3)[:3] == [1, 1, 1]
    order = [
        type(m)
        for m in net.delivered
        if (isinstance(m, AppendEntriesResponse) and m.src == 3 and m.success)
        or isinstance(m, TimeoutNow)
    ]
    assert order.index(TimeoutNow) > order.index(AppendEntriesResponse)
    assert net.applied_data(3) == [b"a", b"b"]


def test_transfer_is_aborted_after_an_election_timeout() -> None:
    """Thesis §3.10: if the transfer does not complete within an election timeout, the
    leader aborts it and accepts client requests again."""
    net = Network.create(3, election_ticks=10)
    net.elect(1)
    net.down.add(3)
    net.nodes[1].transfer_leader(3)
    with pytest.raises(ProposalDropped):
        net.nodes[1].propose(b"x")
    net.tick(1, 9)
    with pytest.raises(ProposalDropped):
        net.nodes[1].propose(b"x")
    net.tick(1)
    assert net.nodes[1].propose(b"x") == (2, 1)
    assert net.leaders() == [1]


def test_transfer_to_none_picks_the_most_caught_up_voter() -> None:
    net = Network.create(3)
    net.elect(1)
    net.cut(1, 2)
    net.nodes[1].propose(b"a")
    net.stabilize()
    net.heal()
    net.nodes[1].transfer_leader()
    net.stabilize()
    assert net.leaders() == [3]


def test_transfer_vote_bypasses_the_leader_lease() -> None:
    """Thesis §3.10 / §4.2.3: voters that just heard from the leader still vote for a
    transfer target (the RequestVote is marked transfer=True)."""
    net = Network.create(5)
    net.elect(1)
    net.tick_all(1)  # everyone is inside the leader's lease
    net.nodes[1].transfer_leader(4)
    net.stabilize()
    assert net.leaders() == [4]


def test_transfer_argument_errors() -> None:
    net = Network.create(3)
    net.elect(1)
    with pytest.raises(NotLeader):
        net.nodes[2].transfer_leader(3)
    with pytest.raises(InvalidRequest):
        net.nodes[1].transfer_leader(9)
    net.nodes[1].transfer_leader(1)  # no-op
    assert net.nodes[1].propose(b"ok")[0] == 2


def test_single_node_transfer_is_a_no_op() -> None:
    net = Network.create(1)
    net.elect(1)
    net.nodes[1].transfer_leader()
    assert net.role(1) is Role.LEADER
    assert net.nodes[1].propose(b"x") == (2, 1)
