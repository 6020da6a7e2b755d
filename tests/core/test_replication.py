"""Log replication (§5.3), commitment (§5.4.2) and flow control."""

from __future__ import annotations

import pytest

from trioraft.core import RawNode, Role
from wire.messages import (
    AppendEntries,
    AppendEntriesResponse,
    EntryKind,
    HardState,
    Heartbeat,
    RequestVoteResponse,
)

from .helpers import Network, drain, ents, make_node

# Figure 7: the leader for term 8 and six possible follower logs.
FIG7_LEADER = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
FIG7_FOLLOWERS = {
    "a": ([1, 1, 1, 4, 4, 5, 5, 6, 6], 1),
    "b": ([1, 1, 1, 4], 1),
    "c": ([1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6], 0),
    "d": ([1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7], 0),
    "e": ([1, 1, 1, 4, 4, 4, 4], 1),
    "f": ([1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3], 1),
}


@pytest.mark.parametrize("case", sorted(FIG7_FOLLOWERS))
def test_figure7_followers_converge_to_the_leader_log(case: str) -> None:
    """§5.3 / Figure 7: the leader forces followers to duplicate its log: missing entries
    are sent, extraneous and conflicting ones are overwritten. With fast backtracking
    (hint_index/hint_term) each follower needs at most one rejection."""
    follower, want_rejections = FIG7_FOLLOWERS[case]
    net = Network.create(
        3,
        logs={1: ents(*FIG7_LEADER), 2: ents(*follower), 3: ents(*FIG7_LEADER)},
        hard_states={
            1: HardState(term=7),
            2: HardState(term=max(follower)),
            3: HardState(term=7),
        },
    )
    net.elect(1)
    assert net.nodes[1].status.term == 8
    want = [*FIG7_LEADER, 8]
    assert net.terms(1) == want
    assert net.terms(2) == want
    rejections = [m for m in net.sent(AppendEntriesResponse, src=2) if not m.success]
    assert len(rejections) == want_rejections


def test_fast_backtracking_skips_a_whole_conflicting_term() -> None:
    """§5.3 (the optimization at the end of the section): one rejection per conflicting
    term, not one per entry."""
    net = Network.create(
        3,
        logs={1: ents(1, *[3] * 40), 2: ents(1, *[2] * 60), 3: ents(1, *[3] * 40)},
        hard_states={1: HardState(term=3), 2: HardState(term=3), 3: HardState(term=3)},
    )
    net.elect(1)
    assert net.terms(2) == [1, *[3] * 40, 4]
    rejections = [m for m in net.sent(AppendEntriesResponse, src=2) if not m.success]
    assert len(rejections) == 1


def become_leader(node: RawNode, peers: tuple[int, ...]) -> None:
    """Drive a lone node through a pre-vote and an election with crafted grants."""
    node.campaign()
    rd = drain(node)
    vote_term = next(m.term for m in rd.messages)
    for p in peers:
        node.step(
            RequestVoteResponse(
                src=p, dst=node.status.node_id, term=vote_term, granted=True, pre_vote=True
            )
        )
    drain(node)  # persists term and self-vote
    for p in peers:
        node.step(RequestVoteResponse(src=p, dst=node.status.node_id, term=vote_term, granted=True))
    assert node.status.role is Role.LEADER


def test_figure8_old_term_entries_are_not_committed_by_counting() -> None:
    """§5.4.2 / Figure 8 (c): S1, leader of term 4, replicates its term-2 entry at index 2
    to a majority; it must not commit it until an entry of term 4 is also on a majority."""
    s1 = make_node(1, (1, 2, 3, 4, 5), entries=ents(1, 2), hard_state=HardState(term=3, commit=1))
    become_leader(s1, (2, 3))
    assert s1.status.term == 4
    drain(s1)  # the no-op at index 3 is durable on S1
    for p in (2, 3):
        s1.step(AppendEntriesResponse(src=p, dst=1, term=4, success=True, index=2))
    assert s1.status.commit == 1  # index 2 is on S1, S2, S3 but is of term 2
    s1.step(AppendEntriesResponse(src=2, dst=1, term=4, success=True, index=3))
    assert s1.status.commit == 1  # the term-4 entry is on S1, S2 only
    s1.step(AppendEntriesResponse(src=3, dst=1, term=4, success=True, index=3))
    assert s1.status.commit == 3  # committing index 3 commits index 2 indirectly


