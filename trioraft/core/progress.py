"""What a leader knows about one follower's log, and the flow control built on it.

A follower is in one of three states (the shape of etcd-io/raft's tracker):

- ``PROBE``: the leader does not know where the logs match. It sends one AppendEntries
  and waits for the answer (or the next heartbeat response) before sending another.
- ``REPLICATE``: the logs match up to ``match``. The leader streams entries optimistically,
  moving ``next`` past what it sent, up to ``max_inflight`` unacknowledged messages.
- ``SNAPSHOT``: the entries the follower needs are compacted away (§7). The leader asked
  the shell to stream a snapshot of at least ``pending_snapshot`` and sends no entries
  until the follower acknowledges an index >= ``pending_snapshot`` or the shell reports
  the transfer (``trioraft.core.snapshot``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import IntEnum


class ProgressState(IntEnum):
    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2


class Inflights:
    """The last indexes of the AppendEntries sent in REPLICATE and not acknowledged yet.

    Invariant: indexes strictly increase from oldest to newest; ``count <= capacity``.
    """

    __slots__ = ("_last_indexes", "capacity")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"inflight capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._last_indexes: deque[int] = deque()

    @property
    def count(self) -> int:
        return len(self._last_indexes)

    def full(self) -> bool:
        return len(self._last_indexes) >= self.capacity

    def add(self, last_index: int) -> None:
        """Record a message whose entries end at ``last_index``."""
        if self.full():
            raise OverflowError("inflight window is full")
        if self._last_indexes and last_index <= self._last_indexes[-1]:
            raise ValueError(f"inflight index {last_index} does not increase")
        self._last_indexes.append(last_index)

    def free_le(self, index: int) -> None:
        """Forget every message acknowledged by a success response for ``index``."""
        while self._last_indexes and self._last_indexes[0] <= index:
            self._last_indexes.popleft()

    def free_first_one(self) -> None:
        """Make room for one message (used when a heartbeat shows the follower is alive)."""
        if self._last_indexes:
            self._last_indexes.popleft()

    def reset(self) -> None:
        self._last_indexes.clear()


@dataclass(slots=True)
class Progress:
    """Mutable per-follower replication state, owned by the leader.

    Invariants: ``0 <= match < next``; in REPLICATE every inflight index is >= ``next`` - 1
    at the time it was sent and < ``next``.
    """

    match: int  # highest index known to be replicated (durably) on the follower
    next: int  # index of the next entry to send
    inflights: Inflights
    state: ProgressState = ProgressState.PROBE
    probe_sent: bool = False  # PROBE only: a probe is outstanding, send nothing more
    recent_active: bool = False  # heard from since the last check-quorum round
    # Highest commit index an AppendEntries told the follower for entries it then had:
    # min(commit, last index of the message). Lets the leader skip redundant commit-only
    # messages and send one when the follower may lag.
    commit_sent: int = 0
    # SNAPSHOT only: the follower needs a snapshot covering at least this index.
    pending_snapshot: int = 0

    def become_probe(self) -> None:
        if self.state is ProgressState.SNAPSHOT:
            # Probe just past the snapshot: if it was installed the probe matches at once;
            # if not, the rejection walks back to the compacted log and asks again.
            self.next = max(self.match + 1, self.pending_snapshot + 1)
        else:
            self.next = self.match + 1
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.pending_snapshot = 0
        self.inflights.reset()

    def become_snapshot(self, index: int) -> None:
        """The follower needs entries the log no longer has: wait for a snapshot >= index."""
        self.state = ProgressState.SNAPSHOT
        self.probe_sent = False
        self.pending_snapshot = index
        self.inflights.reset()

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.probe_sent = False
        self.pending_snapshot = 0
        self.next = self.match + 1
        self.inflights.reset()

    def is_paused(self) -> bool:
        """Whether flow control forbids sending another AppendEntries now."""
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return self.inflights.full()
        return True

    def sent_entries(self, first_index: int, count: int) -> None:
        """Account for an AppendEntries carrying ``count`` entries from ``first_index``."""
        if self.state is ProgressState.REPLICATE:
            if count:
                last = first_index + count - 1
                self.next = last + 1
                self.inflights.add(last)
        elif self.state is ProgressState.PROBE:
            self.probe_sent = True

    def maybe_update(self, index: int) -> bool:
        """A success response for ``index`` arrived; False if it tells nothing new."""
        if index <= self.match:
            return False
        self.match = index
        self.next = max(self.next, index + 1)
        self.probe_sent = False
        return True

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """A rejection of ``prev_index == rejected`` arrived; move ``next`` back.

        ``match_hint`` is the highest index that may match (from the follower's hint,
        fast backtracking §5.3). Returns False for a stale rejection, changing nothing.
        """
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False  # stale: we already know the logs match beyond it
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False  # stale: not the answer to the probe we are waiting for
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.probe_sent = False
        return True
