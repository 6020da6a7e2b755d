"""``RawNode.step_down()``: the shell's hook for a node whose storage fails.

A node that cannot persist can acknowledge nothing, so it should not lead (thesis §3.10's
motive for leadership transfer applies: a leader that cannot make progress hurts
availability). Stepping down keeps the term and the vote (Figure 2: at most one vote per
term), forgets the leader, and drops pending reads.
"""

from __future__ import annotations

import pytest

from trioraft.core import Role
from wire.errors import NotLeader

from .helpers import Network, make_node


def test_leader_steps_down_in_the_same_term_and_keeps_its_vote() -> None:
    net = Network.create(3)
    net.elect(1)
    node = net.nodes[1]
    term = node.status.term
    node.read_index(7)  # pending until the heartbeat round: dropped by the step-down
    node.step_down()
    st = node.status
    assert (st.role, st.term, st.leader_id) == (Role.FOLLOWER, term, 0)
    with pytest.raises(NotLeader):
        node.propose(b"x")
    rd = node.ready()
    assert rd.soft_state is not None and rd.soft_state.role is Role.FOLLOWER
    assert rd.hard_state is None  # term and vote unchanged: nothing new to persist
    assert not rd.read_states
    node.advance(rd)


def test_candidate_steps_down_and_a_follower_is_unchanged() -> None:
    node = make_node(1, (1, 2, 3), pre_vote=False)
    node.campaign()
    assert node.status.role is Role.CANDIDATE
    term = node.status.term
    node.step_down()
    assert (node.status.role, node.status.term) == (Role.FOLLOWER, term)
    rd = node.ready()
    assert rd.hard_state is not None and rd.hard_state.vote == 1  # the self-vote stays
    node.advance(rd)
    node.step_down()  # no-op on a follower
    assert not node.has_ready()


def test_cluster_elects_another_leader_after_a_step_down() -> None:
    net = Network.create(3)
    net.elect(1)
    net.nodes[1].step_down()
    net.down.add(1)  # a failed disk: it neither persists nor answers
    for _ in range(100):
        for i in (2, 3):
            net.nodes[i].tick()
        net.stabilize()
        if any(net.nodes[i].status.role is Role.LEADER for i in (2, 3)):
            break
    leaders = [i for i in (2, 3) if net.nodes[i].status.role is Role.LEADER]
    assert len(leaders) == 1
    assert net.nodes[leaders[0]].status.term > net.nodes[1].status.term
