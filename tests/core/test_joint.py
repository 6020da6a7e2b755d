"""Joint consensus and learners in the core (Raft paper §6, thesis §4.1-§4.3).

Each test names the rule it checks. The network is ``membership.net.JointNet``: a
``core.helpers.Network`` whose nodes can join as learners.
"""

from __future__ import annotations

import pytest
from membership.net import JointNet, demote, learner, promote, remove

from trioraft.core import Role
from trioraft.core.confstate import ConfState
from wire.errors import Busy, ChangeInProgress, InvalidRequest, NotLeader
from wire.messages import (
    AppendEntries,
    AppendEntriesResponse,
    EntryKind,
    Heartbeat,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)


def grown(n: int = 3, learners: tuple[int, ...] = (4,), **overrides: object) -> JointNet:
    net = JointNet.build(n, **overrides)
    net.elect(1)
    for node in learners:
        net.join(1, node)
    return net


def config_entries(net: JointNet, node: int) -> list[ConfState]:
    from trioraft.core.confstate import decode_membership

    return [
        decode_membership(e.data).conf
        for e in net.storage[node].entries
        if e.kind is EntryKind.CONFIG
    ]


# --- learners (thesis §4.2.1) ---------------------------------------------------------


def test_adding_a_learner_is_one_simple_entry_and_the_learner_gets_the_log() -> None:
    net = grown()
    assert config_entries(net, 1) == [ConfState((1, 2, 3), learners=(4,))]
    index, _ = net.nodes[1].propose(b"after")
    net.stabilize()
    assert net.applied_data(4)[-1] == b"after"
    assert net.nodes[4].status.commit == index
    assert net.conf(4) == ConfState((1, 2, 3), learners=(4,))


def test_a_learner_never_campaigns_even_when_the_leader_is_gone() -> None:
    net = grown()
    net.isolate(1)
    for _ in range(100):
        net.tick(4)
        net.stabilize()
    assert net.role(4) is Role.FOLLOWER and net.nodes[4].status.term == 1
    net.nodes[4].campaign()  # asked explicitly: still nothing
    net.stabilize()
    assert net.role(4) is Role.FOLLOWER
    assert not net.sent(RequestVote, src=4)


def test_a_learner_ignores_timeout_now() -> None:
    net = grown()
    net.nodes[4].step(TimeoutNow(src=1, dst=4, term=1))
    net.stabilize()
    assert net.role(4) is Role.FOLLOWER and not net.sent(RequestVote, src=4)
    with pytest.raises(InvalidRequest):
        net.nodes[1].transfer_leader(4)  # not a voter


def test_a_learners_vote_never_counts() -> None:
    """Only voters of the candidate's configuration are asked and counted (§5.2 over C):
    with the other voters down, a learner's grant leaves the candidate short."""
    net = grown(pre_vote=False, check_quorum=False)
    net.down |= {2, 3}
    net.nodes[1].step_down()
    net.tick_all(40)
    assert net.role(1) is Role.CANDIDATE
    assert not net.sent(RequestVote, dst=4)  # learners are not asked at all
    term = net.nodes[1].status.term
    net.nodes[1].step(RequestVoteResponse(src=4, dst=1, term=term, granted=True))
    net.stabilize()
    assert net.role(1) is Role.CANDIDATE


def test_a_learners_acknowledgement_never_commits() -> None:
    """Commitment counts voters only (§5.3 over C): leader + learner are no majority."""
    net = grown()
    net.partition((1, 4), (2, 3))
    index, _ = net.nodes[1].propose(b"x")
    net.stabilize()
    assert net.nodes[4].status.last_index == index  # replicated to the learner
    assert net.nodes[1].status.commit < index


# --- joint consensus (§6, thesis §4.3) --------------------------------------------------


def test_promotion_goes_through_the_joint_configuration_and_leaves_it() -> None:
    net = grown()
    net.change(1, promote(4))
    net.stabilize()
    assert config_entries(net, 1)[1:] == [
        ConfState((1, 2, 3, 4), voters_outgoing=(1, 2, 3)),
        ConfState((1, 2, 3, 4)),
    ]
    for node in (1, 2, 3, 4):
        assert net.committed_conf(node) == ConfState((1, 2, 3, 4))


