"""When each node compacts its log: every ``snapshot_entries``, at a phase of its own."""

from __future__ import annotations

import itertools

import pytest

from trioraft.node.snapshots import entries_due_after


@pytest.mark.parametrize("every", [1, 2, 7, 50, 100_000])
@pytest.mark.parametrize("node_id", [1, 2, 3, 4, 5, 9, 2**40])
def test_next_snapshot_is_due_half_to_one_and_a_half_periods_on(every: int, node_id: int) -> None:
    for index in (0, 1, 13, every - 1, every, 10 * every + 3, 987_654_321):
        due = entries_due_after(index, every, node_id)
        assert index + max(every // 2, 1) <= due < index + max(every // 2, 1) + every
        # in phase: the same residue whatever the index the last snapshot had
        assert due % every == entries_due_after(0, every, node_id) % every


def test_a_node_stays_in_phase_when_its_snapshots_start_a_little_late() -> None:
    every, due = 100_000, entries_due_after(0, 100_000, 2)
    for late in (0, 17, 900, 30_000):  # the snapshot covers what was applied when it began
        assert entries_due_after(due + late, every, 2) == due + every
        due += every


def test_nodes_of_a_cluster_snapshot_at_different_indexes() -> None:
    every = 100_000
    phases = [entries_due_after(0, every, n) % every for n in range(1, 9)]
    assert len(set(phases)) == 8  # nodes 1..8 never snapshot at the same index
    first_three = sorted(phases[:3])
    gaps = [b - a for a, b in itertools.pairwise(first_three)]
    assert min(gaps) >= every // 8  # ~1 s apart at 10,000 puts/s
