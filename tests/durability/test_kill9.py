"""Crash safety under kill -9: real ``trioraft run`` processes, real RocksDB, real ZeroMQ.

Four nodes: 1-3 are the initial voters, 4 joins as a learner. Eight writers put unique
keys without pause while a seeded chaos schedule kills nodes with SIGKILL and restarts
them: the leader half of the time, otherwise any node; sometimes a second node during the
election that follows; sometimes a restarted node again a moment later, while it is still
installing the snapshot it needed (the nodes snapshot every 200 entries and keep only 20
behind, so a node down for a second needs one). Meanwhile a membership task promotes node
4 to voter and demotes it again, over and over (each a joint-consensus change), so kills
land during membership changes too. Then every node runs again, a last write commits
everything, and once every node has applied it all processes are frozen and killed.

Offline, the fault suite's check (tests/jepsen/offline.py) opens each data dir as the
node would: committed entries agree index by index; each replica, brought to the highest
applied index from its own state and log tail, holds the same data; every acknowledged
write is on every replica, and no key holds a value nobody wrote. The run must have
installed at least one snapshot and completed at least one membership change, or it
proved nothing about them.

``TRIORAFT_CHAOS_SEED`` replays a schedule (timing still varies); the seed is printed, and
the failure message repeats it.
"""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path

import pytest
import trio

from harness.cluster import ProcessCluster
from jepsen.offline import offline_check
from trioraft import NodeConfig, open_client
from trioraft.client import Client
from trioraft.errors import TrioraftError
from trioraft.kv import layout
from wire.member_messages import MemberChange

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

CHAOS_SECONDS = 20
WRITERS = 8
VOTERS = (1, 2, 3)  # the initial voters; node 4 joins as a learner
LEARNER = 4
SETTINGS: dict[str, int | str | bool] = {"snapshot_entries": 200, "snapshot_catchup_entries": 20}


def cluster_id(cluster: ProcessCluster) -> int:
    voters = {i: cluster.peers[i] for i in VOTERS}  # node 4 joined, so it took their id
    return NodeConfig(node_id=1, peers=voters, peer_addr=voters[1]).cluster_id


async def leader_of(client: Client) -> int | None:
    for st in (await client.cluster_status(timeout=0.5)).values():
        if not isinstance(st, TrioraftError) and st.role.name == "LEADER":
            return int(st.node_id)
    return None


def start(cluster: ProcessCluster, node_id: int) -> None:
    if node_id == LEARNER:  # a restart finds its data dir: it does not join again
        cluster.start_joining(node_id, [cluster.clients[i] for i in VOTERS], learner=True)
    else:
        cluster.start(node_id)


async def chaos(
    cluster: ProcessCluster, client: Client, rng: random.Random, actions: list[str]
) -> None:
    ids = sorted(cluster.peers)
    end = trio.current_time() + CHAOS_SECONDS
    while trio.current_time() < end:
        await trio.sleep(rng.uniform(0.3, 1.5))
        leader = await leader_of(client)
        victim = leader if leader is not None and rng.random() < 0.5 else rng.choice(ids)
        down = [victim]
        cluster.kill(victim, signal.SIGKILL)
        if rng.random() < 0.3:  # a second crash while the cluster elects or catches up
            await trio.sleep(rng.uniform(0.0, 0.4))
            down.append(rng.choice([i for i in ids if i != victim]))
            cluster.kill(down[-1], signal.SIGKILL)
        actions.append(f"kill -9 {down} (leader was {leader})")
        await trio.sleep(rng.uniform(0.0, 1.0))
        for node_id in down:
            start(cluster, node_id)
        if rng.random() < 0.3:  # again, while it catches up (most likely by a snapshot)
            await trio.sleep(rng.uniform(0.05, 0.5))
            cluster.kill(down[0], signal.SIGKILL)
            actions.append(f"kill -9 [{down[0]}] again while it caught up")
            start(cluster, down[0])


async def membership(client: Client, rng: random.Random, changes: list[str]) -> None:
    """Promote node 4, demote it, promote it...: every change is a joint consensus."""
    voter = False
    while True:
        await trio.sleep(rng.uniform(0.2, 1.0))
        change = MemberChange.demote(LEARNER) if voter else MemberChange.promote(LEARNER)
        name = "demote 4" if voter else "promote 4"
        try:
            after = await client.update_cluster_conf([change], timeout=5)
        except TrioraftError as exc:  # a kill got in the way, or it was not caught up
            changes.append(f"{name}: {type(exc).__name__}")
            voter = await is_voter(client, voter)
            continue
        voter = LEARNER in after.voters
        changes.append(f"{name}: ok")


async def is_voter(client: Client, guess: bool) -> bool:
    try:
        return LEARNER in (await client.cluster_metadata(timeout=2)).membership.voters
    except TrioraftError:
        return guess


