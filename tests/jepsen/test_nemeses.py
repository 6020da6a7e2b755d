"""The checks of the ``snapshot`` and ``membership`` nemeses on made-up logs and
memberships (the CI runs in test_jepsen_ci.py exercise them on real nodes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from jepsen.history import UNKNOWN, History
from jepsen.membership import LOST_DEMOTION_S, MembershipNemesis
from jepsen.snapshots import LogTail, SnapshotFaults, Window
from wire import member_messages as mm
from wire.errors import Timeout


class _Cluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.peers = {1: "", 2: "", 3: ""}

    def log_path(self, node_id: int) -> Path:
        return self.root / f"node{node_id}.log"


def _log(cluster: _Cluster, node: int, *lines: str) -> None:
    with cluster.log_path(node).open("a") as f:
        f.writelines(f"2026-01-01 00:00:00,000 INFO trioraft: {line}\n" for line in lines)


def test_log_tail_reads_whole_new_lines_only(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    tail = LogTail(path)
    assert tail.new_lines() == []
    path.write_text("one\ntw")
    assert tail.new_lines() == ["one"]
    with path.open("a") as f:
        f.write("o\nthree\n")
    assert tail.new_lines() == ["two", "three"]


def test_snapshot_check(tmp_path: Path) -> None:
    cluster = _Cluster(tmp_path)
    for n in (1, 2, 3):
        _log(cluster, n, f"node {n} ready")
    faults = SnapshotFaults(cluster)
    _log(cluster, 1, "node 1: snapshot at index 400 (term 2): 1000 bytes in 0.01 s")
    _log(cluster, 1, "node 1: log compacted to index 380")
    _log(cluster, 2, "node 2: installed snapshot 350 (term 2) in 0.01 s")
    _log(cluster, 2, "node 2: log compacted to index 340")  # below: the start stays
    faults._scan()
    assert faults.log_start == {1: 380, 2: 350, 3: 0}
    _log(cluster, 2, "node 2: log compacted to index 480")
    faults._scan()
    assert faults.log_start == {1: 380, 2: 480, 3: 0}
    assert faults.check().valid == UNKNOWN  # no window: nothing exercised

    # a window whose follower compacted-past, then installed a snapshot after the heal
    met = Window(3, "partition", last_index=200, met=True)
    faults.windows.append(met)
    _log(cluster, 3, "node 3: installed snapshot 150 (term 1) in 0.01 s")  # before the heal
    faults.healing(met)
    assert faults.check().valid is False  # nothing after the heal yet
    _log(cluster, 3, "node 3: received snapshot 400 (term 2, 1000 bytes) from node 1")
    _log(cluster, 3, "node 3: installed snapshot 400 (term 2) in 0.02 s")
    check = faults.check()
    assert check.valid is True, check.summary
    # a window that never got the others to compact does not count either way
    faults.windows.append(Window(2, "kill", last_index=900))
    assert faults.check().valid is True


def _membership(index: int, voters: list[int], learners: list[int]) -> mm.ClusterMembership:
    return mm.ClusterMembership(index, voters, [], learners, [], [])


def test_membership_check() -> None:
    nemesis = MembershipNemesis(None, History(), 1, [1, 2, 3])  # type: ignore[arg-type]
    nemesis.seen = [_membership(1, [1, 2, 3], []), _membership(5, [1, 2], [3])]
    check = nemesis.check()
    assert check.valid is False and "not restored" in check.summary
    nemesis.restored = 0.5
    assert nemesis.check().valid is True
    nemesis.seen.append(_membership(9, [1], [2, 3]))  # below a majority of the voters
    assert nemesis.check().valid is False


class _Admin:
    """A cluster whose committed membership stays [1, 2, 3] while its leader, node 1, is
    paused: every change times out (it may land later, as a paused leader's do)."""

    def __init__(self) -> None:
        self.changes: list[int] = []
        self.transfers: list[int] = []

    async def cluster_metadata(self, timeout: float) -> mm.ClusterMetadata:
        m = _membership(7, [1, 2, 3], [])
        return mm.ClusterMetadata(1, 1, 1, "", 2, 7, 7, 7, m, [])

    async def update_cluster_conf(
        self, changes: list[mm.MemberChange], timeout: float
    ) -> mm.ClusterMembership:
        self.changes.append(changes[0].node_id)
        raise Timeout("no answer; the request may have been applied")

    async def transfer_leader(self, target: int, timeout: float) -> mm.TransferLeaderReply:
        self.transfers.append(target)
        raise Timeout("no answer")


async def test_a_demotion_whose_answer_was_lost_blocks_the_next_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Soak seed 7000: 'demote 3' timed out at a paused leader, the nemesis read [1, 2, 3]
    and demoted 2, and the leader, resumed, applied both: one voter left."""
    admin = _Admin()
    nemesis = MembershipNemesis(admin, History(), 1, [1, 2, 3], ("demote-follower",))  # type: ignore[arg-type]
    await nemesis.step()
    assert len(admin.changes) == 1  # the first demotion: its answer is lost
    lost = admin.changes[0]
    assert set(nemesis.lost_demotions) == {lost}
    assert [op.ok for op in nemesis.history.ops] == [UNKNOWN]
    for _ in range(5):
        await nemesis.step()
    assert len(admin.changes) == 1  # no second demotion while the first may still land
    assert len(admin.transfers) == 5
    now = trio.current_time()
    monkeypatch.setattr(trio, "current_time", lambda: now + LOST_DEMOTION_S)
    await nemesis.step()  # long enough: it will not land any more
    assert len(admin.changes) == 2  # the next demotion goes ahead (and is lost in turn)
    assert set(nemesis.lost_demotions) == {admin.changes[1]}
