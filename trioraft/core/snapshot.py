"""Snapshots in the core (Raft §7): compaction, asking for a transfer, installing one.

Only metadata passes through here; the shell builds, streams and installs snapshot data off
the raft loop (docs/snapshots.md). The flow, in the style of etcd-io/raft:

- **Compaction.** After the shell wrote a snapshot of applied index ``i``, it calls
  ``RawNode.compact(j)`` with ``j <= i`` (it may keep a tail for slow followers): entries up
  to ``j`` leave memory, and ``j``/``term(j)`` become the log's start.
- **Leader.** When a follower's ``next`` entry is compacted away
  (``replication.send_append`` finds no term for ``prev``), its progress enters
  ``SNAPSHOT`` and the next ``Ready`` carries a ``SnapshotNeeded(to, index)``. The
  follower gets no entries meanwhile; heartbeats go on.
  The state ends when the follower acknowledges an index >= the pending one (its core
  answers the installed snapshot like an append) or when the shell reports the transfer
  (``report_snapshot``): ``ok`` or not, the follower goes back to ``PROBE`` and the normal
  probe either finds the snapshot installed or walks back and asks again.
  Inactive followers (nothing heard since the last check-quorum round) get no snapshot.
- **Follower.** The shell steps an ``InstallSnapshot`` once the whole file arrived and
  checked out. At or below the commit index it is stale: answered with the commit index.
  If the log already holds the snapshot's last entry (same term, §7: "retain log entries
  following it") only the commit index moves. Otherwise the log is replaced: empty from
  ``index + 1``, committed and applied up to ``index``, the snapshot's configuration in
  force (when it names one: ``SnapshotMeta.membership``), and ``Ready.snapshot`` tells the
  shell to install the data before the success answer leaves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trioraft.core import membership as conf
from trioraft.core.confstate import decode_membership
from trioraft.core.progress import ProgressState
from trioraft.core.types import CoreInvariantError, Role, SnapshotNeeded
from wire.messages import InstallSnapshot, SnapshotMeta

if TYPE_CHECKING:
    from trioraft.core.raft import Raft


class SnapshotTracker:
    """The core's snapshot outputs waiting for the next ``Ready``."""

    __slots__ = ("requests", "restored")

    def __init__(self) -> None:
        self.requests: list[SnapshotNeeded] = []  # leader: transfers to start
        self.restored: SnapshotMeta | None = None  # follower: snapshot to install

    def pending(self) -> bool:
        return bool(self.requests) or self.restored is not None

    def take(self) -> tuple[SnapshotMeta | None, tuple[SnapshotNeeded, ...]]:
        restored, requests = self.restored, tuple(self.requests)
        self.restored, self.requests = None, []
        return restored, requests


def request_snapshot(raft: Raft, to: int) -> bool:
    """Leader: ``to`` needs compacted entries. Ask the shell for a transfer (once per
    SNAPSHOT episode); True if asked now."""
    pr = raft.prs[to]
    if pr.state is ProgressState.SNAPSHOT or not pr.recent_active:
        return False
    index = raft.log.first_index - 1
    pr.become_snapshot(index)
    raft.snapshots.requests.append(SnapshotNeeded(to=to, index=index, term=raft.term))
    return True


def report_snapshot(raft: Raft, peer: int, ok: bool) -> None:
    """Leader: the shell's transfer to ``peer`` ended. Either way, probe again: a probe
    just past the snapshot matches if it was installed, else it leads back here."""
    if raft.role is not Role.LEADER:
        return
    pr = raft.prs.get(peer)
    if pr is None or pr.state is not ProgressState.SNAPSHOT:
        return
    if not ok:
        pr.pending_snapshot = 0  # nothing is known to be installed: probe from match
    pr.become_probe()


def snapshot_acknowledged(raft: Raft, peer: int) -> None:
    """Leader: ``peer``'s match moved; leave SNAPSHOT once the snapshot is covered."""
    pr = raft.prs[peer]
    if pr.state is ProgressState.SNAPSHOT and pr.match >= pr.pending_snapshot:
        pr.become_probe()


def handle_install(raft: Raft, m: InstallSnapshot) -> None:
    """Follower: the leader's snapshot ``m.snapshot`` arrived whole (see the module doc)."""
    log = raft.log
    meta = m.snapshot
    if meta.index <= log.committed:
        raft._respond_append(m.src, success=True, index=log.committed)
        return
    if log.match_term(meta.index, meta.term):
        log.commit_to(meta.index)  # we hold that entry: keep the log, move the commit
        raft._respond_append(m.src, success=True, index=meta.index)
        return
    try:
        membership = decode_membership(meta.membership) if meta.membership else None
    except ValueError:
        return  # no correct leader sends this; the transfer will be retried
    log.restore(meta.index, meta.term)
    if membership is not None:
        conf.restore(raft, meta.index, membership)
    raft.snapshots.restored = meta
    raft._respond_append(m.src, success=True, index=meta.index)


def compact(raft: Raft, index: int) -> list[object]:
    """Drop log entries up to ``index`` (<= applied) and return them; see
    ``RaftLog.compact_to``."""
    if index > raft.log.last_index:
        raise CoreInvariantError(f"compact({index}) beyond the last index {raft.log.last_index}")
    return raft.log.compact_to(index)
