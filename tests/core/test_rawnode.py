"""The RawNode/Ready contract: what is emitted when, and what advance() means."""

from __future__ import annotations

import dataclasses
import random

import pytest

from trioraft.core import RawNode, Role, SoftState
from trioraft.core.types import CoreConfig
from wire.errors import NotLeader, StorageError
from wire.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryKind,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    Message,
    RequestVote,
    TimeoutNow,
)

from .helpers import Network, drain, ents, make_node


def test_ready_twice_without_advance_raises_and_has_ready_is_false_meanwhile() -> None:
    node = make_node(1, (1,))
    node.campaign()
    assert node.has_ready()
    rd = node.ready()
    assert not node.has_ready()
    with pytest.raises(RuntimeError, match="advance"):
        node.ready()
    with pytest.raises(RuntimeError, match="last ready"):
        node.advance(dataclasses.replace(rd))  # an equal copy is not the outstanding Ready
    node.advance(rd)
    assert node.has_ready()  # became leader: no-op to persist


def test_work_done_between_ready_and_advance_lands_in_the_next_ready() -> None:
    net = Network.create(1)
    net.elect(1)
    node = net.nodes[1]
    node.propose(b"a")
    rd = node.ready()
    node.propose(b"b")  # while "a" is being persisted
    node.advance(rd)
    rd2 = node.ready()
    assert [e.data for e in rd.entries] == [b"a"]
    assert [e.data for e in rd2.entries] == [b"b"]
    assert [e.data for e in rd2.committed_entries] == [b"a"]


def test_soft_and_hard_state_are_emitted_only_on_change() -> None:
    """Figure 2: currentTerm and votedFor (and our commit index) are persisted when they
    change; the role/leader change is reported once."""
    node = make_node(1, (1,))
    node.campaign()
    rd = drain(node)
    assert rd.hard_state == HardState(term=1, vote=1, commit=0)
    assert rd.soft_state == SoftState(0, Role.CANDIDATE)
    rd = drain(node)
    assert rd.soft_state == SoftState(1, Role.LEADER)
    assert rd.hard_state is None  # term/vote unchanged, nothing committed yet
    rd = drain(node)
    assert rd.soft_state is None
    assert rd.hard_state == HardState(term=1, vote=1, commit=1)
    assert not node.has_ready()


def test_propose_on_a_follower_raises_not_leader_with_the_leader_hint() -> None:
    net = Network.create(3)
    net.elect(3)
    with pytest.raises(NotLeader) as info:
        net.nodes[1].propose(b"x")
    assert info.value.leader_id == 3


@pytest.mark.parametrize(
    "msg",
    [
        Heartbeat(src=2, dst=9, term=7, commit=0),  # not for us
        # (a message from a non-member is processed: thesis §4.1, tests/core/test_joint.py)
        Heartbeat(src=1, dst=1, term=7, commit=0),  # from ourselves
        AppendEntries(src=2, dst=1, term=0, prev_index=5, prev_term=5, entries=(), commit=9),
        AppendEntriesResponse(src=2, dst=1, term=3, success=True, index=99),
        HeartbeatResponse(src=2, dst=1, term=3, context=99),
        TimeoutNow(src=2, dst=1, term=2),
        AppendEntries(  # indexes do not follow prev_index
            src=2,
            dst=1,
            term=3,
            prev_index=0,
            prev_term=0,
            entries=tuple(ents(1, start=5)),
            commit=0,
        ),
        AppendEntries(  # entry from a future term
            src=2, dst=1, term=3, prev_index=0, prev_term=0, entries=tuple(ents(4)), commit=0
        ),
    ],
)
def test_odd_or_stale_messages_are_dropped_without_raising(msg: Message) -> None:
    """§5.1: stale-term requests are rejected; responses we did not ask for and malformed
    messages are ignored."""
    node = make_node(1, (1, 2, 3), hard_state=HardState(term=3))
    node.step(msg)
    assert node.status.term == 3
    assert node.status.role is Role.FOLLOWER
    assert node.status.last_index == 0


def test_leader_ignores_acks_beyond_its_log() -> None:
    net = Network.create(3)
    net.elect(1)
    net.nodes[1].step(AppendEntriesResponse(src=2, dst=1, term=1, success=True, index=50))
    net.nodes[1].step(AppendEntriesResponse(src=3, dst=1, term=1, success=True, index=50))
    assert net.nodes[1].status.commit == 1
    net.nodes[1].propose(b"a")
    net.stabilize()
    assert net.applied_data(2) == [b"a"]


