"""Membership changes inside the core: which configuration is in force, and the leader's
part of joint consensus (Raft paper §6, thesis §4.3).

Rules implemented here, each cited where it is enforced:

- A configuration takes effect as soon as its entry is appended to a log, committed or
  not, and is reverted if that entry is truncated (§6, thesis §4.1): ``ConfLog`` follows
  every append of the log, including conflict truncations.
- One change at a time, and none before the leader has committed an entry of its own
  term (thesis §4.1, and the fix of the single-server-change bug in the thesis errata):
  ``propose_change``.
- C_old -> C_old,new -> C_new: the leader appends C_new as soon as C_old,new is committed
  (``after_commit``); while joint, quorums need majorities of both halves (``JointConfig``).
- A leader that is not in C_new manages the cluster without counting itself until C_new
  commits, then hands leadership to the most up-to-date voter and steps down (§6).
- Learners receive the log but are never counted: they are not in ``Raft.voters``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from trioraft.core.confchange import ConfChange, leave_joint, plan
from trioraft.core.confstate import (
    Membership,
    encode_announcement,
    encode_membership,
    next_membership,
)
from trioraft.core.progress import Inflights, Progress
from trioraft.core.quorum import JointConfig
from trioraft.core.types import CoreInvariantError, Role
from wire.errors import Busy, ChangeInProgress, NotLeader, ProposalDropped
from wire.messages import NO_NODE, Entry, EntryKind, TimeoutNow

if TYPE_CHECKING:
    from trioraft.core.raft import Raft


class ConfLog:
    """The memberships of the log: a base (the membership as of ``base_index``, e.g. the
    applied index or a snapshot), then one item per log entry that changes it.

    Invariant: item indexes strictly increase; items above the commit index may be
    truncated with the log, the base never is (it is at or below the commit index).
    """

    __slots__ = ("_items",)

    def __init__(self, base: Membership, base_index: int = 0) -> None:
        self._items: list[tuple[int, Membership]] = [(base_index, base)]

    @property
    def current(self) -> Membership:
        """The configuration in force: that of the latest entry, committed or not."""
        return self._items[-1][1]

    @property
    def current_index(self) -> int:
        return self._items[-1][0]

    def on_append(self, entries: Sequence[Entry]) -> bool:
        """The log replaced everything from ``entries[0].index`` with ``entries``; True if
        the configuration in force changed."""
        if not entries:
            return False
        before = self._items[-1]
        first = entries[0].index
        while len(self._items) > 1 and self._items[-1][0] >= first:
            self._items.pop()  # truncated: that configuration is reverted
        m = self._items[-1][1]
        for e in entries:
            if e.kind is EntryKind.NORMAL or e.index <= self._items[-1][0]:
                continue
            try:
                after = next_membership(m, e)
            except ValueError as exc:
                raise CoreInvariantError(f"log entry {e.index}: {exc}") from None
            if after is not None:
                self._items.append((e.index, after))
                m = after
        return self._items[-1] is not before

    def at(self, index: int) -> tuple[int, Membership]:
        """The latest (entry index, membership) at or below ``index`` (the base if none)."""
        for item in reversed(self._items):
            if item[0] <= index:
                return item
        return self._items[0]

    def compact(self, applied: int) -> None:
        """Forget memberships older than the one in force at ``applied`` (kept so that a
        snapshot of the applied state can name its membership)."""
        keep = 0
        for k, (index, _) in enumerate(self._items):
            if index <= applied:
                keep = k
        del self._items[:keep]

    def reset(self, base: Membership, base_index: int) -> None:
        """Start over from ``base`` (e.g. a snapshot's membership at its index)."""
        self._items = [(base_index, base)]


def restore(raft: Raft, index: int, membership: Membership) -> None:
    """The log was replaced by a snapshot of ``index`` whose configuration is
    ``membership``: it is in force now (the configurations of the old log are gone)."""
    raft.conf_log.reset(membership, index)
    apply_conf(raft)


def apply_conf(raft: Raft) -> None:
    """Make the configuration in force the one ``raft`` uses: its voters (joint or not),
    who it replicates to, and, on a leader, one ``Progress`` per member.

    Members of the committed configuration are replicated to until the one that removes
    them commits, so that a removed node learns of its removal (it then stops campaigning
    and refuses to restart as a member)."""
    c = raft.conf_log.current.conf
    raft.voters = JointConfig.of(c.voters, c.voters_outgoing)
    members = c.ids() | raft.conf_log.at(raft.log.committed)[1].conf.ids()
    raft.peers = tuple(sorted(members - {raft.id}))  # replication targets, learners too
    raft.voter_peers = tuple(sorted(raft.voters.ids - {raft.id}))
    if raft.role is not Role.LEADER:
        return
    nxt = raft.log.last_index + 1
    for node in raft.peers:
        if node not in raft.prs:
            raft.prs[node] = Progress(
                match=0,
                next=nxt,
                inflights=Inflights(raft.config.max_inflight),
                recent_active=True,  # not active yet, but do not fail check-quorum for it
            )
    for node in [n for n in raft.prs if n not in members and n != raft.id]:
        del raft.prs[node]  # the leader keeps its own progress: it counts what is durable


def promotable(raft: Raft) -> bool:
    """Whether this node may start elections: a voter of the configuration in force, or
    of the committed one while a newer one is not committed yet (thesis §4.2.2: a server
    removed by an uncommitted C_new may be needed to commit it, e.g. the only one holding
    it). Its own vote counts only if it is a voter of the configuration in force."""
    if raft.id in raft.voters:
        return True
    committed = raft.log.committed
    if raft.conf_log.current_index <= committed:
        return False
    return raft.conf_log.at(committed)[1].conf.is_voter(raft.id)


def propose_change(
    raft: Raft, changes: Sequence[ConfChange], known: Mapping[int, str] | None = None
) -> tuple[int, int]:
    """Leader: validate ``changes`` against the configuration in force and append the
    resulting (joint or simple) configuration. Returns its ``(index, term)``."""
    if raft.role is not Role.LEADER:
        raise NotLeader(f"node {raft.id} is not the leader", leader_id=raft.lead)
    if raft.lead_transferee != NO_NODE:
        raise ProposalDropped(f"leadership transfer to node {raft.lead_transferee}")
    current = raft.conf_log.current
    index = raft.conf_log.current_index
    if index > raft.log.committed:
        raise ChangeInProgress(
            f"a membership change is in progress (configuration at index {index} is not "
            "committed yet); retry once it completes"
        )
    if current.conf.joint:
        raise ChangeInProgress(
            f"a membership change is in progress (joint configuration {current.conf} at "
            f"index {index}); retry once it completes"
        )
    pitfall = "single_server_change" in raft.config.planted_bugs  # TEST-ONLY planted bug
    if not raft.committed_in_term() and not pitfall:
        raise Busy("the new leader has not committed an entry of its term yet; retry")
    target = plan(current, changes, known)
    if pitfall and target.conf.joint:
        new, old = set(target.conf.voters), set(target.conf.voters_outgoing)
        if len(new ^ old) == 1:  # PLANTED BUG: one voter changed without a joint config
            target = leave_joint(target)
    return append_conf(raft, target)


def append_conf(raft: Raft, m: Membership) -> tuple[int, int]:
    index = raft.log.last_index + 1
    raft.log.append([Entry(raft.term, index, EntryKind.CONFIG, encode_membership(m))])
    raft.pending_bcast = True
    return index, raft.term


def after_commit(raft: Raft) -> None:
    """Leader, at each flush: finish a change whose entry committed. A committed joint
    configuration is left (C_new appended); a committed C_new without this leader among
    its voters makes it hand over and step down."""
    if raft.role is not Role.LEADER:
        return
    committed = raft.log.committed
    if raft.conf_log.current_index > committed:
        return  # the latest configuration is not committed yet
    conf = raft.conf_log.current.conf
    if set(raft.peers) != conf.ids() - {raft.id}:
        apply_conf(raft)  # a removal committed: stop replicating to the removed
    if conf.joint:
        append_conf(raft, leave_joint(raft.conf_log.current))
    elif raft.id not in conf.voters:
        _hand_over(raft)
        raft.step_down()


def _hand_over(raft: Raft) -> None:
    """Send TimeoutNow to the voter of the new configuration whose log is complete, if
    any, so that it campaigns at once instead of after an election timeout."""
    last = raft.log.last_index
    ready = [v for v in raft.voter_peers if raft.prs[v].match == last]
    if ready:
        raft.msgs.append(TimeoutNow(src=raft.id, dst=min(ready), term=raft.term))


def announcement(raft: Raft) -> bytes:
    """Data for a new leader's no-op: an announcement of its addresses if its configured
    client address is not the one its membership records (else empty)."""
    cfg = raft.config
    if not cfg.client_addr:
        return b""
    me = raft.conf_log.current.member(raft.id)
    if me is not None and me.client_addr == cfg.client_addr:
        return b""
    return encode_announcement(raft.id, cfg.peer_addr, cfg.client_addr)


def has_work(raft: Raft) -> bool:
    """Leader: ``after_commit`` would act (so the shell should take a Ready)."""
    if raft.role is not Role.LEADER or raft.conf_log.current_index > raft.log.committed:
        return False
    conf = raft.conf_log.current.conf
    return conf.joint or raft.id not in conf.voters or set(raft.peers) != conf.ids() - {raft.id}
