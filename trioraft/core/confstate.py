"""Cluster configurations as the core sees them: who votes, who learns, and their addresses.

``ConfState`` is the voting structure, shaped like etcd-io/raft's ``ConfState``:

- ``voters``: the (incoming) voters. Outside a joint configuration, the only voters.
- ``voters_outgoing``: non-empty only in a joint configuration C_old,new (Raft paper §6,
  thesis §4.3): the voters of C_old. Elections and commitment then need a majority of
  ``voters`` *and* a majority of ``voters_outgoing``.
- ``learners``: members that receive the log but never count in a quorum or election.
- ``learners_next``: joint only: outgoing voters that become learners when the joint
  configuration is left (a demotion). Kept apart because a node cannot be a voter and a
  learner at once.

Invariants (``check``): voters, learners and learners_next are disjoint except that
learners_next is a subset of voters_outgoing; learners_next is empty unless joint; there is
at least one voter.

``Membership`` adds each member's addresses (peer and client), so that nodes learn new
peers from the log. A CONFIG entry carries the *whole* resulting membership, not a delta:
the configuration in force is always that of the last config-bearing entry in the log (or
the base the log starts from), which makes reverting a truncated entry trivial (§6: "a
server always uses the latest configuration in its log, regardless of whether the entry is
committed").

Encoding: config entries are decoded by the pure core, which may only use the standard
library, so their data is compact JSON (``{"v": 1, ...}``), not CBOR. A leader's first
entry (its no-op) may carry an *announcement* of its own addresses, so that members learn
the leader's client address without an extra entry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from wire.messages import Entry, EntryKind

FORMAT = 1


@dataclass(frozen=True, slots=True)
class ConfState:
    """The voting structure of a configuration; every tuple is sorted and duplicate-free."""

    voters: tuple[int, ...]
    voters_outgoing: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()
    learners_next: tuple[int, ...] = ()

    @staticmethod
    def of(
        voters: Any,
        voters_outgoing: Any = (),
        learners: Any = (),
        learners_next: Any = (),
    ) -> ConfState:
        """Build from any iterables of ids (sorted and de-duplicated here)."""
        return ConfState(
            tuple(sorted(set(voters))),
            tuple(sorted(set(voters_outgoing))),
            tuple(sorted(set(learners))),
            tuple(sorted(set(learners_next))),
        )

    @property
    def joint(self) -> bool:
        return bool(self.voters_outgoing)

    def ids(self) -> frozenset[int]:
        """Every member: voters (both halves), learners, and learners to be."""
        return frozenset(self.voters + self.voters_outgoing + self.learners + self.learners_next)

    def is_voter(self, node_id: int) -> bool:
        """A voter in either half of the configuration (may campaign and vote)."""
        return node_id in self.voters or node_id in self.voters_outgoing

    def is_learner(self, node_id: int) -> bool:
        return node_id in self.learners or (
            node_id in self.learners_next and node_id not in self.voters_outgoing
        )

    def role(self, node_id: int) -> str:
        """``voter``, ``voter (outgoing)`` (leaves with the joint config), ``learner``,
        ``voter -> learner`` (a demotion in progress), or ``none``."""
        if node_id in self.voters:
            return "voter"
        if node_id in self.learners_next:
            return "voter -> learner"
        if node_id in self.voters_outgoing:
            return "voter (outgoing)"
        if node_id in self.learners:
            return "learner"
        return "none"

    def check(self) -> None:
        """Raise ``ValueError`` if an invariant (module docstring) is broken."""
        for name in ("voters", "voters_outgoing", "learners", "learners_next"):
            ids = getattr(self, name)
            if list(ids) != sorted(set(ids)) or any(i < 1 for i in ids):
                raise ValueError(f"{name} must be sorted distinct ids >= 1, got {ids}")
        if not self.voters:
            raise ValueError("a configuration needs at least one voter")
        voters = set(self.voters) | set(self.voters_outgoing)
        if voters & set(self.learners):
            raise ValueError(f"nodes {sorted(voters & set(self.learners))} vote and learn")
        if self.learners_next and not self.joint:
            raise ValueError("learners_next outside a joint configuration")
        if not set(self.learners_next) <= set(self.voters_outgoing) - set(self.voters):
            raise ValueError("learners_next must be outgoing voters that do not vote on")

    def __str__(self) -> str:
        text = "voters=(" + " ".join(map(str, self.voters)) + ")"
        if self.joint:
            text += "&&(" + " ".join(map(str, self.voters_outgoing)) + ")"
        if self.learners:
            text += " learners=(" + " ".join(map(str, self.learners)) + ")"
        if self.learners_next:
            text += " learners_next=(" + " ".join(map(str, self.learners_next)) + ")"
        return text


@dataclass(frozen=True, slots=True)
class Member:
    """A member's addresses. ``client_addr`` is "" while unknown (an initial member that
    has not led yet). ``auto_promote``: a learner the leader promotes to voter once its log
    is close enough to the leader's (``join_cluster``)."""

    node_id: int
    peer_addr: str
    client_addr: str = ""
    auto_promote: bool = False