def test_figure8_an_uncommitted_old_term_entry_can_be_overwritten() -> None:
    """§5.4.2 / Figure 8 (d): why counting must not commit: S5 (last term 3) can still be
    elected and replace the term-2 entry that sits on a majority."""
    net = Network.create(
        5,
        logs={1: ents(1, 2), 2: ents(1, 2), 3: ents(1, 2), 4: ents(1), 5: ents(1, 3)},
        hard_states={i: HardState(term=4, commit=1) for i in range(1, 6)},
    )
    net.isolate(1)
    net.elect(5)
    assert all(net.terms(i)[:2] == [1, 3] for i in (2, 3, 4, 5))


def test_stale_duplicate_append_does_not_truncate_matched_entries() -> None:
    """§5.3 (Figure 2, AppendEntries rule 3): only conflicts truncate, so an old,
    duplicated AppendEntries arriving late cannot drop entries the leader counted."""
    net = Network.create(3)
    net.elect(1)
    net.nodes[1].propose(b"a")
    net.stabilize()
    old = [m for m in net.sent(AppendEntries, dst=2) if m.entries][-1]
    for data in (b"b", b"c"):
        net.nodes[1].propose(data)
        net.stabilize()
    before = list(net.storage[2].entries)
    assert len(before) == 4
    net.nodes[2].step(old)
    net.process(2)
    assert net.storage[2].entries == before
    assert net.nodes[2].status.last_index == 4
    net.deliver()  # the stale success response is ignored by the leader
    assert net.nodes[1].status.commit == 4


def test_commit_propagates_to_followers() -> None:
    """§5.3: followers learn the commit index from later AppendEntries / heartbeats and
    apply committed entries in log order."""
    net = Network.create(3)
    net.elect(1)
    for data in (b"a", b"b", b"c"):
        net.nodes[1].propose(data)
    net.stabilize()
    for i in net.ids:
        assert net.applied_data(i) == [b"a", b"b", b"c"]
        assert net.nodes[i].status.commit == 4


def test_heartbeat_carries_commit_when_the_append_was_lost() -> None:
    """§5.3: the leader includes its commit index in heartbeats, capped at the follower's
    match so a follower never commits an entry it may not have."""
    net = Network.create(3)
    net.elect(1)
    net.nodes[1].propose(b"a")
    net.process_all()
    net.deliver()  # appends reach the followers
    net.process_all()
    net.deliver()  # acks reach the leader: commit advances to 2
    assert net.nodes[1].status.commit == 2
    net.process(1)
    net.queue.clear()  # lose the empty appends that carried commit=2
    net.stabilize()
    assert net.nodes[2].status.commit == 1
    net.tick(1)
    hb = [m for m in net.nodes[1].ready().messages if isinstance(m, Heartbeat)]
    assert {m.commit for m in hb} == {2}


def test_heartbeat_commit_is_capped_by_match() -> None:
    """§5.3 safety: commit sent to a follower is min(match, commit)."""
    net = Network.create(3)
    net.elect(1)
    net.cut(1, 3)
    net.nodes[1].propose(b"a")
    net.stabilize()
    assert net.nodes[1].status.commit == 2
    net.tick(1)
    rd = net.nodes[1].ready()
    commits = {m.dst: m.commit for m in rd.messages if isinstance(m, Heartbeat)}
    assert commits == {2: 2, 3: 1}


def test_leader_commits_with_followers_before_its_own_persist_but_applies_after() -> None:
    """Thesis §10.2.1: the leader appends to its disk in parallel with replication and may
    commit once a majority (possibly without itself) has the entry; it applies only what is
    durable locally."""
    net = Network.create(3)
    net.elect(1)
    leader = net.nodes[1]
    leader.propose(b"a")
    rd = leader.ready()
    net.queue.extend(rd.messages)
    net.deliver()
    net.process(2)
    net.process(3)
    net.deliver()
    assert leader.status.commit == 2
    net.storage[1].persist(rd)
    leader.advance(rd)
    rd2 = leader.ready()
    assert rd2.hard_state is not None and rd2.hard_state.commit == 2
    assert [e.data for e in rd2.committed_entries] == [b"a"]