def test_stale_append_gets_our_term_in_reply() -> None:
    """§5.1: a request with a stale term is rejected, and the reply carries our term."""
    node = make_node(1, (1, 2, 3), hard_state=HardState(term=3))
    node.step(AppendEntries(src=2, dst=1, term=2, prev_index=0, prev_term=0, entries=(), commit=0))
    rd = node.ready()
    assert [(type(m), m.term) for m in rd.persisted_messages] == [(AppendEntriesResponse, 3)]


def test_truncation_while_persisting_is_not_counted_durable() -> None:
    """§5.3 + Figure 2: a follower acknowledges only entries that are durable. If a new
    leader truncates entries that the shell is still persisting, the replacement entries
    are handed out again and the acknowledgement waits for them."""
    node = _follower_given(ents(1, 1, start=2))
    rd = node.ready()
    assert [e.index for e in rd.entries] == [2, 3]
    node.step(
        AppendEntries(
            src=2,
            dst=3,
            term=2,
            prev_index=1,
            prev_term=1,
            entries=tuple(ents(2, start=2)),
            commit=1,
        )
    )
    node.advance(rd)  # the old entries 2..3 are now durable, but 2 was replaced
    rd2 = node.ready()
    assert [(e.index, e.term) for e in rd2.entries] == [(2, 2)]
    acks = [m for m in rd2.persisted_messages if isinstance(m, AppendEntriesResponse)]
    assert [(m.dst, m.index) for m in acks] == [(2, 2)]


@pytest.mark.parametrize(
    ("hard_state", "entries", "applied", "words"),
    [
        (HardState(term=1, commit=3), ents(1, 1), 0, "commit"),
        (HardState(term=1), ents(1, 1, start=2), 0, "index 1"),
        (HardState(term=1), ents(1), 2, "applied"),
    ],
)
def test_inconsistent_stored_state_raises_storage_error(
    hard_state: HardState, entries: list[Entry], applied: int, words: str
) -> None:
    with pytest.raises(StorageError, match=words):
        make_node(1, (1,), hard_state=hard_state, entries=entries, applied=applied)


def test_restart_keeps_term_vote_and_log() -> None:
    """Figure 2: currentTerm, votedFor and log[] survive a restart."""
    net = Network.create(3)
    net.elect(2)
    net.nodes[2].propose(b"a")
    net.stabilize()
    for i in net.ids:
        net.restart(i)
        st = net.nodes[i].status
        assert (st.term, st.commit, st.last_index) == (1, 2, 2)
    assert net.storage[1].hard_state.vote == 2
    assert net.role(1) is Role.FOLLOWER


def _trace(seed: int) -> list[Message]:
    net = Network.create(5, seed=seed)
    leader = net.tick_until_leader()
    for i in range(5):
        net.nodes[leader].propose(bytes([i]))
        net.tick_all(1)
    net.down.add(leader)
    net.tick_until_leader(exclude=[leader])
    return net.delivered


def test_runs_are_deterministic_given_the_seed() -> None:
    """ARCHITECTURE principle 1: same inputs and rng seed, same outputs."""
    assert _trace(7) == _trace(7)
    assert any(_trace(s) != _trace(7) for s in (1, 2, 3))


def test_non_voter_never_campaigns() -> None:
    node = RawNode(
        CoreConfig(node_id=4, voters=(1, 2, 3)),
        hard_state=HardState(),
        entries=[],
        applied=0,
        rng=random.Random(0),
    )
    for _ in range(100):
        node.tick()
    node.campaign()
    assert node.status.role is Role.FOLLOWER
    assert not any(isinstance(m, RequestVote) for m in node.ready().messages)


# --- unsynced leader writes: advance(synced=False) + synced() ----------------------------


def _leader_with_unsynced_entry() -> tuple[RawNode, int]:
    """Node 1 leads three voters and has written entry 2 without syncing it."""
    net = Network.create(3)
    net.elect(1)
    leader = net.nodes[1]
    term = leader.status.term
    leader.propose(b"a")
    rd = leader.ready()
    assert [e.index for e in rd.entries] == [2]
    leader.advance(rd, synced=False)
    return leader, term


