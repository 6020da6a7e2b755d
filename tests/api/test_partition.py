"""A leader cut off from its followers (the peer transport's test-only drop filter) while
the others elect a new leader that accepts writes: reads that the old leader answers after
that write must not be stale. Linearizable and lease reads fail or redirect; only eventual
reads may return the old value, with the old revision."""

from __future__ import annotations

import pytest
import trio

from harness.inproc import InProcessCluster, cluster
from trioraft import NotLeader, Timeout, TrioraftError, open_client
from trioraft.client import Client


async def partition_and_overwrite(c: InProcessCluster, client: Client) -> tuple[int, int, int]:
    """Write v1, cut the leader off, write v2 through the new leader; return
    (old leader, revision of v1, revision of v2)."""
    old = await c.wait_leader()
    rev1 = await client.put("k", "v1")
    c.isolate(old)
    new = await c.wait_leader(other_than=old)
    async with open_client([c.endpoint(new)]) as to_new:
        rev2 = await to_new.put("k", "v2")
    return old, rev1, rev2


async def stale_free_reads(client: Client, endpoint: str) -> list[object]:
    """Linearizable and lease reads on ``endpoint``: each is an error or not v1."""
    outcomes: list[object] = []
    for level in ("linearizable", "lease", "linearizable", "lease"):
        try:
            got = await client.get("k", consistency=level, endpoint=endpoint, timeout=0.5)
        except (NotLeader, Timeout) as exc:
            outcomes.append(type(exc).__name__)
        else:
            assert got != b"v1", f"{level} read returned the stale value"
            outcomes.append(got)
    return outcomes


async def test_isolated_leader_that_still_believes_never_answers_from_stale_state() -> None:
    """Without check-quorum the isolated leader never steps down on its own: the worst case.
    Its reads hang on the ReadIndex quorum round (no lease without check-quorum)."""
    with trio.fail_after(60):
        async with cluster(3, check_quorum=False) as c, open_client(c.endpoints) as client:
            old, rev1, rev2 = await partition_and_overwrite(c, client)
            assert c.nodes[old]._core.status.role.name == "LEADER"  # it still believes
            outcomes = await stale_free_reads(client, c.endpoint(old))
            assert outcomes == ["Timeout"] * 4
            stale = await client.get_with_revision(
                "k", consistency="eventual", endpoint=c.endpoint(old)
            )
            assert (stale.value, stale.revision) == (b"v1", rev1) and rev1 < rev2
            c.isolate(old, cut=False)  # healed: it hears the new term, steps down, catches up
            while True:
                try:
                    got = await client.get("k", timeout=1)
                except TrioraftError:
                    continue
                assert got == b"v2"
                break


async def test_partitioned_leader_with_check_quorum_steps_down_and_refuses() -> None:
    with trio.fail_after(60):
        async with cluster(3) as c, open_client(c.endpoints) as client:
            old, rev1, rev2 = await partition_and_overwrite(c, client)
            outcomes = await stale_free_reads(client, c.endpoint(old))
            assert set(outcomes) <= {"NotLeader", "Timeout"}
            # it stepped down (check-quorum) and knows no leader: it says so at once
            while c.nodes[old]._core.status.role.name == "LEADER":
                await trio.sleep(0.01)
            with pytest.raises(NotLeader):
                await client.get("k", consistency="lease", endpoint=c.endpoint(old))
            # the cluster client is redirected to the new leader and reads v2
            assert await client.get("k", consistency="lease") == b"v2"
            assert await client.get("k") == b"v2"
            stale = await client.get_with_revision(
                "k", consistency="eventual", endpoint=c.endpoint(old)
            )
            assert stale.revision == rev1 < rev2
