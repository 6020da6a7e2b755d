"""Majority arithmetic over a voter set (§5.2 elections, §5.3/§5.4.2 commitment).

Pure functions of a voter set and per-voter numbers. A joint configuration (thesis §4.3)
is two ``MajorityConfig``s whose results combine (``JointConfig``), with the same methods,
so callers need not know whether a membership change is in progress.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum


class VoteResult(IntEnum):
    PENDING = 0  # neither a majority of grants nor of rejections yet
    LOST = 1  # too many rejections: a majority of grants can no longer be reached
    WON = 2  # a majority granted


@dataclass(frozen=True, slots=True)
class MajorityConfig:
    voters: frozenset[int]  # distinct node ids >= 1

    def __len__(self) -> int:
        return len(self.voters)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self.voters

    @property
    def quorum(self) -> int:
        """Size of the smallest majority: ``len // 2 + 1`` (1 for a single voter)."""
        return len(self.voters) // 2 + 1

    def committed_index(self, acked: Mapping[int, int]) -> int:
        """The largest value that a majority of voters has reached (missing voters count 0).

        With ``acked`` = match indexes this is the quorum-replicated index (§5.3); with
        ``acked`` = highest acknowledged heartbeat round it is the confirmed round (§6.4).
        An empty config returns 0.
        """
        if not self.voters:
            return 0
        values = sorted((acked.get(v, 0) for v in self.voters), reverse=True)
        return values[self.quorum - 1]

    def vote_result(self, votes: Mapping[int, bool]) -> VoteResult:
        """Tally ``votes`` (voter -> granted); votes from non-voters are ignored."""
        granted = sum(1 for v in self.voters if votes.get(v) is True)
        rejected = sum(1 for v in self.voters if votes.get(v) is False)
        if granted >= self.quorum:
            return VoteResult.WON
        if len(self.voters) - rejected < self.quorum:
            return VoteResult.LOST
        return VoteResult.PENDING

    def has_quorum(self, ids: Iterable[int]) -> bool:
        """Whether ``ids`` contain a majority of the voters."""
        return len(self.voters.intersection(ids)) >= self.quorum


_EMPTY = MajorityConfig(frozenset())


@dataclass(frozen=True, slots=True)
class JointConfig:
    """The voters of a configuration: ``incoming`` alone, or, while a membership change is
    in progress (thesis §4.3), ``incoming`` (C_new) joined with ``outgoing`` (C_old).

    A joint decision needs a majority of each half: the committed index is the smaller of
    the two, an election is won only when both halves grant it and lost when either half
    rejects it. With an empty ``outgoing`` every method is ``incoming``'s.
    """

    incoming: MajorityConfig
    outgoing: MajorityConfig = _EMPTY

    @staticmethod
    def of(incoming: Iterable[int], outgoing: Iterable[int] = ()) -> JointConfig:
        return JointConfig(MajorityConfig(frozenset(incoming)), MajorityConfig(frozenset(outgoing)))

    @property
    def joint(self) -> bool:
        return bool(self.outgoing.voters)

    @property
    def ids(self) -> frozenset[int]:
        """Every voter of either half."""
        return self.incoming.voters | self.outgoing.voters

    def is_only(self, node_id: int) -> bool:
        """Whether ``node_id`` is the one and only voter (it alone is every quorum)."""
        return self.ids == {node_id}

    def __contains__(self, node_id: object) -> bool:
        return node_id in self.incoming or node_id in self.outgoing

    def committed_index(self, acked: Mapping[int, int]) -> int:
        if not self.joint:
            return self.incoming.committed_index(acked)
        return min(self.incoming.committed_index(acked), self.outgoing.committed_index(acked))

    def vote_result(self, votes: Mapping[int, bool]) -> VoteResult:
        first = self.incoming.vote_result(votes)
        if not self.joint:
            return first
        second = self.outgoing.vote_result(votes)
        if first == second:
            return first
        if VoteResult.LOST in (first, second):
            return VoteResult.LOST
        return VoteResult.PENDING

    def has_quorum(self, ids: Iterable[int]) -> bool:
        ids = set(ids)
        return self.incoming.has_quorum(ids) and (not self.joint or self.outgoing.has_quorum(ids))