async def test_kill9_chaos_loses_no_acknowledged_write(tmp_path: Path) -> None:
    seed = int(os.environ.get("TRIORAFT_CHAOS_SEED", random.randrange(1 << 32)))
    print(f"\nTRIORAFT_CHAOS_SEED={seed}")
    rng = random.Random(seed)
    actions: list[str] = []
    changes: list[str] = []
    attempted: dict[bytes, bytes] = {}
    acked: dict[bytes, bytes] = {}
    cluster = ProcessCluster(tmp_path, 4, settings=SETTINGS)
    for node_id in VOTERS:
        cluster.peer_views[node_id] = {i: cluster.peers[i] for i in VOTERS}
    try:
        try:
            for node_id in VOTERS:
                cluster.start(node_id)
            with trio.fail_after(180):  # safety net only
                async with open_client(cluster.endpoints, timeout=30) as client:
                    await client.wait_leader(timeout=60)
                    start(cluster, LEARNER)
                    while LEARNER not in (await client.cluster_metadata()).membership.learners:
                        await trio.sleep(0.05)
                    stop = trio.Event()

                    async def writer(w: int) -> None:
                        n = 0
                        while not stop.is_set():
                            key, value = f"w{w}/{n}".encode(), f"{seed}/{w}/{n}".encode()
                            attempted[key] = value
                            n += 1
                            try:
                                await client.put(key, value, timeout=5)
                            except TrioraftError:
                                continue  # may or may not have committed
                            acked[key] = value

                    async with trio.open_nursery() as nursery:
                        for w in range(WRITERS):
                            nursery.start_soon(writer, w)
                        nursery.start_soon(membership, client, random.Random(seed + 1), changes)
                        await chaos(cluster, client, rng, actions)
                        stop.set()
                        nursery.cancel_scope.cancel()
                    for node_id in sorted(cluster.peers):
                        if not cluster.alive(node_id):
                            start(cluster, node_id)
                    top = await client.put("final", "write", timeout=60)
                    for endpoint in cluster.endpoints:
                        while True:
                            try:
                                if (await client.status(endpoint, timeout=2)).applied >= top:
                                    break
                            except TrioraftError:
                                pass
                            await trio.sleep(0.05)
            for proc in cluster.procs.values():  # freeze all at once, then kill -9
                proc.send_signal(signal.SIGSTOP)
            for node_id in sorted(cluster.peers):
                cluster.kill(node_id, signal.SIGKILL)
        finally:
            cluster.stop_all()
        installs = sum(
            cluster.log_path(i).read_text(errors="replace").count("installed snapshot")
            for i in sorted(cluster.peers)
        )
        print(f"{len(acked)} of {len(attempted)} writes acknowledged; {installs} snapshot installs")
        print(f"schedule {actions}\nmembership {changes}")
        assert len(actions) >= 5 and len(acked) >= 100
        assert installs >= 1, "no snapshot was installed: the run did not test installs"
        assert any(c.endswith(": ok") for c in changes), "no membership change completed"
        check_replicas(cluster, top, attempted, acked)
    except BaseException as exc:
        print(cluster.logs())
        raise AssertionError(
            f"kill -9 chaos failed with TRIORAFT_CHAOS_SEED={seed}; schedule {actions}; "
            f"membership {changes[-10:]}"
        ) from exc


def check_replicas(
    cluster: ProcessCluster, top: int, attempted: dict[bytes, bytes], acked: dict[bytes, bytes]
) -> None:
    """The fault suite's offline check (tests/jepsen/offline.py): committed entries agree
    index by index, and every replica, brought to the highest applied index from its own
    state and log tail, holds the same data. Then: every acknowledged write is there, and
    no key holds a value nobody wrote."""
    check, replicas = offline_check(
        {i: cluster.data_dir(i) for i in sorted(cluster.peers)},
        cluster_id(cluster),
        {i: cluster.peers[i] for i in VOTERS},
        SETTINGS,
        views={LEARNER: {LEARNER: cluster.peers[LEARNER]}},
    )
    assert check.valid is True, check.summary
    assert check.details["target"] >= top
    for node_id, data in replicas.items():
        values = {k: value_of(data, k) for k in attempted}
        lost = [k for k, v in acked.items() if values[k] != v]
        assert not lost, f"node {node_id} lost {len(lost)} acknowledged writes: {lost[:5]}"
        phantom = [k for k, v in values.items() if v is not None and v != attempted[k]]
        assert not phantom, f"node {node_id} holds values nobody wrote: {phantom[:5]}"


def value_of(data: dict[bytes, bytes], key: bytes) -> bytes | None:
    raw = data.get(layout.user_key(key))
    return None if raw is None else layout.unpack_value(key, raw).value