@dataclass(frozen=True, slots=True)
class Membership:
    """A configuration with the addresses of its members (``members`` sorted by id; a
    member of ``conf`` may lack a record when its address is unknown, e.g. in core tests).
    """

    conf: ConfState
    members: tuple[Member, ...] = field(default=())

    def member(self, node_id: int) -> Member | None:
        for m in self.members:
            if m.node_id == node_id:
                return m
        return None

    def with_members(self, members: Any) -> Membership:
        """A copy with ``members`` (any iterable), kept only for ids of the configuration."""
        ids = self.conf.ids()
        kept = {m.node_id: m for m in members if m.node_id in ids}
        return replace(self, members=tuple(kept[i] for i in sorted(kept)))

    def with_address(self, node_id: int, peer_addr: str, client_addr: str) -> Membership:
        """``node_id`` announced its addresses: record its client address (and its peer
        address where none is known). Members' peer addresses otherwise come only from the
        change that added them."""
        old = self.member(node_id)
        if node_id not in self.conf.ids():
            return self
        if old is None:
            new = Member(node_id, peer_addr, client_addr)
        else:
            new = replace(old, peer_addr=old.peer_addr or peer_addr, client_addr=client_addr)
        if new == old:
            return self
        others = [m for m in self.members if m.node_id != node_id]
        return self.with_members([*others, new])


def encode_membership(m: Membership) -> bytes:
    """The data of a CONFIG entry: the whole membership, as compact, canonical JSON."""
    c = m.conf
    doc = {
        "v": FORMAT,
        "voters": list(c.voters),
        "outgoing": list(c.voters_outgoing),
        "learners": list(c.learners),
        "learners_next": list(c.learners_next),
        "members": [[x.node_id, x.peer_addr, x.client_addr, x.auto_promote] for x in m.members],
    }
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def decode_membership(data: bytes) -> Membership:
    """Inverse of ``encode_membership``; ``ValueError`` if malformed."""
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("v") != FORMAT:
            raise ValueError("not a membership of format 1")
        conf = ConfState(
            _ids(doc["voters"]),
            _ids(doc["outgoing"]),
            _ids(doc["learners"]),
            _ids(doc["learners_next"]),
        )
        members = []
        for item in doc["members"]:
            node_id, peer, client, auto = item
            if not (isinstance(peer, str) and isinstance(client, str) and type(auto) is bool):
                raise ValueError(f"malformed member {item!r}")
            members.append(Member(_id(node_id), peer, client, auto))
    except (KeyError, TypeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed membership: {exc}") from None
    conf.check()
    return Membership(conf, tuple(sorted(members, key=lambda x: x.node_id)))


def encode_announcement(node_id: int, peer_addr: str, client_addr: str) -> bytes:
    """The data of a leader's no-op that announces its own addresses."""
    doc = {"v": FORMAT, "announce": [node_id, peer_addr, client_addr]}
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def decode_announcement(data: bytes) -> tuple[int, str, str] | None:
    """``(node_id, peer_addr, client_addr)``, or None for data that is no announcement."""
    try:
        doc = json.loads(data)
        node_id, peer, client = doc["announce"]
        if doc.get("v") == FORMAT and isinstance(peer, str) and isinstance(client, str):
            return _id(node_id), peer, client
    except (KeyError, TypeError, ValueError, AttributeError):
        pass
    return None


def next_membership(prev: Membership, entry: Entry) -> Membership | None:
    """The membership after ``entry`` if the entry changes it (a CONFIG entry, or a no-op
    announcing an address), else None. Raises ``ValueError`` for a malformed CONFIG entry."""
    if entry.kind is EntryKind.CONFIG:
        return decode_membership(entry.data)
    if entry.kind is EntryKind.NOOP and entry.data:
        announced = decode_announcement(entry.data)
        if announced is not None:
            after = prev.with_address(*announced)
            return None if after == prev else after
    return None


def _id(x: object) -> int:
    if type(x) is not int or x < 1:
        raise ValueError(f"node id must be an int >= 1, got {x!r}")
    return x


def _ids(xs: object) -> tuple[int, ...]:
    if not isinstance(xs, list):
        raise ValueError(f"expected a list of ids, got {xs!r}")
    return tuple(_id(x) for x in xs)
