"""Wall-clock bookkeeping for lease reads (Raft thesis §6.4.1), kept by the shell.

The core's ``RawNode.lease_valid()`` counts in ticks, and a stalled event loop ticks late,
so ticks can under-count real time. This tracker measures the lease in real (monotonic)
time from the same heartbeat rounds: it notes when each round's heartbeats were handed to
the transport (no follower can have received them earlier) and which rounds each voter
acknowledged; the lease runs from the send time of the newest round a quorum acknowledged,
for ``lease_seconds``. A lease read needs both this and the core's ``lease_valid()``.

Why this is safe: a follower that acknowledges a round refuses votes until an election
timeout of its own ticks has passed since it received the round, at least
``(election_ticks - 1.5) * tick`` of real time with the node's tick cadence. The lease is
``election_ticks * tick - lease_drift_ms``, and the configuration refuses a drift margin
under two ticks plus 5% of the election timeout (clocks may run at rates up to ~5% apart).
A restarted node forgets that it acknowledged a round: the core keeps the promise across
restarts by ignoring (pre-)votes for its first election timeout (``RawNode(fresh_start=...)``,
thesis §6.4.1), which lease reads depend on.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

from wire.messages import Heartbeat, HeartbeatResponse, Message


class LeaseTracker:
    def __init__(self, node_id: int, voters: Iterable[int], lease_seconds: float) -> None:
        self.node_id = node_id
        self.voters = tuple(sorted(voters))
        self.lease_seconds = lease_seconds
        self._halves = [self.voters]  # two while a membership change is joint
        self._term = 0
        self._sent: deque[tuple[int, float]] = deque()  # (round, time sent), increasing
        self._acked: dict[int, int] = {}  # voter -> highest round acknowledged

    def on_sent(self, messages: Sequence[Message], now: float) -> None:
        """Messages handed to the transport at ``now``: note the heartbeat rounds."""
        for m in messages:
            if type(m) is Heartbeat and m.context:
                if m.term != self._term:
                    self._term = m.term
                    self._sent.clear()
                    self._acked = {}
                if not self._sent or self._sent[-1][0] < m.context:
                    self._sent.append((m.context, now))
                    self._acked[self.node_id] = m.context

    def on_response(self, m: HeartbeatResponse) -> None:
        if m.context and m.term == self._term and m.context > self._acked.get(m.src, 0):
            self._acked[m.src] = m.context

    def set_voters(self, voters: Iterable[int], outgoing: Iterable[int] = ()) -> None:
        """The configuration in force changed: its voters, and while joint (thesis §4.3)
        the outgoing ones too; then a quorum of each half must have acknowledged a round."""
        self.voters = tuple(sorted(voters))
        self._halves = [h for h in (self.voters, tuple(sorted(outgoing))) if h]

    def valid_until(self) -> float:
        """Monotonic time until which the lease holds (-inf if it never started)."""
        if self._halves == [(self.node_id,)]:
            return float("inf")  # no other node can be elected
        confirmed = min(self._confirmed(half) for half in self._halves)
        sent = self._sent
        while len(sent) > 1 and sent[1][0] <= confirmed:
            sent.popleft()
        if sent and sent[0][0] == confirmed:
            return sent[0][1] + self.lease_seconds
        return float("-inf")

    def _confirmed(self, voters: tuple[int, ...]) -> int:
        rounds = sorted((self._acked.get(v, 0) for v in voters), reverse=True)
        return rounds[len(voters) // 2]