def test_a_configuration_takes_effect_when_appended_not_when_committed() -> None:
    net = grown()
    net.cut(1, 2)
    net.cut(1, 3)
    net.change(1, promote(4))
    net.stabilize()
    assert net.conf(1).joint and net.conf(4).joint  # appended, not committed
    assert not net.committed_conf(1).joint


@pytest.mark.parametrize("reachable", [(1, 2, 3), (1, 4, 5)], ids=["c_old", "c_new"])
def test_joint_commitment_needs_a_majority_of_both_halves(reachable: tuple[int, ...]) -> None:
    """Replace voters 2, 3 with learners 4, 5: C_old,new = {1,4,5} && {1,2,3}. A majority
    of one half alone commits nothing."""
    net = grown(learners=(4, 5))
    net.partition(reachable, {1, 2, 3, 4, 5} - set(reachable))
    index, _ = net.change(1, promote(4), promote(5), remove(2), remove(3))
    net.tick_all(3)
    assert net.conf(reachable[1]) == ConfState((1, 4, 5), voters_outgoing=(1, 2, 3))
    assert net.nodes[1].status.commit < index
    net.heal()
    net.tick_all(3)
    assert net.committed_conf(1) == ConfState((1, 4, 5))  # joint committed, then left


def test_joint_elections_need_a_majority_of_both_halves() -> None:
    net = grown(learners=(4, 5), pre_vote=False)
    net.change(1, promote(4), promote(5), remove(2), remove(3))
    # deliver the joint entry everywhere but keep it from committing
    net.drop_filter = lambda m: m.dst == 1 and m.src in (4, 5)
    net.stabilize()
    net.drop_filter = None
    assert all(net.conf(i).joint for i in (1, 2, 3, 4, 5))
    net.down.add(1)
    net.cut(2, 4)
    net.cut(2, 5)
    net.cut(3, 4)
    net.cut(3, 5)
    for _ in range(60):
        net.tick_all()
    # {2,3} is a majority of C_old only, {4,5} of C_new only: nobody wins
    assert [i for i in net.leaders() if i != 1] == []
    net.heal()
    leader = net.tick_until_leader(exclude={1})
    assert leader in (4, 5)  # 2 and 3 are voters of C_old only: a winner needs C_new too
    net.tick_all(3)
    assert net.committed_conf(leader) == ConfState((1, 4, 5)) or net.conf(leader) == (
        ConfState((1, 4, 5))
    )


def test_a_truncated_configuration_entry_is_reverted() -> None:
    """A server uses the latest configuration in its log, committed or not (§6); when a
    new leader overwrites that entry, the previous configuration is in force again."""
    net = JointNet.build(5)
    net.elect(1)
    net.isolate(1)
    net.cuts.discard((1, 2))  # 1 can still reach 2, one way
    net.change(1, learner(6))
    net.stabilize()
    assert net.conf(2) == ConfState((1, 2, 3, 4, 5), learners=(6,))
    net.heal()
    net.down.add(1)
    net.isolate(2)
    new = net.tick_until_leader(exclude={1, 2})
    net.heal()
    net.nodes[new].propose(b"overwrite")
    net.tick_all(2)
    assert net.conf(2) == ConfState((1, 2, 3, 4, 5))  # the entry is gone: reverted
    assert net.nodes[2].membership.member(6) is None


def test_demotion_keeps_the_node_voting_until_the_joint_config_is_left() -> None:
    net = grown(learners=())
    net.change(1, demote(3))
    net.stabilize()
    entries = config_entries(net, 1)
    assert entries == [
        ConfState((1, 2), voters_outgoing=(1, 2, 3), learners_next=(3,)),
        ConfState((1, 2), learners=(3,)),
    ]
    assert net.conf(3).is_learner(3)


# --- one change at a time (thesis §4.1) ---------------------------------------------


def test_a_second_change_while_one_is_uncommitted_is_refused() -> None:
    net = grown()
    net.isolate(1)
    net.change(1, promote(4))
    with pytest.raises(ChangeInProgress, match="in progress"):
        net.change(1, learner(5))