def _ack(leader: RawNode, src: int, term: int, index: int) -> None:
    leader.step(AppendEntriesResponse(src=src, dst=1, term=term, success=True, index=index))


def test_an_unsynced_leader_entry_commits_on_two_followers_and_is_applied() -> None:
    """Thesis §10.2.1: two durable followers are a quorum of three without the leader's
    own copy; the entry is then applied although the leader has not synced it (written is
    enough), and the leader's own match moves only with ``synced``."""
    leader, term = _leader_with_unsynced_entry()
    assert leader.unsynced() == (2, term)
    assert leader.durable_index == 1
    _ack(leader, 2, term, 2)
    assert leader.commit == 1  # the leader's unsynced copy does not count
    _ack(leader, 3, term, 2)
    assert leader.commit == 2
    rd = leader.ready()
    assert [e.data for e in rd.committed_entries] == [b"a"]
    leader.advance(rd, synced=False)  # (a synced advance would cover every earlier write)
    assert leader.progress()[1] == 1
    leader.synced(2, term)
    assert leader.progress()[1] == 2 and leader.unsynced() is None


def test_an_unsynced_leader_entry_counts_once_synced() -> None:
    leader, term = _leader_with_unsynced_entry()
    _ack(leader, 2, term, 2)
    assert leader.commit == 1
    leader.synced(2, term)
    assert leader.commit == 2 and leader.durable_index == 2


def test_a_sync_of_a_replaced_entry_counts_for_nothing() -> None:
    """The leader loses its term while entry 2 is unsynced; the new leader's entry 2
    replaces it. The old sync, reported late, must not make the replacement durable."""
    leader, term = _leader_with_unsynced_entry()
    leader.step(
        AppendEntries(
            src=2,
            dst=1,
            term=term + 1,
            prev_index=1,
            prev_term=term,
            entries=(Entry(term + 1, 2, EntryKind.NORMAL, b"b"),),
            commit=1,
        )
    )
    rd = leader.ready()
    assert [(e.index, e.term) for e in rd.entries] == [(2, term + 1)]
    leader.synced(2, term)  # late: the sync of the replaced entry
    assert leader.durable_index == 1
    leader.advance(rd)  # written and synced: the follower's Ready
    assert leader.durable_index == 2


@pytest.mark.parametrize("why", ["vote", "ack"])
def test_advance_unsynced_is_refused_when_messages_wait_for_the_sync(why: str) -> None:
    if why == "vote":
        node = make_node(1, (1, 2, 3), pre_vote=False)
        node.campaign()  # a new term and a self vote: must be durable before the requests
    else:
        node = _follower_given(ents(1, start=2))  # its ack must wait for the sync
    rd = node.ready()
    with pytest.raises(RuntimeError, match="synced=False"):
        node.advance(rd, synced=False)


def test_an_apply_only_ready_leaves_new_entries_and_state_for_the_next_one() -> None:
    """While its sync runs, a leader applies what the followers committed (apply_only)
    but holds its next batch: new entries and the commit index wait for a full Ready."""
    leader, term = _leader_with_unsynced_entry()
    leader.propose(b"b")  # the next batch, held
    assert not leader.has_ready(apply_only=True)
    _ack(leader, 2, term, 2)
    _ack(leader, 3, term, 2)
    assert leader.has_ready(apply_only=True)
    rd = leader.ready(apply_only=True)
    assert [e.data for e in rd.committed_entries] == [b"a"]
    assert rd.entries == () and rd.hard_state is None and rd.persisted_messages == ()
    # (the acks may have sent "b" on already: a leader may replicate before it writes)
    leader.advance(rd, synced=False)
    assert leader.status.applied == 2
    full = leader.ready()
    assert [e.data for e in full.entries] == [b"b"] and full.hard_state is not None


def _follower_given(entries: list[Entry]) -> RawNode:
    """Node 3 of three, holding 1/1, given ``entries`` after it by leader 1 in term 1."""
    node = make_node(3, (1, 2, 3), hard_state=HardState(term=1), entries=ents(1))
    node.step(
        AppendEntries(
            src=1, dst=3, term=1, prev_index=1, prev_term=1, entries=tuple(entries), commit=1
        )
    )
    return node
