"""Log compaction and InstallSnapshot in the core (Raft §7), metadata only.

The shell's side (building, streaming, installing files) is in tests/snapshots; here a
``SnapNetwork`` plays it instantly.
"""

from __future__ import annotations

import random

import pytest

from trioraft.core import CoreConfig, CoreInvariantError, RawNode, Role, replication
from trioraft.core.progress import ProgressState
from trioraft.core.types import SnapshotNeeded
from wire.errors import StorageError
from wire.messages import (
    AppendEntries,
    AppendEntriesResponse,
    HardState,
    Heartbeat,
    InstallSnapshot,
    SnapshotMeta,
)

from .helpers import drain, ents, make_node
from .snapshot_net import SnapNetwork


def cluster_with_lagging_follower(entries: int = 10) -> SnapNetwork:
    """Node 1 leads; node 3 is down while ``entries`` commit; node 1 snapshots and compacts
    everything it applied."""
    net = SnapNetwork.build(3)
    net.elect(1)
    net.down.add(3)
    net.propose(1, *(b"v%d" % i for i in range(entries)))
    net.take_snapshot(1)
    return net


def test_compaction_drops_applied_entries_from_memory() -> None:
    """§7: a server replaces the entries its snapshot covers; the log keeps working from
    the snapshot's last included index and term."""
    net = SnapNetwork.build(1)
    net.elect(1)
    net.propose(1, b"a", b"b", b"c")
    node = net.nodes[1]
    last = node.status.last_index
    meta = net.take_snapshot(1)
    assert meta.index == last
    assert node.log_start == (last, meta.term)
    assert node._raft.log.slice(1, last + 1) == ()  # nothing left in memory
    net.propose(1, b"d")
    assert net.store(1).state == [b"a", b"b", b"c", b"d"]
    assert node.status.commit == last + 1


def test_compaction_hands_the_dropped_entries_back_for_the_shell_to_free() -> None:
    """The core does not free the entries it drops (a pause for ~100,000 of them): it returns
    what held them (applied entries are kept packed, see ``RaftLog``), one item an entry, and
    a second compaction to the same index returns nothing."""
    net = SnapNetwork.build(1)
    net.elect(1)
    net.propose(1, b"a", b"b", b"c", b"d")
    node = net.nodes[1]
    last = node.status.last_index
    kept = node._raft.log.slice(1, last + 1)
    dropped = node.compact(last - 1)
    assert len(dropped) == last - 1
    assert node._raft.log.first_index == last
    assert node._raft.log.slice(1, last + 1) == kept[-1:]
    assert node.compact(last - 1) == []


def test_compaction_beyond_applied_is_refused() -> None:
    """§7: a snapshot covers only committed, applied state."""
    node = make_node(1, (1,))
    node.campaign()
    drain(node)
    node.propose(b"x")
    rd = node.ready()  # the entry is handed out, not yet durable nor applied
    with pytest.raises(CoreInvariantError):
        node.compact(rd.entries[-1].index)
    node.advance(rd)


def test_leader_asks_for_a_snapshot_when_the_follower_needs_compacted_entries() -> None:
    """§7: "the leader must occasionally send snapshots to followers that lag behind":
    the follower's progress enters SNAPSHOT, the shell gets one SnapshotNeeded, and no
    AppendEntries go to that follower meanwhile (heartbeats still do)."""
    net = cluster_with_lagging_follower()
    leader = net.nodes[1]
    start, _ = leader.log_start
    net.down.discard(3)
    net.tick_all(2)  # heartbeats reach 3; its response makes the leader probe it
    assert net.requests == [SnapshotNeeded(to=3, index=start, term=leader.status.term)]
    pr = leader._raft.prs[3]
    assert pr.state is ProgressState.SNAPSHOT and pr.pending_snapshot == start
    appends_before = len(net.sent(AppendEntries, dst=3))
    heartbeats_before = len(net.sent(Heartbeat, dst=3))
    net.tick_all(3)
    assert len(net.sent(AppendEntries, dst=3)) == appends_before
    assert len(net.sent(Heartbeat, dst=3)) > heartbeats_before
    assert len(net.requests) == 1  # asked once per episode


def test_follower_installs_the_snapshot_and_catches_up() -> None:
    """§7 InstallSnapshot receiver: discard the entire log, reset the state machine from
    the snapshot; the leader then replicates the entries after it as usual."""
    net = cluster_with_lagging_follower()
    net.down.discard(3)
    net.tick_all(2)
    assert net.deliver_snapshots() == 1
    net.stabilize()
    snap_meta = net.store(1).snapshot
    assert snap_meta is not None
    assert net.installs[3] == [snap_meta[0]]
    net.propose(1, b"after")
    assert net.store(3).state == net.store(1).state
    assert net.nodes[3].status.commit == net.nodes[1].status.commit
    assert net.nodes[1]._raft.prs[3].state is ProgressState.REPLICATE
    assert net.nodes[3].log_start == (snap_meta[0].index, snap_meta[0].term)


