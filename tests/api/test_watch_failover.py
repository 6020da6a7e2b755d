"""A prefix watch while writes go on through two leader changes: first the leader is cut
off from its peers (it steps down and cancels its watches), then the next leader is
stopped (its stream just ends). The application must see every acknowledged write exactly
once, in revision order: no gap, no duplicate."""

from __future__ import annotations

import pytest
import trio

from harness.inproc import cluster
from trioraft import _client_conn, open_client


async def test_watch_has_no_gap_and_no_duplicate_across_leader_changes() -> None:
    with trio.fail_after(90):
        async with (
            cluster(3, watch_progress_ms=100) as c,
            open_client(c.endpoints, timeout=30, attempt_timeout=0.5) as writer,
            open_client(c.endpoints, timeout=30, attempt_timeout=0.5) as reader,
        ):
            first = await c.wait_leader()
            acked: dict[int, tuple[bytes, bytes]] = {}
            seen: list[tuple[int, bytes, bytes]] = []
            progress = trio.Event()
            target = 0

            async def write(stop: trio.Event) -> None:
                nonlocal progress
                i = 0
                while not stop.is_set():
                    key, value = f"w/{i % 7}".encode(), f"{i}".encode()
                    acked[await writer.put(key, value)] = (key, value)
                    i += 1
                    if len(acked) >= target:
                        progress.set()

            async def until_acked(n: int) -> None:
                nonlocal target, progress
                target, progress = len(acked) + n, trio.Event()
                await progress.wait()

            async with reader.watch("w/", prefix=True) as watch:

                async def consume() -> None:
                    async for event in watch:
                        seen.append((event.revision, event.kv.key, event.kv.value))

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(consume)
                    stop = trio.Event()
                    nursery.start_soon(write, stop)
                    await until_acked(20)
                    c.isolate(first)  # leader change 1: it steps down, cancels its watch
                    await c.wait_leader(other_than=first)
                    while watch.resumes < 1:
                        await trio.sleep(0.01)
                    await until_acked(20)
                    c.isolate(first, cut=False)
                    # leader change 2: stop the node serving the watch (the new leader);
                    # its stream just goes silent
                    assert watch._conn is not None
                    serving = next(i for i in c.cfgs if c.endpoint(i) == watch._conn.endpoint)
                    await c.stop(serving)
                    await c.wait_leader(other_than=serving)
                    while watch.resumes < 2:
                        await trio.sleep(0.01)
                    await until_acked(20)
                    stop.set()
                    while not seen or seen[-1][0] < max(acked):
                        await trio.sleep(0.01)
                    nursery.cancel_scope.cancel()
            revisions = [r for r, _, _ in seen]
            assert revisions == sorted(set(revisions)), "duplicate or out of order"
            assert seen == [(r, *acked[r]) for r in sorted(acked)], "gap"
            assert watch.resumes >= 2


async def test_a_consumer_that_falls_behind_resumes_without_loss(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The client buffers only a few stream messages here: while the application does not
    read, the stream overflows and is dropped; reading on resumes it where it stopped."""
    monkeypatch.setattr(_client_conn, "STREAM_CAPACITY", 3)
    with trio.fail_after(60):
        async with cluster(1) as c, open_client(c.endpoints) as client:
            await c.wait_leader()
            async with client.watch("slow/", prefix=True) as watch:
                revisions = [await client.put(f"slow/{i}", str(i)) for i in range(20)]
                got = [(await watch.__anext__()).revision for _ in range(20)]
            assert got == revisions
            assert watch.resumes >= 1
