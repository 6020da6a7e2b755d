"""Membership at run time: admin requests, notifications, the peer set, bootstrap, and
automatic promotion of learners (docs/membership.md).

The core decides (``RawNode.propose_conf_change``: joint consensus, one change at a time);
this module is the shell around it:

- **Requests** (``update_cluster_conf``, ``join_cluster``, ``transfer_leader``) run on the
  raft loop as ``CoreCall`` events and are answered from the apply task once the change is
  complete: the (simple or joint) entry applied with the term it was proposed in, and, for
  a joint change, the C_new the leader appends after it. An entry replaced by another
  leader's is answered ``ProposalDropped``.
- **Peers**: after every Ready, if the configuration in force changed (appended, not yet
  committed: that is when it takes effect), the peer transport opens DEALERs to new members
  and closes those of removed ones.
- **Notifications**: each committed membership change (as applied) goes to
  ``membership_change_notifier()`` subscribers and ``watch_membership`` streams, after the
  current membership.
- **Bootstrap**: a voter of a new cluster does not tick its core (so never campaigns)
  until a majority of the initial voters is reachable (``PeerTransport.probe``), or
  ``bootstrap_timeout_ms`` passed; a joining learner never waits.
- **Promotion**: the leader promotes a learner that asked for it (``auto_promote``) once
  its replicated index is within ``promote_lag`` entries of the leader's last index.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from trioraft.config import NodeConfig
from trioraft.core import RawNode, Role
from trioraft.core.confchange import ChangeOp, ConfChange
from trioraft.core.confstate import Member, Membership, decode_membership
from trioraft.node.bootstrap import peer_map, to_wire
from trioraft.node.watch import Offer, StreamReply
from wire import client_messages as cm
from wire import member_messages as mm
from wire.errors import (
    Busy,
    ChangeInProgress,
    InvalidRequest,
    ProposalDropped,
    Timeout,
    TrioraftError,
    Unavailable,
)
from wire.messages import Entry, EntryKind

if TYPE_CHECKING:
    from trioraft.node.node import Node
    from trioraft.node.peers import PeerTransport

log = logging.getLogger(__name__)

Send = Callable[[Any], None]
WATCH_HISTORY = 64  # committed changes a slow notifier subscriber may still catch up on


@dataclass(frozen=True, slots=True)
class CoreCall:
    """An event for the raft loop: call ``fn`` with the core (only that task touches it)."""

    fn: Callable[[RawNode], None]


@dataclass(slots=True)
class _Change:
    index: int  # the (simple or joint) entry proposed
    term: int
    reply: Send  # gets UpdateClusterConfReply or an error
    joint: bool = False  # the entry applied and was joint: waiting for C_new


@dataclass(slots=True)
class _Transfer:
    reply: Send
    deadline: float  # trio time


class MembershipHub:
    """Committed memberships for subscribers: the current one first, then every change
    (a subscriber more than ``WATCH_HISTORY`` changes behind skips to the latest)."""

    def __init__(self, current: mm.ClusterMembership) -> None:
        self._history: list[tuple[int, mm.ClusterMembership]] = [(0, current)]
        self._changed = trio.Event()
        self._closed = False

    @property
    def current(self) -> mm.ClusterMembership:
        return self._history[-1][1]

    def publish(self, m: mm.ClusterMembership) -> None:
        seq = self._history[-1][0] + 1
        self._history = [*self._history[-WATCH_HISTORY:], (seq, m)]
        self._changed.set()
        self._changed = trio.Event()

    def close(self) -> None:
        self._closed = True
        self._changed.set()

    async def subscribe(self) -> AsyncIterator[mm.ClusterMembership]:
        seq = self._history[-1][0]
        yield self._history[-1][1]
        while True:
            changed = self._changed
            newer = [(s, m) for s, m in self._history if s > seq]
            if newer and newer[0][0] != seq + 1:
                newer = newer[-1:]  # fell behind the history: the latest is what counts
            for s, m in newer:
                seq = s
                yield m
            if self._closed:
                return
            await changed.wait()


class MembershipService:
    def __init__(self, node: Node, config: NodeConfig, current: tuple[int, Membership]) -> None:
        self._node = node
        self._config = config
        self.hub = MembershipHub(to_wire(*current))
        self._transport: PeerTransport | None = None
        self._in_force: tuple[int, int] = (-1, -1)  # what the transport is set up for
        self._changes: list[_Change] = []
        self._transfers: list[_Transfer] = []
        self._watchers: dict[Hashable, StreamReply] = {}
        self._bootstrapping = False  # a new voter waits for the initial members
        self._bootstrap_until = 0.0  # trio time, set at the first tick
        self._reachable: set[int] = set()
        self.removed = False

    # --- bootstrap and ticks (raft loop) ---
    def start_bootstrap(self, core: RawNode, fresh: bool) -> None:
        """A voter of a new cluster waits for a majority of the initial voters before its
        first election; a learner or a restarted node does not."""
        voters = core.membership.conf.voters
        if fresh and self._node.node_id in voters and len(voters) > 1 and not self._config.join:
            self._bootstrapping = True

    def on_tick(self, core: RawNode) -> bool:
        """Once per tick period; returns whether to tick the core."""
        if self._bootstrapping and not self._bootstrap_done(core):
            return False
        st = core.status
        if st.role is Role.LEADER:
            self._maybe_promote(core)
        self._check_transfers(core)
        return True

    def _bootstrap_done(self, core: RawNode) -> bool:
        if not self._bootstrap_until:
            self._bootstrap_until = trio.current_time() + self._config.bootstrap_timeout_ms / 1000
        st = core.status
        voters = core.membership.conf.voters
        if self._transport is not None:
            self._reachable |= self._transport.probe()
        reachable = len(self._reachable & set(voters)) + 1
        if st.term > 0 or st.leader_id or reachable > len(voters) // 2:
            log.info(
                "node %d: %d of %d initial voters reachable; starting elections",
                self._node.node_id,
                reachable,
                len(voters),
            )
        elif trio.current_time() >= self._bootstrap_until:
            log.warning(
                "node %d: only %d of %d initial voters reachable after %d ms; starting anyway",
                self._node.node_id,
                reachable,
                len(voters),
                self._config.bootstrap_timeout_ms,
            )
        else:
            return False
        self._bootstrapping = False
        return True

    def _maybe_promote(self, core: RawNode) -> None:
        m, index = core.membership, core.membership_index
        if m.conf.joint or index > core.status.commit:
            return  # a change is in progress
        progress = core.progress()
        last = core.status.last_index
        for node in m.conf.learners:
            member = m.member(node)
            if member is None or not member.auto_promote:
                continue
            if last - progress.get(node, 0) > self._config.promote_lag:
                continue
            try:
                promotion = [ConfChange(ChangeOp.PROMOTE, node)]
                at, _ = core.propose_conf_change(promotion, self._config.peers)
            except TrioraftError:
                return  # e.g. not committed in this term yet: next tick
            log.info("node %d: promoting learner %d (entry %d)", self._node.node_id, node, at)
            return

    # --- the peer set (raft loop) ---
    def attach(self, transport: PeerTransport, core: RawNode) -> None:
        self._transport = transport
        self.after_ready(core)

    def after_ready(self, core: RawNode) -> None:
        """The configuration in force may have changed (an entry was appended or truncated):
        connect to the peers it names."""
        m = core.membership
        at, committed = core.committed_membership()
        key = (core.membership_index, at)
        if key == self._in_force or self._transport is None:
            return
        self._in_force = key
        # until a removal commits, the removed node still gets the log (it learns of it)
        peers = peer_map(self._config, committed) | peer_map(self._config, m)
        self._transport.update_peers(peers)
        self._node._lease.set_voters(m.conf.voters, m.conf.voters_outgoing)
        if self._node.node_id not in m.conf.ids() and not self.removed:
            self.removed = True
            log.warning(
                "node %d: removed from the cluster (configuration at %d: %s); it takes no "
                "further part",
                self._node.node_id,
                core.membership_index,
                m.conf,
            )

    # --- requests (client port; never block) ---
    def handle(self, req: object, reply: Any) -> None:
        """Serve an admin request (``wire.member_messages.ADMIN_REQUESTS``)."""
        node = self._node
        match req:
            case mm.UpdateClusterConfRequest(changes):
                node._check_leader()
                ccs = [_core_change(c) for c in changes]
                node._enqueue(CoreCall(lambda core: self._propose(core, ccs, reply)))
            case mm.JoinClusterRequest():
                node._check_leader()
                node._enqueue(CoreCall(lambda core: self._join(core, req, reply)))
            case mm.ClusterMetadataRequest():
                reply(self.metadata())
            case mm.DiscoverLeaderRequest():
                reply(self.leader_info())
            case mm.TransferLeaderRequest(target):
                node._check_leader()
                node._enqueue(CoreCall(lambda core: self._transfer(core, target, reply)))
            case mm.WatchMembershipRequest():
                self._open_watch(reply)
            case _:
                raise InvalidRequest(f"{type(req).__name__} is not an admin request")

    def _propose(self, core: RawNode, changes: Sequence[ConfChange], reply: Send) -> None:
        try:
            index, term = core.propose_conf_change(changes, self._config.peers)
        except TrioraftError as exc:
            reply(exc)
            return
        log.info(
            "node %d: membership change at %d: %s",
            self._node.node_id,
            index,
            ", ".join(map(str, changes)),
        )
        self._changes.append(_Change(index, term, reply))

    def _join(self, core: RawNode, req: mm.JoinClusterRequest, reply: Send) -> None:
        cluster_id = self._node.cluster_id

        def answer(result: Any) -> None:
            if isinstance(result, mm.UpdateClusterConfReply):
                result = mm.JoinClusterReply(cluster_id, result.membership)
            elif isinstance(result, ChangeInProgress):  # e.g. another node joining: retried
                result = Busy(str(result))
            reply(result)

        m = core.membership
        known = m.member(req.node_id)
        if req.node_id in m.conf.ids():
            if known is None or (known.peer_addr, known.client_addr) != (
                req.peer_addr,
                req.client_addr,
            ):
                reply(InvalidRequest(f"node {req.node_id} is already a member, at other addresses"))
                return
            if core.membership_index <= core.status.commit:  # a retry of a completed join
                answer(mm.UpdateClusterConfReply(to_wire(*core.committed_membership())))
            else:  # the client retries Busy: the join completes meanwhile
                reply(Busy(f"the change that adds node {req.node_id} is not committed yet"))
            return
        change = ConfChange(
            ChangeOp.ADD_LEARNER, req.node_id, req.peer_addr, req.client_addr, req.auto_promote
        )
        self._propose(core, [change], answer)

    def _transfer(self, core: RawNode, target: int, reply: Send) -> None:
        try:
            core.transfer_leader(target or None)
        except TrioraftError as exc:
            reply(exc)
            return
        ticks = 3 * self._config.election_ticks
        deadline = trio.current_time() + ticks * self._config.tick_ms / 1000
        self._transfers.append(_Transfer(reply, deadline))

    def _check_transfers(self, core: RawNode) -> None:
        if not self._transfers:
            return
        st = core.status
        if st.leader_id not in (0, self._node.node_id):
            for t in self._transfers:
                t.reply(mm.TransferLeaderReply(st.leader_id, st.term))
            self._transfers = []
            return
        now = trio.current_time()
        for t in [t for t in self._transfers if now >= t.deadline]:
            t.reply(Timeout("the leadership transfer did not complete"))
            self._transfers.remove(t)

    def metadata(self) -> mm.ClusterMetadata:
        core = self._node._core
        st = core.status
        leader = self.leader_info()
        progress = [mm.MemberProgress(i, match) for i, match in sorted(core.progress().items())]
        return mm.ClusterMetadata(
            cluster_id=self._node.cluster_id,
            node_id=self._node.node_id,
            leader_id=leader.leader_id,
            leader_client_addr=leader.client_addr,
            term=st.term,
            commit=st.commit,
            applied=self._node._sm.applied,
            last_index=st.last_index,
            membership=self._view(*core.committed_membership()),
            progress=progress if st.role is Role.LEADER else [],
        )

    def _view(self, index: int, m: Membership) -> mm.ClusterMembership:
        """``m`` with the peer addresses this node uses for members it records none for."""
        known = [Member(i, a) for i, a in self._config.peers.items() if m.member(i) is None]
        return to_wire(index, m.with_members([*m.members, *known]))

    def leader_info(self) -> mm.DiscoverLeaderReply:
        core = self._node._core
        st = core.status
        if st.leader_id == self._node.node_id:
            return mm.DiscoverLeaderReply(
                st.leader_id, st.term, self._config.client_addr, self._config.peer_addr
            )
        member = core.membership.member(st.leader_id)
        if member is None:
            return mm.DiscoverLeaderReply(st.leader_id, st.term, "", "")
        return mm.DiscoverLeaderReply(st.leader_id, st.term, member.client_addr, member.peer_addr)

    # --- watch streams ---
    def _open_watch(self, out: Any) -> None:
        if out.offer(mm.MembershipEvent(self.hub.current)) == Offer.SENT:
            self._watchers[out.key] = out

    def cancel_watch(self, key: Hashable) -> None:
        self._watchers.pop(key, None)

    # --- from the apply task ---
    def on_applied(
        self, entries: Sequence[Entry], changes: Sequence[tuple[int, Membership]]
    ) -> None:
        """A batch was applied: answer the changes it completed, publish its memberships."""
        if not self._changes and not changes:
            return  # the usual case: nothing to do for this batch
        by_index = {e.index: e for e in entries}
        for ch in list(self._changes):
            entry = by_index.get(ch.index)
            if entry is None or ch.joint:
                continue
            if entry.term != ch.term:
                self._changes.remove(ch)
                ch.reply(ProposalDropped("leadership changed before the change committed"))
            elif entry.kind is EntryKind.CONFIG and decode_membership(entry.data).conf.joint:
                ch.joint = True  # C_old,new committed; done once C_new is
            else:
                self._changes.remove(ch)
                ch.reply(mm.UpdateClusterConfReply(self._committed_at(ch.index, changes)))
        for index, m in changes:
            for ch in [c for c in self._changes if c.joint and c.index < index]:
                if not m.conf.joint:
                    self._changes.remove(ch)
                    ch.reply(mm.UpdateClusterConfReply(to_wire(index, m)))
            self._publish(to_wire(index, m))

    def _committed_at(self, index: int, changes: Sequence[tuple[int, Membership]]) -> Any:
        for at, m in changes:
            if at == index:
                return to_wire(at, m)
        return self.hub.current

    def _publish(self, m: mm.ClusterMembership) -> None:
        self.hub.publish(m)
        for key, out in list(self._watchers.items()):
            if out.offer(mm.MembershipEvent(m)) != Offer.SENT:
                self._watchers.pop(key, None)  # gone or too slow: it resumes elsewhere

    def close(self) -> None:
        """The node stops: fail what waits, end the streams so that clients reconnect."""
        error = Unavailable(f"node {self._node.node_id} is shutting down")
        for ch in self._changes:
            ch.reply(error)
        for t in self._transfers:
            t.reply(error)
        self._changes, self._transfers = [], []
        for out in self._watchers.values():
            out.offer(cm.WatchCanceled(Unavailable.code, str(error), 0, True))
        self._watchers.clear()
        self.hub.close()


def _core_change(c: mm.MemberChange) -> ConfChange:
    return ConfChange(ChangeOp(int(c.op)), c.node_id, c.peer_addr, c.client_addr, c.auto_promote)