def test_a_change_is_refused_while_joint_even_if_committed() -> None:
    net = grown()
    joint, _ = net.change(1, promote(4))
    net.drop_filter = lambda m: isinstance(m, AppendEntriesResponse) and m.index > joint
    net.stabilize()
    assert net.committed_conf(1).joint  # C_old,new committed, C_new not yet
    with pytest.raises(ChangeInProgress):
        net.change(1, learner(5))
    net.drop_filter = None
    net.tick_all(2)
    net.change(1, learner(5))  # completed: the next change is accepted


def test_no_change_before_the_new_leader_commits_an_entry_of_its_term() -> None:
    net = grown(pre_vote=False, check_quorum=False)
    net.isolate(1)
    net.nodes[2].campaign()
    for _ in range(20):
        net.process_all()
        net.deliver(keep=lambda m: not isinstance(m, AppendEntries))
    assert net.role(2) is Role.LEADER
    with pytest.raises(Busy, match="not committed an entry of its term"):
        net.change(2, promote(4))
    net.stabilize()
    net.change(2, promote(4))


def test_invalid_changes_name_the_problem() -> None:
    net = grown()
    with pytest.raises(InvalidRequest, match="unknown node 9"):
        net.change(1, promote(9))
    with pytest.raises(InvalidRequest, match="already a member"):
        net.change(1, learner(4))
    with pytest.raises(InvalidRequest, match="duplicate address"):
        dup = learner(5)
        net.change(1, type(dup)(dup.op, 5, "tcp://10.0.0.4:7380", "tcp://10.0.0.5:7379"))
    with pytest.raises(InvalidRequest, match="last voter"):
        net.change(1, remove(1), remove(2), remove(3))
    with pytest.raises(NotLeader):
        net.change(2, promote(4))


# --- removing the leader (§6) -----------------------------------------------------


def test_a_removed_leader_steps_down_once_c_new_commits_and_hands_over() -> None:
    net = grown(learners=())
    net.change(1, remove(1))
    net.stabilize()
    assert net.committed_conf(2) == ConfState((2, 3))
    assert net.role(1) is Role.FOLLOWER
    assert net.sent(TimeoutNow, src=1)
    assert net.leaders() and net.leaders()[0] in (2, 3)
    before = len(net.sent(RequestVote, src=1))
    for _ in range(100):  # the removed node never campaigns again
        net.tick(1)
        net.stabilize()
    assert len(net.sent(RequestVote, src=1)) == before
    new = net.leaders()[0]
    net.nodes[new].propose(b"without 1")
    net.stabilize()
    assert net.applied_data(2)[-1] == b"without 1"


def test_a_leader_outside_c_new_does_not_count_itself() -> None:
    """While C_new = {2,3} is uncommitted the leader (1) manages it without being part of
    it: 1 and 3 hold the entry, but they are no majority of {2,3}."""
    net = grown(learners=())
    joint, _ = net.change(1, remove(1))
    # node 2 never acknowledges C_new (the entry after the joint one)
    net.drop_filter = lambda m: (
        isinstance(m, AppendEntriesResponse) and m.src == 2 and m.index > joint
    )
    net.stabilize()
    assert net.conf(1) == ConfState((2, 3))
    assert net.committed_conf(1).joint and net.role(1) is Role.LEADER
    net.drop_filter = None
    net.tick_all(2)
    assert net.committed_conf(2) == ConfState((2, 3))


# --- the network of a changing cluster (thesis §4.1) ----------------------------------


def test_messages_from_nodes_outside_the_configuration_are_processed() -> None:
    """A follower whose log lags behind the configuration that added the current leader
    must still accept its messages, or it could never catch up."""
    net = JointNet.build(3)
    net.nodes[2].step(Heartbeat(src=9, dst=2, term=4, commit=0))
    assert net.nodes[2].status.leader_id == 9 and net.nodes[2].status.term == 4


def test_restart_recovers_the_configuration_from_the_log() -> None:
    net = grown()
    net.change(1, promote(4))
    net.stabilize()
    for node in (1, 4):
        net.restart(node)
        assert net.conf(node) == ConfState((1, 2, 3, 4))
    leader = net.tick_until_leader()
    net.nodes[leader].propose(b"again")
    net.stabilize()
    assert net.applied_data(4)[-1] == b"again"


