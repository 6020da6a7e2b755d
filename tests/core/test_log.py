"""The log view: consistency check, conflict truncation, durability markers (§5.3)."""

from __future__ import annotations

import gc

import pytest

from trioraft.core.log import RaftLog
from trioraft.core.types import CoreInvariantError
from wire.messages import Entry, EntryKind

from .helpers import ents


def terms(log: RaftLog) -> list[int]:
    return [e.term for e in log.slice(1, log.last_index + 1)]


def test_log_requires_consecutive_entries_and_ordered_markers() -> None:
    with pytest.raises(ValueError, match="consecutive"):
        RaftLog([Entry(1, 1, EntryKind.NORMAL, b""), Entry(1, 3, EntryKind.NORMAL, b"")])
    with pytest.raises(ValueError, match="applied"):
        RaftLog(ents(1, 1), committed=1, applied=2)
    log = RaftLog(ents(1, 2), committed=1)
    assert (log.last_index, log.last_term, log.stabled, log.in_progress) == (2, 2, 2, 2)
    assert log.term_at(0) == 0 and log.term_at(3) is None


def test_consistency_check_rejects_a_missing_or_mismatched_prev_entry() -> None:
    """§5.3: the follower refuses entries unless it has prev_index with prev_term."""
    log = RaftLog(ents(1, 1, 2))
    assert log.maybe_append(3, 1, 0, ents(2, start=4)) is None
    assert log.maybe_append(4, 2, 0, ents(2, start=5)) is None
    assert terms(log) == [1, 1, 2]


def test_conflict_truncates_from_the_first_conflicting_entry() -> None:
    """§5.3: delete the conflicting entry and all that follow it, then append."""
    log = RaftLog(ents(1, 1, 2, 2, 2))
    assert log.maybe_append(2, 1, 0, ents(3, 3, start=3)) == 4
    assert terms(log) == [1, 1, 3, 3]
    assert log.stabled == 2 and log.in_progress == 2  # the replacement must be persisted


def test_matching_entries_are_never_truncated() -> None:
    """§5.3 (Figure 2, AppendEntries rule 3): only a *conflict* truncates. An old or
    duplicated AppendEntries whose entries all match leaves a longer log intact."""
    log = RaftLog(ents(1, 1, 2, 2, 2))
    assert log.maybe_append(1, 1, 0, ents(1, 2, start=2)) == 3
    assert terms(log) == [1, 1, 2, 2, 2]
    assert log.stabled == 5  # nothing to re-persist
    assert log.maybe_append(5, 2, 0, ()) == 5


def test_commit_is_capped_by_the_last_new_entry() -> None:
    """§5.3 (Figure 2): commitIndex = min(leaderCommit, index of last new entry)."""
    log = RaftLog(ents(1, 1, 1, 1))
    log.maybe_append(1, 1, 10, ents(1, start=2))
    assert log.committed == 2  # not 4: entries 3..4 were not vouched for by this message
    log.maybe_append(0, 0, 1, ())
    assert log.committed == 2  # never decreases


def test_overwriting_a_committed_entry_fails_loudly() -> None:
    """§5.4 leader completeness: a committed entry never changes."""
    log = RaftLog(ents(1, 1, 1), committed=2)
    with pytest.raises(CoreInvariantError, match="committed"):
        log.maybe_append(1, 1, 0, ents(2, start=2))
    with pytest.raises(CoreInvariantError, match="gap"):
        log.append(ents(1, start=9))


@pytest.mark.parametrize(
    ("index", "term", "want"),
    [
        (10, 6, (10, 3)),  # our entry 10 has term 3 <= 6
        (10, 2, (6, 2)),  # skip the whole term-3 run
        (5, 1, (3, 1)),
        (20, 3, (11, 3)),  # clamped to the last index
        (3, 0, (0, 0)),
    ],
)
def test_find_conflict_by_term(index: int, term: int, want: tuple[int, int]) -> None:
    """§5.3 fast backtracking: the last index <= index whose term <= term."""
    log = RaftLog(ents(1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3))  # Figure 7 (f)
    assert log.find_conflict_by_term(index, term) == want


@pytest.mark.parametrize(
    ("last_index", "last_term", "want"),
    [
        (3, 2, True),  # same last term, same length
        (4, 2, True),  # same last term, longer
        (2, 2, False),  # same last term, shorter
        (1, 3, True),  # higher last term wins even if shorter
        (9, 1, False),  # lower last term loses even if longer
    ],
)
def test_is_up_to_date(last_index: int, last_term: int, want: bool) -> None:
    """§5.4.1: compare last terms first, then lengths."""
    assert RaftLog(ents(1, 1, 2)).is_up_to_date(last_index, last_term) is want


