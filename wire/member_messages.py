"""Cluster-management requests a client sends to a node's client port, and the replies
(codes 70-89; see docs/membership.md).

``ClusterMembership`` is also what ``Node.membership_change_notifier()`` and
``Client.watch_membership()`` yield: a committed configuration with every member's
addresses, as of the log index of the entry that set it.
"""

from __future__ import annotations

from enum import IntEnum

from wire.codec import register
from wire.value import value


class MemberOp(IntEnum):
    """One operation of a membership change (the values of ``trioraft.core.ChangeOp``)."""

    ADD_LEARNER = 0  # a new non-voting member: needs node_id, peer_addr (and client_addr)
    PROMOTE = 1  # learner -> voter
    REMOVE = 2  # voter or learner -> gone
    DEMOTE = 3  # voter -> learner


@value
class MemberChange:
    op: MemberOp
    node_id: int
    peer_addr: str = ""
    client_addr: str = ""
    auto_promote: bool = False  # ADD_LEARNER: the leader promotes it once caught up

    @staticmethod
    def add_learner(
        node_id: int, peer_addr: str, client_addr: str = "", *, auto_promote: bool = False
    ) -> MemberChange:
        return MemberChange(MemberOp.ADD_LEARNER, node_id, peer_addr, client_addr, auto_promote)

    @staticmethod
    def promote(node_id: int) -> MemberChange:
        return MemberChange(MemberOp.PROMOTE, node_id)

    @staticmethod
    def remove(node_id: int) -> MemberChange:
        return MemberChange(MemberOp.REMOVE, node_id)

    @staticmethod
    def demote(node_id: int) -> MemberChange:
        return MemberChange(MemberOp.DEMOTE, node_id)


@value
class MemberAddress:
    """A member's addresses; ``client_addr`` is "" while unknown (an initial member that
    has not led yet: leaders announce their own)."""

    node_id: int
    peer_addr: str
    client_addr: str
    auto_promote: bool = False


@value
class ClusterMembership:
    """A configuration as of log index ``index``. ``voters_outgoing`` is non-empty only
    while a change is half done (joint consensus); ``learners_next`` are voters that
    become learners when it completes."""

    index: int
    voters: list[int]
    voters_outgoing: list[int]
    learners: list[int]
    learners_next: list[int]
    members: list[MemberAddress]

    @property
    def joint(self) -> bool:
        return bool(self.voters_outgoing)

    def ids(self) -> list[int]:
        """Every member, sorted."""
        return sorted(set(self.voters + self.voters_outgoing + self.learners + self.learners_next))

    def member(self, node_id: int) -> MemberAddress | None:
        return next((m for m in self.members if m.node_id == node_id), None)

    def role(self, node_id: int) -> str:
        """``voter``, ``voter (outgoing)``, ``voter -> learner``, ``learner`` or ``none``."""
        if node_id in self.voters:
            return "voter"
        if node_id in self.learners_next:
            return "voter -> learner"
        if node_id in self.voters_outgoing:
            return "voter (outgoing)"
        if node_id in self.learners:
            return "learner"
        return "none"


@value
class MemberProgress:
    """The leader's view of a member: the last log index known to be replicated there."""

    node_id: int
    match: int


@value
class UpdateClusterConfRequest:
    """Change the membership (to the leader): ``changes`` apply together, as one joint
    change if the voters change. Answered once the change is complete (committed)."""

    changes: list[MemberChange]


@value
class UpdateClusterConfReply:
    membership: ClusterMembership  # the committed configuration that completed the change


@value
class ClusterMetadataRequest:
    pass


@value
class ClusterMetadata:
    """The answering node's view; ``progress`` only when it is the leader."""

    cluster_id: int
    node_id: int
    leader_id: int
    leader_client_addr: str
    term: int
    commit: int
    applied: int
    last_index: int
    membership: ClusterMembership  # committed
    progress: list[MemberProgress]


@value
class DiscoverLeaderRequest:
    pass


@value
class DiscoverLeaderReply:
    """The leader this node knows (``leader_id`` 0: none) and its addresses ("" if the
    membership does not record them)."""

    leader_id: int
    term: int
    client_addr: str
    peer_addr: str


@value
class JoinClusterRequest:
    """A new node asks to be added as a learner (``auto_promote``: promoted to voter by
    the leader once its log is close enough). Idempotent: a node already a member with
    these addresses is answered at once."""

    node_id: int
    peer_addr: str
    client_addr: str
    auto_promote: bool = True


@value
class JoinClusterReply:
    """``cluster_id`` (the joining node cannot derive it) and the committed membership
    that includes the new node."""

    cluster_id: int
    membership: ClusterMembership


@value
class WatchMembershipRequest:
    """A stream: ``MembershipEvent`` with the current committed membership, then one per
    committed change; ends with ``WatchCanceled`` (``Unavailable``, retryable) when the
    node shuts down."""


@value
class MembershipEvent:
    membership: ClusterMembership


@value
class TransferLeaderRequest:
    """Hand leadership to ``target`` (0: the most up-to-date voter), to the leader;
    answered once another node leads (thesis §3.10)."""

    target: int = 0


@value
class TransferLeaderReply:
    leader_id: int
    term: int


ADMIN_REQUESTS: tuple[type, ...] = (
    UpdateClusterConfRequest,
    ClusterMetadataRequest,
    DiscoverLeaderRequest,
    JoinClusterRequest,
    WatchMembershipRequest,
    TransferLeaderRequest,
)

for _code, _cls in (
    (70, UpdateClusterConfRequest),
    (71, UpdateClusterConfReply),
    (72, ClusterMetadataRequest),
    (73, ClusterMetadata),
    (74, DiscoverLeaderRequest),
    (75, DiscoverLeaderReply),
    (76, JoinClusterRequest),
    (77, JoinClusterReply),
    (78, WatchMembershipRequest),
    (79, MembershipEvent),
    (80, TransferLeaderRequest),
    (81, TransferLeaderReply),
):
    register(_code, _cls)
