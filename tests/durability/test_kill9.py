"""Crash safety under kill -9: real ``trioraft run`` processes, real RocksDB, real ZeroMQ.

Eight writers put unique keys without pause while a seeded chaos schedule kills nodes with
SIGKILL (the leader half of the time, otherwise any node; sometimes a second node during
the election that follows) and restarts them. Then every node runs again, a last write
commits everything, and once every node has applied it all processes are frozen and killed.
Offline, each data dir is opened as the node would open it: the logs agree up to the
highest applied index, each replica is brought to that index from its own log, and the
replicas' state (a hash of the whole kv column family) is identical; every acknowledged
write is present on every replica, and no key holds a value nobody wrote.

Membership changes and snapshot installs do not exist yet: when they do, the schedule
should kill during them too. ``TRIORAFT_CHAOS_SEED`` replays a schedule (timing still
varies); the seed is printed, and the failure message repeats it.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from harness.cluster import ProcessCluster, process_cluster
from storage import Identity, open_store
from trioraft import NodeConfig, open_client
from trioraft.errors import TrioraftError
from trioraft.kv.state_machine import KVStateMachine
from wire.messages import Entry

pytestmark = pytest.mark.integration

CHAOS_SECONDS = 20
WRITERS = 8


@dataclass
class Replica:
    node_id: int
    applied: int
    entries: list[Entry]


def cluster_identity(cluster: ProcessCluster, node_id: int) -> Identity:
    cfg = NodeConfig(
        node_id=node_id,
        peers=cluster.peers,
        peer_addr=cluster.peers[node_id],
        client_addr=cluster.clients[node_id],
    )
    return Identity(cfg.cluster_id, node_id)


def read_replica(cluster: ProcessCluster, node_id: int) -> Replica:
    with open_store(str(cluster.data_dir(node_id)), cluster_identity(cluster, node_id)) as store:
        state = store.load_raft_state()
        applied = store.applied_index()
    return Replica(node_id, applied, state.entries)


def state_at(
    cluster: ProcessCluster, replica: Replica, index: int, keys: list[bytes]
) -> tuple[str, dict[bytes, bytes | None]]:
    """Bring a replica to ``index`` from its own log (as a restart would); return a hash of
    its whole kv column family and the values of ``keys``."""
    path = str(cluster.data_dir(replica.node_id))
    with open_store(path, cluster_identity(cluster, replica.node_id)) as store:
        sm = KVStateMachine(store)
        sm.apply(tuple(e for e in replica.entries if sm.applied < e.index <= index))
        assert sm.applied == index
        digest = hashlib.sha256()
        for key, value in store.scan():
            digest.update(len(key).to_bytes(4, "big") + key + len(value).to_bytes(4, "big"))
            digest.update(value)
        return digest.hexdigest(), {key: sm.get(key) for key in keys}


async def leader_of(client) -> int | None:
    for st in (await client.cluster_status(timeout=0.5)).values():
        if not isinstance(st, TrioraftError) and st.role.name == "LEADER":
            return int(st.node_id)
    return None


async def chaos(cluster: ProcessCluster, client, rng: random.Random, actions: list[str]) -> None:
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
            cluster.start(node_id)


async def test_kill9_chaos_loses_no_acknowledged_write(tmp_path: Path) -> None:
    seed = int(os.environ.get("TRIORAFT_CHAOS_SEED", random.randrange(1 << 32)))
    print(f"\nTRIORAFT_CHAOS_SEED={seed}")
    rng = random.Random(seed)
    actions: list[str] = []
    attempted: dict[bytes, bytes] = {}
    acked: dict[bytes, bytes] = {}
    try:
        with process_cluster(tmp_path, size=3, tick_ms=50) as cluster:
            with trio.fail_after(150):  # safety net only
                async with open_client(cluster.endpoints, timeout=30) as client:
                    await client.wait_leader(timeout=60)
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
                        await chaos(cluster, client, rng, actions)
                        stop.set()
                    for node_id in sorted(cluster.peers):
                        if not cluster.alive(node_id):
                            cluster.start(node_id)
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
        print(f"{len(acked)} of {len(attempted)} writes acknowledged; {actions}")
        assert len(actions) >= 5 and len(acked) >= 100
        check_replicas(cluster, top, attempted, acked)
    except BaseException as exc:
        raise AssertionError(
            f"kill -9 chaos failed with TRIORAFT_CHAOS_SEED={seed}; schedule {actions}"
        ) from exc


def check_replicas(
    cluster: ProcessCluster, top: int, attempted: dict[bytes, bytes], acked: dict[bytes, bytes]
) -> None:
    replicas = [read_replica(cluster, i) for i in sorted(cluster.peers)]
    target = max(r.applied for r in replicas)
    assert target >= top
    reference = max(replicas, key=lambda r: r.applied).entries[:target]
    for r in replicas:  # log matching: a replica behind holds the same committed entries
        assert r.entries[:target] == reference, f"node {r.node_id}: log differs below {target}"
    keys = sorted(attempted)
    states = {r.node_id: state_at(cluster, r, target, keys) for r in replicas}
    hashes = {node_id: h for node_id, (h, _) in states.items()}
    assert len(set(hashes.values())) == 1, f"replicas differ at index {target}: {hashes}"
    for node_id, (_, values) in states.items():
        lost = [k for k, v in acked.items() if values[k] != v]
        assert not lost, f"node {node_id} lost {len(lost)} acknowledged writes: {lost[:5]}"
        phantom = [k for k, v in values.items() if v is not None and v != attempted[k]]
        assert not phantom, f"node {node_id} holds values nobody wrote: {phantom[:5]}"