def test_installed_snapshot_answers_like_an_append() -> None:
    """The follower's core answers InstallSnapshot with an AppendEntriesResponse for the
    snapshot index, released only after the persist (the shell installs the data first)."""
    node = make_node(2, (1, 2, 3))
    meta = SnapshotMeta(index=50, term=3, voters=(1, 2, 3))
    node.step(InstallSnapshot(src=1, dst=2, term=3, snapshot=meta))
    rd = node.ready()
    assert rd.snapshot == meta
    assert rd.messages == ()
    assert rd.persisted_messages == (
        AppendEntriesResponse(src=2, dst=1, term=3, success=True, index=50),
    )
    assert rd.committed_entries == ()
    node.advance(rd)
    st = node.status
    assert (st.commit, st.applied, st.last_index, st.term, st.leader_id) == (50, 50, 50, 3, 1)
    # appends continue from the snapshot's last included entry
    node.step(
        AppendEntries(
            src=1,
            dst=2,
            term=3,
            prev_index=50,
            prev_term=3,
            entries=tuple(ents(3, start=51)),
            commit=51,
        )
    )
    rd = node.ready()
    assert [e.index for e in rd.entries] == [51]
    node.advance(rd)
    assert [e.index for e in drain(node).committed_entries] == [51]


def test_snapshot_matching_the_log_keeps_the_following_entries() -> None:
    """§7: "If existing log entry has same index and term as snapshot's last included
    entry, retain log entries following it and reply": only the commit index moves."""
    node = make_node(2, (1, 2, 3), hard_state=HardState(term=2), entries=ents(1, 1, 2, 2, 2))
    node.step(InstallSnapshot(src=1, dst=2, term=2, snapshot=SnapshotMeta(3, 2, (1, 2, 3))))
    rd = node.ready()
    assert rd.snapshot is None
    assert node.status.last_index == 5 and node.status.commit == 3
    assert [e.index for e in rd.committed_entries] == [1, 2, 3]
    node.advance(rd)


def test_stale_snapshot_is_answered_with_the_commit_index() -> None:
    """A snapshot at or below the commit index tells nothing new; nothing is discarded."""
    node = make_node(
        2, (1, 2, 3), hard_state=HardState(term=2, commit=4), entries=ents(1, 1, 2, 2, 2)
    )
    node.step(InstallSnapshot(src=1, dst=2, term=2, snapshot=SnapshotMeta(3, 9, (1, 2, 3))))
    rd = node.ready()
    assert rd.snapshot is None
    assert rd.persisted_messages[-1] == AppendEntriesResponse(2, 1, 2, True, 4)
    assert node.status.last_index == 5
    node.advance(rd)


def test_conflicting_log_is_discarded_by_the_snapshot() -> None:
    """§7: a snapshot whose last entry the log lacks (or holds with another term)
    replaces the whole log, the uncommitted conflicting suffix included."""
    node = make_node(2, (1, 2, 3), hard_state=HardState(term=2, commit=1), entries=ents(1, 2, 2, 2))
    node.step(InstallSnapshot(src=1, dst=2, term=3, snapshot=SnapshotMeta(3, 3, (1, 2, 3))))
    rd = node.ready()
    assert rd.snapshot == SnapshotMeta(3, 3, (1, 2, 3))
    assert rd.hard_state == HardState(term=3, vote=0, commit=3)
    node.advance(rd)
    assert node.status.last_index == 3 and node.log_start == (3, 3)


def test_snapshot_from_a_stale_term_is_ignored() -> None:
    """§5.1: requests from a stale term are rejected, InstallSnapshot included."""
    node = make_node(2, (1, 2, 3), hard_state=HardState(term=5))
    node.step(InstallSnapshot(src=1, dst=2, term=4, snapshot=SnapshotMeta(9, 4, (1, 2, 3))))
    assert node.status.commit == 0 and node.status.term == 5
    assert not node.has_ready()


def test_candidate_steps_down_for_a_snapshot_of_its_term() -> None:
    """§5.2: a candidate that hears from a leader of its term becomes its follower."""
    node = make_node(2, (1, 2, 3), pre_vote=False)
    node.campaign()
    drain(node)
    assert node.status.role is Role.CANDIDATE
    term = node.status.term
    node.step(InstallSnapshot(src=1, dst=2, term=term, snapshot=SnapshotMeta(7, term, (1, 2, 3))))
    assert node.status.role is Role.FOLLOWER and node.status.leader_id == 1
    assert node.ready().snapshot == SnapshotMeta(7, term, (1, 2, 3))


