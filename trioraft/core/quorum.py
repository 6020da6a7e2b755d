"""Majority arithmetic over a voter set (§5.2 elections, §5.3/§5.4.2 commitment).

Pure functions of a voter set and per-voter numbers. A joint configuration (thesis §4.3)
will later be two ``MajorityConfig``s whose results combine; callers only use the methods
below, so that change stays inside this module.
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
