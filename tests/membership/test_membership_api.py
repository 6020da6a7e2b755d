"""Membership through the client API on in-process nodes (real ZeroMQ, memory stores):
join, learners, promotion, removal (the leader too), concurrent changes, partitions,
notifications and leader discovery. No timing assertions: every wait is for a state."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from harness.inproc import InProcessCluster, cluster
from trioraft import ChangeInProgress, ConfigError, InvalidRequest, NodeBuilder, open_client
from trioraft.core import Role
from wire import member_messages as mm

pytestmark = pytest.mark.timeout(120)


async def wait_voters(c: InProcessCluster, node: int, voters: tuple[int, ...]) -> None:
    while c.voters(node) != voters:
        await trio.sleep(0.01)


async def test_a_joining_learner_gets_the_data_never_votes_and_is_promoted_on_request() -> None:
    with trio.fail_after(60):
        async with cluster(3, 1) as c, open_client(c.endpoints) as client:
            await c.wait_leader()
            rev = await client.put("before", "join")
            learner = await c.join(4, as_voter=False)
            await c.wait_applied(4, rev)
            assert learner._sm.get(b"before") == b"join"
            meta = await client.cluster_metadata()
            assert meta.membership.learners == [4] and meta.membership.role(4) == "learner"
            assert meta.membership.member(4) == mm.MemberAddress(
                4, c.peer_addrs[4], c.client_addrs[4], False
            )
            # the learner never campaigns, even cut off from every leader for a long time
            c.isolate(4)
            term = learner._core.status.term
            for _ in range(50):
                await trio.sleep(0.02)
                assert learner._core.status.role is Role.FOLLOWER
            assert learner._core.status.term == term
            c.isolate(4, cut=False)
            done = await client.promote(4)
            assert done.voters == [1, 2, 3, 4] and not done.joint
            await wait_voters(c, 4, (1, 2, 3, 4))


async def test_a_node_that_joins_as_voter_is_promoted_once_caught_up() -> None:
    with trio.fail_after(60):
        async with cluster(3, 1) as c, open_client(c.endpoints) as client:
            await c.wait_leader()
            for i in range(20):
                await client.put(f"k{i}", "v")
            await c.join(4)
            leader = await c.wait_leader()
            await wait_voters(c, leader, (1, 2, 3, 4))
            await wait_voters(c, 4, (1, 2, 3, 4))


async def test_two_concurrent_changes_one_wins_the_other_gets_a_clear_error() -> None:
    with trio.fail_after(60):
        async with cluster(3, 2) as c, open_client(c.endpoints) as client:
            await c.wait_leader()
            # The client learns the leader first (the write): with both followers cut off,
            # the leader steps down an election timeout (200 ms) later (check-quorum), and a
            # change still looking for it then would wait for a leader that cannot come.
            await client.put("warm", "up")
            changes = [
                [mm.MemberChange.add_learner(4, c.peer_addrs[4], c.client_addrs[4])],
                [mm.MemberChange.add_learner(5, c.peer_addrs[5], c.client_addrs[5])],
            ]
            outcomes: list[object] = [None, None]

            async def change(k: int) -> None:
                try:
                    outcomes[k] = await client.update_cluster_conf(changes[k])
                except ChangeInProgress as exc:
                    outcomes[k] = exc

            # Both followers cut off: the first change is appended but cannot commit, so
            # the second meets it in progress (without the cut the first could commit
            # before the second arrives, and both would win, one after the other).
            leader = c.leader_id()
            assert leader is not None
            followers = [i for i in c.running() if i != leader]
            for f in followers:
                c.isolate(f)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(change, 0)
                while 4 not in c.nodes[leader]._core.membership.conf.learners:
                    await trio.sleep(0.005)
                await change(1)
                for f in followers:
                    c.isolate(f, cut=False)
            won = [o for o in outcomes if isinstance(o, mm.ClusterMembership)]
            lost = [o for o in outcomes if isinstance(o, ChangeInProgress)]
            assert len(won) == 1 and len(lost) == 1, outcomes
            assert "in progress" in str(lost[0])
            assert len(won[0].learners) == 1


async def test_two_concurrent_joins_both_complete() -> None:
    """A join that meets another change in progress is answered ``Busy`` (retried by the
    client), not ``ChangeInProgress``: nodes started together join one after the other."""
    with trio.fail_after(60):
        async with cluster(3, 2) as c, open_client(c.endpoints) as client:
            await c.wait_leader()
            replies: list[mm.JoinClusterReply] = []

            async def join(node: int) -> None:
                reply = await client.join_cluster(
                    node, c.peer_addrs[node], c.client_addrs[node], auto_promote=False
                )
                replies.append(reply)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(join, 4)
                nursery.start_soon(join, 5)
            assert len(replies) == 2
            meta = await client.cluster_metadata()
            assert meta.membership.learners == [4, 5]


async def test_invalid_changes_are_refused_with_the_reason() -> None:
    with trio.fail_after(60):
        async with cluster(3, 1) as c, open_client(c.endpoints) as client:
            await c.wait_leader()
            with pytest.raises(InvalidRequest, match="unknown node 9"):
                await client.promote(9)
            with pytest.raises(InvalidRequest, match="duplicate address"):
                await client.add_learner(4, c.peer_addrs[1], c.client_addrs[4])
            with pytest.raises(InvalidRequest, match="already a member"):
                await client.add_learner(2, c.peer_addrs[4])
            three = [mm.MemberChange.remove(i) for i in (1, 2, 3)]
            with pytest.raises(InvalidRequest, match="last voter"):
                await client.update_cluster_conf(three)


async def test_removing_the_leader_hands_over_and_writes_go_on() -> None:
    with trio.fail_after(60):
        async with cluster(3, 0) as c, open_client(c.endpoints) as client:
            old = await c.wait_leader()
            rev = await client.put("k", "before")
            after = await client.remove_member(old)
            assert old not in after.voters and len(after.voters) == 2
            new = await c.wait_leader(other_than=old)
            assert c.nodes[old]._core.status.role is not Role.LEADER
            rev2 = await client.put("k", "after")
            assert rev2 > rev
            await c.wait_applied(new, rev2)
            assert c.nodes[old].members.removed or old not in c.voters(new)


async def test_a_change_with_a_minority_partitioned_completes_and_the_minority_catches_up() -> None:
    with trio.fail_after(60):
        async with cluster(3, 1) as c, open_client(c.endpoints) as client:
            leader = await c.wait_leader()
            cut = next(i for i in (1, 2, 3) if i != leader)
            c.isolate(cut)
            await c.join(4, as_voter=False, via=[c.endpoint(leader)])
            done = await client.promote(4)
            assert done.voters == [1, 2, 3, 4]
            rev = await client.put("k", "during")
            c.isolate(cut, cut=False)
            await wait_voters(c, cut, (1, 2, 3, 4))
            await c.wait_applied(cut, rev)


async def test_membership_notifications_and_watch_start_with_the_current_membership() -> None:
    with trio.fail_after(60):
        async with cluster(3, 1) as c, open_client(c.endpoints) as client:
            await c.wait_leader()
            node_seen: list[mm.ClusterMembership] = []
            client_seen: list[mm.ClusterMembership] = []

            async def notifier() -> None:
                async for m in c.nodes[3].membership_change_notifier():
                    node_seen.append(m)

            async def watcher() -> None:
                async for m in client.watch_membership():
                    client_seen.append(m)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(notifier)
                nursery.start_soon(watcher)
                while not node_seen or not client_seen:
                    await trio.sleep(0.01)
                assert node_seen[0].voters == client_seen[0].voters == [1, 2, 3]
                await client.add_learner(4, c.peer_addrs[4], c.client_addrs[4])
                # node 3 is a follower: it applies the change after it acknowledged it, so
                # the client may hear of it first; wait for each (fail_after is the net)
                while not node_seen or 4 not in node_seen[-1].learners:
                    await trio.sleep(0.01)
                while len(client_seen) < 2 or 4 not in client_seen[-1].learners:
                    await trio.sleep(0.01)
                nursery.cancel_scope.cancel()
            assert node_seen[-1].learners == [4]


async def test_the_membership_watch_moves_on_when_its_node_stops() -> None:
    with trio.fail_after(60):
        async with cluster(3, 1) as c:
            await c.wait_leader()
            seen: list[mm.ClusterMembership] = []
            async with open_client(c.endpoints) as client, trio.open_nursery() as nursery:

                async def watcher() -> None:
                    async for m in client.watch_membership():
                        seen.append(m)

                nursery.start_soon(watcher)
                while not seen:
                    await trio.sleep(0.01)
                await c.stop(1)  # the first endpoint: where the watch started
                await client.add_learner(4, c.peer_addrs[4], c.client_addrs[4])
                while 4 not in seen[-1].learners:
                    await trio.sleep(0.01)
                nursery.cancel_scope.cancel()


async def test_discover_leader_finds_a_leader_the_client_was_not_given() -> None:
    with trio.fail_after(60):
        async with cluster(3, 0) as c:
            leader = await c.wait_leader()
            follower = next(i for i in (1, 2, 3) if i != leader)
            async with open_client([c.endpoint(follower)]) as client:
                while True:
                    try:
                        node, endpoint = await client.discover_leader()
                        break
                    except Exception:  # the follower may not know the leader's address yet
                        await trio.sleep(0.02)
                assert (node, endpoint) == (leader, c.endpoint(leader))
                await client.put("via", "discovery")


async def test_transfer_leadership_to_a_chosen_voter() -> None:
    with trio.fail_after(60):
        async with cluster(3, 0) as c, open_client(c.endpoints) as client:
            leader = await c.wait_leader()
            target = next(i for i in (1, 2, 3) if i != leader)
            await client.put("k", "v")
            reply = await client.transfer_leader(target)
            assert reply.leader_id == target
            assert await c.wait_leader(other_than=leader) == target


async def test_a_restart_keeps_the_stored_membership_and_refuses_contradicting_flags() -> None:
    with trio.fail_after(60):
        async with cluster(3, 1) as c, open_client(c.endpoints) as client:
            await c.wait_leader()
            await c.join(4, as_voter=False)
            await client.promote(4)
            await wait_voters(c, 4, (1, 2, 3, 4))
            await c.stop(4)
            await c.start(4)  # same flags: a voter again, from its stored membership
            await wait_voters(c, 4, (1, 2, 3, 4))
            await c.stop(4)
            moved = c.cfgs[4].with_overrides(client_addr="tcp://127.0.0.1:1")
            with pytest.raises(ConfigError, match="the cluster knows node 4 at"):
                NodeBuilder(moved).with_store(c.stores[4].reopen()).start()
            node = await c.start(4)
            while not node._core.status.leader_id:  # reconnected (it must hear its removal)
                await trio.sleep(0.01)
            await client.remove_member(4)
            while not c.nodes[4].members.removed:  # it applied its own removal
                await trio.sleep(0.01)
            await c.stop(4)
            with pytest.raises(ConfigError, match="it was removed"):
                NodeBuilder(c.cfgs[4]).with_store(c.stores[4].reopen()).start()


async def test_a_learner_joining_after_compaction_gets_a_snapshot(tmp_path: Path) -> None:
    """The log the new node needs is compacted away on the leader: it receives a snapshot
    (with the membership in it), then the rest of the log, and is promoted."""
    settings = {"snapshot_entries": 40, "snapshot_catchup_entries": 5}
    with trio.fail_after(90):
        async with (
            cluster(3, 1, tmp_path, **settings) as c,
            open_client(c.endpoints) as client,
        ):
            leader = await c.wait_leader()
            for i in range(120):
                await client.put(f"k{i}", f"v{i}")
            while c.nodes[leader]._core.log_start[0] == 0:
                await client.put("more", "x")
            last = await client.put("last", "one")
            node = await c.join(4)
            await c.wait_applied(4, last)
            assert node._sm.get(b"k0") == b"v0" and node._sm.get(b"last") == b"one"
            assert node._core.log_start[0] > 0  # it started from a snapshot
            await wait_voters(c, 4, (1, 2, 3, 4))


async def test_a_new_cluster_waits_for_a_majority_before_its_first_election() -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            c = InProcessCluster(nursery, 3, 0)
            first = await c.start(1)
            await trio.sleep(1.0)  # several election timeouts (20 ms ticks): no campaign
            raft = first._core._raft
            assert raft.ticks == 0 and raft.role is Role.FOLLOWER  # no clock, no campaign
            await c.start(2)
            await c.wait_leader()
            nursery.cancel_scope.cancel()