def test_failed_transfer_is_asked_for_again() -> None:
    """A failed stream (reported by the shell) puts the follower back to PROBE; the probe
    finds the entries still compacted and asks for a snapshot again."""
    net = cluster_with_lagging_follower()
    net.down.discard(3)
    net.tick_all(2)
    assert net.deliver_snapshots(ok=False) == 1
    assert net.nodes[1]._raft.prs[3].state is ProgressState.PROBE
    net.tick_all(2)
    assert len(net.requests) == 1
    net.deliver_snapshots()
    net.stabilize()
    assert net.store(3).state == net.store(1).state


def test_no_snapshot_for_an_inactive_follower() -> None:
    """A follower not heard from since the last check-quorum round gets no snapshot: it
    is probably down, and a transfer would be wasted (etcd's RecentActive rule)."""
    net = cluster_with_lagging_follower()
    leader = net.nodes[1]
    net.tick_all(net.config(1).election_ticks + 1)  # a check-quorum round without node 3
    assert not leader._raft.prs[3].recent_active
    replication.send_append(leader._raft, 3)
    assert net.requests == []


def test_snapshot_while_an_older_ready_is_persisting() -> None:
    """The shell may step InstallSnapshot while a Ready is still persisting; advancing that
    older Ready must not move the applied index back below the snapshot."""
    node = make_node(2, (1, 2, 3), hard_state=HardState(term=1), entries=ents(1, 1))
    node.step(
        AppendEntries(
            src=1,
            dst=2,
            term=1,
            prev_index=2,
            prev_term=1,
            entries=tuple(ents(1, start=3)),
            commit=3,
        )
    )
    old = node.ready()
    assert [e.index for e in old.committed_entries] == [1, 2]
    node.step(InstallSnapshot(src=1, dst=2, term=1, snapshot=SnapshotMeta(10, 1, (1, 2, 3))))
    node.advance(old)
    assert node.status.applied == 10
    rd = node.ready()
    assert rd.snapshot == SnapshotMeta(10, 1, (1, 2, 3))
    node.advance(rd)


def test_restart_from_snapshot_and_log_tail() -> None:
    """A restarted node starts from its stored snapshot and the entries after it; the
    election restriction (§5.4.1) uses the snapshot's term when no entry follows it."""
    net = SnapNetwork.build(3)
    net.elect(1)
    net.propose(1, b"a", b"b")
    net.take_snapshot(2)
    net.propose(1, b"c")
    net.restart(2)
    node2 = net.nodes[2]
    start = net.store(2).start
    assert start is not None and node2.log_start == (start.index, start.term)
    assert node2.status.last_index == net.nodes[1].status.last_index
    net.propose(1, b"d")
    assert net.store(2).state == [b"a", b"b", b"c", b"d"]
    # a node whose log is only the snapshot compares by the snapshot's term
    alone = RawNode(
        CoreConfig(node_id=3, voters=(1, 2, 3)),
        hard_state=HardState(term=2),
        entries=[],
        applied=5,
        rng=random.Random(0),
        snapshot=SnapshotMeta(5, 2, (1, 2, 3)),
    )
    assert alone.status.last_index == 5
    assert alone._raft.log.is_up_to_date(5, 2) and not alone._raft.log.is_up_to_date(5, 1)


def test_restart_refuses_a_log_that_does_not_follow_the_snapshot() -> None:
    with pytest.raises(StorageError, match="must start at index 6"):
        RawNode(
            CoreConfig(node_id=1, voters=(1,)),
            hard_state=HardState(term=1),
            entries=ents(1, start=8),
            applied=5,
            rng=random.Random(0),
            snapshot=SnapshotMeta(5, 1, (1,)),
        )
    with pytest.raises(StorageError, match="applied index 3 outside"):
        RawNode(
            CoreConfig(node_id=1, voters=(1,)),
            hard_state=HardState(term=1),
            entries=[],
            applied=3,
            rng=random.Random(0),
            snapshot=SnapshotMeta(5, 1, (1,)),
        )


def test_snapshots_keep_all_logs_and_state_machines_equal_under_churn() -> None:
    """Compaction at random points on every node, a follower repeatedly down, restarts:
    every node ends with the same state machine (§5.4.3 State Machine Safety)."""
    rng = random.Random(7)
    net = SnapNetwork.build(3)
    net.elect(1)
    for round_ in range(30):
        victim = rng.choice([2, 3])
        lagging = rng.random() < 0.4
        if lagging:
            net.down.add(victim)
        net.propose(1, *(b"r%d-%d" % (round_, k) for k in range(rng.randrange(1, 5))))
        for i in net.ids:
            if i not in net.down and (rng.random() < 0.3 or (lagging and i == 1)):
                net.take_snapshot(i, keep=rng.randrange(0, 3))
        if rng.random() < 0.2:
            net.restart(victim)
        net.down.clear()
        net.tick_all(2)
        net.deliver_snapshots()
        net.stabilize()
    net.tick_all(2)
    net.deliver_snapshots()
    net.stabilize()
    assert net.store(2).state == net.store(1).state == net.store(3).state
    assert sum(len(v) for v in net.installs.values()) > 0