def test_proposals_between_readies_share_one_append_per_follower() -> None:
    """Batching (ARCHITECTURE principle 3): one AppendEntries per follower per Ready."""
    net = Network.create(3)
    net.elect(1)
    for i in range(5):
        net.nodes[1].propose(bytes([i]))
    rd = net.nodes[1].ready()
    appends = [m for m in rd.messages if isinstance(m, AppendEntries)]
    assert sorted(m.dst for m in appends) == [2, 3]
    assert all(len(m.entries) == 5 for m in appends)
    assert len(rd.entries) == 5


def test_entries_are_batched_under_max_append_bytes() -> None:
    net = Network.create(3, max_append_bytes=250)
    net.elect(1)
    for _ in range(7):
        net.nodes[1].propose(b"x" * 100)
    rd = net.nodes[1].ready()
    to2 = [m for m in rd.messages if isinstance(m, AppendEntries) and m.dst == 2]
    assert [len(m.entries) for m in to2] == [2, 2, 2, 1]
    assert [m.prev_index for m in to2] == [1, 3, 5, 7]


def test_replicate_window_limits_unacked_appends() -> None:
    """Flow control: at most max_inflight unacknowledged AppendEntries per follower; each
    ack frees room for more."""
    net = Network.create(3, max_inflight=2, max_append_bytes=1)
    net.elect(1)
    for _ in range(5):
        net.nodes[1].propose(b"x")
    net.process(1)
    to2 = [m for m in net.queue if isinstance(m, AppendEntries) and m.dst == 2]
    assert [len(m.entries) for m in to2] == [1, 1]
    net.deliver(lambda m: isinstance(m, AppendEntries) and m.dst == 2 and m is to2[0])
    net.process(2)
    net.deliver(lambda m: isinstance(m, AppendEntriesResponse) and m.src == 2)
    more = [m for m in net.nodes[1].ready().messages if isinstance(m, AppendEntries)]
    assert [(m.dst, m.prev_index) for m in more] == [(2, 3)]


def test_probe_state_sends_one_append_until_answered() -> None:
    """Flow control: a follower whose match is unknown (PROBE) gets one AppendEntries at a
    time; a heartbeat response lets the next probe go."""
    net = Network.create(3)
    net.cut(1, 3)
    net.elect(1)
    for i in range(3):
        net.nodes[1].propose(bytes([i]))
        net.stabilize()

    def appends_to_3() -> int:
        return sum(
            isinstance(m, AppendEntries) and m.dst == 3
            for rd in net.readies[1]
            for m in rd.messages
        )

    assert appends_to_3() == 1  # the first probe, lost; nothing more while unanswered
    net.heal()
    net.tick_all(1)
    assert appends_to_3() == 2
    assert net.nodes[3].status.last_index == 4


def test_lost_appends_are_resent_after_a_heartbeat() -> None:
    """§5.3: the leader retries AppendEntries indefinitely until the follower has them."""
    net = Network.create(3)
    net.elect(1)
    net.cuts.add((1, 3))  # everything the leader sends to 3 is lost for a while
    net.nodes[1].propose(b"a")
    net.stabilize()
    assert net.nodes[3].status.last_index == 1
    net.heal()
    net.tick_all(1)
    assert net.nodes[3].status.last_index == 2
    assert net.applied_data(3) == [b"a"]


def test_restart_redelivers_committed_entries_above_applied() -> None:
    """§5.3: entries are applied in order; after a crash the state machine's applied
    index may lag and committed entries above it are delivered again."""
    net = Network.create(1)
    net.elect(1)
    for data in (b"a", b"b"):
        net.nodes[1].propose(data)
    net.stabilize()
    net.storage[1].applied = 1  # the state machine lost its last applies
    net.restart(1)
    rd = net.nodes[1].ready()
    assert [e.data for e in rd.committed_entries] == [b"a", b"b"]
    assert rd.committed_entries[0].kind is EntryKind.NORMAL


