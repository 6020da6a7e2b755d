"""Three real `trioraft run` processes: writes survive a kill -9 of the leader.

The issue's acceptance test: write 1,000 keys, kill -9 the leader, see a new leader, write
1,000 more, restart the killed node, and read every acknowledged key back from every node's
own state (eventual reads, once each node has applied the last acknowledged revision).
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import trio

from harness.cluster import process_cluster
from trioraft.client import open_client
from trioraft.errors import TrioraftError

pytestmark = pytest.mark.integration


async def write_keys(client, prefix: str, n: int, acked: dict[bytes, bytes]) -> int:
    """Write n keys with 32 concurrent writers; record acknowledged ones; return max revision."""
    top = 0
    todo = iter(range(n))

    async def writer() -> None:
        nonlocal top
        for i in todo:
            key, value = f"{prefix}/{i:05d}".encode(), f"value-{prefix}-{i}".encode()
            revision = await client.put(key, value, timeout=30)
            acked[key] = value
            top = max(top, revision)

    async with trio.open_nursery() as nursery:
        for _ in range(32):
            nursery.start_soon(writer)
    return top


async def wait_applied(client, endpoint: str, revision: int) -> None:
    while True:
        try:
            st = await client.status(endpoint, timeout=2)
            if st.applied >= revision:
                return
        except TrioraftError:
            pass
        await trio.sleep(0.05)


async def test_kill_leader_and_restart(tmp_path: Path) -> None:
    with process_cluster(tmp_path, size=3, tick_ms=50) as cluster:
        acked: dict[bytes, bytes] = {}
        with trio.fail_after(240):  # safety net only
            async with open_client(cluster.endpoints, timeout=30) as client:
                leader_id, _ = await client.wait_leader(timeout=60)
                await write_keys(client, "a", 1000, acked)

                cluster.kill(leader_id, signal.SIGKILL)
                survivors = [cluster.clients[i] for i in sorted(cluster.clients) if i != leader_id]
                async with open_client(survivors, timeout=30) as client2:
                    new_leader, _ = await client2.wait_leader(timeout=60)
                    assert new_leader != leader_id
                    top = await write_keys(client2, "b", 1000, acked)

                cluster.start(leader_id)
                assert len(acked) == 2000
                for node_id in sorted(cluster.clients):
                    endpoint = cluster.clients[node_id]
                    await wait_applied(client, endpoint, top)
                    missing = []
                    for key, value in acked.items():
                        got = await client.get(key, consistency="eventual", endpoint=endpoint)
                        if got != value:
                            missing.append((key, got))
                    assert not missing, f"node {node_id} lost {len(missing)} keys: {missing[:5]}"
