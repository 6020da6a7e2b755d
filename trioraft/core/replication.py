"""The leader's side of replication (Raft §5.3, §5.4.2): acknowledgements and fast
backtracking, the commit rule, AppendEntries under flow control, heartbeats that confirm
reads (thesis §6.4), and the TimeoutNow of a leadership transfer (thesis §3.10).

Functions of ``Raft`` (``r``), kept apart from the rules every role shares in ``raft.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trioraft.core.progress import Progress, ProgressState
from trioraft.core.snapshot import request_snapshot, snapshot_acknowledged
from wire.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    Message,
    TimeoutNow,
)

if TYPE_CHECKING:
    from trioraft.core.raft import Raft


def step_leader(r: Raft, m: Message) -> None:
    pr = r.prs.get(m.src)
    if pr is None:
        return
    pr.recent_active = True
    if isinstance(m, AppendEntriesResponse):
        handle_append_response(r, m, pr)
    elif isinstance(m, HeartbeatResponse):
        handle_heartbeat_response(r, m, pr)


def handle_append_response(r: Raft, m: AppendEntriesResponse, pr: Progress) -> None:
    if not m.success:
        # Fast backtracking (§5.3): skip every index above the last one that can match.
        probe = m.hint_index
        if m.hint_term > 0:
            probe, _ = r.log.find_conflict_by_term(m.hint_index, m.hint_term)
        if pr.maybe_decr_to(m.index, probe):
            if pr.state is ProgressState.REPLICATE:
                pr.become_probe()
            send_append(r, m.src)
        return
    if m.index > r.log.last_index:
        return  # acknowledges entries we never had: malformed
    probing = pr.state is ProgressState.PROBE
    if not (pr.maybe_update(m.index) or (probing and pr.match == m.index)):
        return
    snapshot_acknowledged(r, m.src)  # SNAPSHOT -> PROBE once the snapshot is in (§7)
    if pr.state is ProgressState.PROBE:
        pr.become_replicate()
    else:
        pr.inflights.free_le(m.index)
    lazy = r.config.lazy_commit
    if maybe_commit(r):
        bcast_append(r, send_if_empty=not lazy)  # lazy: the commit rides on later messages
    while send_append(r, m.src, send_if_empty=False):
        pass
    if not lazy and owes_commit(r, pr):
        send_append(r, m.src)  # it has the entries but may not know they committed
    if m.src == r.lead_transferee and pr.match == r.log.last_index:
        send_timeout_now(r, m.src)


def handle_heartbeat_response(r: Raft, m: HeartbeatResponse, pr: Progress) -> None:
    pr.probe_sent = False
    if pr.state is ProgressState.REPLICATE and pr.inflights.full():
        pr.inflights.free_first_one()  # the follower is alive: let one message through
    if pr.match < r.log.last_index:
        # Even with everything in flight, an (empty) append: if the last one was lost, the
        # follower rejects this one and the leader backs up and resends. Lazy commit must
        # not skip it: with no later proposal, nothing else would find the loss.
        send_append(r, m.src)
    if m.context:
        r.readonly.ack(m.src, m.context)
        r.read_states.extend(r.readonly.release(r.voters))


def maybe_commit(r: Raft) -> bool:
    """Commit the quorum-replicated index if it is of our term (§5.4.2, Figure 8)."""
    index = r.voters.committed_index({v: pr.match for v, pr in r.prs.items()})
    if index <= r.log.committed:
        return False
    if r.log.term_at(index) != r.term and not r._bug_commit_old_term:
        return False  # (PLANTED BUG when skipped: counting replicas of an old term)
    r.log.commit_to(index)
    for context in r.readonly.take_waiting():
        r._queue_read(context)
    return True


def send_append(r: Raft, to: int, *, send_if_empty: bool = True) -> bool:
    """Send ``to`` the entries from its ``next`` if flow control allows; True if sent."""
    pr = r.prs[to]
    if pr.is_paused():
        return False
    prev_index = pr.next - 1
    prev_term = r.log.term_at(prev_index)
    if prev_term is None:
        return request_snapshot(r, to)  # compacted away: stream a snapshot (§7)
    entries = r.log.entries_from(pr.next, r.config.max_append_bytes)
    if not entries and not send_if_empty:
        return False
    r._send(
        AppendEntries(
            src=r.id,
            dst=to,
            term=r.term,
            prev_index=prev_index,
            prev_term=prev_term,
            entries=entries,
            commit=r.log.committed,
        )
    )
    pr.commit_sent = max(pr.commit_sent, min(r.log.committed, prev_index + len(entries)))
    pr.sent_entries(pr.next, len(entries))
    return True


def bcast_append(r: Raft, *, send_if_empty: bool = True) -> None:
    for peer in r.peers:
        if send_append(r, peer, send_if_empty=send_if_empty):
            while send_append(r, peer, send_if_empty=False):
                pass


def owes_commit(r: Raft, pr: Progress) -> bool:
    """``pr``'s follower holds entries it has not been sent the commit of."""
    return pr.commit_sent < min(r.log.committed, pr.match)


def commit_unsent(r: Raft) -> bool:
    """Is a commit owed to some follower (lazy commit)?"""
    return any(owes_commit(r, r.prs[peer]) for peer in r.peers)


def send_commit(r: Raft) -> None:
    """An AppendEntries (empty unless entries are due) to each follower owed a commit: lazy
    commit's bound (``RawNode.send_commit``)."""
    for peer in r.peers:
        if owes_commit(r, r.prs[peer]):
            send_append(r, peer)


def bcast_heartbeat(r: Raft) -> None:
    r.heartbeat_elapsed = 0
    round_ = r.readonly.start_round(r.ticks)
    for peer in r.peers:
        commit = min(r.prs[peer].match, r.log.committed)
        r._send(Heartbeat(src=r.id, dst=peer, term=r.term, commit=commit, context=round_))


def send_timeout_now(r: Raft, to: int) -> None:
    r.timeout_now_sent = True
    r._send(TimeoutNow(src=r.id, dst=to, term=r.term))
