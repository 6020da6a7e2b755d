"""Per-follower progress and the inflight window (§5.3 replication; flow control as in
etcd-io/raft's tracker)."""

from __future__ import annotations

import pytest

from trioraft.core.progress import Inflights, Progress, ProgressState


def make(match: int = 0, nxt: int = 1, cap: int = 3) -> Progress:
    return Progress(match=match, next=nxt, inflights=Inflights(cap))


def test_inflights_window() -> None:
    w = Inflights(3)
    for i in (2, 4, 6):
        w.add(i)
    assert w.full() and w.count == 3
    with pytest.raises(OverflowError):
        w.add(8)
    w.free_le(4)
    assert w.count == 1 and not w.full()
    with pytest.raises(ValueError, match="increase"):
        w.add(6)
    w.free_first_one()
    assert w.count == 0
    with pytest.raises(ValueError):
        Inflights(0)


def test_probe_sends_one_message_then_pauses() -> None:
    pr = make(nxt=5)
    assert not pr.is_paused()
    pr.sent_entries(5, 3)
    assert pr.is_paused() and pr.next == 5  # a probe does not move next
    assert pr.maybe_update(7)
    assert not pr.is_paused() and (pr.match, pr.next) == (7, 8)


def test_replicate_pipelines_up_to_the_window() -> None:
    pr = make(match=4, nxt=5, cap=2)
    pr.become_replicate()
    pr.sent_entries(5, 2)
    assert pr.next == 7 and not pr.is_paused()
    pr.sent_entries(7, 1)
    assert pr.next == 8 and pr.is_paused()
    pr.maybe_update(6)
    pr.inflights.free_le(6)
    assert not pr.is_paused()
    pr.sent_entries(8, 0)  # an empty append is not tracked
    assert pr.inflights.count == 1


def test_maybe_update_ignores_stale_acks() -> None:
    pr = make(match=5, nxt=6)
    assert not pr.maybe_update(3)
    assert (pr.match, pr.next) == (5, 6)


def test_probe_decrement_uses_hint_and_ignores_stale_rejections() -> None:
    """§5.3 fast backtracking: next jumps to just past the hinted index."""
    pr = make(match=2, nxt=11)
    assert not pr.maybe_decr_to(7, 0)  # not the answer to the probe at prev_index=10
    assert pr.maybe_decr_to(10, 4)
    assert pr.next == 5 and not pr.probe_sent
    pr.next = 11
    assert pr.maybe_decr_to(10, 0)
    assert pr.next == 3  # never below match + 1


def test_replicate_rejection_falls_back_to_match() -> None:
    pr = make(match=5, nxt=9)
    pr.become_replicate()
    pr.next = 9
    assert not pr.maybe_decr_to(4, 0)  # at or below match: stale
    assert pr.maybe_decr_to(7, 0)
    assert pr.next == 6
    pr.become_probe()
    assert pr.state is ProgressState.PROBE and pr.next == 6


def test_snapshot_state_is_always_paused() -> None:
    pr = make()
    pr.state = ProgressState.SNAPSHOT
    assert pr.is_paused()
