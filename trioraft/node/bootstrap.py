"""Where a node's membership comes from when it starts, and how a new node joins.

- **A new cluster**: every initial voter starts from the voters of its ``--peers`` (the
  base, index 0, not stored until a change applies). Peer addresses of initial members
  always come from the local ``--peers`` (a node may reach a peer through a proxy); a
  member's own client address becomes known to the others when it first leads.
- **Joining** (``--join ENDPOINTS``): the node asks the cluster (``join_cluster``) to add
  it as a learner; the reply carries the cluster id (which it cannot derive) and the
  membership, stored at once, before anything else, so a crash cannot leave a data dir
  that looks like a cluster of its own.
- **A restart** keeps the membership stored with the state machine (as of the applied
  index; ``trioraft.kv.membership``), or a snapshot's; the log's configuration entries
  bring it up to date. Flags that disagree with it are refused (``check_flags``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from storage import Store
from trioraft.config import NodeConfig
from trioraft.core.confstate import (
    ConfState,
    Member,
    Membership,
    decode_membership,
)
from trioraft.kv.membership import MembershipRecord
from wire import member_messages as mm
from wire.errors import ConfigError, StorageError
from wire.messages import SnapshotMeta


@dataclass(frozen=True, slots=True)
class JoinResult:
    """What ``join_cluster`` learned: the cluster's id and the membership that adds us."""

    cluster_id: int
    membership: Membership


def initial_membership(config: NodeConfig) -> Membership:
    """A new cluster's configuration from ``--peers``: every listed node votes. No
    addresses: they are this node's view (a peer may be reached through a proxy) and the
    state machine must be the same everywhere; the first configuration entry records the
    proposer's view of the peer addresses, and each member's client address becomes known
    when it first leads (its announcement)."""
    return Membership(ConfState.of(config.peers))


def recover(
    config: NodeConfig,
    record: MembershipRecord,
    store: Store,
    start: SnapshotMeta | None,
    join: JoinResult | None,
) -> tuple[int, Membership]:
    """The membership to start from and the index of the entry that set it (the core
    applies the configuration entries of the log above it)."""
    if join is not None and not record.stored:
        # Before anything else, and durably: see the module docstring.
        record.write_base(0, join.membership)
        store.sync()
    if record.value is not None and record.stored:
        return record.value
    if config.join:
        raise StorageError(
            f"data dir {store.path} belongs to node {config.node_id}, which never finished "
            "joining its cluster; remove the dir and join again"
        )
    if start is not None and start.membership:
        try:
            base = start.index, decode_membership(start.membership)
        except ValueError as exc:
            raise StorageError(f"data dir {store.path}: snapshot membership: {exc}") from None
    else:
        base = 0, initial_membership(config)
    record.set_base(*base)
    return base


def check_flags(config: NodeConfig, m: Membership, index: int) -> None:
    """Refuse to start with settings that contradict the stored membership."""
    me = m.member(config.node_id)
    if config.node_id not in m.conf.ids():
        raise ConfigError(
            f"node {config.node_id} is not a member of its cluster (configuration at log "
            f"index {index}: {m.conf}); it was removed: start it with an empty data dir "
            "and join again"
        )
    if me is None:
        return
    if me.client_addr and me.client_addr != config.client_addr:
        raise ConfigError(
            f"client_addr: the cluster knows node {config.node_id} at {me.client_addr} "
            f"(configuration at log index {index}), not {config.client_addr}"
        )
    initial = len(config.peers) > 1 or not config.join  # initial members keep --peers
    if not initial and me.peer_addr != config.peer_addr:
        raise ConfigError(
            f"peer_addr: the cluster knows node {config.node_id} at {me.peer_addr} "
            f"(configuration at log index {index}), not {config.peer_addr}"
        )


def peer_map(config: NodeConfig, m: Membership) -> dict[int, str]:
    """Every other member's peer address: the local ``--peers`` for initial members (they
    may be reached through proxies), the membership's record for the others."""
    out: dict[int, str] = {}
    for node in sorted(m.conf.ids() - {config.node_id}):
        record = m.member(node)
        addr = config.peers.get(node) or (record.peer_addr if record else "")
        if addr:
            out[node] = addr
    return out


def holds_data(config: NodeConfig) -> bool:
    """Whether the data dir already holds a trioraft store (a restart)."""
    return os.path.exists(os.path.join(config.data_dir, "db", "CURRENT"))


async def join_cluster(config: NodeConfig, *, timeout: float = 60.0) -> JoinResult:
    """Ask the cluster at ``config.join`` to add this node as a learner; returns once the
    change is committed. Raises ``Timeout``, or the cluster's refusal (``InvalidRequest``
    for a conflicting id or address)."""
    from trioraft.client import open_client  # the client library imports the runtime

    async with open_client(config.join, timeout=timeout) as client:
        reply = await client.join_cluster(
            config.node_id,
            config.peer_addr,
            config.client_addr,
            auto_promote=config.join_as_voter,
        )
    return JoinResult(reply.cluster_id, from_wire(reply.membership))


def to_wire(index: int, m: Membership) -> mm.ClusterMembership:
    c = m.conf
    return mm.ClusterMembership(
        index,
        list(c.voters),
        list(c.voters_outgoing),
        list(c.learners),
        list(c.learners_next),
        [
            mm.MemberAddress(x.node_id, x.peer_addr, x.client_addr, x.auto_promote)
            for x in m.members
        ],
    )


def from_wire(w: mm.ClusterMembership) -> Membership:
    conf = ConfState.of(w.voters, w.voters_outgoing, w.learners, w.learners_next)
    try:
        conf.check()
    except ValueError as exc:
        raise ConfigError(f"the cluster sent an invalid membership: {exc}") from None
    members = [Member(x.node_id, x.peer_addr, x.client_addr, x.auto_promote) for x in w.members]
    return Membership(conf).with_members(members)