def test_entries_from_respects_the_byte_cap_but_sends_at_least_one() -> None:
    log = RaftLog([Entry(1, i, EntryKind.NORMAL, b"x" * 100) for i in range(1, 6)])
    assert [e.index for e in log.entries_from(1, 250)] == [1, 2]
    assert [e.index for e in log.entries_from(4, 250)] == [4, 5]
    assert [e.index for e in log.entries_from(2, 10)] == [2]
    assert log.entries_from(6, 250) == ()


def test_durability_markers_survive_truncation_during_a_persist() -> None:
    """Entries handed to the shell and then truncated before advance() must not count as
    durable; their replacements are handed out again (Figure 2: persist before answering)."""
    log = RaftLog(ents(1))
    log.append(ents(1, 1, 1, start=2))
    assert [e.index for e in log.unstable_entries()] == [2, 3, 4]
    log.accept_unstable()
    assert log.unstable_entries() == ()
    log.append(ents(2, start=3))  # conflict at 3 while 2..4 are being persisted
    log.written_to(4)  # the shell reports the old batch written ...
    log.stable_to(4)  # ... and durable
    assert log.written == log.stabled == 2
    assert [(e.index, e.term) for e in log.unstable_entries()] == [(3, 2)]


def test_committed_entries_wait_until_written_here() -> None:
    """Only committed entries written here are handed to the state machine; written is
    enough (an apply is written after them), durable is not needed; and nothing counts as
    durable beyond what was written."""
    log = RaftLog(ents(1, 1))
    log.append(ents(1, 1, start=3))
    log.commit_to(4)
    assert [e.index for e in log.next_committed_entries()] == [1, 2]
    log.accept_unstable()
    log.stable_to(4)  # a sync reported before the write: counts for nothing
    assert log.stabled == 2
    log.written_to(4)
    assert log.stabled == 2
    assert [e.index for e in log.next_committed_entries()] == [1, 2, 3, 4]
    log.applied_to(4)
    assert not log.has_next_committed_entries()
    with pytest.raises(CoreInvariantError):
        log.applied_to(3)


def mixed_log() -> tuple[RaftLog, list[Entry]]:
    """Entries 1-6 with data and a NOOP at 3, committed to 5 and applied to 4 (packed)."""
    entries = [
        Entry(t, i, EntryKind.NOOP if i == 3 else EntryKind.NORMAL, b"d%d" % i)
        for i, t in enumerate((1, 1, 2, 2, 3, 3), start=1)
    ]
    log = RaftLog(entries, committed=5, applied=2)
    log.applied_to(4)
    return log, entries


def test_applied_entries_read_back_the_same_and_are_not_tracked_by_the_collector() -> None:
    """Applied entries are kept packed (``RaftLog``): every read rebuilds the same entries
    across the boundary, and the collector never scans them."""
    log, entries = mixed_log()
    assert [log.entry(i) for i in range(1, 7)] == entries
    assert [log.term_at(i) for i in range(0, 8)] == [0, 1, 1, 2, 2, 3, 3, None]
    assert log.slice(2, 6) == tuple(entries[1:5]) and log.slice(5, 7) == tuple(entries[4:])
    assert log.entries_from(3, max_bytes=4) == tuple(entries[2:4])  # 2 bytes each
    assert log.entries_from(1, max_bytes=100) == tuple(entries)
    assert log.find_conflict_by_term(6, 2) == (4, 2)
    assert log.non_normal_from(1) == [entries[2]] and log.non_normal_from(4) == []
    packed = log._packed
    assert len(packed) == 4 and not any(gc.is_tracked(p) for p in packed)
    assert all(gc.is_tracked(e) for e in log._entries)  # the rest stay entries


def test_compaction_across_packed_and_unapplied_entries() -> None:
    log, entries = mixed_log()
    log.applied_to(5)  # packs 5; 6 is not committed
    log.stable_to(6)
    assert len(log.compact_to(5)) == 5
    assert (log.first_index, log.snapshot_term, log.term_at(4), log.term_at(5)) == (6, 3, None, 3)
    assert log.slice(1, 7) == (entries[5],)


def test_conflicts_count_replaced_suffixes_only() -> None:
    log = RaftLog(ents(1, 1, 2))
    log.append(ents(2, start=4))  # a plain append
    assert log.conflicts == 0
    assert log.maybe_append(2, 1, 0, ents(3, start=3)) == 3  # replaces 3 and 4
    assert log.conflicts == 1 and terms(log) == [1, 1, 3]
