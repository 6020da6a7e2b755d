"""ReadIndex bookkeeping (thesis §6.4): heartbeat rounds confirm batches of reads."""

from __future__ import annotations

from trioraft.core.quorum import MajorityConfig
from trioraft.core.readonly import ReadOnly
from trioraft.core.types import ReadState

VOTERS = MajorityConfig(frozenset({1, 2, 3}))


def test_reads_queued_before_a_round_are_confirmed_together() -> None:
    """§6.4 step 3, batched: one quorum round confirms every read queued before it."""
    ro = ReadOnly(1)
    ro.add(10, 5)
    ro.add(11, 6)
    assert ro.needs_round(VOTERS, 0)
    r = ro.start_round(tick=0)
    assert not ro.needs_round(VOTERS, 0)
    assert ro.release(VOTERS) == []  # only the leader itself acked
    ro.ack(2, r)
    assert ro.release(VOTERS) == [ReadState(10, 5), ReadState(11, 6)]
    assert ro.pending_count == 0


def test_a_read_queued_after_a_round_was_sent_needs_the_next_round() -> None:
    """§6.4: the confirming heartbeat must be sent after the read arrived."""
    ro = ReadOnly(1)
    ro.add(1, 5)
    r1 = ro.start_round(0)
    ro.add(2, 5)
    ro.ack(2, r1)
    assert ro.release(VOTERS) == [ReadState(1, 5)]
    assert ro.needs_round(VOTERS, 0)
    r2 = ro.start_round(1)
    ro.ack(3, r2)
    assert ro.release(VOTERS) == [ReadState(2, 5)]


def test_a_round_limit_holds_new_rounds_until_the_rounds_in_flight_are_confirmed() -> None:
    """etcd's way: reads that arrive while a round awaits its quorum share the next one."""
    ro = ReadOnly(1)
    ro.add(1, 5)
    r1 = ro.start_round(0)
    ro.add(2, 5)
    ro.add(3, 5)
    assert not ro.needs_round(VOTERS, 1)  # round r1 is in flight
    assert ro.needs_round(VOTERS, 2) and ro.needs_round(VOTERS, 0)
    ro.ack(3, r1)
    assert ro.release(VOTERS) == [ReadState(1, 5)]
    assert ro.needs_round(VOTERS, 1)  # r1 confirmed: reads 2 and 3 go in one round
    r2 = ro.start_round(1)
    ro.ack(2, r2)
    assert ro.release(VOTERS) == [ReadState(2, 5), ReadState(3, 5)]
    assert not ro.needs_round(VOTERS, 1)  # nothing pending


def test_acks_for_unsent_or_older_rounds_are_ignored() -> None:
    ro = ReadOnly(1)
    ro.add(1, 5)
    ro.ack(2, 7)  # never sent
    ro.ack(2, 0)
    assert ro.confirmed_round(VOTERS) == 0
    r = ro.start_round(0)
    ro.ack(2, r)
    ro.ack(2, 0)
    assert ro.confirmed_round(VOTERS) == r


def test_reads_waiting_for_commit_are_handed_back() -> None:
    ro = ReadOnly(1)
    ro.wait_for_commit(7)
    ro.wait_for_commit(8)
    assert ro.pending_count == 2 and not ro.needs_round(VOTERS, 0)
    assert ro.take_waiting() == [7, 8]
    assert ro.take_waiting() == []


def test_lease_tick_is_the_send_tick_of_the_confirmed_round() -> None:
    """Thesis §6.4.1: a lease is measured from when the acknowledged heartbeat was sent."""
    ro = ReadOnly(1)
    r1 = ro.start_round(3)
    ro.start_round(5)
    assert ro.lease_tick(VOTERS) is None
    ro.ack(2, r1)
    assert ro.lease_tick(VOTERS) == 3
    ro.prune(oldest_tick=4)
    assert ro.lease_tick(VOTERS) is None
