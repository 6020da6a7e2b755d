"""Snapshots in running nodes: the policy's compaction, saves, catch-up by transfer, resume,
bad chunks, restart from a snapshot. In-process nodes on RocksDB (``harness.inproc``); timeouts
are safety nets, never assertions about speed."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from pathlib import Path

import trio

from harness.inproc import InProcessCluster
from harness.inproc import cluster as inproc_cluster
from trioraft import open_client
from wire.messages import SnapshotChunk

# snapshots every 50 entries, nothing kept behind them, small chunks: transfers happen
SMALL = {
    "snapshot_entries": 50,
    "snapshot_catchup_entries": 0,
    "snapshot_chunk_bytes": 64 << 10,
    "snapshot_window": 4,
}


def cluster(root: Path, n: int) -> AbstractAsyncContextManager[InProcessCluster]:
    return inproc_cluster(n, data_root=root, **SMALL)


async def write_many(client: object, n: int, prefix: str = "k", size: int = 100) -> None:
    async with trio.open_nursery() as nursery:
        for w in range(8):

            async def writer(w: int = w) -> None:
                for i in range(w, n, 8):
                    await client.put(f"{prefix}{i:06d}", f"{i}:" + "x" * size)  # type: ignore[attr-defined]

            nursery.start_soon(writer)


async def snapshot_size(c: object, node_id: int) -> int:
    latest = c.snaps(node_id).sdir.latest()  # type: ignore[attr-defined]
    assert latest is not None
    return (await trio.Path(latest.path).stat()).st_size


async def same_data(c: object, a: int, b: int) -> None:
    na, nb = c.nodes[a], c.nodes[b]  # type: ignore[attr-defined]
    assert na._sm.applied == nb._sm.applied
    assert list(na._store.scan(b"")) == list(nb._store.scan(b""))


async def test_policy_compacts_the_log_without_a_file(tmp_path: Path) -> None:
    """Past ``snapshot_entries`` applied entries each node drops its log up to its applied
    index, in memory and on disk, and writes no snapshot file: nobody needed one."""
    with trio.fail_after(60):
        async with cluster(tmp_path, 3) as c, open_client(c.endpoints) as client:
            await c.wait_leader()
            await write_many(client, 200)
            for i in c.cfgs:
                await c.wait_compacted(i, 100)
                await c.wait_snapshots_settled(i)
                node = c.nodes[i]
                start, _ = node._core.log_start
                assert node._store.load_raft_state().snapshot.index >= start  # type: ignore[union-attr]
                assert c.snaps(i).compactions >= 1
                assert c.snaps(i).built == 0 and c.snaps(i).sdir.snapshots() == []
                in_memory = node._core.status.last_index - start
                assert in_memory < 100
                while node._garbage:  # the dropped entries, freed a slice per loop turn
                    await trio.sleep(0.01)


async def test_compaction_goes_no_further_than_the_core_has_applied(tmp_path: Path) -> None:
    """The state machine can be a batch ahead of the core's applied index (on a leader,
    until the batch's own write is synced): asked to compact past the core's applied
    index, the node compacts to it, and the core keeps its invariants."""
    with trio.fail_after(60):
        async with inproc_cluster(1, data_root=tmp_path) as c, open_client(c.endpoints) as c1:
            await c.wait_leader()
            for n in range(20):
                await c1.put(f"k{n}", "v")
            node = c.nodes[1]
            applied = node._core.status.applied
            snaps = c.snaps(1)
            snaps._applied = lambda: applied + 5  # the state machine a batch ahead
            before = node._core.log_start[0]
            dropped = snaps.compact(node._core, applied + 5)
            snaps._applied = lambda: node._sm.applied
            assert node._core.log_start[0] == applied
            assert dropped and len(dropped) == applied - before  # what held each entry
            assert node._store.load_raft_state().snapshot.index == applied  # type: ignore[union-attr]
            await c1.put("after", "v")  # and the node goes on
            assert await c1.get("after") == b"v"


async def test_save_builds_a_file_and_prunes(tmp_path: Path) -> None:
    """A saved snapshot is a file of the applied state; the oldest beyond
    ``snapshot_keep`` go."""
    with trio.fail_after(60):
        async with cluster(tmp_path, 1) as c, open_client(c.endpoints) as client:
            await c.wait_leader()
            keep = c.cfgs[1].snapshot_keep
            for n in range(keep + 1):
                await client.put(f"saved{n}", "v")
                ref, _size, _sha = await c.snaps(1).save()
                assert ref.index == c.nodes[1]._sm.applied
            await c.wait_snapshots_settled(1)
            assert c.snaps(1).built == keep + 1
            assert len(c.snaps(1).sdir.snapshots()) == keep


async def test_follower_down_past_compaction_catches_up_by_snapshot(tmp_path: Path) -> None:
    """A follower stopped while the leader compacts past its log gets the snapshot,
    installs it, and then follows the log: same data, same applied index."""
    with trio.fail_after(120):
        async with cluster(tmp_path, 3) as c, open_client(c.endpoints) as client:
            leader = await c.wait_leader()
            lagging = next(i for i in c.cfgs if i != leader)
            await client.put("before", "1")
            await c.stop(lagging)
            await write_many(client, 300)
            await c.wait_compacted(leader, 200)
            await c.start(lagging)
            await client.put("after", "2")
            top = c.nodes[leader]._sm.applied
            await c.wait_applied(lagging, top)
            await same_data(c, leader, lagging)
            assert c.snaps(lagging).installed >= 1
            assert c.snaps(leader).stats.sent >= 1
            got = await client.get(
                "k000123", consistency="eventual", endpoint=c.cfgs[lagging].client_addr
            )
            assert got == b"123:" + b"x" * 100


async def test_transfer_cut_in_the_middle_resumes(tmp_path: Path) -> None:
    """Chunks stop reaching the follower halfway (a cut link); the sender stalls, offers
    again, and the follower answers with the offset it stored: the transfer resumes
    there instead of starting over."""
    with trio.fail_after(120):
        async with cluster(tmp_path, 3) as c, open_client(c.endpoints) as client:
            leader = await c.wait_leader()
            lagging = next(i for i in c.cfgs if i != leader)
            await c.stop(lagging)
            await write_many(client, 400, size=2000)  # ~0.8 MB: a dozen 64 KiB chunks
            await c.wait_compacted(leader, 300)
            cut = {"on": True, "dropped": 0}

            def cut_halfway(chunk: SnapshotChunk) -> SnapshotChunk | None:
                if cut["on"] and chunk.offset >= 5 * (64 << 10):
                    cut["dropped"] += 1
                    return None
                return chunk

            c.snaps(leader).chunk_filter = cut_halfway
            await c.start(lagging)
            while cut["dropped"] < 3:
                await trio.sleep(0.01)
            await trio.sleep(1.5)  # longer than the ack timeout: the sender stalls
            cut["on"] = False
            await c.wait_applied(lagging, c.nodes[leader]._sm.applied)
            stats = c.snaps(lagging).stats
            assert stats.resumed >= 1
            total = await snapshot_size(c, leader)
            # nothing stored was sent twice: the follower stored each byte once
            assert stats.bytes_received == total
            await same_data(c, leader, lagging)


async def test_corrupted_chunk_is_detected_and_sent_again(tmp_path: Path) -> None:
    """A chunk damaged in flight fails its CRC32 at the follower, which asks for it again;
    the file arrives intact (its SHA-256 checks out) and is installed."""
    with trio.fail_after(120):
        async with cluster(tmp_path, 3) as c, open_client(c.endpoints) as client:
            leader = await c.wait_leader()
            lagging = next(i for i in c.cfgs if i != leader)
            await c.stop(lagging)
            await write_many(client, 300, size=1000)
            await c.wait_compacted(leader, 200)
            damaged: list[int] = []

            def flip_one(chunk: SnapshotChunk) -> SnapshotChunk:
                if not damaged and chunk.offset > 0:
                    damaged.append(chunk.offset)
                    data = bytearray(chunk.data)
                    data[len(data) // 2] ^= 0xFF
                    return SnapshotChunk(**{**_fields(chunk), "data": bytes(data)})
                return chunk

            c.snaps(leader).chunk_filter = flip_one
            await c.start(lagging)
            await c.wait_applied(lagging, c.nodes[leader]._sm.applied)
            assert damaged
            assert c.snaps(lagging).stats.bad_chunks == 1
            assert c.snaps(leader).stats.resent_chunks >= 1
            assert c.snaps(lagging).stats.sha_failures == 0
            await same_data(c, leader, lagging)


def _fields(chunk: SnapshotChunk) -> dict[str, object]:
    return {f: getattr(chunk, f) for f in chunk.__dataclass_fields__}


async def test_restart_from_snapshot_and_log_tail(tmp_path: Path) -> None:
    """A node restarted after compaction recovers from its snapshot point plus the log
    tail, with the same data and no replay of what the snapshot covers."""
    with trio.fail_after(120):
        async with cluster(tmp_path, 3) as c, open_client(c.endpoints) as client:
            leader = await c.wait_leader()
            await write_many(client, 200)
            for i in c.cfgs:
                await c.wait_compacted(i, 100)
            await client.put("tail", "t")
            applied = {i: c.nodes[i]._sm.applied for i in c.cfgs}
            for i in sorted(c.cfgs):
                await c.stop(i)
            for i in sorted(c.cfgs):
                await c.start(i)
                state = c.nodes[i]._store.load_raft_state()
                assert state.snapshot is not None and state.snapshot.index >= 100
                assert c.nodes[i]._sm.applied >= state.snapshot.index
            await c.wait_leader()
            await client.put("again", "a")
            assert await client.get("tail") == b"t"
            assert await client.get("k000150") is not None
            for i in c.cfgs:
                assert c.nodes[i]._sm.applied >= applied[i]
            del leader


async def test_receiver_restarted_mid_transfer_resumes_from_its_partial_file(
    tmp_path: Path,
) -> None:
    """The follower is stopped halfway through a transfer and started again: what it had
    stored survives in its partial file, and the new transfer resumes there."""
    with trio.fail_after(120):
        async with cluster(tmp_path, 3) as c, open_client(c.endpoints) as client:
            leader = await c.wait_leader()
            lagging = next(i for i in c.cfgs if i != leader)
            await c.stop(lagging)
            await write_many(client, 400, size=2000)
            await c.wait_compacted(leader, 300)
            halfway = 5 * (64 << 10)
            cut = {"on": True}

            def stop_at_halfway(chunk: SnapshotChunk) -> SnapshotChunk | None:
                return None if cut["on"] and chunk.offset >= halfway else chunk

            c.snaps(leader).chunk_filter = stop_at_halfway
            await c.start(lagging)
            while c.snaps(lagging).stats.bytes_received < halfway:
                await trio.sleep(0.01)
            await c.stop(lagging)
            cut["on"] = False
            await c.start(lagging)  # a new process would find the same partial file
            await c.wait_applied(lagging, c.nodes[leader]._sm.applied)
            stats = c.snaps(lagging).stats  # the restarted node's counters
            total = await snapshot_size(c, leader)
            assert stats.resumed == 1
            assert stats.bytes_received == total - halfway
            await same_data(c, leader, lagging)


async def test_corrupted_snapshot_file_is_refused_and_replaced(tmp_path: Path) -> None:
    """The leader's snapshot file is damaged on disk: the follower refuses it (its SHA-256
    does not match), installs nothing, and the leader, finding its file corrupt, deletes
    it and sends a freshly built snapshot instead."""
    with trio.fail_after(120):
        async with cluster(tmp_path, 3) as c, open_client(c.endpoints) as client:
            leader = await c.wait_leader()
            lagging = next(i for i in c.cfgs if i != leader)
            await c.stop(lagging)
            await write_many(client, 300, size=1000)
            await c.wait_compacted(leader, 200)
            latest, _size, _sha = await c.snaps(leader).save()  # the file a transfer sends
            await c.wait_snapshots_settled(leader)  # then the newest file stays the newest
            assert c.snaps(leader).sdir.latest() == latest
            path = trio.Path(latest.path)
            raw = bytearray(await path.read_bytes())
            raw[len(raw) // 3] ^= 0x10
            await path.write_bytes(bytes(raw))
            await c.start(lagging)
            await c.wait_applied(lagging, c.nodes[leader]._sm.applied)
            assert c.snaps(lagging).stats.sha_failures >= 1
            assert c.snaps(lagging).installed == 1  # only the good one
            assert c.snaps(leader).stats.failed >= 1 and c.snaps(leader).stats.sent == 1
            await same_data(c, leader, lagging)