def test_grow_one_to_three_and_shrink_back_keeps_every_write() -> None:
    net = JointNet.build(1)
    net.elect(1)
    written = []
    for node in (2, 3):
        net.join(1, node)
        net.change(1, promote(node))
        net.stabilize()
        written.append(net.nodes[1].propose(b"w%d" % node)[0])
        net.stabilize()
    assert net.committed_conf(3) == ConfState((1, 2, 3))
    net.change(1, remove(1))
    net.stabilize()
    leader = net.leaders()[0]
    net.nodes[leader].propose(b"last")
    net.stabilize()
    assert net.applied_data(2) == net.applied_data(3) == [b"w2", b"w3", b"last"]


# --- the single-server-change pitfall (thesis §4.1 and its errata) ----------------------


@pytest.mark.parametrize("bug", [False, True], ids=["joint", "planted_single_server_change"])
def test_competing_changes_across_leader_changes(bug: bool) -> None:
    """Leader 1 (term 1) adds voter 5, but only 5 gets the entry. Leader 2 (term 2, elected
    by 2, 3, 4 without it) at once removes 1 and commits that with 3 alone, while 4 hears
    nothing of term 2. Then 1 campaigns with 4 and 5. Changing one voter in one step, and
    before committing an entry of the new term, lets 1 win with {1, 4, 5}, a majority of
    its configuration that misses everyone who holds the committed removal: a committed
    entry is lost. With joint consensus and the commit-in-term rule nothing commits, and
    nobody wins without a majority of the old voters."""
    bugs = frozenset({"single_server_change"}) if bug else frozenset()
    net = JointNet.build(4, pre_vote=False, check_quorum=False, planted_bugs=bugs)
    net.elect(1)
    net.join(1, 5)
    net.partition((1, 5), (2, 3, 4))
    net.change(1, promote(5))
    net.stabilize()
    net.nodes[1].step_down()  # 1 loses leadership (say, a long pause)
    net.drop_filter = lambda m: m.dst == 4 and isinstance(m, (AppendEntries, Heartbeat))
    net.nodes[2].campaign()
    for _ in range(10):
        net.process_all()
        net.deliver(keep=lambda m: isinstance(m, (RequestVote, RequestVoteResponse)))
    assert net.role(2) is Role.LEADER and net.nodes[2].status.term == 2
    if bug:
        removal, _ = net.change(2, remove(1))  # before its no-op commits
    else:
        with pytest.raises(Busy):
            net.change(2, remove(1))
        removal = net.nodes[2].status.last_index  # its no-op: even that cannot commit
    net.stabilize()  # only 3 hears from 2
    committed_by_2 = net.nodes[2].status.commit >= removal
    assert committed_by_2 == bug
    net.heal()
    net.partition((1, 4, 5), (2, 3))
    for _ in range(3):
        net.nodes[1].campaign()
        net.stabilize()
    won = net.role(1) is Role.LEADER
    assert won == bug
    if bug:  # the pitfall: a leader of a later term lacks an entry committed in term 2
        assert net.nodes[1].status.last_index < removal or net.terms(1)[removal - 1] != 2


def test_a_lone_voter_of_a_new_configuration_keeps_its_lease_promise() -> None:
    """Thesis §6.4.1 with membership changes: node 2, alone in C_new = {2} (not committed
    yet), backed leader 1's lease in C_old,new; it must not elect itself while that lease
    holds, although it alone is a quorum of its configuration (found by the simulator)."""
    net = JointNet.build(2)
    net.elect(1)
    joint, _ = net.change(1, remove(1))
    net.drop_filter = lambda m: isinstance(m, AppendEntriesResponse) and m.index > joint
    net.tick_all(2)
    assert net.conf(2) == ConfState((2,)) and net.role(1) is Role.LEADER
    assert net.nodes[1].lease_valid()
    net.nodes[2].campaign()
    net.stabilize()
    assert net.role(2) is not Role.LEADER and net.role(1) is Role.LEADER
    net.drop_filter = None
    net.tick_all(2)  # C_new commits: 1 hands over to 2 and steps down
    assert net.leaders() == [2]
