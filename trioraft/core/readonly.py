"""ReadIndex and lease bookkeeping of one leader term (thesis §6.4, §6.4.1).

Heartbeat *rounds*: every heartbeat broadcast of a leader gets the next round number, sent
as the heartbeat ``context``; a follower echoes it. A voter that acknowledges round ``r``
has accepted this leader after every round ``<= r`` was sent. The quorum-confirmed round is
therefore ``MajorityConfig.committed_index`` over the highest round each voter acked
(the leader acks its own rounds as it sends them).

A read queued while ``last_round == k`` needs a round started after it was queued, so it
waits for round ``k + 1``: every read queued before one broadcast is confirmed by that one
quorum round (batching). With a limit of ``n`` rounds awaiting their quorum at once, round
``k + 1`` waits until fewer than ``n`` do, so more reads share it; a periodic heartbeat is a
round too, and ends the wait if a round is lost. Reads queued before the leader committed
an entry of its own term wait in ``_waiting`` and get the commit index at that moment.

Leases: the send tick of the confirmed round bounds when the quorum last accepted this
leader; followers (with check-quorum) refuse votes for an election timeout after hearing
from it.
"""

from __future__ import annotations

from collections import deque

from trioraft.core.quorum import JointConfig, MajorityConfig
from trioraft.core.types import ReadState
from wire.value import value


@value
class PendingRead:
    context: int
    index: int  # the leader's commit index when the read became eligible
    round: int  # heartbeat round that must be quorum-confirmed first


class ReadOnly:
    __slots__ = ("_acked", "_node_id", "_pending", "_round_ticks", "_waiting", "last_round")

    def __init__(self, node_id: int) -> None:
        self._node_id = node_id
        self._waiting: list[int] = []  # contexts queued before a commit in this term
        self._pending: deque[PendingRead] = deque()  # invariant: rounds non-decreasing
        self.last_round = 0  # the latest round broadcast; rounds start at 1
        self._acked: dict[int, int] = {}  # voter -> highest round it acknowledged
        self._round_ticks: deque[tuple[int, int]] = deque()  # (round, tick sent), increasing

    @property
    def pending_count(self) -> int:
        return len(self._waiting) + len(self._pending)

    def wait_for_commit(self, context: int) -> None:
        """Queue a read until the leader commits an entry of its own term."""
        self._waiting.append(context)

    def take_waiting(self) -> list[int]:
        """The leader committed in its term: hand back the reads queued until then."""
        contexts, self._waiting = self._waiting, []
        return contexts

    def add(self, context: int, index: int) -> None:
        """Queue a read at ``index``; it waits for the next round that is broadcast."""
        self._pending.append(PendingRead(context, index, self.last_round + 1))

    def needs_round(self, voters: MajorityConfig | JointConfig, max_rounds: int) -> bool:
        """Some pending read waits for a round that has not been broadcast yet, and fewer
        than ``max_rounds`` rounds await their quorum (0: no limit)."""
        if not self._pending or self._pending[-1].round <= self.last_round:
            return False
        return not max_rounds or self.last_round - self.confirmed_round(voters) < max_rounds

    def start_round(self, tick: int) -> int:
        """Number the next heartbeat broadcast; the leader acks it itself."""
        self.last_round += 1
        self._acked[self._node_id] = self.last_round
        self._round_ticks.append((self.last_round, tick))
        return self.last_round

    def ack(self, node_id: int, round_: int) -> None:
        """``node_id`` acknowledged heartbeat round ``round_`` (0 or unknown rounds ignored)."""
        if 0 < round_ <= self.last_round and round_ > self._acked.get(node_id, 0):
            self._acked[node_id] = round_

    def confirmed_round(self, voters: MajorityConfig | JointConfig) -> int:
        return voters.committed_index(self._acked)

    def release(self, voters: MajorityConfig | JointConfig) -> list[ReadState]:
        """Pop every pending read whose round a quorum has confirmed, in queue order."""
        confirmed = self.confirmed_round(voters)
        out: list[ReadState] = []
        while self._pending and self._pending[0].round <= confirmed:
            read = self._pending.popleft()
            out.append(ReadState(read.context, read.index))
        return out

    def lease_tick(self, voters: MajorityConfig | JointConfig) -> int | None:
        """Tick at which the quorum-confirmed round was sent; None if unknown or pruned."""
        confirmed = self.confirmed_round(voters)
        while self._round_ticks and self._round_ticks[0][0] < confirmed:
            self._round_ticks.popleft()
        if self._round_ticks and self._round_ticks[0][0] == confirmed:
            return self._round_ticks[0][1]
        return None

    def prune(self, oldest_tick: int) -> None:
        """Forget send ticks of rounds sent before ``oldest_tick`` (too old for a lease)."""
        while self._round_ticks and self._round_ticks[0][1] < oldest_tick:
            self._round_ticks.popleft()