def test_full_window_with_lost_appends_recovers_after_a_heartbeat() -> None:
    """Flow control must not deadlock: if every inflight AppendEntries was lost, a heartbeat
    response frees a slot so the leader can discover the gap and resend (§5.3 retries)."""
    net = Network.create(3, max_inflight=1, max_append_bytes=1)
    net.elect(1)
    net.nodes[1].propose(b"a")
    net.stabilize()  # node 2 is in REPLICATE now
    net.cuts.add((1, 2))
    for data in (b"b", b"c", b"d"):
        net.nodes[1].propose(data)
    net.stabilize()  # one append to 2 in flight (lost), window full
    net.heal()
    net.tick_all(3)
    assert net.applied_data(2) == [b"a", b"b", b"c", b"d"]


@pytest.mark.parametrize("lazy", [False, True])
def test_a_lost_last_append_is_found_by_the_next_heartbeat(lazy: bool) -> None:
    """The leader's only append to a follower is lost and nothing else is proposed: the
    follower's heartbeat response (match behind) draws an append that finds the loss. With
    lazy commit this once waited forever (no later proposal to carry the entries); the
    simulator found it (seed 21, 3 nodes) once the leader's sync left the commit path."""
    net = Network.create(3, lazy_commit=lazy)
    net.elect(1)
    net.nodes[1].propose(b"x")
    net.drop_filter = lambda m: isinstance(m, AppendEntries) and m.dst == 2 and bool(m.entries)
    net.stabilize()
    net.drop_filter = None
    assert net.applied_data(1)[-1:] == [b"x"] and net.nodes[2].status.last_index == 1
    heartbeat = net.nodes[1]._raft.config.heartbeat_ticks
    net.tick(1, heartbeat)
    net.stabilize()
    net.tick(1, heartbeat)  # (lazy: the commit reaches the follower with a heartbeat)
    net.stabilize()
    assert net.applied_data(2)[-1:] == [b"x"]


@pytest.mark.parametrize("lazy", [False, True])
def test_lazy_commit_is_sent_on_request_only_to_followers_that_lack_it(lazy: bool) -> None:
    """Lazy commit: a commit goes to no follower by itself; ``commit_unsent`` says so, and
    ``send_commit`` sends one empty AppendEntries to each follower that holds the entries
    (the node's bound, trioraft/node/commit_bound.py). Eager commit sends it at once."""
    net = Network.create(3, lazy_commit=lazy)
    net.elect(1)
    leader = net.nodes[1]
    leader.propose(b"x")
    net.stabilize()
    assert leader.status.commit == 2
    told = [m.commit for m in net.sent(AppendEntries, src=1) if m.dst == 2]
    assert (max(told) == 2) is not lazy  # eager: an empty append carried it
    assert leader.commit_unsent() is lazy
    net.nodes[3].send_commit()  # a follower: nothing to send
    leader.send_commit()
    sent = net.nodes[1].ready().messages
    if lazy:
        assert sorted((m.dst, m.commit, m.entries) for m in sent) == [(2, 2, ()), (3, 2, ())]
    else:
        assert sent == ()  # everybody was told already
    assert not leader.commit_unsent()
    assert net.nodes[3].commit_unsent() is False  # a follower never owes a commit


def test_commit_unsent_waits_for_a_follower_to_hold_the_entries() -> None:
    """A follower that does not hold the committed entries is owed nothing yet: the append
    that brings them carries the commit (capped at what it holds, like heartbeats)."""
    net = Network.create(3, lazy_commit=True)
    net.isolate(3)
    net.elect(1)
    leader = net.nodes[1]
    leader.propose(b"x")
    net.stabilize()
    assert leader.status.commit == 2 and leader.progress()[3] == 0
    assert leader.commit_unsent()  # node 2 holds entry 2 and was not told
    leader.send_commit()
    assert [m.dst for m in leader.ready().messages if isinstance(m, AppendEntries)] == [2]
