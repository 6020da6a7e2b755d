"""Membership changes: validate a requested change and compute the configurations it goes
through (Raft paper §6, thesis §4.3).

A change is a list of ``ConfChange`` operations applied together. From a configuration
C_old that is not joint:

- if the set of voters does not change (learners added or removed only), the result is a
  *simple* configuration appended in one step: learners never count in a quorum, so C_old
  and the result have the same majorities;
- otherwise the leader appends the joint configuration C_old,new (``enter_joint``), and,
  once that is committed, C_new (``leave_joint``). While joint, elections and commitment
  need a majority of C_old and a majority of C_new, so no two disjoint majorities can
  decide at any point of the change.

Errors are ``InvalidRequest`` with a message naming the node and the reason; the caller
(the leader) checks separately that no other change is in flight (``ChangeInProgress``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum

from trioraft.core.confstate import ConfState, Member, Membership
from wire.errors import InvalidRequest


class ChangeOp(IntEnum):
    ADD_LEARNER = 0  # a new member that receives the log but does not vote
    PROMOTE = 1  # learner -> voter
    REMOVE = 2  # voter or learner -> gone
    DEMOTE = 3  # voter -> learner


@dataclass(frozen=True, slots=True)
class ConfChange:
    """One operation. ``peer_addr``/``client_addr``/``auto_promote`` matter for
    ``ADD_LEARNER`` only (the addresses are required there)."""

    op: ChangeOp
    node_id: int
    peer_addr: str = ""
    client_addr: str = ""
    auto_promote: bool = False

    def __str__(self) -> str:
        text = f"{self.op.name.lower().replace('_', '-')} {self.node_id}"
        if self.op is ChangeOp.ADD_LEARNER:
            text += f" peer={self.peer_addr} client={self.client_addr or '-'}"
            text += " auto-promote" if self.auto_promote else ""
        return text


def plan(
    current: Membership,
    changes: Sequence[ConfChange],
    known: Mapping[int, str] | None = None,
) -> Membership:
    """The membership to append for ``changes`` from the non-joint ``current``: joint if
    the voters change, simple otherwise. Raises ``InvalidRequest`` if the change is not
    valid against ``current``. ``known``: peer addresses (the proposer's view) for members
    that ``current`` has no address for (initial members), so that new members learn
    them from the entry."""
    if current.conf.joint:
        raise InvalidRequest("the configuration is joint: leave it before changing it")
    if not changes:
        raise InvalidRequest("empty membership change")
    seen: set[int] = set()
    for ch in changes:
        if ch.node_id < 1:
            raise InvalidRequest(f"node id must be >= 1, got {ch.node_id}")
        if ch.node_id in seen:
            raise InvalidRequest(f"node {ch.node_id} appears twice in one change")
        seen.add(ch.node_id)
    c = current.conf
    voters, learners = set(c.voters), set(c.learners)
    members = {m.node_id: m for m in current.members}
    for node, addr in (known or {}).items():
        if node in c.ids() and node not in members:
            members[node] = Member(node, addr)
    demoted: set[int] = set()
    for ch in changes:
        node = ch.node_id
        if ch.op is ChangeOp.ADD_LEARNER:
            if node in voters or node in learners:
                role = "voter" if node in voters else "learner"
                raise InvalidRequest(f"node {node} is already a member ({role})")
            _check_addresses(ch, members.values())
            learners.add(node)
            members[node] = Member(node, ch.peer_addr, ch.client_addr, ch.auto_promote)
        elif ch.op is ChangeOp.PROMOTE:
            if node in voters:
                raise InvalidRequest(f"node {node} is already a voter")
            if node not in learners:
                raise InvalidRequest(f"unknown node {node}: add it as a learner first")
            learners.discard(node)
            voters.add(node)
        elif ch.op is ChangeOp.REMOVE:
            if node not in voters and node not in learners:
                raise InvalidRequest(f"unknown node {node}: it is not a member")
            voters.discard(node)
            learners.discard(node)
        elif ch.op is ChangeOp.DEMOTE:
            if node not in voters:
                raise InvalidRequest(f"node {node} is not a voter")
            voters.discard(node)
            demoted.add(node)
        else:  # pragma: no cover - IntEnum exhausted above
            raise InvalidRequest(f"unknown change {ch.op!r}")
    if not voters:
        raise InvalidRequest("the change would remove the last voter")
    if voters == set(c.voters):  # learners only (a demotion changes the voters)
        conf = ConfState.of(voters, (), learners)
    else:
        # Removed and demoted voters stay in the outgoing half until the joint config is
        # left; a demoted one becomes a learner then (learners_next), as in etcd.
        conf = ConfState.of(voters, c.voters, learners - set(c.voters), demoted)
    try:
        conf.check()
    except ValueError as exc:  # pragma: no cover - the rules above keep the invariants
        raise InvalidRequest(f"invalid configuration: {exc}") from None
    return Membership(conf).with_members(members.values())


def leave_joint(current: Membership) -> Membership:
    """C_new of the joint ``current``: the incoming voters, learners and learners to be."""
    c = current.conf
    if not c.joint:
        raise ValueError("not a joint configuration")
    conf = ConfState.of(c.voters, (), set(c.learners) | set(c.learners_next))
    return Membership(conf).with_members(current.members)


def _check_addresses(ch: ConfChange, members: Iterable[Member]) -> None:
    if not _valid_addr(ch.peer_addr):
        raise InvalidRequest(f"node {ch.node_id}: peer address must be tcp://HOST:PORT")
    if ch.client_addr and not _valid_addr(ch.client_addr):
        raise InvalidRequest(f"node {ch.node_id}: client address must be tcp://HOST:PORT")
    if ch.client_addr == ch.peer_addr:
        raise InvalidRequest(f"node {ch.node_id}: peer and client address must differ")
    for m in members:
        for addr in (ch.peer_addr, ch.client_addr):
            if addr and addr in (m.peer_addr, m.client_addr):
                raise InvalidRequest(f"duplicate address: node {m.node_id} already uses {addr}")


def _valid_addr(addr: str) -> bool:
    if not addr.startswith("tcp://") or ":" not in addr[6:]:
        return False
    port = addr.rsplit(":", 1)[1]
    return port.isdigit() and 0 < int(port) < 65536
