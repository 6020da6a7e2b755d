"""Majority arithmetic (§5.2 vote counting, §5.3 "replicated on a majority")."""

from __future__ import annotations

import pytest

from trioraft.core.quorum import MajorityConfig, VoteResult


@pytest.mark.parametrize(
    ("voters", "acked", "want"),
    [
        ({1}, {1: 5}, 5),
        ({1}, {}, 0),
        ({1, 2}, {1: 5, 2: 3}, 3),
        ({1, 2, 3}, {1: 5, 2: 3, 3: 1}, 3),
        ({1, 2, 3}, {1: 5, 2: 4}, 4),
        ({1, 2, 3}, {1: 5}, 0),
        ({1, 2, 3, 4}, {1: 4, 2: 3, 3: 2, 4: 1}, 2),
        ({1, 2, 3, 4, 5}, {1: 10, 2: 9, 3: 8, 4: 2, 5: 1}, 8),
        ({1, 2, 3}, {1: 7, 2: 7, 9: 100}, 7),  # non-voters do not count
        (set(), {1: 3}, 0),
    ],
)
def test_committed_index_is_the_value_a_majority_reached(
    voters: set[int], acked: dict[int, int], want: int
) -> None:
    """§5.3: an index is replicated once a majority of voters has it."""
    assert MajorityConfig(frozenset(voters)).committed_index(acked) == want


@pytest.mark.parametrize(
    ("voters", "votes", "want"),
    [
        ({1}, {1: True}, VoteResult.WON),
        ({1}, {}, VoteResult.PENDING),
        ({1, 2, 3}, {1: True}, VoteResult.PENDING),
        ({1, 2, 3}, {1: True, 2: True}, VoteResult.WON),
        ({1, 2, 3}, {1: True, 2: False}, VoteResult.PENDING),
        ({1, 2, 3}, {1: True, 2: False, 3: False}, VoteResult.LOST),
        ({1, 2, 3, 4}, {1: True, 2: True, 3: False}, VoteResult.PENDING),
        ({1, 2, 3, 4}, {1: True, 2: False, 3: False}, VoteResult.LOST),
        ({1, 2, 3, 4}, {1: True, 2: True, 3: True}, VoteResult.WON),
        ({1, 2, 3}, {1: True, 7: True, 8: True}, VoteResult.PENDING),
    ],
)
def test_vote_result(voters: set[int], votes: dict[int, bool], want: VoteResult) -> None:
    """§5.2: a candidate wins with votes from a majority; it has lost once a majority of
    grants can no longer be reached."""
    assert MajorityConfig(frozenset(voters)).vote_result(votes) is want


def test_has_quorum_and_size() -> None:
    cfg = MajorityConfig(frozenset({1, 2, 3, 4, 5}))
    assert cfg.quorum == 3
    assert cfg.has_quorum([1, 2, 3])
    assert not cfg.has_quorum([1, 2, 9])
    assert 4 in cfg and 6 not in cfg and len(cfg) == 5
