"""Cluster management for the client library: membership changes, metadata, leader
discovery and transfer, joining, and the membership watch (docs/membership.md).

``Client`` exposes these as methods; they live here to keep the key-value client apart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

import trio

from trioraft._client_conn import Connection, error_from
from wire import client_messages as cm
from wire import member_messages as mm
from wire.errors import ERROR_CODES, Timeout, TrioraftError, Unavailable


class _AdminClient(Protocol):
    """What these methods use of ``Client`` (a protocol: ``Client`` mixes them in)."""

    endpoints: list[str]
    timeout: float
    attempt_timeout: float

    def _conn(self, endpoint: str) -> Connection: ...

    def _forget_leader(self) -> None: ...

    async def _leader_call(
        self, request: Any, deadline: float, outcome: Any, retry_uncertain: bool
    ) -> Any: ...

    async def status(self, endpoint: str, *, timeout: float | None = None) -> cm.StatusReply: ...

    async def update_cluster_conf(
        self, changes: Sequence[mm.MemberChange], *, timeout: float | None = None
    ) -> mm.ClusterMembership: ...


class ClusterAdmin:
    """The cluster-management methods of ``Client``."""

    async def update_cluster_conf(
        self: _AdminClient, changes: Sequence[mm.MemberChange], *, timeout: float | None = None
    ) -> mm.ClusterMembership:
        """Change the membership: ``changes`` apply together, through joint consensus if
        the voters change (Raft thesis §4.3). Returns the committed configuration once the
        change is complete. Raises ``ChangeInProgress`` while another change is not
        complete, ``InvalidRequest`` for a change that does not fit the configuration
        (unknown node, duplicate address, removing the last voter, ...). If cancelled or
        timed out, the change may still complete; it is not retried after an attempt with
        an unknown outcome (``Timeout``)."""
        return await update_cluster_conf(self, changes, timeout)

    async def add_learner(
        self: _AdminClient,
        node_id: int,
        peer_addr: str,
        client_addr: str = "",
        *,
        auto_promote: bool = False,
        timeout: float | None = None,
    ) -> mm.ClusterMembership:
        """Add a non-voting member (``auto_promote``: the leader promotes it once caught up)."""
        change = mm.MemberChange.add_learner(
            node_id, peer_addr, client_addr, auto_promote=auto_promote
        )
        return await self.update_cluster_conf([change], timeout=timeout)

    async def promote(
        self: _AdminClient, node_id: int, *, timeout: float | None = None
    ) -> mm.ClusterMembership:
        """Make learner ``node_id`` a voter."""
        return await self.update_cluster_conf([mm.MemberChange.promote(node_id)], timeout=timeout)

    async def remove_member(
        self: _AdminClient, node_id: int, *, timeout: float | None = None
    ) -> mm.ClusterMembership:
        """Remove voter or learner ``node_id`` (the leader too: it hands over, then steps down)."""
        return await self.update_cluster_conf([mm.MemberChange.remove(node_id)], timeout=timeout)

    async def replace_member(
        self: _AdminClient, old: int, new: int, *, timeout: float | None = None
    ) -> mm.ClusterMembership:
        """Promote learner ``new`` and remove ``old`` in one joint change."""
        changes = [mm.MemberChange.promote(new), mm.MemberChange.remove(old)]
        return await self.update_cluster_conf(changes, timeout=timeout)

    async def cluster_metadata(
        self: _AdminClient, *, endpoint: str | None = None, timeout: float | None = None
    ) -> mm.ClusterMetadata:
        """Members, roles, addresses, leader, term, commit and applied index and the
        configuration index, as the leader (or ``endpoint``) sees them."""
        request = mm.ClusterMetadataRequest()
        if endpoint is not None:
            reply = await self._conn(endpoint).call(request, timeout or self.attempt_timeout)
        else:
            reply = await leader_call(self, request, timeout, retry=True)
        assert isinstance(reply, mm.ClusterMetadata)
        return reply

    async def join_cluster(
        self: _AdminClient,
        node_id: int,
        peer_addr: str,
        client_addr: str,
        *,
        auto_promote: bool = True,
        timeout: float | None = None,
    ) -> mm.JoinClusterReply:
        """Ask the cluster to add node ``node_id`` as a learner (idempotent); the reply
        carries the cluster id the new node must use and the membership that includes it."""
        request = mm.JoinClusterRequest(node_id, peer_addr, client_addr, auto_promote)
        reply = await leader_call(self, request, timeout, retry=True)
        assert isinstance(reply, mm.JoinClusterReply)
        return reply

    async def transfer_leader(
        self: _AdminClient, target: int | None = None, *, timeout: float | None = None
    ) -> mm.TransferLeaderReply:
        """Hand leadership to voter ``target`` (None: the most up-to-date one), thesis
        §3.10; returns the new leader once it leads. Writes are refused meanwhile."""
        request = mm.TransferLeaderRequest(target or 0)
        reply = await leader_call(self, request, timeout, retry=False)
        assert isinstance(reply, mm.TransferLeaderReply)
        self._forget_leader()
        return reply

    def watch_membership(self: _AdminClient) -> AsyncIterator[mm.ClusterMembership]:
        """``async for m in client.watch_membership()``: the committed membership first,
        then one per committed change; the stream moves to another endpoint when its node
        stops (a node that shuts down ends it with ``Unavailable``, which is retried)."""
        return watch_membership(self)


async def leader_call(
    client: _AdminClient, request: Any, timeout: float | None, retry: bool
) -> Any:
    """``request`` to the leader, with the client's retries (``retry``: also after an
    attempt whose outcome is unknown)."""
    from trioraft.client import _Outcome

    limit = timeout or client.timeout
    try:
        return await client._leader_call(request, trio.current_time() + limit, _Outcome(), retry)
    except trio.TooSlowError:
        raise Timeout(f"gave up after {limit:g} s") from None


async def update_cluster_conf(
    client: _AdminClient, changes: Sequence[mm.MemberChange], timeout: float | None
) -> mm.ClusterMembership:
    request = mm.UpdateClusterConfRequest(list(changes))
    reply = await leader_call(client, request, timeout, retry=False)
    assert isinstance(reply, mm.UpdateClusterConfReply)
    return reply.membership


async def discover_via_members(client: _AdminClient, timeout: float) -> tuple[int, str] | None:
    """Ask the endpoints which node leads and at which client address (the leader may
    be a member the client was not given): the first reachable answer that names a
    leader whose status confirms it."""
    for endpoint in list(client.endpoints):
        try:
            reply = await client._conn(endpoint).call(mm.DiscoverLeaderRequest(), timeout)
        except TrioraftError:
            continue
        if not isinstance(reply, mm.DiscoverLeaderReply) or not reply.client_addr:
            continue
        try:
            st = await client.status(reply.client_addr, timeout=timeout)
        except TrioraftError:
            continue
        if st.role == cm.Role.LEADER:
            return st.node_id, reply.client_addr
    return None


async def watch_membership(client: _AdminClient) -> AsyncIterator[mm.ClusterMembership]:
    """The committed membership, then each change; across node restarts and failures
    (the stream moves to another endpoint, and yields a membership only if it is newer
    than the last one yielded)."""
    last: mm.ClusterMembership | None = None
    turn = 0
    backoff = 0.01
    while True:
        endpoint = client.endpoints[turn % len(client.endpoints)]
        conn = client._conn(endpoint)
        try:
            stream = await conn.open_stream(mm.WatchMembershipRequest(), client.attempt_timeout)
        except (Unavailable, Timeout):
            turn += 1
            await trio.sleep(backoff)
            backoff = min(backoff * 2, 0.5)
            continue
        try:
            while True:
                msg = await stream.get(client.attempt_timeout)
                if msg is None:
                    if stream.broken or not await _alive(client, endpoint):
                        break
                    continue
                if isinstance(msg, mm.MembershipEvent):
                    backoff = 0.01
                    m = msg.membership
                    if last is None or (m.index >= last.index and m != last):
                        last = m
                        yield m
                elif isinstance(msg, cm.WatchCanceled):
                    if not msg.retryable:
                        raise ERROR_CODES.get(msg.code, TrioraftError)(msg.message)
                    break  # e.g. the node shuts down: go on elsewhere
                elif isinstance(msg, cm.ErrorReply):
                    raise error_from(msg)
        finally:
            conn.close_stream(stream)
        turn += 1
        await trio.sleep(backoff)


async def _alive(client: _AdminClient, endpoint: str) -> bool:
    try:
        await client.status(endpoint, timeout=client.attempt_timeout)
    except TrioraftError:
        return False
    return True
