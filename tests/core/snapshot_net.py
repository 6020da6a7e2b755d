"""A ``Network`` whose shell also takes snapshots, compacts and streams them (instantly).

The state machine of each node is the list of NORMAL payloads it applied; a snapshot is a
copy of that list with its ``SnapshotMeta``. ``deliver_snapshots`` plays the snapshot
stream of docs/snapshots.md in one step: for every ``SnapshotNeeded`` the leader's shell
emitted, the follower's shell steps ``InstallSnapshot`` (built from the leader's newest
snapshot) into its core, and the leader's shell reports the transfer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from trioraft.core import RawNode, Ready
from trioraft.core.types import SnapshotNeeded
from wire.messages import EntryKind, InstallSnapshot, SnapshotMeta

from .helpers import MemStorage, Network


@dataclass
class SnapStorage(MemStorage):
    """Log from ``start.index + 1``; ``start`` is the last compacted entry."""

    start: SnapshotMeta | None = None
    state: list[bytes] = field(default_factory=list)  # the applied NORMAL payloads
    snapshot: tuple[SnapshotMeta, list[bytes]] | None = None  # newest snapshot taken

    @property
    def first(self) -> int:
        return (self.start.index if self.start else 0) + 1

    def persist(self, rd: Ready) -> None:
        # rd.snapshot was installed by SnapNetwork.finish before this
        if rd.entries:
            cut = rd.entries[0].index - self.first
            assert 0 <= cut <= len(self.entries), "gap in persisted log"
            del self.entries[cut:]
            self.entries.extend(rd.entries)
        if rd.hard_state is not None:
            self.hard_state = rd.hard_state


@dataclass
class SnapNetwork(Network):
    requests: list[SnapshotNeeded] = field(default_factory=list)
    installs: dict[int, list[SnapshotMeta]] = field(default_factory=dict)

    @classmethod
    def build(cls, n: int, **overrides: object) -> SnapNetwork:
        net = cls(ids=tuple(range(1, n + 1)), overrides=dict(overrides))
        for i in net.ids:
            net.storage[i] = SnapStorage()
            net.applied[i], net.reads[i], net.readies[i], net.installs[i] = [], [], [], []
            net.start(i)
        return net

    def store(self, node_id: int) -> SnapStorage:
        st = self.storage[node_id]
        assert isinstance(st, SnapStorage)
        return st

    def start(self, node_id: int, *, fresh_start: bool = True) -> None:
        st = self.store(node_id)
        self.nodes[node_id] = RawNode(
            self.config(node_id),
            hard_state=st.hard_state,
            entries=st.entries,
            applied=st.applied,
            rng=random.Random(self.seed * 1_000 + node_id),
            fresh_start=fresh_start,
            snapshot=st.start,
        )

    def begin(self, node_id: int) -> bool:
        if not super().begin(node_id):
            return False
        self.requests.extend(self.pending[node_id].snapshot_requests)
        return True

    def finish(self, node_id: int) -> bool:
        rd = self.pending.get(node_id)
        if rd is None or node_id in self.down:
            return False
        st = self.store(node_id)
        if rd.snapshot is not None:  # install first: data, applied index, log start
            meta, data = self.store(self._sender_of(rd.snapshot)).snapshot or (None, [])
            assert meta is not None and meta.index == rd.snapshot.index
            st.state = list(data)
            st.entries, st.start, st.applied = [], rd.snapshot, rd.snapshot.index
            self.installs[node_id].append(rd.snapshot)
        for e in rd.committed_entries:
            if e.index > st.applied and e.kind is EntryKind.NORMAL:
                st.state.append(e.data)
        return super().finish(node_id)

    def _sender_of(self, meta: SnapshotMeta) -> int:
        for i in self.ids:
            snap = self.store(i).snapshot
            if snap is not None and snap[0] == meta:
                return i
        raise AssertionError(f"nobody holds snapshot {meta}")

    # --- the snapshot task of a shell ---------------------------------------------------

    def take_snapshot(self, node_id: int, *, keep: int = 0) -> SnapshotMeta:
        """Snapshot the applied state, then compact all but ``keep`` entries before it."""
        st = self.store(node_id)
        index = st.applied
        term = self._term(st, index)
        meta = SnapshotMeta(index, term, self.ids)
        st.snapshot = (meta, list(st.state))
        self.compact(node_id, index - keep)
        return meta

    def compact(self, node_id: int, index: int) -> None:
        st = self.store(node_id)
        if index < st.first:
            return
        term = self._term(st, index)
        self.nodes[node_id].compact(index)
        del st.entries[: index - st.first + 1]
        st.start = SnapshotMeta(index, term, self.ids)

    @staticmethod
    def _term(st: SnapStorage, index: int) -> int:
        if st.start is not None and index == st.start.index:
            return st.start.term
        return st.entries[index - st.first].term

    def deliver_snapshots(self, *, ok: bool = True) -> int:
        """Stream every requested snapshot at once (``ok=False``: every transfer fails)."""
        requests, self.requests = self.requests, []
        for req in requests:
            leader = next(i for i in self.ids if self.nodes[i].status.term == req.term)
            snap = self.store(leader).snapshot
            assert snap is not None and snap[0].index >= req.index
            if ok and req.to not in self.down:
                msg = InstallSnapshot(src=leader, dst=req.to, term=req.term, snapshot=snap[0])
                self.nodes[req.to].step(msg)
            self.nodes[leader].report_snapshot(req.to, ok)
        return len(requests)

    def propose(self, leader: int, *payloads: bytes) -> None:
        for p in payloads:
            self.nodes[leader].propose(p)
        self.stabilize()
